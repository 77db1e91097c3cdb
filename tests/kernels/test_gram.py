"""lkr.ntk.gram by BLAS syrk and the spectrum functions' Gram route (issue 13): results
against plain NumPy for odd shapes and both dtypes, the SVD route, and the cheaper
finiteness / symmetry checks."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lkr import _gram, ntk, spectrum


def _ref(J):
    J64 = J.astype(np.float64)
    return J64 @ J64.T


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 70), st.integers(1, 90), st.sampled_from([np.float64, np.float32]),
       st.sampled_from(["C", "F", "strided"]), st.integers(0, 2**31 - 1))
def test_gram_default_path_matches_matmul(R, N, dtype, layout, seed):
    J = np.random.default_rng(seed).standard_normal((R, 2 * N)).astype(dtype)
    J = J[:, ::2] if layout == "strided" else np.asfortranarray(J[:, :N]) if layout == "F" \
        else np.ascontiguousarray(J[:, :N])
    G = ntk.gram(J)
    ref = _ref(J)
    assert G.dtype == dtype and G.shape == (R, R)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(G, ref, rtol=tol, atol=tol * np.abs(ref).max())
    np.testing.assert_array_equal(G, G.T)


def test_gram_panels_accumulate_across_many_panels():
    rng = np.random.default_rng(1)
    J = rng.standard_normal((37, 1001))
    for cols in (1, 7, 64, 1000, 5000):
        np.testing.assert_allclose(_gram.gram(J[:, ::1].astype(np.float32), cols), _ref(J),
                                   rtol=1e-4, atol=1e-3)
        G = _gram.gram(J, cols)
        np.testing.assert_allclose(G, _ref(J), rtol=1e-12, atol=1e-10)
        np.testing.assert_array_equal(G, G.T)


def test_panel_columns_compute_bound_and_bounded():
    assert _gram.panel_columns(512, 206848) == 2048   # 2^20 / 512 numbers per panel
    assert _gram.panel_columns(4096, 10**6) == 4096   # at least R columns
    assert _gram.panel_columns(3, 5) == 5


@pytest.mark.parametrize("where", [(0, 0), (4, 2), (6, 10)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("strided", [False, True])
def test_gram_refuses_non_finite_naming_the_entry(where, bad, strided):
    J = np.ones((7, 22))
    J[where] = bad   # even columns: also inside J[:, ::2], at column where[1] // 2
    col = where[1] // 2 if strided else where[1]
    with pytest.raises(ValueError, match=rf"non-finite.*\({where[0]}, {col}\)"):
        ntk.gram(J[:, ::2] if strided else J)


def test_gram_overflow_is_an_error():
    J = np.full((3, 4), 1e30, dtype=np.float32)
    with pytest.raises(ValueError, match="overflows float32"):
        ntk.gram(J)


# -- the spectrum functions' Gram route ----------------------------------------------------
def _spectrum(R, N, s, seed=0):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((R, len(s))))
    V, _ = np.linalg.qr(rng.standard_normal((N, len(s))))
    return (U * s) @ V.T


@pytest.mark.parametrize("shape", [(13, 150), (150, 13), (40, 41)])
def test_gram_route_equals_svd_route(shape):
    s = np.geomspace(5, 0.5, min(shape))
    J = _spectrum(*shape, s)
    for via in ("auto", "gram"):
        np.testing.assert_allclose(spectrum.singular_values(J, via=via), s, rtol=1e-11)
        assert spectrum.effective_rank(J, via=via) == pytest.approx(
            spectrum.effective_rank(J, via="svd"), rel=1e-12)
        assert spectrum.stable_rank(J, via=via) == pytest.approx(
            spectrum.stable_rank(J, via="svd"), rel=1e-12)
        assert spectrum.condition_number(J, via=via) == pytest.approx(10.0, rel=1e-10)
        assert spectrum.numerical_rank(J, via=via) == min(shape)
    f32 = J.astype(np.float32)
    np.testing.assert_allclose(spectrum.singular_values(f32, via="gram"), s, rtol=1e-4)
    assert spectrum.singular_values(f32).dtype == np.float32
    with pytest.raises(ValueError, match="via"):
        spectrum.singular_values(J, via="qr")


@pytest.mark.parametrize("via", ["auto", "gram", "svd"])
@pytest.mark.parametrize("shape", [(6, 40), (40, 6)])
def test_effective_rank_exact_on_known_spectra(via, shape):
    k = min(shape)
    assert spectrum.effective_rank(_spectrum(*shape, np.full(k, 2.5)), via=via) == \
        pytest.approx(k, rel=1e-12)
    rng = np.random.default_rng(2)
    one = np.outer(rng.standard_normal(shape[0]), rng.standard_normal(shape[1]))
    assert spectrum.effective_rank(one, via=via) == pytest.approx(1.0, rel=1e-12)
    assert spectrum.stable_rank(one, via=via) == pytest.approx(1.0, rel=1e-12)


def test_auto_falls_back_to_svd_where_the_gram_cannot_resolve():
    s = np.geomspace(1, 1e-7, 8)   # kappa 1e7: lambda_min / lambda_1 = 1e-14, unresolved
    J = _spectrum(8, 200, s)
    assert spectrum.condition_number(J) == pytest.approx(1e7, rel=1e-6)
    assert spectrum.numerical_rank(J) == 8
    # forced through the Gram the smallest value is rounding
    assert spectrum.numerical_rank(J, via="gram", rtol=1e-9) < 8 or \
        spectrum.condition_number(J, via="gram") != pytest.approx(1e7, rel=1e-6)


def test_jacobian_nan_refused_on_every_route():
    J = _spectrum(5, 30, np.ones(5))
    J[3, 17] = np.nan
    for via in ("auto", "gram", "svd"):
        with pytest.raises(ValueError, match=r"non-finite.*\(3, 17\)"):
            spectrum.effective_rank(J, via=via)
    with pytest.raises(ValueError, match="non-finite"):
        spectrum.effective_rank(J.T)


# -- the panel symmetry / finiteness check -------------------------------------------------
@pytest.mark.parametrize("n", [1, 5, 64, 130, 700])
def test_check_symmetric_accepts_symmetric_and_refuses_the_rest(n):
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, n))
    A = X + X.T
    _gram.check_symmetric(A)
    for i, j in {(0, n - 1), (n - 1, 0), (n // 2, n // 3), (n - 1, n - 1)}:
        B = A.copy()
        if i != j:
            B[i, j] += 1e-3 * np.abs(A).max()
            with pytest.raises(ValueError, match="not symmetric"):
                _gram.check_symmetric(B)
        for bad in (np.nan, np.inf):
            C = A.copy()
            C[i, j] = bad
            if i != j:
                C[j, i] = bad   # symmetric non-finite entries must still be caught
            with pytest.raises(ValueError, match=rf"non-finite.*\({i}, {j}\)|non-finite.*\({j}, {i}\)"):
                _gram.check_symmetric(C)


def test_top_k_on_a_gram_refuses_bad_input_without_an_n_by_n_temporary():
    tracemalloc = pytest.importorskip("tracemalloc")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((800, 300))
    A = X @ X.T
    spectrum.top_k(A, 3, gram=True)   # warm up: imports allocate too
    tracemalloc.start()
    try:
        spectrum.top_k(A, 3, gram=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < A.nbytes / 4   # no copy of A, no A - A^T, no n x n mask
    B = A.copy()
    B[5, 9] += 1.0
    with pytest.raises(ValueError, match="not symmetric"):
        spectrum.top_k(B, 3, gram=True)
    B = A.copy()
    B[7, 7] = np.nan
    with pytest.raises(ValueError, match=r"non-finite.*\(7, 7\)"):
        spectrum.top_k(B, 3, gram=True)
    w = spectrum.top_k(A, 3, gram=True)
    np.testing.assert_allclose(w, np.sqrt(np.linalg.eigvalsh(A)[::-1][:3]), rtol=1e-10)
    assert math.isfinite(float(w[0]))
