"""Non-odd (relu) activations with D outputs (docs/theory-beyond-odd.md section 3) and the
1/N-corrected predictor with D outputs (section 4.2): against the dense references
(tests/relu_multi_reference.py for FC, tests/theory_cnn_reference.py for CNN/LCN), the
special cases (D = 1, zero mean, Np = 1), finite differences, the saddle identities of the
correction, warm starts (fit_path, sweep) and bad input."""
import json
import warnings

import numpy as np
import pytest
import relu_multi_reference as rmr
import theory2_reference as t2
from theory_cnn_reference import Problem

import lkr
from lkr.theory import CNNTheory, DeepFCTheory, FCTheory, LCNTheory, TheoryRegimeWarning, sweep
from lkr.theory._correction import (
    corrected_kernels,
    corrected_posterior,
    corrected_posterior_multi,
)
from lkr.theory._noncentral import NonCentralProblem
from lkr.theory._noncentral_multi import NonCentralMultiProblem

G6 = lkr.PatchGeometry((6,), 2, 2)  # Np = 3, M = 2


def _fc_data(seed=0, P=14, N0=5, D=3, Pt=4):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((P, N0)) * rng.uniform(0.5, 1.5, (P, 1))
    Y = np.maximum(X[:, :D], 0) + 0.2 * rng.standard_normal((P, D)) + 0.3
    return X, Y, rng.standard_normal((Pt, N0))


def _fc_ref_kernels(X, Xt):
    """K, k, kappa, m, m0 written out (relu, lambda0 = 1)."""
    C = t2.fc_C(X)
    c = np.diag(C)
    ct = np.einsum("ij,ij->i", Xt, Xt) / Xt.shape[1]
    K = t2.relu_kernel(C, c, c)
    k = t2.relu_kernel(Xt @ X.T / X.shape[1], ct, c)
    return K, k, ct / 2, t2.relu_mean(c), t2.relu_mean(ct)


def _sym_rand(rng, n, scale, spd=False):
    A = rng.standard_normal((n, n)) * scale
    return np.eye(n) + A @ A.T if spd else A + A.T


def _fd_matrix(f, Q, h=1e-6, mask=None):
    """dS/dQ of a function of a symmetric matrix, entry pairs moved together."""
    n = Q.shape[0]
    g = np.zeros((n, n))
    for i in range(n):
        for j in range(i, n):
            if mask is not None and not mask[i, j]:
                continue
            E = np.zeros((n, n))
            E[i, j] = E[j, i] = h
            d = (f(Q + E) - f(Q - E)) / (2 * h)
            g[i, j] = g[j, i] = d if i == j else d / 2
    return g


# -- FC --------------------------------------------------------------------------------------
@pytest.mark.parametrize("width,T,lam1", [(40.0, 0.2, 1.0), (7.0, 0.1, 1.3), (3.5, 0.3, 0.8)])
def test_fc_matches_dense_reference(width, T, lam1):
    X, Y, Xt = _fc_data(1)
    th = FCTheory(width=width, temperature=T, activation="relu", lambda1=lam1, tol=1e-12)
    sol = th.fit(X, Y)
    K, k, kap, m, m0 = _fc_ref_kernels(X, Xt)
    ref = rmr.FCProblem(K, m, Y, width=width, T=T, lambda1=lam1)
    Qb, Qc = ref.solve()
    assert sol.converged and sol.rel_grad_norm <= 1e-12
    assert sol.Q.shape == (3, 3) and sol.conjugate.shape == (3, 3) and sol.num_outputs == 3
    np.testing.assert_allclose(sol.Q, Qb, atol=1e-9)
    np.testing.assert_allclose(sol.conjugate, Qc, atol=1e-9)
    assert sol.action == pytest.approx(ref.action(Qb, Qc), rel=1e-10)
    for corrected in (False, True):
        p = th.predict(Xt, corrected=corrected)
        mean, cov = ref.predict(Qb, Qc, k, kap, m0, corrected=corrected)
        assert p.mean.shape == (4, 3) and p.covariance.shape == (4, 3, 3)
        np.testing.assert_allclose(p.mean, mean, atol=1e-9 * np.abs(mean).max())
        np.testing.assert_allclose(p.covariance, cov, atol=1e-9 * np.abs(cov).max())
        np.testing.assert_allclose(p.variance, np.einsum("taa->ta", cov), atol=1e-9)
    ev = th.evaluate(Xt, np.ones((4, 3)))
    assert ev["per_output"]["error"].shape == (3,)
    assert ev["error"] == pytest.approx(ev["per_output"]["error"].mean())


