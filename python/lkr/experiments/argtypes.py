"""argparse option types shared by the ``lkr`` subcommands.

Each raises ``argparse.ArgumentTypeError`` with a one-line message that argparse prints as
is (exit status 2).
"""
from __future__ import annotations

import argparse
import os

__all__ = ["positive_int", "nonneg_int", "positive_float", "nonneg_float", "widths", "shape",
           "task_spec"]


def positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def nonneg_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


def positive_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (v > 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return v


def nonneg_float(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (v >= 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return v


def widths(text):
    parts = [p for p in text.replace(" ", "").split(",") if p]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected comma-separated widths like 50,100,200, got {text!r}")
    out = []
    for p in parts:
        try:
            v = int(p)
        except ValueError:
            raise argparse.ArgumentTypeError(f"widths must be integers, got {p!r} in {text!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"widths must be positive, got {v} in {text!r}")
        out.append(v)
    return out


def shape(text):
    """'64' -> (64,); '8x8' or '8,8' -> (8, 8)."""
    parts = [p for p in text.lower().replace(",", "x").split("x") if p.strip()]
    if not 1 <= len(parts) <= 2:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}")
    try:
        vals = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW with integers, got {text!r}") from None
    if min(vals) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return vals


def task_spec(text):
    """A task of :func:`lkr.data.load_task`; image tasks need an existing local folder."""
    from ..data import TASKS

    name, sep, arg = text.partition(":")
    if name in ("local-teacher", "gaussian-linear", "digits") and not sep:
        return text
    if name in ("mnist", "cifar10"):
        if not arg:
            raise argparse.ArgumentTypeError(f"{name} needs a local directory: {name}:DIR "
                                             "(nothing is downloaded)")
        if not os.path.isdir(arg):
            raise argparse.ArgumentTypeError(f"directory not found: {arg}")
        return text
    raise argparse.ArgumentTypeError(f"unknown task {text!r}; choose one of {', '.join(TASKS)}")


def add_task_source_options(g) -> None:
    """The image and teacher options of a task (``lkr fc-vs-cnn`` and ``lkr check-theory``:
    the same task options; ``--classes`` is each command's own)."""
    g.add_argument("--color", action="store_true",
                   help="cifar10: keep RGB as 3 channels (default: grayscale)")
    g.add_argument("--downsample", type=positive_int, default=None, metavar="F",
                   help="image tasks: block-average factor (default: 1)")
    g.add_argument("--teacher-channels", type=positive_int, default=None, metavar="C",
                   help="local-teacher: hidden channels of the CNN teacher (default: 4)")
    g.add_argument("--noise", type=nonneg_float, default=None,
                   help="local-teacher: standard deviation of label noise (default: 0)")
