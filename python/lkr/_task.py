"""The task type of :mod:`lkr.data` and what the loaders share with
:mod:`lkr.datasets_sklearn`: :class:`Task`, :class:`DataError`, class groups
(:func:`parse_classes`) and block averaging. Kept apart so that both loaders import it and
neither imports the other's module (lkr.data re-exports all of it)."""
from __future__ import annotations

from typing import NamedTuple, Tuple

import numpy as np

from ._validate import is_integer

__all__ = ["Task", "DataError", "parse_classes", "block_average"]


class DataError(ValueError):
    """A data file is missing, unreadable or not in the expected format."""


class Task(NamedTuple):
    """Training and test sets of a task, and a record of how they were made."""

    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    info: dict


def parse_classes(classes) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """Two groups of class labels: the first gets y = +1, the second y = -1.

    Accepts ``(a, b)``, ``((a, c), (b, d))``, or the strings ``"a,b"`` and ``"a,c:b,d"``.
    """
    if isinstance(classes, str):
        text = classes.strip()
        try:
            if ":" in text:
                groups = [tuple(int(c) for c in part.split(",") if c.strip()) for part in text.split(":")]
            else:
                groups = [(int(c),) for c in text.split(",") if c.strip()]
        except ValueError:
            raise ValueError(f"classes must look like '0,1' or '0,2,4:1,3,5', got {classes!r}") from None
    else:
        groups = [tuple(g) if np.ndim(g) else (g,) for g in classes]
    if len(groups) != 2 or not all(groups):
        raise ValueError(f"classes must name two non-empty groups (first -> +1, second -> -1), "
                         f"got {classes!r}")
    flat = [c for g in groups for c in g]
    for c in flat:
        if not is_integer(c) or not 0 <= c <= 9:
            raise ValueError(f"class labels must be integers 0..9, got {c!r}")
    if len(set(flat)) != len(flat):
        raise ValueError(f"a class appears in both groups or twice: {classes!r}")
    return tuple(int(c) for c in groups[0]), tuple(int(c) for c in groups[1])


def block_average(images, factor):
    """Average non-overlapping factor x factor blocks of (n, H, W, C) images."""
    if factor == 1:
        return images
    n, H, W, C = images.shape
    if H % factor or W % factor:
        raise ValueError(f"downsample factor {factor} does not divide the image size {H} x {W}")
    return images.reshape(n, H // factor, factor, W // factor, factor, C).mean(axis=(2, 4))