def test_fc_action_and_gradient_against_reference_and_finite_differences():
    X, Y, _ = _fc_data(2)
    rng = np.random.default_rng(0)
    th = FCTheory(width=6, temperature=0.3, activation="relu", lambda1=1.2)
    th.set_data(X, Y)
    K, _, _, m, _ = _fc_ref_kernels(X, X[:1])
    ref = rmr.FCProblem(K, m, Y, width=6, T=0.3, lambda1=1.2)
    Qb, Qc = _sym_rand(rng, 3, 0.3, spd=True), 0.1 * _sym_rand(rng, 3, 1.0)
    assert th.action((Qb, Qc)) == pytest.approx(ref.action(Qb, Qc), rel=1e-12)
    gb, gq = th.gradient((Qb, Qc))
    rb, rq = ref.gradient(Qb, Qc)
    np.testing.assert_allclose(gb, rb, atol=1e-12 * (1 + np.abs(rb).max()))
    np.testing.assert_allclose(gq, rq, atol=1e-12 * (1 + np.abs(rq).max()))
    np.testing.assert_allclose(gb, _fd_matrix(lambda M: th.action((M, Qc)), Qb), atol=1e-7)
    np.testing.assert_allclose(gq, _fd_matrix(lambda M: th.action((Qb, M)), Qc), atol=1e-7)


def test_fc_one_output_equals_the_two_scalar_action():
    """D = 1 of the D-output action and solver is the (Q0, Q1) action, to ~1e-10."""
    X, Y, _ = _fc_data(3)
    y = Y[:, 0]
    th = FCTheory(width=5, temperature=0.2, activation="relu", lambda1=1.3, tol=1e-13)
    sol = th.fit(X, y)
    lam, U = th._cache["lam"], th._cache["U"]
    prob = NonCentralMultiProblem(lam / 1.3, (U.T @ y)[:, None], th._cache["w"] / np.sqrt(1.3),
                                  alpha=th.alpha, T=0.2)
    one = NonCentralProblem(lam, U.T @ y, th._cache["w"], alpha=th.alpha, T=0.2, lambda1=1.3)
    for q0, q1 in ((0.8, 0.3), (1.4, -0.2), (sol.Q, sol.conjugate)):
        ev, e1 = prob.evaluate([[q0]], [[q1]]), one.evaluate(q0, q1)
        assert ev.S == pytest.approx(e1.S, rel=1e-12, abs=1e-13)
        np.testing.assert_allclose([ev.gbar[0, 0], ev.gq[0, 0]], e1.grad, atol=1e-12)
    # the D-output solver on the one-column problem lands on the scalar saddle
    from lkr.theory._saddle import solve_pair

    res, _ = solve_pair(prob.evaluate_dict, 1, (np.eye(1), np.zeros((1, 1))), tol=1e-13,
                        maxiter=200)
    assert res.converged
    assert res.state["Qbar"][0, 0] == pytest.approx(sol.Q, rel=1e-10)
    assert res.state["Qc"][0, 0] == pytest.approx(sol.conjugate, rel=1e-9, abs=1e-11)
    assert res.state["S"] == pytest.approx(sol.action, rel=1e-12)


@pytest.mark.parametrize("activation", ["erf", "linear"])
def test_fc_zero_mean_is_the_odd_multi_output_action(activation):
    """m = 0 (an odd activation through the same code): Qbar = (I + Q)^{-1} = the odd
    D-output saddle, and S = S_odd - D."""
    X, Y, _ = _fc_data(4)
    odd = FCTheory(width=6, temperature=0.2, activation=activation, tol=1e-12).fit(X, Y)
    th = FCTheory(width=6, temperature=0.2, activation=activation)
    th.set_data(X, Y)
    lam, U = th._cache["lam"], th._cache["U"]
    prob = NonCentralMultiProblem(lam, U.T @ Y, np.zeros(len(Y)), alpha=th.alpha, T=0.2)
    from lkr.theory._saddle import solve_pair

    res, _ = solve_pair(prob.evaluate_dict, 3, (np.eye(3), np.zeros((3, 3))), tol=1e-12,
                        maxiter=500)
    assert res.converged
    Qb, Qc = res.state["Qbar"], res.state["Qc"]
    np.testing.assert_allclose(Qb, odd.Q, atol=1e-9)
    np.testing.assert_allclose(np.linalg.inv(np.eye(3) + Qc), Qb, atol=1e-9)
    assert res.state["S"] == pytest.approx(odd.action - 3, rel=1e-10)


