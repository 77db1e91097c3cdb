"""Nets against their linearisations: D-output nets, their Jacobian and NTK, the two training
paths, the kernel limit, and ``lkr nets-vs-linearized`` end to end."""
import json
import os

import numpy as np
import pytest
from net_factories import KINDS, make

from lkr import nets, ntk, spectrum, train
from lkr.experiments import multioutput as mo
from lkr.experiments import nets_vs_linearized as nvl

D = 3


@pytest.fixture
def X():
    return np.random.default_rng(1).standard_normal((6, 12))


def _unflatten(m, w):
    """Parameters of m from the flat vector in the Jacobian's column order."""
    out, s = {}, 0
    for k in m.hidden + [m.readout]:
        n = m.params[k].size
        out[k] = w[s:s + n].reshape(m.params[k].shape)
        s += n
    return out


def _flatten(m, p):
    return np.concatenate([p[k].reshape(-1) for k in m.hidden + [m.readout]])


@pytest.mark.parametrize("kind", KINDS)
def test_multi_output_jacobian_is_the_finite_difference_jacobian(kind, X):
    base = make(kind)
    m = mo.MultiOutput(base, D, seed=2)
    F = m.forward(X)
    assert F.shape == (6, D)
    np.testing.assert_allclose(F[:, 0], base.forward(X), rtol=1e-14)   # readout 1 is base's
    J = mo.jacobian(m, X)
    assert J.shape == (6 * D, m.num_params)
    w0 = _flatten(m, m.params)
    eps = 1e-6
    fd = np.empty_like(J)
    for i in range(w0.size):
        e = np.zeros_like(w0)
        e[i] = eps
        fd[:, i] = ((m.forward(X, _unflatten(m, w0 + e)) - m.forward(X, _unflatten(m, w0 - e)))
                    / (2 * eps)).reshape(-1)
    np.testing.assert_allclose(J, fd, atol=2e-8)
    # the linearisation f0 + J u equals the net at u = 0 and to first order along u
    u = 1e-5 * np.random.default_rng(0).standard_normal(w0.size)
    lin = F.reshape(-1) + J @ u
    moved = m.forward(X, _unflatten(m, w0 + u)).reshape(-1)
    assert np.abs(lin - moved).max() < 1e-8
    # the loss gradient is -J^T (Y - f)
    Y = np.random.default_rng(3).standard_normal((6, D))
    f, g = m.value_and_grad(X, Y)
    np.testing.assert_allclose(f, F, rtol=1e-13)
    np.testing.assert_allclose(_flatten(m, g), -J.T @ (Y - F).reshape(-1), rtol=1e-10,
                               atol=1e-13)


