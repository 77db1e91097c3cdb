"""DeepCNNNet: forward against a plain NumPy loop, vjp/jvp against finite differences,
the empirical NTK against J J^T, the prior covariance against the deep CNN-GP kernel,
Langevin through the protocol; CNNNet with the new paddings."""
import numpy as np
import pytest
from deep_reference import canonical, layer1_patches

import lkr
from lkr import ntk
from lkr.nets import CNNNet, DeepCNNNet


def _net(act="erf", Nc=3, seed=0, **kw):
    dg = lkr.DeepGeometry((5, 4), filter_sizes=[(3, 2), (2, 2)], strides=[1, (2, 1)],
                          padding=["same", "circular"], channels=2, **kw)
    return DeepCNNNet(dg, Nc, act, lambdas=(1.1, 0.9, 1.3), seed=seed), dg


def _ref_forward(net, dg, Xc, p):
    """Direct loops over windows and channels, with windows cut by the tests' own
    construction (layer 1) and by explicit site arithmetic (the layers above)."""
    from deep_reference import gather_matrices

    sig = {"erf": __import__("scipy.special", fromlist=["erf"]).erf,
           "linear": lambda h: h, "relu": lambda h: np.maximum(h, 0)}[net.activation]
    Z = layer1_patches(Xc, dg.input_shape, dg.filter_sizes[0], dg.strides[0], dg.paddings[0])
    h = np.einsum("pnm,am->pna", Z, p["W1"]) / np.sqrt(Z.shape[2])
    grid = dg.output_shapes[0]
    for l in range(1, dg.depth):
        S, grid = gather_matrices(grid, dg.filter_sizes[l], dg.strides[l], dg.paddings[l])
        # S (k, n_out, n_in): window p's t-th site; entries ordered (site, channel)
        A = sig(h)
        win = np.einsum("tqj,pja->pqta", S, A)
        k = S.shape[0]
        h = np.einsum("pqta,bta->pqb", win, p[f"W{l + 1}"].reshape(-1, k, net.channels))
        h /= np.sqrt(k * net.channels)
    return np.einsum("pia,ai->p", sig(h), p["v"]) / np.sqrt(net.channels * dg.num_patches)


