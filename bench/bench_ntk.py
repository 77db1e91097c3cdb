"""Empirical NTK, Gram matrices and spectra.

Cases (ISSUE 5): the empirical NTK of a one-hidden-layer FC net (N0 = 100, N1 = 2048) and
of a one-hidden-layer CNN (1D N0 = 64, filter 4, stride 4, 256 channels), erf, at
P = 512 and 2048, by lkr's closed forms against the standard torch.func recipe
(vmap(jacrev) Jacobians of both inputs, then an einsum per parameter tensor; the recipe of
the torch.func "neural tangent kernels" tutorial) on the same weights, float32 (torch's
default) for both, and lkr in float64 too. Each lkr row has its peak NumPy memory
(tracemalloc) next to the O(P^2 + P N) bound, and its accuracy against the float64 closed
form (for torch rows: against the same).

torch rows are skipped, with the reason in the ``note`` column, when torch is missing or
its two Jacobians would exceed ``LKR_BENCH_TORCH_BYTES`` (default 4 GiB). Also timed
(issue 13), alternating in one process with the BLAS thread count and load average in each
row: ``ntk.gram`` against ``J @ J.T`` (J 512 x 206,848, float64 and float32), the spectrum
functions against ``eigvalsh(J @ J.T)``, and ``top_k`` against the ``eigsh`` it wraps
(time and tracemalloc peak). Where OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set for old
OpenBLAS builds they slow a current NumPy: unset both for the bench command alone.
"""
from __future__ import annotations

import math
import os
import time
import tracemalloc

import numpy as np

from .harness import measure, record

SUITE = "ntk"

TORCH_BYTES = int(float(os.environ.get("LKR_BENCH_TORCH_BYTES", 4 * 1024**3)))


def _nets(dtype):
    import lkr
    from lkr import nets

    fc = nets.FCNet(100, 2048, activation="erf", seed=0, dtype=dtype)
    g = lkr.PatchGeometry((64,), filter_size=4, stride=4)
    cnn = nets.CNNNet(geometry=g, width=256, activation="erf", seed=0, dtype=dtype)
    return {"fc": fc, "cnn": cnn}


def _torch_model(kind, net):
    import torch

    W = torch.tensor(np.asarray(net.params["W"], np.float32))
    v = torch.tensor(np.asarray(net.params["v"], np.float32))

    class FC(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.W, self.v = torch.nn.Parameter(W.clone()), torch.nn.Parameter(v.clone())

        def forward(self, x):
            h = x @ self.W.T / math.sqrt(self.W.shape[1])
            return (torch.erf(h) @ self.v / math.sqrt(self.W.shape[0])).unsqueeze(-1)

    class CNN(torch.nn.Module):
        # what a torch user writes: Conv1d without bias, stride = filter = 4 (the
        # non-overlapping periodic geometry), then a dense readout over (channel, patch)
        def __init__(self):
            super().__init__()
            self.W, self.v = torch.nn.Parameter(W.clone()), torch.nn.Parameter(v.clone())

        def forward(self, x):
            Nc, M = self.W.shape
            Np = self.v.shape[1]
            h = torch.nn.functional.conv1d(x.unsqueeze(1), self.W.unsqueeze(1), stride=M)
            s = torch.erf(h / math.sqrt(M))
            return ((s * self.v).sum((1, 2)) / math.sqrt(Nc * Np)).unsqueeze(-1)

    return FC() if kind == "fc" else CNN()


def _torch_recipe(model, x1, x2):
    """The torch.func tutorial's empirical_ntk_jacobian_contraction."""
    import torch
    from torch.func import functional_call, jacrev, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}

    def fnet_single(p, x):
        return functional_call(model, p, (x.unsqueeze(0),)).squeeze(0)

    jac1 = vmap(jacrev(fnet_single), (None, 0))(params, x1)
    jac1 = [j.flatten(2) for j in jac1.values()]
    jac2 = vmap(jacrev(fnet_single), (None, 0))(params, x2)
    jac2 = [j.flatten(2) for j in jac2.values()]
    result = torch.stack([torch.einsum("Naf,Mbf->NMab", j1, j2) for j1, j2 in zip(jac1, jac2)])
    return result.sum(0)


