"""DeepCNNTheory and the deep CNN-GP (docs/deep-cnn.md sections 5 and 6) against an independent NumPy
solver on the reference recursion of tests/deep_reference.py, CNNTheory (L = 1) and the
vanilla DeepFCTheory (d = 1)."""
import warnings

import numpy as np
import pytest
import scipy.linalg as sla
from deep_reference import canonical, ref_for
from scipy.optimize import minimize

import lkr
from lkr._warnings import ActivationCaveatWarning
from lkr.theory import CNNTheory, DeepCNNTheory, DeepFCTheory, GPTheory

LAMS = (1.1, 0.8, 1.3)


def _dg(padding="same"):
    return lkr.DeepGeometry((8,), filter_sizes=[3, 2], strides=[1, 2], padding=padding)


def _data(dg, P=24, seed=0):
    rng = np.random.default_rng(seed)
    X = canonical(rng, dg, P)
    y = np.tanh(X.reshape(P, -1).sum(1)) + 0.1 * rng.standard_normal(P)
    return X, y


class RefDeepAction:
    """S(Q) = L tr Q^{1/L} - log det Q + (alpha/P)[y^T A^-1 y + log det A] on the
    materialised K_L of the NumPy reference recursion."""

    def __init__(self, dg, X, y, width, T, act, lams):
        self.K = ref_for(dg, X, None, act, lams)  # (P, P, d, d)
        self.L, self.d, self.P = dg.depth, dg.num_patches, X.shape[0]
        self.c = (self.P / width) / self.P
        self.T, self.y, self.lamL = T, y, lams[-1]

    def kr(self, Q):
        return np.einsum("ij,abij->ab", Q, self.K) / (self.lamL * self.d)

    def action_grad(self, Q):
        w, U = np.linalg.eigh(Q)
        A = self.kr(Q) + self.T * np.eye(self.P)
        Ai = np.linalg.inv(A)
        a = Ai @ self.y
        S = (self.L * np.sum(w ** (1 / self.L)) - np.sum(np.log(w))
             + self.c * (self.y @ a + np.linalg.slogdet(A)[1]))
        B = Ai - np.outer(a, a)
        G = np.einsum("ab,abij->ij", B, self.K) / (self.lamL * self.d)
        g = (U * w ** (1 / self.L - 1)) @ U.T - (U / w) @ U.T + self.c * (G + G.T) / 2
        return S, g

    def solve(self):
        d = self.d
        tril = np.tril_indices(d)

        def unpack(x):
            M = np.zeros((d, d))
            M[tril] = x
            return M @ M.T

        def f(x):
            M = np.zeros((d, d))
            M[tril] = x
            S, g = self.action_grad(M @ M.T)
            return S, (2 * g @ M)[tril]

        x0 = np.eye(d)[tril]
        res = minimize(f, x0, jac=True, method="BFGS", options={"gtol": 1e-11, "maxiter": 5000})
        return unpack(res.x)


@pytest.mark.parametrize("act,padding", [("erf", "same"), ("linear", "circular"),
                                         ("relu", "valid")])
def test_solution_matches_an_independent_numpy_solver(act, padding):
    dg = _dg(padding)
    X, y = _data(dg)
    width, T = 12.0, 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ActivationCaveatWarning)
        # relu: the central L-layer action (mean="ignore"), the reference's action
        th = DeepCNNTheory(dg, width, T, activation=act, lambdas=LAMS, tol=1e-10,
                           mean="ignore")
    sol = th.fit(X, y)
    ref = RefDeepAction(dg, X, y, width, T, act, LAMS)
    Qref = ref.solve()
    assert sol.converged
    assert np.abs(sol.Q - Qref).max() < 1e-6 * np.abs(Qref).max()
    S_ref, g_ref = ref.action_grad(sol.Q)
    assert abs(sol.action - S_ref) < 1e-10 * abs(S_ref)
    assert np.abs(th.gradient(sol.Q) - g_ref).max() < 1e-9
    R = sol.R
    assert np.allclose(np.linalg.matrix_power(R, dg.depth), sol.Q, rtol=1e-10, atol=1e-12)
    assert np.array_equal(sol.extra["R"], R)


def test_action_and_gradient_against_finite_differences():
    dg = lkr.DeepGeometry((3, 4), filter_sizes=[(2, 2), (2, 1), 1], strides=[1, (1, 2), 1],
                          padding=["same", "valid", "circular"], channels=2)
    X, y = _data(dg, P=16, seed=1)
    th = DeepCNNTheory(dg, 20, 0.3, lambdas=(1.0, 1.2, 0.9, 1.1))
    th.set_data(X, y)
    d = dg.num_patches
    rng = np.random.default_rng(3)
    A = rng.standard_normal((d, d))
    Q = A @ A.T / d + np.eye(d)
    ref = RefDeepAction(dg, X, y, 20, 0.3, "erf", (1.0, 1.2, 0.9, 1.1))
    S_ref, g_ref = ref.action_grad(Q)
    assert abs(th.action(Q) - S_ref) < 1e-11 * abs(S_ref)
    g = th.gradient(Q)
    assert np.allclose(g, g.T)
    for _ in range(3):
        E = rng.standard_normal((d, d))
        E = (E + E.T) / 2
        h = 1e-5
        fd = (th.action(Q + h * E) - th.action(Q - h * E)) / (2 * h)
        assert abs(fd - np.sum(g * E)) < 1e-7 * max(1.0, abs(fd))


