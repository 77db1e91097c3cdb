"""Compiled kernels against the plain NumPy reference (docs/theory.md oracle 2), by hypothesis
over random geometries, input forms, activations, dtypes and cross sets."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernel_strategies import geometries, make_inputs, random_symmetric
from reference import (
    assert_close,
    geometry_patches,
    ref_adjoint,
    ref_bound,
    ref_fc_bound,
    ref_fc_nngp,
    ref_local_kernel,
    ref_renormalized,
    ref_renormalized_diag,
)
from testing import RTOL

import lkr

ACTS = st.sampled_from(["erf", "relu", "linear"])
DTYPES = st.sampled_from(["float64", "float32", "int64"])
FORMS = st.sampled_from(["natural", "flat", "spatial", "strided"])
LAMBDAS = st.sampled_from([1.0, 0.5, 2.5])
SEEDS = st.integers(0, 2**31 - 1)


def rtol_for(dtype):
    # integer inputs compute in float64
    return RTOL[np.dtype(np.float32 if dtype == "float32" else np.float64)]


def expected_dtype(*dtypes):
    return np.float32 if all(d == "float32" for d in dtypes) else np.float64


@st.composite
def cases(draw, cross=None):
    g = draw(geometries(max_patches=24))
    P = draw(st.integers(1, 5))
    P2 = draw(st.integers(1, 4)) if (draw(st.booleans()) if cross is None else cross) else None
    return dict(g=g, P=P, P2=P2, act=draw(ACTS), dtype=draw(DTYPES), form=draw(FORMS),
                lambda0=draw(LAMBDAS), lambda1=draw(LAMBDAS), seed=draw(SEEDS))


def inputs(c):
    rng = np.random.default_rng(c["seed"])
    X, _ = make_inputs(rng, c["g"], c["P"], c["form"], c["dtype"])
    Y = None if c["P2"] is None else make_inputs(rng, c["g"], c["P2"], c["form"], c["dtype"])[0]
    return rng, X, Y


@given(cases())
def test_renormalized_kernel_matches_reference(c):
    rng, X, Y = inputs(c)
    g = c["g"]
    Q = random_symmetric(rng, g.num_patches).astype(np.float32 if c["dtype"] == "float32" else np.float64)
    got = lkr.renormalized_kernel(X, Y, Q=Q, geometry=g, activation=c["act"],
                                  lambda0=c["lambda0"], lambda1=c["lambda1"])
    want, scale = ref_renormalized(geometry_patches(X, g), None if Y is None else geometry_patches(Y, g),
                                   Q, c["act"], c["lambda0"], c["lambda1"])
    assert got.dtype == expected_dtype(c["dtype"])
    assert_close(got, want, scale, rtol_for(c["dtype"]), "K_R")
    if Y is None:
        np.testing.assert_array_equal(got, got.T)  # symmetric by construction, not by luck


@given(cases(cross=False))
def test_renormalized_kernel_diag_matches_reference(c):
    rng, X, _ = inputs(c)
    g = c["g"]
    Q = random_symmetric(rng, g.num_patches)
    got = lkr.renormalized_kernel_diag(X, Q=Q, geometry=g, activation=c["act"], lambda0=c["lambda0"],
                                       lambda1=c["lambda1"])
    want, scale = ref_renormalized_diag(geometry_patches(X, g), Q, c["act"], c["lambda0"], c["lambda1"])
    assert got.shape == (c["P"],) and got.dtype == np.float64  # Q float64 promotes
    assert_close(got, want, scale, rtol_for(c["dtype"]), "diag K_R")
    full = lkr.renormalized_kernel(X, Q=Q, geometry=g, activation=c["act"], lambda0=c["lambda0"],
                                   lambda1=c["lambda1"])
    assert_close(got, np.diag(full), scale, rtol_for(c["dtype"]), "diag vs full")


@given(cases())
def test_local_kernel_matches_reference(c):
    rng, X, Y = inputs(c)
    g = c["g"]
    got = lkr.local_kernel(X, Y, geometry=g, activation=c["act"], lambda0=c["lambda0"])
    PX = geometry_patches(X, g)
    PY = None if Y is None else geometry_patches(Y, g)
    want = ref_local_kernel(PX, PY, c["act"], c["lambda0"])
    assert got.dtype == expected_dtype(c["dtype"])
    assert_close(got, want, ref_bound(PX, PY, c["act"], c["lambda0"]), rtol_for(c["dtype"]), "K")
    if Y is None:  # K_ij^{mu nu} = K_ji^{nu mu}, exactly
        np.testing.assert_array_equal(got, got.transpose(1, 0, 3, 2))


@given(cases(), st.booleans())
def test_adjoint_matches_reference(c, symmetric_w):
    rng, X, Y = inputs(c)
    g = c["g"]
    P2 = c["P"] if Y is None else c["P2"]
    W = rng.standard_normal((c["P"], P2))
    if symmetric_w and Y is None:
        W = W + W.T
    wdt = np.float32 if c["dtype"] == "float32" else np.float64
    W = W.astype(wdt)
    got = lkr.local_kernel_adjoint(X, W, geometry=g, Y=Y, activation=c["act"], lambda0=c["lambda0"])
    want, scale = ref_adjoint(geometry_patches(X, g), None if Y is None else geometry_patches(Y, g),
                              W, c["act"], c["lambda0"])
    assert got.shape == (g.num_patches, g.num_patches)
    assert got.dtype == expected_dtype(c["dtype"])
    assert_close(got, want, scale, rtol_for(c["dtype"]), "G")
    if symmetric_w and Y is None:
        np.testing.assert_array_equal(got, got.T)


@given(st.integers(1, 6), st.integers(1, 5), st.integers(1, 9), ACTS, DTYPES, LAMBDAS, SEEDS,
       st.booleans())
def test_fc_nngp_matches_reference(P, P2, N0, act, dtype, lambda0, seed, cross):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((P, N0)).astype(dtype) if dtype != "int64" else rng.integers(-3, 4, (P, N0))
    Y = None
    if cross:
        Y = (rng.standard_normal((P2, N0)).astype(X.dtype) if dtype != "int64"
             else rng.integers(-3, 4, (P2, N0)))
    got = lkr.nngp(X, Y, activation=act, lambda0=lambda0)
    want = ref_fc_nngp(X, Y, act, lambda0)
    assert got.dtype == expected_dtype(dtype)
    assert_close(got, want, ref_fc_bound(X, Y, act, lambda0), rtol_for(dtype), "FC K")
    if Y is None:
        np.testing.assert_array_equal(got, got.T)


def test_nngp_accepts_image_shaped_inputs():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 3, 5, 2))
    np.testing.assert_allclose(lkr.nngp(X), ref_fc_nngp(X.reshape(4, -1)), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("act", ["erf", "relu", "linear"])
def test_compiled_linear_and_every_map_through_the_core(act):
    """The Python layer takes the GEMM route for linear; the C++ core's linear path (and
    its erf/relu paths at tile-crossing sizes) must still agree with the reference."""
    from lkr import _core

    rng = np.random.default_rng(1)
    g = lkr.PatchGeometry((40,), 4, 3, channels=2, boundary="valid")  # Np = 13, M = 8
    PX = np.ascontiguousarray(lkr.patches(rng.standard_normal((70, 80)), g))
    PY = np.ascontiguousarray(lkr.patches(rng.standard_normal((45, 80)), g))
    Q = random_symmetric(rng, g.num_patches)
    W = rng.standard_normal((70, 45))
    for Y in (None, PY):
        want, scale = ref_renormalized(PX, Y, Q, act, 1.3, 0.7)
        got = _core.renormalized_kernel(PX, Y, Q, act, 1.3, 0.7, 0)
        assert_close(got, want, scale, 1e-12, "core K_R")
    want, scale = ref_adjoint(PX, PY, W, act, 1.3)
    assert_close(_core.local_kernel_adjoint(PX, PY, W, False, act, 1.3, 0), want, scale, 1e-12, "core G")
    # a strided W (a transposed view) is read through its strides
    Wt = np.ascontiguousarray(W.T).T
    assert_close(_core.local_kernel_adjoint(PX, PY, Wt, False, act, 1.3, 0), want, scale, 1e-12,
                 "core G, strided W")
    K = _core.local_kernel(PX[:9], PY[:7], act, 1.3, 0)
    assert_close(K, ref_local_kernel(PX[:9], PY[:7], act, 1.3), ref_bound(PX[:9], PY[:7], act, 1.3),
                 1e-12, "core K")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ["erf", "relu"])
def test_many_tiles_symmetric_and_cross(dtype, act):
    """Sizes that span several tiles in both directions, with ragged edges."""
    rng = np.random.default_rng(2)
    g = lkr.PatchGeometry((16,), 4, 2)  # Np = 8, M = 4: 64 samples a tile
    X = rng.standard_normal((150, 16)).astype(dtype)
    Y = rng.standard_normal((70, 16)).astype(dtype)
    Q = random_symmetric(rng, 8, psd=True).astype(dtype)
    rtol = RTOL[np.dtype(dtype)]
    PX, PY = geometry_patches(X, g), geometry_patches(Y, g)
    for y, py in ((None, None), (Y, PY)):
        want, scale = ref_renormalized(PX, py, Q, act)
        assert_close(lkr.renormalized_kernel(X, y, Q=Q, geometry=g, activation=act), want, scale, rtol, "K_R")
    W = rng.standard_normal((150, 150)).astype(dtype)
    W = W + W.T
    want, scale = ref_adjoint(PX, None, W, act)
    assert_close(lkr.local_kernel_adjoint(X, W, geometry=g, activation=act), want, scale, rtol, "G")


_ISA_SCRIPT = r"""
import sys, numpy as np, lkr
rng = np.random.default_rng(11)
out = {}
for name, g in (("s", lkr.PatchGeometry((13,), 3, 2, channels=2, boundary="valid")),
                ("b", lkr.PatchGeometry((6, 6), (3, 3), (1, 1)))):
    for dt in ("float64", "float32"):
        X = rng.standard_normal((21, g.input_size)).astype(dt)
        Y = rng.standard_normal((9, g.input_size)).astype(dt)
        A = rng.standard_normal((g.num_patches,) * 2)
        Q = ((A + A.T) / 2).astype(dt)
        W = rng.standard_normal((21, 21)).astype(dt)
        W = W + W.T
        for act in ("erf", "relu"):
            k = f"{name}_{dt}_{act}"
            out[k + "_X"], out[k + "_Y"], out[k + "_Q"], out[k + "_W"] = X, Y, Q, W
            out[k + "_KR"] = lkr.renormalized_kernel(X, Q=Q, geometry=g, activation=act)
            out[k + "_KRxy"] = lkr.renormalized_kernel(X, Y, Q=Q, geometry=g, activation=act)
            out[k + "_G"] = lkr.local_kernel_adjoint(X, W, geometry=g, activation=act)
            out[k + "_K"] = lkr.local_kernel(X[:5], Y[:4], geometry=g, activation=act)
            out[k + "_N"] = lkr.nngp(X, Y, activation=act)