def _peak_bytes(fn):
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def _ntk_rows(kind, P, quick, torch_ok):
    from lkr import ntk

    rows = []
    rng = np.random.default_rng(1)
    N0 = 100 if kind == "fc" else 64
    X = rng.standard_normal((P, N0))
    net64 = _nets(np.float64)[kind]
    net32 = net64.with_params({k: v.astype(np.float32) for k, v in net64.params.items()})
    X32 = X.astype(np.float32)
    width = net64.N1 if kind == "fc" else net64.channels
    case = f"{kind} P={P}"
    repeats = 3 if quick else 5
    ref = ntk.empirical_ntk(net64, X)

    # torch.func recipe, float32
    t_torch = None
    note = None
    if not torch_ok:
        note = "torch not installed"
    else:
        jac_bytes = 2 * P * net64.num_params * 4
        if jac_bytes > TORCH_BYTES:
            note = (f"skipped: its two Jacobians need {jac_bytes / 2**30:.1f} GiB > "
                    f"LKR_BENCH_TORCH_BYTES")
    if note is None:
        import torch

        model = _torch_model(kind, net32)
        xt = torch.tensor(X32)
        with torch.no_grad():
            # large P is timed once, without a warm-up call: the first call's extra cost
            # (vmap/jacrev tracing, tens of ms) is small next to the run
            med, iqr, n, out = measure(lambda: _torch_recipe(model, xt, xt),
                                       repeats=1 if (P > 1024 or quick) else 2,
                                       warmup=0 if P > 1024 else 1, max_seconds=60)
        t_torch = med
        rows.append(record(SUITE, case, "torch.func float32", med, iqr, n,
                           max_rel_err=_rel(out[:, :, 0, 0].numpy(), ref),
                           peak_mb=jac_bytes / 2**20, note="peak = its two Jacobians"))
    else:
        rows.append(record(SUITE, case, "torch.func float32", float("nan"), 0.0, 0, note=note))

    bound = (P * P + P * width) * 8
    for label, net, Xd in (("lkr float32", net32, X32), ("lkr float64", net64, X)):
        med, iqr, n, out = measure(lambda: ntk.empirical_ntk(net, Xd), repeats=repeats)
        peak = _peak_bytes(lambda: ntk.empirical_ntk(net, Xd))
        extra = dict(max_rel_err=_rel(out, ref), peak_mb=peak / 2**20,
                     note=f"(P^2 + P N) * 8 B = {bound / 2**20:.0f} MB")
        if t_torch is not None:
            extra.update(ratio=t_torch / med, vs="torch.func float32")
        # GEMM rate of the closed form: FC 2 P^2 N1 (2 GEMMs) + P^2 N0; CNN P^2 Nc (Np + M)
        if kind == "fc":
            flops = 2 * P * P * (2 * width + N0)
        else:
            g = net.geometry
            flops = 2 * P * P * width * (g.num_patches + g.patch_size)
        extra.update(gflops=flops / med / 1e9)
        rows.append(record(SUITE, case, label, med, iqr, n, **extra))
    return rows


def _gram_rows(quick):
    """Issue 13: ntk.gram against J @ J.T, the spectrum functions (Gram route by default)
    against eigvalsh(J @ J.T), timed alternating in one process; every row carries the BLAS
    thread count and the machine's load average."""
    from lkr import ntk, spectrum

    from .harness import alternate, blas_threads

    rows = []
    threads = blas_threads()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    common = dict(threads=threads, load1=load)
    rng = np.random.default_rng(2)
    # the case, 512 x 206,848 float64 (847 MB); quick: 256 x 20,000
    R, N = (256, 20_000) if quick else (512, 206_848)
    for dtype in (np.float64, np.float32):
        J = rng.standard_normal((R, N)).astype(dtype)
        case = f"gram J {R}x{N} {np.dtype(dtype).name}"
        t = alternate({"J @ J.T": lambda: J @ J.T, "ntk.gram": lambda: ntk.gram(J)},
                      repeats=3 if quick else 5)
        ref = t["J @ J.T"][3]
        rows.append(record(SUITE, case, "numpy J @ J.T", *t["J @ J.T"][:3], **common))
        rows.append(record(SUITE, case, "ntk.gram", *t["ntk.gram"][:3], **common,
                           ratio=t["J @ J.T"][0] / t["ntk.gram"][0], vs="numpy J @ J.T",
                           max_rel_err=_rel(t["ntk.gram"][3], ref),
                           gflops=R * R * N / t["ntk.gram"][0] / 1e9))
        if dtype == np.float64:
            case = f"spectrum J {R}x{N} float64"
            fns = {"eigvalsh(J @ J.T)": lambda: np.linalg.eigvalsh(J @ J.T),
                   "effective_rank(J)": lambda: spectrum.effective_rank(J),
                   "singular_values(J)": lambda: spectrum.singular_values(J)}
            t = alternate(fns, repeats=3 if quick else 5)
            base = t["eigvalsh(J @ J.T)"][0]
            rows.append(record(SUITE, case, "numpy eigvalsh(J @ J.T)", *t["eigvalsh(J @ J.T)"][:3],
                               **common))
            s_ref = np.sqrt(np.clip(t["eigvalsh(J @ J.T)"][3][::-1], 0, None))
            for name in ("effective_rank(J)", "singular_values(J)"):
                extra = {}
                if name == "singular_values(J)":
                    extra["max_rel_err"] = _rel(t[name][3], s_ref)
                rows.append(record(SUITE, case, f"spectrum.{name}", *t[name][:3], **common,
                                   ratio=base / t[name][0], vs="numpy eigvalsh(J @ J.T)", **extra))
        J = None  # free it before the next dtype
    return rows


