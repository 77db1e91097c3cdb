"""lkr.train: the Langevin loss and its gradients, the sampler against exact Gaussians, the
infinite-width limit, agreement with the effective-action theory, GD/SGD, reproducibility,
interrupts and input checks."""
import json
import math
import os
import signal
import warnings

import numpy as np
import pytest

import lkr
from lkr import nets, train


# -- a model whose posterior is known in closed form ------------------------------------------
class LinearModel:
    """f(x) = theta . x, prior theta ~ N(0, 1/lam): the Langevin loss is quadratic with
    Hessian H = X^T X + T lam I and minimum m = H^{-1} X^T y, and the unadjusted Langevin
    chain is exactly Gaussian with mean m and covariance T (H (I - eta H / 2))^{-1}."""

    def __init__(self, d, lam=1.0):
        self.params = {"theta": np.zeros(d)}
        self.priors = {"theta": lam}

    def forward(self, X, params=None):
        th = (params or self.params)["theta"]
        return th @ np.asarray(X).T

    def vjp(self, X, r, params=None):
        return {"theta": np.asarray(r) @ np.asarray(X)}


def _quadratic_problem():
    rng = np.random.default_rng(3)
    # singular values chosen so that H = X^T X + T lam I has a wide spread of curvatures
    U, _ = np.linalg.qr(rng.standard_normal((6, 3)))
    V, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    X = U @ np.diag([3.0, 1.5, 0.6]) @ V.T
    y = rng.standard_normal(6)
    return X, y


# -- the loss ----------------------------------------------------------------------------------
def _nets_for_grad():
    g = lkr.PatchGeometry((6, 6), (3, 3), (2, 2), boundary="valid")
    out = []
    for act in ("erf", "relu", "linear"):
        out.append((nets.FCNet(10, 7, activation=act, lambda0=1.3, lambda1=0.7, seed=1), (5, 10)))
        out.append((nets.CNNNet(geometry=g, width=3, activation=act, lambda0=0.8,
                                lambda1=1.2, seed=1), (5, 6, 6)))
        out.append((nets.LCNNet(geometry=g, width=2, activation=act, seed=1), (5, 6, 6)))
    return out


@pytest.mark.parametrize("net,xshape", _nets_for_grad(),
                         ids=lambda v: getattr(v, "activation", None)
                         and type(v).__name__ + "-" + v.activation)
def test_loss_gradient_matches_central_differences(net, xshape):
    rng = np.random.default_rng(0)
    X = rng.standard_normal(xshape)
    y = rng.standard_normal(xshape[0])
    T = 0.3
    params = net.init_params(5)
    loss, grads = train.loss_and_grad(net, X, y, T, params)
    # the loss itself, written out from docs/theory.md section 2
    f = net.forward(X, params)
    expect = 0.5 * np.sum((y - f) ** 2) + sum(0.5 * T * net.priors[k] * np.sum(a * a)
                                              for k, a in params.items())
    assert loss == pytest.approx(expect, rel=1e-13)
    # directional derivatives along random directions
    for _trial in range(3):
        d = {k: rng.standard_normal(a.shape) for k, a in params.items()}
        eps = 1e-6
        lp, _ = train.loss_and_grad(net, X, y, T, {k: params[k] + eps * d[k] for k in params})
        lm, _ = train.loss_and_grad(net, X, y, T, {k: params[k] - eps * d[k] for k in params})
        fd = (lp - lm) / (2 * eps)
        an = sum(float(np.sum(grads[k] * d[k])) for k in params)
        # relu kinks: a difference step may cross one; re-draw rather than loosen
        assert an == pytest.approx(fd, rel=1e-6, abs=1e-7)


