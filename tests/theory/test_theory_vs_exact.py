"""The CNN effective actions against the exact collapsed sampler, in the regime they claim
(filter dimension M >= 64) and once outside it (M = 4) (slow; docs/training.md, "Collapsed
sampler", and docs/theory.md).

The actions are saddle points of a Gaussian-equivalent model, which needs a large filter
dimension M = C_in k_h k_w. Each case fits the action and the infinite-width GP and samples
the network's posterior exactly with :func:`lkr.train.collapsed`; the action must sit within
10 % of the finite-width shift (exact - GP) plus 4 standard errors of the exact value, and
the shift must be resolved (> 10 SE). Tasks: 1D inputs of Np patches of M (filter M, stride
M), Gaussian inputs, a one-filter teacher; T = 0.1, lambda0 = lambda1 = 1, P = 24,
P_test = 200, 8 chains x 300 sweeps (75 burn-in), seed 0.

Measured when written (8 chains x 1200 sweeps; error +- SE, R-hat and split R-hat of the
per-sample error series; share = (theory - GP) / (exact - GP)):

=====================  =====  ===============  =======  ======  =====  ===========
case                   alpha  exact            theory   GP      share  R-hat/split
=====================  =====  ===============  =======  ======  =====  ===========
ReLU M=64 Np=4 Nc=24   1      0.5307 +- 0.0004 0.5317   0.4569  1.01   1.000/1.000
ReLU M=64 Np=4 Nc=96   0.25   0.4747 +- 0.0002 0.4752   0.4569  1.03   1.000/1.001
erf  M=64 Np=4 Nc=24   1      0.8081 +- 0.0003 0.8079   0.8360  1.01   1.000/1.000
erf  M=64 Np=4 Nc=96   0.25   0.8285 +- 0.0001 0.8284   0.8360  1.01   1.000/1.000
ReLU M=4  Np=4 Nc=24   1      0.4642 +- 0.0016 0.4272   0.4217  0.13   1.005/1.005
ReLU M=4  Np=3 Nc=24   1      0.6882 +- 0.0029 0.6297   0.6398  -0.21  1.001/1.001
=====================  =====  ===============  =======  ======  =====  ===========

(ReLU: the non-central action, CNNTheory's default for relu; erf: the odd action; M = 4
rows with 8 chains x 400 sweeps.) These replace two Langevin tests at M = 4 that had to
xfail: there the actions miss most of the shift (ReLU) -- the regime, not a bug.
"""
import warnings

import numpy as np
import pytest

import lkr
from lkr import nets, train
from lkr.theory import CNNTheory, GPTheory, TheoryRegimeWarning

T, P, PT = 0.1, 24, 200


def _task(M, Np, act, seed=0):
    rng = np.random.default_rng(seed)
    g = lkr.PatchGeometry((M * Np,), M, M)
    X, Xt = rng.standard_normal((P, M * Np)), rng.standard_normal((PT, M * Np))
    w = rng.standard_normal(M)

    def teacher(Z):
        H = g.patches(Z) @ w / np.sqrt(M)
        if act == "relu":   # labels with a mean: the non-central action's case
            return np.maximum(H, 0).mean(1) + 2.0
        return np.tanh(H).sum(1) / np.sqrt(Np)

    return g, X, teacher(X), Xt, teacher(Xt)


