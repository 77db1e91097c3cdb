r"""The CUDA kernels against the C++ path, and against the device's measured peaks.

Headline (ISSUE 7): ``renormalized_kernel`` erf, P = 16384, Np = 64, float32: 32 x 32
images, 4 x 4 filters, stride 4 (Np = 64, M = 16). Target on an H100: within 3x of the
arithmetic floor and >= 30x faster than the C++ path on the same machine's cores.

Counting the work. K_R(X, X) is symmetric, so the least work visits each unordered pair of
samples once: E = P (P + 1) / 2 * Np^2 entries, each a dot product over M (2M flops), the
map F (one asin) and the weight (Q_ij s_i s_j times F, added: 2 flops). The floor is

    t_floor = E (2M + 2) / R_fp32 + E / R_asin,

with R_fp32 the FP32 rate of a large CuPy SGEMM (CUDA cores: CuPy does not use TF32 unless
CUPY_TF32=1) and R_asin the rate of a compute-bound chain of asinf (float) or asin (double)
evaluations, both measured in the same run. ``gflops`` counts E (2M + 2 + R_fp32 / R_asin)
flops (an asin valued at what it costs in FMAs); ``rate`` is t_floor / t, the fraction of the
floor reached (>= 1/3 is the target). Memory-bound cases (the materialised tensor) report
bytes moved against the copy bandwidth instead.

The C++ path at the headline size would take a long while on a CPU: it is timed at a
smaller P with the same Np and M and extrapolated by the exact work ratio (P (P + 1) in the
symmetric case); such rows say so in ``case``. Accuracy: the GPU result against the C++
one on a block of samples (``max_rel_err``, relative to the largest entry).

Also timed: the CNN patch passes of ``lkr._cuda`` (forward, vjp) against ``lkr._core``.
Without CuPy or a device the suite returns one row that says why.
"""
from __future__ import annotations

import numpy as np

from .harness import measure, record

SUITE = "gpu"

_ASIN_SRC = r"""
template <class T> __device__ __forceinline__ T as(T x);
template <> __device__ __forceinline__ float as<float>(float x) { return asinf(x); }
template <> __device__ __forceinline__ double as<double>(double x) { return asin(x); }
// 4 independent chains of n dependent asin evaluations per thread, two settling near 0.2
// and two near 0.87, so that both branches of asin (|x| below and above 1/2) are timed.
template <class T>
__device__ void chain(T* out, long long n) {
  const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  T a = T(0.11) + T(1e-7) * T(t & 1023), b = T(-0.43), c = T(0.77), d = T(0.6);
  for (long long k = 0; k < n; ++k) {
    a = T(0.5) * as<T>(a) + T(0.1);
    b = T(0.5) * as<T>(b) + T(0.1);
    c = T(0.5) * as<T>(c) + T(0.35);
    d = T(0.5) * as<T>(d) + T(0.35);
  }
  out[t] = a + b + c + d;
}
extern "C" __global__ void asin_chain_f32(float* out, long long n) { chain<float>(out, n); }
extern "C" __global__ void asin_chain_f64(double* out, long long n) { chain<double>(out, n); }
"""


def _skip(reason):
    return [record(SUITE, f"skipped: {reason}", "-", 0.0, 0.0, 0, note=reason)]


