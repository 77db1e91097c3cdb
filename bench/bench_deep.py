"""Deep-CNN kernel benchmarks (issue 21 item 1; docs/deep-cnn.md section 4).

1. The deep CNN-GP of 28 x 28 x 1 inputs, conv 5 x 5 / 2 SAME -> erf -> conv 3 x 3 / 2 SAME
   -> erf -> flatten readout (K_R(I): the diagonal pair plan), float64, P = 512 and 128
   (``--quick``: 128 and 32), against neural-tangents (``stax`` kernel_fn, NNGP, through
   ``nt.batch`` with batch size 64 and float64 JAX) when it is importable: the row says why
   where it is not. Timed alternately in one process (``harness.alternate``), after a
   warm-up call of each (JAX compiles there). ``ratio`` = neural-tangents time / lkr time;
   ``max_rel_err`` = max |lkr - nt| / max |nt|.
2. ``renormalized_kernel`` with a dense Q (the solvers' hot path: the dense pair plan)
   against the one-layer kernel of the same final grid (5 x 5 stride 4 "same", 7 x 7), erf,
   float64 and float32, P = 256 (``--quick``: 64). ``ratio`` = one-layer time / deep time.
3. The deep CNN-GP fit (``GPTheory("cnn", geometry=DeepGeometry)``: kernel + Cholesky) at
   P = 4096 on 28 x 28 inputs (not with ``--quick``); the issue's goal is under a minute.

Rows carry the thread count lkr used (row 1 times lkr at its thread setting and at one
thread, alternating with the peer, and keeps the faster: on a loaded machine the OpenMP
team waits for descheduled threads; ``other_threads_s`` is the other one's median);
neural-tangents (XLA) uses its own thread pool. On a shared machine only the ratios of one
run mean anything: the header gives the load.
``LKR_BENCH_DEEP_P`` overrides P of rows 1 (one value) and 2.
"""
from __future__ import annotations

import os
import time

import numpy as np

from .harness import alternate, lkr_threads, record

SUITE = "deep"

DEEP = dict(input_shape=(28, 28), filter_sizes=[5, 3], strides=[2, 2], padding="same")
ONE = dict(input_shape=(28, 28), filter_size=5, stride=4, boundary="same")
NT_BATCH = 64


