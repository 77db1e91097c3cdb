"""The experimental non-central CNN action against Langevin sampling of a ReLU CNN."""
import warnings

import numpy as np
import pytest

import lkr
from lkr.theory import CNNTheory, GPTheory


@pytest.mark.slow
def test_langevin_relu_cnn_against_the_noncentral_theory():
    # A ReLU CNN (Np = 3 patches of 4, Nc = 12 channels, P = 12, T = 0.1) on labels with a
    # mean (offset 2). Measured when written (32 chains, 8000 steps): sampled test error
    # 1.042 +- 0.016 (N = 12); non-central theory 0.825, one-parameter action 0.659, GP
    # 0.791. Over N = 6, 12, 24, 48 the sampled error is 0.791 + 2.8 / N (the GP limit is
    # right), the non-central theory 0.791 + ~0.5 / N and the one-parameter action
    # 0.791 - ~1.5 / N: the non-central action has the right sign and is measurably closer,
    # but it is NOT within sampling error -- the derivation (docs/theory-beyond-odd.md
    # section 1.2) misses most of the finite-width correction here. This test checks what
    # holds and xfails on the rest.
    from lkr import train

    rng = np.random.default_rng(0)
    P, Pt, T, N0, N = 12, 40, 0.1, 12, 12
    g = lkr.PatchGeometry((N0,), 4, 4)
    X = rng.standard_normal((P, N0))
    Xt = rng.standard_normal((Pt, N0))
    w = rng.standard_normal(4)

    def teacher(Z):
        return np.maximum(Z.reshape(len(Z), 3, 4) @ w / 2, 0).mean(1) + 2.0

    y, yt = teacher(X), teacher(Xt)
    nc = CNNTheory(geometry=g, width=N, temperature=T, activation="relu")
    assert nc.fit(X, y).converged
    e_nc = nc.evaluate(Xt, yt)["error"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        od = CNNTheory(geometry=g, width=N, temperature=T, activation="relu", mean="ignore")
    od.fit(X, y)
    e_od = od.evaluate(Xt, yt)["error"]
    gp = GPTheory("cnn", geometry=g, temperature=T, activation="relu")
    gp.fit(X, y)
    e_gp = gp.evaluate(Xt, yt)["error"]
    out = train.sampled_test_error("cnn", width=N, geometry=g, X=X, y=y, X_test=Xt, y_test=yt,
                                   temperature=T, activation="relu", chains=32, steps=8000,
                                   burn_in=8000 // 3, thin=4, seed=0)
    s, se = out["error"], out["error_se"]
    assert 0 < se < 0.03 * s
    # the sampled finite-width effect is above the GP, as the non-central theory says
    assert s - e_gp > 4 * se and e_nc > e_gp
    # the non-central action is measurably closer to the samples than the one-parameter one
    assert abs(s - e_od) - abs(s - e_nc) > 4 * se, (s, se, e_nc, e_od)
    band = 4 * se + 0.01 * s
    if abs(s - e_nc) > band:
        pytest.xfail(f"non-central CNN theory {e_nc:.3f} outside the sampling band of "
                     f"{s:.3f} +- {se:.3f} (one-parameter {e_od:.3f}, GP {e_gp:.3f})")