def test_loss_and_grad_with_chain_axis():
    net = nets.FCNet(4, 6, seed=0)
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((5, 4)), rng.standard_normal(5)
    p = net.init_params(2, chains=3)
    loss, g = train.loss_and_grad(net, X, y, 0.5, p)
    assert loss.shape == (3,)
    for c in range(3):
        lc, gc = train.loss_and_grad(net, X, y, 0.5, {k: a[c] for k, a in p.items()})
        assert loss[c] == pytest.approx(lc, rel=1e-13)
        for k in p:
            np.testing.assert_allclose(g[k][c], gc[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("net,xshape", _nets_for_grad(),
                         ids=lambda v: getattr(v, "activation", None)
                         and type(v).__name__ + "-" + v.activation)
def test_fused_evaluation_matches_the_nets_own(net, xshape):
    rng = np.random.default_rng(2)
    X, Xt = rng.standard_normal(xshape), rng.standard_normal((3,) + xshape[1:])
    y = rng.standard_normal(xshape[0])
    p = net.init_params(4, chains=2)
    fused = net.prepare(X, Xt, dtype=np.float64)
    assert fused.fused
    plain = net.prepare(X, Xt, dtype=np.float64, fused=False)
    for rows in (None, np.array([4, 0, 2])):
        yy = y if rows is None else y[rows]
        f1, g1 = fused.value_and_grad(p, yy, rows=rows)
        f2, g2 = plain.value_and_grad(p, yy, rows=rows)
        np.testing.assert_allclose(f1, f2, rtol=1e-12, atol=1e-13)
        for k in p:
            np.testing.assert_allclose(g1[k], g2[k], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(fused.forward_test(p), net.forward(Xt, p), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(fused.forward_train(p), net.forward(X, p), rtol=1e-12, atol=1e-13)


# -- the sampler on a quadratic potential ----------------------------------------------------
def test_langevin_samples_the_known_gaussian_with_its_discretisation_bias():
    X, y = _quadratic_problem()
    T, lam, lr = 0.5, 1.0, 0.05
    model = LinearModel(3, lam)
    H = X.T @ X + T * lam * np.eye(3)
    k, E = np.linalg.eigh(H)
    assert 0.4 < lr * k.max() < 0.6  # a step where the bias is visible (factor ~1.3)
    m = np.linalg.solve(H, X.T @ y)
    Xt = np.vstack([E.T, [0.3, -1.0, 0.5]])       # the eigen-directions and a generic point
    cov_ula = T * np.linalg.inv(H @ (np.eye(3) - lr * H / 2))
    var_ula = np.einsum("ti,ij,tj->t", Xt, cov_ula, Xt)
    var_exact = np.einsum("ti,ij,tj->t", Xt, T * np.linalg.inv(H), Xt)

    res = train.langevin(model, X, y, T, lr=lr, steps=3300, burn_in=300, X_test=Xt,
                         chains=32, seed=11)
    assert res.samples == 32 * 3000 and not res.interrupted
    # mean: within 4 standard errors (from the spread of the independent chains)
    z_mean = (res.mean - Xt @ m) / res.mean_se
    assert np.all(np.abs(z_mean) < 4), z_mean
    # variance: standard error from the chains' own variance estimates
    se_var = res.chain_variance.std(axis=0, ddof=1) / math.sqrt(res.chains)
    z_var = (res.variance - var_ula) / se_var
    assert np.all(np.abs(z_var) < 4), z_var
    # the test can tell: on the stiffest mode the continuous-time variance is far off
    stiff = np.argmax(k)
    assert abs(res.variance[stiff] - var_exact[stiff]) > 10 * se_var[stiff]


def test_linearized_net_posterior_is_the_gaussian_process_of_its_tangent_kernel():
    # a linearised net is linear in u: the posterior of f is a GP with kernel
    # J diag(1/lambda) J^T around f0, sampled here with a small step (bias ~ eta k / 2)
    rng = np.random.default_rng(5)
    base = nets.FCNet(3, 4, seed=2, lambda0=1.5, lambda1=0.8)
    lin = nets.linearize(base)
    X, Xt = rng.standard_normal((5, 3)), rng.standard_normal((3, 3))
    y = rng.standard_normal(5)
    T = 0.2
    from lkr import ntk

    J, Jt = ntk.jacobian(base, X), ntk.jacobian(base, Xt)
    lam = lin.priors["u"]
    K = J @ (J / lam).T
    k = Jt @ (J / lam).T
    f0, f0t = base.forward(X), base.forward(Xt)
    A = K + T * np.eye(5)
    mean = f0t + k @ np.linalg.solve(A, y - f0)
    lr = train.suggest_lr(lin, X, T, target=0.05)
    res = train.langevin(lin, X, y, T, lr=lr, steps=3500, burn_in=500, X_test=Xt, chains=32,
                         seed=3)
    z = (res.mean - mean) / res.mean_se
    assert np.all(np.abs(z) < 4), z


# -- the infinite-width limit and the theory -------------------------------------------------
def test_wide_net_at_small_temperature_approaches_the_gp_mean():
    rng = np.random.default_rng(7)
    P, N0, N1, T = 6, 5, 1000, 0.02
    X = rng.standard_normal((P, N0))
    y = np.tanh(X[:, 0] + 0.5 * X[:, 1])
    # test points near the training inputs: the GP variance there is small, so the
    # comparison of means is sharp
    Xt = X[:4] + 0.3 * rng.standard_normal((4, N0))
    K = lkr.nngp(X, activation="erf")          # lambda1 = 1: K_R = K at Q = 1
    k = lkr.nngp(Xt, X, activation="erf")
    gp_mean = k @ np.linalg.solve(K + T * np.eye(P), y)
    net = nets.FCNet(N0, N1, activation="erf", seed=0)
    res = train.langevin(net, X, y, T, lr="auto", steps=800, burn_in=400, X_test=Xt, chains=16,
                         seed=1)
    se = res.mean_se
    # the chains' spread resolves the mean to a few hundredths (|gp_mean| ~ 0.5) ...
    assert np.max(se) < 0.05 and np.min(np.abs(gp_mean)) > 0.1
    # ... and it sits on the GP mean: finite width shifts it by O(P / N1), sampling by se
    assert np.all(np.abs(res.mean - gp_mean) < 4 * se + 0.02), (res.mean, gp_mean, se)


@pytest.mark.slow
@pytest.mark.parametrize("arch,N", [("fc", 12), ("cnn", 4)])
def test_sampled_test_error_agrees_with_the_theory(arch, N):
    # docs/theory.md section 4, oracle 15. A tiny task (P = 12) at alpha = P/N = 1 (FC) and
    # 3 (CNN, whose theory is accurate at smaller widths): the sampled error must match the
    # finite-width theory and must not match the infinite-width GP, which lies > 4 standard
    # errors away, so the test tells the two apart.
    from lkr import theory

    rng = np.random.default_rng(0)
    g = lkr.PatchGeometry((8,), 2, 2)
    P, Pt, T = 12, 40, 0.1
    X = rng.standard_normal((P, 8))
    Xt = rng.standard_normal((Pt, 8))
    w = rng.standard_normal(2)

    def teacher(Z):
        return np.sum(np.tanh(g.patches(Z) @ w / math.sqrt(2)), axis=1) / 2

    y, yt = teacher(X), teacher(Xt)
    geom = None if arch == "fc" else g
    if arch == "fc":
        th = theory.FCTheory(width=N, temperature=T, activation="erf")
    else:
        th = theory.CNNTheory(geometry=g, width=N, temperature=T, activation="erf")
    # tol 1e-5: the predictions are settled to 1e-9 there; the CNN solver's last digits of
    # the gradient norm come slowly on this tiny task
    assert th.fit(X, y, tol=1e-5).converged
    expect = th.evaluate(Xt, yt)["error"]
    gp = theory.GPTheory(kernel=arch, geometry=geom, temperature=T)
    gp.fit(X, y)
    gp_error = gp.evaluate(Xt, yt)["error"]
    out = train.sampled_test_error(arch, width=N, geometry=geom, X=X, y=y, X_test=Xt,
                                   y_test=yt, temperature=T, sampler="langevin", chains=32,
                                   steps=6000, burn_in=2000, thin=4, seed=0)
    se = out["error_se"]
    assert 0 < se < 0.02 * expect
    # 4 standard errors, plus 1 % for the O(lr) discretisation bias
    assert abs(out["error"] - expect) < 4 * se + 0.01 * expect, (out, expect)
    assert abs(out["error"] - gp_error) > 4 * se + 0.01 * expect, (out, gp_error)


# -- reproducibility, traces, results --------------------------------------------------------
def _small_fc():
    rng = np.random.default_rng(0)
    X, Xt = rng.standard_normal((8, 4)), rng.standard_normal((5, 4))
    y, yt = np.sin(X[:, 0]), np.sin(Xt[:, 0])
    return nets.FCNet(4, 16, seed=0), X, y, Xt, yt


def test_same_seed_same_numbers_other_seed_other_numbers():
    net, X, y, Xt, yt = _small_fc()
    kw = dict(lr=0.01, steps=60, burn_in=20, X_test=Xt, y_test=yt, chains=3)
    a = train.langevin(net, X, y, 0.1, seed=4, **kw)
    b = train.langevin(net, X, y, 0.1, seed=4, **kw)
    c = train.langevin(net, X, y, 0.1, seed=5, **kw)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.variance, b.variance)
    np.testing.assert_array_equal(a.trace["train_error"], b.trace["train_error"])
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert not np.allclose(a.mean, c.mean)


def test_result_fields_traces_and_json():
    net, X, y, Xt, yt = _small_fc()
    res = train.langevin(net, X, y, 0.1, lr=0.01, steps=150, burn_in=50, thin=5, X_test=Xt,
                         y_test=yt, chains=2, seed=0, trace_every=10)
    assert res.samples_per_chain == 20 and res.samples == 40 and res.steps_done == 150
    assert res.mean.shape == (5,) and res.variance.shape == (5,)
    assert np.all(res.variance > 0)
    assert res.trace["step"] == list(range(9, 150, 10))
    assert res.trace["train_error"].shape == (15, 2)
    assert res.trace["test_error"].shape == (15, 2)
    err = res.test_error(yt)
    assert err["error"] == pytest.approx(err["bias2"] + err["variance"], rel=1e-12)
    # error = mean over samples of each sample's test MSE: the chain errors average to it
    assert np.mean(err["chain_errors"]) == pytest.approx(err["error"], rel=1e-12)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["settings"]["net"]["type"] == "FCNet"
    assert d["settings"]["temperature"] == 0.1 and d["settings"]["chains"] == 2
    assert d["test_error"]["error"] == pytest.approx(err["error"])
    assert len(d["mean"]) == 5


def test_default_test_points_are_the_training_inputs():
    net, X, y, _, _ = _small_fc()
    res = train.langevin(net, X, y, 0.1, lr=0.01, steps=40, burn_in=0, chains=2, seed=0)
    assert res.mean.shape == (8,) and res.settings["test_is_train"]
    same = train.langevin(net, X, y, 0.1, lr=0.01, steps=40, burn_in=0, chains=2, seed=0,
                          X_test=X)
    np.testing.assert_allclose(res.mean, same.mean, rtol=1e-12)


def test_continue_from_params():
    net, X, y, Xt, _ = _small_fc()
    a = train.langevin(net, X, y, 0.1, lr=0.01, steps=30, burn_in=0, chains=2, seed=0)
    b = train.langevin(net, X, y, 0.1, lr=0.01, steps=30, burn_in=0, chains=2, seed=1,
                       init=a.params)
    assert b.settings["init"] == "given"
    with pytest.raises(ValueError, match="shape"):
        train.langevin(net, X, y, 0.1, lr=0.01, steps=3, chains=3, init=a.params)


# -- interrupts, callbacks, progress -----------------------------------------------------------
def test_keyboard_interrupt_from_callback_keeps_the_samples():
    net, X, y, Xt, _ = _small_fc()

    def cb(state):
        if state.step == 29:
            raise KeyboardInterrupt

    with pytest.warns(train.SamplingWarning, match="interrupted after 30 of 110"):
        res = train.langevin(net, X, y, 0.1, lr=0.01, steps=110, burn_in=10, X_test=Xt,
                             chains=2, seed=3, callback=cb)
    assert res.interrupted and res.steps_done == 30 and res.samples_per_chain == 20
    # exactly what an uninterrupted run of that length samples
    ref = train.langevin(net, X, y, 0.1, lr=0.01, steps=30, burn_in=10, X_test=Xt, chains=2,
                         seed=3)
    np.testing.assert_allclose(res.mean, ref.mean, rtol=1e-13)
    np.testing.assert_allclose(res.variance, ref.variance, rtol=1e-12)
    assert json.loads(res.to_json())["interrupted"] is True


def test_ctrl_c_stops_at_the_end_of_the_step():
    net, X, y, _, _ = _small_fc()
    seen = []

    def cb(state):
        seen.append(state.step)
        if state.step == 14:
            os.kill(os.getpid(), signal.SIGINT)   # as a user's Ctrl-C

    before = signal.getsignal(signal.SIGINT)
    with pytest.warns(train.SamplingWarning):
        res = train.langevin(net, X, y, 0.1, lr=0.01, steps=50, burn_in=0, chains=2, seed=0,
                             callback=cb)
    assert res.interrupted and res.steps_done == 15 and res.samples_per_chain == 15
    assert signal.getsignal(signal.SIGINT) is before    # the handler is restored


def test_interrupt_during_burn_in_has_no_samples():
    net, X, y, Xt, yt = _small_fc()

    def cb(state):
        assert state.phase == "burn-in"
        raise KeyboardInterrupt

    with pytest.warns(train.SamplingWarning):
        res = train.langevin(net, X, y, 0.1, lr=0.01, steps=10, burn_in=10, X_test=Xt,
                             chains=2, callback=cb)
    assert res.samples == 0 and res.mean is None
    with pytest.raises(ValueError, match="no samples"):
        res.test_error(yt)


def test_callback_returning_true_stops_cleanly():
    net, X, y, _, _ = _small_fc()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = train.langevin(net, X, y, 0.1, lr=0.01, steps=50, burn_in=0, chains=2,
                             callback=lambda s: s.step >= 9)
    assert res.steps_done == 10 and not res.interrupted
    assert res.settings["stopped_by_callback"]


def test_progress_bar_on_request_only(capsys):
    net, X, y, _, _ = _small_fc()
    train.langevin(net, X, y, 0.1, lr=0.01, steps=20, burn_in=0, chains=1, progress=None)
    assert capsys.readouterr().err == ""          # not a terminal: quiet
    train.langevin(net, X, y, 0.1, lr=0.01, steps=20, burn_in=0, chains=1, progress=True)
    err = capsys.readouterr().err
    assert "langevin" in err and "20/20" in err and "steps/s" in err


def test_divergence_is_reported():
    net, X, y, _, _ = _small_fc()
    with pytest.raises(FloatingPointError, match="lower lr"):
        train.langevin(net, X, y * 1e3, 0.1, lr=50.0, steps=200, chains=1)


# -- gradient descent ----------------------------------------------------------------------------
def test_gd_on_a_linearised_net_reaches_the_ridge_solution():
    rng = np.random.default_rng(1)
    base = nets.FCNet(4, 8, seed=3)
    X, Xt = rng.standard_normal((6, 4)), rng.standard_normal((3, 4))
    y = np.cos(X[:, 1])
    lin = nets.linearize(base)
    wd = 0.1
    lr = train.suggest_lr(lin, X, 0.0, target=1.0)
    res = train.gradient_descent(lin, X, y, lr, 3000, weight_decay=wd, X_test=Xt)
    ref = train.fit_linearized(base, X, y, X_test=Xt, ridge=wd)
    np.testing.assert_allclose(res.params["u"], ref["u"], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(res.prediction, ref["test_prediction"], rtol=1e-6, atol=1e-8)
    assert res.trace["loss"][-1] < res.trace["loss"][0]
    assert res.settings["method"] == "gd"


def test_sgd_and_feature_learning_distance():
    rng = np.random.default_rng(2)
    X, Xt = rng.standard_normal((32, 5)), rng.standard_normal((10, 5))
    y, yt = np.tanh(X[:, 0] * X[:, 1]), np.tanh(Xt[:, 0] * Xt[:, 1])
    out = {}
    for N1 in (8, 512):
        net = nets.FCNet(5, N1, seed=0)
        res = train.gradient_descent(net, X, y, 0.02, 400, batch_size=8, seed=0, X_test=Xt,
                                     y_test=yt)
        assert res.settings["method"] == "sgd"
        assert res.trace["train_error"][-1] < 0.5 * res.trace["train_error"][0]
        assert res.net is not None and np.allclose(res.net.forward(Xt), res.prediction)
        out[N1] = res.trace["distance"]["W"][-1]
    # wider nets move their first layer less (lazy training): relative change ~ N1^(-1/2)
    assert out[512] < 0.25 * out[8]


def test_sgd_gradient_is_unbiased():
    # the P/B scaling: a minibatch gradient averaged over the batches of one epoch is the
    # full gradient (for a model linear in its parameters and a fixed point)
    X, y = _quadratic_problem()
    model = LinearModel(3)
    lr = 1e-8  # small enough that the gradient barely changes within the epoch
    full = train.gradient_descent(model, X, y, lr, 1, batch_size=None)
    sgd = train.gradient_descent(model, X, y, lr, 3, batch_size=2, seed=0)
    # one epoch = three minibatch steps from 0, each -lr (P/B) grad_batch: sums to
    # -3 lr grad, three full steps, up to O(lr k) = 1e-7
    np.testing.assert_allclose(sgd.params["theta"], 3 * full.params["theta"], rtol=1e-5)
    # without the P/B scaling it would be a third of that
    assert not np.allclose(sgd.params["theta"], full.params["theta"], rtol=0.5)


# -- bad input -----------------------------------------------------------------------------------
def test_bad_input():
    net, X, y, Xt, yt = _small_fc()
    with pytest.raises(ValueError, match="temperature"):
        train.langevin(net, X, y, 0.0)
    with pytest.raises(ValueError, match=r"y must have shape \(8,\)"):
        train.langevin(net, X, y[:5], 0.1)
    with pytest.raises(ValueError, match="non-finite"):
        train.langevin(net, X, np.full(8, np.nan), 0.1)
    with pytest.raises(ValueError, match="lr"):
        train.langevin(net, X, y, 0.1, lr=-1.0)
    with pytest.raises(ValueError, match="lr"):
        train.langevin(net, X, y, 0.1, lr="fast")
    with pytest.raises(TypeError, match="chains"):
        train.langevin(net, X, y, 0.1, chains=2.5)
    with pytest.raises(ValueError, match="chains"):
        train.langevin(net, X, y, 0.1, chains=0)
    with pytest.raises(ValueError, match="burn_in"):
        train.langevin(net, X, y, 0.1, steps=10, burn_in=11)
    with pytest.raises(ValueError, match="thin"):
        train.langevin(net, X, y, 0.1, thin=0)
    with pytest.raises(ValueError, match="y_test given without X_test"):
        train.langevin(net, X, y, 0.1, y_test=yt)
    with pytest.raises(ValueError, match="X_test"):
        train.langevin(net, X, y, 0.1, X_test=np.ones(3))
    with pytest.raises(ValueError, match=r"X must have shape \(P, 4\)"):
        train.langevin(net, np.ones((8, 5)), y, 0.1, steps=2)
    with pytest.raises(TypeError, match="protocol"):
        train.langevin(object(), X, y, 0.1)
    with pytest.raises(ValueError, match="init"):
        train.langevin(net, X, y, 0.1, init="zeros")
    with pytest.raises(TypeError, match="callback"):
        train.langevin(net, X, y, 0.1, callback=3)
    with pytest.raises(ValueError, match="batch_size"):
        train.gradient_descent(net, X, y, 0.1, 5, batch_size=9)
    with pytest.raises(ValueError, match="weight_decay"):
        train.gradient_descent(net, X, y, 0.1, 5, weight_decay=-1)
    with pytest.raises(ValueError, match="unknown parameters"):
        train.gradient_descent(net, X, y, 0.1, 5, weight_decay={"b": 1.0})
    with pytest.raises(ValueError, match="arch"):
        train.sampled_test_error("rnn", width=3, X=X, y=y, X_test=Xt, y_test=yt,
                                 temperature=0.1)
    with pytest.raises(ValueError, match="geometry"):
        train.sampled_test_error("cnn", width=3, X=X, y=y, X_test=Xt, y_test=yt,
                                 temperature=0.1)
    res = train.langevin(net, X, y, 0.1, lr=0.01, steps=4, X_test=Xt, chains=2)
    with pytest.raises(ValueError, match="y_test"):
        res.test_error()
    with pytest.raises(ValueError, match=r"y_test must have shape \(5,\)"):
        res.test_error(yt[:3])


def test_sampled_test_error_returns_the_cli_fields():
    net, X, y, Xt, yt = _small_fc()
    g = lkr.PatchGeometry((4,), 2, 2)
    for arch, geom in (("fc", None), ("cnn", g), ("lcn", g)):
        out = train.sampled_test_error(arch, width=4, geometry=geom, X=X, y=y, X_test=Xt,
                                       y_test=yt, temperature=0.1, sampler="langevin",
                                       chains=2, steps=20, burn_in=5, seed=0)
        for key in ("error", "error_se", "bias2", "variance", "chains", "samples"):
            assert key in out
        assert out["chains"] == 2 and out["samples"] == 2 * 15
        assert out["error"] == pytest.approx(out["bias2"] + out["variance"])


def test_numbers_do_not_depend_on_the_thread_count():
    # large enough for the threaded erf and update; the noise streams are fixed per part
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((200, 16)), rng.standard_normal(200)
    net = nets.FCNet(16, 512, seed=0)
    before = lkr.get_num_threads()
    out = []
    try:
        for n in (1, 2, 3):
            lkr.set_num_threads(n)
            out.append(train.langevin(net, X, y, 0.1, lr=1e-3, steps=6, burn_in=0, chains=2,
                                      seed=9))
    finally:
        lkr.set_num_threads(before)
    for r in out[1:]:
        np.testing.assert_array_equal(r.params["W"], out[0].params["W"])
        np.testing.assert_array_equal(r.mean, out[0].mean)


def test_float32_nets_stay_float32():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 4)).astype(np.float32)
    y = rng.standard_normal(6).astype(np.float32)
    net = nets.FCNet(4, 8, seed=0, dtype=np.float32)
    res = train.langevin(net, X, y, 0.1, lr=0.01, steps=20, chains=2, seed=0)
    assert all(a.dtype == np.float32 for a in res.params.values())
    assert res.settings["dtype"] == "float32"
    assert np.all(np.isfinite(res.mean)) and np.all(res.variance > 0)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-15), (np.float32, 1e-6)])
