"""lkr.train.collapsed: the sampler's surface, checks, reproducibility, interruption, the
predictive with several outputs and the diagnostics (fast; the statistical checks against
brute-force Monte Carlo, Langevin and the GP limit are in test_collapsed_stationarity.py)."""
import json
import os
import signal
import warnings

import numpy as np
import pytest

import lkr
from lkr import backend, nets, train
from lkr.train import SamplingWarning
from lkr.train._collapsed_linalg import augmented_factor, loglik, predictive


def _task(P=10, Pt=7, N0=8, seed=0):
    rng = np.random.default_rng(seed)
    X, Xt = rng.standard_normal((P, N0)), rng.standard_normal((Pt, N0))
    return X, np.tanh(X[:, 0] + X[:, 1]), Xt, np.tanh(Xt[:, 0] + Xt[:, 1])


def _nets():
    g = lkr.PatchGeometry((8,), 2, 2)
    dg = lkr.DeepGeometry((8,), filter_sizes=[2, 2], strides=[2, 2])
    return [nets.FCNet(8, 6, seed=0), nets.CNNNet(g, 3, seed=0), nets.LCNNet(g, 3, seed=0),
            nets.DeepCNNNet(dg, 3, seed=0)]


NETS = _nets()


@pytest.mark.parametrize("net", NETS, ids=lambda n: type(n).__name__)
def test_result_surface(net):
    X, y, Xt, yt = _task()
    res = train.collapsed(net, X, y, 0.1, sweeps=40, burn_in=10, chains=3, X_test=Xt,
                          y_test=yt, seed=0)
    assert res.samples_per_chain == 30 and res.samples == 90 and res.sweeps_done == 40
    assert res.mean.shape == res.variance.shape == res.mean_se.shape == (7,)
    assert res.chain_mean.shape == res.chain_variance.shape == (3, 7)
    assert np.all(res.variance > 0) and np.all(np.isfinite(res.rhat))
    assert res.rhat_split.shape == (7,)
    te = res.test_error()
    assert te["error"] == pytest.approx(te["bias2"] + te["variance"], rel=1e-12)
    assert te["error"] == pytest.approx(np.mean(te["chain_errors"]), rel=0.2)
    assert te["error_se"] > 0 and te["samples"] == 90
    # the per-sample error series averages to the chain errors (Rao-Blackwellised)
    np.testing.assert_allclose(res.trace["test_error"].mean(axis=0), te["chain_errors"],
                               rtol=1e-10)
    assert np.isfinite(te["rhat"]) and np.isfinite(te["rhat_split"])
    assert 0 < res.acceptance <= 1 and 0 < res.step <= 1
    assert len(res.steps) == len(res.acceptances) == (2 if isinstance(net, nets.DeepCNNNet) else 1)
    assert res.diagnostics["factor_drift"] < 1e-8 and res.diagnostics["breakdowns"] == 0
    d = json.loads(res.to_json())
    assert d["test_error"]["error"] == pytest.approx(te["error"])
    assert d["rhat_max"] >= 1 - 1e-9 or d["rhat_max"] > 0
    assert set(res.params) == set(net.params) - {"v"}
    assert "CollapsedResult(chains=3" in repr(res)


def test_test_inputs_default_to_the_training_set():
    X, y, _, _ = _task()
    res = train.collapsed(NETS[0], X, y, 0.1, sweeps=12, chains=2)
    assert res.mean.shape == (10,)
    # with the training points as test points, the predictive mean fits y to order T
    assert np.abs(res.mean - y).max() < 0.5