def _rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def _neural_tangents():
    """(kernel_fn batched, None) or (None, why not)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import neural_tangents as nt
        from neural_tangents import stax
    except Exception as exc:  # ImportError, or a jax/jaxlib mismatch
        return None, (f"neural-tangents not importable ({type(exc).__name__}: {exc}); "
                      'pip install neural-tangents "jax==0.4.30" "jaxlib==0.4.30" '
                      '"tf2jax==0.3.6"')
    _, _, kernel_fn = stax.serial(
        stax.Conv(1, (5, 5), (2, 2), "SAME"), stax.Erf(),
        stax.Conv(1, (3, 3), (2, 2), "SAME"), stax.Erf(),
        stax.Flatten(), stax.Dense(1))
    return nt.batch(kernel_fn, batch_size=NT_BATCH), None


def _gp_rows(quick):
    import lkr

    dg = lkr.DeepGeometry(**DEEP)
    d = dg.num_patches
    Q = np.eye(d)
    env = os.environ.get("LKR_BENCH_DEEP_P")
    sizes = [int(env)] if env else ([128, 32] if quick else [512, 128])
    nt_fn, why = _neural_tangents()
    rows = []
    for P in sizes:
        rng = np.random.default_rng(0)
        X = rng.standard_normal((P, 28, 28, 1))
        case = (f"deep CNN-GP 28x28x1 conv5x5/2 SAME-erf-conv3x3/2 SAME-erf-flatten, Q = I, "
                f"P={P}, float64")
        threads = lkr_threads()
        fns = {"lkr": lambda X=X: lkr.renormalized_kernel(X, Q=Q, geometry=dg)}
        if threads > 1:  # on a loaded machine one thread can win: both are timed
            fns["lkr1"] = lambda X=X: lkr.renormalized_kernel(X, Q=Q, geometry=dg, nthreads=1)
        if nt_fn is not None:
            fns["nt"] = lambda X=X: np.asarray(nt_fn(X, None, "nngp"))
        repeats = 7 if P <= 128 else 3
        res = alternate(fns, repeats=repeats, warmup=1, max_seconds=120.0)
        key = min((k for k in ("lkr", "lkr1") if k in res), key=lambda k: res[k][0])
        med, iqr, n, K = res[key]
        extra = dict(rate=P * P * d / med, rate_unit="final entries/s", P=P, d=d,
                     threads=1 if key == "lkr1" else threads,
                     plan=repr(dg.pair_plan("diagonal")))
        if threads > 1:
            extra["other_threads_s"] = res["lkr1" if key == "lkr" else "lkr"][0]
        if nt_fn is not None:
            tn, iqn, nn, Knt = res["nt"]
            rows.append(record(SUITE, case, "lkr renormalized_kernel (diagonal plan)", med, iqr,
                               n, ratio=tn / med, vs="neural-tangents",
                               max_rel_err=_rel_err(K, Knt), **extra))
            rows.append(record(SUITE, case, "neural-tangents", tn, iqn, nn,
                               note=f"stax kernel_fn, nt.batch(batch_size={NT_BATCH}), "
                                    "jax_enable_x64, XLA's own threads"))
        else:
            rows.append(record(SUITE, case, "lkr renormalized_kernel (diagonal plan)", med, iqr,
                               n, **extra))
            rows.append(record(SUITE, case, "neural-tangents", None, None, 0, note=why))
    return rows


def _dense_rows(quick):
    import lkr

    P = int(os.environ.get("LKR_BENCH_DEEP_P", 64 if quick else 256))
    dg = lkr.DeepGeometry(**DEEP)
    g1 = lkr.PatchGeometry(**ONE)
    assert dg.output_shapes[-1] == g1.grid_shape
    d = dg.num_patches
    plan = dg.pair_plan("dense")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((P, 28, 28))
    A = rng.standard_normal((d, d))
    Q = A @ A.T / d + np.eye(d)
    rows, ref64 = [], None
    for dtype in (np.float64, np.float32):
        Xd, Qd = X.astype(dtype), Q.astype(dtype)
        case = (f"2 layers 28x28 5x5/2 same + 3x3/2 same, dense Q, d={d}, P={P}, erf, "
                f"{np.dtype(dtype).name}")
        res = alternate({"deep": lambda: lkr.renormalized_kernel(Xd, Q=Qd, geometry=dg),
                         "one": lambda: lkr.renormalized_kernel(Xd, Q=Qd, geometry=g1)},
                        repeats=3, warmup=1, max_seconds=120.0)
        td, iqd, nd, K = res["deep"]
        t1, iq1, n1, _ = res["one"]
        row = record(SUITE, case, "lkr deep (dense plan)", td, iqd, nd,
                     rate=P * P * d * d / td, rate_unit="final entries/s", ratio=t1 / td,
                     vs="1-layer 5x5/4 same", P=P, d=d, pairs_per_layer=list(plan.counts),
                     dtype=np.dtype(dtype).name)
        if dtype == np.float64:
            ref64 = K
        else:
            row["max_rel_err"] = _rel_err(K, ref64)
        rows += [row, record(SUITE, case, "lkr 1-layer", t1, iq1, n1,
                             rate=P * P * d * d / t1, rate_unit="final entries/s")]
    return rows


def _gp_fit_rows(quick):
    if quick:
        return []
    import lkr
    from lkr.theory import GPTheory

    P = 4096
    rng = np.random.default_rng(1)
    X = rng.standard_normal((P, 28, 28))
    y = np.tanh(3 * X[:, 10:18, 10:18].mean((1, 2)))
    dg = lkr.DeepGeometry(**DEEP)
    t0 = time.perf_counter()
    GPTheory("cnn", geometry=dg, temperature=0.01).fit(X, y)
    t = time.perf_counter() - t0
    return [record(SUITE, f"deep CNN-GP fit (kernel + Cholesky), 28x28, P={P}, float64",
                   "lkr GPTheory('cnn', DeepGeometry).fit", t, 0.0, 1,
                   note="goal: under 60 s on this machine")]


def run(quick: bool = False):
    return _gp_rows(quick) + _dense_rows(quick) + _gp_fit_rows(quick)