@pytest.mark.parametrize("act", ["erf", "relu", "linear"])
def test_forward_matches_a_plain_reference(act):
    net, dg = _net(act)
    rng = np.random.default_rng(1)
    Xc = canonical(rng, dg, 6)
    f = net.forward(Xc)
    assert np.allclose(f, _ref_forward(net, dg, Xc, net.params), rtol=1e-12, atol=1e-13)
    # channels first gives the same function of the same data
    net2, dg2 = _net(act, layout="channels_first")
    net2 = net2.with_params(net.params)
    assert np.allclose(net2.forward(np.moveaxis(Xc, -1, 1)), f, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("act", ["erf", "linear"])
def test_vjp_jvp_value_and_grad_and_chains(act):
    net, dg = _net(act)
    rng = np.random.default_rng(2)
    X = canonical(rng, dg, 5)
    y, r = rng.standard_normal(5), rng.standard_normal(5)
    p = net.params
    t = {k: rng.standard_normal(v.shape) for k, v in p.items()}
    h = 1e-6
    fd = (net.forward(X, {k: p[k] + h * t[k] for k in p})
          - net.forward(X, {k: p[k] - h * t[k] for k in p})) / (2 * h)
    jv = net.jvp(X, t)
    assert np.allclose(jv, fd, rtol=1e-7, atol=1e-8)
    g = net.vjp(X, r)
    assert abs(r @ jv - sum(float((g[k] * t[k]).sum()) for k in g)) < 1e-12 * (1 + abs(r @ jv))
    f, gg = net.value_and_grad(X, y)
    g2 = net.vjp(X, y - net.forward(X))
    assert np.allclose(f, net.forward(X))
    assert all(np.allclose(gg[k], -g2[k], rtol=1e-12, atol=1e-14) for k in gg)
    pc = net.init_params(7, chains=3)
    fc = net.forward(X, pc)
    gc = net.vjp(X, np.stack([r, 2 * r, r]), pc)
    for c in (0, 1):
        pcc = {k: v[c] for k, v in pc.items()}
        assert np.allclose(fc[c], net.forward(X, pcc), rtol=1e-13)
        gcc = net.vjp(X, (1 + c) * r, pcc)
        assert all(np.allclose(gc[k][c], gcc[k], rtol=1e-12, atol=1e-14) for k in gcc)
    jc = net.jvp(X, t, pc)  # unchained tangents with chained params
    assert jc.shape == (3, 5)
    assert np.allclose(jc[2], net.jvp(X, t, {k: v[2] for k, v in pc.items()}), rtol=1e-12)
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    f32 = DeepCNNNet(dg, 3, act, lambdas=net.lambdas, params=p32, dtype=np.float32)
    out = f32.forward(X.astype(np.float32))
    assert out.dtype == np.float32
    assert np.allclose(out, net.forward(X), rtol=1e-4, atol=1e-5)


def test_empirical_ntk_equals_j_jt():
    net, dg = _net("erf", Nc=4)
    rng = np.random.default_rng(3)
    X, Y = canonical(rng, dg, 6), canonical(rng, dg, 3)
    J, JY = ntk.jacobian(net, X), ntk.jacobian(net, Y)
    assert J.shape == (6, net.num_params)
    # columns of J against jvp with unit tangents on a few parameters
    for j in (0, 50, net.num_params - 1):
        e = np.zeros(net.num_params)
        e[j] = 1.0
        assert np.allclose(J[:, j], net.jvp(X, net.unflatten(e)), rtol=1e-12, atol=1e-14)
    th = ntk.empirical_ntk(net, X)
    assert np.allclose(th, J @ J.T, rtol=1e-12, atol=1e-14)
    assert np.allclose(th, th.T)
    assert np.allclose(ntk.empirical_ntk(net, X, Y, max_bytes=4096), J @ JY.T, rtol=1e-12,
                       atol=1e-14)


@pytest.mark.parametrize("act,Nc,chains,tol", [("linear", 2, 40000, 0.0),
                                                ("erf", 32, 4000, 0.03)])
def test_prior_covariance_is_the_deep_cnn_gp_kernel(act, Nc, chains, tol):
    # linear: E f f' is the GP kernel at every width; erf: up to O(1/Nc)
    dg = lkr.DeepGeometry((6,), filter_sizes=[3, 2], strides=[1, 2], padding="same")
    lams = (0.7, 1.2, 0.9)
    net = DeepCNNNet(dg, Nc, act, lambdas=lams, seed=0)
    rng = np.random.default_rng(4)
    X = rng.standard_normal((4, 6))
    F = net.forward(X, net.init_params(11, chains=chains))  # (chains, P)
    emp = F.T @ F / chains
    K = lkr.renormalized_kernel(X, Q=np.eye(dg.num_patches), geometry=dg, activation=act,
                                lambdas=lams)
    # sampling error of a second moment: sqrt((K_aa K_bb + K_ab^2) / chains)
    se = np.sqrt((np.outer(np.diag(K), np.diag(K)) + K**2) / chains)
    assert np.all(np.abs(emp - K) < 5 * se + tol * np.abs(K).max())


def test_langevin_and_prepare_run_through_the_protocol():
    net, dg = _net("erf", Nc=4)
    rng = np.random.default_rng(5)
    X = canonical(rng, dg, 8)
    y = rng.standard_normal(8)
    res = lkr.train.langevin(net, X, y, 0.1, lr=1e-3, steps=40, chains=2, seed=0,
                             progress=False)
    assert res.mean.shape == (8,) and np.all(np.isfinite(res.mean))
    obj = net.prepare(X)
    pc = net.init_params(1, chains=2)
    f, g = obj.value_and_grad(pc, y)
    assert np.allclose(f, net.forward(X, pc))
    assert set(g) == set(net.params)


def test_bad_input():
    dg = lkr.DeepGeometry((6,), filter_sizes=[3, 2], strides=[1, 2], padding="same")
    with pytest.raises(TypeError, match="DeepGeometry"):
        DeepCNNNet(dg.layers[0], 3)
    with pytest.raises(ValueError, match="width"):
        DeepCNNNet(dg, 0)
    with pytest.raises(ValueError, match="lambdas must hold 3"):
        DeepCNNNet(dg, 3, lambdas=(1.0, 1.0))
    net = DeepCNNNet(dg, 3, seed=0)
    with pytest.raises(ValueError):
        net.forward(np.zeros((2, 7)))
    with pytest.raises(ValueError, match="params"):
        net.forward(np.zeros((2, 6)), {"W1": np.zeros((3, 3))})


@pytest.mark.parametrize("boundary", ["same", "circular"])
def test_cnn_net_accepts_same_and_circular(boundary):
    g = lkr.PatchGeometry((5, 4), (3, 2), (2, 1), boundary=boundary)
    net = CNNNet(g, 3, "erf", seed=0)
    rng = np.random.default_rng(6)
    X = rng.standard_normal((4, 5, 4))
    Z = layer1_patches(X[..., None], (5, 4), (3, 2), (2, 1), boundary)
    W, v = net.params["W"], net.params["v"]
    from scipy.special import erf

    ref = np.einsum("pia,ai->p", erf(np.einsum("pim,am->pia", Z, W) / np.sqrt(6)), v)
    assert np.allclose(net.forward(X), ref / np.sqrt(3 * g.num_patches), rtol=1e-12)
