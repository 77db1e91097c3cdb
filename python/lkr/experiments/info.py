"""``lkr info``: versions, backend, threads, instruction set, BLAS and GPU."""
from __future__ import annotations

import argparse

__all__ = ["add_arguments", "command", "HELP"]

HELP = "versions, backend, threads, instruction set, BLAS, GPU"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``lkr info``."""
    p.description = ("Print versions, the compute backend, threads, the instruction set the "
                     "kernels chose (AVX-512, AVX2 or baseline), BLAS, GPU and the LKR_* "
                     "environment variables.")
    p.add_argument("--json", action="store_true", help="print as JSON")


def command(args) -> int:
    """Print :func:`lkr.backend.info` as aligned lines, or JSON with ``--json``."""
    from .._json import dumps
    from ..backend import info

    data = info()
    if args.json:
        print(dumps(data, indent=2))
    else:
        width = max(map(len, data))
        for k, v in data.items():
            print(f"{k:<{width}}  {v}")
    return 0
