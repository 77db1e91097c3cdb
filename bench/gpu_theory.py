"""The theory fits and spectra on CuPy arrays against the same calls on NumPy, for
bench/gpu_check.sh: `python -m bench.gpu_theory --out FILE.json [--quick]`.

Each row times one call on the device (CuPy arrays in, everything kept on the device) and
the same call on NumPy in the same process, and gives the largest difference of the
results relative to the NumPy result. Without CuPy or a device it writes one row that says
why and exits 0 (gpu_check.sh reports the GPU tests' status separately).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def _timed(fn, sync, repeats=3):
    fn()
    sync()  # warm-up: kernel compilation, cuBLAS handles
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _host(a):
    if hasattr(a, "get"):
        return a.get()
    return np.asarray(a)


def _rel(a, b):
    a, b = np.asarray(_host(a), float), np.asarray(_host(b), float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def rows(quick: bool):
    try:
        import cupy as cp

        cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no CuPy, no driver, no device
        return [dict(case="theory on CuPy", impl="skipped", note=f"{type(exc).__name__}: {exc}")]
    import lkr
    from lkr import ntk, spectrum
    from lkr.theory import CNNTheory, FCTheory

    sync = cp.cuda.get_current_stream().synchronize
    nosync = lambda: None  # noqa: E731
    rng = np.random.default_rng(0)
    out = []

    def pair(case, gpu_fn, cpu_fn, value=lambda r: r):
        tg, rg = _timed(gpu_fn, sync)
        tc, rc = _timed(cpu_fn, nosync, repeats=1 if not quick else 2)
        out.append(dict(case=case, impl="cupy", seconds=tg, cpu_seconds=tc, speedup=tc / tg,
                        max_rel_err=_rel(value(rg), value(rc))))
        print(f"{case:48s} cupy {tg:8.4f} s  numpy {tc:8.4f} s  x{tc / tg:6.1f}  "
              f"err {out[-1]['max_rel_err']:.2e}", flush=True)

    P = 200 if quick else 1000
    X = rng.standard_normal((P, 64))
    y = np.tanh(X[:, :4].sum(1))
    Xd, yd = cp.asarray(X), cp.asarray(y)
    fc = lambda: FCTheory(width=100, temperature=0.01)  # noqa: E731
    pair(f"FCTheory.fit P={P} N0=64", lambda: fc().fit(Xd, yd), lambda: fc().fit(X, y),
         value=lambda s: np.atleast_1d(_host(s.Q)))
    g = lkr.PatchGeometry(input_shape=(64,), filter_size=8, stride=8)
    Pc = 100 if quick else 400
    cnn = lambda: CNNTheory(g, width=Pc, temperature=0.01)  # noqa: E731
    pair(f"CNNTheory.fit P={Pc} 1d N0=64 f8 s8", lambda: cnn().fit(Xd[:Pc], yd[:Pc]),
         lambda: cnn().fit(X[:Pc], y[:Pc]), value=lambda s: _host(s.Q))
    R, N = (64, 20_000) if quick else (512, 200_000)
    J = rng.standard_normal((R, N)).astype(np.float32)
    Jd = cp.asarray(J)
    pair(f"ntk.gram J {R}x{N} float32", lambda: ntk.gram(Jd), lambda: ntk.gram(J))
    pair(f"spectrum.effective_rank J {R}x{N} float32", lambda: spectrum.effective_rank(Jd),
         lambda: spectrum.effective_rank(J), value=lambda v: np.array([v]))
    G = J[:, :R * 2] @ J[:, :R * 2].T
    Gd = cp.asarray(G)
    pair(f"spectrum.top_k Gram {R}x{R} k=10 float32", lambda: spectrum.top_k(Gd, 10, gram=True),
         lambda: spectrum.top_k(G, 10, gram=True))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="gpu_theory.json")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    res = rows(args.quick)
    with open(args.out, "w") as fh:
        json.dump(dict(results=res), fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