def test_fc_deep_vanilla_relu_still_takes_the_central_action():
    X, Y, _ = _fc_data(5)
    with pytest.warns(UserWarning, match="odd"):
        th = DeepFCTheory(2, width=8, temperature=0.1, activation="relu")
    sol = th.fit(X, Y)
    assert sol.converged and sol.conjugate is None and sol.Q.shape == (3, 3)


# -- CNN / LCN ---------------------------------------------------------------------------------
def _cnn_data(seed=0, P=10, D=2, Pt=4):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((P, 6))
    Y = rng.standard_normal((P, D)) + 0.4
    return X, Y, rng.standard_normal((Pt, 6))


def _ref_test_kernels(ref, Xt, Qb, Qc):
    """K_R, k_R and the kappa_R blocks of the CNN reference, written from its kernels."""
    from reference import geometry_patches, ref_local_kernel
    from theory_cnn_reference import mean_of

    PT = np.asarray(geometry_patches(Xt, ref.g), float)
    Kx = ref_local_kernel(PT, ref.PX, ref.act, ref.lambda0)
    mt = mean_of(PT, ref.act, ref.lambda0)
    Qm = np.linalg.inv(np.eye(ref.n) + Qc) - Qb
    blocks = np.stack([ref.kr(Qb, Qm, K=ref_local_kernel(PT[t:t + 1], None, ref.act,
                                                         ref.lambda0),
                              m1=mt[t:t + 1], m2=mt[t:t + 1]) for t in range(len(PT))])
    return ref.kr(Qb, Qm), ref.kr(Qb, Qm, K=Kx, m1=mt), blocks


@pytest.mark.parametrize("cls", [CNNTheory, LCNTheory])
@pytest.mark.parametrize("width", [30.0, 8.0, 6.0])
def test_cnn_matches_dense_reference(cls, width):
    X, Y, Xt = _cnn_data(3)
    th = cls(geometry=G6, width=width, temperature=0.2, activation="relu", tol=1e-12)
    sol = th.fit(X, Y)
    ref = Problem(X, Y, G6, width=width, T=0.2, act="relu", lcn=cls is LCNTheory)
    Qb, Qc = ref.solve_noncentral()
    assert sol.converged and sol.Q.shape == (6, 6) and sol.conjugate.shape == (6, 6)
    np.testing.assert_allclose(sol.Q, Qb, atol=1e-9)
    np.testing.assert_allclose(sol.conjugate, Qc, atol=1e-9)
    assert sol.action == pytest.approx(ref.nc_action(Qb, Qc), rel=1e-10)
    KR, kR, blocks = _ref_test_kernels(ref, Xt, Qb, Qc)
    for corrected in (False, True):
        p = th.predict(Xt, corrected=corrected)
        mean, cov = rmr.posterior(KR, kR, blocks, Y.reshape(-1), 0.2,
                                  ref.alpha / ref.P if corrected else None)
        np.testing.assert_allclose(p.mean, mean, atol=1e-9 * np.abs(mean).max())
        np.testing.assert_allclose(p.covariance, cov, atol=1e-9 * np.abs(cov).max())


@pytest.mark.parametrize("cls", [CNNTheory, LCNTheory])
def test_cnn_gradients_against_finite_differences(cls):
    X, Y, _ = _cnn_data(4, P=8)
    rng = np.random.default_rng(1)
    th = cls(geometry=G6, width=7, temperature=0.3, activation="relu")
    th.set_data(X, Y)
    mask = th._block_mask() if cls is LCNTheory else np.ones((6, 6), bool)
    Qb = np.where(mask, _sym_rand(rng, 6, 0.2, spd=True), 0.0)
    Qc = np.where(mask, 0.1 * _sym_rand(rng, 6, 1.0), 0.0)
    gb, gq = th.gradient(Qb, Qc)
    np.testing.assert_allclose(gb, _fd_matrix(lambda M: th.action(M, Qc), Qb, mask=mask),
                               atol=1e-7)
    np.testing.assert_allclose(gq, _fd_matrix(lambda M: th.action(Qb, M), Qc, mask=mask),
                               atol=1e-7)
    ref = Problem(X, Y, G6, width=7, T=0.3, act="relu", lcn=cls is LCNTheory)
    rb, rq = ref.nc_gradient(Qb, Qc)
    np.testing.assert_allclose(gb, rb, atol=1e-11)
    np.testing.assert_allclose(gq, rq, atol=1e-11)


