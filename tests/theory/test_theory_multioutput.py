"""FC with D outputs (docs/theory-beyond-odd.md 2.1): D x D order parameter on the
eigenbasis of K, against
the dense PD x PD reference in tests/theory2_reference.py; GPTheory with D outputs; the
Prediction / evaluate / sweep shapes; bad input."""
import json

import numpy as np
import pytest
import theory2_reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st
from theory_reference import fc_kernel

import lkr
from lkr.data import one_hot
from lkr.theory import DeepFCTheory, FCTheory, GPTheory, sweep
from lkr.theory._multiout import MultiOutputProblem
from lkr.theory._scalar import ScalarProblem


def _problem(seed=0, P=20, N0=8, D=3, Pt=5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((P, N0))
    Xt = rng.standard_normal((Pt, N0))
    W = rng.standard_normal((N0, D))
    Y = np.tanh(X @ W / np.sqrt(N0)) + 0.1 * rng.standard_normal((P, D))
    if D > 1:
        Y[:, 0] += 0.5 * Y[:, 1]  # correlated outputs
    return X, Xt, Y


@pytest.mark.parametrize("T,width,lam1", [(0.1, 6.0, 1.0), (0.02, 20.0, 1.4), (0.5, 3.0, 0.7)])
def test_fc_agrees_with_dense_reference(T, width, lam1):
    X, Xt, Y = _problem(1)
    P = len(Y)
    alpha = P / width
    K = fc_kernel(X) / lam1
    Q = ref.mo_solve(K, Y, T, alpha)
    th = FCTheory(width=width, temperature=T, lambda1=lam1)
    sol = th.fit(X, Y)
    assert sol.converged and sol.num_outputs == 3
    np.testing.assert_allclose(sol.Q, Q, rtol=1e-8, atol=1e-10)
    assert sol.action == pytest.approx(ref.mo_action(Q, K, Y, T, alpha), rel=1e-10)
    k = lkr.nngp(Xt, X) / lam1
    kappa = np.diag(fc_kernel(Xt)) / lam1
    rm, rc = ref.mo_predict(Q, K, k, kappa, Y, T)
    p = th.predict(Xt)
    assert p.mean.shape == (5, 3) and p.covariance.shape == (5, 3, 3) and p.variance.shape == (5, 3)
    np.testing.assert_allclose(p.mean, rm, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(p.covariance, rc, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(p.variance, np.diagonal(rc, axis1=1, axis2=2), rtol=1e-8,
                               atol=1e-10)


def test_deep_vanilla_agrees_with_dense_reference():
    X, Xt, Y = _problem(2)
    L, T, width = 2, 0.1, 8.0
    lambdas = (1.0, 1.3, 0.9)
    K = lkr.theory._maps.layer_kernels(X, None, "erf", 1.0, [1 / 1.3, 1 / 0.9])[-1][0]
    Kt, dt, _ = lkr.theory._maps.layer_kernels(Xt, X, "erf", 1.0, [1 / 1.3, 1 / 0.9])[-1]
    alpha = len(Y) / width
    Q = ref.mo_solve(K, Y, T, alpha, L=L)
    th = DeepFCTheory(L, width=width, temperature=T, lambdas=lambdas)
    sol = th.fit(X, Y)
    np.testing.assert_allclose(sol.Q, Q, rtol=1e-8, atol=1e-10)
    R = sol.extra["per_layer"]
    np.testing.assert_allclose(R @ R, Q, rtol=1e-10, atol=1e-12)
    rm, rc = ref.mo_predict(Q, K, Kt, dt, Y, T)
    p = th.predict(Xt)
    np.testing.assert_allclose(p.mean, rm, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(p.covariance, rc, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("L", [1, 3])
def test_action_and_gradient_against_dense_and_finite_differences(L):
    X, _, Y = _problem(3)
    th = (FCTheory(width=5, temperature=0.2) if L == 1 else
          DeepFCTheory(L, width=5, temperature=0.2))
    th.set_data(X, Y)
    K = lkr.theory._maps.layer_kernels(X, None, "erf", 1.0, [1.0] * L)[-1][0]
    rng = np.random.default_rng(0)
    Bm = rng.standard_normal((3, 3))
    Q = Bm @ Bm.T / 3 + 0.5 * np.eye(3)
    alpha = len(Y) / 5
    assert th.action(Q) == pytest.approx(ref.mo_action(Q, K, Y, 0.2, alpha, L), rel=1e-12)
    G = th.gradient(Q)
    np.testing.assert_allclose(G, ref.mo_grad(Q, K, Y, 0.2, alpha, L), rtol=1e-9, atol=1e-11)
    h = 1e-6
    for i, j in [(0, 0), (0, 1), (1, 2), (2, 2)]:
        E = np.zeros((3, 3))
        E[i, j] = E[j, i] = h
        fd = (th.action(Q + E) - th.action(Q - E)) / (2 * h)
        assert fd == pytest.approx(G[i, j] * (1 if i == j else 2), rel=1e-6, abs=1e-8)


def test_one_output_equals_todays_theories():
    X, Xt, Y = _problem(4, D=1)
    y = Y[:, 0]
    for L in (1, 2):
        th = FCTheory(width=4, temperature=0.1) if L == 1 else DeepFCTheory(
            2, width=4, temperature=0.1)
        sol1 = th.fit(X, y)
        p1 = th.predict(Xt)
        q1 = sol1.Q if L == 1 else float(np.prod(sol1.Q))
        th._y = Y  # the D-output path with D = 1 (public (P, 1) targets stay one output)
        solD = th._fit_bound(None, True, 1e-13, None)
        assert solD.Q.shape == (1, 1)
        assert solD.Q[0, 0] == pytest.approx(q1, rel=1e-12)
        pD = th.predict(Xt)
        np.testing.assert_allclose(pD.mean[:, 0], p1.mean, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(pD.variance[:, 0], p1.variance, rtol=1e-12, atol=1e-14)
    # the solver's problem class reduces to the scalar one
    lam = np.linspace(0.1, 3, 30)
    z = np.cos(np.arange(30.0))
    sp = ScalarProblem(lam, z * z, alpha=2.0, T=0.1, L=2)
    mp = MultiOutputProblem(lam, z[:, None], alpha=2.0, T=0.1, L=2)
    for u in (0.3, 1.0, 2.5):
        # S_multi(u) = L u^{1/L} - log u + data = S_scalar(q = u^{1/L}) - L log q + L q ...
        q = u ** 0.5
        assert mp.action(np.array([[u]])) == pytest.approx(sp.action(q), rel=1e-12)


def test_one_output_shapes_unchanged():
    X, Xt, Y = _problem(5, D=1)
    th = FCTheory(width=4, temperature=0.1)
    th.fit(X, Y)  # (P, 1): one output, as before
    p = th.predict(Xt)
    assert p.mean.shape == (5,) and p.variance.shape == (5,) and p.covariance.shape == (5, 1, 1)
    mean, var = p
    assert mean is p.mean and var is p.variance
    assert set(th.evaluate(Xt, Y[:5, 0])) == {"error", "bias2", "variance"}


@pytest.mark.parametrize("width", [30.0, 8.0, 4.0])
def test_zero_temperature_closed_form(width):
    X, _, Y = _problem(6, P=12, N0=20)
    K = fc_kernel(X)
    alpha = 12 / width
    W = Y.T @ np.linalg.solve(K, Y)
    s, E = np.linalg.eigh((1 - alpha) ** 2 * np.eye(3) + 4 * alpha * W / 12)
    Qc = ((1 - alpha) * np.eye(3) + (E * np.sqrt(s)) @ E.T) / 2
    sol0 = FCTheory(width=width, temperature=0.0).fit(X, Y)
    np.testing.assert_allclose(sol0.Q, Qc, rtol=1e-10)
    assert sol0.converged
    sol = FCTheory(width=width, temperature=1e-10).fit(X, Y)  # the solver, not the formula
    assert sol.extra["start"].startswith("identity")
    np.testing.assert_allclose(sol.Q, Qc, rtol=1e-6)


def test_gp_with_several_outputs_is_independent_gps():
    X, Xt, Y = _problem(7)
    gp = GPTheory("fc", temperature=0.1)
    sol = gp.fit(X, Y)
    assert sol.summary()["outputs"] == 3
    p = gp.predict(Xt)
    for a in range(3):
        g1 = GPTheory("fc", temperature=0.1)
        g1.fit(X, Y[:, a])
        q = g1.predict(Xt)
        np.testing.assert_allclose(p.mean[:, a], q.mean, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(p.variance[:, a], q.variance, rtol=1e-12)
    np.testing.assert_allclose(p.covariance[:, 0, 1], 0)
    # and the wide-FC theory approaches it
    fc = FCTheory(width=1e7, temperature=0.1)
    fc.fit(X, Y)
    np.testing.assert_allclose(fc.predict(Xt).mean, p.mean, rtol=1e-5, atol=1e-7)


def test_evaluate_per_output_and_serialisation():
    X, Xt, Y = _problem(8)
    th = FCTheory(width=6, temperature=0.1)
    sol = th.fit(X, Y)
    Yt = np.ones((5, 3))
    e = th.evaluate(Xt, Yt)
    p = th.predict(Xt)
    b = ((Yt - p.mean) ** 2).mean(0)
    np.testing.assert_allclose(e["per_output"]["bias2"], b, rtol=1e-12)
    np.testing.assert_allclose(e["per_output"]["variance"], p.variance.mean(0), rtol=1e-12)
    assert e["error"] == pytest.approx(b.mean() + p.variance.mean(), rel=1e-12)
    d = json.loads(json.dumps(sol.to_dict()))
    assert np.array(d["Q"]).shape == (3, 3) and d["summary"]["outputs"] == 3
    paths = th.fit_path(X, Y, [12.0, 6.0])
    np.testing.assert_allclose(paths[1].solution.Q, sol.Q, rtol=1e-8)
    rows = sweep(FCTheory, {"width": [6.0, 12.0], "temperature": [0.1]}, X, Y, Xt, Yt)
    assert rows[0]["error"] == pytest.approx(e["error"], rel=1e-9)
    assert len(rows[0]["per_output"]["error"]) == 3 and rows[0]["outputs"] == 3


def test_one_hot():
    Y = one_hot([2, 0, 1, 2], 3)
    np.testing.assert_array_equal(Y, [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert Y.dtype == np.float64
    with pytest.raises(ValueError, match="labels"):
        one_hot([0, 3], 3)
    with pytest.raises(ValueError, match="D"):
        one_hot([0, 1], 0)
    with pytest.raises(TypeError, match="labels"):
        one_hot([0.5, 1], 2)


def test_bad_targets():
    X, Xt, Y = _problem(9)
    th = FCTheory(width=6, temperature=0.1)
    Yn = Y.copy()
    Yn[3, 1] = np.nan
    with pytest.raises(ValueError, match="y"):
        th.fit(X, Yn)
    with pytest.raises(ValueError, match=r"shape \(20,\) or \(20, D\)"):
        th.fit(X, Y[:-1])
    with pytest.raises(ValueError, match="D = 0"):
        th.fit(X, np.zeros((20, 0)))
    with pytest.raises(ValueError, match=r"width 2 is below 3"):
        FCTheory(width=2, temperature=0.1).fit(X, Y)
    with pytest.raises(ValueError, match=r"width 2 is below 3"):
        DeepFCTheory(2, width=2, temperature=0.1).fit(X, Y)
    with pytest.raises(ValueError, match="width"):
        FCTheory(width=8, temperature=0.1).fit_path(X, Y, [8.0, 2.0])
    with pytest.raises(ValueError, match="one output"):
        DeepFCTheory(2, width=8, temperature=0.1, variant="nested").fit(X, Y)
    with pytest.raises(ValueError, match=r"width 2 is below 3"):  # relu: N1 >= D as well
        FCTheory(width=2, temperature=0.1, activation="relu").fit(X, Y)
    th.fit(X, Y)
    with pytest.raises(ValueError, match=r"y_test must have shape \(5, 3\)"):
        th.evaluate(Xt, np.ones(5))
    with pytest.raises(ValueError, match="positive definite"):
        th.fit(X, Y, Q0=-np.eye(3))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        th.action(np.eye(2))




@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), T=st.floats(1e-3, 2.0), alpha=st.floats(0.01, 10.0),
       L=st.integers(1, 3), D=st.integers(1, 4))
def test_property_eigenbasis_action_equals_dense(seed, T, alpha, L, D):
    rng = np.random.default_rng(seed)
    P = int(rng.integers(2, 9))
    X = rng.standard_normal((P, 4))
    K = fc_kernel(X)
    Y = rng.standard_normal((P, D))
    Bm = rng.standard_normal((D, D))
    Q = Bm @ Bm.T + 0.1 * np.eye(D)
    lam, U = np.linalg.eigh(K)
    prob = MultiOutputProblem(np.maximum(lam, 0), U.T @ Y, alpha=alpha, T=T, L=L)
    ev = prob.evaluate(Q)
    assert ev.S == pytest.approx(ref.mo_action(Q, K, Y, T, alpha, L), rel=1e-9, abs=1e-9)
    G = ref.mo_grad(Q, K, Y, T, alpha, L)
    np.testing.assert_allclose(ev.grad, G, rtol=1e-7, atol=1e-9 * (1 + np.abs(G).max()))
