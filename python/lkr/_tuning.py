"""Thread counts chosen by measurement, for work repeated many times (a training step,
a solver's evaluation).

Why: the training step gives the same numbers for any thread count (its split into tasks
depends only on the shapes), so the count may change from step to step (the solvers'
LAPACK calls differ only in rounding); and which count is fastest depends on the
machine's load at the time. On a quiet machine n threads win; on
one whose cores are taken by other processes, a second thread adds no CPU time but makes
the step wait for a descheduled peer, and one thread wins. A run takes thousands of
identical steps, so the choice is measured: the first steps alternate between 1 and n
threads, and afterwards the other count is re-tried every ``PROBE_EVERY`` steps; the
count with the lower median of its recent step times is used. ``LKR_NUM_THREADS`` /
``lkr.set_num_threads`` is the upper bound n; with n = 1 nothing is measured.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import time

__all__ = ["StepThreads", "BlasChoice", "usable_threads"]


def usable_threads(n: int) -> int:
    """The upper bound for a measured choice: n (lkr's setting; 0 = all) capped at the CPUs
    this process may run on (more threads than that only queue)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    return max(1, min(n, cpus) if n > 0 else cpus)

#: steps between two tries of the count not in use
PROBE_EVERY = 40
#: step times kept per count
WINDOW = 5
#: tries of each count before the first choice
WARMUP = 3


class StepThreads:
    """Pick 1 or n threads for each call of a repeated step, by its measured time."""

    def __init__(self):
        self.n = None
        self.times = {}
        self.calls = 0
        self.current = 1

    def pick(self, n: int) -> int:
        """The count for the next step, given the upper bound n (>= 1)."""
        if n != self.n:  # the user changed lkr's thread setting: start over
            self.n, self.times, self.calls = n, {1: [], n: []}, 0
        self.calls += 1
        if n <= 1:
            self.current = 1
            return 1
        few = [k for k in (n, 1) if len(self.times[k]) < WARMUP]
        if few:
            self.current = few[0] if len(few) == 1 or self.calls % 2 else few[1]
            return self.current
        best = min((n, 1), key=lambda k: statistics.median(self.times[k]))
        other = 1 if best == n else n
        self.current = other if self.calls % PROBE_EVERY == 0 else best
        return self.current

    def record(self, k: int, seconds: float) -> None:
        t = self.times.setdefault(k, [])
        t.append(seconds)
        if len(t) > WINDOW:
            del t[0]

    def timed(self, n: int):
        """Context manager: picks the count (``.threads``) and records the block's time."""
        return _Timed(self, self.pick(n))


class _Timed:
    def __init__(self, owner, k):
        self.owner, self.threads = owner, k

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.owner.record(self.threads, time.perf_counter() - self.t0)
        return False


class BlasChoice:
    """BLAS/LAPACK threads for a solver's repeated evaluations (1 or ``n``), by measurement:
    ``timed()`` around an evaluation picks, sets and times the count; ``held()`` around
    other work of the same iteration uses the current count without timing it."""

    def __init__(self, n: int):
        self.n = usable_threads(n)
        self.tuner = StepThreads()

    @contextlib.contextmanager
    def timed(self):
        from ._blas import blas_threads

        with self.tuner.timed(self.n) as run, blas_threads(run.threads):
            yield

    def held(self):
        from ._blas import blas_threads

        return blas_threads(self.tuner.current)