def test_several_outputs_keep_their_shapes():
    X, y, Xt, yt = _task()
    Y, Yt = np.stack([y, -y, y ** 2], 1), np.stack([yt, -yt, yt ** 2], 1)
    res = train.collapsed(NETS[1], X, Y, 0.1, sweeps=20, chains=2, X_test=Xt, y_test=Yt)
    assert res.mean.shape == res.variance.shape == (7, 3)
    assert res.chain_mean.shape == (2, 7, 3) and res.rhat.shape == (7, 3)
    te = res.test_error()
    assert te["error"] == pytest.approx(np.mean(te["per_output"]["error"]))
    # the posterior variance of f does not depend on the output (one kernel per sample)
    np.testing.assert_allclose(res.variance[:, 0] - res.variance[:, 1], 0, atol=0.2)
    with pytest.raises(ValueError, match=r"y_test must have shape \(7, 3\)"):
        res.test_error(yt)


def test_predictive_of_several_outputs_is_that_of_each_output():
    rng = np.random.default_rng(0)
    G, Gt = rng.standard_normal((2, 9, 6)), rng.standard_normal((2, 9, 4))
    Y = rng.standard_normal((6, 3))
    m, v = predictive(augmented_factor(G, Y, 0.2), G, Gt)
    for d in range(3):
        m1, v1 = predictive(augmented_factor(G, Y[:, d:d + 1], 0.2), G, Gt)
        np.testing.assert_allclose(m[:, :, d], m1[:, :, 0], rtol=1e-12)
        np.testing.assert_allclose(v, v1, rtol=1e-12)
    # and the GP formulas themselves
    for c in range(2):
        A = 0.2 * np.eye(6) + G[c].T @ G[c]
        k = G[c].T @ Gt[c]
        np.testing.assert_allclose(m[c], k.T @ np.linalg.solve(A, Y), rtol=1e-10)
        want = np.diag(Gt[c].T @ Gt[c]) - np.einsum("pt,pt->t", k, np.linalg.solve(A, k))
        np.testing.assert_allclose(v[c], want, rtol=1e-9, atol=1e-12)
        ll = (-0.5 * np.trace(Y.T @ np.linalg.solve(A, Y)) - 1.5 * np.linalg.slogdet(A)[1])
        assert loglik(augmented_factor(G, Y, 0.2))[c] == pytest.approx(ll, rel=1e-12)