@pytest.mark.parametrize("cls", [CNNTheory, LCNTheory])
def test_streamed_equals_materialised(cls):
    X, Y, Xt = _cnn_data(14)
    kw = dict(geometry=G6, width=8, temperature=0.2, activation="relu", tol=1e-11)
    a, b = cls(materialize=True, **kw), cls(materialize=False, **kw)
    sa, sb = a.fit(X, Y), b.fit(X, Y)
    assert a.materialized and not b.materialized
    np.testing.assert_allclose(sa.Q, sb.Q, atol=1e-9)
    np.testing.assert_allclose(sa.conjugate, sb.conjugate, atol=1e-9)
    np.testing.assert_allclose(a.predict(Xt).covariance, b.predict(Xt).covariance, atol=1e-9)


def test_cnn_zero_mean_is_the_odd_multi_output_action():
    X, Y, _ = _cnn_data(5)
    kw = dict(geometry=G6, width=8, temperature=0.2, activation="relu", tol=1e-12,
              materialize=True)  # the streamed kernels compute the mean themselves
    with pytest.warns(UserWarning, match="odd"):
        odd = CNNTheory(mean="ignore", **kw)
    so = odd.fit(X, Y)
    th = CNNTheory(**kw)
    th.set_data(X, Y)
    th._cache._m = np.zeros((10, 3))  # switch the mean off
    sol = th._fit_bound(None, True, None, None)
    np.testing.assert_allclose(sol.Q, so.Q, atol=1e-9)
    np.testing.assert_allclose(np.linalg.inv(np.eye(6) + sol.conjugate), sol.Q, atol=1e-9)
    assert sol.action == pytest.approx(so.action - 6, rel=1e-10)


def test_cnn_one_patch_equals_fc():
    X, Y, Xt = _fc_data(6)
    g = lkr.PatchGeometry((5,), 5, 5)  # one patch: the whole input
    kw = dict(width=5, temperature=0.1, activation="relu", lambda1=1.3, tol=1e-12)
    cnn, fc = CNNTheory(geometry=g, **kw), FCTheory(**kw)
    sc, sf = cnn.fit(X, Y), fc.fit(X, Y)
    np.testing.assert_allclose(sc.Q, sf.Q, atol=1e-9)
    np.testing.assert_allclose(sc.conjugate, sf.conjugate, atol=1e-9)
    assert sc.action == pytest.approx(sf.action, rel=1e-10)
    for corrected in (False, True):
        pc, pf = cnn.predict(Xt, corrected=corrected), fc.predict(Xt, corrected=corrected)
        np.testing.assert_allclose(pc.mean, pf.mean, atol=1e-9)
        np.testing.assert_allclose(pc.covariance, pf.covariance, atol=1e-9)


def test_cnn_one_output_is_unchanged():
    """D = 1 through the generic code equals the one-output path (the same saddle)."""
    X, Y, Xt = _cnn_data(7)
    y = Y[:, 0]
    ref = Problem(X, y, G6, width=6, T=0.2, act="relu")
    Qb, Qc = ref.solve_noncentral()
    th = CNNTheory(geometry=G6, width=6, temperature=0.2, activation="relu", tol=1e-12)
    sol = th.fit(X, y[:, None])
    np.testing.assert_allclose(sol.Q, Qb, atol=1e-10)
    np.testing.assert_allclose(sol.conjugate, Qc, atol=1e-10)
    assert th.predict(Xt).mean.shape == (4,)


# -- warm starts, fit_path, sweep ----------------------------------------------------------------
@pytest.mark.parametrize("cls", [CNNTheory, LCNTheory])
@pytest.mark.parametrize("D", [1, 2])
def test_fit_path_carries_the_pair(cls, D):
    """Before: ValueError 'Q must have shape (3, 3), got (2, 3, 3)' (the pair as Q0)."""
    X, Y, _ = _cnn_data(8)
    y = Y if D > 1 else Y[:, 0]
    th = cls(geometry=G6, width=30, temperature=0.2, activation="relu", tol=1e-11)
    path = th.fit_path(X, y, [30, 12, 6])
    assert [p.solution.extra["start"] for p in path][1:] == ["Q0 (pair)"] * 2
    for p in path:
        cold = cls(geometry=G6, width=p.width, temperature=0.2, activation="relu",
                   tol=1e-11).fit(X, y)
        assert p.solution.converged
        np.testing.assert_allclose(p.solution.Q, cold.Q, atol=1e-8)
        np.testing.assert_allclose(p.solution.conjugate, cold.conjugate, atol=1e-8)


