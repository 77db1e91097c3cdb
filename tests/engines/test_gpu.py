"""The CUDA backend (lkr._cuda, csrc/cuda/*.cu).

Three layers, so that most of it is checked on a machine without a GPU:

* Sources and toolchain (run everywhere): the .cu files are found where lkr._cuda looks,
  they compile with nvcc --ptx for sm_90 and with NVRTC (the run-time compiler CuPy uses,
  which has no host headers), and backend.cuda() fails with the actionable message when
  CuPy is missing.
* The host emulator (runs where g++ is): the kernels compiled as C++ with a small CUDA
  emulation layer (the threads of a block as fibers switched at __syncthreads, __shared__
  memory per block), driven by the very launch planning
  of lkr._cuda (padding, panels, grids, argument lists) through its ``Engine`` with NumPy
  arrays. Checked against lkr._core on odd sizes, with poisoned outputs. It finds indexing,
  coverage, reduction and synchronisation errors; it says nothing about speed, and
  floating-point details of the device (FMA contraction, asin) differ from the host's.
* On a GPU (skip here with the reason; fail instead with LKR_REQUIRE_GPU=1): the public API
  on CuPy arrays against NumPy, dispatch (CuPy in -> CuPy out), torch CUDA tensors.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from testing import RTOL, skip_or_fail_without_gpu, to_numpy

import lkr
from lkr import _cuda, backend

CU_FILES = sorted(p.name for p in _cuda.source_dir().glob("*.cu"))
ACTS = ["erf", "relu", "linear"]
DTYPES = [np.float64, np.float32]


def rel_err(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(float(np.abs(b).max()) if b.size else 0.0, 1e-300)
    return float(np.abs(a - b).max()) / scale if a.size else 0.0


def tol(dtype):
    # float64: the 1e-12 of the design; float32: 1e-5 relative to the largest entry.
    return 10 * RTOL[np.dtype(dtype)] if np.dtype(dtype) == np.float64 else RTOL[np.dtype(dtype)]


def patches(rng, P, Np, M, dtype):
    return np.ascontiguousarray(rng.standard_normal((P, Np, M)), dtype=dtype)


def sym_matrix(rng, n, dtype):
    A = rng.standard_normal((n, n))
    return np.ascontiguousarray((A + A.T) / 2, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Sources and toolchain (no GPU needed)
# ---------------------------------------------------------------------------------------------
def test_sources_are_found():
    d = _cuda.source_dir()
    for name in _cuda.SOURCES:
        assert (d / name).is_file(), f"{name} missing from {d}"
    text = _cuda.load_source("local_kernel.cu")
    assert '#include "' not in text, "local includes must be inlined for NVRTC"
    for kind in ("prepare", "renormalized", "adjoint", "full", "diag", "nngp"):
        assert f"lkr_{kind}_##ACTNAME##_##SUF" in text


def test_sources_ship_as_package_data():
    """CMake installs csrc/cuda/*.cu and *.cuh into lkr/cuda; an installed (non-editable)
    lkr must find them there. Checks the install rule and, where an install exists, that
    every source is in it."""
    root = _cuda.source_dir().parents[1] if _cuda.source_dir().name == "cuda" else None
    cmake = None if root is None else root / "CMakeLists.txt"
    if cmake is not None and cmake.is_file():
        text = cmake.read_text()
        assert "csrc/cuda/" in text and "DESTINATION lkr/cuda" in text
        assert '"*.cu"' in text and '"*.cuh"' in text
    import importlib.util

    spec = importlib.util.find_spec("lkr._core")
    installed = os.path.join(os.path.dirname(spec.origin), "cuda")
    if not os.path.isdir(installed):
        pytest.skip(f"no installed package data next to {spec.origin}")
    names = set(os.listdir(installed))
    missing = [n for n in _cuda.SOURCES + ("lkr_common.cuh",) if n not in names]
    assert not missing, f"{missing} not installed in {installed}"


def test_load_source_reports_missing_file(tmp_path):
    (tmp_path / "a.cu").write_text('#include "nope.cuh"\n')
    with pytest.raises(FileNotFoundError, match="nope.cuh"):
        _cuda.load_source("a.cu", tmp_path)


def test_cuda_backend_without_cupy_raises_clear_error(monkeypatch):
    """backend.cuda() must say what to install when CuPy is missing (simulated by hiding it)."""
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now raises ImportError
    with pytest.raises(ImportError, match=r"CuPy is not installed; pip install lkr\[gpu\]"):
        backend.cuda()
    assert backend.implementation(np) is backend.core()
    info = backend.info()
    assert "CuPy not installed" in info["gpu"]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize("name", CU_FILES)
def test_nvcc_compiles(name, tmp_path):
    """As .ci/run does: every .cu compiles to PTX for sm_90, without warnings."""
    d = _cuda.source_dir()
    res = subprocess.run(["nvcc", "-std=c++17", "-arch=sm_90", "--ptx", "-o",
                          str(tmp_path / "out.ptx"), str(d / name)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "warning" not in res.stderr.lower(), res.stderr
    entries = re.findall(r"\.entry (lkr_\w+)", (tmp_path / "out.ptx").read_text())
    for suf in ("f32", "f64"):  # a plain compile builds both dtypes
        assert any(e.endswith("_" + suf) for e in entries), entries


def _nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
        return nvrtc
    except Exception as exc:
        pytest.skip(f"NVRTC is not available through CuPy ({exc.__class__.__name__})")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", _cuda.SOURCES)
def test_nvrtc_compiles(name, dtype):
    """Each source as lkr._cuda hands it to NVRTC (no host headers, one dtype per module)."""
    nvrtc = _nvrtc()
    src = _cuda.load_source(name)
    prog = nvrtc.createProgram(src, name, [], [])
    # The options cupy.RawModule adds to ours (CuPy 13-14: flush-to-zero, functions default
    # to device code, and the architecture).
    cupy_adds = ["-ftz=true", "--device-as-default-execution-space", "-arch=compute_90"]
    try:
        nvrtc.compileProgram(prog, list(_cuda.compile_options(dtype)) + cupy_adds)
    except Exception as exc:
        pytest.fail(f"NVRTC failed: {exc}\n{nvrtc.getProgramLog(prog)}")
    ptx = nvrtc.getPTX(prog)
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    entries = re.findall(r"\.entry (lkr_\w+)", ptx)
    suf = _cuda._suffix(dtype)
    assert entries and all(e.endswith("_" + suf) for e in entries), entries  # one dtype
    assert all(_cuda.source_of(e) == name for e in entries)


def test_grid_and_panels():
    assert _cuda._grid(1) == (1, 1)
    assert _cuda._grid(2**31 - 1) == (2**31 - 1, 1)
    gx, gy = _cuda._grid(2**31 + 5)
    assert gx * gy >= 2**31 + 5 and gy <= 65535
    assert _cuda._panels(4) == (4, 16, 1)
    assert _cuda._panels(24) == (24, 2, 1)
    assert _cuda._panels(64) == (64, 1, 1)
    assert _cuda._panels(72) == (64, 1, 2)


# -- the host emulator (tests/cuda_emulator.py: the fixtures `emulator` and `poison`) ----------
core = backend.core()

# (P, P2 or None, Np, M): odd sizes that do not divide the tiles. Np = 6 pads to 8 (8
# samples stacked per 64-row panel), Np = 24 stacks 2 samples with 16 idle rows, Np = 1
# pads to 4 (16 samples per panel), Np = 70 pads to 72 and takes two 64-patch chunks; M = 19
# spans two k-chunks of 16; P = 19 leaves a partial group.
SHAPES = [(19, None, 6, 5), (7, 11, 6, 19), (9, None, 24, 3), (5, 3, 1, 7), (3, None, 70, 2),
          (2, 3, 70, 17)]


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, (v or 0 for v in s))))
def test_emulated_renormalized_kernel(emulator, poison, shape, dtype, act):
    P, P2, Np, M = shape
    rng = np.random.default_rng(hash((P, P2, Np, M)) % 2**32)
    PX = patches(rng, P, Np, M, dtype)
    PY = None if P2 is None else patches(rng, P2, Np, M, dtype)
    Q = sym_matrix(rng, Np, dtype)
    got = emulator.renormalized_kernel(PX, PY, Q, act, 0.7, 1.3)
    want = core.renormalized_kernel(PX, PY, Q, act, 0.7, 1.3, 0)
    assert got.dtype == dtype and got.shape == want.shape
    assert np.isfinite(got).all(), "unwritten (poisoned) elements"
    assert rel_err(got, want) < tol(dtype)
    if PY is None:
        assert np.array_equal(got, got.T), "K_R(X, X) must be exactly symmetric"


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, (v or 0 for v in s))))
def test_emulated_adjoint(emulator, shape, dtype, act):
    P, P2, Np, M = shape
    rng = np.random.default_rng(1 + hash((P, P2, Np, M)) % 2**32)
    PX = patches(rng, P, Np, M, dtype)
    PY = None if P2 is None else patches(rng, P2, Np, M, dtype)
    for symmetric in ([True, False] if PY is None else [False]):
        W = sym_matrix(rng, P, dtype) if symmetric else np.ascontiguousarray(
            rng.standard_normal((P, P if PY is None else P2)), dtype=dtype)
        got = emulator.local_kernel_adjoint(PX, PY, W, symmetric, act, 0.7)
        want = core.local_kernel_adjoint(PX, PY, W, symmetric, act, 0.7, 0)
        assert got.dtype == dtype and got.shape == (Np, Np)
        assert rel_err(got, want) < tol(dtype), symmetric
        if symmetric:
            assert np.array_equal(got, got.T)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, (v or 0 for v in s))))
def test_emulated_local_kernel_and_diag(emulator, poison, shape, dtype, act):
    P, P2, Np, M = shape
    rng = np.random.default_rng(2 + hash((P, P2, Np, M)) % 2**32)
    PX = patches(rng, P, Np, M, dtype)
    PY = None if P2 is None else patches(rng, P2, Np, M, dtype)
    got = emulator.local_kernel(PX, PY, act, 1.1)
    want = core.local_kernel(PX, PY, act, 1.1, 0)
    assert got.shape == want.shape and np.isfinite(got).all()
    assert rel_err(got, want) < tol(dtype)
    Q = sym_matrix(rng, Np, dtype)
    gd = emulator.renormalized_kernel_diag(PX, Q, act, 1.1, 0.9)
    wd = core.renormalized_kernel_diag(PX, Q, act, 1.1, 0.9, 0)
    assert gd.shape == (P,) and np.isfinite(gd).all()
    assert rel_err(gd, wd) < tol(dtype)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_emulated_huge_and_tiny_rows(emulator, dtype, act):
    """Patch rows near the largest and smallest floats (issue 14): the CUDA preparation
    rescales by powers of two as the C++ one does, so both agree (erf: the correlation limit
    instead of 0; relu and linear, used only where representable: exact scaling)."""
    rng = np.random.default_rng(5)
    PX = rng.standard_normal((4, 3, 5))
    k = {"erf": 600 if dtype == np.float64 else 100, "relu": 500 if dtype == np.float64 else 60,
         "linear": 500 if dtype == np.float64 else 60}[act]
    for kk in (k, -k):
        Z = np.ascontiguousarray(np.ldexp(PX, kk).astype(dtype))
        got = emulator.local_kernel(Z, None, act, 1.0)
        want = core.local_kernel(Z, None, act, 1.0, 0)
        assert np.isfinite(got).all()
        # erf near u = 1 (the diagonal, for huge rows): an ulp of u moves K by ~sqrt(eps)
        atol = 4 * np.sqrt(np.finfo(dtype).eps) if act == "erf" else tol(dtype) * np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=tol(dtype), atol=atol)
        if act == "erf" and kk > 0:  # the diagonal tends to 1, not to 0
            ii = np.arange(3)
            np.testing.assert_allclose(got[np.arange(4), np.arange(4)][:, ii, ii], 1.0, atol=1e-3)


@pytest.mark.parametrize("act", ["erf", "relu"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_emulated_nngp_map(emulator, dtype, act):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((13, 9))
    Y = rng.standard_normal((7, 9))
    Y[2] = 0  # a zero input: the relu map is 0 there, not NaN
    K0 = (X @ Y.T / 9).astype(dtype)
    dx, dy = (np.einsum("pi,pi->p", A, A) / 9 for A in (X, Y))
    dx, dy = dx.astype(dtype), dy.astype(dtype)
    got, want = K0.copy(), K0.copy()
    emulator.nngp_map_inplace(got, dx, dy, act)
    core.nngp_map_inplace(want, dx, dy, act, 0)
    assert rel_err(got, want) < tol(dtype)


def test_emulated_adjoint_identity(emulator):
    """sum W * K_R(Q) = (1 / (lambda1 Np)) sum Q * G(W), all on the CUDA code path."""
    rng = np.random.default_rng(4)
    P, Np, M, lam1 = 11, 6, 5, 1.7
    PX = patches(rng, P, Np, M, np.float64)
    Q, W = sym_matrix(rng, Np, np.float64), sym_matrix(rng, P, np.float64)
    KR = emulator.renormalized_kernel(PX, None, Q, "erf", 1.0, lam1)
    G = emulator.local_kernel_adjoint(PX, None, W, True, "erf", 1.0)
    lhs, rhs = float((W * KR).sum()), float((Q * G).sum()) / (lam1 * Np)
    assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), 1.0)


# (P, Np, M, Nc, chains of W, v, r-or-tangents): odd sizes, broadcast chains, M > the
# 256-thread slices of the CNN dw sum, and (Np = 200: 7 or 15 samples per tile) tiles of
# samples that do not divide P.
NET_SHAPES = [(7, 5, 3, 4, (1, 1, 1)), (23, 9, 13, 3, (2, 1, 2)), (5, 3, 300, 2, (1, 3, 3)),
              (17, 200, 2, 2, (2, 2, 1))]


def _net_args(rng, shape, local, dtype):
    P, Np, M, Nc, (cw, cv, cr) = shape
    Z = np.ascontiguousarray(rng.standard_normal((P, Np, M)), dtype=dtype)
    wtail = (Nc, Np, M) if local else (Nc, M)
    W = np.ascontiguousarray(rng.standard_normal((cw,) + wtail), dtype=dtype)
    v = np.ascontiguousarray(rng.standard_normal((cv, Nc, Np)), dtype=dtype)
    r = np.ascontiguousarray(rng.standard_normal((cr, P)), dtype=dtype)
    tW = np.ascontiguousarray(rng.standard_normal((cr,) + wtail), dtype=dtype)
    tv = np.ascontiguousarray(rng.standard_normal((cv, Nc, Np)), dtype=dtype)
    return Z, W, v, r, tW, tv


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("local", [False, True], ids=["cnn", "lcn"])
@pytest.mark.parametrize("shape", NET_SHAPES, ids=lambda s: "x".join(map(str, s[:4])))
def test_emulated_patch_passes(emulator, poison, shape, local, dtype, act):
    if not hasattr(core, "patch_forward"):
        pytest.skip("lkr._core has no patch passes")
    rng = np.random.default_rng(12)
    Z, W, v, r, tW, tv = _net_args(rng, shape, local, dtype)
    kw = dict(local=local, activation=act)
    got = emulator.patch_forward(Z, W, v, **kw)
    want = core.patch_forward(Z, W, v, **kw, nthreads=0)
    assert got.shape == want.shape and got.dtype == dtype
    assert rel_err(got, want) < tol(dtype)
    gW, gv = emulator.patch_vjp(Z, W, v, r, **kw)
    wW, wv = core.patch_vjp(Z, W, v, r, **kw, nthreads=0)
    assert gW.shape == wW.shape and gv.shape == wv.shape and gW.dtype == dtype
    assert rel_err(gW, wW) < tol(dtype) and rel_err(gv, wv) < tol(dtype)
    got = emulator.patch_jvp(Z, W, v, tW, tv, **kw)
    want = core.patch_jvp(Z, W, v, tW, tv, **kw, nthreads=0)
    assert got.shape == want.shape and rel_err(got, want) < tol(dtype)


def test_emulated_patch_shapes_are_checked(emulator):
    rng = np.random.default_rng(13)
    Z, W, v, r, _, _ = _net_args(rng, (4, 3, 2, 5, (2, 3, 1)), False, np.float64)
    with pytest.raises(ValueError, match="chains"):
        emulator.patch_forward(Z, W, v, local=False, activation="erf")
    with pytest.raises(ValueError, match="W must be"):
        emulator.patch_forward(Z, W[..., :1].copy(), v[:1].copy(), local=False, activation="erf")


def test_engine_rejects_bad_arguments(emulator):
    rng = np.random.default_rng(5)
    PX = patches(rng, 4, 3, 2, np.float64)
    with pytest.raises(TypeError, match="dtype"):
        emulator.renormalized_kernel(PX, None, np.eye(3, dtype=np.float32), "erf", 1, 1)
    with pytest.raises(ValueError, match="shape"):
        emulator.renormalized_kernel(PX, None, np.eye(4), "erf", 1, 1)
    with pytest.raises(ValueError, match="activation"):
        emulator.renormalized_kernel(PX, None, np.eye(3), "tanh", 1, 1)
    with pytest.raises(ValueError, match="contiguous"):
        emulator.local_kernel(np.asfortranarray(PX), None, "erf", 1)
    with pytest.raises(TypeError, match="float32 or float64"):
        emulator.local_kernel(PX.astype(np.float16), None, "erf", 1)


# ---------------------------------------------------------------------------------------------
# On a GPU
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def cp():
    skip_or_fail_without_gpu()
    import cupy

    return cupy


def _geometry(Np_side, m=3):
    # 2D patches: an (Np_side * m)^2 image, m x m filters, stride m, one channel.
    return lkr.PatchGeometry(input_shape=(Np_side * m, Np_side * m), filter_size=(m, m),
                             stride=(m, m), channels=1, boundary="periodic",
                             layout="channels_last")


@pytest.mark.gpu
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_public_api_matches_cpu(cp, poison, dtype, act):
    """Every public kernel: CuPy in -> CuPy out, equal to the NumPy path (odd sizes)."""
    rng = np.random.default_rng(6)
    g = _geometry(3)  # Np = 9 (pads to 12), M = 9
    X = rng.standard_normal((37, 9, 9)).astype(dtype)
    Y = rng.standard_normal((23, 9, 9)).astype(dtype)
    Q = sym_matrix(rng, g.num_patches, dtype)
    W = rng.standard_normal((37, 23)).astype(dtype)
    Ws = sym_matrix(rng, 37, dtype)
    Xd, Yd, Qd, Wd, Wsd = (cp.asarray(a) for a in (X, Y, Q, W, Ws))
    kw = dict(geometry=g, activation=act, lambda0=0.8)
    cases = [
        (lkr.renormalized_kernel, (X,), (Xd,), dict(Q=Q, lambda1=1.2), dict(Q=Qd, lambda1=1.2)),
        (lkr.renormalized_kernel, (X, Y), (Xd, Yd), dict(Q=Q), dict(Q=Qd)),
        (lkr.renormalized_kernel_diag, (X,), (Xd,), dict(Q=Q), dict(Q=Qd)),
        (lkr.local_kernel_adjoint, (X, Ws), (Xd, Wsd), {}, {}),
        (lkr.local_kernel_adjoint, (X, W), (Xd, Wd), dict(Y=Y), dict(Y=Yd)),
        (lkr.local_kernel, (X, Y), (Xd, Yd), {}, {}),
    ]
    for fn, cpu_args, gpu_args, cpu_kw, gpu_kw in cases:
        want = fn(*cpu_args, **kw, **cpu_kw)
        got = fn(*gpu_args, **kw, **gpu_kw)
        assert isinstance(got, cp.ndarray), fn.__name__
        assert got.dtype == dtype and got.shape == want.shape, fn.__name__
        assert bool(cp.isfinite(got).all()), f"{fn.__name__}: unwritten elements"
        assert rel_err(to_numpy(got), want) < tol(dtype), fn.__name__
    got = lkr.nngp(Xd.reshape(37, -1), Yd.reshape(23, -1), activation=act)
    want = lkr.nngp(X.reshape(37, -1), Y.reshape(23, -1), activation=act)
    assert isinstance(got, cp.ndarray) and rel_err(to_numpy(got), want) < tol(dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, (v or 0 for v in s))))
def test_gpu_backend_matches_core(cp, poison, shape, dtype):
    """lkr._cuda against lkr._core on the tile-straddling shapes of the emulator tests."""
    P, P2, Np, M = shape
    rng = np.random.default_rng(7)
    PX = patches(rng, P, Np, M, dtype)
    PY = None if P2 is None else patches(rng, P2, Np, M, dtype)
    Q = sym_matrix(rng, Np, dtype)
    W = np.ascontiguousarray(rng.standard_normal((P, P if PY is None else P2)), dtype=dtype)
    d = {k: (None if v is None else cp.asarray(v)) for k, v in dict(PX=PX, PY=PY, Q=Q, W=W).items()}
    for act in ACTS:
        pairs = [
            (_cuda.renormalized_kernel(d["PX"], d["PY"], d["Q"], act, 0.9, 1.1),
             core.renormalized_kernel(PX, PY, Q, act, 0.9, 1.1, 0)),
            (_cuda.local_kernel_adjoint(d["PX"], d["PY"], d["W"], False, act, 0.9),
             core.local_kernel_adjoint(PX, PY, W, False, act, 0.9, 0)),
            (_cuda.local_kernel(d["PX"], d["PY"], act, 0.9),
             core.local_kernel(PX, PY, act, 0.9, 0)),
            (_cuda.renormalized_kernel_diag(d["PX"], d["Q"], act, 0.9, 1.1),
             core.renormalized_kernel_diag(PX, Q, act, 0.9, 1.1, 0)),
        ]
        for got, want in pairs:
            assert isinstance(got, cp.ndarray)
            got = to_numpy(got)
            assert np.isfinite(got).all() and rel_err(got, want) < tol(dtype), act


@pytest.mark.gpu
def test_gpu_large_panels_and_symmetry(cp):
    """More groups than one grid row of blocks would hold in a naive layout, and symmetry."""
    rng = np.random.default_rng(8)
    P, Np, M = 300, 64, 16
    PX = patches(rng, P, Np, M, np.float32)
    Q = np.eye(Np, dtype=np.float32)
    got = _cuda.renormalized_kernel(cp.asarray(PX), None, cp.asarray(Q), "erf", 1.0, 1.0)
    want = core.renormalized_kernel(PX, None, Q, "erf", 1.0, 1.0, 0)
    assert bool((got == got.T).all())
    assert rel_err(to_numpy(got), want) < 1e-5


@pytest.mark.gpu
@pytest.mark.parametrize("local", [False, True], ids=["cnn", "lcn"])
def test_gpu_patch_passes_match_core(cp, poison, local):
    if not hasattr(core, "patch_forward"):
        pytest.skip("lkr._core has no patch passes")
    for dtype in DTYPES:
        for shape in NET_SHAPES:
            rng = np.random.default_rng(14)
            args = _net_args(rng, shape, local, dtype)
            Z, W, v, r, tW, tv = args
            Zd, Wd, vd, rd, tWd, tvd = (cp.asarray(a) for a in args)
            for act in ACTS:
                kw = dict(local=local, activation=act)
                pairs = [(_cuda.patch_forward(Zd, Wd, vd, **kw),
                          core.patch_forward(Z, W, v, **kw, nthreads=0)),
                         (_cuda.patch_jvp(Zd, Wd, vd, tWd, tvd, **kw),
                          core.patch_jvp(Z, W, v, tW, tv, **kw, nthreads=0))]
                pairs += list(zip(_cuda.patch_vjp(Zd, Wd, vd, rd, **kw),
                                  core.patch_vjp(Z, W, v, r, **kw, nthreads=0)))
                for got, want in pairs:
                    assert isinstance(got, cp.ndarray) and got.dtype == dtype
                    assert rel_err(to_numpy(got), want) < tol(dtype), (shape, act)


def test_dispatch_numpy_in_numpy_out():
    rng = np.random.default_rng(9)
    g = _geometry(2)
    X = rng.standard_normal((5, 6, 6))
    out = lkr.renormalized_kernel(X, Q=np.eye(g.num_patches), geometry=g)
    assert type(out) is np.ndarray
    assert backend.implementation(np) is backend.core()


@pytest.mark.gpu
def test_dispatch_cupy_in_cupy_out(cp):
    rng = np.random.default_rng(10)
    g = _geometry(2)
    X = cp.asarray(rng.standard_normal((5, 6, 6)))
    assert backend.implementation(cp) is _cuda
    for out in (lkr.renormalized_kernel(X, Q=cp.eye(g.num_patches), geometry=g),
                lkr.renormalized_kernel_diag(X, Q=cp.eye(g.num_patches), geometry=g),
                lkr.local_kernel_adjoint(X, cp.eye(5), geometry=g),
                lkr.local_kernel(X, geometry=g),
                lkr.nngp(X.reshape(5, -1))):
        assert isinstance(out, cp.ndarray)
    with pytest.raises(TypeError, match="device"):
        lkr.renormalized_kernel(X, Q=np.eye(g.num_patches), geometry=g)


@pytest.mark.gpu
def test_torch_cuda_tensors_via_dlpack(cp):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA")
    rng = np.random.default_rng(11)
    g = _geometry(2)
    X = rng.standard_normal((5, 6, 6))
    Xt = torch.from_numpy(X).cuda()
    out = lkr.renormalized_kernel(Xt, Q=torch.eye(g.num_patches, dtype=torch.float64).cuda(),
                                  geometry=g)
    assert isinstance(out, torch.Tensor) and out.is_cuda
    want = lkr.renormalized_kernel(X, Q=np.eye(g.num_patches), geometry=g)
    assert rel_err(out.cpu().numpy(), want) < 1e-11


@pytest.mark.gpu
def test_gpu_info(cp):
    info = backend.info()
    assert "cupy" in info
    d = _cuda.device_info()
    assert d["multiprocessors"] > 0