@pytest.mark.parametrize("act", ["erf", "linear"])
def test_one_layer_equals_cnn_theory(act):
    dg = lkr.DeepGeometry((3, 4), filter_sizes=[(2, 2)], strides=[1], padding=["same"],
                          channels=2, layout="channels_first")
    rng = np.random.default_rng(5)
    X = rng.standard_normal((20, 2, 3, 4))
    y = rng.standard_normal(20)
    a = DeepCNNTheory(dg, 15, 0.1, activation=act, lambdas=(1.3, 0.6)).fit(X, y)
    b = CNNTheory(dg.layers[0], 15, 0.1, activation=act, lambda0=1.3, lambda1=0.6).fit(X, y)
    assert np.abs(a.Q - b.Q).max() < 1e-10 * np.abs(b.Q).max()
    assert abs(a.action - b.action) < 1e-10 * abs(b.action)
    Xt = rng.standard_normal((6, 2, 3, 4))
    pa = DeepCNNTheory(dg, 15, 0.1, activation=act, lambdas=(1.3, 0.6))
    pa.fit(X, y)
    pb = CNNTheory(dg.layers[0], 15, 0.1, activation=act, lambda0=1.3, lambda1=0.6)
    pb.fit(X, y)
    ma, mb = pa.predict(Xt), pb.predict(Xt)
    assert np.allclose(ma.mean, mb.mean, rtol=1e-9, atol=1e-12)
    assert np.allclose(ma.variance, mb.variance, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("depth", [2, 3])
def test_one_final_patch_is_the_vanilla_deep_fc(depth):
    # layer 1 covers the whole input, the layers above are 1-site filters: d = 1, and the
    # kernel is the deep FC's K^(L); Q = R^L with R the equal Q_l of the vanilla deep FC
    dg = lkr.DeepGeometry((7,), filter_sizes=[7] + [1] * (depth - 1), strides=1)
    assert dg.num_patches == 1
    rng = np.random.default_rng(depth)
    X = rng.standard_normal((18, 7))
    y = rng.standard_normal(18)
    Xt = rng.standard_normal((5, 7))
    lams = tuple(np.linspace(0.8, 1.4, depth + 1))
    t = DeepCNNTheory(dg, 4, 0.05, lambdas=lams, tol=1e-11)
    f = DeepFCTheory(depth, 4, 0.05, lambdas=lams)
    st, sf = t.fit(X, y), f.fit(X, y)
    assert np.allclose(st.R[0, 0], sf.Q, rtol=1e-8)
    assert abs(st.action - sf.action) < 1e-9 * abs(sf.action)
    pt, pf = t.predict(Xt), f.predict(Xt)
    assert np.allclose(pt.mean, pf.mean, rtol=1e-7, atol=1e-10)
    assert np.allclose(pt.variance, pf.variance, rtol=1e-7, atol=1e-10)


def test_streamed_equals_materialised_and_fit_path():
    dg = _dg()
    X, y = _data(dg, P=20, seed=2)
    a = DeepCNNTheory(dg, 10, 0.1, lambdas=LAMS, materialize=True)
    b = DeepCNNTheory(dg, 10, 0.1, lambdas=LAMS, materialize=False)
    sa, sb = a.fit(X, y), b.fit(X, y)
    assert a.materialized and not b.materialized
    assert np.abs(sa.Q - sb.Q).max() < 1e-7
    path = a.fit_path(X, y, [40, 20, 10])
    assert [p.width for p in path] == [40, 20, 10]
    assert np.abs(path[-1].solution.Q - sa.Q).max() < 1e-6
    Xt, _ = _data(dg, P=4, seed=9)
    err = path[-1].evaluate(Xt, np.zeros(4))
    assert set(err) == {"error", "bias2", "variance"}


@pytest.mark.parametrize("diagonal", [False, True])
def test_operator_stored_streamed_and_reference(diagonal):
    """DeepLocalOperator: the stored kernel (the compiled pack on the dense or diagonal pair
    plan) and the streamed one give the reference K_R(Q) and G(B); diagonal=True keeps
    only the patch pairs (i, i) (an LCN-like readout)."""
    from lkr.theory.deep_conv import DeepLocalOperator

    dg = lkr.DeepGeometry((7, 6), [(3, 2), 2], [1, 2], ["same", "circular"])
    X, _ = _data(dg, P=9, seed=3)
    rng = np.random.default_rng(5)
    d = dg.num_patches
    A = rng.standard_normal((d, d))
    Q = A @ A.T / d + np.eye(d)
    B = rng.standard_normal((9, 9))
    B = B + B.T
    K = ref_for(dg, X, None, "erf", LAMS)
    Qr = np.diag(np.diag(Q)) if diagonal else Q
    want_kr = np.einsum("ij,abij->ab", Qr, K) / (LAMS[-1] * d)
    G = np.einsum("ab,abij->ij", B, K)
    want_g = np.diag(np.diag(G)) if diagonal else (G + G.T) / 2
    flat = dg.flatten(X)
    for materialize in (True, False):
        op = DeepLocalOperator(flat, dg, "erf", LAMS, materialize=materialize, diagonal=diagonal)
        assert op.materialized == materialize
        np.testing.assert_allclose(op.kr(Q), want_kr, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(op.adjoint(B), want_g, rtol=1e-12, atol=1e-13)


def test_deep_cnn_gp_posterior():
    dg = _dg("circular")
    X, y = _data(dg, P=15, seed=4)
    Xt, _ = _data(dg, P=5, seed=6)
    gp = GPTheory("cnn", geometry=dg, temperature=0.2, lambdas=LAMS)
    sol = gp.fit(X, y)
    assert np.array_equal(sol.Q, np.eye(dg.num_patches))
    pred = gp.predict(Xt)
    Z = np.concatenate([X, Xt])
    K = ref_for(dg, Z, None, "erf", LAMS)
    KR = np.einsum("abii->ab", K) / (LAMS[-1] * dg.num_patches)
    P = X.shape[0]
    A = KR[:P, :P] + 0.2 * np.eye(P)
    k = KR[P:, :P]
    assert np.allclose(pred.mean, k @ np.linalg.solve(A, y), rtol=1e-10, atol=1e-12)
    var = np.diag(KR[P:, P:]) - np.einsum("ij,ji->i", k, np.linalg.solve(A, k.T))
    assert np.allclose(pred.variance, var, rtol=1e-9, atol=1e-12)
    # the infinite-width limit of the theory: a huge width gives Q -> I
    th = DeepCNNTheory(dg, 1e9, 0.2, lambdas=LAMS)
    th.fit(X, y)
    assert np.abs(th.solution.Q - np.eye(dg.num_patches)).max() < 1e-6
    assert np.allclose(th.predict(Xt).mean, pred.mean, rtol=1e-6, atol=1e-9)


def test_relu_warns_and_bad_input():
    dg = _dg()
    with pytest.warns(ActivationCaveatWarning):
        DeepCNNTheory(dg, 10, 0.1, activation="relu", mean="ignore")
    assert DeepCNNTheory(dg, 10, 0.1, activation="relu").noncentral  # no warning
    with pytest.raises(TypeError, match="DeepGeometry"):
        DeepCNNTheory(dg.layers[0], 10, 0.1)
    with pytest.raises(ValueError, match="width 2 is below 4"):
        DeepCNNTheory(dg, 2, 0.1)
    with pytest.raises(ValueError, match="lambdas must hold 3"):
        DeepCNNTheory(dg, 10, 0.1, lambdas=(1.0, 1.0))
    with pytest.raises(ValueError, match="lambdas"):
        DeepCNNTheory(dg, 10, 0.1, lambdas=(1.0, -1.0, 1.0))
    X, y = _data(dg, P=10)
    th = DeepCNNTheory(dg, 10, 0.1)
    with pytest.raises(ValueError, match="width 10 is below 12"):
        th.fit(X, np.stack([y, y, y], 1))  # d D = 4 x 3 final (patch, output) pairs
    with pytest.raises(RuntimeError, match="fit"):
        th.predict(X)
    th.set_data(X, y)
    with pytest.raises(ValueError, match="positive definite"):
        th.action(-np.eye(dg.num_patches))
    with pytest.raises(ValueError, match="shape"):
        th.gradient(np.eye(3))
    with pytest.raises(ValueError, match="lambdas is for a DeepGeometry"):
        GPTheory("fc", lambdas=(1.0, 1.0))
    with pytest.raises(MemoryError, match="materialize=False"):
        DeepCNNTheory(dg, 10, 0.1, max_bytes=8, materialize=True).fit(X, y)


def test_solution_serialises():
    dg = _dg()
    X, y = _data(dg, P=12)
    sol = DeepCNNTheory(dg, 10, 0.1).fit(X, y)
    d = sol.to_dict()
    assert np.allclose(np.array(d["extra"]["R"]), sol.R)
    assert sla.cholesky(sol.R) is not None
