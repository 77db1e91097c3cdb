"""Accuracy where the targets are classes (lkr.theory._classes, Prediction.error): which
codings count, the accuracy and confusion counts against hand-computed values, every theory
(the GPs too) on one-hot targets, nothing for regression targets, and the same entries in
the sweep's rows and in ``lkr fc-vs-cnn``'s results."""
import json

import numpy as np
import pytest

import lkr
from lkr.data import one_hot
from lkr.theory import (
    CNNTheory,
    DeepCNNTheory,
    DeepFCTheory,
    FCTheory,
    GPTheory,
    LCNTheory,
    Prediction,
    sweep,
)
from lkr.theory._classes import class_coding, class_scores


def test_codings_are_detected_explicitly():
    g = np.array([0, 2, 1, 2])
    Y = one_hot(g, 3)
    assert class_coding(Y) == "one-hot"
    assert class_coding(2 * Y - 1) == "+-1 one-hot"
    assert class_coding(Y - 1 / 3) == "centred one-hot"
    assert class_coding(np.array([1.0, -1.0, 1.0])) == "+-1"
    assert class_coding(np.array([[1.0], [-1.0]])) == "+-1"
    # not classes: regression values, soft labels, two 1s in a row, a row without a 1,
    # per-column centring, 0/1 with one output, nearly-one values
    for Z in (np.random.default_rng(0).standard_normal((4, 3)), 0.9 * Y, Y + Y[::-1],
              np.zeros((4, 3)), Y - Y.mean(0), np.array([0.0, 1.0, 1.0]),
              np.where(Y == 1, 0.999, 0.0), np.array([1.0, -1.0, 0.5]), np.zeros(0)):
        assert class_coding(Z) is None


def test_accuracy_and_confusion_by_hand():
    Y = one_hot(np.array([0, 1, 2, 2, 1]), 3)
    mean = np.array([[0.9, 0.1, 0.0],     # 0 -> 0
                     [0.2, 0.1, 0.3],     # 1 -> 2
                     [0.0, 0.1, 0.8],     # 2 -> 2
                     [0.5, 0.1, 0.4],     # 2 -> 0
                     [0.1, 0.7, 0.1]])    # 1 -> 1
    s = class_scores(mean, Y)
    assert s["accuracy"] == pytest.approx(3 / 5)
    assert s["confusion"].tolist() == [[1, 0, 0], [0, 1, 1], [1, 0, 1]]
    b = class_scores(np.array([0.3, -0.2, -0.1, 0.0]), np.array([1.0, 1.0, -1.0, -1.0]))
    # classes ordered (+1, -1); a mean of exactly 0 predicts -1
    assert b["confusion"].tolist() == [[1, 1], [0, 2]] and b["accuracy"] == 0.75
    err = Prediction(mean=mean, variance=np.zeros_like(mean)).error(Y)
    assert err["accuracy"] == pytest.approx(0.6) and err["class_coding"] == "one-hot"
    assert "accuracy" not in Prediction(mean=mean, variance=np.zeros_like(mean)).error(
        mean + 0.01)


def _digits(P=40, Pt=30, classes="0:1:2"):
    pytest.importorskip("sklearn")
    from lkr.data import load_digits

    return load_digits(P, Pt, seed=1, classes=classes, downsample=2)  # 4 x 4 images


def _theories():
    g = lkr.PatchGeometry((4, 4), (2, 2), (2, 2), boundary="valid")        # Np = 4
    dg = lkr.DeepGeometry((4, 4), filter_sizes=[2, 2], strides=[1, 2], padding="same")
    out = {"fc": FCTheory(30, 0.1), "deepfc": DeepFCTheory(2, 30, 0.1),
           "cnn": CNNTheory(g, 30, 0.1), "lcn": LCNTheory(g, 30, 0.1),
           "cnn-relu": CNNTheory(g, 30, 0.1, activation="relu"),
           "deepcnn": DeepCNNTheory(dg, 30, 0.1), "gp-fc": GPTheory("fc", temperature=0.1),
           "gp-cnn": GPTheory("cnn", g, 0.1), "gp-deep": GPTheory("cnn", dg, 0.1)}
    return out


