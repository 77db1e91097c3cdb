"""lkr.ntk: closed-form NTKs against J J^T from finite-difference Jacobians (oracle 12),
jacobian, gram for NumPy and torch, from_torch."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from net_factories import KINDS, make

from lkr import nets, ntk


def fd_jacobian(net, X, eps=1e-6):
    th = net.flatten()
    J = np.zeros((X.shape[0], th.size))
    for k in range(th.size):
        tp, tm = th.copy(), th.copy()
        tp[k] += eps
        tm[k] -= eps
        J[:, k] = (net.forward(X, net.unflatten(tp)) - net.forward(X, net.unflatten(tm))) / (2 * eps)
    return J


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((6, 12)), rng.standard_normal((4, 12))


# -- oracle 12 -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("act", ["erf", "relu", "linear"])
def test_closed_form_ntk_vs_finite_difference_jacobian(kind, act, data):
    X, Y = data
    net = make(kind, act)
    JX, JY = fd_jacobian(net, X), fd_jacobian(net, Y)
    scale = np.abs(JX @ JX.T).max()
    np.testing.assert_allclose(ntk.empirical_ntk(net, X), JX @ JX.T, atol=1e-7 * scale)
    np.testing.assert_allclose(ntk.empirical_ntk(net, X, Y), JX @ JY.T, atol=1e-7 * scale)
    np.testing.assert_allclose(ntk.jacobian(net, X), JX, atol=1e-7 * np.abs(JX).max())


@pytest.mark.parametrize("kind", KINDS)
def test_ntk_equals_gram_of_jacobian(kind, data):
    # the closed forms and the analytic J agree to rounding, and the train-test block
    # is the off-diagonal block of the joint NTK
    X, Y = data
    net = make(kind)
    J = ntk.jacobian(net, np.concatenate([X, Y]))
    T = ntk.empirical_ntk(net, np.concatenate([X, Y]))
    np.testing.assert_allclose(T, J @ J.T, rtol=1e-12, atol=1e-14 * np.abs(T).max())
    np.testing.assert_allclose(ntk.empirical_ntk(net, X, Y), T[:6, 6:], rtol=1e-12,
                               atol=1e-14 * np.abs(T).max())
    np.testing.assert_array_equal(T, T.T)


def test_fc_formula_of_design(data):
    # docs/theory.md section 3: Theta = (1/N1) sum_k [s_k s'_k + v_k^2 s._k s.'_k (x.x')/N0]
    from scipy.special import erf

    X, Y = data
    net = make("fc", "erf")
    W, v = net.params["W"], net.params["v"]
    N1, N0 = W.shape
    T = np.zeros((6, 4))
    for a in range(6):
        for b in range(4):
            h, h2 = W @ X[a] / np.sqrt(N0), W @ Y[b] / np.sqrt(N0)
            ds, ds2 = 2 / np.sqrt(np.pi) * np.exp(-h**2), 2 / np.sqrt(np.pi) * np.exp(-h2**2)
            T[a, b] = (erf(h) @ erf(h2) + (v**2 * ds * ds2).sum() * X[a] @ Y[b] / N0) / N1
    np.testing.assert_allclose(ntk.empirical_ntk(net, X, Y), T, rtol=1e-12)


@given(st.integers(1, 2000), st.sampled_from(["cnn", "lcn"]), st.integers(0, 1000))
def test_channel_blocking_does_not_change_the_result(max_bytes, kind, seed):
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((5, 12)), rng.standard_normal((3, 12))
    net = make(kind, seed=seed)
    full = ntk.empirical_ntk(net, X, Y)
    np.testing.assert_allclose(ntk.empirical_ntk(net, X, Y, max_bytes=max_bytes), full,
                               rtol=1e-12, atol=1e-15)


def test_linearized_net_has_base_ntk(data):
    X, _ = data
    net = make("cnn")
    lin = nets.LinearizedNet(net, np.ones(net.num_params))
    np.testing.assert_array_equal(ntk.empirical_ntk(lin, X), ntk.empirical_ntk(net, X))


@pytest.mark.parametrize("kind", KINDS)
def test_float32_ntk(kind, data):
    X, _ = data
    net = make(kind, dtype=np.float32)
    T32 = ntk.empirical_ntk(net, X.astype(np.float32))
    assert T32.dtype == np.float32
    ref = make(kind).with_params({k: v.astype(np.float64) for k, v in net.params.items()})
    T = ntk.empirical_ntk(ref, X)
    np.testing.assert_allclose(T32, T, rtol=1e-5, atol=1e-5 * np.abs(T).max())


def test_ntk_validation(data):
    X, _ = data
    with pytest.raises(TypeError, match="lkr's nets"):
        ntk.empirical_ntk(object(), X)
    with pytest.raises(ValueError, match="shape"):
        ntk.empirical_ntk(make("fc"), X[:, :4])
    with pytest.raises(ValueError, match="max_bytes"):
        ntk.empirical_ntk(make("cnn"), X, max_bytes=0)


# -- gram --------------------------------------------------------------------------------------
@given(st.integers(1, 40), st.integers(1, 30), st.integers(1, 50),
       st.sampled_from([np.float64, np.float32]), st.integers(0, 2**31 - 1))
def test_gram_matches_matmul(R, N, block, dtype, seed):
    J = np.random.default_rng(seed).standard_normal((R, N)).astype(dtype)
    G = ntk.gram(J, block=block)
    ref = J.astype(np.float64) @ J.T.astype(np.float64)
    assert G.dtype == dtype and G.shape == (R, R)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(G, ref, rtol=tol, atol=tol * np.abs(ref).max())
    np.testing.assert_array_equal(G, G.T)


def test_gram_of_strided_and_integer_input():
    J = np.arange(60, dtype=np.int64).reshape(6, 10)
    G = ntk.gram(J[:, ::2], block=4)
    assert G.dtype == np.float64
    np.testing.assert_array_equal(G, (J[:, ::2] @ J[:, ::2].T).astype(np.float64))


def test_gram_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        ntk.gram(np.ones(5))
    with pytest.raises(ValueError, match="2-D"):
        ntk.gram(np.ones((2, 3, 4)))
    J = np.ones((3, 4))
    J[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"non-finite.*\(1, 2\)"):
        ntk.gram(J)
    with pytest.raises(ValueError, match="block"):
        ntk.gram(np.ones((3, 4)), block=0)
    with pytest.raises(TypeError, match="real"):
        ntk.gram(np.ones((3, 4), dtype=complex))


def test_gram_torch():
    torch = pytest.importorskip("torch")
    J = torch.randn(33, 17, dtype=torch.float64)
    G = ntk.gram(J, block=8)
    assert isinstance(G, torch.Tensor) and G.dtype == torch.float64
    np.testing.assert_allclose(G.numpy(), (J @ J.T).numpy(), rtol=1e-12, atol=1e-12)
    J32 = J.float().requires_grad_(True)  # a tensor in a graph is taken through a copy
    G32 = ntk.gram(J32, block=5)
    assert G32.dtype == torch.float32
    np.testing.assert_allclose(G32.numpy(), (J @ J.T).numpy(), rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="2-D"):
        ntk.gram(torch.ones(3))


def test_from_torch_matches_lkr_closed_form():
    torch = pytest.importorskip("torch")
    net = nets.FCNet(12, 9, activation="erf", seed=0)
    W, v = (torch.tensor(net.params[k]) for k in ("W", "v"))

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.W = torch.nn.Parameter(W.clone())
            self.v = torch.nn.Parameter(v.clone())

        def forward(self, x):
            h = x @ self.W.T / 12**0.5
            return torch.erf(h) @ self.v / 9**0.5

    X = np.random.default_rng(0).standard_normal((7, 12))
    res = ntk.from_torch(Model(), torch.tensor(X), chunk=3, return_jacobian=True)
    np.testing.assert_allclose(res.ntk, ntk.empirical_ntk(net, X), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(res.jacobian, ntk.jacobian(net, X), rtol=1e-12, atol=1e-14)
    s = np.linalg.svd(res.jacobian, compute_uv=False)
    np.testing.assert_allclose(res.singular_values, s, rtol=1e-12)
    assert res.condition_number == pytest.approx(s[0] / s[-1])
    assert 1 <= res.effective_rank <= 7
    # a multi-output model: rows (sample, output), sample-major
    lin = torch.nn.Linear(4, 2).double()
    r2 = ntk.from_torch(lin, np.ones((3, 4)), return_jacobian=True)
    assert r2.ntk.shape == (6, 6)
    # outputs are independent in a linear layer: d f_0 / d theta . d f_1 / d theta = 0
    assert r2.ntk[0, 1] == 0 and r2.ntk[0, 2] != 0
    with pytest.raises(TypeError, match="Module"):
        ntk.from_torch(lambda x: x, X)


@pytest.mark.parametrize("kind", KINDS)
def test_same_results_on_every_array_library(kind, xp, data):
    # one test body for NumPy and CuPy (skipped without a GPU): nets, NTK and gram
    from testing import to_numpy

    X, Y = data
    net = make(kind)
    dev = net.with_params({k: xp.asarray(v) for k, v in net.params.items()})
    Xd, Yd = xp.asarray(X), xp.asarray(Y)
    r = np.random.default_rng(0).standard_normal(6)
    np.testing.assert_allclose(to_numpy(dev.forward(Xd)), net.forward(X), rtol=1e-12, atol=1e-14)
    g, gd = net.vjp(X, r), dev.vjp(Xd, xp.asarray(r))
    for k in g:
        np.testing.assert_allclose(to_numpy(gd[k]), g[k], rtol=1e-12, atol=1e-14)
    T = ntk.empirical_ntk(net, X, Y)
    np.testing.assert_allclose(to_numpy(ntk.empirical_ntk(dev, Xd, Yd)), T, rtol=1e-12,
                               atol=1e-14 * np.abs(T).max())
    J = ntk.jacobian(net, X)
    np.testing.assert_allclose(to_numpy(ntk.gram(xp.asarray(J), block=4)), J @ J.T, rtol=1e-12,
                               atol=1e-14 * np.abs(J @ J.T).max())