def _gpu():
    try:
        import cupy as cp
    except Exception as exc:
        return None, f"CuPy is not installed ({exc.__class__.__name__}); pip install lkr[gpu]"
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            return None, "no CUDA device"
    except Exception as exc:
        return None, f"no CUDA device ({exc.__class__.__name__}: {exc})"
    return cp, ""


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def _peaks(cp, quick):
    """Measured FP32/FP64 GEMM rates (flop/s), asin rates (eval/s), copy bandwidth (B/s)."""
    sync = cp.cuda.Device().synchronize
    rows, peaks = [], {}
    n = 4096 if quick else 8192
    for dt, name in ((np.float32, "fp32"), (np.float64, "fp64")):
        m = n if dt == np.float32 else n // 2
        a = cp.random.standard_normal((m, m)).astype(dt)
        b = cp.random.standard_normal((m, m)).astype(dt)
        med, iqr, reps, _ = measure(lambda: a @ b, repeats=5, warmup=2, sync=sync)
        peaks[name] = 2.0 * m**3 / med
        rows.append(record(SUITE, f"peak {name} GEMM n={m}", "cupy", med, iqr, reps,
                           gflops=peaks[name] / 1e9))
    nbytes = (256 if quick else 1024) * 2**20
    src = cp.ones(nbytes // 4, dtype=np.float32)
    dst = cp.empty_like(src)
    med, iqr, reps, _ = measure(lambda: dst.__setitem__(Ellipsis, src), repeats=9, warmup=2,
                                sync=sync)
    peaks["bw"] = 2.0 * nbytes / med  # read + write
    rows.append(record(SUITE, f"peak copy {nbytes >> 20} MiB", "cupy", med, iqr, reps,
                       rate=peaks["bw"] / 1e9, rate_unit="GB/s"))
    mod = cp.RawModule(code=_ASIN_SRC, options=("-std=c++17",))
    nsm = cp.cuda.runtime.getDeviceProperties(cp.cuda.runtime.getDevice())["multiProcessorCount"]
    threads = 256 * nsm * 16
    for dt, suf in ((np.float32, "f32"), (np.float64, "f64")):
        k = mod.get_function(f"asin_chain_{suf}")
        out = cp.empty(threads, dtype=dt)
        steps = 256 if quick else 2048
        med, iqr, reps, _ = measure(lambda: k((threads // 256,), (256,), (out, np.int64(steps))),
                                    repeats=5, warmup=1, sync=sync)
        evals = 4.0 * threads * steps
        peaks[f"asin_{suf}"] = evals / med
        rows.append(record(SUITE, f"peak asin chain {suf}", "cuda", med, iqr, reps,
                           rate=evals / med / 1e9, rate_unit="Geval/s"))
    return rows, peaks


def _geometry():
    import lkr

    return lkr.PatchGeometry(input_shape=(32, 32), filter_size=(4, 4), stride=(4, 4),
                             channels=1, boundary="periodic", layout="channels_last")


def _renormalized(cp, peaks, dtype, P, P_cpu, quick):
    import lkr

    sync = cp.cuda.Device().synchronize
    g = _geometry()
    Np, M = g.num_patches, g.patch_size
    rng = np.random.default_rng(0)
    X = rng.standard_normal((P, 32, 32)).astype(dtype)
    A = rng.standard_normal((Np, Np))
    Q = ((A + A.T) / 2 / Np + np.eye(Np)).astype(dtype)
    Xd, Qd = cp.asarray(X), cp.asarray(Q)
    suf = "f32" if dtype == np.float32 else "f64"
    tag = f"renormalized erf {suf} P={P} Np={Np} M={M}"
    fn = lambda: lkr.renormalized_kernel(Xd, Q=Qd, geometry=g, activation="erf")  # noqa: E731
    med, iqr, reps, out = measure(fn, repeats=3 if quick else 5, warmup=1, sync=sync,
                                  max_seconds=60)
    # The C++ path on a smaller P, extrapolated by the exact work ratio.
    Xc = X[:P_cpu]
    cmed, ciqr, creps, ref = measure(
        lambda: lkr.renormalized_kernel(Xc, Q=Q, geometry=g, activation="erf"),
        repeats=1 if not quick else 2, warmup=0, max_seconds=120)
    scale = (P * (P + 1)) / (P_cpu * (P_cpu + 1))
    cpu_s = cmed * scale
    entries = P * (P + 1) / 2 * Np * Np
    r_fp, r_as = peaks["fp32" if dtype == np.float32 else "fp64"], peaks[f"asin_{suf}"]
    floor = entries * (2 * M + 2) / r_fp + entries / r_as
    flops = entries * (2 * M + 2 + r_fp / r_as)
    n_chk = min(P_cpu, 512)
    err = _rel(cp.asnumpy(out[:n_chk, :n_chk]), ref[:n_chk, :n_chk])
    rows = [
        record(SUITE, tag + f" (cpu timed at P={P_cpu}, x{scale:.4g})", "lkr C++", cpu_s,
               ciqr * scale, creps, gflops=flops / cpu_s / 1e9),
        record(SUITE, tag, "lkr CUDA", med, iqr, reps, ratio=cpu_s / med, vs="lkr C++",
               gflops=flops / med / 1e9, rate=floor / med, rate_unit="of floor",
               max_rel_err=err, note=f"floor {floor:.3g} s"),
    ]
    return rows


def _adjoint(cp, peaks, dtype, P, P_cpu, quick):
    import lkr

    sync = cp.cuda.Device().synchronize
    g = _geometry()
    Np, M = g.num_patches, g.patch_size
    rng = np.random.default_rng(1)
    X = rng.standard_normal((P, 32, 32)).astype(dtype)
    B = rng.standard_normal((P, P))
    W = ((B + B.T) / 2).astype(dtype)
    Xd, Wd = cp.asarray(X), cp.asarray(W)
    suf = "f32" if dtype == np.float32 else "f64"
    tag = f"adjoint G(W) erf {suf} P={P} Np={Np} M={M}"
    med, iqr, reps, out = measure(
        lambda: lkr.local_kernel_adjoint(Xd, Wd, geometry=g, activation="erf"),
        repeats=3 if quick else 5, warmup=1, sync=sync, max_seconds=60)
    Wc = np.ascontiguousarray(W[:P_cpu, :P_cpu])
    cmed, ciqr, creps, ref = measure(
        lambda: lkr.local_kernel_adjoint(X[:P_cpu], Wc, geometry=g, activation="erf"),
        repeats=1, warmup=0, max_seconds=120)
    scale = (P * (P + 1)) / (P_cpu * (P_cpu + 1))
    cpu_s = cmed * scale
    chk = lkr.local_kernel_adjoint(Xd[:P_cpu], cp.asarray(Wc), geometry=g, activation="erf")
    err = _rel(cp.asnumpy(chk), ref)
    entries = P * (P + 1) / 2 * Np * Np
    r_fp, r_as = peaks["fp32" if dtype == np.float32 else "fp64"], peaks[f"asin_{suf}"]
    floor = entries * (2 * M + 2) / r_fp + entries / r_as
    return [
        record(SUITE, tag + f" (cpu timed at P={P_cpu}, x{scale:.4g})", "lkr C++", cpu_s,
               ciqr * scale, creps),
        record(SUITE, tag, "lkr CUDA", med, iqr, reps, ratio=cpu_s / med, vs="lkr C++",
               gflops=entries * (2 * M + 2 + r_fp / r_as) / med / 1e9, rate=floor / med,
               rate_unit="of floor", max_rel_err=err),
    ]


def _same_size(cp, name, gpu_fn, cpu_fn, check=None, **extra):
    """GPU and CPU on the same inputs; accuracy of the full result."""
    sync = cp.cuda.Device().synchronize
    med, iqr, reps, out = measure(gpu_fn, repeats=5, warmup=1, sync=sync, max_seconds=30)
    cmed, ciqr, creps, ref = measure(cpu_fn, repeats=3, warmup=0, max_seconds=60)
    err = _rel(cp.asnumpy(out), ref)
    return [record(SUITE, name, "lkr C++", cmed, ciqr, creps),
            record(SUITE, name, "lkr CUDA", med, iqr, reps, ratio=cmed / med, vs="lkr C++",
                   max_rel_err=err, **extra)]


def _patch_passes(cp, quick):
    from lkr import _cuda, backend

    core = backend.core()
    if not hasattr(core, "patch_forward"):
        return []
    rng = np.random.default_rng(3)
    g = _geometry()
    P, Nc, C = (512 if quick else 2048), 256, 4
    Np, M = g.num_patches, g.patch_size
    Z = rng.standard_normal((P, Np, M)).astype(np.float32)
    W = rng.standard_normal((C, Nc, M)).astype(np.float32)
    v = rng.standard_normal((C, Nc, Np)).astype(np.float32)
    r = rng.standard_normal((C, P)).astype(np.float32)
    Zd, Wd, vd, rd = (cp.asarray(a) for a in (Z, W, v, r))
    kw = dict(local=False, activation="erf")
    tag = f"CNN erf f32 P={P} Nc={Nc} Np={Np} M={M} chains={C}"
    rows = _same_size(cp, "patch_forward " + tag,
                      lambda: _cuda.patch_forward(Zd, Wd, vd, **kw),
                      lambda: core.patch_forward(Z, W, v, **kw, nthreads=0))
    rows += _same_size(cp, "patch_vjp dv " + tag,
                       lambda: _cuda.patch_vjp(Zd, Wd, vd, rd, **kw)[1],
                       lambda: core.patch_vjp(Z, W, v, r, **kw, nthreads=0)[1])
    return rows


def _deep(cp, quick):
    """The deep CNN-GP kernel (issue 21): 28 x 28 x 1, conv 5 x 5 / 2 SAME -> erf -> conv
    3 x 3 / 2 SAME -> erf -> flatten readout, K_R(I) (the diagonal pair plan) and a dense Q
    (the dense plan), CUDA against C++ on the same inputs."""
    import lkr

    dg = lkr.DeepGeometry((28, 28), [5, 3], [2, 2], padding="same")
    d = dg.num_patches
    rng = np.random.default_rng(4)
    rows = []
    for dtype, P in ((np.float64, 512 if quick else 2048), (np.float32, 512 if quick else 2048)):
        X = rng.standard_normal((P, 28, 28)).astype(dtype)
        Q = np.eye(d, dtype=dtype)
        Xd, Qd = cp.asarray(X), cp.asarray(Q)
        rows += _same_size(cp, f"deep CNN-GP K_R(I) 28x28 [5x5/2, 3x3/2] SAME erf "
                               f"{np.dtype(dtype).name} P={P} (diagonal plan)",
                           lambda: lkr.renormalized_kernel(Xd, Q=Qd, geometry=dg),
                           lambda: lkr.renormalized_kernel(X, Q=Q, geometry=dg))
    P = 128 if quick else 256
    X = rng.standard_normal((P, 28, 28))
    A = rng.standard_normal((d, d))
    Q = A @ A.T / d
    Xd, Qd = cp.asarray(X), cp.asarray(Q)
    rows += _same_size(cp, f"deep K_R(dense Q) 28x28 [5x5/2, 3x3/2] SAME erf float64 P={P} "
                           "(dense plan)",
                       lambda: lkr.renormalized_kernel(Xd, Q=Qd, geometry=dg),
                       lambda: lkr.renormalized_kernel(X, Q=Q, geometry=dg))
    return rows


def run(quick: bool = False):
    cp, why = _gpu()
    if cp is None:
        return _skip(why)
    import lkr

    rows, peaks = _peaks(cp, quick)
    # Headline and its float64 sibling; C++ timed at a P that takes seconds to a minute.
    P = 2048 if quick else 16384
    rows += _renormalized(cp, peaks, np.float32, P, 256 if quick else 1024, quick)
    rows += _renormalized(cp, peaks, np.float64, P // 4, 256 if quick else 512, quick)
    rows += _adjoint(cp, peaks, np.float32, P // 2, 256 if quick else 1024, quick)
    rows += _adjoint(cp, peaks, np.float64, P // 4, 256 if quick else 512, quick)

    g = _geometry()
    Np = g.num_patches
    rng = np.random.default_rng(2)
    # The diagonal K_R(x, x): O(P Np^2 M), same size on both.
    Pd = 4096 if quick else 16384
    X = rng.standard_normal((Pd, 32, 32)).astype(np.float32)
    Xd, Qd, Q = cp.asarray(X), cp.eye(Np, dtype=np.float32), np.eye(Np, dtype=np.float32)
    rows += _same_size(cp, f"renormalized diag erf f32 P={Pd}",
                       lambda: lkr.renormalized_kernel_diag(Xd, Q=Qd, geometry=g),
                       lambda: lkr.renormalized_kernel_diag(X, Q=Q, geometry=g))
    # The materialised tensor: memory-bound, bytes written against the copy bandwidth.
    Pl = 64 if quick else 128
    Xl, Xld = X[:Pl], Xd[:Pl]
    nbytes = Pl * Pl * Np * Np * 4
    lk = _same_size(cp, f"local_kernel erf f32 P={Pl} ({nbytes / 1e9:.2g} GB)",
                    lambda: lkr.local_kernel(Xld, geometry=g),
                    lambda: lkr.local_kernel(Xl, geometry=g))
    lk[-1].update(rate=nbytes / lk[-1]["median_s"] / peaks["bw"], rate_unit="of copy bw")
    rows += lk
    # The CNN patch passes (lkr._cuda against lkr._core, 4 chains as in Langevin sampling).
    rows += _patch_passes(cp, quick)
    # The deep CNN kernel's pair plans (diagonal and dense) on the device.
    rows += _deep(cp, quick)
    # The FC NNGP kernel: one GEMM and the elementwise map.
    Pn = 4096 if quick else 16384
    Xn = rng.standard_normal((Pn, 784)).astype(np.float32)
    Xnd = cp.asarray(Xn)
    rows += _same_size(cp, f"nngp erf f32 P={Pn} N0=784",
                       lambda: lkr.nngp(Xnd, activation="erf"),
                       lambda: lkr.nngp(Xn, activation="erf"))
    return rows


if __name__ == "__main__":  # pragma: no cover
    from .harness import format_table

    print(format_table(run(quick=True)))