np.savez(sys.argv[1], **out)
"""


@pytest.mark.parametrize("isa", ["base", "v3"])
def test_every_instruction_set_path(isa, tmp_path):
    """The tile kernels are compiled per instruction set (AVX-512, AVX2, baseline) and picked
    at run time; LKR_ISA caps the choice, so each path is checked on any x86-64 machine."""
    import os
    import subprocess
    import sys

    path = tmp_path / "out.npz"
    env = dict(os.environ, LKR_ISA=isa)
    subprocess.run([sys.executable, "-c", _ISA_SCRIPT, str(path)], check=True, env=env, timeout=120)
    data = np.load(path)
    geoms = {"s": lkr.PatchGeometry((13,), 3, 2, channels=2, boundary="valid"),
             "b": lkr.PatchGeometry((6, 6), (3, 3), (1, 1))}
    for name, g in geoms.items():
        for dt in ("float64", "float32"):
            rtol = RTOL[np.dtype(dt)]
            for act in ("erf", "relu"):
                k = f"{name}_{dt}_{act}"
                X, Y, Q, W = (data[k + s] for s in ("_X", "_Y", "_Q", "_W"))
                PX, PY = geometry_patches(X, g), geometry_patches(Y, g)
                want, scale = ref_renormalized(PX, None, Q, act)
                assert_close(data[k + "_KR"], want, scale, rtol, f"{isa} {k} K_R")
                want, scale = ref_renormalized(PX, PY, Q, act)
                assert_close(data[k + "_KRxy"], want, scale, rtol, f"{isa} {k} K_R(X, Y)")
                want, scale = ref_adjoint(PX, None, W, act)
                assert_close(data[k + "_G"], want, scale, rtol, f"{isa} {k} G")
                assert_close(data[k + "_K"], ref_local_kernel(PX[:5], PY[:4], act),
                             ref_bound(PX[:5], PY[:4], act), rtol, f"{isa} {k} K")
                assert_close(data[k + "_N"], ref_fc_nngp(X, Y, act), ref_fc_bound(X, Y, act), rtol,
                             f"{isa} {k} FC")
