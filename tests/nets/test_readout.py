"""The training objectives' compiled elementwise passes (csrc/lkr/readout.hpp) against
NumPy references, and their thread-count independence."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import erf

import lkr
from lkr import backend, nets

_TOL = {np.float64: 1e-12, np.float32: 1e-5}


def _sigma(act, h):
    if act == "linear":
        return h, np.ones_like(h)
    if act == "erf":
        return erf(h), 2 / math.sqrt(math.pi) * np.exp(-h * h)
    return np.maximum(h, 0), (h > 0).astype(h.dtype)


def _case(seed, C, P, K, dtype):
    rng = np.random.default_rng(seed)
    H = rng.standard_normal((C, P, K)).astype(dtype)
    u = rng.standard_normal((C, K)).astype(dtype)
    rc = rng.standard_normal((C, P)).astype(dtype)
    return H, u, rc


@settings(max_examples=40, deadline=None)
@given(C=st.integers(1, 3), P=st.integers(1, 40), K=st.integers(1, 600),
       act=st.sampled_from(["linear", "erf", "relu"]),
       dtype=st.sampled_from([np.float64, np.float32]), seed=st.integers(0, 2**31))
def test_passes_match_numpy(C, P, K, act, dtype, seed):
    core = backend.core()
    H, u, rc = _case(seed, C, P, K, dtype)
    H64, u64, rc64 = H.astype(np.float64), u.astype(np.float64), rc.astype(np.float64)
    S_ref, d_ref = _sigma(act, H64)
    f_ref = 0.7 * (S_ref * u64[:, None, :]).sum(axis=2)
    D_ref = d_ref * u64[:, None, :]
    S, f = np.empty_like(H), np.empty((C, P), dtype)
    D = H.copy()
    core.readout_forward(D, u, S, f, scale=0.7, activation=act, nthreads=0)
    tol = _TOL[dtype]
    # f is a sum of K terms: bound the error by the sum of magnitudes, not by |f|
    f_mag = 0.7 * (np.abs(S_ref) * np.abs(u64[:, None, :])).sum(axis=2)
    assert np.all(np.abs(f - f_ref) <= tol * (f_mag + 1e-30))
    np.testing.assert_allclose(S, S_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(D, D_ref, rtol=tol, atol=tol * np.abs(u64).max())
    g = np.empty((C, K), dtype)
    core.readout_backward(D, S, rc, g, nthreads=0)
    S64 = S.astype(np.float64)
    g_ref = (rc64[:, :, None] * S64).sum(axis=1)
    g_mag = (np.abs(rc64[:, :, None]) * np.abs(S64)).sum(axis=1)
    assert np.all(np.abs(g - g_ref) <= tol * (g_mag + 1e-30))
    np.testing.assert_allclose(D, D_ref * rc64[:, :, None], rtol=tol,
                               atol=tol * np.abs(u64).max() * np.abs(rc64).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_passes_are_bit_identical_for_every_thread_count(dtype):
    core = backend.core()
    H, u, rc = _case(1, 2, 300, 1100, dtype)   # above the one-thread threshold
    out = []
    for nt in (1, 2, 3, 0):
        S, f, D, g = np.empty_like(H), np.empty((2, 300), dtype), H.copy(), np.empty((2, 1100), dtype)
        core.readout_forward(D, u, S, f, scale=0.3, activation="erf", nthreads=nt)
        core.readout_backward(D, S, rc, g, nthreads=nt)
        out.append((S, f, D, g))
    for other in out[1:]:
        for a, b in zip(out[0], other):
            np.testing.assert_array_equal(a, b)


def test_passes_refuse_bad_buffers():
    core = backend.core()
    H, u, rc = _case(0, 1, 4, 5, np.float64)
    S, f = np.empty_like(H), np.empty((1, 4))
    with pytest.raises(ValueError, match="u must have shape"):
        core.readout_forward(H, u[:, :3], S, f, scale=1.0, activation="erf", nthreads=1)
    with pytest.raises(ValueError, match="S must be a writeable C-contiguous"):
        core.readout_forward(H, u, np.empty((1, 5, 4)).transpose(0, 2, 1), f, scale=1.0,
                             activation="erf", nthreads=1)
    with pytest.raises(TypeError, match="f has dtype float32"):
        core.readout_forward(H, u, S, f.astype(np.float32), scale=1.0, activation="erf",
                             nthreads=1)
    with pytest.raises(ValueError, match="activation"):
        core.readout_forward(H, u, S, f, scale=1.0, activation="tanh", nthreads=1)
    with pytest.raises(ValueError, match="g must have shape"):
        core.readout_backward(H, S, rc, np.empty((1, 4)), nthreads=1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["fc", "cnn"])
def test_fused_step_is_bit_identical_for_every_thread_count(kind, dtype):
    rng = np.random.default_rng(0)
    if kind == "fc":
        net = nets.FCNet(20, 300, seed=0, dtype=dtype)
        X = rng.standard_normal((250, 20)).astype(dtype)
    else:
        g = lkr.PatchGeometry((16, 16), (4, 4), (4, 4))
        net = nets.CNNNet(g, width=40, seed=0, dtype=dtype)
        X = rng.standard_normal((250, 16, 16)).astype(dtype)
    y = rng.standard_normal(250).astype(dtype)
    obj = net.prepare(X, dtype=dtype)
    p = net.init_params(3, chains=2)
    before = lkr.get_num_threads()
    out = []
    try:
        for nt in (1, 2):
            lkr.set_num_threads(nt)
            out.append(obj.value_and_grad(p, y))
            out.append(obj.value_and_grad(p, y))   # reused buffers give the same again
    finally:
        lkr.set_num_threads(before)
    for f, gr in out[1:]:
        np.testing.assert_array_equal(f, out[0][0])
        for k in gr:
            np.testing.assert_array_equal(gr[k], out[0][1][k])
    # and the same numbers as the net's own passes, to rounding
    f, gr = out[0]
    plain = net.prepare(X, dtype=dtype, fused=False).value_and_grad(p, y)
    tol = _TOL[dtype] * (10 if dtype == np.float32 else 100)
    np.testing.assert_allclose(f, plain[0], rtol=tol, atol=tol)
    for k in gr:
        scale = np.abs(plain[1][k]).max()
        np.testing.assert_allclose(gr[k], plain[1][k], rtol=tol, atol=tol * scale)
