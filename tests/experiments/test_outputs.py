"""Output files and the CLI's quieter traps (issue 14, items 2, 3, 7, 9): atomic writes that
leave the previous file intact, an --out that cannot be written failing before any work,
a failed write as one line and exit status 2 after the results are printed, a divergent
Langevin --lr keeping the theory, the stale plot, the R-hat warning, the figure, the bench
header and thread column, and task options that do not apply."""
import errno
import json
import os

import pytest

from lkr import _io
from lkr.cli import main

TINY = ["--P", "24", "--P-test", "16", "--widths", "12", "--input-shape", "16", "--filter", "4",
        "-T", "0.1", "--seed", "3", "--quiet"]


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


# -- lkr._io -----------------------------------------------------------------------------------
def test_atomic_write_replaces_and_keeps_permissions(tmp_path):
    path = tmp_path / "a.json"
    _io.write_json(path, {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}
    _io.write_json(path, {"x": 2})
    assert json.loads(path.read_text()) == {"x": 2}
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert os.listdir(tmp_path) == ["a.json"]


def test_failed_rename_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    path.write_text('{"old": true}\n')
    monkeypatch.setattr(_io.os, "replace", _full_disk)
    with pytest.raises(OSError, match="No space"):
        _io.write_json(path, {"new": True})
    assert path.read_text() == '{"old": true}\n'
    assert os.listdir(tmp_path) == ["results.json"]  # no temporary file left behind


def test_failed_write_midway_leaves_the_old_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old\n")

    def write(fh):
        fh.write("partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        _io.atomic_write(path, write)
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["results.json"]


def test_check_writable_dir(tmp_path, monkeypatch):
    assert _io.check_writable_dir(tmp_path / "new") == str(tmp_path / "new")
    assert os.listdir(tmp_path / "new") == []
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError):
        _io.check_writable_dir(tmp_path / "file" / "sub")   # a file in the way
    monkeypatch.setattr(_io.tempfile, "mkstemp", lambda **kw: _full_disk())
    with pytest.raises(OSError, match="No space"):
        _io.check_writable_dir(tmp_path)


# -- the commands -------------------------------------------------------------------------------
def _one_error_line(err, prefix):
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1, err
    assert lines[0].startswith(prefix), err
    return lines[0]


def test_unwritable_out_fails_before_any_work(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exc:
        main(["fc-vs-cnn", *TINY, "--out", str(tmp_path / "file" / "out")])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    _one_error_line(captured.err, "lkr fc-vs-cnn: error: --out")
    # an existing directory whose files cannot be created (read-only, full): refused at once,
    # not after the run (root ignores chmod, so the failure is injected)
    monkeypatch.setattr(_io.tempfile, "mkstemp", lambda **kw: _full_disk())
    (tmp_path / "ro").mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["fc-vs-cnn", *TINY, "--out", str(tmp_path / "ro")])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert "No space left" in _one_error_line(captured.err, "lkr fc-vs-cnn: error: --out")
    assert captured.out == ""
    assert main(["train", "--out", str(tmp_path / "ro"), "--quiet"]) == 2
    assert "No space left" in _one_error_line(capsys.readouterr().err, "lkr train: error: --out")


def test_write_failure_is_one_line_exit_2_and_keeps_the_old_file(tmp_path, capsys,
                                                                 monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"previous": "run"}\n')
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith("results.json"):
            _full_disk()
        real_replace(src, dst)

    monkeypatch.setattr(_io.os, "replace", replace)
    assert main(["fc-vs-cnn", *TINY, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert "FC vs CNN vs LCN" in captured.out            # the results are printed anyway
    line = _one_error_line(captured.err, "lkr fc-vs-cnn: error: cannot write")
    assert "results.json" in line and "No space left" in line
    assert (out / "results.json").read_text() == '{"previous": "run"}\n'
    assert sorted(os.listdir(out)) == ["results.json"]


def test_lkr_train_write_failure(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(_io.os, "replace", _full_disk)
    rc = main(["train", "--width", "4", "-P", "8", "--P-test", "10", "--input-shape", "16",
               "--steps", "20", "--chains", "2", "--no-theory", "--out", str(out), "--quiet"])
    assert rc == 2
    captured = capsys.readouterr()
    assert "sampled test error" in captured.out
    assert "train.json" in _one_error_line(captured.err, "lkr train: error: cannot write")
    assert os.listdir(out) == []


def test_divergent_langevin_keeps_the_theory(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["fc-vs-cnn", *TINY, "--langevin", "--langevin-steps", "50", "--chains", "2",
               "--lr", "1e6", "--out", str(out)])
    assert rc == 2
    captured = capsys.readouterr()
    line = _one_error_line(captured.err, "lkr fc-vs-cnn: error: Langevin sampling failed")
    assert "diverged" in line and "lower lr" in line
    assert "LANGEVIN FAILED" in captured.out and "\n    inf" in captured.out
    res = json.loads((out / "results.json").read_text())
    assert "diverged" in res["langevin_error"] and res["interrupted"] is False
    assert all(len(rows) == 1 for rows in res["finite_width"].values())
    assert set(res["infinite_width"]) >= {"fc", "cnn", "lcn"}


def test_stale_plot_is_removed_when_no_plot_is_made(tmp_path, capsys):
    from lkr.experiments.report import write_outputs as _write_outputs

    (tmp_path / "fc_vs_cnn.png").write_bytes(b"old plot")
    results = {"interrupted": True, "settings": {}}
    assert _write_outputs(results, str(tmp_path), lambda msg: None) == 0
    err = capsys.readouterr().err
    assert "no plot: the run was interrupted" in err and "removed the old" in err
    assert sorted(os.listdir(tmp_path)) == ["results.json"]


# -- R-hat, the figure ------------------------------------------------------------------------
def _train_out(rhat):
    return {"settings": dict(arch="cnn", width=4, alpha=2.0, task="local-teacher", P=8,
                             P_test=20, temperature=0.1, activation="erf", chains=2,
                             burn_in=10, thin=1, lr=0.01),
            "langevin": dict(samples_per_chain=8, steps_done=20, steps_per_s=100.0,
                             rhat_max=rhat),
            "interrupted": False,
            "sampled": dict(error=0.5, error_se=0.01, bias2=0.4, variance=0.1),
            "theory": dict(name="CNNTheory", error=0.518, bias2=0.4, variance=0.118,
                           converged=True),
            "gp": dict(error=0.6, bias2=0.5, variance=0.1), "difference_in_se": -1.8}


def test_rhat_warning_next_to_the_verdict():
    from lkr.experiments.train_one import format_report

    text = format_report(_train_out(3.2))
    lines = text.splitlines()
    i = next(k for k, ln in enumerate(lines) if "standard errors" in ln)
    assert "R-hat 3.2" in lines[i + 1] and "--steps" in lines[i + 1] and "--chains" in lines[i + 1]
    assert "WARNING" not in format_report(_train_out(1.01))


def test_fc_vs_cnn_table_warns_on_rhat_and_plot_has_labels(tmp_path):
    pytest.importorskip("matplotlib")
    from lkr.experiments import fc_vs_cnn

    res = fc_vs_cnn.run(P=24, P_test=16, widths=[12], input_shape=(16,), filter_size=4,
                        temperature=0.1, seed=3)
    res["langevin"] = {a: [dict(width=12, error=0.5, error_se=0.02, rhat_max=2.5 if a == "cnn"
                                else 1.01, chains=2)] for a in ("fc", "cnn", "lcn")}
    table = fc_vs_cnn.format_table(res)
    assert "R-hat 2.5!" in table and "WARNING: Langevin chains not mixed" in table
    assert "CNN N=12" in table and "FC N=12 (" not in table

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    saved = {}
    real_close = plt.close

    def keep(fig=None):
        saved["fig"] = fig
        real_close(fig)

    plt.close = keep
    try:
        fc_vs_cnn.plot_results(res, tmp_path / "p.png")
    finally:
        plt.close = real_close
    axes = saved["fig"].axes
    assert all(ax.get_ylabel() for ax in axes)
    ax = axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    cnn = lines["CNN, N = $\\infty$"]
    lcn = next(ln for k, ln in lines.items() if k.startswith("LCN, N = $\\infty$"))
    assert cnn.get_ydata()[0] == lcn.get_ydata()[0]       # the same limit ...
    assert cnn.get_color() != lcn.get_color()              # ... drawn distinguishably
    assert cnn._dash_pattern != lcn._dash_pattern


# -- bench: threads and load --------------------------------------------------------------------
def test_bench_header_and_thread_column(monkeypatch):
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    monkeypatch.syspath_prepend(root)
    from bench import harness

    head = harness.header()
    assert "lkr threads" in head and "cores" in head and "load average" in head
    monkeypatch.setattr(harness.os, "getloadavg", lambda: (99.0, 99.0, 99.0))
    assert "LOADED" in harness.header()
    harness.reset()
    row = harness.record("s", "c", "lkr", 1.0, 0.0, 1)
    assert row["threads"] == harness.lkr_threads()
    assert harness.collected() == [row]
    assert "threads" in harness.format_table([row]).splitlines()[0]
    # loaded: both thread counts are measured and the faster is reported
    import lkr

    old = lkr.get_num_threads()
    lkr.set_num_threads(2)
    try:
        calls = []
        med, iqr, n, res, threads = harness.measure_threads(
            lambda: calls.append(lkr.get_num_threads()), repeats=1, warmup=0)
    finally:
        lkr.set_num_threads(old)
    assert sorted(set(calls)) == [1, 2] and threads in (1, 2)
    assert "bench" in sys.modules


# -- task options that do not apply --------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--color"], "--color"),
    (["--task", "gaussian-linear", "--noise", "0.1"], "--noise"),
    (["--task", "gaussian-linear", "--teacher-channels", "8"], "--teacher-channels"),
    (["--classes", "1,7"], "--classes"),
])
def test_task_options_that_do_not_apply(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fc-vs-cnn", *args])
    assert exc.value.code == 2
    line = _one_error_line(capsys.readouterr().err, "lkr fc-vs-cnn: error:")
    assert message in line and "would ignore it" in line


def test_lkr_train_task_options(capsys):
    assert main(["train", "--downsample", "2", "--quiet"]) == 2
    assert "--downsample" in _one_error_line(capsys.readouterr().err, "lkr train: error:")