def test_fc_fit_path_and_warm_starts():
    X, Y, _ = _fc_data(9)
    th = FCTheory(width=40, temperature=0.2, activation="relu", tol=1e-11)
    path = th.fit_path(X, Y, [40, 10, 4])
    cold = FCTheory(width=4, temperature=0.2, activation="relu", tol=1e-11).fit(X, Y)
    np.testing.assert_allclose(path[-1].solution.Q, cold.Q, atol=1e-8)
    # a lone Qbar is accepted (conjugate from the odd relation); bad pairs are refused
    sol = th.fit(X, Y, Q0=cold.Q)
    assert sol.converged and sol.extra["start"].startswith("Q0 (conjugate")
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        th.fit(X, Y, Q0=(np.eye(2), np.zeros((2, 2))))
    with pytest.raises(ValueError, match="I \\+ conjugate"):
        th.fit(X, Y, Q0=(np.eye(3), -2 * np.eye(3)))


def test_sweep_writes_the_pair(tmp_path):
    import functools

    X, Y, Xt = _cnn_data(10)
    out = tmp_path / "rows.jsonl"
    fac = functools.partial(CNNTheory, geometry=G6, temperature=0.2, activation="relu")
    rows = sweep(fac, {"width": [8.0, 20.0]}, X, Y, Xt, np.zeros((4, 2)), out=out)
    for r in rows:
        assert r["converged"] and r["outputs"] == 2 and "conjugate" in r
        assert len(r["per_output"]["error"]) == 2
    again = sweep(fac, {"width": [8.0, 20.0]}, X, Y, Xt, np.zeros((4, 2)), out=out)
    assert again == rows
    sol = CNNTheory(geometry=G6, width=8.0, temperature=0.2, activation="relu").fit(X, Y)
    d = json.loads(json.dumps(sol.to_dict()))
    np.testing.assert_allclose(np.array(d["conjugate"]), sol.conjugate)


# -- the corrected predictor with D outputs -------------------------------------------------------
def _fitted_fc(seed=11, width=6.0, T=0.2, activation="relu"):
    X, Y, Xt = _fc_data(seed)
    th = FCTheory(width=width, temperature=T, activation=activation, lambda1=1.1, tol=1e-13)
    th.fit(X, Y)
    k_cross, k_diag, m0 = th._test_kernels(Xt)
    return th, th._dense_kernels(k_cross, k_diag, m0)


def test_corrected_one_output_equals_the_single_output_formula():
    th, (KR, kR, blocks) = _fitted_fc()
    y = th._y[:, 0].copy()
    P = len(y)
    K1 = KR.reshape(P, 3, P, 3)[:, 0, :, 0]
    k1 = kR.reshape(-1, 3, P, 3)[:, 0, :, 0]
    a = corrected_posterior(K1, k1, blocks[:, 0, 0], y, 0.2, 0.05, "test")
    b = corrected_posterior_multi(K1, k1, blocks[:, :1, :1], y, 0.2, 0.05, "test")
    np.testing.assert_allclose(b.mean[:, 0], a.mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.variance[:, 0], a.variance, rtol=1e-10, atol=1e-12)
    # and at T = 0, K_R^c = (1 - c) K_R + c y y^T
    KRc, _, _ = corrected_kernels(K1, k1, blocks[:, :1, :1], y, 0.0, 0.05, "test")
    np.testing.assert_allclose(KRc, 0.95 * K1 + 0.05 * np.outer(y, y), atol=1e-12)


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_corrected_kernel_is_minus_KR_dF_KR(activation):
    """The docs' claim: K_R^c - K_R = -K_R (dF/dK_R) K_R with F the data term of the action,
    (alpha/P)[log det A + y^T A^{-1} y]: checked along random directions by central
    differences of F."""
    th, (KR, kR, blocks) = _fitted_fc(activation=activation)
    y, T, n = th._y.reshape(-1), 0.2, KR.shape[0]
    c = th.alpha / th.num_samples
    KRc, _, _ = corrected_kernels(KR, kR, blocks, y, T, c, "test")

    def F(K):
        A = T * np.eye(n) + K
        return c * (np.linalg.slogdet(A)[1] + y @ np.linalg.solve(A, y))

    # directions E = K_R Z K_R: Tr(dF/dK_R E) = Tr((K_R - K_R^c) Z), no inverse of K_R
    rng = np.random.default_rng(0)
    for _ in range(3):
        Z = _sym_rand(rng, n, 1.0)
        E = KR @ Z @ KR
        h = 1e-4 / np.abs(E).max()
        fd = (F(KR + h * E) - F(KR - h * E)) / (2 * h)
        assert np.sum((KR - KRc) * Z) == pytest.approx(fd, rel=1e-7)


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_corrected_kernel_trace_is_the_renormalisation_at_the_saddle(activation):
    """At the saddle the output-block trace of K_R^{-1}(K_R^c - K_R) = -c Tr_P(B K_R) equals
    Qbar - I (the first-order tilt's trace part is the renormalisation the saddle already
    applied); away from the saddle it does not."""
    th, (KR, kR, blocks) = _fitted_fc(activation=activation)
    y, P, D = th._y.reshape(-1), th.num_samples, 3
    c = th.alpha / P
    KRc, _, _ = corrected_kernels(KR, kR, blocks, y, 0.2, c, "test")
    R = np.linalg.solve(KR, KRc - KR).reshape(P, D, P, D)
    block_trace = np.einsum("manb->ab", R * np.eye(P)[:, None, :, None])
    np.testing.assert_allclose(block_trace, th.solution.Q - np.eye(D), atol=1e-8)
    # a kernel away from the saddle breaks the identity
    KRc2, _, _ = corrected_kernels(1.3 * KR, kR, blocks, y, 0.2, c, "test")
    R2 = np.linalg.solve(1.3 * KR, KRc2 - 1.3 * KR).reshape(P, D, P, D)
    bt2 = np.einsum("manb->ab", R2 * np.eye(P)[:, None, :, None])
    assert np.abs(bt2 - (th.solution.Q - np.eye(D))).max() > 1e-3


