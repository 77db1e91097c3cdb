"""Local-kernel benchmarks (issue 2, item 9): renormalized_kernel and local_kernel_adjoint
against the best plain-NumPy formulation (bench/numpy_peers.py) and against the floor.

Rows per case (P samples, geometry, activation, dtype):

``lkr``    median time of the compiled call on all cores; ``rate`` = local-kernel entries
           per second, P P' Np^2 / time; ``ratio`` = speed-up over the NumPy peer;
           ``max_rel_err`` = max |lkr - peer| / max |peer| against the float64 peer.
``numpy``  the peer (skipped, with the reason in ``note``, where it would take > ~20 s).
``floor``  erf only: the time NumPy's arcsin needs for the P^2 Np^2 entries, divided by the
           cores lkr used (arcsin timed in place on a cache-resident buffer, i.e. its compute
           cost alone); ``ratio`` = lkr time / floor time (the issue asks for <= 3).
"""
from __future__ import annotations

import os
import time

import numpy as np

from . import numpy_peers
from .harness import measure, record

SUITE = "kernels"

GEOMETRIES = {
    "1d N0=64 f4 s4": dict(input_shape=(64,), filter_size=4, stride=4),
    "1d N0=64 f4 s1": dict(input_shape=(64,), filter_size=4, stride=1),
    "2d 32x32 f8 s8": dict(input_shape=(32, 32), filter_size=(8, 8), stride=(8, 8)),
}
PEER_LIMIT_S = 20.0      # skip the NumPy peer above this estimated time
PEER_NS_PER_ENTRY = 2.5  # its rough cost per computed entry (upper triangle), for the estimate


def _threads():
    import lkr
    from lkr import backend

    n = lkr.get_num_threads()
    return n if n > 0 else backend.core().max_threads()


_ARCSIN_NS = {}


def arcsin_ns(dtype) -> float:
    """NumPy's arcsin cost per element (ns) on one core, in place on a cache-resident buffer."""
    dtype = np.dtype(dtype)
    if dtype not in _ARCSIN_NS:
        u = np.random.default_rng(0).uniform(-1, 1, 1 << 15).astype(dtype)
        out = np.empty_like(u)
        med, _, _, _ = measure(lambda: [np.arcsin(u, out=out) for _ in range(64)], repeats=7,
                               warmup=2, max_seconds=2.0)
        _ARCSIN_NS[dtype] = med / (64 * u.size) * 1e9
    return _ARCSIN_NS[dtype]


