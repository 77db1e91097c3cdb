"""lkr nets-vs-linearized as published: the task ladder, the stopping rule, seeds and standard
errors, the deep CNN and its linearisation, the shared-hidden objective, the report."""
import json
import math
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lkr
from lkr import nets, train
from lkr.data import DataError
from lkr.deep_geometry import DeepGeometry
from lkr.experiments import _ladder, _multihead
from lkr.experiments import multioutput as mo
from lkr.experiments import nets_vs_linearized as nvl
from lkr.experiments import report_nets_vs_linearized as rep


def _geo():
    return lkr.PatchGeometry((6, 6), (3, 3), (1, 1), boundary="valid")


def _deep_geo():
    return DeepGeometry((6, 6), [(3, 3), (2, 2)], [(1, 1), (2, 2)], "valid")


def _net(kind, width=3, act="erf", seed=1):
    if kind == "fc":
        return nets.FCNet(36, width, activation=act, seed=seed)
    if kind == "deepcnn":
        return nets.DeepCNNNet(_deep_geo(), width, activation=act, seed=seed)
    cls = nets.CNNNet if kind == "cnn" else nets.LCNNet
    return cls(_geo(), width, activation=act, seed=seed)   # width positional: any keyword


KINDS = ["fc", "cnn", "lcn", "deepcnn"]


# -- the ladder ----------------------------------------------------------------------------------
def test_ladder_parsing():
    specs = _ladder.parse_tasks("ladder")
    assert [s.label for s in specs] == ["digits 0 vs 1", "digits 3 vs 8", "digits even vs odd",
                                        "digits 10 classes"]
    assert specs[1].classes == ((3,), (8,)) and specs[3].classes == tuple((c,) for c in range(10))
    # several items, ';' inside one string, default classes 'all', directories with ':'
    specs = _ladder.parse_tasks(["digits@0,1;digits@2:3:4", "mnist:/data/m@all",
                                 "fashion-mnist:/d/f", "cifar10:/c@3:5"])
    assert [s.name for s in specs] == ["digits", "digits", "mnist:/data/m", "fashion-mnist:/d/f",
                                       "cifar10:/c"]
    assert specs[1].classes == ((2,), (3,), (4,)) and specs[1].label == "digits 2 vs 3 vs 4"
    assert specs[3].classes == tuple((c,) for c in range(10))
    assert specs[4].label == "cifar10 3 vs 5"
    assert _ladder.parse_tasks(specs[1].spec)[0] == specs[1]       # spec round-trips


@pytest.mark.parametrize("text, what", [("gaussian-linear", "classification"),
                                        ("mnist", "directory"), ("digits:x@0:1", "no ':'"),
                                        ("digits@0:x", "classes"), ("digits@3", "two"),
                                        ("digits@0:1;digits@0,1", "twice"), ("", "at least")])
def test_ladder_rejects_bad_tasks(text, what):
    with pytest.raises(ValueError, match=what):
        _ladder.parse_tasks(text)


def test_ladder_sizes_say_what_fits():
    pytest.importorskip("sklearn")
    spec = _ladder.parse_tasks("digits@3:8")[0]                    # 357 images of 3 and 8
    X, g, Xt, gt, info, D = _ladder.load(spec, 100, None, 0)
    assert D == 2 and X.shape == (100, 8, 8) and Xt.shape == (257, 8, 8)   # the rest
    assert set(g) == {0, 1}
    X, g, Xt, gt, info, D = _ladder.load(_ladder.parse_tasks("digits@all")[0], 100, None, 0)
    assert Xt.shape[0] == _ladder.P_TEST_MAX and D == 10
    with pytest.raises(ValueError, match="--P-test 257 or less"):
        _ladder.load(spec, 100, 300, 0)
    with pytest.raises(ValueError, match="-P 356 or less"):
        _ladder.load(spec, 400, None, 0)