def test_corrected_cnn_trace_at_the_saddle():
    X, Y, _ = _cnn_data(12)
    th = CNNTheory(geometry=G6, width=8, temperature=0.2, activation="relu", tol=1e-12)
    sol = th.fit(X, Y)
    from lkr.theory._cnn_predict import mean_coefficient

    Qm = mean_coefficient(th)
    KR = th._cache.kr(sol.Q, 1.0, Qm)
    kR, blocks = th._cache.test_kernels(X[:2], sol.Q, 1.0, Qm)
    c = th.alpha / th.num_samples
    KRc, _, _ = corrected_kernels(KR, kR, blocks, Y.reshape(-1), 0.2, c, "test")
    tr = np.trace(np.linalg.solve(KR, KRc - KR))
    assert tr == pytest.approx(np.trace(sol.Q) - 6, rel=1e-8)


def test_corrected_is_the_first_order_of_the_tilted_kernel():
    """K^c = K - c K B K is the first order in c of the tilted covariance
    (K^{-1} + c B)^{-1} of the joint (train, test) kernel: the corrected predictor differs
    from the GP with the tilted kernel by O(c^2)."""
    th, (KR, kR, blocks) = _fitted_fc()
    y, T, n = th._y.reshape(-1), 0.2, KR.shape[0]
    Pt, D = blocks.shape[:2]
    A = T * np.eye(n) + KR
    a = np.linalg.solve(A, y)
    B = np.linalg.inv(A) - np.outer(a, a)
    errs = []
    # c ||B K_R|| must be small for the expansion (here ||B K_R|| ~ 40)
    for c in (0.004, 0.002, 0.001):
        Kc, kc, bc = corrected_kernels(KR, kR, blocks, y, T, c, "test")
        lin = rmr.posterior(Kc, kc, bc, y, T)
        # the tilt to all orders on the joint (train, test) kernel J, B on the training part:
        # J - c J[:, tr] (I + c B K_R)^{-1} B J[tr, :]
        Jtr = np.vstack([KR, kR])
        corr = Jtr @ np.linalg.solve(np.eye(n) + c * B @ KR, c * B) @ Jtr.T
        Kt, kt = KR - corr[:n, :n], kR - corr[n:, :n]
        bt = np.stack([blocks[t] - corr[n + t * D:n + (t + 1) * D, n + t * D:n + (t + 1) * D]
                       for t in range(Pt)])
        exact = rmr.posterior(Kt, kt, bt, y, T)
        errs.append(max(np.abs(lin[0] - exact[0]).max(), np.abs(lin[1] - exact[1]).max()))
        base = rmr.posterior(KR, kR, blocks, y, T)
        assert np.abs(lin[0] - base[0]).max() > 10 * errs[-1]  # the first order is there
    assert 3.0 < errs[0] / errs[1] < 5.0 and 3.0 < errs[1] / errs[2] < 5.0


