"""Refusals found by a new user's bad-input audit of the theories (issue 22's spirit): each
failed before its fix."""
import numpy as np
import pytest

import lkr
from lkr.theory import DeepCNNTheory, FCTheory


def test_predict_names_xt_and_the_fitted_shape():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 8))
    th = FCTheory(width=8, temperature=0.1)
    th.fit(X, np.tanh(X[:, 0]))
    # was "X and Y differ in input size: 7 vs 8", Y being no label array
    with pytest.raises(ValueError, match=r"Xt must hold samples of the shape the theory was "
                                         r"fit on, \(8,\); got Xt of shape \(4, 7\)"):
        th.predict(rng.standard_normal((4, 7)))
    with pytest.raises(ValueError, match="Xt must hold samples"):
        th.evaluate(rng.standard_normal((4, 7)), np.zeros(4))


def test_a_temperature_given_as_text_is_refused():
    with pytest.raises(TypeError, match="temperature must be a real number, got '0.1'"):
        FCTheory(width=8, temperature="0.1")


def test_deep_width_message_states_the_d_d_condition():
    dg = lkr.DeepGeometry((16,), filter_sizes=[4, 2], strides=[2, 2], padding="valid")  # d = 3
    # was "use width >= 3", which still fails with D outputs
    with pytest.raises(ValueError, match="D outputs need width >= d D"):
        DeepCNNTheory(dg, width=2, temperature=0.1)