# -- local image files: IDX (MNIST, Fashion-MNIST) and the CIFAR-10 binary version ------------
def _write_idx(path, arr):
    code = {np.uint8: 0x08}[arr.dtype.type]
    with open(path, "wb") as fh:
        fh.write(bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape))
        fh.write(arr.tobytes())


def _fake_idx(d, n=60, nt=40, size=6):
    rng = np.random.default_rng(0)
    for prefix, k in (("train", n), ("t10k", nt)):
        _write_idx(d / f"{prefix}-images-idx3-ubyte",
                   rng.integers(0, 256, (k, size, size)).astype(np.uint8))
        _write_idx(d / f"{prefix}-labels-idx1-ubyte", (np.arange(k) % 10).astype(np.uint8))


def _fake_cifar_bin(d, n=50, nt=30):
    rng = np.random.default_rng(1)
    for name, k in [(f"data_batch_{i}.bin", n) for i in range(1, 6)] + [("test_batch.bin", nt)]:
        rec = np.zeros((k, 3073), np.uint8)
        rec[:, 0] = np.arange(k) % 10
        rec[:, 1:] = rng.integers(0, 256, (k, 3072))
        rec.tofile(d / name)
    return rec


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_groups(tmp_path, name):
    from lkr.data_groups import available, load_groups

    _fake_idx(tmp_path)
    X, g, Xt, gt, info = load_groups(f"{name}:{tmp_path}", 20, 10, 0, classes="0,2:1,3:4")
    assert X.shape == (20, 6, 6) and Xt.shape == (10, 6, 6) and info["groups"] == 3
    assert set(g) <= {0, 1, 2} and info["task"] == name
    assert abs(X.mean()) < 1e-12 and abs(X.std() - 1) < 1e-12      # standardised on train
    assert available(f"{name}:{tmp_path}", "0,2:1,3:4") == (30, 20)
    with pytest.raises(ValueError, match="only 30"):
        load_groups(f"{name}:{tmp_path}", 31, 10, 0, classes="0,2:1,3:4")


def test_cifar10_binary(tmp_path):
    from lkr.data_groups import load_groups

    rec = _fake_cifar_bin(tmp_path)
    X, g, Xt, gt, info = load_groups(f"cifar10:{tmp_path}", 30, 12, 0, classes="all",
                                     grayscale=False)
    assert X.shape == (30, 32, 32, 3) and info["groups"] == 10 and info["channels"] == 3
    # the loader's channel order: R, G, B planes of 32 x 32, channels last
    from lkr._datafiles import read_cifar10_binary

    _, _, test_x, test_y = read_cifar10_binary(str(tmp_path))
    assert np.array_equal(test_y, rec[:, 0])
    assert np.array_equal(test_x[3, 4, 5], rec[3, 1:].reshape(3, 32, 32)[:, 4, 5])
    # and the two-class loader of fc-vs-cnn reads it too
    t = lkr.data.load_cifar10(str(tmp_path), 10, 6, 0, classes=(3, 5))
    assert t.X.shape == (10, 32, 32)
    (tmp_path / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="record size"):
        load_groups(f"cifar10:{tmp_path}", 30, 12, 0)


