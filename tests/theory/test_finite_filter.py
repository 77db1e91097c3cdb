"""The experimental finite-filter action, CNNTheory(activation="relu", filter_norm="exact")
(docs/validity.md section 4): the chi^2 quadrature, the 1-D average and its gradients, the
action's gradients against finite differences, the s = 1 (M -> infinity) reduction to the
non-central action, and the refusals."""
import math

import numpy as np
import pytest

import lkr
from lkr.theory import CNNTheory, LCNTheory
from lkr.theory import _cnn_finite_filter as ff

pytestmark = pytest.mark.filterwarnings("ignore::lkr._warnings.TheoryRegimeWarning")


def _task(M=16, P=16, Np=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((P, Np * M))
    y = np.tanh(X[:, :M].sum(1) / math.sqrt(M)) - 0.5 * np.tanh(X[:, M:2 * M].sum(1)
                                                                / math.sqrt(M))
    return lkr.PatchGeometry((Np * M,), M), X, y, rng.standard_normal((8, Np * M))


def _sym(rng, n, scale):
    A = rng.standard_normal((n, n)) * scale
    return A + A.T


@pytest.mark.parametrize("M", [1, 4, 9, 27, 64])
@pytest.mark.parametrize("n", [2, 5, 12])
def test_chi2_rule_is_gauss_for_the_chi2_law(M, n):
    t, w = ff.chi2_rule(M, n)
    assert np.all(t > 0) and np.all(w > 0) and w.sum() == pytest.approx(1, abs=1e-13)
    # exact for t^k, k <= 2n - 1: E[(chi^2_M / M)^k] = prod_{j<k} (M + 2j) / M
    for k in range(2 * n):
        exact = math.prod((M + 2 * j) / M for j in range(k))
        assert np.sum(w * t**k) == pytest.approx(exact, rel=1e-9)
    assert ff.chi2_rule(np.inf, n) == (pytest.approx([1.0]), pytest.approx([1.0]))


def test_mean_s_squared():
    assert ff.mean_s_squared(1) == pytest.approx(2 / math.pi, rel=1e-14)  # E|z| = sqrt(2/pi)
    assert ff.mean_s_squared(2) == pytest.approx(math.pi / 4, rel=1e-14)  # Rayleigh
    assert ff.mean_s_squared(np.inf) == 1.0
    assert ff.mean_s_squared(64) == pytest.approx(1 - 1 / (2 * 64), rel=2e-4)
    rng = np.random.default_rng(0)
    s = np.sqrt(rng.chisquare(9, 400_000) / 9)
    assert ff.mean_s_squared(9) == pytest.approx(s.mean() ** 2, rel=2e-3)


def test_average_at_one_node_and_its_gradients():
    rng = np.random.default_rng(1)
    n = 4
    Q, R = _sym(rng, n, 0.1), np.eye(n) * 0.2 + _sym(rng, n, 0.05)
    phi, gQ, gR = ff.average(Q, R, np.ones(1), np.ones(1))
    S_ = np.linalg.inv(np.eye(n) + Q)
    assert phi == pytest.approx(np.linalg.slogdet(np.eye(n) + Q)[1] + np.trace(S_ @ R),
                                rel=1e-12)
    assert np.allclose(gR, S_, atol=1e-12) and np.allclose(gQ, S_ - S_ @ R @ S_, atol=1e-12)
    t, w = ff.chi2_rule(9, 6)
    Q = 0.2 * np.eye(n) + _sym(rng, n, 0.03)  # I + t Q positive definite at every node
    phi, gQ, gR = ff.average(Q, R, t, w)
    h = 1e-6
    for G, which in ((gQ, 0), (gR, 1)):
        for i, j in ((0, 0), (1, 3)):
            E = np.zeros((n, n))
            E[i, j] = E[j, i] = 1
            args_p = [Q, R]
            args_m = [Q, R]
            args_p[which] = args_p[which] + h * E
            args_m[which] = args_m[which] - h * E
            fd = (ff.average(*args_p, t, w)[0] - ff.average(*args_m, t, w)[0]) / (2 * h)
            assert fd == pytest.approx(G[i, j] * (1 if i == j else 2), rel=1e-6, abs=1e-9)
    # a node with I + t Q singular: undefined, not NaN
    assert ff.average(-np.eye(n) * 0.5, R, np.array([1.0, 3.0]), np.array([0.5, 0.5])) is None


def test_direction_covariance_is_psd():
    # relu is homogeneous: K - m m^T / E[s]^2 is the covariance of the direction part's
    # features, positive semi-definite for every M (the kernel the action renormalises)
    g, X, _, _ = _task(M=4, P=10)
    K = lkr.local_kernel(X, geometry=g, activation="relu")  # (P, P, Np, Np)
    from lkr.activations import mean_map

    C = np.einsum("pim,pim->pi", g.patches(X), g.patches(X)) / g.patch_size
    m = mean_map("relu", C)  # (P, Np)
    P, Np = m.shape
    Kf = K.transpose(0, 2, 1, 3).reshape(P * Np, P * Np)
    mm = np.outer(m.reshape(-1), m.reshape(-1))
    e2 = ff.mean_s_squared(4)
    assert np.linalg.eigvalsh(Kf - mm / e2)[0] > -1e-10
    assert np.linalg.eigvalsh(Kf - mm / (0.9 * e2))[0] < -1e-6  # and the bound is tight-ish


def test_action_gradients_match_finite_differences():
    g, X, y, _ = _task(M=9)
    th = CNNTheory(geometry=g, width=16, temperature=0.1, activation="relu",
                   filter_norm="exact")
    th.set_data(X, y)
    rng = np.random.default_rng(2)
    n = g.num_patches
    pts = [np.eye(n) + _sym(rng, n, 0.05), _sym(rng, n, 0.05),
           0.9 * np.eye(n) + _sym(rng, n, 0.05), 0.1 * np.eye(n) + _sym(rng, n, 0.05)]

    def S(p):
        return th.action(p[0], (p[1], p[2], p[3]))

    grads = th.gradient(pts[0], tuple(pts[1:]))  # (Qbar, Rbar, Q, R)
    where = {0: 0, 1: 2, 2: 1, 3: 3}  # gradient index -> point index (Qbar, Q, Rbar, R)
    h = 1e-6
    for gi, pi in where.items():
        for i, j in ((1, 1), (0, 2)):
            E = np.zeros((n, n))
            E[i, j] = E[j, i] = 1
            up = [p.copy() for p in pts]
            dn = [p.copy() for p in pts]
            up[pi] += h * E
            dn[pi] -= h * E
            fd = (S(up) - S(dn)) / (2 * h)
            assert fd == pytest.approx(grads[gi][i, j] * (1 if i == j else 2), rel=1e-5,
                                       abs=1e-8)


def test_infinite_filter_is_the_noncentral_action():
    g, X, y, Xt = _task(M=16)
    plain = CNNTheory(geometry=g, width=16, temperature=0.1, activation="relu")
    sp = plain.fit(X, y)
    th = CNNTheory(geometry=g, width=16, temperature=0.1, activation="relu",
                   filter_norm="exact")
    th.set_data(X, y)
    s = ff.solve(th, None, 1e-11, 1000, M=np.inf)
    assert s.converged
    assert np.allclose(s.Q, sp.Q, atol=1e-8) and np.allclose(s.conjugate, sp.conjugate,
                                                             atol=1e-8)
    assert s.action == pytest.approx(sp.action, rel=1e-10)
    Rbar = s.extra["mean_order"]
    assert np.allclose(Rbar, np.linalg.inv(np.eye(len(Rbar)) + sp.conjugate), atol=1e-8)
    # the action at the s = 1 saddle, through the public method with M = inf
    ev = th._finite_filter_eval(s.Q, (s.conjugate, Rbar, s.extra["mean_conjugate"]),
                                M=np.inf, nodes=1)
    assert ev["S"] == pytest.approx(sp.action, rel=1e-10)
    # and its predictor is the non-central one
    th.solution = s
    a, b = th.predict(Xt), plain.predict(Xt)
    assert np.allclose(a.mean, b.mean, atol=1e-7) and np.allclose(a.variance, b.variance,
                                                                  atol=1e-7)


def test_fit_at_finite_filter():
    g, X, y, Xt = _task(M=16)
    th = CNNTheory(geometry=g, width=16, temperature=0.1, activation="relu",
                   filter_norm="exact")
    sol = th.fit(X, y)
    assert sol.converged and sol.rel_grad_norm <= 1e-8
    assert sol.extra["filter_norm"] == "exact" and sol.extra["nodes"] in ff.NODE_CHOICES
    grads = th.gradient(sol.Q, (sol.conjugate, sol.extra["mean_order"],
                                sol.extra["mean_conjugate"]))
    # the reported saddle is a root of the gradient of the same rule (n nodes)
    ev = th._finite_filter_eval(sol.Q, (sol.conjugate, sol.extra["mean_order"],
                                        sol.extra["mean_conjugate"]),
                                nodes=sol.extra["nodes"])
    assert ev["rel"] <= 1e-8 and len(grads) == 4
    pred = th.predict(Xt)
    assert np.all(np.isfinite(pred.mean)) and np.all(pred.variance >= 0)
    assert th.evaluate(Xt, np.zeros(len(Xt)))["error"] > 0
    paths = th.fit_path(X, y, [32, 16])
    assert all(p.solution.converged for p in paths)


def test_refusals():
    g, X, y, Xt = _task(M=4)
    with pytest.raises(ValueError, match="filter_norm must be"):
        CNNTheory(geometry=g, width=8, temperature=0.1, activation="relu", filter_norm="chi2")
    with pytest.raises(ValueError, match="activation='relu' and mean='auto'"):
        CNNTheory(geometry=g, width=8, temperature=0.1, activation="erf", filter_norm="exact")
    with pytest.warns(UserWarning, match="odd activations"), \
            pytest.raises(ValueError, match="mean='auto'"):
        CNNTheory(geometry=g, width=8, temperature=0.1, activation="relu", mean="ignore",
                  filter_norm="exact")
    with pytest.raises(ValueError, match="CNNTheory only"):
        LCNTheory(geometry=g, width=8, temperature=0.1, activation="relu", filter_norm="exact")
    th = CNNTheory(geometry=g, width=8, temperature=0.1, activation="relu",
                   filter_norm="exact")
    th.set_data(X, y)
    with pytest.raises(ValueError, match="triple"):
        th.action(np.eye(4), np.zeros((4, 4)))
    # where the conjugate has an eigenvalue q with s^2 = -1/q inside the chi^2 bulk, the
    # average does not exist: a clear refusal, not a number
    with pytest.raises(ValueError, match="does not exist"):
        th.fit(X, 3 * y)
    g, X, y, Xt = _task(M=16)
    th = CNNTheory(geometry=g, width=16, temperature=0.1, activation="relu",
                   filter_norm="exact")
    th.fit(X, y)
    with pytest.raises(ValueError, match="corrected=True"):
        th.predict(Xt, corrected=True)
