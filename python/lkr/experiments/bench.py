"""``lkr bench``: the microbenchmarks of ``bench/`` (their runner parses its own options)."""
from __future__ import annotations

import argparse

__all__ = ["add_arguments", "command", "HELP"]

HELP = "run the microbenchmarks (see `lkr bench --help`)"

#: the runner reads every option itself (its own --help included)
OWN_HELP = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Everything after ``bench`` goes to the runner."""
    p.add_argument("bench_args", nargs=argparse.REMAINDER)


def command(args) -> int:
    from ..bench.__main__ import main as bench_main

    return bench_main(args.bench_args)
