"""A width must be a whole number of units or channels (issue 22, item 7): the string '64',
2.5, a bool or 0 are refused by every theory, network and command-facing function, with
one message; an integer-valued float (64.0, e.g. P / alpha) is the integer."""
import numpy as np
import pytest

import lkr
from lkr import nets
from lkr.theory import CNNTheory, DeepCNNTheory, DeepFCTheory, FCTheory, LCNTheory
from lkr.train._arch import make_net, make_theory

G = lkr.PatchGeometry(input_shape=(16,), filter_size=4, stride=4)
DG = lkr.DeepGeometry((8, 8), filter_sizes=[3, 2], strides=[1, 2], padding="same")

MAKERS = {
    "FCTheory": lambda w: FCTheory(width=w, temperature=0.1),
    "CNNTheory": lambda w: CNNTheory(geometry=G, width=w, temperature=0.1),
    "LCNTheory": lambda w: LCNTheory(geometry=G, width=w, temperature=0.1),
    "DeepFCTheory": lambda w: DeepFCTheory(width=w, depth=2, temperature=0.1),
    "DeepCNNTheory": lambda w: DeepCNNTheory(DG, width=w, temperature=0.1),
    "FCNet": lambda w: nets.FCNet(16, width=w),
    "CNNNet": lambda w: nets.CNNNet(geometry=G, width=w),
    "LCNNet": lambda w: nets.LCNNet(geometry=G, width=w),
    "DeepCNNNet": lambda w: nets.DeepCNNNet(DG, width=w),
    "DeepFCNet": lambda w: nets.DeepFCNet(16, [w, w]),
    "make_theory": lambda w: make_theory("cnn", w, geometry=G, temperature=0.1),
    "make_net": lambda w: make_net("fc", w, np.ones((2, 16))),
}


@pytest.mark.parametrize("maker", MAKERS)
@pytest.mark.parametrize("bad", ["64", 2.5, True, np.float64(16.5), float("inf")])
def test_non_integer_widths_are_refused(maker, bad):
    with pytest.raises(TypeError, match="must be a positive integer") as exc:
        MAKERS[maker](bad)
    assert repr(bad) in str(exc.value)


@pytest.mark.parametrize("maker", MAKERS)
def test_zero_width_is_a_value_error(maker):
    with pytest.raises(ValueError, match="positive integer"):
        MAKERS[maker](0)


@pytest.mark.parametrize("maker", MAKERS)
def test_integer_valued_widths_are_accepted(maker):
    for w in (32, np.int64(32), 32.0):
        obj = MAKERS[maker](w)
        got = getattr(obj, "width", None)
        if got is not None:
            assert got == 32


def test_fit_path_and_run_refuse_fractional_widths():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 16))
    with pytest.raises(TypeError, match="widths entry must be a positive integer"):
        FCTheory(width=8, temperature=0.1).fit_path(X, X[:, 0], [8, 2.5])
    from lkr.experiments.fc_vs_cnn import run

    with pytest.raises(TypeError, match="widths"):
        run(P=12, P_test=4, widths=["64"], input_shape=(16,))


def test_nets_vs_linearized_refuses_fractional_widths_and_multipliers():
    from lkr.experiments.nets_vs_linearized import _base_widths, prepare

    for bad in ("32", 2.5):
        with pytest.raises(TypeError, match=r"base_widths\['fc'\] must be a positive integer"):
            _base_widths({"fc": bad}, ("fc",))
        with pytest.raises(TypeError, match="multipliers must be a positive integer"):
            prepare("digits", multipliers=[1, bad], architectures=["fc"], P=10, P_test=10)
    with pytest.raises(ValueError, match="unknown architecture 'mlp'"):
        _base_widths({"mlp": 8}, ("fc",))
    assert _base_widths({"fc": 32.0}, ("fc",)) == {"fc": 32}
