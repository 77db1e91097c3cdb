"""Run lkr's benchmark suites: `python -m bench [--suite NAME ...] [--quick] [--out FILE]`
from a checkout, or `lkr bench [...]` from an installed package."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import sys
import time

from .harness import format_table

_pkg = __package__ or "bench"


def available_suites():
    here = os.path.dirname(os.path.abspath(__file__))
    return sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([here])
                  if m.name.startswith("bench_"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="lkr bench", description=__doc__)
    parser.add_argument("--suite", action="append", choices=available_suites(),
                        help="suite to run (repeatable; default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes only (seconds, for smoke tests)")
    parser.add_argument("--out", default="bench_results.json",
                        help="JSON file for the results (default: %(default)s)")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(available_suites()))
        return 0
    import lkr

    rows = []
    for name in args.suite or available_suites():
        mod = importlib.import_module(f"{_pkg}.bench_{name}")
        print(f"# suite {name}", file=sys.stderr, flush=True)
        suite_rows = mod.run(quick=args.quick)
        print(format_table(suite_rows), flush=True)
        print(flush=True)
        rows += suite_rows
    meta = dict(time=time.strftime("%Y-%m-%dT%H:%M:%S"), machine=platform.machine(),
                processor=platform.processor(), cpus=os.cpu_count(), quick=args.quick,
                info=lkr.info())
    with open(args.out, "w") as fh:
        json.dump(dict(meta=meta, results=rows), fh, indent=1, default=str)
    print(f"saved {len(rows)} results to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
