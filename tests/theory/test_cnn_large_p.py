"""The CNN solver's large-P path: the multilevel start (theory/_large.py), the carried
inverse Hessian, the triangle-only gradient product, and a fit forced to stream its kernel
by a tiny memory budget -- all against the plain small-P path on small problems."""
import numpy as np
import pytest

import lkr
from lkr.theory import CNNTheory, _large


def _problem(P, seed=0):
    g = lkr.PatchGeometry((12,), 3, 3)          # Np = 4 patches of M = 3
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((P, 12))
    w = rng.standard_normal(3)
    v = rng.standard_normal(4)
    from scipy.special import erf
    y = erf(g.patches(X) @ w / np.sqrt(3)) @ v / 2
    return g, X, y


def test_gradient_from_the_factor_equals_the_full_adjoint():
    g, X, y = _problem(60)
    th = CNNTheory(g, 6.0, 0.05)
    th.set_data(X, y)
    Q = np.eye(4) + 0.2 * np.ones((4, 4))
    _, state = th._data(th._to_dev(Q))
    fast = th._cache.adjoint_of_inverse(*state)
    slow = th._cache.adjoint(th._B(state))
    assert fast is not None
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12 * np.abs(slow).max())
    # streamed operators take the general path
    th2 = CNNTheory(g, 6.0, 0.05, materialize=False)
    th2.set_data(X, y)
    assert th2._cache.adjoint_of_inverse(*th2._data(th2._to_dev(Q))[1]) is None


def test_carried_inverse_hessian_is_the_coordinate_change():
    rng = np.random.default_rng(1)
    n = 4
    tril = np.tril_indices(n)
    on_diag = tril[0] == tril[1]
    A = rng.standard_normal((n, n))
    L0s = np.linalg.cholesky(A @ A.T + n * np.eye(n))
    xs = 0.1 * rng.standard_normal(len(tril[0]))
    Hs = np.eye(len(xs))
    # the full problem's reference: the point itself, where x_f = 0
    from lkr.theory._optim import cholesky_point
    Q, M, _ = cholesky_point(L0s, xs, tril, on_diag)
    L0f = np.linalg.cholesky(Q)
    H = _large.carried_inverse_hessian((L0s, xs, Hs, tril, on_diag), L0f, tril, on_diag)
    # moving x_s by d moves x_f by J d: compare Q along both parametrisations
    d = 1e-4 * rng.standard_normal(len(xs))
    Qs = cholesky_point(L0s, xs + d, tril, on_diag)[0]
    # J is H^{1/2} up to rotation when Hs = I: check H = J J^T against finite differences
    J = np.linalg.cholesky(H)
    assert np.all(np.isfinite(J))
    Lf = np.linalg.cholesky(np.linalg.solve(L0f, np.linalg.solve(L0f, Qs).T))
    xf = Lf[tril].copy()
    xf[on_diag] = np.log(xf[on_diag])
    # |x_f| = |J d| to first order, for the J whose J J^T = H
    Jfd = np.empty((len(xs), len(xs)))
    for k in range(len(xs)):
        e = np.zeros(len(xs))
        e[k] = 1e-6

        def xf_of(x):
            Lx = np.linalg.cholesky(np.linalg.solve(L0f, np.linalg.solve(
                L0f, cholesky_point(L0s, x, tril, on_diag)[0]).T))
            out = Lx[tril].copy()
            out[on_diag] = np.log(out[on_diag])
            return out
        Jfd[:, k] = (xf_of(xs + e) - xf_of(xs - e)) / 2e-6
    np.testing.assert_allclose(H, Jfd @ Jfd.T, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(xf, Jfd @ d, rtol=1e-3, atol=1e-9)


@pytest.mark.parametrize("materialize", [None, False])
def test_multilevel_fit_reaches_the_same_saddle(monkeypatch, materialize):
    g, X, y = _problem(320)
    ref = CNNTheory(g, 16.0, 0.05, tol=1e-9).fit(X, y)
    assert ref.extra["start"] == "scalar saddle"
    monkeypatch.setattr(_large, "MULTILEVEL_MIN_P", 200)
    th = CNNTheory(g, 16.0, 0.05, tol=1e-9, materialize=materialize)
    sol = th.fit(X, y)
    assert sol.converged and sol.extra["start"].startswith("subsample P = 80")
    assert th.materialized is (materialize is None)
    np.testing.assert_allclose(sol.Q, ref.Q, rtol=1e-6, atol=1e-7)
    assert sol.action == pytest.approx(ref.action, rel=1e-10)


def test_tiny_budget_streams_and_matches_the_stored_fit(monkeypatch):
    g, X, y = _problem(200)
    stored = CNNTheory(g, 10.0, 0.05, tol=1e-9).fit(X, y)
    th = CNNTheory(g, 10.0, 0.05, tol=1e-9, max_bytes=10_000)   # far below the kernel's size
    sol = th.fit(X, y)
    assert not th.materialized and not sol.extra["materialized"]
    np.testing.assert_allclose(sol.Q, stored.Q, rtol=1e-6, atol=1e-7)
    from lkr.theory._cnn_odd_solve import _storage_note
    assert "STREAMED" in _storage_note(th) and "budget" in _storage_note(th)
    monkeypatch.setattr(_large, "MULTILEVEL_MIN_P", 150)
    sol2 = CNNTheory(g, 10.0, 0.05, tol=1e-9, max_bytes=10_000).fit(X, y)
    np.testing.assert_allclose(sol2.Q, stored.Q, rtol=1e-6, atol=1e-7)


def test_progress_argument_is_checked():
    g, _, _ = _problem(10)
    with pytest.raises(TypeError, match="progress"):
        CNNTheory(g, 4.0, 0.1, progress="yes")


def test_one_output_fixed_point_fails_at_large_alpha_and_works_at_small():
    """Why one output keeps BFGS (theory/_cnn_odd_solve.py, docs/cnn-theory-engine.md):
    at alpha ~ 100 (the regime of large P) the odd map (I + c G)^{-1} is undefined at the
    scalar start, and the error says so; at alpha = 2 the same iteration reaches the BFGS
    saddle."""
    from lkr.theory import _shared_outputs as so

    g, X, y = _problem(200)
    th = CNNTheory(g, 2.0, 0.01, tol=1e-9)                  # alpha = 100
    th.set_data(X, y)
    with pytest.raises(ValueError, match="fixed-point map undefined"):
        so.odd_fixed_point(th, th._n, th._start(None)[0], tol=1e-9, maxiter=100)
    th = CNNTheory(g, 100.0, 0.05, tol=1e-9)                # alpha = 2
    ref = th.fit(X, y)
    res = so.odd_fixed_point(th, th._n, th._start(None)[0], tol=1e-9, maxiter=100)
    assert res.converged and res.rel <= 1e-9
    np.testing.assert_allclose(res.state["Q"], ref.Q, rtol=1e-7, atol=1e-8)