# -- bad input -------------------------------------------------------------------------------------
def test_width_conditions_and_bad_input():
    X, Y, Xt = _fc_data(13)
    with pytest.raises(ValueError, match=r"width 2 is below 3"):
        FCTheory(width=2, temperature=0.1, activation="relu").fit(X, Y)
    Xc, Yc, _ = _cnn_data(13, D=2)
    with pytest.raises(ValueError, match=r"width 5 is below 6"):
        CNNTheory(geometry=G6, width=5, temperature=0.1, activation="relu").fit(Xc, Yc)
    with pytest.raises(ValueError, match=r"width 1 is below 2"):
        LCNTheory(geometry=G6, width=1, temperature=0.1, activation="relu").fit(Xc, Yc)
    th = FCTheory(width=6, temperature=0.1, activation="relu")
    th.set_data(X, Y)
    with pytest.raises(ValueError, match="pair"):
        th.action(np.eye(3))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        th.gradient((np.eye(2), np.zeros((2, 2))))
    with pytest.raises(ValueError, match="undefined"):
        th.action((np.eye(3), -2 * np.eye(3)))
    cn = CNNTheory(geometry=G6, width=8, temperature=0.1, activation="relu")
    cn.set_data(Xc, Yc)
    with pytest.raises(ValueError, match="conjugate"):
        cn.action(np.eye(6))
    with pytest.raises(ValueError, match=r"\(6, 6\)"):
        cn.action(np.eye(3), np.zeros((3, 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # N0 = 5 is outside the theory's regime (that warning is tested on its own)
        warnings.filterwarnings("ignore", category=TheoryRegimeWarning)
        sol = th.fit(X, Y)  # no caveat for relu with mean="auto"
    assert sol.converged


# -- the operator protocol ------------------------------------------------------------------------
class _ProtocolOnly:
    """Exposes only what the non-central solver and the predictor may use of a local-kernel
    operator (what a deep CNN's last layer supplies): a stand-in proving nothing else is
    reached."""

    def __init__(self, inner):
        self._inner = inner
        self.xp, self.materialized, self.dtype = inner.xp, inner.materialized, inner.dtype
        self.means = inner.means
        self.calls = {"kr": 0, "adjoint": 0, "test_kernels": 0}

    def kr(self, Q, lambda1, Qm=None):
        self.calls["kr"] += 1
        return self._inner.kr(Q, lambda1, Qm)

    def adjoint(self, B, centred=False):
        self.calls["adjoint"] += 1
        return self._inner.adjoint(B, centred=centred)

    def test_kernels(self, Xt, Q, lambda1, Qm=None):
        self.calls["test_kernels"] += 1
        return self._inner.test_kernels(Xt, Q, lambda1, Qm)


class _ProtocolCNN(CNNTheory):
    def _bind(self, X):
        return _ProtocolOnly(super()._bind(X))


def test_solver_and_predictor_use_only_the_operator_protocol():
    X, Y, Xt = _cnn_data(15)
    kw = dict(geometry=G6, width=8, temperature=0.2, activation="relu", tol=1e-11)
    th = _ProtocolCNN(**kw)
    sol = th.fit(X, Y)
    p = th.predict(Xt, corrected=True)
    ref = CNNTheory(**kw)
    sr = ref.fit(X, Y)
    np.testing.assert_array_equal(sol.Q, sr.Q)
    np.testing.assert_array_equal(p.covariance, ref.predict(Xt, corrected=True).covariance)
    assert th._cache.calls["kr"] >= sol.evaluations and th._cache.calls["test_kernels"] == 1


def test_fc_vs_cnn_runs_with_relu_and_default_widths():
    """The crash of `lkr fc-vs-cnn --activation relu` (default widths: warm starts along
    them carried the pair as Q0): the experiment's serial path, small."""
    from lkr.experiments import fc_vs_cnn

    r = fc_vs_cnn.run(P=24, P_test=10, activation="relu", input_shape=(16,), filter_size=4)
    for arch in ("fc", "cnn", "lcn"):
        rows = r["finite_width"][arch]
        assert len(rows) == 6 and all(row["converged"] for row in rows)
        assert all(np.isfinite(row["error"]) for row in rows)


def test_a_list_of_two_rows_is_a_matrix_not_a_pair():
    X, Y, _ = _fc_data(16, D=2)
    th = FCTheory(width=6, temperature=0.2, activation="relu", tol=1e-11)
    sol = th.fit(X, Y)
    again = th.fit(X, Y, Q0=sol.Q.tolist())  # a 2 x 2 Qbar as nested lists
    assert again.converged and again.extra["start"].startswith("Q0 (conjugate")
    pair = th.fit(X, Y, Q0=[sol.Q, sol.conjugate])
    assert pair.extra["start"] == "Q0 (pair)" and pair.iterations <= 1


# -- hard problems: small T, large alpha -----------------------------------------------------------
def _one_hot_data(seed, P, D, N0=6):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((P, N0))
    labels = np.argmax(X[:, :D] + 0.3 * rng.standard_normal((P, D)), axis=1)
    return X, np.eye(D)[labels]


def test_fc_hard_saddle_is_a_root_of_the_exact_gradient():
    """T = 1e-3, alpha = 10, one-hot targets: the direct iteration fails and continuation in
    alpha finds the root; the answer is checked against the dense reference's gradient (a
    converged flag must mean a small gradient, each component against its own terms)."""
    X, Y = _one_hot_data(17, P=60, D=4)
    th = FCTheory(width=6, temperature=1e-3, activation="relu", tol=1e-9)
    sol = th.fit(X, Y)
    assert sol.converged, sol.message
    K, _, _, m, _ = _fc_ref_kernels(X, X[:1])
    ref = rmr.FCProblem(K, m, Y, width=6, T=1e-3)
    gb, gq = ref.gradient(sol.Q, sol.conjugate)
    assert np.abs(gb).max() <= 1e-6 * max(1.0, np.abs(sol.conjugate).max())
    assert np.abs(gq).max() <= 1e-6 * max(1.0, np.abs(sol.Q).max())
    # the same root along a fine path of widths (the branch connected to infinite width)
    path = th.fit_path(X, Y, [60, 30, 15, 10, 8, 6])
    np.testing.assert_allclose(path[-1].solution.Q, sol.Q, atol=1e-6)


@pytest.mark.parametrize("cls", [CNNTheory, LCNTheory])
def test_cnn_hard_saddle_is_a_root_of_the_exact_gradient(cls):
    X, Y = _one_hot_data(18, P=16, D=2)
    th = cls(geometry=G6, width=6, temperature=1e-3, activation="relu", tol=1e-9)
    sol = th.fit(X, Y)
    assert sol.converged, sol.message
    ref = Problem(X, Y, G6, width=6, T=1e-3, act="relu", lcn=cls is LCNTheory)
    gb, gq = ref.nc_gradient(sol.Q, sol.conjugate)
    assert np.abs(gb).max() <= 1e-6 * max(1.0, np.abs(sol.conjugate).max())
    assert np.abs(gq).max() <= 1e-6 * max(1.0, np.abs(sol.Q).max())


def test_fc_ten_classes_by_continuation():
    """Digits, ten one-hot classes, T = 1e-3: the direct iteration and Newton fail from the
    infinite-width point; continuation in alpha finds the root (checked by the dense
    reference's gradient)."""
    pytest.importorskip("sklearn")
    from lkr.data import digits_groups, one_hot

    X, g = digits_groups(60, 10, 0, classes="all")[:2]
    Y = one_hot(np.asarray(g), 10)
    th = FCTheory(width=25, temperature=1e-3, activation="relu", tol=1e-9)
    sol = th.fit(X, Y)
    assert sol.converged and "continuation" in sol.message
    Xf = X.reshape(len(X), -1)
    K, _, _, m, _ = _fc_ref_kernels(Xf, Xf[:1])
    gb, gq = rmr.FCProblem(K, m, Y, width=25, T=1e-3).gradient(sol.Q, sol.conjugate)
    assert np.abs(gb).max() <= 1e-6 * max(1.0, np.abs(sol.conjugate).max())
    assert np.abs(gq).max() <= 1e-6 * max(1.0, np.abs(sol.Q).max())


@pytest.mark.parametrize("cls", [CNNTheory, LCNTheory])
def test_cnn_continuation_without_newton(cls, monkeypatch):
    """Large CNNs have no Newton fallback (too many unknowns): continuation alone."""
    import lkr.theory._saddle as saddle

    monkeypatch.setattr(saddle, "NEWTON_MAX_UNKNOWNS", 0)
    X, Y = _one_hot_data(18, P=16, D=2)
    th = cls(geometry=G6, width=6, temperature=1e-3, activation="relu", tol=1e-9)
    sol = th.fit(X, Y)
    assert sol.converged and "continuation" in sol.message
    gb, gq = Problem(X, Y, G6, width=6, T=1e-3, act="relu",
                     lcn=cls is LCNTheory).nc_gradient(sol.Q, sol.conjugate)
    assert np.abs(gb).max() <= 1e-6 * max(1.0, np.abs(sol.conjugate).max())
    assert np.abs(gq).max() <= 1e-6 * max(1.0, np.abs(sol.Q).max())
