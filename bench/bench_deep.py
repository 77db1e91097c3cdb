"""Deep-CNN kernel benchmark (issue 12): the two-layer kernel of docs/deep-cnn.md section 4
against the
one-layer kernel of the same final grid.

Case: 28 x 28 inputs, layer 1 a 5 x 5 filter at stride 2 with "same" padding (14 x 14
positions), layer 2 a 3 x 3 filter at stride 2 with "same" padding (7 x 7 = 49 final
patches); erf; float32 and float64; P = 1024 (``--quick``: P = 64; ``LKR_BENCH_DEEP_P``
overrides). The one-layer reference has the same final grid: a 5 x 5 filter at stride 4,
"same" (7 x 7).

Rows (the call timed is ``renormalized_kernel`` with a dense Q, the solvers' hot path):

``lkr deep``      median time; ``rate`` = final-block entries per second, P^2 d^2 / time;
                  ``pairs_rate`` = position pairs of all layers per second,
                  P^2 (n_1^2 + n_2^2) / time; ``ratio`` = one-layer time / deep time (the
                  deep kernel's slow-down is 1 / ratio; the position pairs alone predict
                  (n_1^2 + n_2^2) / d^2 = 17 for this case).
``lkr 1-layer``   the one-layer kernel of the same final grid.
``neural-tangents``  not run where it is not installed (it is not on lkr's test machines):
                  the row says so. Its CNN-GP materialises P^2 x positions^2 per layer.

Both kernels are timed alternately in one process (so a changing machine load hits both).
"""
from __future__ import annotations

import os

import numpy as np

from .harness import measure, record

SUITE = "deep"

DEEP = dict(input_shape=(28, 28), filter_sizes=[5, 3], strides=[2, 2], padding="same")
ONE = dict(input_shape=(28, 28), filter_size=5, stride=4, boundary="same")


def _rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def run(quick: bool = False):
    import lkr

    P = int(os.environ.get("LKR_BENCH_DEEP_P", 64 if quick else 1024))
    dg = lkr.DeepGeometry(**DEEP)
    g1 = lkr.PatchGeometry(**ONE)
    assert dg.output_shapes[-1] == g1.grid_shape
    d = dg.num_patches
    n1 = dg.num_positions[0]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((P, 28, 28))
    A = rng.standard_normal((d, d))
    Q = A @ A.T / d + np.eye(d)
    repeats = 3 if P <= 256 else 1
    rows = []
    ref64 = None
    for dtype in (np.float64, np.float32):
        Xd, Qd = X.astype(dtype), Q.astype(dtype)
        case = f"2 layers 28x28 5x5/2 same + 3x3/2 same, d={d}, P={P}, erf, {np.dtype(dtype).name}"
        deep_t, one_t = [], []
        res = None
        def call(g, X=Xd, Q=Qd):
            return lambda: lkr.renormalized_kernel(X, Q=Q, geometry=g)

        for _ in range(repeats):  # alternate the two kernels
            med, _, _, res = measure(call(dg), repeats=1, warmup=0, max_seconds=None)
            deep_t.append(med)
            med1, _, _, _ = measure(call(g1), repeats=1, warmup=0 if P > 256 else 1,
                                    max_seconds=None)
            one_t.append(med1)
        td, t1 = float(np.median(deep_t)), float(np.median(one_t))
        spread = lambda t: float(max(t) - min(t))  # noqa: E731
        row = record(SUITE, case, "lkr deep", td, spread(deep_t), len(deep_t),
                     rate=P * P * d * d / td, rate_unit="entries/s",
                     pairs_rate=P * P * (n1 * n1 + d * d) / td, ratio=t1 / td,
                     vs="1-layer 5x5/4 same", P=P, d=d, n1=n1, dtype=np.dtype(dtype).name)
        if dtype == np.float64:
            ref64 = res
        else:
            row["max_rel_err"] = _rel_err(res, ref64)
        rows.append(row)
        rows.append(record(SUITE, case, "lkr 1-layer", t1, spread(one_t), len(one_t),
                           rate=P * P * d * d / t1, rate_unit="entries/s"))
    try:
        import neural_tangents  # noqa: F401

        note = "installed, but no comparison is implemented here"
    except ImportError:
        note = "not installed: no comparison"
    rows.append(record(SUITE, "neural-tangents CNN-GP", "neural-tangents", None, None, 0,
                       note=note))
    return rows