@pytest.mark.parametrize("net", NETS[:3], ids=lambda n: type(n).__name__)
def test_frozen_features_several_outputs_equal_separate_runs(net):
    # step 1e-13, not adapted: the hidden weights move by ~1e-13, so every run keeps the
    # net's own features and the D-output run must give each column's one-output answer
    X, y, Xt, yt = _task()
    Y = np.stack([y, np.sin(3 * y)], 1)
    kw = dict(sweeps=6, burn_in=2, chains=2, X_test=Xt, init="net", step=1e-13, adapt=False)
    both = train.collapsed(net, X, Y, 0.05, **kw)
    for d in range(2):
        one = train.collapsed(net, X, Y[:, d], 0.05, **kw)
        np.testing.assert_allclose(both.mean[:, d], one.mean, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(both.variance[:, d], one.variance, rtol=1e-8, atol=1e-10)


def test_same_seed_same_numbers_for_any_thread_count():
    X, y, Xt, yt = _task(P=40, Pt=10)
    net = nets.CNNNet(lkr.PatchGeometry((8,), 2, 2), 8, seed=0)
    old = backend.get_num_threads()
    try:
        out = []
        for n in (1, 2, 1):
            backend.set_num_threads(n)
            r = train.collapsed(net, X, y, 0.1, sweeps=15, chains=3, X_test=Xt, seed=7)
            out.append((r.mean, r.variance, r.trace["loglik"], r.params["W"]))
    finally:
        backend.set_num_threads(old)
    for a, b in zip(out[0], out[1]):
        np.testing.assert_array_equal(a, b)
    other = train.collapsed(net, X, y, 0.1, sweeps=15, chains=3, X_test=Xt, seed=8)
    assert not np.array_equal(other.mean, out[0][0])


def test_callback_stop_and_ctrl_c_return_partial_results():
    X, y, Xt, yt = _task()
    seen = []

    def stop(state):
        seen.append((state.sweep, state.phase, state.samples_per_chain))
        return state.sweep == 7

    res = train.collapsed(NETS[0], X, y, 0.1, sweeps=50, burn_in=4, chains=2, callback=stop)
    assert res.sweeps_done == 8 and not res.interrupted and res.samples_per_chain == 4
    assert res.settings["stopped_by_callback"] and seen[0] == (0, "burn-in", 0)

    def ctrl_c(state):
        if state.sweep == 5:
            os.kill(os.getpid(), signal.SIGINT)   # the first Ctrl-C: stop after this sweep

    with pytest.warns(SamplingWarning, match="interrupted after 6 of 1000 sweeps"):
        res = train.collapsed(NETS[1], X, y, 0.1, sweeps=1000, burn_in=2, chains=2,
                              X_test=Xt, y_test=yt, callback=ctrl_c)
    assert res.interrupted and res.sweeps_done == 6 and res.samples_per_chain == 4
    assert res.test_error()["error"] > 0

    def in_burn_in(state):
        raise KeyboardInterrupt

    with pytest.warns(SamplingWarning, match="interrupted"):
        res = train.collapsed(NETS[0], X, y, 0.1, sweeps=10, chains=2, X_test=Xt,
                              callback=in_burn_in)
    assert res.interrupted and res.mean is None
    with pytest.raises(ValueError, match="no samples"):
        res.test_error(yt)


def test_no_samples_warns():
    X, y, _, _ = _task()
    with pytest.warns(SamplingWarning, match="no samples"):
        res = train.collapsed(NETS[0], X, y, 0.1, sweeps=3, burn_in=3, chains=2)
    assert res.samples == 0 and res.rhat is None and res.rhat_split is None


def test_continue_from_params_and_from_the_net():
    X, y, _, _ = _task()
    a = train.collapsed(NETS[0], X, y, 0.1, sweeps=5, chains=2)
    b = train.collapsed(NETS[0], X, y, 0.1, sweeps=5, chains=2, init=a.params)
    assert b.samples_per_chain == 4
    c = train.collapsed(NETS[0], X, y, 0.1, sweeps=1, burn_in=0, chains=2, init="net",
                        step=1e-13, adapt=False)
    np.testing.assert_allclose(c.params["W"][0], NETS[0].params["W"], rtol=1e-11)


def test_unmixed_chains_have_a_large_rhat():
    # a tiny fixed step at small T: every chain stays near its own prior draw
    X, y, Xt, _ = _task()
    res = train.collapsed(NETS[1], X, y, 0.01, sweeps=60, burn_in=0, chains=4, X_test=Xt,
                          step=1e-4, adapt=False)
    assert np.nanmax(res.rhat) > 2 and np.nanmax(res.rhat_split) > 1.5
    ok = train.collapsed(NETS[1], X, y, 0.01, sweeps=600, chains=4, X_test=Xt)
    assert np.nanmax(ok.rhat) < 1.2


def test_adaptation_reaches_the_target_acceptance():
    # a narrow CNN (Nc = 2, M = 16, Np = 4, P = 48, alpha = 24, T = 0.1): the data pin the
    # filters, so independent prior draws (beta = 1) are rarely accepted
    rng = np.random.default_rng(0)
    g = lkr.PatchGeometry((64,), 16, 16)
    X = rng.standard_normal((48, 64))
    y = np.tanh(g.patches(X)[:, :, 0].sum(1))
    res = train.collapsed(nets.CNNNet(g, 2, seed=0), X, y, 0.1, sweeps=400, burn_in=200,
                          chains=4)
    assert res.step < 0.6
    assert 0.18 < res.acceptance < 0.36
    fixed = train.collapsed(nets.CNNNet(g, 2, seed=0), X, y, 0.1, sweeps=20, chains=4,
                            step=0.9, adapt=False)
    assert fixed.step == 0.9


def test_block_proposals_and_their_checks():
    X, y, _, _ = _task()
    res = train.collapsed(NETS[0], X, y, 0.1, sweeps=10, chains=2, block=3)
    assert res.settings["block"] == 3
    with pytest.raises(ValueError, match=r"block \(4\) must divide the width \(6 units\)"):
        train.collapsed(NETS[0], X, y, 0.1, sweeps=10, block=4)
    with pytest.raises(ValueError, match=r"block \(2\) must divide the width \(3 channels\)"):
        train.collapsed(NETS[3], X, y, 0.1, sweeps=10, block=2)


def test_bad_input_is_refused():
    X, y, Xt, yt = _task()
    net = NETS[0]
    cases = [
        (dict(temperature=0.0), ValueError, "temperature must be positive"),
        (dict(temperature=float("nan")), ValueError, "temperature must be finite"),
        (dict(sweeps=0), ValueError, "sweeps must be >= 1"),
        (dict(burn_in=11), ValueError, r"burn_in \(11\) must not exceed sweeps \(10\)"),
        (dict(chains=0), ValueError, "chains must be >= 1"),
        (dict(thin=0), ValueError, "thin must be >= 1"),
        (dict(step=1.5), ValueError, r"step \(the pCN beta\) must be in \(0, 1\]"),
        (dict(step=0.0), ValueError, "step must be positive"),
        (dict(refresh=0), ValueError, "refresh must be >= 1"),
        (dict(adapt="yes"), TypeError, "adapt must be True or False"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(callback=3), TypeError, "callback must be callable"),
        (dict(progress="x"), TypeError, "progress must be True, False or None"),
        (dict(Y=y[:5]), ValueError, r"Y must have shape \(10,\) or \(10, D\)"),
        (dict(Y=np.where(np.arange(10) == 3, np.nan, y)), ValueError, "Y"),
        (dict(X=np.where(np.arange(8) == 1, np.inf, X)), ValueError, "X"),
        (dict(X=X[:, :5]), ValueError, r"X must have shape \(P, 8\)"),
        (dict(y_test=yt), ValueError, "y_test given without X_test"),
        (dict(X_test=Xt, y_test=yt[:3]), ValueError, r"y_test must have shape \(7,\)"),
        (dict(X_test=Xt, y_test=np.stack([yt, yt], 1)), ValueError,
         r"y_test must have shape \(7,\) \(as Y\)"),
        (dict(init="zeros"), ValueError, "init must be 'prior', 'net'"),
        (dict(init={"W": np.zeros((3, 3))}), ValueError, r"init\['W'\] must have shape"),
        (dict(init={"v": np.zeros(6)}), ValueError, "init has no 'W'"),
    ]
    for change, exc, match in cases:
        kw = dict(net=net, X=X, Y=y, temperature=0.1, sweeps=10, chains=2)
        kw.update(change)
        with pytest.raises(exc, match=match):
            train.collapsed(**kw)
    with pytest.raises(TypeError, match="supports FCNet, CNNNet, LCNNet and DeepCNNNet"):
        train.collapsed(nets.DeepFCNet(8, (4, 4), seed=0), X, y, 0.1, sweeps=3)
    with pytest.raises(TypeError, match="network protocol"):
        train.collapsed(object(), X, y, 0.1, sweeps=3)


def test_progress_bar_is_drawn_on_request(capsys):
    X, y, _, _ = _task()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=Warning)   # tqdm's own notes on some setups
        train.collapsed(NETS[0], X, y, 0.1, sweeps=5, chains=2, progress=True)
    assert "collapsed" in capsys.readouterr().err


