"""Effective-action solvers (lkr.theory): docs/theory.md section 4, oracles 5-11, plus the
stationarity of every returned solution, SPD Q, agreement with a naive implementation,
bad input and convergence reporting."""
import json
import warnings

import numpy as np
import pytest
import theory_reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

import lkr
from lkr.theory import (
    CNNTheory,
    ConvergenceError,
    DeepFCTheory,
    FCTheory,
    GPTheory,
    LCNTheory,
    Solution,
    TheoryRegimeWarning,
)


# -- problems -------------------------------------------------------------------------
def problem(seed=0, P=12, N0=12, filt=4, stride=None, act="erf"):
    rng = np.random.default_rng(seed)
    g = lkr.PatchGeometry((N0,), filt, stride)
    X = rng.standard_normal((P, N0))
    y = np.tanh(X[:, 0] - X[:, N0 // 2]) + 0.1 * rng.standard_normal(P)
    return g, X, y


def assert_spd(Q):
    Q = np.asarray(Q)
    assert np.array_equal(Q, Q.T)
    assert np.linalg.eigvalsh(Q).min() > 0


# -- oracle 5: Np = 1 CNN equals FC ---------------------------------------------------
@pytest.mark.parametrize("act", ["erf", "linear"])
def test_single_patch_cnn_equals_fc(act):
    rng = np.random.default_rng(1)
    P, N0 = 15, 6
    X = rng.standard_normal((P, N0))
    y = rng.standard_normal(P)
    g = lkr.PatchGeometry((N0,), N0)  # one patch covering the input: M = N0
    assert g.num_patches == 1
    kw = dict(width=5, temperature=0.05, activation=act, lambda0=1.3, lambda1=0.7)
    cnn = CNNTheory(geometry=g, **kw)
    fc = FCTheory(**kw)
    sc, sf = cnn.fit(X, y), fc.fit(X, y)
    for q in (0.3, 1.0, 2.5):
        assert cnn.action(np.array([[q]])) == pytest.approx(fc.action(q), rel=1e-12)
        assert cnn.gradient(np.array([[q]]))[0, 0] == pytest.approx(fc.gradient(q), rel=1e-9,
                                                                     abs=1e-12)
    assert sc.Q[0, 0] == pytest.approx(sf.Q, rel=1e-8)
    assert sc.action == pytest.approx(sf.action, rel=1e-12)
    Xt = rng.standard_normal((7, N0))
    pc, pf = cnn.predict(Xt), fc.predict(Xt)
    np.testing.assert_allclose(pc.mean, pf.mean, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(pc.variance, pf.variance, rtol=1e-6, atol=1e-10)


# -- oracle 6: alpha -> 0 -------------------------------------------------------------
def test_small_alpha_first_order_correction():
    g, X, y = problem(seed=2, P=10)
    P, Np, lam1 = 10, g.num_patches, 0.8
    T4 = ref.local_kernel(X, g)
    A = 0.1 * np.eye(P) + ref.kr(T4, np.eye(Np), lam1)
    a = np.linalg.solve(A, y)
    B = np.linalg.inv(A) - np.outer(a, a)
    G = np.einsum("pq,pqij->ij", B, T4)
    errs = []
    for width in (1e4, 1e5):
        sol = CNNTheory(geometry=g, width=width, temperature=0.1, lambda1=lam1).fit(X, y)
        alpha = P / width
        first = np.eye(Np) - alpha / (P * lam1 * Np) * G
        assert np.abs(sol.Q - np.eye(Np)).max() < 10 * alpha * np.abs(G).max() / (P * Np)
        errs.append(np.abs(sol.Q - first).max())
    # the remainder is O(alpha^2): a tenth of alpha gives about a hundredth of the error
    assert errs[1] < errs[0] / 30
    assert errs[0] < 1e-6


# -- oracle 7: vanishing cross-patch kernels -> diagonal CNN = LCN ---------------------
@pytest.mark.parametrize("act", ["erf", "linear"])
def test_disjoint_patch_supports_give_lcn(act):
    rng = np.random.default_rng(3)
    P, Np = 10, 3
    # patch i is nonzero only on its entries {2i, 2i+1}: the supports of different patches
    # are disjoint, so x_i . x_j = 0 for i != j and every cross-patch kernel vanishes
    X = np.zeros((P, Np, 6))
    for i in range(Np):
        X[:, i, 2 * i:2 * i + 2] = rng.standard_normal((P, 2))
    g = lkr.PatchGeometry((Np * 6,), 6)
    X = X.reshape(P, -1)
    T4 = ref.local_kernel(X, g, act)
    off = ~np.eye(Np, dtype=bool)
    assert np.abs(T4[:, :, off]).max() == 0
    y = rng.standard_normal(P)
    kw = dict(geometry=g, width=4, temperature=0.2, activation=act)
    sc = CNNTheory(**kw).fit(X, y)
    sl = LCNTheory(**kw).fit(X, y)
    assert np.abs(sc.Q[off]).max() < 1e-8 * np.abs(np.diag(sc.Q)).max()
    np.testing.assert_allclose(np.diag(sc.Q), np.diag(sl.Q), rtol=1e-7)
    assert sc.action == pytest.approx(sl.action, rel=1e-10)


# -- oracle 8: FC at T = 0 -------------------------------------------------------------
@pytest.mark.parametrize("width", [40.0, 12.0, 5.0])
def test_fc_zero_temperature_closed_form(width):
    rng = np.random.default_rng(4)
    P, N0, lam1 = 10, 30, 1.7
    X = rng.standard_normal((P, N0))
    y = rng.standard_normal(P)
    K = ref.fc_kernel(X)
    alpha = P / width
    r = y @ np.linalg.solve(K, y)
    q = ((1 - alpha) + np.sqrt((1 - alpha) ** 2 + 4 * alpha * lam1 * r / P)) / 2
    sol = FCTheory(width=width, temperature=0.0, lambda1=lam1).fit(X, y)
    assert sol.Q == pytest.approx(q, rel=1e-10)
    # and T -> 0 approaches it continuously
    sol_small = FCTheory(width=width, temperature=1e-9, lambda1=lam1).fit(X, y)
    assert sol_small.Q == pytest.approx(q, rel=1e-5)


# -- oracle 9: FC at (lambda1, Q*) = GP at lambda1 / Q* --------------------------------
@pytest.mark.parametrize("act", ["erf", "relu"])
def test_fc_predicts_as_gp_with_rescaled_readout_prior(act):
    rng = np.random.default_rng(5)
    X, Xt = rng.standard_normal((14, 8)), rng.standard_normal((6, 8))
    y = rng.standard_normal(14)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # relu caveat
        # the one-parameter action (mean="ignore") is the GP with a rescaled readout prior
        fc = FCTheory(width=3, temperature=0.05, activation=act, lambda1=1.3, mean="ignore")
    q = fc.fit(X, y).Q
    gp = GPTheory("fc", temperature=0.05, activation=act, lambda1=1.3 / q)
    gp.fit(X, y)
    pf, pg = fc.predict(Xt), gp.predict(Xt)
    np.testing.assert_allclose(pf.mean, pg.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(pf.variance, pg.variance, rtol=1e-8, atol=1e-12)
    ef, eg = fc.evaluate(Xt, np.ones(6)), gp.evaluate(Xt, np.ones(6))
    keys = ("error", "bias2", "variance", "accuracy")  # labels +1: +-1 classes, an accuracy
    assert [ef[k] for k in keys] == pytest.approx([eg[k] for k in keys], rel=1e-8)
    assert np.array_equal(ef["confusion"], eg["confusion"])


# -- oracle 10: analytic gradients against central differences -------------------------
def test_gradient_fc():
    rng = np.random.default_rng(6)
    X, y = rng.standard_normal((12, 5)), rng.standard_normal(12)
    th = FCTheory(width=4, temperature=0.1).set_data(X, y)
    for q in (0.2, 1.0, 3.0):
        num = ref.central_gradient(lambda v: th.action(float(v[0])), np.array([q]))[0]
        assert th.gradient(q) == pytest.approx(num, rel=1e-7, abs=1e-9)
        K = ref.fc_kernel(X)
        assert th.action(q) == pytest.approx(ref.fc_action(q, K, y, 0.1, 3.0), rel=1e-12)


@pytest.mark.parametrize("cls", [CNNTheory, LCNTheory])
@pytest.mark.parametrize("act", ["erf", "linear"])
def test_gradient_local(cls, act):
    g, X, y = problem(seed=7, P=9, act=act)
    th = cls(geometry=g, width=3, temperature=0.1, activation=act, lambda0=0.9,
             lambda1=1.2).set_data(X, y)
    Np = g.num_patches
    rng = np.random.default_rng(0)
    R = rng.standard_normal((Np, Np))
    Q = R @ R.T / Np + 0.5 * np.eye(Np)
    if cls is LCNTheory:
        Q = np.diag(np.diag(Q))
        num = np.diag(ref.central_gradient(lambda d: th.action(np.diag(d)), np.diag(Q)))
    else:
        num = ref.central_gradient_sym(th.action, Q)
    np.testing.assert_allclose(th.gradient(Q), num, rtol=1e-6, atol=1e-8)
    T4 = ref.local_kernel(X, g, act, 0.9)
    assert th.action(Q) == pytest.approx(ref.cnn_action(Q, T4, y, 0.1, 9 / 3, 1.2), rel=1e-11)


@pytest.mark.parametrize("variant", ["vanilla", "nested"])
@pytest.mark.parametrize("act", ["erf", "relu", "linear"])
def test_gradient_deep(variant, act):
    rng = np.random.default_rng(8)
    X, y = rng.standard_normal((10, 6)), rng.standard_normal(10)
    lambdas = (1.1, 0.9, 1.3, 0.8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        th = DeepFCTheory(3, 4, 0.1, act, lambdas, variant).set_data(X, y)
    Qs = np.array([0.7, 1.4, 2.1])
    np.testing.assert_allclose(th.gradient(Qs), ref.central_gradient(th.action, Qs),
                               rtol=1e-6, atol=1e-9)
    assert th.action(Qs) == pytest.approx(
        ref.deep_action(Qs, X, y, 0.1, 10 / 4, lambdas, act, variant), rel=1e-11)


# -- oracle 11: deep FC ------------------------------------------------------------------
@pytest.mark.parametrize("act", ["linear", "relu"])
def test_deep_nested_equals_vanilla_for_homogeneous_maps(act):
    rng = np.random.default_rng(9)
    X, y = rng.standard_normal((12, 7)), rng.standard_normal(12)
    lambdas = (1.0, 1.5, 0.7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        v = DeepFCTheory(2, 3, 0.05, act, lambdas, "vanilla")
        n = DeepFCTheory(2, 3, 0.05, act, lambdas, "nested")
    sv, sn = v.fit(X, y), n.fit(X, y)
    Qs = np.array([0.5, 2.0])
    assert v.action(Qs) == pytest.approx(n.action(Qs), rel=1e-12)
    np.testing.assert_allclose(sn.Q, sv.Q, rtol=1e-7)
    assert np.ptp(sv.Q) == 0  # every Q_l equal at the saddle
    assert np.ptp(sn.Q) < 1e-7 * sn.Q.mean()
    Xt = rng.standard_normal((5, 7))
    np.testing.assert_allclose(v.predict(Xt).mean, n.predict(Xt).mean, rtol=1e-6)


def test_deep_depth_one_is_fc():
    rng = np.random.default_rng(10)
    X, y = rng.standard_normal((12, 7)), rng.standard_normal(12)
    fc = FCTheory(width=3, temperature=0.05, lambda0=1.2, lambda1=0.6).fit(X, y)
    for variant in ("vanilla", "nested"):
        d = DeepFCTheory(1, 3, 0.05, "erf", (1.2, 0.6), variant).fit(X, y)
        assert d.Q[0] == pytest.approx(fc.Q, rel=1e-7)


def test_deep_nested_erf_is_stationary():
    rng = np.random.default_rng(11)
    X, y = rng.standard_normal((12, 7)), rng.standard_normal(12)
    th = DeepFCTheory(3, 4, 0.05, "erf", None, "nested")
    sol = th.fit(X, y)
    assert sol.converged
    f = lambda q: ref.deep_action(q, X, y, 0.05, 3.0, (1,) * 4, "erf", "nested")  # noqa: E731
    g = ref.central_gradient(f, sol.Q)
    assert np.linalg.norm(g) < 1e-6 * (1 + np.linalg.norm(1 / sol.Q))


# -- naive implementation, stationarity and SPD on random problems ----------------------
@settings(max_examples=6)
@given(seed=st.integers(0, 10_000), width=st.sampled_from([2.0, 5.0, 20.0]),
       T=st.sampled_from([0.01, 0.3]))
def test_cnn_lcn_agree_with_naive_optimiser(seed, width, T):
    g, X, y = problem(seed=seed, P=8, N0=6, filt=3, stride=2)  # overlapping, periodic
    T4 = ref.local_kernel(X, g)
    alpha = 8 / width
    for cls, diagonal in ((CNNTheory, False), (LCNTheory, True)):
        sol = cls(geometry=g, width=width, temperature=T).fit(X, y)
        assert sol.converged and sol.rel_grad_norm <= 1e-8
        assert_spd(sol.Q)
        Qref = ref.fit_cnn(T4, y, T, alpha, diagonal=diagonal)
        np.testing.assert_allclose(sol.Q, Qref, rtol=1e-6, atol=1e-6 * np.abs(Qref).max())
        act = lambda Q: ref.cnn_action(Q, T4, y, T, alpha)  # noqa: E731
        assert sol.action == pytest.approx(act(Qref), rel=1e-10, abs=1e-10)
        gnum = ref.central_gradient_sym(act, sol.Q)
        if diagonal:
            gnum = np.diag(np.diag(gnum))
        scale = np.sqrt(g.num_patches) + np.linalg.norm(np.linalg.inv(sol.Q))
        assert np.linalg.norm(gnum) < 1e-6 * scale


@pytest.mark.parametrize("T", [0.0, 0.02, 1.0])
@pytest.mark.parametrize("width", [2, 6.0, 60.0])  # alpha = P / N up to 5
def test_fc_agrees_with_naive_minimiser(T, width):
    rng = np.random.default_rng(12)
    X, y = rng.standard_normal((10, 20)), rng.standard_normal(10)
    K = ref.fc_kernel(X)
    sol = FCTheory(width=width, temperature=T).fit(X, y)
    f = lambda q: ref.fc_action(q, K, y, T, 10 / width)  # noqa: E731
    assert sol.Q == pytest.approx(ref.fit_scalar(f), rel=1e-6)
    assert sol.action == pytest.approx(f(sol.Q), rel=1e-12)
    assert abs(ref.central_gradient(lambda v: f(v[0]), np.array([sol.Q]))[0]) < 1e-6
    assert sol.converged


def test_cnn_streamed_equals_materialised():
    g, X, y = problem(seed=13, P=10, N0=12, filt=4, stride=2)
    a = CNNTheory(geometry=g, width=3, temperature=0.1, materialize=True)
    b = CNNTheory(geometry=g, width=3, temperature=0.1, materialize=False)
    sa, sb = a.fit(X, y), b.fit(X, y)
    assert a.materialized and not b.materialized
    np.testing.assert_allclose(sa.Q, sb.Q, rtol=1e-7)
    Q = sa.Q
    np.testing.assert_allclose(a.gradient(Q), b.gradient(Q), rtol=1e-9, atol=1e-12)
    la = LCNTheory(geometry=g, width=3, temperature=0.1, materialize=True).fit(X, y)
    lb = LCNTheory(geometry=g, width=3, temperature=0.1, materialize=False).fit(X, y)
    np.testing.assert_allclose(la.Q, lb.Q, rtol=1e-7)
    with pytest.raises(MemoryError, match="max_bytes"):
        CNNTheory(geometry=g, width=3, temperature=0.1, materialize=True,
                  max_bytes=1000).fit(X, y)


# -- predictions ------------------------------------------------------------------------
def test_cnn_predictions_match_dense_formulas():
    g, X, y = problem(seed=14, P=11, N0=12, filt=4, stride=2)
    rng = np.random.default_rng(0)
    Xt = rng.standard_normal((5, 12))
    yt = rng.standard_normal(5)
    th = CNNTheory(geometry=g, width=4, temperature=0.1)
    Q = th.fit(X, y).Q
    Np = g.num_patches
    both = np.concatenate([X, Xt])
    T4 = ref.local_kernel(both, g)
    KR = ref.kr(T4, Q)
    A = KR[:11, :11] + 0.1 * np.eye(11)
    k = KR[11:, :11]
    mean = k @ np.linalg.solve(A, y)
    var = np.diag(KR[11:, 11:]) - np.einsum("ij,ji->i", k, np.linalg.solve(A, k.T))
    pred = th.predict(Xt)
    np.testing.assert_allclose(pred.mean, mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(pred.variance, var, rtol=1e-8, atol=1e-12)
    ev = th.evaluate(Xt, yt)
    assert ev["bias2"] == pytest.approx(np.mean((yt - mean) ** 2), rel=1e-9)
    assert ev["variance"] == pytest.approx(np.mean(var), rel=1e-8)
    assert ev["error"] == pytest.approx(ev["bias2"] + ev["variance"], rel=1e-14)
    assert Np == 6


@pytest.mark.parametrize("kind", ["fc", "cnn", "pooled"])
def test_gp_matches_dense_formulas(kind):
    g, X, y = problem(seed=15, P=9, N0=8, filt=4, stride=2)
    rng = np.random.default_rng(1)
    Xt = rng.standard_normal((4, 8))
    gp = GPTheory(kind, geometry=None if kind == "fc" else g, temperature=0.05, lambda1=1.4)
    sol = gp.fit(X, y)
    assert sol.converged and sol.action is None and gp.alpha == 0
    both = np.concatenate([X, Xt])
    if kind == "fc":
        K = ref.fc_kernel(both) / 1.4
    else:
        Np = g.num_patches
        Q = np.eye(Np) if kind == "cnn" else np.ones((Np, Np)) / Np
        K = ref.kr(ref.local_kernel(both, g), Q, 1.4)
    A = K[:9, :9] + 0.05 * np.eye(9)
    k = K[9:, :9]
    pred = gp.predict(Xt)
    np.testing.assert_allclose(pred.mean, k @ np.linalg.solve(A, y), rtol=1e-9, atol=1e-12)
    var = np.diag(K[9:, 9:]) - np.einsum("ij,ji->i", k, np.linalg.solve(A, k.T))
    np.testing.assert_allclose(pred.variance, var, rtol=1e-8, atol=1e-12)


def test_cnn_at_large_width_approaches_gp():
    g, X, y = problem(seed=16, P=10)
    Xt = np.random.default_rng(2).standard_normal((4, 12))
    cnn = CNNTheory(geometry=g, width=1e8, temperature=0.1)
    cnn.fit(X, y)
    gp = GPTheory("cnn", geometry=g, temperature=0.1)
    assert gp.fit(X, y).converged
    np.testing.assert_allclose(cnn.solution.Q, np.eye(g.num_patches), atol=1e-6)
    np.testing.assert_allclose(cnn.predict(Xt).mean, gp.predict(Xt).mean, rtol=1e-5, atol=1e-8)


# -- fit_path --------------------------------------------------------------------------
def test_fit_path_warm_starts_and_matches_independent_fits():
    g, X, y = problem(seed=17, P=12)
    th = CNNTheory(geometry=g, width=1, temperature=0.05)
    widths = [50.0, 10.0, 3.0, 1.0]
    path = th.fit_path(X, y, widths)
    assert [p.width for p in path] == widths
    assert len({id(p) for p in path}) == len(widths) and all(p is not th for p in path)
    assert all(p._cache is path[0]._cache for p in path)  # the local kernel is shared
    for p, w in zip(path, widths):
        assert p.solution.converged and p.alpha == pytest.approx(12 / w)
        cold = CNNTheory(geometry=g, width=w, temperature=0.05).fit(X, y)
        np.testing.assert_allclose(p.solution.Q, cold.Q, rtol=1e-6, atol=1e-9)
    fcs = FCTheory(width=1, temperature=0.05).fit_path(X, y, widths)
    assert [f.solution.Q for f in fcs] == pytest.approx(
        [FCTheory(width=w, temperature=0.05).fit(X, y).Q for w in widths], rel=1e-10)


# -- convergence reporting ---------------------------------------------------------------
def test_non_convergence_warns_or_raises():
    g, X, y = problem(seed=18, P=12)
    th = CNNTheory(geometry=g, width=2, temperature=0.05)
    with pytest.warns(RuntimeWarning, match=r"did not converge.*relative gradient norm"):
        sol = th.fit(X, y, maxiter=1)
    assert not sol.converged and sol.iterations == 1 and sol.rel_grad_norm > 1e-8
    assert np.all(np.isfinite(sol.Q)) and np.isfinite(sol.action)
    with pytest.raises(ConvergenceError) as info:
        th.fit(X, y, maxiter=1, strict=True)
    assert isinstance(info.value.solution, Solution)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # converged: no ConvergenceWarning; the fit at M = 4 still warns that it is outside
        # the theory's regime (tests/theory/test_regime_warning.py), which is not the point here
        warnings.filterwarnings("ignore", category=TheoryRegimeWarning)
        assert th.fit(X, y, strict=True).converged


def test_solution_serialises():
    g, X, y = problem(seed=19, P=10)
    sol = CNNTheory(geometry=g, width=3, temperature=0.1).fit(X, y)
    d = json.loads(json.dumps(sol.to_dict()))
    s = sol.summary()
    assert set(s) >= {"mean_diagonal", "mean_off_diagonal", "min_eigenvalue",
                      "max_eigenvalue", "action", "converged"}
    assert s["min_eigenvalue"] == pytest.approx(np.linalg.eigvalsh(sol.Q)[0])
    assert np.allclose(d["Q"], sol.Q)
    assert FCTheory(width=3, temperature=0.1).fit(X, y).summary()["Q"] > 0
    assert "CNNTheory" in repr(sol)


def test_relu_warns_once_per_theory():
    with pytest.warns(UserWarning, match="odd activations"):
        FCTheory(width=3, temperature=0.1, activation="relu", mean="ignore")
    g = lkr.PatchGeometry((8,), 4)
    for cls in (CNNTheory, LCNTheory):
        with pytest.warns(UserWarning, match="odd activations"):
            cls(geometry=g, width=3, temperature=0.1, activation="relu", mean="ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for cls in (CNNTheory, LCNTheory):  # non-central action (experimental): no caveat
            cls(geometry=g, width=3, temperature=0.1, activation="relu")
        warnings.simplefilter("error")
        GPTheory("fc", temperature=0.1, activation="relu")  # exact: no warning
        FCTheory(width=3, temperature=0.1, activation="erf")
        FCTheory(width=3, temperature=0.1, activation="relu")  # non-central action: exact


# -- bad input ---------------------------------------------------------------------------
def test_bad_input():
    g, X, y = problem(seed=20, P=10)
    th = CNNTheory(geometry=g, width=3, temperature=0.1)
    with pytest.raises(ValueError, match=r"y must have shape \(10,\)"):
        th.fit(X, y[:-1])
    Xn = X.copy()
    Xn[2, 3] = np.nan
    with pytest.raises(ValueError, match="X has 1 non-finite"):
        th.fit(Xn, y)
    yn = y.copy()
    yn[0] = np.inf
    with pytest.raises(ValueError, match="y has 1 non-finite"):
        th.fit(X, yn)
    with pytest.raises(ValueError, match="does not match"):
        th.fit(X[:, :10], y)
    with pytest.raises(RuntimeError, match="before fit"):
        CNNTheory(geometry=g, width=3, temperature=0.1).predict(X)
    with pytest.raises(RuntimeError, match="no training data"):
        CNNTheory(geometry=g, width=3, temperature=0.1).action(np.eye(3))
    for w in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="width"):
            CNNTheory(geometry=g, width=w, temperature=0.1)
        with pytest.raises(ValueError, match="width"):
            FCTheory(width=w, temperature=0.1)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        FCTheory(width=3, temperature=-0.1)
    with pytest.raises(TypeError, match="geometry"):
        CNNTheory(geometry=(12,), width=3, temperature=0.1)
    with pytest.raises(ValueError, match="activation"):
        FCTheory(width=3, temperature=0.1, activation="tanh")
    with pytest.raises(ValueError, match="lambdas"):
        DeepFCTheory(2, 3, 0.1, lambdas=(1.0, 1.0))
    with pytest.raises(ValueError, match="variant"):
        DeepFCTheory(2, 3, 0.1, variant="other")
    th.fit(X, y)
    with pytest.raises(ValueError, match="shape"):
        th.action(np.eye(2))
    with pytest.raises(ValueError, match="positive definite"):
        th.action(-np.eye(3))
    with pytest.raises(ValueError, match="symmetric"):
        th.action(np.eye(3) + np.triu(np.ones((3, 3)), 1))
    with pytest.raises(ValueError, match="Q must be positive"):
        FCTheory(width=3, temperature=0.1).set_data(X, y).action(-1.0)
    with pytest.raises(ValueError, match="y_test"):
        th.evaluate(X[:4], y[:3])


def test_zero_temperature_rules():
    rng = np.random.default_rng(21)
    # linear kernel of rank N0 = 4 < P = 10 is singular: T = 0 is refused with a reason
    X, y = rng.standard_normal((10, 4)), rng.standard_normal(10)
    with pytest.raises(ValueError, match="T = 0"):
        FCTheory(width=3, temperature=0.0, activation="linear").fit(X, y)
    with pytest.raises(ValueError, match="T = 0"):
        GPTheory("fc", temperature=0.0, activation="linear").fit(X, y)
    g = lkr.PatchGeometry((4,), 2)
    with pytest.raises(ValueError, match="T = 0"):
        CNNTheory(geometry=g, width=3, temperature=0.0, activation="linear").fit(X, y)
    # erf kernel of distinct inputs is positive definite: T = 0 works, also for the CNN
    g, X, y = problem(seed=22, P=8)
    sol = CNNTheory(geometry=g, width=3, temperature=0.0).fit(X, y)
    assert sol.converged and np.all(np.isfinite(sol.Q))


def test_deep_fit_path_and_gp_has_no_width():
    rng = np.random.default_rng(23)
    X, y = rng.standard_normal((12, 6)), rng.standard_normal(12)
    widths = [30.0, 6.0, 2.0]
    path = DeepFCTheory(2, 1, 0.05, variant="nested").fit_path(X, y, widths)
    for p, w in zip(path, widths):
        cold = DeepFCTheory(2, w, 0.05, variant="nested").fit(X, y)
        np.testing.assert_allclose(p.solution.Q, cold.Q, rtol=1e-6)
    with pytest.raises(TypeError, match="no width"):
        GPTheory("fc", temperature=0.1).fit_path(X, y, widths)
    with pytest.raises(ValueError, match="widths"):
        FCTheory(width=1, temperature=0.1).fit_path(X, y, [3.0, -1.0])


def test_prediction_variance_is_nonnegative_and_std():
    g, X, y = problem(seed=24, P=10)
    th = CNNTheory(geometry=g, width=2, temperature=1e-3)
    th.fit(X, y)
    pred = th.predict(X)  # at training points the variance is ~T-small but never < 0
    assert np.all(pred.variance >= 0)
    np.testing.assert_allclose(pred.std ** 2, pred.variance)
    np.testing.assert_allclose(pred.mean, y, atol=0.05)
