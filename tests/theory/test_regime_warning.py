"""The validity warning of the effective actions (docs/validity.md): a TheoryRegimeWarning
once per fit when the filter dimension M of the renormalised layer (FC: N0) is below 16,
for non-linear activations; Solution.filter_dim carries M into summaries, sweeps and the
fc-vs-cnn results.

(The suite ignores this warning by name in pyproject.toml, since most unit tests fit at small
M on purpose; here every check uses pytest.warns or turns every warning into an error.)"""
import json
import warnings

import numpy as np
import pytest

import lkr
from lkr._warnings import LkrWarning
from lkr.theory import (
    CNNTheory,
    DeepCNNTheory,
    FCTheory,
    GPTheory,
    LCNTheory,
    TheoryRegimeWarning,
    sweep,
)
from lkr.theory._regime import MIN_FILTER_DIM, message


def _data(N0, P=16, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((P, N0))
    return X, np.tanh(X[:, :2].sum(1)) + 0.1 * rng.standard_normal(P)


def _regime_warnings(fn):
    """Run fn with every warning recorded; return (result, the TheoryRegimeWarnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    return out, [w for w in caught if issubclass(w.category, TheoryRegimeWarning)]


def _no_warning(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn()


def test_class_is_an_lkr_warning():
    assert issubclass(TheoryRegimeWarning, LkrWarning)
    assert lkr.theory.TheoryRegimeWarning is TheoryRegimeWarning
    assert MIN_FILTER_DIM == 16


@pytest.mark.parametrize("cls", [CNNTheory, LCNTheory])
@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_local_theories_warn_below_16_once_per_fit(cls, activation):
    g = lkr.PatchGeometry((16,), 4)  # M = 4
    X, y = _data(16)
    th = cls(geometry=g, width=8, temperature=0.1, activation=activation)
    with pytest.warns(TheoryRegimeWarning) as rec:
        sol = th.fit(X, y)
    ours = [w for w in rec if issubclass(w.category, TheoryRegimeWarning)]
    assert len(ours) == 1
    msg = str(ours[0].message)
    assert "\n" not in msg
    # M, the threshold, the measured consequence and where to read more
    assert "M = 4" in msg and "below 16" in msg and "%" in msg and "docs/validity.md" in msg
    assert cls.__name__ in msg and activation in msg
    assert sol.filter_dim == 4
    # the warning points at the caller's fit, not into lkr
    assert ours[0].filename == __file__


def test_no_warning_at_16_and_above():
    X, y = _data(32)
    for fs in (16, 32):
        th = CNNTheory(geometry=lkr.PatchGeometry((32,), fs), width=8, temperature=0.1)
        sol = _no_warning(lambda: th.fit(X, y))  # noqa: B023 (called at once)
        assert sol.filter_dim == fs
    # 2D with channels: M = C k_h k_w = 3 * 3 * 3 = 27
    rng = np.random.default_rng(1)
    X2 = rng.standard_normal((12, 6, 6, 3))
    g2 = lkr.PatchGeometry((6, 6), 3, channels=3)
    sol = _no_warning(lambda: LCNTheory(geometry=g2, width=8, temperature=0.1)
                      .fit(X2, X2[:, 0, 0, 0]))
    assert sol.filter_dim == 27
    g3 = lkr.PatchGeometry((6, 6), 2, channels=3)  # M = 12
    with pytest.warns(TheoryRegimeWarning, match="M = 12 is below 16"):
        CNNTheory(geometry=g3, width=8, temperature=0.1).fit(X2, X2[:, 0, 0, 0])


def test_linear_networks_are_exempt():
    # linear preactivations are exactly Gaussian over the filter: no Gaussian-equivalence
    # error whatever M; the figure is still recorded
    g = lkr.PatchGeometry((16,), 4)
    X, y = _data(16)
    sol = _no_warning(lambda: CNNTheory(geometry=g, width=8, temperature=0.1,
                                        activation="linear").fit(X, y))
    assert sol.filter_dim == 4
    sol = _no_warning(lambda: FCTheory(width=8, temperature=0.1, activation="linear")
                      .fit(X[:, :8], y))
    assert sol.filter_dim == 8


def test_fc_warns_below_16_inputs():
    X, y = _data(8)
    with pytest.warns(TheoryRegimeWarning, match=r"FCTheory: input dimension N0 = 8 is below 16"):
        sol = FCTheory(width=8, temperature=0.1).fit(X, y)
    assert sol.filter_dim == 8
    X, y = _data(16)
    assert _no_warning(lambda: FCTheory(width=8, temperature=0.1).fit(X, y)).filter_dim == 16
    # images: N0 counts every pixel and channel
    rng = np.random.default_rng(2)
    Xi = rng.standard_normal((10, 2, 2, 3))
    with pytest.warns(TheoryRegimeWarning, match="N0 = 12"):
        FCTheory(width=8, temperature=0.1).fit(Xi, Xi[:, 0, 0, 0])


def test_gp_has_no_filter_dim_and_never_warns():
    g = lkr.PatchGeometry((16,), 4)
    X, y = _data(16)
    sol = _no_warning(lambda: GPTheory("cnn", geometry=g, temperature=0.1).fit(X, y))
    assert sol.filter_dim is None and "filter_dim" not in sol.summary()


def test_deep_cnn_uses_the_last_layers_filter_dimension():
    X, y = _data(16)
    # L = 1: M = C_in k, as the one-layer CNN
    dg1 = lkr.DeepGeometry((16,), [4], [4])
    with pytest.warns(TheoryRegimeWarning, match="DeepCNNTheory: filter dimension M = 4 "):
        assert DeepCNNTheory(geometry=dg1, width=8, temperature=0.1).fit(X, y).filter_dim == 4
    # L = 2: the last layer sees Nc channels, M = Nc k_2
    dg = lkr.DeepGeometry((16,), [4, 2], [4, 2])
    with pytest.warns(TheoryRegimeWarning, match="M = 6 is below"):
        assert DeepCNNTheory(geometry=dg, width=3, temperature=0.1).fit(X, y).filter_dim == 6
    sol = _no_warning(lambda: DeepCNNTheory(geometry=dg, width=8, temperature=0.1).fit(X, y))
    assert sol.filter_dim == 16


def test_fit_path_warns_once_per_path():
    g = lkr.PatchGeometry((16,), 4)
    X, y = _data(16)
    ths, ours = _regime_warnings(lambda: CNNTheory(geometry=g, width=8, temperature=0.1)
                                 .fit_path(X, y, [64, 16, 8]))
    assert len(ours) == 1
    assert all(th.solution.filter_dim == 4 for th in ths)


def test_filter_dim_in_summary_json_and_sweep(tmp_path):
    g = lkr.PatchGeometry((16,), 4)
    X, y = _data(16)
    with pytest.warns(TheoryRegimeWarning):
        sol = CNNTheory(geometry=g, width=8, temperature=0.1).fit(X, y)
    assert sol.summary()["filter_dim"] == 4
    assert json.loads(json.dumps(sol.to_dict()))["filter_dim"] == 4
    Xt, yt = _data(16, P=8, seed=3)
    with pytest.warns(TheoryRegimeWarning):
        rows = sweep(lambda **kw: CNNTheory(geometry=g, **kw), {"width": [8, 16],
                     "temperature": [0.1]}, X, y, Xt, yt, out=tmp_path / "s.jsonl")
    assert [r["filter_dim"] for r in rows] == [4, 4]
    back = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [r["filter_dim"] for r in back] == [4, 4]
    with pytest.raises(ValueError, match="filter_dim"):
        sweep(lambda **kw: None, {"filter_dim": [1]}, X, y, Xt, yt)


def test_message_quotes_the_nearest_measurement():
    m = message("CNNTheory", 9, "relu")
    assert "M = 9 is below 16" in m and "relative variance 2/M = 0.22" in m
    assert "one-layer CNNs (relu)" in m
    m = message("FCTheory", 8, "erf", "fc")
    assert "N0 = 8 is below 16" in m and "one-hidden-layer FC nets (erf)" in m
    assert "the wrong sign) at N0 = 4" in m
    # an activation without a measurement still names M, the threshold and the reason
    m = message("CNNTheory", 4, "tanh-like")
    assert "M = 4 is below 16" in m and "docs/validity.md" in m


def test_fc_vs_cnn_reports_the_regime_once(capsys):
    from lkr.experiments import fc_vs_cnn
    from lkr.experiments.report import format_table

    res = _no_warning(lambda: fc_vs_cnn.run(P=24, P_test=20, widths=[12],
                                            input_shape=(16,), filter_size=(4,)))
    v = res["validity"]
    assert v["threshold"] == 16 and v["filter_dim"] == {"fc": 16, "cnn": 4, "lcn": 4}
    assert v["outside"] == ["cnn", "lcn"]
    assert res["finite_width"]["cnn"][0]["filter_dim"] == 4
    table = format_table(res)
    assert "WARNING: outside the theories' regime (CNN M = 4, LCN M = 4 < 16)" in table
    res = _no_warning(lambda: fc_vs_cnn.run(P=24, P_test=20, widths=[12], input_shape=(32,),
                                            filter_size=(16,), architectures=("cnn",)))
    assert res["validity"]["outside"] == []
    assert "outside the theories' regime" not in format_table(res)
