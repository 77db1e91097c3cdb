"""The collapsed sampler's compiled factor calls (csrc/lkr/cholupdate.cpp) against NumPy
references: refactorisation of A = T I + G^T G (the oracle), the plain rotation loop, and the
CUDA engine's counterpart (lkr._cuda.collapsed), on random shapes (hypothesis)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lkr import _cuda, backend
from lkr.train._collapsed_linalg import augmented_factor, loglik

core = backend.core()


# -- NumPy references ------------------------------------------------------------------------
def factor_of(A, Y):
    """The augmented factor (P, P + D) of one chain: [L^T | L^{-1} Y]."""
    L = np.linalg.cholesky(A)
    return np.concatenate([L.T, np.linalg.solve(L, Y)], axis=1)


def unpack(S):
    P = S.shape[0]
    L = S[:, :P].T
    return L @ L.T, L @ S[:, P:]


def rotations_reference(S, X, sign):
    """The textbook rank-1 up/downdates, one vector after the other (plain NumPy)."""
    S = S.copy()
    P, R = S.shape
    for x0 in X:
        x = np.zeros(R)
        x[:P] = x0
        for j in range(P):
            d = S[j, j]
            rho = np.sqrt(d * d + sign * x[j] ** 2)
            c, s = rho / d, x[j] / d
            S[j, j] = rho
            S[j, j + 1:] = (S[j, j + 1:] + sign * s * x[j + 1:]) / c
            x[j + 1:] = c * x[j + 1:] - s * S[j, j + 1:]
    return S


def loglik_of(A, Y):
    L = np.linalg.cholesky(A)
    b = np.linalg.solve(L, Y)
    return -0.5 * (b * b).sum() - Y.shape[1] * np.log(np.diag(L)).sum()


def sweep_reference(S, G, Gp, logu, block):
    """Metropolis over the blocks by refactorisation: (accepted, delta, S, G) per chain."""
    C, n, P = G.shape
    nb = n // block
    acc = np.zeros((C, nb), dtype=bool)
    delta = np.zeros((C, nb))
    S, G = S.copy(), G.copy()
    for c in range(C):
        A, Y = unpack(S[c])
        ll = loglik_of(A, Y)
        for a in range(nb):
            r = slice(a * block, (a + 1) * block)
            A2 = A - G[c, r].T @ G[c, r] + Gp[c, r].T @ Gp[c, r]
            ll2 = loglik_of(A2, Y)
            delta[c, a] = ll2 - ll
            if logu[c, a] < ll2 - ll:
                acc[c, a] = True
                A, ll = A2, ll2
                G[c, r] = Gp[c, r]
        S[c] = factor_of(A, Y)
    return acc, delta, S, G


def _problem(rng, C, P, D, n, T=0.1, scale=0.5):
    G = rng.standard_normal((C, n, P)) * scale / np.sqrt(n)
    Y = rng.standard_normal((P, D))
    return G, Y, augmented_factor(G, Y, T)


# -- chol_update -----------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(C=st.integers(1, 3), P=st.integers(1, 24), D=st.integers(1, 3), k=st.integers(1, 5),
       seed=st.integers(0, 2**31 - 1), amp=st.floats(0.01, 3.0))
def test_chol_update_equals_refactorisation(C, P, D, k, seed, amp):
    rng = np.random.default_rng(seed)
    G, Y, S = _problem(rng, C, P, D, n=3)
    X = rng.standard_normal((C, k, P)) * amp
    up = S.copy()
    ok = core.chol_update(up, X, 1, nthreads=0)
    assert ok.dtype == np.uint8 and ok.all()
    for c in range(C):
        A, Yc = unpack(S[c])
        want = factor_of(A + X[c].T @ X[c], Yc)
        np.testing.assert_allclose(up[c], want, rtol=1e-10, atol=1e-11 * np.abs(want).max())
        np.testing.assert_allclose(up[c], rotations_reference(S[c], X[c], 1), rtol=1e-12,
                                   atol=1e-13 * np.abs(want).max())
    # and the downdate takes it back
    ok = core.chol_update(up, X, -1, nthreads=0)
    assert ok.all()
    np.testing.assert_allclose(up, S, rtol=1e-8, atol=1e-9 * np.abs(S).max())


def test_chol_update_keeps_the_upper_part_untouched_and_the_labels():
    rng = np.random.default_rng(1)
    _, Y, S = _problem(rng, 2, 9, 2, n=4)
    below = np.tril_indices(9, -1)
    S[:, below[0], below[1]] = 7.0        # never read nor written
    X = rng.standard_normal((2, 3, 9))
    core.chol_update(S, X, 1, nthreads=1)
    assert np.all(S[:, below[0], below[1]] == 7.0)
    for c in range(2):
        A, Yc = unpack(np.where(np.arange(9)[:, None] > np.arange(11)[None, :], 0.0, S[c]))
        np.testing.assert_allclose(Yc, Y, rtol=1e-12, atol=1e-12)


def test_chol_downdate_that_loses_definiteness_says_so():
    rng = np.random.default_rng(2)
    _, _, S = _problem(rng, 2, 6, 1, n=2, T=0.1)
    X = np.zeros((2, 1, 6))
    X[1, 0, 0] = 10.0                          # removes far more than A holds
    ok = core.chol_update(S, X, -1, nthreads=1)
    assert ok.tolist() == [1, 0]


def test_chol_update_checks_its_arrays():
    S = np.zeros((2, 4, 5))
    with pytest.raises(ValueError, match=r"X must have shape \(C, k, P\)"):
        core.chol_update(S, np.zeros((2, 1, 3)), 1, nthreads=1)
    with pytest.raises(ValueError, match="sign"):
        core.chol_update(S, np.zeros((2, 1, 4)), 2, nthreads=1)
    with pytest.raises(ValueError, match="writeable C-contiguous"):
        core.chol_update(np.zeros((2, 5, 4)).transpose(0, 2, 1), np.zeros((2, 1, 4)), 1,
                         nthreads=1)
    with pytest.raises(TypeError, match="float64"):
        core.chol_update(S.astype(np.float32), np.zeros((2, 1, 4)), 1, nthreads=1)
    with pytest.raises(ValueError, match=r"S must have shape \(C, P, P \+ D\)"):
        core.chol_update(np.zeros((2, 4, 3)), np.zeros((2, 1, 4)), 1, nthreads=1)


# -- collapsed_sweep -------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(C=st.integers(1, 3), P=st.integers(1, 20), D=st.integers(1, 3), block=st.integers(1, 4),
       nb=st.integers(1, 5), seed=st.integers(0, 2**31 - 1), move=st.floats(0.05, 2.0))
def test_sweep_equals_metropolis_by_refactorisation(C, P, D, block, nb, seed, move):
    rng = np.random.default_rng(seed)
    n = block * nb
    G, Y, S = _problem(rng, C, P, D, n, scale=2.0)
    Gp = G + move * rng.standard_normal(G.shape) / np.sqrt(n)
    # log-uniforms, but none within 1e-7 of a delta (so both sides decide alike)
    logu = np.log(rng.random((C, nb)))
    want_acc, want_delta, want_S, want_G = sweep_reference(S, G, Gp, logu, block)
    assert np.all(np.abs(logu - want_delta) > 1e-7)
    S1, G1 = S.copy(), G.copy()
    acc, delta, status = core.collapsed_sweep(S1, G1, Gp, logu, block, nthreads=0)
    assert status.tolist() == [0] * C
    assert (acc.astype(bool) == want_acc).all()
    np.testing.assert_allclose(delta, want_delta, rtol=1e-8, atol=1e-9)
    np.testing.assert_array_equal(G1, want_G)
    np.testing.assert_allclose(S1, want_S, rtol=1e-9, atol=1e-10 * np.abs(want_S).max())


def test_unchanged_proposal_has_zero_delta_and_is_always_accepted():
    rng = np.random.default_rng(3)
    G, Y, S = _problem(rng, 2, 15, 2, 12, T=0.01, scale=3.0)
    S1 = S.copy()
    acc, delta, status = core.collapsed_sweep(S1, G.copy(), G, np.full((2, 4), -1e-9), 3,
                                              nthreads=1)
    assert np.abs(delta).max() < 1e-10
    assert acc.all() and not status.any()
    np.testing.assert_allclose(S1, S, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(loglik(S1), loglik(S), rtol=1e-12)


def test_sweep_reports_a_broken_factor():
    rng = np.random.default_rng(4)
    G, Y, S = _problem(rng, 2, 8, 1, 4)
    G[1, 0] *= 100.0   # chain 1's features no longer those of its factor: E is not PD
    acc, delta, status = core.collapsed_sweep(S, G, G.copy(), np.zeros((2, 4)), 1, nthreads=1)
    assert status.tolist() == [0, 1]
    assert np.isnan(delta[1]).all() and not acc[1].any()


def test_sweep_checks_its_arrays():
    S, G = np.zeros((2, 4, 5)), np.zeros((2, 6, 4))
    with pytest.raises(ValueError, match="block"):
        core.collapsed_sweep(S, G, G.copy(), np.zeros((2, 2)), 4, nthreads=1)
    with pytest.raises(ValueError, match=r"logu must have shape \(2, 3\)"):
        core.collapsed_sweep(S, G, G.copy(), np.zeros((2, 2)), 2, nthreads=1)
    with pytest.raises(ValueError, match="Gp must have the shape of G"):
        core.collapsed_sweep(S, G, G[:, :3].copy(), np.zeros((2, 3)), 2, nthreads=1)
    with pytest.raises(ValueError, match=r"G must have shape \(C, n, P\)"):
        core.collapsed_sweep(S, np.zeros((2, 6, 3)), np.zeros((2, 6, 3)), np.zeros((2, 3)), 2,
                             nthreads=1)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_sweep_does_not_depend_on_the_thread_count(threads):
    rng = np.random.default_rng(5)
    G, Y, S = _problem(rng, 5, 30, 2, 24)
    Gp = G + rng.standard_normal(G.shape) * 0.1
    logu = np.log(rng.random((5, 8)))
    S0, G0 = S.copy(), G.copy()
    out0 = core.collapsed_sweep(S0, G0, Gp, logu, 3, nthreads=1)
    S1, G1 = S.copy(), G.copy()
    out1 = core.collapsed_sweep(S1, G1, Gp, logu, 3, nthreads=threads)
    for a, b in zip(out0, out1):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(S0, S1)


def test_cuda_engine_counterpart_agrees_with_the_compiled_sweep():
    # the CuPy path's refactorising implementation, run over NumPy
    eng = _cuda.Engine(np, None, lambda: 2)
    rng = np.random.default_rng(6)
    G, Y, S = _problem(rng, 3, 12, 2, 8, scale=2.0)
    Gp = G + 0.5 * rng.standard_normal(G.shape) / np.sqrt(8)
    logu = np.log(rng.random((3, 4)))
    S1, G1 = S.copy(), G.copy()
    a1, d1, s1 = core.collapsed_sweep(S1, G1, Gp, logu, 2, nthreads=1)
    S2, G2 = S.copy(), G.copy()
    a2, d2, s2 = eng.collapsed_sweep(S2, G2, Gp, logu, 2)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_allclose(d1, d2, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(S1, S2, rtol=1e-9, atol=1e-10)
    X = rng.standard_normal((3, 2, 12))
    ok1, ok2 = core.chol_update(S1, X, 1, nthreads=1), eng.chol_update(S2, X, 1)
    np.testing.assert_array_equal(ok1, ok2)
    np.testing.assert_allclose(S1, S2, rtol=1e-9, atol=1e-10)
