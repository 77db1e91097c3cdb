"""Run lkr's benchmark suites: `python -m bench [--suite NAME ...] [--quick] [--out FILE]`
from a checkout, or `lkr bench [...]` from an installed package."""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import platform
import sys
import time

from . import harness
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
    from lkr import _interrupt
    from lkr._io import check_writable_dir, describe, write_json

    try:  # a bad --out fails now, not after minutes of benchmarks
        check_writable_dir(os.path.dirname(os.path.abspath(args.out)))
    except OSError as exc:
        print(f"lkr bench: error: --out {args.out}: cannot write there ({describe(exc)})",
              file=sys.stderr)
        return 2
    print(harness.header(), flush=True)
    rows, interrupted = [], None
    for name in args.suite or available_suites():
        harness.reset()
        try:  # the marker inside: an interrupt just after it is this suite's
            print(f"# suite {name}", file=sys.stderr, flush=True)
            mod = importlib.import_module(f"{_pkg}.bench_{name}")
            suite_rows = mod.run(quick=args.quick)
        except KeyboardInterrupt:
            # Ctrl-C: keep the rows this suite finished, then stop (lkr._interrupt)
            suite_rows, interrupted = harness.collected(), name
        print(format_table(suite_rows), flush=True)
        print(flush=True)
        rows += suite_rows
        if interrupted:
            print(f"lkr bench: interrupted during suite {name}; saving the {len(rows)} rows "
                  "finished", file=sys.stderr, flush=True)
            break
    meta = dict(time=time.strftime("%Y-%m-%dT%H:%M:%S"), machine=platform.machine(),
                processor=platform.processor(), cpus=os.cpu_count(), quick=args.quick,
                threads=harness.lkr_threads(), **harness.load(), info=lkr.info(),
                interrupted=interrupted is not None, interrupted_during=interrupted)
    try:
        write_json(args.out, dict(meta=meta, results=rows), indent=1)  # atomically
    except OSError as exc:
        print(f"lkr bench: error: cannot write {args.out}: {describe(exc)}", file=sys.stderr)
        return 2
    print(f"saved {len(rows)} results to {args.out}", file=sys.stderr)
    return _interrupt.exit_status() if interrupted else 0


if __name__ == "__main__":
    from lkr import _interrupt as _signals

    # as `lkr bench`: the first Ctrl-C or SIGTERM saves the finished rows (exit 130 / 143)
    with _signals.handling(hard_exit=True, terminate=True):
        sys.exit(main(sys.argv[1:]))