@pytest.mark.parametrize("kind", KINDS)
def test_multi_output_ntk_is_the_jacobian_gram(kind, X):
    m = mo.MultiOutput(make(kind), D, seed=1)
    J = mo.jacobian(m, X)
    K = mo.ntk(m, X)
    np.testing.assert_allclose(K, J @ J.T, rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(K, K.T)
    Y = np.random.default_rng(5).standard_normal((4, 12))
    np.testing.assert_allclose(mo.ntk(m, Y, X), mo.jacobian(m, Y) @ J.T, rtol=1e-12, atol=1e-13)
    # one output: lkr's closed-form empirical NTK
    one = mo.MultiOutput(make(kind), 1)
    np.testing.assert_allclose(mo.ntk(one, X), ntk.empirical_ntk(make(kind), X), rtol=1e-12,
                               atol=1e-13)
    # the Gram path of the effective rank equals the SVD path
    assert spectrum.effective_rank(K, gram=True) == pytest.approx(spectrum.effective_rank(J),
                                                                  rel=1e-6)
    assert spectrum.stable_rank(K, gram=True) == pytest.approx(spectrum.stable_rank(J), rel=1e-10)


@pytest.mark.parametrize("kind", ["fc", "cnn"])
def test_function_space_gd_is_gd_on_the_linearised_net(kind, X):
    """train_linearized (in function space) = lkr.train.gradient_descent on lkr.nets.linearize."""
    base = make(kind)
    y = np.random.default_rng(0).standard_normal(6)
    Xt = np.random.default_rng(9).standard_normal((5, 12))
    m = mo.MultiOutput(base, 1)
    K, Kt = mo.ntk(m, X), mo.ntk(m, Xt, X)
    lr = 0.5 / np.linalg.eigvalsh(K)[-1]
    F0 = m.forward(X)
    alpha = mo.train_linearized(K, F0, y[:, None], lr, 60)
    ref = train.gradient_descent(nets.linearize(base), X, y, lr=lr, steps=60, X_test=Xt,
                                 fused=False)
    np.testing.assert_allclose(m.forward(Xt)[:, 0] + Kt @ alpha, ref.prediction, rtol=1e-10)


def test_function_space_sgd_is_parameter_space_sgd(X):
    base = make("lcn")
    m = mo.MultiOutput(base, 2, seed=4)
    Y = np.random.default_rng(0).standard_normal((6, 2))
    K = mo.ntk(m, X)
    J = mo.jacobian(m, X)
    F0 = m.forward(X)
    lr = 0.3 / np.linalg.eigvalsh(K)[-1]
    alpha = mo.train_linearized(K, F0, Y, lr, 25, batch=4, seed=3, D=2)
    u = np.zeros(J.shape[1])
    f0 = F0.reshape(-1)
    for rows in mo.batches(6, 4, 25, 3):
        idx = (rows[:, None] * 2 + np.arange(2)).reshape(-1)
        u += lr * 6 / 4 * J[idx].T @ (Y.reshape(-1)[idx] - f0[idx] - J[idx] @ u)
    np.testing.assert_allclose(K @ alpha, J @ u, rtol=1e-10, atol=1e-12)


def test_linearised_gd_converges_to_the_kernel_solution(X):
    base = make("fc")
    m = mo.MultiOutput(base, 2, seed=0)
    Y = np.random.default_rng(2).standard_normal((6, 2))
    K = mo.ntk(m, X)
    F0 = m.forward(X)
    lr = 1.0 / np.linalg.eigvalsh(K)[-1]
    star = K @ mo.kernel_solution(K, F0, Y)
    gaps = [np.abs(K @ mo.train_linearized(K, F0, Y, lr, t, D=2) - star).max()
            for t in (10, 30, 100, 2000)]
    assert all(a > b for a, b in zip(gaps[:3], gaps[1:3]))     # monotone until roundoff
    assert gaps[-1] < 1e-10 * np.abs(star).max()
    # the kernel solution is the linearised least-squares fit of lkr.train.fit_linearized
    one = mo.MultiOutput(base, 1)
    K1 = mo.ntk(one, X)
    Xt = np.random.default_rng(7).standard_normal((4, 12))
    pred = one.forward(Xt)[:, 0] + mo.ntk(one, Xt, X) @ mo.kernel_solution(K1, one.forward(X),
                                                                          Y[:, :1])
    ref = train.fit_linearized(base, X, Y[:, 0], X_test=Xt)
    np.testing.assert_allclose(pred, ref["test_prediction"], rtol=1e-8)


def test_multi_output_rejects_bad_arguments():
    with pytest.raises(ValueError, match="readout"):
        mo.MultiOutput(make("fc"), 2, readout="w")
    with pytest.raises(ValueError, match="outputs"):
        mo.MultiOutput(make("fc"), 0)


# -- the command ---------------------------------------------------------------------------------
TINY = ["-P", "24", "--P-test", "30", "--multipliers", "1,2", "--base-widths",
        "fc=4,cnn=2,lcn=1", "--steps", "15", "--classes", "0:1:2", "--seeds", "1", "--quiet"]


def _run(capsys, argv):
    from lkr import cli

    code = cli.main(["nets-vs-linearized"] + argv)
    return code, capsys.readouterr()


def test_command_end_to_end(tmp_path, capsys):
    pytest.importorskip("sklearn")
    out = tmp_path / "a"
    code, io = _run(capsys, TINY + ["--out", str(out)])
    assert code == 0
    for word in ("FC", "CNN", "LCN", "DCNN", "erank", "acc net", "acc lin", "acc ker", "gap",
                 "steps", "difficulty"):
        assert word in io.out
    assert len([ln for ln in io.out.splitlines() if ln.startswith(("FC ", "CNN ", "LCN "))]) == 6
    r = json.loads((out / "results.json").read_text())
    assert {"experiment", "settings", "tasks", "versions", "rows", "summary", "points", "timing",
            "interrupted"} <= set(r)
    assert r["interrupted"] is False and r["tasks"][0]["outputs"] == 3
    row = r["rows"][0]
    for k in ("effective_rank", "stable_rank", "num_params", "rows", "net", "lin", "kernel", "gap"):
        assert k in row
    assert row["rows"] == 24 * 3
    assert 1 <= row["effective_rank"]["mean"] <= min(row["rows"], row["num_params"])
    for k in ("test_accuracy", "test_mse", "train_accuracy", "train_mse"):
        assert k in row["net"] and k in row["lin"] and k in row["kernel"]
    assert row["net"]["steps"]["mean"] == 15 and row["net"]["stopped"] == {"fixed": 1}
    try:
        import matplotlib  # noqa: F401
        assert (out / "nets_vs_linearized.png").stat().st_size > 0
    except ImportError:
        assert "no plot" in io.err
    # deterministic for a fixed seed
    code, io2 = _run(capsys, TINY + ["--out", str(tmp_path / "b")])
    r2 = json.loads((tmp_path / "b" / "results.json").read_text())
    assert io2.out == io.out
    strip = [{k: v for k, v in p.items() if k != "timing"} for p in r["points"]]
    assert strip == [{k: v for k, v in p.items() if k != "timing"} for p in r2["points"]]


def test_command_seeds_give_error_bars_and_sgd(capsys):
    pytest.importorskip("sklearn")
    r = nvl.run_experiment("digits@0,1", P=20, P_test=20, architectures=("cnn",),
                           multipliers=(1,), base_widths={"cnn": 2}, steps=10, seeds=2,
                           batch=8)
    row = r["rows"][0]
    assert row["seeds"] == [0, 1] and row["net"]["test_accuracy"]["se"] is not None
    assert r["settings"]["optimizer"].startswith("sgd")
    assert "+-" in nvl.format_table(r)


def test_ctrl_c_keeps_what_is_finished(tmp_path, capsys, monkeypatch):
    pytest.importorskip("sklearn")
    real, calls = nvl._point, []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(nvl, "_point", flaky)
    code, io = _run(capsys, TINY + ["--out", str(tmp_path)])
    assert code == 130
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["interrupted"] is True and len(r["points"]) == 2
    assert "interrupted" in io.out


@pytest.mark.parametrize("argv, what", [(["--classes", "0,x"], "classes"),
                                        (["--arch", "rnn"], "arch"),
                                        (["--task", "gaussian-linear"], "classification"),
                                        (["--tasks", "digits@0:1", "cifar10"], "directory"),
                                        (["--tasks", "digits@0:1", "digits@0,1"], "twice"),
                                        (["--tasks", "digits@0:1", "--task", "digits"],
                                         "not both"),
                                        (["--window", "15"], "multiple of 10"),
                                        (["--momentum", "1"], "momentum"),
                                        (["--base-widths", "fc"], "base")])
def test_command_bad_input_is_one_line(argv, what, capsys):
    with pytest.raises(SystemExit) as exc:
        _run(capsys, ["-P", "10", "--P-test", "10"] + argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and what in err


def test_torch_lenet_example(capsys):
    """examples/torch_lenet_rank.py on a tiny setting; its FC check must agree with lkr."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "torch_lenet_rank.py")
    spec = importlib.util.spec_from_file_location("torch_lenet_rank", path)
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    out = ex.main(["-P", "6", "--widths", "0.2", "--classes", "0,1"])
    (er, sr), (er_t, sr_t) = out["check"]["lkr"], out["check"]["torch"]
    assert er_t == pytest.approx(er, rel=1e-6) and sr_t == pytest.approx(sr, rel=1e-8)
    row = out["lenet"][0]
    assert row["rows"] == 12 and 1 <= row["effective_rank"] <= 12
    assert "LeNet-5" in capsys.readouterr().out


def test_help_lists_the_options(capsys):
    from lkr import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["nets-vs-linearized", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--tasks", "--task", "--classes", "--arch", "--multipliers", "--base-widths",
                "--steps", "--tol", "--rtol", "--window", "--max-steps", "--momentum",
                "--lr-scale", "--batch", "--seeds", "--quick", "--filter2", "--stride2",
                "--out", "--quiet", "ladder"):
        assert opt in text, opt
    # --widths (the widths themselves in lkr fc-vs-cnn) is only the hidden former spelling
    assert "--widths" not in text


def test_former_widths_option_is_the_multipliers(capsys):
    from lkr.experiments import nets_vs_linearized as nvl_cmd

    p = __import__("argparse").ArgumentParser()
    nvl_cmd.add_arguments(p)
    assert p.parse_args(["--multipliers", "1,3"]).multipliers == [1, 3]
    assert p.parse_args([]).multipliers is None   # the command resolves it: 1,2,4,8 (--quick 1,8)
    assert p.parse_args(["--widths", "2,4"]).multipliers == [2, 4]
    assert "--widths is now --multipliers" in capsys.readouterr().err