def _compare(M, Np, act, N, sweeps=300):
    g, X, y, Xt, yt = _task(M, Np, act)
    th = CNNTheory(geometry=g, width=N, temperature=T, activation=act)
    if M < 16:  # outside the regime: the fit says so
        with pytest.warns(TheoryRegimeWarning, match=rf"M = {M} is below 16"):
            sol = th.fit(X, y)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error", TheoryRegimeWarning)
            sol = th.fit(X, y)
    assert sol.converged and sol.filter_dim == M
    gp = GPTheory("cnn", geometry=g, temperature=T, activation=act)
    gp.fit(X, y)
    res = train.collapsed(nets.CNNNet(g, N, activation=act, seed=0), X, y, T, sweeps=sweeps,
                          burn_in=sweeps // 4, chains=8, X_test=Xt, y_test=yt, seed=0)
    out = res.test_error()
    theory, e_gp = th.evaluate(Xt, yt)["error"], gp.evaluate(Xt, yt)["error"]
    print(f"{act} M={M} Np={Np} Nc={N} alpha={P / N:g} T={T}: exact {out['error']:.4f} +- "
          f"{out['error_se']:.4f}, theory {theory:.4f}, GP {e_gp:.4f}, share "
          f"{(theory - e_gp) / (out['error'] - e_gp):.2f}, R-hat {out['rhat']:.3f}/"
          f"{out['rhat_split']:.3f}")
    return out, theory, e_gp


@pytest.mark.slow
@pytest.mark.parametrize("act,N", [("relu", 24), ("relu", 96), ("erf", 24), ("erf", 96)])
def test_cnn_action_within_ten_percent_of_the_shift_at_M64(act, N):
    out, theory, gp = _compare(64, 4, act, N)
    exact, se = out["error"], out["error_se"]
    shift = exact - gp
    assert out["rhat"] < 1.05 and out["rhat_split"] < 1.05, out
    assert abs(shift) > 10 * se, (out, gp)           # the finite-width effect is resolved
    assert abs(theory - exact) < 0.1 * abs(shift) + 4 * se, (exact, se, theory, gp)


@pytest.mark.slow
def test_outside_the_regime_M4_relu_action_misses_most_of_the_shift():
    # M = 4 (the patch size of the former Langevin tests): the network's error lies well
    # above the GP's, the non-central action only a little (share 0.13 when measured), so the
    # action is below the exact value by most of the shift. Documents the failure the
    # validity warning (M < 16) is about.
    out, theory, gp = _compare(4, 4, "relu", 24, sweeps=400)
    exact, se = out["error"], out["error_se"]
    assert out["rhat"] < 1.05
    assert exact - gp > 10 * se                      # a resolved positive shift
    assert exact - theory > 0.5 * (exact - gp) + 4 * se, (exact, se, theory, gp)


# -- the deep CNN (DeepCNNTheory: only the last layer renormalised) -------------------------------
def _deep_task(M1, seed=0):
    rng = np.random.default_rng(seed)
    dg = lkr.DeepGeometry((4 * M1,), filter_sizes=[M1, 2], strides=[M1, 2])   # d = 2
    X, Xt = rng.standard_normal((P, 4 * M1)), rng.standard_normal((PT, 4 * M1))
    g = lkr.PatchGeometry((4 * M1,), M1, M1)
    w = rng.standard_normal(M1)

    def teacher(Z):
        return np.tanh(g.patches(Z) @ w / np.sqrt(M1)).sum(1) / 2

    return dg, X, teacher(X), Xt, teacher(Xt)


@pytest.mark.slow
@pytest.mark.parametrize("M1,share_band", [(16, None), (64, (1.0, 1.35))])
def test_deep_cnn_action_against_the_exact_sampler(M1, share_band):
    # Two erf layers (filter M1 then 2 at stride 2, d = 2 final patches), Nc = 24 channels
    # (alpha = 1; the last layer's filter dimension is 2 Nc = 48), P = 24, T = 0.1.
    # Measured when written (16 chains x 800 sweeps; share = (theory - GP) / (exact - GP)):
    #   M1 = 16: exact 0.4578 +- 0.0006, theory 0.4579, GP 0.5026: share 1.00, R-hat 1.000
    #   M1 = 64: exact 0.6886 +- 0.0004, theory 0.6854, GP 0.7062: share 1.18, R-hat 1.000
    # and, outside this test: M1 = 16, Nc = 8 (alpha = 3): share 0.75; the former Langevin
    # case (M1 = 2, Nc = 4, P = 12): exact 0.1212 +- 0.0004, theory 0.1120, GP 0.1503, share
    # 1.32. The deep action holds at M1 = 16 (asserted to 10 % of the shift + 4 SE); at
    # M1 = 64 it overshoots the shift by about a fifth, which is asserted as such (a larger
    # first filter does not make the deep action better, unlike the one-layer CNN's).
    from lkr.theory import DeepCNNTheory

    dg, X, y, Xt, yt = _deep_task(M1)
    th = DeepCNNTheory(dg, 24, T, tol=1e-6)
    assert th.fit(X, y).converged
    gp = GPTheory("cnn", geometry=dg, temperature=T)
    gp.fit(X, y)
    res = train.collapsed(nets.DeepCNNNet(dg, 24, "erf", seed=0), X, y, T, sweeps=300,
                          burn_in=75, chains=8, X_test=Xt, y_test=yt, seed=0)
    out = res.test_error()
    exact, se = out["error"], out["error_se"]
    theory, e_gp = th.evaluate(Xt, yt)["error"], gp.evaluate(Xt, yt)["error"]
    shift = exact - e_gp
    print(f"deep M1={M1} Nc=24 alpha=1 T={T}: exact {exact:.4f} +- {se:.4f}, theory "
          f"{theory:.4f}, GP {e_gp:.4f}, share {(theory - e_gp) / shift:.2f}, R-hat "
          f"{out['rhat']:.3f}/{out['rhat_split']:.3f}")
    assert out["rhat"] < 1.05 and out["rhat_split"] < 1.05
    assert abs(shift) > 10 * se
    if share_band is None:
        assert abs(theory - exact) < 0.1 * abs(shift) + 4 * se, (exact, se, theory, e_gp)
    else:
        share = (theory - e_gp) / shift
        lo, hi = share_band
        assert lo < share < hi, (share, exact, se, theory, e_gp)
