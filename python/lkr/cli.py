"""The ``lkr`` command: ``lkr info``, ``lkr bench`` (and the experiments)."""
from __future__ import annotations

import argparse
import json
import sys


def _cmd_info(args) -> int:
    from .backend import info

    data = info()
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        width = max(map(len, data))
        for k, v in data.items():
            print(f"{k:<{width}}  {v}")
    return 0


def _cmd_bench(args) -> int:
    from .bench.__main__ import main as bench_main

    return bench_main(args.bench_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lkr", description="Local kernel renormalisation: "
                                     "kernels, theory and experiments for finite-width networks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("info", help="versions, backend, threads, BLAS, GPU")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=_cmd_info)
    p = sub.add_parser("bench", help="run the microbenchmarks (see `lkr bench -- --help`)",
                       add_help=False)
    p.add_argument("bench_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
