"""Ctrl-C (issue 14, item 1): SIGINT sent to ``python -m lkr`` subprocesses at several points
(theory part, start of a Langevin run, during and after burn-in), to ``lkr train`` and to
``lkr bench``; the exit status is 130 and what is written is valid JSON marked
``"interrupted": true`` without the cut run. Plus lkr._interrupt itself, in process."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from lkr import _interrupt

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--P", "24", "--P-test", "16", "--input-shape", "16", "--filter", "4", "-T", "0.1",
        "--seed", "3"]
#: a Langevin run that would take hours: only Ctrl-C ends it
ENDLESS = ["--langevin", "--langevin-steps", "100000000", "--chains", "2", "--lr", "1e-3"]


class Proc:
    """A ``python -m lkr`` subprocess whose stderr is watched for a marker."""

    def __init__(self, *args, cwd=None):
        # PYTHONFAULTHANDLER: a process that hangs is ended by SIGABRT below, which then
        # prints every thread's stack to stderr (the failure message shows it)
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
        self.p = subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env, cwd=cwd)
        self.err = ""
        self.out = ""
        self._seen = threading.Event()
        self._marker = None
        self._lock = threading.Lock()
        self._readers = [threading.Thread(target=self._read_err, daemon=True),
                         threading.Thread(target=self._read_out, daemon=True)]
        for r in self._readers:
            r.start()

    def _read_err(self):
        while True:
            b = self.p.stderr.read1(4096) if hasattr(self.p.stderr, "read1") else \
                self.p.stderr.read(1)
            if not b:
                break
            with self._lock:
                self.err += b.decode(errors="replace")
                if self._marker and self._marker in self.err:
                    self._seen.set()

    def _read_out(self):
        self.out = self.p.stdout.read().decode(errors="replace")

    def wait_for(self, marker, timeout=180):
        with self._lock:
            self._marker = marker
            if marker in self.err:
                self._seen.set()
        assert self._seen.wait(timeout), f"never saw {marker!r}; stderr: {self.err[-2000:]}"
        self._seen.clear()

    def interrupt(self, timeout=60):
        """SIGINT; returns (exit status, seconds until the process ended)."""
        t0 = time.monotonic()
        self.p.send_signal(signal.SIGINT)
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hang: show where it is
            self.p.send_signal(signal.SIGABRT)
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                pass
            self._close()
            raise AssertionError(f"no exit {timeout} s after SIGINT; stdout: {self.out[-1500:]}"
                                 f"\nstderr: {self.err[-6000:]}") from None
        finally:
            if self.p.poll() is None:  # pragma: no cover - do not leave it behind
                self.p.kill()
                self.p.wait()
            self._close()
        return rc, time.monotonic() - t0

    def _close(self):
        """Let the readers reach the end of both pipes, then close them (an open pipe of an
        ended process is a ResourceWarning, an error in the tests)."""
        for r in self._readers:
            r.join(10)
        for pipe in (self.p.stdout, self.p.stderr):
            if not pipe.closed:
                pipe.close()


def _results(out):
    with open(out / "results.json") as fh:
        return json.load(fh)   # strict JSON, complete (written atomically)


def test_ctrl_c_during_the_theory_part(tmp_path):
    out = tmp_path / "out"
    widths = ",".join(str(w) for w in range(4, 200, 4))  # many warm-started fits
    p = Proc("lkr", "fc-vs-cnn", *TINY, "--widths", widths, "--out", str(out))
    p.wait_for("FC: solving")
    rc, dt = p.interrupt()
    assert rc == 130, p.err
    assert "interrupted during" in p.err and "Traceback" not in p.err
    res = _results(out)
    assert res["interrupted"] is True
    assert res["interrupted_during"].startswith(("FC", "CNN", "LCN"))
    n_widths = len(res["settings"]["widths"])
    assert any(len(rows) < n_widths for rows in res["finite_width"].values())
    assert "fc" in res["infinite_width"]         # the finished phase is kept
    assert "INTERRUPTED" in p.out                 # the finished rows are printed, flagged
    assert not (out / "fc_vs_cnn.png").exists()


@pytest.mark.parametrize("where, burn_in, wait", [
    ("start of the run", "50000000", 0.0),   # set-up / first steps of burn-in
    ("during burn-in", "50000000", 3.0),
    ("after burn-in", "10", 3.0),            # sampling: the case that used to be swallowed
])
def test_ctrl_c_in_langevin_stops_the_whole_job(tmp_path, where, burn_in, wait):
    out = tmp_path / "out"
    p = Proc("lkr", "fc-vs-cnn", *TINY, "--widths", "12,48", *ENDLESS, "--burn-in", burn_in,
             "--out", str(out))
    p.wait_for("Langevin FC N=12")
    time.sleep(wait)
    rc, dt = p.interrupt()
    assert rc == 130, p.err
    assert dt < 30, f"took {dt:.1f} s to stop"    # generous: the test machine is loaded
    assert "Traceback" not in p.err and "no samples" not in p.err
    res = _results(out)
    assert res["interrupted"] is True and res["interrupted_during"] == "Langevin FC N=12"
    # the cut run is dropped and no later width or architecture ran
    assert res["langevin"] == {"fc": [], "cnn": [], "lcn": []}
    assert all(len(rows) == 2 for rows in res["finite_width"].values())  # theory kept
    assert "+-" not in p.out


def test_lkr_train_ctrl_c_keeps_the_samples(tmp_path):
    out = tmp_path / "run"
    p = Proc("lkr", "train", "--width", "4", "-P", "8", "--P-test", "20", "--input-shape",
             "16", "--steps", "100000000", "--burn-in", "10", "--chains", "2", "--out",
             str(out))
    p.wait_for("lkr train: sampling")
    time.sleep(3.0)
    rc, dt = p.interrupt()
    assert rc == 130, p.err
    assert "Traceback" not in p.err
    d = json.loads((out / "train.json").read_text())
    assert d["interrupted"] is True and d["theory"] is None   # no theory after Ctrl-C
    assert d["langevin"]["steps_done"] < 100000000
    assert "[INTERRUPTED]" in p.out


def test_lkr_bench_ctrl_c_saves_finished_rows(tmp_path):
    out = tmp_path / "bench.json"
    p = Proc("bench", "--suite", "kernels", "--out", str(out), cwd=ROOT)
    p.wait_for("# suite kernels")
    time.sleep(1.0)
    rc, dt = p.interrupt()
    assert rc == 130, p.err
    d = json.loads(out.read_text())
    assert d["meta"]["interrupted"] is True and d["meta"]["interrupted_during"] == "kernels"
    assert isinstance(d["results"], list)
    assert "load average" in p.out


def test_second_ctrl_c_aborts_at_once(tmp_path):
    code = ("import os, signal, time\n"
            "from lkr import _interrupt\n"
            "with _interrupt.handling(hard_exit=True), _interrupt.polling():\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    assert _interrupt.requested()\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    time.sleep(30)\n"
            "print('not reached')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 130 and "aborted" in proc.stderr
    assert "not reached" not in proc.stdout


# -- lkr._interrupt in process ----------------------------------------------------------------
def test_first_ctrl_c_raises_outside_a_polling_region():
    before = signal.getsignal(signal.SIGINT)
    with _interrupt.handling():
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        assert _interrupt.requested()
    assert not _interrupt.requested()
    assert signal.getsignal(signal.SIGINT) is before


def test_polling_region_sets_the_flag_then_a_second_raises():
    with _interrupt.handling(), _interrupt.polling():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert _interrupt.requested()
        with pytest.raises(KeyboardInterrupt):
            _interrupt.check()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)


def test_nested_handling_keeps_one_handler():
    before = signal.getsignal(signal.SIGINT)
    with _interrupt.handling():
        h = signal.getsignal(signal.SIGINT)
        with _interrupt.polling():
            assert signal.getsignal(signal.SIGINT) is h
        assert signal.getsignal(signal.SIGINT) is h
    assert signal.getsignal(signal.SIGINT) is before


# -- lkr.theory.sweep: KeyboardInterrupt propagates, finished points are already saved -------
class _Stop:
    """A picklable theory factory that behaves as a Ctrl-C at its third point."""

    def __init__(self):
        self.calls = 0

    def __call__(self, width):
        from lkr.theory import FCTheory

        self.calls += 1
        if self.calls == 3:
            raise KeyboardInterrupt
        return FCTheory(width=width, temperature=0.1)


def test_sweep_keeps_finished_points_on_ctrl_c(tmp_path):
    import numpy as np

    from lkr.theory import sweep

    rng = np.random.default_rng(0)
    X, Xt = rng.standard_normal((12, 4)), rng.standard_normal((6, 4))
    y, yt = np.sign(X[:, 0]), np.sign(Xt[:, 0])
    out = tmp_path / "sweep.jsonl"
    grid = {"width": [4, 8, 16, 32]}
    with pytest.raises(KeyboardInterrupt):
        sweep(_Stop(), grid, X, y, Xt, yt, out=out)
    lines = [json.loads(s) for s in out.read_text().splitlines()]
    assert [r["width"] for r in lines] == [4, 8]
    rows = sweep(_Stop(), grid, X, y, Xt, yt, out=out)   # resumes: only 16 and 32 run
    assert [r["width"] for r in rows] == [4, 8, 16, 32]


# -- lkr nets-vs-linearized: the same mechanism ------------------------------------------------
def test_nets_vs_linearized_ctrl_c(tmp_path):
    pytest.importorskip("sklearn")
    out = tmp_path / "out"
    p = Proc("lkr", "nets-vs-linearized", "-P", "24", "--P-test", "30", "--multipliers", "1,2,4,8",
             "--base-widths", "fc=4,cnn=2,lcn=1", "--steps", "20000000", "--classes", "0:1:2",
             "--out", str(out))
    p.wait_for("N=")
    time.sleep(1.0)
    rc, dt = p.interrupt()
    assert rc == 130, p.err
    assert dt < 30 and "Traceback" not in p.err
    r = json.loads((out / "results.json").read_text())
    assert r["interrupted"] is True
    assert len(r["points"]) < 4 * 3


def test_nets_vs_linearized_write_failure(tmp_path, capsys, monkeypatch):
    pytest.importorskip("sklearn")
    from lkr import _io
    from lkr.cli import main

    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("old\n")

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_io.os, "replace", full)
    rc = main(["nets-vs-linearized", "-P", "24", "--P-test", "30", "--multipliers", "1",
               "--base-widths", "fc=4,cnn=2,lcn=1", "--steps", "5", "--classes", "0:1",
               "--quiet", "--out", str(out)])
    assert rc == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "No space left" in lines[0], captured.err
    assert (out / "results.json").read_text() == "old\n"
    monkeypatch.setattr(_io.tempfile, "mkstemp", lambda **kw: full())
    with pytest.raises(SystemExit) as exc:
        main(["nets-vs-linearized", "--quiet", "--out", str(out)])
    assert exc.value.code == 2
