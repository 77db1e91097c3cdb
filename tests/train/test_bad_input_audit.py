"""Refusals found by a new user's bad-input audit of the samplers (issue 22's spirit): each
failed before its fix (a misleading name, a string taken for a number, a run that kept no
sample reported as if stopped)."""
import numpy as np
import pytest

from lkr import nets, train


def _task(P=12, N0=8):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((P, N0))
    return X, np.tanh(X[:, 0]), rng.standard_normal((6, N0))


def test_collapsed_names_x_test_when_its_samples_have_the_wrong_shape():
    X, y, _ = _task()
    net = nets.FCNet(8, width=4, activation="erf", seed=0)
    with pytest.raises(ValueError, match=r"X_test must hold samples of the shape of X's, \(8,\)"):
        train.collapsed(net, X, y, 0.1, sweeps=4, chains=2, X_test=np.zeros((6, 7)))


def test_a_temperature_given_as_text_is_refused():
    X, y, _ = _task()
    net = nets.FCNet(8, width=4, activation="erf", seed=0)
    with pytest.raises(TypeError, match="temperature must be a real number, got '0.1'"):
        train.collapsed(net, X, y, "0.1", sweeps=4, chains=2)


@pytest.mark.parametrize("kw, message", [
    (dict(sweeps=8, burn_in=8), r"sweeps=8 with burn_in=8 and thin=1 keep no sample"),
    (dict(sweeps=8, thin=9), r"sweeps=8 with burn_in=2 and thin=9 keep no sample"),
    (dict(sampler="langevin", steps=0), "steps must be >= 1"),
    (dict(sampler="langevin", steps=10, burn_in=10), "steps=10 with burn_in=10"),
])
def test_sampled_test_error_refuses_a_run_that_keeps_no_sample_before_sampling(kw, message):
    X, y, Xt = _task()
    with pytest.raises(ValueError, match=message):
        train.sampled_test_error("fc", width=4, X=X, y=y, X_test=Xt, y_test=np.zeros(6),
                                 temperature=0.1, chains=2, **kw)