@pytest.mark.parametrize("name", list(_theories()))
def test_every_theory_reports_accuracy_on_one_hot_targets(name):
    X, Y, Xt, Yt, _ = _digits()
    th = _theories()[name]
    th.fit(X.reshape(len(X), -1) if name in ("fc", "deepfc", "gp-fc") else X, Y)
    Xe = Xt.reshape(len(Xt), -1) if name in ("fc", "deepfc", "gp-fc") else Xt
    ev = th.evaluate(Xe, Yt)
    mean = np.asarray(th.predict(Xe).mean)
    acc = np.mean(np.argmax(mean, 1) == np.argmax(Yt, 1))
    assert ev["accuracy"] == pytest.approx(acc) and ev["accuracy"] > 0.5  # 3 classes
    assert ev["confusion"].shape == (3, 3) and ev["confusion"].sum() == len(Yt)
    assert np.array_equal(ev["confusion"].sum(1), Yt.sum(0).astype(int))
    # regression targets: no accuracy
    assert "accuracy" not in th.evaluate(Xe, Yt + 0.5 * np.random.default_rng(0).random(Yt.shape))


def test_binary_plus_minus_one_labels_have_an_accuracy():
    X, y, Xt, yt, _ = _digits(classes="0,1")
    gp = GPTheory("fc", temperature=0.1)
    gp.fit(X.reshape(40, -1), y)
    out = gp.evaluate(Xt.reshape(30, -1), yt)
    assert out["class_coding"] == "+-1" and out["confusion"].shape == (2, 2)
    sign = np.where(gp.predict(Xt.reshape(30, -1)).mean > 0, 1.0, -1.0)
    assert out["accuracy"] == pytest.approx(np.mean(sign == yt))


def test_sweep_rows_carry_accuracy_and_confusion(tmp_path):
    X, Y, Xt, Yt, _ = _digits()
    X, Xt = X.reshape(len(X), -1), Xt.reshape(len(Xt), -1)
    rows = sweep(FCTheory, {"width": [20, 40], "temperature": [0.1]}, X, Y, Xt, Yt,
                 out=tmp_path / "s.jsonl")
    for r in rows:
        assert 0 <= r["accuracy"] <= 1 and len(r["confusion"]) == 3
        assert sum(map(sum, r["confusion"])) == len(Yt) and r["class_coding"] == "one-hot"
    back = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert back[0]["confusion"] == rows[0]["confusion"]


def test_fc_vs_cnn_ten_class_rows_and_table(tmp_path, capsys):
    """``--task digits --classes`` of more than two groups: one-hot targets, every
    architecture (the deep CNN too), accuracy in the table and in results.json."""
    pytest.importorskip("sklearn")
    from lkr.cli import main

    code = main(["fc-vs-cnn", "--task", "digits", "--classes", "0:1:2", "-P", "40",
                 "--P-test", "30", "--downsample", "2", "--filter", "2", "--widths", "12,40",
                 "--depth", "2", "--stride", "1,2", "--padding", "same", "--quiet",
                 "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "acc: test accuracy" in out and "targets one-hot" in out
    res = json.loads((tmp_path / "results.json").read_text())
    fin = res["finite_width"]
    # widths below the conditions are skipped: CNN Nc >= Np D = 12, deep CNN Nc >= d D = 12
    assert [r["width"] for r in fin["fc"]] == [12, 40]
    assert [r["width"] for r in fin["deepcnn"]] == [12, 40]
    for arch in ("fc", "cnn", "lcn", "deepcnn"):
        for r in fin[arch]:
            assert 0 <= r["accuracy"] <= 1 and len(r["confusion"]) == 3, arch
        assert "accuracy" in res["infinite_width"][arch]
