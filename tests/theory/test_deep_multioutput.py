"""DeepCNNTheory with D outputs and with relu (docs/deep-cnn.md section 6) against the dense
NumPy reference of tests/deep_theory_reference.py; reductions to CNNTheory (L = 1, odd and
relu, one and D outputs); finite-difference gradients; the operator protocol (streamed =
stored, the adjoint identity, test kernels); width conditions; the deep CNN-GP with D
outputs."""
import numpy as np
import pytest
from deep_reference import canonical, ref_for
from deep_theory_reference import DeepProblem

import lkr
from lkr.kernels_multi import patch_mean
from lkr.theory import CNNTheory, DeepCNNTheory, GPTheory
from lkr.theory.deep_conv import DeepLocalOperator

LAMS = (1.1, 0.8, 1.3)


def _dg(padding="same"):
    # 8 sites -> 8 (filter 3, stride 1) -> 4 (filter 2, stride 2): d = 4 ("valid": 6 -> 3)
    return lkr.DeepGeometry((8,), filter_sizes=[3, 2], strides=[1, 2], padding=padding)


def _data(dg, P, D, seed=0):
    rng = np.random.default_rng(seed)
    X = canonical(rng, dg, P)
    s = X.reshape(P, -1)
    Y = np.stack([np.tanh(s[:, k::3].sum(1)) for k in range(D)], 1)
    Y = Y + 0.1 * rng.standard_normal(Y.shape)
    return X, (Y[:, 0] if D == 1 else Y), canonical(rng, dg, 5)


def _close(a, b, rtol):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() <= rtol * max(np.abs(b).max(), 1e-300)


@pytest.mark.parametrize("act,padding,D,materialize", [
    ("erf", "same", 2, True), ("erf", "circular", 3, False), ("linear", "valid", 2, True)])
def test_central_action_with_D_outputs_matches_the_dense_reference(act, padding, D, materialize):
    dg = _dg(padding)
    X, Y, Xt = _data(dg, 14, D)
    width, T = 4.0 * dg.num_patches * D, 0.2
    th = DeepCNNTheory(dg, width, T, activation=act, lambdas=LAMS, tol=1e-11,
                       materialize=materialize)
    sol = th.fit(X, Y)
    ref = DeepProblem(dg, X, Y, Xt, width=width, T=T, act=act, lams=LAMS)
    Q = ref.solve_odd()
    assert sol.converged and sol.conjugate is None
    assert th.materialized is materialize
    assert sol.Q.shape == (dg.num_patches * D,) * 2
    assert _close(sol.Q, Q, 1e-7)
    assert abs(sol.action - ref.odd_action(sol.Q)) < 1e-10 * abs(ref.odd_action(sol.Q))
    Q1 = sol.Q + 0.1 * np.eye(len(Q))  # away from the saddle, where the gradient is O(1)
    assert _close(th.gradient(Q1), ref.odd_gradient(Q1), 1e-9)
    assert np.allclose(np.linalg.matrix_power(sol.R, dg.depth), sol.Q, rtol=1e-9, atol=1e-12)
    pred = th.predict(Xt)
    mean, cov = ref.predict(sol.Q)
    assert pred.mean.shape == (5, D) and pred.covariance.shape == (5, D, D)
    assert _close(pred.mean, mean, 1e-9)
    assert _close(pred.covariance, cov, 1e-8)


@pytest.mark.parametrize("padding,D,materialize", [("valid", 1, True), ("same", 2, True),
                                                   ("same", 2, False)])
def test_relu_noncentral_matches_the_dense_reference(padding, D, materialize):
    dg = _dg(padding)
    X, Y, Xt = _data(dg, 14, D, seed=1)
    width, T = 3.0 * dg.num_patches * D, 0.15
    th = DeepCNNTheory(dg, width, T, activation="relu", lambdas=LAMS, tol=1e-11,
                       materialize=materialize)
    assert th.noncentral
    sol = th.fit(X, Y)
    ref = DeepProblem(dg, X, Y, Xt, width=width, T=T, act="relu", lams=LAMS)
    Qbar, Qc = ref.solve_noncentral()
    assert sol.converged
    assert _close(sol.Q, Qbar, 1e-8) and _close(sol.conjugate, Qc, 1e-7)
    assert "R" not in sol.extra  # Q^{1/L} belongs to the central action only
    S = ref.nc_action(sol.Q, sol.conjugate)
    assert abs(th.action(sol.Q, sol.conjugate) - S) < 1e-11 * abs(S)
    pred = th.predict(Xt)
    mean, cov = ref.predict(sol.Q, sol.conjugate)
    assert _close(pred.mean.reshape(mean.shape), mean, 1e-8)
    assert _close(pred.covariance, cov, 1e-8)


