"""lkr.nets: forward against plain loops, gradients against finite differences, chains,
compiled patch kernels against the NumPy reference, linearised nets."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from net_factories import KINDS, geometry, make
from scipy.special import erf

import lkr
from lkr import nets, train
from lkr.nets import _reference_forward, _reference_jvp, _reference_vjp

ACTS = ["linear", "erf", "relu"]


def _sig(act, h):
    return {"linear": h, "erf": erf(h), "relu": max(h, 0.0)}[act]


# -- plain-loop references of docs/theory.md section 2 -------------------------------------------
def loop_fc(X, W, v, act):
    N1, N0 = W.shape
    out = np.zeros(X.shape[0])
    for mu, x in enumerate(X):
        out[mu] = sum(v[k] * _sig(act, float(W[k] @ x) / math.sqrt(N0)) for k in range(N1))
    return out / math.sqrt(N1)


def loop_deep(X, Ws, v, act):
    out = np.zeros(X.shape[0])
    for mu, x in enumerate(X):
        a = x
        for W in Ws:
            a = np.array([_sig(act, float(W[j] @ a) / math.sqrt(a.size)) for j in range(W.shape[0])])
        out[mu] = float(v @ a) / math.sqrt(a.size)
    return out


def loop_patch(Z, W, v, act, local):
    P, Np, M = Z.shape
    Nc = v.shape[0]
    out = np.zeros(P)
    for mu in range(P):
        for a in range(Nc):
            for i in range(Np):
                w = W[a, i] if local else W[a]
                out[mu] += v[a, i] * _sig(act, float(w @ Z[mu, i]) / math.sqrt(M))
    return out / math.sqrt(Nc * Np)


@pytest.fixture
def X():
    return np.random.default_rng(1).standard_normal((6, 12))


# -- forward ---------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ACTS)
def test_forward_matches_loops(act, X):
    net = make("fc", act)
    np.testing.assert_allclose(net.forward(X), loop_fc(X, net.params["W"], net.params["v"], act),
                               rtol=1e-12, atol=1e-14)
    deep = make("deep", act)
    p = deep.params
    np.testing.assert_allclose(deep.forward(X), loop_deep(X, [p["W1"], p["W2"]], p["v"], act),
                               rtol=1e-12, atol=1e-14)
    Z = geometry().patches(X)
    for kind, local in (("cnn", False), ("lcn", True)):
        net = make(kind, act)
        ref = loop_patch(Z, net.params["W"], net.params["v"], act, local)
        np.testing.assert_allclose(net.forward(X), ref, rtol=1e-12, atol=1e-14)


def test_param_shapes_and_priors():
    g = geometry()
    assert {k: v.shape for k, v in make("fc").params.items()} == {"W": (7, 12), "v": (7,)}
    assert {k: v.shape for k, v in make("cnn").params.items()} == {"W": (4, 3), "v": (4, 6)}
    assert {k: v.shape for k, v in make("lcn").params.items()} == {"W": (4, 6, 3), "v": (4, 6)}
    assert make("deep").priors == {"W1": 1.0, "W2": 2.0, "v": 0.5}
    assert make("cnn").priors == {"W": 2.0, "v": 0.5}
    assert make("lcn").num_params == 4 * 6 * 3 + 4 * 6
    assert make("cnn").config["geometry"] == g.to_dict()


def test_prior_draw_variances():
    net = nets.FCNet(50, 400, lambda0=4.0, lambda1=0.25, seed=3)
    p = net.init_params(seed=5, chains=3)
    assert p["W"].shape == (3, 400, 50) and p["v"].shape == (3, 400)
    assert abs(p["W"].var() - 1 / 4.0) < 0.01 and abs(p["v"].var() - 4.0) < 0.3
    # same seed, same draw; chains independent
    np.testing.assert_array_equal(nets.init_params(net, 5, chains=3)["W"], p["W"])
    assert not np.allclose(p["W"][0], p["W"][1])


# -- gradients -------------------------------------------------------------------------------
def fd_grad(net, X, r, eps=1e-6):
    th = net.flatten()
    g = np.zeros_like(th)
    for k in range(th.size):
        tp, tm = th.copy(), th.copy()
        tp[k] += eps
        tm[k] -= eps
        g[k] = (r @ net.forward(X, net.unflatten(tp)) - r @ net.forward(X, net.unflatten(tm))) / (2 * eps)
    return g


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("act", ["erf", "relu", "linear"])
def test_vjp_and_jvp_vs_finite_differences(kind, act, X):
    net = make(kind, act)
    rng = np.random.default_rng(2)
    r = rng.standard_normal(X.shape[0])
    g = net.flatten(net.vjp(X, r))
    np.testing.assert_allclose(g, fd_grad(net, X, r), rtol=1e-6, atol=1e-8)
    t = rng.standard_normal(net.num_params)
    th = net.flatten()
    eps = 1e-6
    fd = (net.forward(X, net.unflatten(th + eps * t))
          - net.forward(X, net.unflatten(th - eps * t))) / (2 * eps)
    np.testing.assert_allclose(net.jvp(X, net.unflatten(t)), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", KINDS)
def test_vjp_jvp_adjoint(kind, X):
    # <r, J t> = <J^T r, t> to rounding
    net = make(kind)
    rng = np.random.default_rng(4)
    r, t = rng.standard_normal(X.shape[0]), rng.standard_normal(net.num_params)
    lhs = r @ net.jvp(X, net.unflatten(t))
    rhs = net.flatten(net.vjp(X, r)) @ t
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


@pytest.mark.parametrize("kind", KINDS)
def test_chains_equal_per_chain(kind, X):
    net = make(kind)
    C = 3
    p = net.init_params(seed=7, chains=C)
    r = np.random.default_rng(8).standard_normal((C, X.shape[0]))
    f = net.forward(X, p)
    g = net.vjp(X, r, p)
    assert f.shape == (C, X.shape[0])
    for c in range(C) :
        pc = {k: v[c] for k, v in p.items()}
        np.testing.assert_allclose(f[c], net.forward(X, pc), rtol=1e-13, atol=1e-15)
        gc = net.vjp(X, r[c], pc)
        for k in gc:
            np.testing.assert_allclose(g[k][c], gc[k], rtol=1e-12, atol=1e-15)
    # one parameter set, several residuals: a chain axis from r alone
    g1 = net.vjp(X, r)
    for c in range(C):
        for k, v in net.vjp(X, r[c]).items():
            np.testing.assert_allclose(g1[k][c], v, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kind", KINDS + ["lin"])
@pytest.mark.parametrize("chains", [None, 3])
def test_value_and_grad_is_forward_and_minus_vjp(kind, chains, X, fast_math):
    net = nets.linearize(make("fc")) if kind == "lin" else make(kind)
    rng = np.random.default_rng(6)
    p = net.init_params(seed=2, chains=chains)
    y = rng.standard_normal(X.shape[0] if chains is None else (chains, X.shape[0]))
    f, g = net.value_and_grad(X, y, p)
    f_ref = net.forward(X, p)
    np.testing.assert_allclose(f, f_ref, rtol=1e-13, atol=1e-15)
    # gradient of the loss (1/2) sum (y - f)^2, against finite differences too
    for k, v in net.vjp(X, y - f_ref, p).items():
        np.testing.assert_allclose(g[k], -v, rtol=1e-12, atol=1e-14)
    if chains is None:
        th = net.flatten(p)
        eps = 1e-6
        loss = lambda t: 0.5 * np.sum((y - net.forward(X, net.unflatten(t))) ** 2)  # noqa: E731
        k = int(rng.integers(th.size))
        e = np.zeros_like(th)
        e[k] = eps
        assert net.flatten(g)[k] == pytest.approx((loss(th + e) - loss(th - e)) / (2 * eps),
                                                  rel=1e-6, abs=1e-8)
    # one parameter set, several label vectors
    f2, g2 = net.value_and_grad(X, rng.standard_normal((2, X.shape[0])))
    assert f2.shape == (2, X.shape[0]) and all(v.shape[0] == 2 for v in g2.values())
    with pytest.raises(ValueError, match="y must have shape"):
        make(kind if kind != "lin" else "fc").value_and_grad(X, np.ones(5))


# -- compiled patch kernels vs the NumPy reference ---------------------------------------------
@st.composite
def patch_case(draw):
    P = draw(st.integers(1, 6))
    Np = draw(st.integers(1, 5))
    M = draw(st.integers(1, 5))
    Nc = draw(st.integers(1, 7))
    C = draw(st.sampled_from([None, 1, 3]))
    local = draw(st.booleans())
    act = draw(st.sampled_from(ACTS))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    seed = draw(st.integers(0, 2**31 - 1))
    return P, Np, M, Nc, C, local, act, dtype, seed


@pytest.fixture(params=[True, False], ids=["fast-math", "libm"])
def fast_math(request):
    """Run a test with the AVX2/FMA kernels (vectorised erf/exp, where the CPU has them) and
    with the baseline kernels (libm)."""
    c = lkr.backend.core()
    previous = c.set_fast_math(request.param)
    yield request.param
    c.set_fast_math(previous)


# the fast_math fixture is a mode switch, the same for every generated input
_mode_fixture = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@_mode_fixture
@given(case=patch_case())
def test_compiled_patch_passes_match_reference(case, fast_math):
    P, Np, M, Nc, C, local, act, dtype, seed = case
    rng = np.random.default_rng(seed)
    lead = () if C is None else (C,)
    Z = rng.standard_normal((P, Np, M))
    wshape = (Nc, Np, M) if local else (Nc, M)
    W, v = rng.standard_normal(lead + wshape), rng.standard_normal(lead + (Nc, Np))
    tW, tv = rng.standard_normal(lead + wshape), rng.standard_normal(lead + (Nc, Np))
    r = rng.standard_normal(lead + (P,))
    c = lkr.backend.core()
    kw = dict(local=local, activation=act, nthreads=0)

    def chained(a, base):
        a = np.ascontiguousarray(a, dtype=dtype)
        return a if a.ndim > base else a[None]

    wd = len(wshape)
    f = c.patch_forward(chained(Z, 2), chained(W, wd), chained(v, 2), **kw)
    dW, dv = c.patch_vjp(chained(Z, 2), chained(W, wd), chained(v, 2), chained(r, 1), **kw)
    j = c.patch_jvp(chained(Z, 2), chained(W, wd), chained(v, 2), chained(tW, wd),
                    chained(tv, 2), **kw)
    f_ref = _reference_forward(Z, W, v, act, local)
    dW_ref, dv_ref = _reference_vjp(Z, W, v, r, act, local)
    j_ref = _reference_jvp(Z, W, v, tW, tv, act, local)
    # fused forward + gradient of (1/2)(y - f)^2 with y = f + r: the gradient is -vjp(r)
    y = (f.reshape(f_ref.shape) + r).astype(dtype)
    fv, gW, gv = c.patch_value_and_grad(chained(Z, 2), chained(W, wd), chained(v, 2),
                                        chained(y, 1), **kw)
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    for got, ref in ((f, f_ref), (dW, dW_ref), (dv, dv_ref), (j, j_ref), (fv, f_ref),
                     (-gW, dW_ref), (-gv, dv_ref)):
        assert got.dtype == dtype
        got = got.reshape(ref.shape)
        scale = max(np.abs(ref).max(), 1e-300)
        # elementwise, relative to the array's scale (sums of mixed-sign terms)
        assert np.abs(got - ref).max() <= rtol * scale * 10, (np.abs(got - ref).max(), scale)


def test_compiled_features_match_reference(fast_math):
    from lkr.nets import _reference_features

    rng = np.random.default_rng(0)
    Z = rng.standard_normal((5, 4, 3))
    c = lkr.backend.core()
    for local in (False, True):
        for act in ACTS:
            W = rng.standard_normal((6, 4, 3) if local else (6, 3))
            v = rng.standard_normal((6, 4))
            S, G = c.patch_features(Z, W, v, 1, 4, local=local, activation=act, nthreads=0)
            S_ref, G_ref = _reference_features(Z, W[1:4], v[1:4], act, local, 6)
            np.testing.assert_allclose(S, S_ref, rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(G, G_ref, rtol=1e-12, atol=1e-15)


def test_core_rejects_bad_shapes():
    c = lkr.backend.core()
    Z = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="W must be"):
        c.patch_forward(Z, np.zeros((1, 5, 3)), np.zeros((1, 5, 3)), local=False,
                        activation="erf", nthreads=0)
    with pytest.raises(ValueError, match="chains"):
        c.patch_forward(Z, np.zeros((2, 5, 4)), np.zeros((3, 5, 3)), local=False,
                        activation="erf", nthreads=0)
    with pytest.raises(TypeError, match="dtype"):
        c.patch_forward(Z, np.zeros((1, 5, 4), np.float32), np.zeros((1, 5, 3)), local=False,
                        activation="erf", nthreads=0)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_kept(kind, X):
    net = make(kind, dtype=np.float32)
    X32 = X.astype(np.float32)
    f = net.forward(X32)
    assert f.dtype == np.float32
    assert net.vjp(X32, np.ones(6, np.float32))["v"].dtype == np.float32
    ref = make(kind).with_params({k: v.astype(np.float64) for k, v in net.params.items()})
    np.testing.assert_allclose(f, ref.forward(X), rtol=1e-5, atol=1e-6)


# -- validation ----------------------------------------------------------------------------
def test_bad_input(X):
    net = make("fc")
    with pytest.raises(ValueError, match=r"X must have shape \(P, 12\)"):
        net.forward(X[:, :5])
    with pytest.raises(ValueError, match="non-finite"):
        Xn = X.copy()
        Xn[0, 0] = np.nan
        net.forward(Xn)
    with pytest.raises(ValueError, match="r must have shape"):
        net.vjp(X, np.ones(5))
    with pytest.raises(ValueError, match="keys"):
        net.forward(X, {"W": net.params["W"]})
    with pytest.raises(ValueError, match=r"params\['W'\] must have shape"):
        net.forward(X, {"W": np.zeros((3, 3)), "v": net.params["v"]})
    with pytest.raises(ValueError, match="chain axis"):
        p = net.init_params(0, chains=2)
        net.forward(X, {"W": p["W"], "v": net.params["v"]})
    with pytest.raises(ValueError, match="chains"):
        net.vjp(X, np.ones((3, 6)), net.init_params(0, chains=2))
    with pytest.raises(ValueError, match="activation"):
        nets.FCNet(3, 4, activation="tanh")
    with pytest.raises(ValueError, match="lambda0"):
        nets.FCNet(3, 4, lambda0=-1)
    with pytest.raises(TypeError, match="geometry"):
        nets.CNNNet(geometry=(12,), width=3)
    with pytest.raises(ValueError, match="lambdas"):
        nets.DeepFCNet(3, (4, 4), lambdas=(1.0, 1.0))
    with pytest.raises(ValueError, match="shape"):
        make("cnn").forward(np.zeros((2, 11)))


def test_with_params_and_config(X):
    net = make("cnn")
    other = net.with_params(net.init_params(seed=11))
    assert other.config == net.config
    assert not np.allclose(other.forward(X), net.forward(X))
    np.testing.assert_array_equal(net.unflatten(net.flatten())["W"], net.params["W"])
    import json

    json.dumps(make("deep").config)


# -- linearised nets ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_linearize(kind, X):
    net = make(kind)
    lin = nets.linearize(net)
    assert lin.params["u"].shape == (net.num_params,)
    np.testing.assert_allclose(lin.forward(X), net.forward(X), rtol=1e-14, atol=1e-15)
    rng = np.random.default_rng(3)
    u = 1e-4 * rng.standard_normal(net.num_params)
    # f_lin(u) = f(w0 + u) + O(|u|^2)
    moved = net.forward(X, net.unflatten(net.flatten() + u))
    assert np.abs(lin.forward(X, {"u": u}) - moved).max() < 1e-6
    # exactly linear: vjp independent of u, chains as for the nets
    r = rng.standard_normal((2, X.shape[0]))
    g = lin.vjp(X, r, {"u": rng.standard_normal((2, net.num_params))})["u"]
    np.testing.assert_allclose(g[1], net.flatten(net.vjp(X, r[1])), rtol=1e-13, atol=1e-15)
    us = rng.standard_normal((2, net.num_params))
    f2 = lin.forward(X, {"u": us})
    np.testing.assert_allclose(f2[0], lin.forward(X, {"u": us[0]}), rtol=1e-12, atol=1e-14)
    assert lin.priors["u"].shape == (net.num_params,)


def test_linear_activation_net_is_its_own_linearisation_in_v(X):
    # for the readout, f is linear: f_lin along v equals f exactly
    net = make("fc", "erf")
    lin = nets.linearize(net)
    dv = np.random.default_rng(0).standard_normal(7)
    u = np.concatenate([np.zeros(7 * 12), dv])
    p = net.params
    p["v"] = p["v"] + dv
    np.testing.assert_allclose(lin.forward(X, {"u": u}), net.forward(X, p), rtol=1e-12)


def test_fit_linearized():
    rng = np.random.default_rng(0)
    net = nets.FCNet(5, 40, activation="erf", seed=0)
    X, Xt = rng.standard_normal((30, 5)), rng.standard_normal((20, 5))
    teacher = nets.FCNet(5, 40, activation="erf", seed=9)
    y, yt = teacher.forward(X), teacher.forward(Xt)
    out = train.fit_linearized(net, X, y, Xt, yt)
    assert isinstance(out, train.LinearizedFit) and out.test_error == out["test_error"]
    # P = 30 < 240 parameters: the least-squares fit interpolates
    assert out["train_error"] < 1e-20
    assert out["u"].shape == (net.num_params,)
    lin = nets.LinearizedNet(net, out["u"])
    np.testing.assert_allclose(lin.forward(Xt), out["test_prediction"], rtol=1e-10)
    assert out["test_error"] == pytest.approx(np.mean((yt - out["test_prediction"]) ** 2))
    # ridge: kernel form equals the primal (normal-equation) solution
    ridge = train.fit_linearized(net, X, y, ridge=0.1)
    from lkr.ntk import jacobian

    J = jacobian(net, X)
    b = y - net.forward(X)
    u = np.linalg.solve(J.T @ J + 0.1 * np.eye(J.shape[1]), J.T @ b)
    np.testing.assert_allclose(ridge["u"], u, rtol=1e-8, atol=1e-10)
    assert ridge["train_error"] > out["train_error"]
    # without a test set: the fields are None, and the former dict's keys are absent
    assert ridge.test_prediction is None and "test_error" not in ridge
    with pytest.raises(KeyError):
        ridge["test_prediction"]
    with pytest.raises(ValueError, match="ridge"):
        train.fit_linearized(net, X, y, ridge=-1.0)
    with pytest.raises(ValueError, match="y must have shape"):
        train.fit_linearized(net, X, y[:3])


@pytest.mark.parametrize("chains", [None, 1, 3])
@pytest.mark.parametrize("local", [False, True])
def test_compiled_patch_passes_threaded(chains, local, fast_math):
    # big enough that the kernels split the work over threads (both vjp strategies: one
    # chain per thread, and samples split with a per-thread reduction)
    rng = np.random.default_rng(5)
    P, Np, M, Nc = 64, 8, 5, 32
    lead = () if chains is None else (chains,)
    Z = rng.standard_normal((P, Np, M))
    wshape = (Nc, Np, M) if local else (Nc, M)
    W, v, r = rng.standard_normal(lead + wshape), rng.standard_normal(lead + (Nc, Np)), \
        rng.standard_normal(lead + (P,))
    c = lkr.backend.core()
    wd = len(wshape)
    ch = lambda a, base: a if a.ndim > base else a[None]  # noqa: E731
    for nthreads in (0, 2, 3):
        kw = dict(local=local, activation="erf", nthreads=nthreads)
        f = c.patch_forward(Z, ch(W, wd), ch(v, 2), **kw)
        dW, dv = c.patch_vjp(Z, ch(W, wd), ch(v, 2), ch(r, 1), **kw)
        f_ref = _reference_forward(Z, W, v, "erf", local)
        dW_ref, dv_ref = _reference_vjp(Z, W, v, r, "erf", local)
        fv, gW, gv = c.patch_value_and_grad(Z, ch(W, wd), ch(v, 2), ch(f_ref + r, 1), **kw)
        np.testing.assert_allclose(fv.reshape(f_ref.shape), f_ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(-gW.reshape(dW_ref.shape), dW_ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(-gv.reshape(dv_ref.shape), dv_ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(f.reshape(f_ref.shape), f_ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dW.reshape(dW_ref.shape), dW_ref, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(dv.reshape(dv_ref.shape), dv_ref, rtol=1e-11, atol=1e-13)


EDGES = [0.0, -0.0, 1e-300, 1e-30, 1e-8, 0.5, 0.9999999, 1.0, 1.0000001, 2.5, 5.999999, 6.0,
         6.5, 9.0, 26.0, 27.5, 40.0, 1e10]


@_mode_fixture
@given(values=st.lists(st.floats(-30, 30, allow_nan=False), min_size=1, max_size=300),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_activation_pair_matches_scipy(values, dtype, fast_math):
    # the vectorised erf and exp(-h^2) against scipy/NumPy in float64, to a few ulp
    h = np.array(values + EDGES + [-e for e in EDGES], dtype=dtype)
    c = lkr.backend.core()
    s, d = c.activation_pair(h, activation="erf", derivative=True, nthreads=0)
    assert s.dtype == dtype and d.dtype == dtype
    h64 = h.astype(np.float64)
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(s, erf(h64), rtol=4 * eps, atol=np.finfo(dtype).tiny)
    ref = 2 / np.sqrt(np.pi) * np.exp(-h64 * h64)
    # h^2 is rounded in the working precision: exp(-h^2) inherits h^2 eps relative error
    tol = 4 * eps * (1 + h64 * h64)
    normal = ref > 1e3 * np.finfo(dtype).tiny
    assert np.all(np.abs(d - ref)[normal] <= tol[normal] * ref[normal])
    assert np.all(np.abs(d[~normal]) <= 1e3 * np.finfo(dtype).tiny)
    only = c.activation_pair(h, activation="erf", derivative=False, nthreads=0)
    np.testing.assert_array_equal(only, s)
    r, dr = c.activation_pair(h, activation="relu", derivative=True, nthreads=0)
    np.testing.assert_array_equal(r, np.maximum(h, 0))
    np.testing.assert_array_equal(dr, (h > 0).astype(dtype))


def test_fit_linearized_lives_in_train():
    # the fit needs lkr.ntk (above the nets): lkr.nets points there instead of importing up
    with pytest.raises(AttributeError, match="lkr.train.fit_linearized"):
        nets.fit_linearized  # noqa: B018
    assert callable(train.fit_linearized)


def test_nets_take_width_like_the_theories():
    g = lkr.PatchGeometry((12,), 4, 4)
    dg = lkr.DeepGeometry((8,), filter_sizes=[2, 2], strides=[2, 2])
    X = np.random.default_rng(0).standard_normal((5, 12))
    cases = [(nets.FCNet, (12,), "N1"), (nets.CNNNet, (g,), "channels"),
             (nets.LCNNet, (g,), "channels"), (nets.DeepCNNNet, (dg,), "channels")]
    for cls, lead, old in cases:
        net = cls(*lead, width=6, seed=1)
        assert net.width == 6 and getattr(net, old) == 6  # the former attribute stays
        with pytest.warns(DeprecationWarning, match=f"{old}=.*deprecated; use width="):
            legacy = cls(*lead, **{old: 6}, seed=1)
        Xin = X[:, :8] if cls is nets.DeepCNNNet else X
        np.testing.assert_array_equal(legacy.forward(Xin), net.forward(Xin))
        with pytest.raises(TypeError, match="not also"):
            cls(*lead, 6, **{old: 6})
        with pytest.raises(TypeError, match="missing the argument 'width'"):
            cls(*lead)
        with pytest.raises(ValueError, match="width"):
            cls(*lead, 0)


def test_one_hidden_layer_nets_take_lambdas():
    g = lkr.PatchGeometry((12,), 4, 4)
    for cls, lead in ((nets.FCNet, (12,)), (nets.CNNNet, (g,)), (nets.LCNNet, (g,))):
        a = cls(*lead, 3, lambda0=2.0, lambda1=0.5, seed=0)
        b = cls(*lead, 3, lambdas=(2.0, 0.5), seed=0)
        assert a.priors == b.priors == {"W": 2.0, "v": 0.5}
        with pytest.raises(ValueError, match="not both"):
            cls(*lead, 3, lambda0=2.0, lambdas=(2.0, 0.5))