def test_fused_erf_matches_scipy(dtype, tol):
    # the fused objectives take erf and erf' from the compiled activation pass
    from scipy.special import erf

    H = np.random.default_rng(0).standard_normal((3, 40, 50)).astype(dtype) * 2
    ref_s = erf(H.astype(np.float64))
    ref_d = 2 / math.sqrt(math.pi) * np.exp(-H.astype(np.float64) ** 2)
    S, D = nets.sigma_pair_inplace("erf", H.copy())
    assert S.dtype == dtype and D.dtype == dtype and S.shape == H.shape
    np.testing.assert_allclose(S, ref_s, rtol=0, atol=4 * tol)
    np.testing.assert_allclose(D, ref_d, rtol=0, atol=4 * tol)
    np.testing.assert_allclose(nets.sigma_pair("erf", H.copy(), False)[0], ref_s, rtol=0, atol=4 * tol)


# -- `lkr train` ------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["fc", "cnn", "lcn"])
def test_lkr_train_prints_sampled_and_theory_and_saves_json(arch, tmp_path, capsys):
    from lkr.cli import main

    out = tmp_path / "run"
    rc = main(["train", "--arch", arch, "--width", "4", "-P", "8", "--P-test", "20",
               "--input-shape", "16", "--steps", "60", "--chains", "2", "--thin", "2",
               "--out", str(out), "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "sampled test error" in text and "(theory)" in text and "GP (infinite width)" in text
    d = json.loads((out / "train.json").read_text())
    assert d["settings"]["arch"] == arch and d["settings"]["width"] == 4
    assert d["langevin"]["settings"]["steps"] == 60 and d["langevin"]["samples_per_chain"] == 15
    assert d["sampled"]["chains"] == 2 and d["theory"]["error"] > 0 and d["gp"]["error"] > 0
    assert d["task"]["task"] == "local-teacher"


def test_lkr_train_rejects_bad_options(capsys):
    from lkr.cli import main

    assert main(["train", "--steps", "10", "--burn-in", "10", "--quiet"]) == 2
    assert "burn-in" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["train", "--width", "0"])
    assert exc.value.code == 2


def test_blas_threads_are_restored_after_training():
    from lkr._blas import _openblas

    found = _openblas()  # (setter, getter) pairs of the loaded OpenBLAS libraries
    if not found:
        pytest.skip("no OpenBLAS entry points found in this process")
    get = found[0][1]
    before = int(get())
    net, X, y, _, _ = _small_fc()

    def cb(state):
        # small products: one BLAS thread while sampling
        assert int(get()) == 1

    train.langevin(net, X, y, 0.1, lr=0.01, steps=3, chains=2, callback=cb)
    assert int(get()) == before
    train.gradient_descent(net, X, y, 0.01, 3)
    assert int(get()) == before