def test_gradients_against_finite_differences():
    dg = lkr.DeepGeometry((3, 4), filter_sizes=[(2, 2), (2, 1)], strides=[1, (1, 2)],
                          padding=["same", "valid"], channels=2)
    D = 2
    X, Y, _ = _data(dg, 12, D, seed=3)
    rng = np.random.default_rng(4)
    n = dg.num_patches * D
    A = rng.standard_normal((n, n))
    Q = A @ A.T / n + np.eye(n)
    Qc = 0.3 * (A + A.T) / n
    for act in ("erf", "relu"):
        th = DeepCNNTheory(dg, 5.0 * n, 0.3, activation=act, lambdas=(1.0, 1.2, 0.9))
        th.set_data(X, Y)
        if act == "erf":
            g = th.gradient(Q)
            assert np.allclose(g, g.T)
            checks = [(g, lambda E, h, f=th.action: (f(Q + h * E) - f(Q - h * E)) / (2 * h))]
        else:
            gb, gq = th.gradient(Q, Qc)
            checks = [(gb, lambda E, h, f=th.action: (f(Q + h * E, Qc) - f(Q - h * E, Qc))
                       / (2 * h)),
                      (gq, lambda E, h, f=th.action: (f(Q, Qc + h * E) - f(Q, Qc - h * E))
                       / (2 * h))]
        for g, fd in checks:
            for _ in range(2):
                E = rng.standard_normal((n, n))
                E = (E + E.T) / 2
                num = fd(E, 1e-5)
                assert abs(num - np.sum(g * E)) < 1e-7 * max(1.0, abs(num))


@pytest.mark.parametrize("act,D", [("erf", 1), ("erf", 3), ("relu", 1), ("relu", 3)])
def test_one_layer_equals_cnn_theory(act, D):
    dg = lkr.DeepGeometry((3, 4), filter_sizes=[(2, 2)], strides=[1], padding=["valid"],
                          channels=2, layout="channels_first")
    rng = np.random.default_rng(5)
    X = rng.standard_normal((16, 2, 3, 4))
    Y = rng.standard_normal((16, D)) if D > 1 else rng.standard_normal(16)
    Xt = rng.standard_normal((4, 2, 3, 4))
    width = 3.0 * dg.num_patches * D
    a = DeepCNNTheory(dg, width, 0.1, activation=act, lambdas=(1.3, 0.6))
    b = CNNTheory(dg.layers[0], width, 0.1, activation=act, lambda0=1.3, lambda1=0.6)
    sa, sb = a.fit(X, Y), b.fit(X, Y)
    assert _close(sa.Q, sb.Q, 1e-8)
    assert abs(sa.action - sb.action) < 1e-9 * abs(sb.action)
    if act == "relu":
        assert _close(sa.conjugate, sb.conjugate, 1e-7)
    pa, pb = a.predict(Xt), b.predict(Xt)
    assert _close(pa.mean, pb.mean, 1e-8)
    assert _close(pa.covariance, pb.covariance, 1e-8)


