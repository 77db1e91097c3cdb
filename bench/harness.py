"""Honest timing: warm-up, repeats, median and spread, results as records.

Every benchmark module ``bench/bench_<suite>.py`` defines ``SUITE`` (its name) and
``run(quick: bool) -> list[dict]``; each record holds at least ``suite``, ``case``,
``impl``, ``median_s``, ``iqr_s``, ``repeats`` and, where it applies, ``ratio`` (speed-up of
this implementation over the reference named in ``vs``), ``gflops``, ``rate`` with
``rate_unit``, and ``max_rel_err`` (accuracy next to the speed).
"""
from __future__ import annotations

import gc
import os
import statistics
import time
from typing import Callable, Optional

#: every row made by :func:`record` since the last :func:`reset` (so that an interrupted
#: suite still has its finished rows)
_collected: list = []


def reset() -> None:
    """Forget the rows collected so far (the runner calls it before each suite)."""
    _collected.clear()


def collected() -> list:
    """The rows :func:`record` made since the last :func:`reset`."""
    return list(_collected)


def lkr_threads() -> int:
    """The threads lkr's compiled kernels use now (its setting; 0 = all cores, resolved)."""
    import lkr

    n = lkr.get_num_threads()
    return n if n > 0 else (os.cpu_count() or 1)


def load() -> dict:
    """Cores, load average (1, 5, 15 min; None where the OS has none) and whether the
    machine is loaded (1-minute load average above the core count)."""
    cores = os.cpu_count() or 1
    try:
        avg = os.getloadavg()
    except (AttributeError, OSError):  # pragma: no cover - Windows
        avg = None
    return dict(cores=cores, loadavg=None if avg is None else [round(a, 2) for a in avg],
                loaded=avg is not None and avg[0] > cores)


def header() -> str:
    """The lines above the tables: threads, cores, load average and, on a loaded machine,
    what that means for the numbers."""
    ld = load()
    avg = "n/a" if ld["loadavg"] is None else " ".join(f"{a:.2f}" for a in ld["loadavg"])
    env = os.environ.get("LKR_NUM_THREADS")
    lines = [f"# lkr threads {lkr_threads()}"
             + (f" (LKR_NUM_THREADS={env})" if env is not None else " (default: all cores)")
             + f", {ld['cores']} cores, load average {avg}"]
    if ld["loaded"]:
        lines.append(f"# LOADED: load average {ld['loadavg'][0]:.2f} > {ld['cores']} cores: other "
                     "processes compete for the cores, timings are noisy and multi-threaded "
                     "rows suffer most; lkr rows that measure it use the faster of "
                     f"{lkr_threads()} and 1 thread (the threads column says which)")
    return "\n".join(lines)


def measure_threads(fn: Callable[[], object], **kwargs):
    """:func:`measure` at lkr's thread setting and, on a loaded machine, at one thread too;
    returns ``(median_s, iqr_s, n, last_result, threads)`` of the faster."""
    import lkr

    threads = lkr_threads()
    best = measure(fn, **kwargs) + (threads,)
    if threads > 1 and load()["loaded"]:
        old = lkr.get_num_threads()
        lkr.set_num_threads(1)
        try:
            one = measure(fn, **kwargs) + (1,)
        finally:
            lkr.set_num_threads(old)
        if one[0] < best[0]:
            best = one
    return best


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
    """One benchmark result row (lkr's rows carry ``threads``, the thread count measured)."""
    row = dict(suite=suite, case=case, impl=impl, median_s=median_s, iqr_s=iqr_s,
               repeats=repeats)
    if impl.startswith("lkr") and "threads" not in extra:
        row["threads"] = lkr_threads()
    row.update(extra)
    _collected.append(row)
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
