"""Where the time of a ReLU CNN fit with D outputs goes: D = 10 against D = 1 in one process.

    python -m bench.relu_multioutput_split [--P 500] [--width 500] [--repeats 2]

Digits (scikit-learn's 8 x 8 images, all ten classes, centred one-hot targets), filter 3,
stride 1, "valid" (Np = 36), T = 0.1, the non-central action (docs/theory-beyond-odd.md
section 3), one width for both fits (D = 10 needs Nc >= Np D = 360). The fits alternate
(D = 1, D = 10, D = 1, ...) so that both see the same machine load; the medians are
reported, with the split of each fit's wall time into

- ``build_s``    the compressed local kernel (T_S, and T_A for D > 1), once per data set,
- ``kernel_s``   the passes over it: K_R(Q) and the adjoint G(B) (shared by all outputs),
- ``mean_s``     the mean-activation terms (m Qm m^T and m^T B m),
- ``linalg_s``   the dense (P D) x (P D) algebra: Cholesky of A and the inverse for B,
- ``other_s``    the rest (the fixed-point map, D x D or (Np D) x (Np D) algebra).

Not a ``bench_`` suite (its row belongs to the suite that runs the CLI's ten-class table);
it prints one JSON object. Timings on a shared machine mean something only as ratios
measured alternating in one process: the load average is printed too.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections import defaultdict

import numpy as np


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
                acc["n_" + key] += 1
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


def _problem(P, seed=0):
    from lkr.data import digits_groups, one_hot

    X, g = digits_groups(P, 10, seed, classes="all")[:2]
    Y = one_hot(np.asarray(g), 10)
    return X, Y - Y.mean(0)


def fit_split(X, Y, width, tol=1e-8, kernel_dtype=None):
    """One fit from scratch (kernel cache included) with its time split."""
    import lkr
    from lkr.theory import CNNTheory

    geo = lkr.PatchGeometry((8, 8), 3, 1, boundary="valid")
    acc = defaultdict(float)
    th = CNNTheory(geometry=geo, width=width, temperature=0.1, activation="relu", tol=tol,
                   kernel_dtype=kernel_dtype)
    t0 = time.perf_counter()
    with _timers(acc):
        sol = th.fit(X, Y)
    total = time.perf_counter() - t0
    parts = {k: acc[k] for k in ("build", "kernel", "mean", "linalg")}
    out = dict(total_s=total, **{f"{k}_s": v for k, v in parts.items()},
               other_s=total - sum(parts.values()),
               evaluations=int(sol.evaluations), iterations=sol.iterations,
               converged=bool(sol.converged), rel_grad_norm=float(sol.rel_grad_norm),
               kernel_dtype=sol.extra.get("kernel_dtype"))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--P", type=int, default=500)
    ap.add_argument("--width", type=float, default=500.0)
    ap.add_argument("--D", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--kernel-dtype", choices=("float64", "float32"), default=None)
    args = ap.parse_args(argv)
    import lkr

    X, Y = _problem(args.P)
    runs = {1: [], args.D: []}
    for _ in range(args.repeats):
        runs[1].append(fit_split(X, Y[:, 0], args.width, kernel_dtype=args.kernel_dtype))
        runs[args.D].append(fit_split(X, Y[:, :args.D], args.width,
                                      kernel_dtype=args.kernel_dtype))
    med = {D: {k: float(np.median([r[k] for r in rs])) if isinstance(rs[0][k], float)
               else rs[-1][k] for k in rs[0]} for D, rs in runs.items()}
    out = dict(P=args.P, width=args.width, Np=36, D=args.D, threads=lkr.get_num_threads(),
               load_average=os.getloadavg(), repeats=args.repeats, median={str(k): v for k, v
                                                                           in med.items()},
               ratio_total=med[args.D]["total_s"] / med[1]["total_s"],
               # without the kernel build (once per data set, shared by fit_path's widths)
               ratio_solve=((med[args.D]["total_s"] - med[args.D]["build_s"])
                            / (med[1]["total_s"] - med[1]["build_s"])),
               ratio_per_evaluation=(med[args.D]["total_s"] / med[args.D]["evaluations"])
               / (med[1]["total_s"] / med[1]["evaluations"]))
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