def test_operator_protocol():
    """Streamed = stored for D outputs and the mean terms; the adjoint identity
    sum W * K_R(Q) = (1/(lambda_L d)) sum Q * G(W); test kernels at training inputs are rows
    of K_R."""
    dg = _dg("same")
    P, D = 9, 3
    X = canonical(np.random.default_rng(6), dg, P).reshape(P, -1)
    d = dg.num_patches
    n = d * D
    rng = np.random.default_rng(7)
    A = rng.standard_normal((n, n))
    Q, Qm = (A + A.T) / 2, rng.standard_normal((n, n))
    Qm = (Qm + Qm.T) / 2
    W = rng.standard_normal((P * D, P * D))
    W = (W + W.T) / 2
    ops = [DeepLocalOperator(X, dg, "relu", LAMS, materialize=m) for m in (True, False)]
    K0, K1 = (op.kr(Q, LAMS[-1], Qm) for op in ops)
    assert _close(K0, K1, 1e-12)
    (Gc0, Gm0), (Gc1, Gm1) = (op.adjoint(W, centred=True) for op in ops)
    assert _close(Gc0, Gc1, 1e-12) and _close(Gm0, Gm1, 1e-12)
    scale = 1.0 / (LAMS[-1] * d)
    lhs = np.sum(W * ops[0].kr(Q))
    assert abs(lhs - scale * np.sum(Q * ops[0].adjoint(W))) < 1e-11 * abs(lhs)
    # the reference: K_L of the recursion, means from its variances
    K, v = ref_for(dg, X.reshape((P,) + dg.input_shape + (1,)), None, "relu", LAMS,
                   with_variances=True)
    m = np.sqrt(v / (2 * np.pi))
    assert _close(ops[0].means, m, 1e-13)
    assert _close(patch_mean(X, geometry=dg, activation="relu", lambdas=LAMS), m, 1e-13)
    ref = (np.einsum("mnij,iajb->manb", K, Q.reshape(d, D, d, D))
           + np.einsum("mi,iajb,nj->manb", m, Qm.reshape(d, D, d, D), m)) * scale
    assert _close(K0, ref.reshape(P * D, P * D), 1e-12)
    for op in ops:
        kc, blocks = op.test_kernels(X[:4], Q, LAMS[-1], Qm)
        assert _close(kc, K0[:4 * D], 1e-12)
        K4 = K0.reshape(P, D, P, D)
        assert _close(blocks, np.stack([K4[t, :, t, :] for t in range(4)]), 1e-12)


def test_width_conditions_and_bad_input():
    dg = _dg()
    d = dg.num_patches
    X, Y, _ = _data(dg, 10, 3)
    th = DeepCNNTheory(dg, 2 * d, 0.1)
    with pytest.raises(ValueError, match=rf"width {2 * d} is below {3 * d}.*3 outputs"):
        th.fit(X, Y)
    with pytest.raises(ValueError, match="width 2 is below 4"):
        DeepCNNTheory(dg, 2, 0.1)
    th = DeepCNNTheory(dg, 3 * d, 0.1)
    th.set_data(X, Y)
    with pytest.raises(ValueError, match=rf"shape \({3 * d}, {3 * d}\)"):
        th.action(np.eye(d))
    relu = DeepCNNTheory(dg, 3 * d, 0.1, activation="relu")
    relu.set_data(X, Y)
    with pytest.raises(ValueError, match="conjugate"):
        relu.action(np.eye(3 * d))
    with pytest.raises(ValueError, match="mean must be one of"):
        DeepCNNTheory(dg, 10, 0.1, mean="yes")


def test_fit_path_carries_the_pair_and_warm_starts():
    dg = _dg("valid")
    X, Y, Xt = _data(dg, 12, 2, seed=8)
    th = DeepCNNTheory(dg, 60, 0.2, activation="relu", lambdas=LAMS)
    path = th.fit_path(X, Y, [60, 24, 12])
    assert [p.width for p in path] == [60, 24, 12]
    assert all(p.solution.converged and p.solution.conjugate is not None for p in path)
    direct = DeepCNNTheory(dg, 12, 0.2, activation="relu", lambdas=LAMS).fit(X, Y)
    assert _close(path[-1].solution.Q, direct.Q, 1e-6)
    with pytest.raises(ValueError, match="below"):
        th.fit_path(X, Y, [5])


def test_deep_gp_with_D_outputs():
    dg = _dg("circular")
    X, Y, Xt = _data(dg, 15, 3, seed=4)
    gp = GPTheory("cnn", geometry=dg, temperature=0.2, lambdas=LAMS)
    gp.fit(X, Y)
    pred = gp.predict(Xt)
    K = ref_for(dg, np.concatenate([X, Xt]), None, "erf", LAMS)
    KR = np.einsum("abii->ab", K) / (LAMS[-1] * dg.num_patches)
    A = KR[:15, :15] + 0.2 * np.eye(15)
    k = KR[15:, :15]
    assert pred.mean.shape == (5, 3) and pred.covariance.shape == (5, 3, 3)
    assert np.allclose(pred.mean, k @ np.linalg.solve(A, Y), rtol=1e-10, atol=1e-12)
    var = np.diag(KR[15:, 15:]) - np.einsum("ij,ji->i", k, np.linalg.solve(A, k.T))
    assert np.allclose(pred.variance, var[:, None] * np.ones(3), rtol=1e-9, atol=1e-12)
    # and the infinite-width limit of the theory with D outputs
    th = DeepCNNTheory(dg, 1e9, 0.2, lambdas=LAMS)
    th.fit(X, Y)
    assert np.allclose(th.predict(Xt).mean, pred.mean, rtol=1e-6, atol=1e-9)
