"""The ``lkr`` command end to end (subprocesses of ``python -m lkr``): help, the fc-vs-cnn
experiment on a tiny configuration, its results.json, and one-line errors (exit 2)."""
import concurrent.futures as cf
import json
import os
import subprocess
import sys

import numpy as np
import pytest

#: a configuration that runs in seconds: Np = 4 patches of M = 4
TINY = ["--P", "24", "--P-test", "16", "--widths", "12,48", "--input-shape", "16",
        "--filter", "4", "-T", "0.1", "--seed", "3"]


def lkr(*args, env=None, timeout=120):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "lkr", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    proc = lkr("fc-vs-cnn", *TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    with open(out / "results.json") as fh:
        results = json.load(fh)
    return proc, out, results


@pytest.mark.parametrize("command", [[], ["info"], ["fc-vs-cnn"], ["bench"], ["train"]])
def test_help(command):
    proc = lkr(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: lkr" + (f" {command[0]}" if command else ""))


def test_fc_vs_cnn_help_lists_the_options():
    text = lkr("fc-vs-cnn", "--help").stdout
    for opt in ("--task", "--P", "--P-test", "--widths", "--temperature", "--lambda0",
                "--lambda1", "--activation", "--input-shape", "--filter", "--stride",
                "--boundary", "--seed", "--out", "--quiet", "--scheduler", "--workers",
                "--langevin", "--langevin-steps", "--chains", "--lr"):
        assert opt in text, opt


def test_info_json():
    proc = lkr("info", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["lkr"] and info["numpy"]


def test_table(tiny_run):
    proc, _, res = tiny_run
    text = proc.stdout
    for head in ("FC ", "CNN ", "LCN ", "global renormalisation", "local renormalisation"):
        assert head in text
    assert text.count("\n    inf") == 3
    # the numbers in the table are the ones saved (rounded to 4 decimals)
    lines = text.splitlines()
    for arch, start in (("fc", "FC   ("), ("cnn", "CNN  ("), ("lcn", "LCN  (")):
        i = next(k for k, line in enumerate(lines) if line.startswith(start))
        rows = lines[i + 2:i + 2 + 2]
        for line, r in zip(rows, res["finite_width"][arch]):
            cols = line.split()
            assert int(cols[0]) == r["width"]
            assert float(cols[2]) == pytest.approx(r["error"], abs=6e-5)
            assert float(cols[3]) == pytest.approx(r["bias2"], abs=6e-5)
            assert float(cols[4]) == pytest.approx(r["variance"], abs=6e-5)
        inf_line = lines[i + 4].split()
        assert inf_line[0] == "inf"
        assert float(inf_line[2]) == pytest.approx(res["infinite_width"][arch]["error"], abs=6e-5)
    # progress bar on stderr, ending complete
    assert "[########################] 9/9" in proc.stderr


def test_results_json_schema(tiny_run):
    _, out, res = tiny_run
    for key in ("experiment", "settings", "task", "versions", "infinite_width", "finite_width",
                "langevin", "summary", "timing"):
        assert key in res, key
    s = res["settings"]
    assert (s["task"], s["P"], s["P_test"], s["widths"], s["seed"]) == ("local-teacher", 24, 16,
                                                                         [12, 48], 3)
    assert (s["temperature"], s["activation"], s["lambda0"], s["lambda1"]) == (0.1, "erf", 1, 1)
    assert s["geometry"]["input_shape"] == [16] and s["geometry"]["filter_size"] == [4]
    assert s["num_patches"] == 4 and s["patch_size"] == 4
    assert set(res["versions"]) >= {"lkr", "numpy", "scipy", "python"}
    assert res["langevin"] is None
    for arch in ("fc", "cnn", "lcn"):
        rows = res["finite_width"][arch]
        assert [r["width"] for r in rows] == [12, 48]
        for r in rows:
            assert r["alpha"] == pytest.approx(24 / r["width"])
            assert r["error"] == pytest.approx(r["bias2"] + r["variance"], rel=1e-12)
            assert r["bias2"] >= 0 and r["variance"] >= 0
            assert r["converged"] is True
            assert "Q" in r["solution"]
        inf = res["infinite_width"][arch]
        assert inf["error"] == pytest.approx(inf["bias2"] + inf["variance"], rel=1e-12)
        sm = res["summary"][arch]
        assert sm["infinite_error"] == inf["error"]
        assert sm["best_error"] == min(r["error"] for r in rows)
    assert isinstance(res["finite_width"]["fc"][0]["Q_summary"]["Qbar"], float)
    Q = np.array(res["finite_width"]["cnn"][0]["solution"]["Q"])
    assert Q.shape == (4, 4)
    np.testing.assert_allclose(Q, Q.T, atol=1e-12)
    assert res["finite_width"]["cnn"][0]["Q_summary"]["diag_mean"] == pytest.approx(np.diag(Q).mean())
    QL = np.array(res["finite_width"]["lcn"][0]["solution"]["Q"])
    assert np.allclose(QL, np.diag(np.diag(QL)))  # the LCN order parameter is diagonal
    # LCN's infinite-width limit is the CNN's GP
    assert res["infinite_width"]["lcn"]["error"] == res["infinite_width"]["cnn"]["error"]
    assert res["infinite_width"]["lcn"]["same_as"] == "cnn"
    if _has_matplotlib():
        assert (out / "fc_vs_cnn.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_infinite_width_values_are_the_gps(tiny_run):
    # The saved N = inf errors are those of the GP with the FC kernel and with K_R(I)
    # on the same seeded task: guards against swapped kernels or a different task.
    from lkr import PatchGeometry, data
    from lkr.theory import GPTheory

    _, _, res = tiny_run
    X, y, Xt, yt, _ = data.load_task("local-teacher", 24, 16, seed=3, input_shape=(16,),
                                     filter_size=4)
    g = PatchGeometry((16,), 4)
    for arch, kernel, geometry in (("fc", "fc", None), ("cnn", "cnn", g)):
        gp = GPTheory(kernel=kernel, geometry=geometry, temperature=0.1, activation="erf")
        gp.fit(X, y)
        assert gp.evaluate(Xt, yt)["error"] == pytest.approx(
            res["infinite_width"][arch]["error"], rel=1e-10)


def test_quiet_without_matplotlib(tmp_path):
    # A matplotlib that cannot be imported: the run succeeds and says how to get the plot;
    # with --quiet that is all it says on stderr (no progress bar, no notes).
    fake = tmp_path / "fake"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    out = tmp_path / "out"
    env = {"PYTHONPATH": os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")])}
    proc = lkr("fc-vs-cnn", *TINY, "--widths", "48", "--task", "gaussian-linear", "--quiet",
               "--out", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    assert (out / "results.json").exists()
    assert not (out / "fc_vs_cnn.png").exists()
    assert proc.stderr.strip().splitlines() == [
        "no plot: matplotlib is not installed; pip install matplotlib (or pip install "
        "\".[plot]\" in lkr's source folder) for the plot"]
    assert "gaussian-linear" in proc.stdout and "\n    inf" in proc.stdout


BAD = [
    (["--widths", "10,-5"], "widths must be positive"),
    (["--widths", "0"], "widths must be positive"),
    (["--widths", "ten"], "widths must be integers"),
    (["--task", "imagenet"], "unknown task 'imagenet'"),
    (["--task", "mnist:/no/such/dir"], "directory not found: /no/such/dir"),
    (["--task", "mnist"], "needs a local directory"),
    (["--P", "0"], "expected a positive integer"),
    (["--P-test", "-3"], "expected a positive integer"),
    (["--temperature", "-1"], "expected a positive"),
    (["--lambda1", "nan"], "expected a positive"),
    (["--activation", "tanh"], "invalid choice"),
    (["--input-shape", "16", "--filter", "32"], "larger than input_shape"),
    (["--input-shape", "8x8", "--filter", "2x2x2"], "expected N or HxW"),
    (["--langevin", "--burn-in", "500", "--langevin-steps", "100"], "must be smaller than"),
    (["--scheduler", "tcp://127.0.0.1:1", "--workers", "2"], "not both"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--filter", "3x3,2x2"], "one entry per layer needs --depth"),
    (["--depth", "2", "--filter", "3,2,2"], "--filter has 3 entries for --depth 2"),
    (["--padding", "same"], "it needs --depth"),
    (["--depth", "2", "--padding", "zeros"], "padding must be one of"),
    (["--depth", "2", "--filter", "4", "--widths", "2"], "needs widths >= its d"),
]


@pytest.mark.parametrize("args, message", BAD[:1] + BAD[3:5])
def test_bad_values_exit_2_with_one_line(args, message):
    proc = lkr("fc-vs-cnn", *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("lkr fc-vs-cnn: error:") and message in lines[0]


@pytest.mark.parametrize("args, message", BAD)
def test_bad_values_in_process(args, message, capsys):
    # the same checks without a subprocess each (the main() that the console script runs)
    from lkr.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["fc-vs-cnn", *args])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("lkr fc-vs-cnn: error:") and message in lines[0]


def test_missing_data_files_exit_2(tmp_path):
    proc = lkr("fc-vs-cnn", "--task", f"cifar10:{tmp_path}")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "data_batch_1" in lines[0], proc.stderr


def test_distributed_needs_dask(tmp_path):
    fake = tmp_path / "fake"
    for name in ("dask", "distributed"):
        (fake / name).mkdir(parents=True)
        (fake / name / "__init__.py").write_text("raise ImportError('no dask here')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")])}
    proc = lkr("fc-vs-cnn", *TINY, "--workers", "2", env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and 'pip install "dask[distributed]"' in lines[0], proc.stderr


def test_executor_path_matches_serial():
    # --scheduler/--workers fit each (architecture, width) independently on an executor;
    # the numbers must be the serial, warm-started ones to solver tolerance.
    from lkr.experiments import fc_vs_cnn

    kw = dict(P=24, P_test=16, widths=[12, 48], input_shape=(16,), filter_size=4,
              temperature=0.1, seed=3, architectures=("cnn", "lcn"))
    serial = fc_vs_cnn.run(**kw)
    with cf.ThreadPoolExecutor(2) as ex:
        spread = fc_vs_cnn.run(executor=ex, **kw)
    assert "executor" in spread["settings"]["mode"]
    for arch in ("cnn", "lcn"):
        for a, b in zip(serial["finite_width"][arch], spread["finite_width"][arch]):
            assert a["width"] == b["width"]
            assert b["error"] == pytest.approx(a["error"], rel=1e-5)
            np.testing.assert_allclose(b["solution"]["Q"], a["solution"]["Q"], atol=1e-5)


def test_langevin_columns(tmp_path):
    train = pytest.importorskip("lkr.train")
    if not hasattr(train, "sampled_test_error"):
        pytest.skip("lkr.train.sampled_test_error is not available")
    out = tmp_path / "out"
    proc = lkr("fc-vs-cnn", *TINY, "--widths", "48", "--langevin", "--langevin-steps", "200",
               "--burn-in", "100", "--chains", "2", "--lr", "1e-3", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "results.json").read_text())
    for arch in ("fc", "cnn", "lcn"):
        (row,) = res["langevin"][arch]
        assert row["width"] == 48 and row["chains"] == 2
        assert row["error_se"] >= 0 and np.isfinite(row["error"])
    assert res["settings"]["langevin"] == {"chains": 2, "steps": 200, "burn_in": 100, "lr": 1e-3}
    assert "+-" in proc.stdout


def test_fc_vs_cnn_depth_adds_the_deep_cnn_rows(tmp_path):
    proc = lkr("fc-vs-cnn", "--P", "16", "--P-test", "8", "--widths", "4,16", "--input-shape",
               "12", "--filter", "3,2", "--stride", "1,2", "--padding", "same,valid",
               "--depth", "2", "-T", "0.1", "--quiet", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "DCNN (deep CNN, 2 layers [3/1 same, 2/2 valid]" in proc.stdout
    with open(tmp_path / "results.json") as fh:
        res = json.load(fh)
    s = res["settings"]
    assert s["architectures"][-1] == "deepcnn" and s["deep_num_patches"] == 6
    rows = res["finite_width"]["deepcnn"]
    assert [r["width"] for r in rows] == [16]  # N = 4 < d = 6 is skipped
    assert res["infinite_width"]["deepcnn"]["error"] > 0
    assert "deepcnn" in res["summary"]
