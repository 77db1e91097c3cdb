"""D outputs against one: the CNN fit on the digits with ten one-hot outputs (issue 20).

    python -m bench --suite multioutput [--quick]

Digits (scikit-learn's 8 x 8 images, all ten classes, centred one-hot targets), filter 3,
stride 1, "valid" (Np = 36), T = 0.1, width 500 for both fits (D = 10 needs Nc >= Np D =
360), P = 500 (``--quick``: 100), erf (the odd action: the shared-outputs start and the
Anderson fixed point) and relu (the non-central action: the shared-outputs start and the
saddle solver). Each fit starts from scratch (the local-kernel cache included); the fits
alternate (D = 1, D = 10, D = 1, ...) so that both see the same machine load, and the
medians are reported. The D = 10 row's ``ratio`` is t(D = 1) / t(D = 10) (below 1: the cost
of the outputs; the goal was ``cost_ratio`` = 1 / ratio <= 5), and its split:

- ``build_s``    the compressed local kernel (T_S, and T_A for D > 1), once per data set,
- ``kernel_s``   the passes over it: K_R(Q) and the adjoint G(B) (shared by all outputs),
- ``mean_s``     the mean-activation terms (m Qm m^T and m^T B m),
- ``linalg_s``   the dense algebra: Cholesky of A ((P D)^2, or P^2 at shared points) and
                 the inverse for B,
- ``other_s``    the rest (the fixed-point maps, (Np D) x (Np D) algebra, the shared start);

``evaluations`` counts the full (P D) x (P D) evaluations, ``shared`` those of the
shared-outputs start (P x P). Timings on a shared machine mean something only as ratios
measured alternating in one process; the header gives the load average.
"""
from __future__ import annotations

import contextlib
import time
from collections import defaultdict

import numpy as np

from .harness import record

SUITE = "multioutput"


@contextlib.contextmanager
def _timers(acc):
    """Accumulate the exclusive wall time (nested timed calls subtracted) of the operator's
    passes and the dense algebra into ``acc``."""
    from lkr.theory import _base, _local, conv

    patches, stack = [], []

    def wrap(owner, name, key):
        f = getattr(owner, name)

        def timed(*a, **k):
            stack.append(0.0)  # time spent in timed calls nested in this one
            t0 = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                dt = time.perf_counter() - t0
                nested = stack.pop()
                acc[key] += dt - nested
                if stack:
                    stack[-1] += dt

        patches.append((owner, name, f))
        setattr(owner, name, timed)

    Op = _local.LocalOperator
    wrap(Op, "_pack", "build")
    wrap(Op, "_mean_term", "mean")
    wrap(Op, "_mean_adjoint", "mean")
    wrap(Op, "kr", "kernel")
    wrap(Op, "adjoint", "kernel")
    wrap(_base, "cholesky_of_A", "linalg")
    wrap(conv, "_inverse_from_cholesky", "linalg")
    try:
        yield
    finally:
        for owner, name, f in reversed(patches):
            setattr(owner, name, f)


def problem(P, seed=0):
    """Digits, all ten classes: X (P, 8, 8) and the centred one-hot targets (P, 10)."""
    from lkr.data import digits_groups, one_hot

    X, g = digits_groups(P, 10, seed, classes="all")[:2]
    Y = one_hot(np.asarray(g), 10)
    return X, Y - Y.mean(0)


def fit_split(X, Y, activation, width=500.0, tol=1e-8):
    """One fit from scratch (kernel cache included) and its time split."""
    import lkr
    from lkr.theory import CNNTheory

    geo = lkr.PatchGeometry((8, 8), 3, 1, boundary="valid")
    acc = defaultdict(float)
    th = CNNTheory(geometry=geo, width=width, temperature=0.1, activation=activation, tol=tol)
    t0 = time.perf_counter()
    with _timers(acc):
        sol = th.fit(X, Y)
    total = time.perf_counter() - t0
    parts = {k: acc[k] for k in ("build", "kernel", "mean", "linalg")}
    return dict(total_s=total, **{f"{k}_s": v for k, v in parts.items()},
                other_s=total - sum(parts.values()), evaluations=int(sol.evaluations),
                shared=int(sol.extra.get("shared_start_evaluations", 0)),
                converged=bool(sol.converged), rel_grad_norm=float(sol.rel_grad_norm))


def run(quick=False, repeats=2):
    P = 100 if quick else 500
    X, Y = problem(P)
    rows = []
    for act in ("erf", "relu"):
        runs = {1: [], 10: []}
        for _ in range(1 if quick else repeats):
            runs[1].append(fit_split(X, Y[:, 0], act))
            runs[10].append(fit_split(X, Y, act))
        med = {D: {k: float(np.median([r[k] for r in rs])) for k in rs[0]}
               for D, rs in runs.items()}
        case = f"CNN fit, digits 8x8 f3 s1 valid (Np 36), P {P}, {act}"
        for D in (1, 10):
            m = med[D]
            extra = {k: round(v, 3) if k.endswith("_s") else v for k, v in m.items()
                     if k != "total_s"}
            if D == 10:
                extra.update(ratio=med[1]["total_s"] / m["total_s"], vs="lkr D=1",
                             cost_ratio=m["total_s"] / med[1]["total_s"])
            totals = [r["total_s"] for r in runs[D]]
            rows.append(record(SUITE, case, f"lkr D={D}", m["total_s"],
                               max(totals) - min(totals), len(totals), **extra))
    return rows