def test_command_runs_a_ladder_from_local_files(tmp_path, capsys):
    from lkr import cli

    (tmp_path / "m").mkdir()
    _fake_idx(tmp_path / "m")
    code = cli.main(["nets-vs-linearized", "--tasks", f"fashion-mnist:{tmp_path / 'm'}@0:1",
                     f"mnist:{tmp_path / 'm'}@all", "-P", "12", "--P-test", "4",
                     "--arch", "fc,cnn", "--multipliers", "1", "--base-widths", "fc=4,cnn=2",
                     "--seeds", "2", "--max-steps", "20", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "fashion-mnist 0 vs 1" in out and "mnist 10 classes" in out


# -- the stopping rule ---------------------------------------------------------------------------
def test_stopper_rules():
    rule = mo.StopRule(tol=0.1, rtol=0.01, window=20, max_steps=100, every=10)
    s = mo.Stopper(rule)
    assert [s.update(t, L) for t, L in ((0, 1.0), (10, 0.5), (20, 0.11))] == [None, None, None]
    assert s.update(30, 0.1) == "tol"                              # 0.1 <= 0.1 x 1.0
    s = mo.Stopper(rule)                                          # a plateau
    assert [s.update(t, L) for t, L in ((0, 1.0), (10, 0.8), (20, 0.7))] == [None] * 3
    assert s.update(30, 0.795) == "plateau"                        # |0.8 - 0.795| < 0.008
    s = mo.Stopper(rule)
    assert all(s.update(t, 1.0 - t / 200) is None for t in range(0, 100, 10))
    assert s.update(100, 0.5) == "cap"
    s = mo.Stopper(mo.StopRule.fixed(30))
    assert [s.update(t, 0.0) for t in (0, 10, 20, 30)] == [None, None, None, "fixed"]
    for bad in (dict(tol=-1), dict(rtol=float("nan")), dict(max_steps=-1), dict(every=0),
                dict(window=15)):
        with pytest.raises(ValueError):
            mo.StopRule(**bad)


def _task(P=12, D=2, seed=0, hard=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((P, 36))
    g = rng.integers(0, D, P) if hard else (X[:, 0] > 0).astype(int)
    return X, np.eye(D)[g]


def test_stopping_rule_stops_early_on_an_easy_problem_and_hits_the_cap_otherwise():
    # a wide net fits 12 points: the loss falls below tol x start long before the cap
    X, Y = _task()
    m = mo.MultiOutput(nets.FCNet(36, 200, activation="relu", seed=0), 2, seed=0)
    K = mo.ntk(m, X)
    e = mo.eig(K)
    lr = 1.0 / e[0][-1]
    rule = mo.StopRule(tol=1e-2, rtol=1e-4, window=100, max_steps=5000)
    net = mo.train_net(m, X, Y, lr, rule)
    lin = mo.linearized_gd(e, m.forward(X), Y, lr, rule)
    L0 = float(np.mean((Y - m.forward(X)) ** 2))
    for run in (net, lin):
        assert run.stopped == "tol" and run.steps < 1000 and run.steps % 10 == 0
        assert run.train_mse <= 1e-2 * L0
    assert net.train_mse == pytest.approx(np.mean((Y - m.forward(X, net.result)) ** 2), rel=1e-12)
    # a narrow net on random labels with a small cap: the cap, flagged as such
    X, Y = _task(40, 3, hard=True)
    m = mo.MultiOutput(nets.CNNNet(_geo(), 1, activation="relu", seed=0), 3)
    rule = mo.StopRule(tol=1e-3, rtol=0.0, window=100, max_steps=60)
    run = mo.train_net(m, X, Y, 0.5 / mo.eig(mo.ntk(m, X))[0][-1], rule)
    assert (run.stopped, run.steps) == ("cap", 60)


def test_linearised_gd_in_the_eigenbasis_is_parameter_space_gd():
    """linearized_gd (eigenbasis) = train_linearized (function space) = GD / heavy ball on
    J u, at every step count, with the same stop decisions."""
    X, Y = _task(10, 3, hard=True)
    m = mo.MultiOutput(_net("lcn", 2), 3, seed=2)
    J, K, F0 = mo.jacobian(m, X), mo.ntk(m, X), m.forward(X)
    e = mo.eig(K)
    lr = 0.8 / e[0][-1]
    r0 = (Y - F0).reshape(-1)
    for beta in (0.0, 0.7):
        u, b = np.zeros(J.shape[1]), np.zeros(J.shape[1])
        for t in range(1, 41):
            b = beta * b - J.T @ (r0 - J @ u)
            u -= lr * b
            if t in (1, 7, 40):
                a = mo.linearized_gd(e, F0, Y, lr, mo.StopRule.fixed(t), momentum=beta).result
                np.testing.assert_allclose(K @ a, J @ u, rtol=1e-10, atol=1e-12)
                a2 = mo.train_linearized(K, F0, Y, lr, t, momentum=beta)
                np.testing.assert_allclose(K @ a2, J @ u, rtol=1e-10, atol=1e-12)
        rule = mo.StopRule(tol=0.5, rtol=1e-3, window=20, max_steps=400)
        a, b = (mo.linearized_gd(e, F0, Y, lr, rule, momentum=beta),
                mo.train_linearized(K, F0, Y, lr, rule, momentum=beta))
        assert (a.steps, a.stopped) == (b.steps, b.stopped)
        assert a.train_mse == pytest.approx(b.train_mse, rel=1e-9)
    with pytest.raises(FloatingPointError, match="diverges"):
        mo.linearized_gd(e, F0, Y, 2.01 / e[0][-1], 10)


# -- seeds and standard errors -------------------------------------------------------------------
def _fake_point(task, arch, width, seed, acc_net, acc_lin, mult=1):
    m = {"test_accuracy": 0.0, "test_mse": 0.1, "train_accuracy": 1.0, "train_mse": 0.0}
    return {"task": task, "arch": arch, "width": width, "multiplier": mult, "seed": seed,
            "num_params": 10, "rows": 20, "effective_rank": 5.0 + seed, "stable_rank": 2.0,
            "lambda_max": 1.0, "lr": 1.5, "relative_weight_change": 0.1,
            "net": dict(m, test_accuracy=acc_net, steps=100, stopped="tol"),
            "lin": dict(m, test_accuracy=acc_lin, steps=200, stopped="cap"),
            "kernel": dict(m, test_accuracy=0.9 if mult == 2 else 0.5),
            "gap": {"test_accuracy": acc_net - acc_lin, "test_mse": 0.0}}


def test_mean_and_standard_error_by_hand():
    net, lin = [0.90, 0.94, 0.95], [0.91, 0.90, 0.92]
    pts = [_fake_point("t", "fc", 4, s, a, b) for s, (a, b) in enumerate(zip(net, lin))]
    res = {"settings": {"seeds": [0, 1, 2]}, "tasks": [{"label": "t"}], "points": pts}
    row = rep.aggregate(res)["rows"][0]
    gaps = [-0.01, 0.04, 0.03]                                    # paired, per seed
    mean = sum(gaps) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in gaps) / 2)
    assert row["gap"]["test_accuracy"]["mean"] == pytest.approx(mean, abs=1e-15)
    assert row["gap"]["test_accuracy"]["se"] == pytest.approx(sd / math.sqrt(3), rel=1e-12)
    assert row["effective_rank"] == {"mean": 6.0, "se": pytest.approx(1 / math.sqrt(3)), "n": 3}
    assert row["net"]["capped"] == 0 and row["lin"]["capped"] == 3
    assert row["lin"]["stopped"] == {"cap": 3}
    assert rep.mean_se([0.5])["se"] is None
    # the summary: each seed averaged over rows first, then mean and se over seeds
    pts += [_fake_point("t", "cnn", 2, s, 0.8, 0.8 - 0.01 * s, mult=2) for s in range(3)]
    summ = rep.aggregate(dict(res, points=pts))["summary"][0]
    per_seed = [(gaps[s] + 0.01 * s) / 2 for s in range(3)]
    assert summ["gap_accuracy"]["mean"] == pytest.approx(np.mean(per_seed), abs=1e-15)
    assert summ["gap_accuracy"]["se"] == pytest.approx(np.std(per_seed, ddof=1) / math.sqrt(3))
    assert summ["gap_accuracy_narrowest"]["mean"] == pytest.approx(mean)
    assert summ["gap_accuracy_widest"]["mean"] == pytest.approx(0.01)
    assert summ["difficulty"]["mean"] == pytest.approx(0.1) and summ["lin_capped"] == 6
    assert summ["difficulty"]["n"] == 3                           # the widest rows only
    # a row with fewer seeds than asked for (Ctrl-C) is marked
    short = rep.aggregate(dict(res, points=pts[:2]))["rows"][0]
    assert short["interrupted"] is True and short["gap"]["test_accuracy"]["n"] == 2


# -- the deep CNN and its linearisation ----------------------------------------------------------
def test_deep_cnn_jacobian_and_linearisation_against_finite_differences():
    X = np.random.default_rng(3).standard_normal((5, 36))
    base = _net("deepcnn", 3, act="erf")
    m = mo.MultiOutput(base, 2, seed=4)
    J = mo.jacobian(m, X)
    names = m.hidden + [m.readout]
    w0 = np.concatenate([m.params[k].reshape(-1) for k in names])

    def unflat(w):
        out, s = {}, 0
        for k in names:
            out[k] = w[s:s + m.params[k].size].reshape(m.params[k].shape)
            s += m.params[k].size
        return out

    eps = 1e-6
    fd = np.stack([((m.forward(X, unflat(w0 + eps * e)) - m.forward(X, unflat(w0 - eps * e)))
                    / (2 * eps)).reshape(-1) for e in np.eye(w0.size)], axis=1)
    np.testing.assert_allclose(J, fd, atol=1e-8)
    np.testing.assert_allclose(mo.ntk(m, X), J @ J.T, rtol=1e-12, atol=1e-13)
    # lkr.nets.linearize(DeepCNNNet): f0 + J u, its vjp J^T r, and GD on it in function space
    lin = nets.linearize(base)
    J1 = lkr.ntk.jacobian(base, X)
    u = np.random.default_rng(5).standard_normal(base.num_params) * 0.1
    np.testing.assert_allclose(lin.forward(X, {"u": u}), base.forward(X) + J1 @ u, rtol=1e-12)
    r = np.random.default_rng(6).standard_normal(5)
    np.testing.assert_allclose(lin.vjp(X, r)["u"], J1.T @ r, rtol=1e-12, atol=1e-14)
    y = np.random.default_rng(7).standard_normal(5)
    one = mo.MultiOutput(base, 1)
    K1 = mo.ntk(one, X)
    lr = 0.5 / np.linalg.eigvalsh(K1)[-1]
    a = mo.linearized_gd(mo.eig(K1), one.forward(X), y[:, None], lr, mo.StopRule.fixed(30))
    ref = train.gradient_descent(lin, X, y, lr=lr, steps=30, X_test=X, fused=False)
    np.testing.assert_allclose(one.forward(X)[:, 0] + K1 @ a.result, ref.prediction, rtol=1e-9)


# -- the shared-hidden objective against the D-chain path -----------------------------------------
@given(kind=st.sampled_from(KINDS), D=st.integers(1, 4), P=st.integers(1, 7),
       width=st.integers(1, 4), act=st.sampled_from(["relu", "erf", "linear"]),
       seed=st.integers(0, 2 ** 16))
def test_shared_hidden_objective_equals_the_chain_path(kind, D, P, width, act, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((P, 36))
    Y = rng.standard_normal((P, D))
    m = mo.MultiOutput(_net(kind, width, act, seed), D, seed=seed)
    obj = _multihead.prepare(m, X)
    assert obj is not None
    F, g = obj.value_and_grad(m.params, Y)
    F2, g2 = m.value_and_grad(X, Y)
    np.testing.assert_allclose(F, F2, rtol=1e-12, atol=1e-13)
    for k in g2:
        np.testing.assert_allclose(g[k], g2[k], rtol=1e-11, atol=1e-13)
    rows = np.sort(rng.choice(P, size=max(1, P // 2), replace=False))
    F, g = obj.value_and_grad(m.params, Y[rows], rows)
    F2, g2 = m.value_and_grad(X[rows], Y[rows])
    for k in g2:
        np.testing.assert_allclose(g[k], g2[k], rtol=1e-11, atol=1e-13)
    # the closed-form NTK is the Jacobian's Gram matrix, also between two input sets
    J = mo.jacobian(m, X)
    np.testing.assert_allclose(mo.ntk(m, X), J @ J.T, rtol=1e-11, atol=1e-12)
    X2 = rng.standard_normal((3, 36))
    np.testing.assert_allclose(mo.ntk(m, X2, X), mo.jacobian(m, X2) @ J.T, rtol=1e-11,
                               atol=1e-12)
    _check_vjp_jvp(m, X, rng)


def _flat(m, p):
    return np.concatenate([p[k].reshape(-1) for k in m.hidden + [m.readout]])


def _check_vjp_jvp(m, X, rng):
    """MultiOutput.vjp = J^T R and MultiOutput.jvp = J t (the linearisation's test-set
    predictions f0 + J(X_test) J(X)^T alpha use them)."""
    J = mo.jacobian(m, X)
    R = rng.standard_normal((X.shape[0], m.D))
    np.testing.assert_allclose(_flat(m, m.vjp(X, R)), J.T @ R.reshape(-1), rtol=1e-11,
                               atol=1e-12)
    t = {k: rng.standard_normal(v.shape) for k, v in m.params.items()}
    np.testing.assert_allclose(m.jvp(X, t).reshape(-1), J @ _flat(m, t), rtol=1e-11,
                               atol=1e-12)


def test_vjp_and_jvp_of_nets_without_a_shared_hidden_path():
    rng = np.random.default_rng(0)
    m = mo.MultiOutput(nets.DeepFCNet(36, (4, 3), activation="erf", seed=0), 3, seed=1)
    _check_vjp_jvp(m, rng.standard_normal((5, 36)), rng)


def test_lcn_ntk_in_blocks(monkeypatch):
    X = np.random.default_rng(0).standard_normal((4, 36))
    m = mo.MultiOutput(_net("lcn", 2), 3, seed=1)
    whole = mo.ntk(m, X)
    monkeypatch.setattr(_multihead, "_BLOCK_BYTES", 1)            # one patch per block
    np.testing.assert_allclose(mo.ntk(m, X), whole, rtol=1e-13, atol=1e-14)


def test_unknown_nets_keep_the_chain_path():
    m = mo.MultiOutput(nets.DeepFCNet(36, (4, 3), activation="erf", seed=0), 2)
    assert _multihead.prepare(m, np.zeros((2, 36))) is None
    obj = m.prepare(np.ones((2, 36)))
    assert type(obj).__name__ == "_ChainObjective"


# -- the experiment, its JSON and its figure -----------------------------------------------------
def _tiny(**kw):
    args = dict(tasks=["digits@0:1", "digits@3:8"], P=24, P_test=20,
                architectures=("fc", "deepcnn"), multipliers=(1, 2),
                base_widths={"fc": 4, "deepcnn": 2}, max_steps=40, window=20, seeds=2)
    args.update(kw)
    return nvl.run_experiment(**args)


def test_experiment_json_schema():
    pytest.importorskip("sklearn")
    r = _tiny()
    json.dumps(r)                                                  # JSON-friendly
    assert [t["label"] for t in r["tasks"]] == ["digits 0 vs 1", "digits 3 vs 8"]
    for t in r["tasks"]:
        assert {"spec", "classes", "outputs", "P", "P_test", "geometry", "deep_geometry",
                "deep_final_patches"} <= set(t)
    assert r["settings"]["stop"]["max_steps"] == 40 and r["settings"]["seeds"] == [0, 1]
    assert len(r["points"]) == 2 * 2 * 2 * 2 and len(r["rows"]) == 8
    for p in r["points"]:
        assert {"jacobian_gram_s", "eig_s", "net_s", "linearized_s", "kernel_s"} <= set(
            p["timing"])
        for k in ("net", "lin"):
            assert p[k]["stopped"] in ("tol", "plateau", "cap") and 0 < p[k]["steps"] <= 40
    for row in r["rows"]:
        assert row["gap"]["test_accuracy"]["n"] == 2 and row["gap"]["test_accuracy"]["se"] >= 0
        assert row["arch"] in ("fc", "deepcnn")
    assert [x["task"] for x in r["summary"]] == ["digits 0 vs 1", "digits 3 vs 8"]
    for x in r["summary"]:
        assert {"difficulty", "gap_accuracy", "gap_accuracy_narrowest", "gap_accuracy_widest",
                "gap_mse_relative", "erank_over_rows", "net_capped"} <= set(x)
    deep = [p for p in r["points"] if p["arch"] == "deepcnn"][0]
    # W1 (2, 3x3), W2 (2, 2x2x2), two readouts (2, 9 final patches)
    assert r["tasks"][0]["deep_final_patches"] == 9 and deep["num_params"] == 2 * 9 + 2 * 8 + 2 * 18
    text = nvl.format_table(r)
    assert "DCNN" in text and "difficulty ladder" in text and "+-" in text


def test_figure_has_error_bars_and_no_line_hides_another(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    r = _tiny(architectures=("fc", "cnn", "lcn", "deepcnn"),
              base_widths={"fc": 4, "cnn": 1, "lcn": 1, "deepcnn": 1}, max_steps=20)
    fig = rep.figure(r)
    try:
        ax = fig.axes[0]
        xs = [tuple(np.round(np.asarray(c.lines[0].get_xdata(), float), 9))
              for c in ax.containers]                              # one errorbar per arch
        assert len(xs) == 4 and len(set(xs)) == 4                  # four distinct x positions
        bars = [c for c in ax.containers if c.has_yerr]
        assert len(bars) == 4                                       # error bars: two seeds
        assert len(fig.axes) == 3 * 2                               # three rows, a column per task
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    one = _tiny(seeds=1, max_steps=10, architectures=("fc",), base_widths={"fc": 4})
    fig = rep.figure(one)
    try:
        assert not any(c.has_yerr for c in fig.axes[0].containers)   # one seed: no bars
    finally:
        plt.close(fig)
    assert (tmp_path / "f.png").exists() is False
    rep.plot_results(r, tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_quick_is_one_seed_and_two_widths(capsys, monkeypatch):
    pytest.importorskip("sklearn")
    from lkr import cli

    seen = {}
    real = nvl.prepare

    def spy(*a, **k):
        seen.update(k)
        return real(*a, **k)

    monkeypatch.setattr(nvl, "prepare", spy)
    code = cli.main(["nets-vs-linearized", "--quick", "--tasks", "digits@0:1", "-P", "16",
                     "--P-test", "16", "--arch", "fc", "--base-widths", "fc=2",
                     "--max-steps", "10", "--quiet"])
    assert code == 0 and seen["seeds"] == 1 and seen["multipliers"] == [1, 8]
    assert "one seed: no error bars" in capsys.readouterr().out


def test_divergence_keeps_the_finished_points(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from lkr import cli

    # GD diverging at the third point (too large a step for that net): the two finished
    # points are printed and written, then one line naming the point, exit status 2
    real = mo.train_net
    calls = []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise FloatingPointError("gradient descent on the network diverged at step 7; "
                                     "lower the step size (lr = 1)")
        return real(*a, **k)

    import unittest.mock as um

    with um.patch.object(mo, "train_net", flaky):
        code = cli.main(["nets-vs-linearized", "--tasks", "digits@0:1", "-P", "16",
                         "--P-test", "16", "--arch", "fc", "--multipliers", "1,2",
                         "--base-widths", "fc=2", "--seeds", "2", "--max-steps", "20",
                         "--quiet", "--out", str(tmp_path)])
    io = capsys.readouterr()
    assert code == 2
    err = io.err.strip().splitlines()
    assert len(err) == 1 and "diverged" in err[0] and "FC N=4 seed 0" in err[0]
    r = json.loads((tmp_path / "results.json").read_text())
    assert len(r["points"]) == 2 and "diverged" in r["error"]
    assert "stopped:" in io.out