def _top_k_rows(quick):
    """Issue 21 item 3: ``spectrum.top_k(G, 20, gram=True)`` against the call a user would
    make, ``scipy.sparse.linalg.eigsh(G, k=20, which="LA")`` (default tolerance: working
    precision), on a 4096 x 4096 Wishart Gram (clustered top eigenvalues), alternating in
    one process at the default threads (goal: ratio >= 1); memory by tracemalloc and the
    accuracy of both against LAPACK eigvalsh."""
    from scipy.sparse.linalg import eigsh

    from lkr import spectrum

    from .harness import alternate, blas_threads

    threads = blas_threads()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    common = dict(threads=threads, load1=load)
    rng = np.random.default_rng(2)
    rows = []
    n = 1024 if quick else 4096
    X = rng.standard_normal((n, n // 2))
    A = X @ X.T
    del X
    case = f"top_k 20 of a {n}x{n} PSD Gram"
    fns = {"eigsh": lambda: eigsh(A, k=20, which="LA", return_eigenvectors=False),
           "top_k": lambda: spectrum.top_k(A, 20, gram=True)}
    t = alternate(fns, repeats=3 if quick else 7, max_seconds=None if quick else 120.0)
    peaks = {}
    for k, fn in fns.items():
        tracemalloc.start()
        fn()
        peaks[k] = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
    ref = np.sqrt(np.linalg.eigvalsh(A)[::-1][:20])
    w = np.sqrt(np.sort(t["eigsh"][3])[::-1])
    rows.append(record(SUITE, case, "scipy eigsh", *t["eigsh"][:3], **common,
                       peak_mb=peaks["eigsh"], max_rel_err=_rel(w, ref)))
    rows.append(record(SUITE, case, "spectrum.top_k(gram=True)", *t["top_k"][:3], **common,
                       ratio=t["eigsh"][0] / t["top_k"][0], vs="scipy eigsh",
                       peak_mb=peaks["top_k"], matrix_mb=A.nbytes / 1e6,
                       max_rel_err=_rel(t["top_k"][3], ref), note="goal: ratio >= 1"))
    return rows


def _nets_rows(quick):
    """One Langevin step's work on the bench CNN: outputs and loss gradient of 4 chains."""
    import lkr
    from lkr import nets
    from lkr.nets import _reference_forward, _reference_vjp

    rows = []
    g = lkr.PatchGeometry((64,), filter_size=4, stride=4)
    P, C = (128 if quick else 512), 4
    for dtype in (np.float32, np.float64):
        net = nets.CNNNet(geometry=g, width=256, activation="erf", seed=0, dtype=dtype)
        X = np.random.default_rng(3).standard_normal((P, 64)).astype(dtype)
        y = np.sign(X[:, 0]).astype(dtype)
        p = net.init_params(seed=1, chains=C)
        Z = g.patches(X)
        case = f"cnn step P={P} C={C} {np.dtype(dtype).name}"

        def reference():
            f = _reference_forward(Z, p["W"], p["v"], "erf", False)
            return f, _reference_vjp(Z, p["W"], p["v"], f - y, "erf", False)

        med_ref, iqr, n, (f_ref, _) = measure(reference, repeats=3)
        rows.append(record(SUITE, case, "NumPy einsum reference", med_ref, iqr, n))

        def two_pass():
            f = net.forward(X, p)
            return f, net.vjp(X, f - y, p)

        for label, fn in (("forward + vjp", two_pass),
                          ("value_and_grad", lambda: net.value_and_grad(X, y, p))):
            med, iqr, n, (f, _) = measure(fn, repeats=5)
            rows.append(record(SUITE, case, label, med, iqr, n, ratio=med_ref / med,
                               vs="NumPy einsum reference", max_rel_err=_rel(f, f_ref)))
    return rows


def run(quick: bool = False):
    # threads: each library's default (torch honours OMP_NUM_THREADS, NumPy's BLAS
    # OPENBLAS_NUM_THREADS, lkr LKR_NUM_THREADS); set all three to compare at a fixed count
    try:
        import torch  # noqa: F401

        torch_ok = True
    except ImportError:
        torch_ok = False
    rows = []
    sizes = (256,) if quick else (512, 2048)
    for kind in ("fc", "cnn"):
        for P in sizes:
            t0 = time.perf_counter()
            rows += _ntk_rows(kind, P, quick, torch_ok)
            rows[-1]["case_s"] = time.perf_counter() - t0
    rows += _gram_rows(quick)
    rows += _top_k_rows(quick)
    rows += _nets_rows(quick)
    # the shared table has no memory column: list peaks and notes here
    import sys

    for r in rows:
        if "peak_mb" in r or "note" in r:
            peak = f"peak {r['peak_mb']:.0f} MB" if "peak_mb" in r else ""
            print(f"  {r['case']:<12} {r['impl']:<20} {peak:<14} {r.get('note', '')}",
                  file=sys.stderr)
    return rows
