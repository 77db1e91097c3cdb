"""The digits task (scikit-learn's UCI 8x8 digits): shapes, labels, groups, the missing extra."""
import importlib.util
import sys

import numpy as np
import pytest

from lkr import data

# every test but the one about the missing extra needs scikit-learn
needs_sklearn = pytest.mark.skipif(
    importlib.util.find_spec("sklearn") is None, reason="scikit-learn missing")


def _raw():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.reshape(len(d.target), -1), d.target


def _originals(X, info):
    """The raw images and labels behind standardised inputs (matched pixel for pixel)."""
    st = info["standardisation"]
    raw = np.rint(X.reshape(len(X), -1) * st["std"] + st["mean"])
    images, labels = _raw()
    index = {im.tobytes(): i for i, im in enumerate(images.astype(np.float64))}
    rows = [index[r.astype(np.float64).tobytes()] for r in raw]
    return np.array(rows), labels[rows]


@needs_sklearn
def test_shapes_labels_and_standardisation():
    t = data.load_digits(120, 60, seed=3)
    assert t.X.shape == (120, 8, 8) and t.X_test.shape == (60, 8, 8)
    assert set(np.unique(t.y)) == {-1.0, 1.0} and set(np.unique(t.y_test)) <= {-1.0, 1.0}
    assert abs(t.X.mean()) < 1e-12 and t.X.std() == pytest.approx(1.0, rel=1e-12)
    assert t.info["input_shape"] == [8, 8] and t.info["channels"] == 1
    assert t.info["classes"] == [[0], [1]]
    rows, labels = _originals(t.X, t.info)
    np.testing.assert_array_equal(np.where(labels == 0, 1.0, -1.0), t.y)
    rows_t, labels_t = _originals(t.X_test, t.info)
    assert not set(rows) & set(rows_t)          # disjoint split
    np.testing.assert_array_equal(np.where(labels_t == 0, 1.0, -1.0), t.y_test)


@needs_sklearn
def test_groups_and_all_ten():
    X, g, Xt, gt, info = data.digits_groups(200, 100, seed=0, classes="0,2,4:1,3,5")
    _, labels = _originals(X, info)
    np.testing.assert_array_equal(g, np.where(np.isin(labels, (0, 2, 4)), 0, 1))
    assert info["groups"] == 2
    X, g, Xt, gt, info = data.digits_groups(300, 100, seed=1, classes="all")
    _, labels = _originals(X, info)
    np.testing.assert_array_equal(g, labels)    # one group per digit, in order
    assert info["groups"] == 10 and len(np.unique(g)) == 10
    X, g, *_ = data.digits_groups(50, 10, seed=1, classes="3:5:7")
    assert set(np.unique(g)) <= {0, 1, 2}


@needs_sklearn
def test_deterministic_and_downsample():
    a = data.digits_groups(40, 20, seed=5)
    b = data.digits_groups(40, 20, seed=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[3], b[3])
    c = data.digits_groups(40, 20, seed=6)
    assert not np.array_equal(a[0], c[0])
    d = data.load_digits(40, 20, seed=5, downsample=2)
    assert d.X.shape == (40, 4, 4)


@needs_sklearn
def test_load_task_and_errors():
    t = data.load_task("digits", 30, 10, seed=0, classes="0,1")
    assert t.X.shape == (30, 8, 8)
    with pytest.raises(ValueError, match=r"have 360 images; the largest valid sizes: "
                       r"P = 270, P_test = 90 \(your ratio\) or P = 300, P_test = 60"):
        data.load_digits(300, 100, classes="0,1")   # 360 images of 0 and 1
    three = data.load_digits(10, 10, classes="0:1:2")    # more than two groups: one-hot
    assert three.y.shape == (10, 3) and three.info["targets"] == "one-hot"
    assert np.array_equal(three.y.sum(1), np.ones(10)) and set(three.y.ravel()) == {0.0, 1.0}
    with pytest.raises(ValueError, match="input_shape"):
        data.load_task("digits", 10, 10, input_shape=(7, 7))
    for bad in ("0", "0,0", "0,11", "a,b", "1:"):
        with pytest.raises(ValueError):
            data.parse_class_groups(bad)
    assert data.parse_class_groups("0,1") == ((0,), (1,))
    assert data.parse_class_groups("all")[9] == (9,)


def test_message_without_scikit_learn(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)   # import fails
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match=r"pip install scikit-learn \(or pip install \"\.\[data\]\""):
        data.load_digits(10, 10)
    from lkr import cli

    for argv in (["fc-vs-cnn", "--task", "digits", "-P", "10"],
                 ["nets-vs-linearized", "-P", "10", "--P-test", "10"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "pip install scikit-learn" in err and '".[data]"' in err


@needs_sklearn
def test_fc_vs_cnn_runs_on_digits():
    from lkr.experiments import fc_vs_cnn

    r = fc_vs_cnn.run("digits", P=40, P_test=40, widths=[8], filter_size=2, seed=0,
                      task_options=dict(classes="0,1", downsample=2),
                      architectures=("fc", "cnn"))
    assert r["task"]["task"] == "digits"
    assert r["settings"]["input_size"] == 16
    assert 0 <= r["finite_width"]["cnn"][0]["error"] < 2


@needs_sklearn
def test_default_sizes_fit_the_classes():
    # issue 22: the defaults used to ask for 400 + 1000 images of 0 and 1 (there are 360)
    assert data.digits_sizes("0,1") == (180, 180)
    assert data.digits_sizes("all") == (400, 1000)
    assert data.digits_sizes("0,2,4,6,8:1,3,5,7,9") == (400, 1000)
    assert data.digits_sizes("0,1", P=300) == (300, 60)
    assert data.digits_sizes("0,1", P_test=100) == (260, 100)
    t = data.load_digits(classes="0,1")
    assert t.X.shape == (180, 8, 8) and t.X_test.shape == (180, 8, 8)
    assert data.load_task("digits", None, None, classes="all").y.shape == (400, 10)
    with pytest.raises(ValueError, match=r"P = 400 leaves no test image.*P = 180, P_test = 180"):
        data.digits_sizes("0,1", P=400)
    with pytest.raises(ValueError, match="P_test = 360 leaves no training image"):
        data.digits_sizes("0,1", P_test=360)


@needs_sklearn
def test_lkr_fc_vs_cnn_digits_with_defaults(capsys):
    """``lkr fc-vs-cnn --task digits`` with no other option runs (it failed: 1400 images
    asked of 360), on sizes that fit and a boundary that does not wrap the images."""
    from lkr.cli import main

    assert main(["fc-vs-cnn", "--task", "digits", "--quiet", "--widths", "60,360"]) == 0
    out = capsys.readouterr().out
    assert "on digits: P = 180, P_test = 180" in out
    assert "valid: Np = 4 patches" in out          # 8 x 8, filter 4, stride 4, no wrap
    assert "acc" in out                            # +-1 labels: an accuracy column


def test_help_states_the_digits_defaults(capsys):
    from lkr.cli import main

    with pytest.raises(SystemExit):
        main(["fc-vs-cnn", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "digits: what the classes hold" in text
    assert "valid for image tasks, so that no window wraps around an image" in text
    assert "'all' (ten classes)" in text
    # what is exact and what is experimental (issue 20)
    assert "What is exact: the GPs (every activation); the odd (erf, linear) FC action" in text
    assert "Experimental: the CNN, LCN and deep-CNN actions" in text
    assert "large filter dimension M" in text
