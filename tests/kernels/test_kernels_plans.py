"""The GEMM plans of the linear local kernel and nngp (issue 13): the tiled symmetric
product against a plain GEMM, and the public results against plain NumPy references."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lkr
from lkr import kernels


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 600), st.integers(1, 40), st.sampled_from([np.float64, np.float32]),
       st.sampled_from([1, 2]), st.integers(0, 2**31 - 1))
def test_symmetric_product_equals_gemm_and_is_exactly_symmetric(n, k, dtype, threads, seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, k)).astype(dtype)
    S = rng.standard_normal((k, k))
    B = (A.astype(np.float64) @ (S + S.T)).astype(dtype)   # A Q B^T-like: A B^T symmetric
    ref = A.astype(np.float64) @ B.astype(np.float64).T
    ref = (ref + ref.T) / 2
    K = kernels._symmetric_product(A, B, np, threads)
    assert K.dtype == dtype
    np.testing.assert_array_equal(K, K.T)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(K, ref, rtol=tol, atol=tol * np.abs(ref).max())


def _reference_linear_KR(X, Q, g, lambda0, lambda1):
    PX = np.asarray(lkr.patches(X, g), dtype=np.float64)
    _, Np, M = PX.shape
    C = np.einsum("pim,qjm->pqij", PX, PX) / (lambda0 * M)
    return np.einsum("ij,pqij->pq", Q, C) / (lambda1 * Np)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("P", [3, 257, 300])
def test_linear_renormalized_kernel_against_reference(P, dtype):
    rng = np.random.default_rng(P)
    g = lkr.PatchGeometry(input_shape=(12,), filter_size=4, stride=2)
    Np = g.num_patches
    X = rng.standard_normal((P, 12))
    A = rng.standard_normal((Np, Np))
    Q = A + A.T    # indefinite symmetric: allowed
    ref = _reference_linear_KR(X, Q, g, 0.7, 1.3)
    for nthreads in (1, 2):
        K = lkr.renormalized_kernel(X.astype(dtype), Q=Q.astype(dtype), geometry=g,
                                    activation="linear", lambda0=0.7, lambda1=1.3,
                                    nthreads=nthreads)
        tol = 1e-12 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(K, ref, rtol=tol, atol=tol * np.abs(ref).max())
        np.testing.assert_array_equal(K, K.T)
    Y = rng.standard_normal((5, 12))
    KY = lkr.renormalized_kernel(X, Y, Q=Q, geometry=g, activation="linear")
    PX, PY = lkr.patches(X, g), lkr.patches(Y, g)
    want = np.einsum("pim,ij,qjm->pq", PX, Q, PY) / (Np * g.patch_size)
    np.testing.assert_allclose(KY, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("activation", ["linear", "erf", "relu"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(40, 300), (300, 8)])   # scale on K, scale on the inputs
def test_nngp_scale_plans_agree(activation, dtype, shape):
    rng = np.random.default_rng(0)
    X = rng.standard_normal(shape).astype(dtype)
    C = X.astype(np.float64) @ X.astype(np.float64).T / (2.0 * shape[1])
    K = lkr.nngp(X, activation=activation, lambda0=2.0)
    np.testing.assert_array_equal(K, K.T)
    d = np.diag(C)
    if activation == "linear":
        ref = C
    elif activation == "erf":
        ref = 2 / np.pi * np.arcsin(2 * C / np.sqrt(np.outer(1 + 2 * d, 1 + 2 * d)))
    else:
        u = np.clip(C / np.sqrt(np.outer(d, d)), -1, 1)
        ref = np.sqrt(np.outer(d, d)) * (np.sqrt(1 - u**2) + u * (np.pi - np.arccos(u))) / (2 * np.pi)
    tol = 1e-11 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(K, ref, rtol=tol, atol=tol * np.abs(ref).max())
    Kc = lkr.nngp(X, X[:7], activation=activation, lambda0=2.0)
    np.testing.assert_allclose(Kc, ref[:, :7], rtol=tol, atol=tol * np.abs(ref).max())