def test_a_broken_factor_is_rebuilt(monkeypatch):
    # the compiled sweep reports a breakdown (status 1) for chain 0 once: the sampler
    # rebuilds that chain's factor from its features and carries on exactly
    X, y, Xt, _ = _task()
    real = backend.core()
    calls = []

    class Flaky:
        def __getattr__(self, name):
            return getattr(real, name)

        def collapsed_sweep(self, S, G, Gp, logu, block, nthreads=0):
            acc, delta, status = real.collapsed_sweep(S, G, Gp, logu, block, nthreads=nthreads)
            if not calls:
                S[0] = np.nan
                status[0] = 1
            calls.append(1)
            return acc, delta, status

    monkeypatch.setattr(backend, "implementation", lambda xp: Flaky())
    res = train.collapsed(NETS[1], X, y, 0.1, sweeps=8, chains=2, X_test=Xt)
    assert res.diagnostics["breakdowns"] == 1
    assert np.all(np.isfinite(res.mean)) and np.all(np.isfinite(res.trace["loglik"]))


# -- the entry points that offer the sampler ---------------------------------------------------
def test_sampled_test_error_defaults_to_the_collapsed_sampler():
    X, y, Xt, yt = _task()
    g = lkr.PatchGeometry((8,), 2, 2)
    for arch, geom in (("fc", None), ("cnn", g), ("lcn", g)):
        out = train.sampled_test_error(arch, width=4, geometry=geom, X=X, y=y, X_test=Xt,
                                       y_test=yt, temperature=0.1, chains=2, sweeps=12,
                                       burn_in=2, seed=0)
        assert out["sampler"] == "collapsed" and out["samples"] == 20
        assert out["error"] == pytest.approx(out["bias2"] + out["variance"])
        for key in ("error_se", "rhat_max", "rhat_split_max", "acceptance", "step"):
            assert key in out
    lg = train.sampled_test_error("fc", width=4, X=X, y=y, X_test=Xt, y_test=yt,
                                  temperature=0.1, chains=2, steps=20, burn_in=5,
                                  sampler="langevin")
    assert lg["sampler"] == "langevin" and lg["lr"] > 0
    common = dict(width=4, X=X, y=y, X_test=Xt, y_test=yt, temperature=0.1)
    with pytest.raises(ValueError, match="steps and lr are Langevin's"):
        train.sampled_test_error("fc", steps=20, **common)
    with pytest.raises(ValueError, match="sweeps is the collapsed sampler's"):
        train.sampled_test_error("fc", sweeps=20, sampler="langevin", **common)
    with pytest.raises(ValueError, match="sampler must be one of"):
        train.sampled_test_error("fc", sampler="hmc", **common)