def _rel_err(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _case_rows(kind, gname, P, act, dtype, X, Q, W, peer64, quick, repeats):
    """Rows for one (kernel, geometry, P, activation, dtype); returns (rows, peer result)."""
    import lkr

    g = lkr.PatchGeometry(**GEOMETRIES[gname])
    Np = g.num_patches
    entries = P * P * Np * Np
    case = f"{kind} {gname} P={P} {act} {np.dtype(dtype).name}"
    Xd = X.astype(dtype)
    if kind == "renormalized_kernel":
        Qd = Q.astype(dtype)
        fn = lambda: lkr.renormalized_kernel(Xd, Q=Qd, geometry=g, activation=act)  # noqa: E731
    else:
        Wd = W.astype(dtype)
        fn = lambda: lkr.local_kernel_adjoint(Xd, Wd, geometry=g, activation=act)  # noqa: E731
    med, iqr, n, res = measure(fn, repeats=repeats, warmup=1, max_seconds=10 if quick else 30)
    threads = _threads()
    lkr_row = record(SUITE, case, "lkr", med, iqr, n, rate=entries / med, rate_unit="entries/s",
                     threads=threads, P=P, Np=Np, M=g.patch_size, activation=act,
                     dtype=np.dtype(dtype).name, kernel=kind, geometry=gname)
    rows = [lkr_row]

    # the NumPy peer, in the same dtype
    est = entries / 2 * PEER_NS_PER_ENTRY * 1e-9 * (4 if g.patch_size > 16 else 1)
    peer = None
    if est > PEER_LIMIT_S:
        rows.append(record(SUITE, case, f"numpy skipped (est. {est:.0f} s)", None, None, 0,
                           note=f"skipped: estimated {est:.0f} s > {PEER_LIMIT_S:.0f} s"))
    else:
        PX = lkr.patches(Xd, g)
        if kind == "renormalized_kernel":
            pfn = lambda: numpy_peers.renormalized_kernel(PX, None, Qd, act)  # noqa: E731
        else:
            pfn = lambda: numpy_peers.local_kernel_adjoint(PX, None, Wd, act)  # noqa: E731
        reps = 1 if est > 2 else min(3, repeats)
        pmed, piqr, pn, peer = measure(pfn, repeats=reps, warmup=0 if est > 2 else 1,
                                       max_seconds=PEER_LIMIT_S)
        rows.append(record(SUITE, case, "numpy", pmed, piqr, pn, rate=entries / pmed,
                           rate_unit="entries/s", threads=1))  # the peer pins BLAS to 1
        lkr_row.update(ratio=pmed / med, vs="numpy")
    ref = peer64 if peer64 is not None else peer
    if ref is not None:
        lkr_row["max_rel_err"] = _rel_err(res, ref)
    if act == "erf":
        floor = entries * arcsin_ns(dtype) * 1e-9 / threads
        rows.append(record(SUITE, case, "floor", floor, 0.0, 0, ratio=med / floor, vs="lkr/floor",
                           note=f"np.arcsin {arcsin_ns(dtype):.2f} ns/elem x P^2 Np^2 / {threads} cores"))
    return rows, peer


def _nngp_rows(quick):
    """nngp (erf and linear) against the plain NumPy formula, alternating in one process."""
    import lkr

    from .harness import alternate, blas_threads

    rows = []
    rng = np.random.default_rng(1)
    for P in ((1024,) if quick else (1024, 4096)):
        X = rng.standard_normal((P, 64))
        for act in ("erf", "linear"):
            for dtype in (np.float64, np.float32):
                Xd = X.astype(dtype)

                def peer():
                    C = Xd @ Xd.T
                    C *= Xd.dtype.type(1 / 64)
                    if act == "linear":
                        return C
                    d = np.sqrt(1 + 2 * np.diag(C))
                    C *= 2
                    C /= d[:, None]
                    C /= d[None, :]
                    np.arcsin(C, out=C)
                    C *= Xd.dtype.type(2 / np.pi)
                    return C

                t = alternate({"lkr": lambda: lkr.nngp(Xd, activation=act), "numpy": peer},
                              repeats=5 if quick else 9)
                med, iqr, n, res = t["lkr"]
                pmed, piqr, pn, pres = t["numpy"]
                case = f"nngp N0=64 P={P} {act} {np.dtype(dtype).name}"
                rows.append(record(SUITE, case, "lkr", med, iqr, n, rate=P * P / med,
                                   rate_unit="entries/s", ratio=pmed / med, vs="numpy",
                                   max_rel_err=_rel_err(res, pres), threads=_threads(),
                                   blas_threads=blas_threads()))
                rows.append(record(SUITE, case, "numpy", pmed, piqr, pn, rate=P * P / pmed,
                                   rate_unit="entries/s", threads=blas_threads()))
    return rows


def run(quick: bool = False):
    # --quick: the smallest size, erf only, two geometries (seconds, for smoke tests)
    sizes = (256,) if quick else (256, 1024, 4096)
    geoms = ["1d N0=64 f4 s4", "2d 32x32 f8 s8"] if quick else list(GEOMETRIES)
    acts = ("erf",) if quick else ("erf", "linear")
    rows = []
    t0 = time.perf_counter()
    import lkr

    for gname in geoms:
        g = lkr.PatchGeometry(**GEOMETRIES[gname])
        Np = g.num_patches
        for P in sizes:
            rng = np.random.default_rng(P)
            X = rng.standard_normal((P,) + g.input_shape)
            A = rng.standard_normal((Np, Np))
            Q = A @ A.T / Np + np.eye(Np)  # dense positive definite
            W = rng.standard_normal((P, P))
            W = (W + W.T) / 2
            big = P * P * Np * Np > 3e9
            repeats = 1 if big else (3 if quick or P * P * Np * Np > 3e8 else 5)
            for kind in ("renormalized_kernel", "local_kernel_adjoint"):
                for act in acts:
                    peer64 = None
                    for dtype in (np.float64, np.float32):
                        r, peer = _case_rows(kind, gname, P, act, dtype, X, Q, W, peer64, quick, repeats)
                        if dtype == np.float64:
                            peer64 = peer
                        rows += r
    rows += _nngp_rows(quick)
    if os.environ.get("LKR_BENCH_VERBOSE"):
        print(f"# kernels suite took {time.perf_counter() - t0:.1f} s")
    return rows
