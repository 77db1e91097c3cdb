"""Honest timing: warm-up, repeats, median and spread, results as records.

Every benchmark module ``bench/bench_<suite>.py`` defines ``SUITE`` (its name) and
``run(quick: bool) -> list[dict]``; each record holds at least ``suite``, ``case``,
``impl``, ``median_s``, ``iqr_s``, ``repeats`` and, where it applies, ``ratio`` (speed-up of
this implementation over the reference named in ``vs``), ``gflops``, ``rate`` with
``rate_unit``, and ``max_rel_err`` (accuracy next to the speed).
"""
from __future__ import annotations

import gc
import statistics
import time
from typing import Callable, Optional


def measure(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1,
            max_seconds: Optional[float] = 30.0, sync: Optional[Callable[[], None]] = None):
    """Median and interquartile range of wall time over ``repeats`` calls of ``fn``.

    Stops early (keeping at least one timed call) once ``max_seconds`` of timed work has
    been spent. ``sync`` is called after each call (e.g. a CUDA stream synchronise).
    Returns ``(median_s, iqr_s, n, last_result)``.
    """
    result = None
    for _ in range(warmup):
        result = fn()
        if sync:
            sync()
    times = []
    spent = 0.0
    for _ in range(max(1, repeats)):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        if sync:
            sync()
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
        if max_seconds is not None and spent > max_seconds:
            break
    times.sort()
    med = statistics.median(times)
    if len(times) >= 4:
        q = statistics.quantiles(times, n=4)
        iqr = q[2] - q[0]
    else:
        iqr = times[-1] - times[0]
    return med, iqr, len(times), result


def record(suite: str, case: str, impl: str, median_s: float, iqr_s: float, repeats: int,
           **extra) -> dict:
    """One benchmark result row."""
    row = dict(suite=suite, case=case, impl=impl, median_s=median_s, iqr_s=iqr_s,
               repeats=repeats)
    row.update(extra)
    return row


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1e4 or abs(v) < 1e-3:
            return f"{v:.3g}"
        return f"{v:.4g}"
    return str(v)


def format_table(rows) -> str:
    """A fixed-width text table of records (the columns every suite shares)."""
    cols = ["suite", "case", "impl", "threads", "median_s", "iqr_s", "ratio", "vs", "gflops",
            "rate", "rate_unit", "max_rel_err"]
    cols = [c for c in cols if any(c in r for r in rows)]
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
              for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def alternate(fns, *, repeats: int = 5, warmup: int = 1, max_seconds: Optional[float] = 60.0):
    """Time several callables in one process, alternating: round r calls each of ``fns``
    (a dict name -> callable) once, so that a change in machine load hits all of them
    alike. Returns {name: (median_s, iqr_s, n, last_result)}; ratios of these medians
    are the figures to quote on a shared machine."""
    results = {k: None for k in fns}
    for _ in range(warmup):
        for k, fn in fns.items():
            results[k] = fn()
    times = {k: [] for k in fns}
    spent = 0.0
    for _ in range(max(1, repeats)):
        for k, fn in fns.items():
            gc.collect()
            t0 = time.perf_counter()
            results[k] = fn()
            dt = time.perf_counter() - t0
            times[k].append(dt)
            spent += dt
        if max_seconds is not None and spent > max_seconds:
            break
    out = {}
    for k, ts in times.items():
        ts.sort()
        med = statistics.median(ts)
        iqr = (statistics.quantiles(ts, n=4)[2] - statistics.quantiles(ts, n=4)[0]
               if len(ts) >= 4 else ts[-1] - ts[0])
        out[k] = (med, iqr, len(ts), results[k])
    return out


def blas_threads() -> int:
    """Threads of the BLAS NumPy uses (threadpoolctl; 0 when unknown)."""
    try:
        from threadpoolctl import threadpool_info

        return max((int(i.get("num_threads", 0)) for i in threadpool_info()
                    if i.get("user_api") == "blas"), default=0)
    except ImportError:
        return 0