def test_lkr_train_and_fc_vs_cnn_run_the_collapsed_sampler(capsys, tmp_path):
    from lkr.cli import main

    args = ["train", "--sampler", "collapsed", "--sweeps", "12", "-P", "16", "--P-test", "20",
            "--width", "4", "--chains", "2", "--quiet", "--out", str(tmp_path)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "collapsed: 2 chains x 9 samples (12 sweeps, burn-in 3, thin 1" in text
    saved = json.loads((tmp_path / "train.json").read_text())
    assert saved["sampler"] == "collapsed" and saved["collapsed"]["sweeps_done"] == 12
    assert main(["train", "--sampler", "collapsed", "--lr", "0.1", "--quiet"]) == 2
    assert "--lr is Langevin's" in capsys.readouterr().err
    assert main(["train", "--sampler", "collapsed", "--sweeps", "10", "--burn-in", "10",
                 "--quiet"]) == 2
    assert "--burn-in 10 must be smaller than --sweeps 10" in capsys.readouterr().err
    out = tmp_path / "fc"
    code = main(["fc-vs-cnn", "--langevin", "--sampler", "collapsed", "--sweeps", "8",
                 "--chains", "2", "-P", "12", "--P-test", "20", "--widths", "4", "--quiet",
                 "--out", str(out)])
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    rows = res["langevin"]["cnn"]
    assert rows[0]["sampler"] == "collapsed" and rows[0]["samples"] == 2 * 6
