"""Refusals found by a new user's bad-input audit of this round's commands (issue 22's
spirit): options that were silently ignored, a traceback, an empty class group, a hint
that did not apply. Each is one line on stderr and exit status 2, before any work."""
import pytest


def _refused(capsys, command, *args):
    from lkr.cli import main

    try:
        code = main([command, *args])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    assert code == 2, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lkr {command}: error:"), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.mark.parametrize("command, args, message", [
    ("train", ["--sampler", "langevin", "--sweeps", "100"], "--sweeps is the collapsed"),
    ("fc-vs-cnn", ["--sampler", "collapsed"], "--sampler: only for sampling the networks"),
    ("fc-vs-cnn", ["--sweeps", "10", "--chains", "2"], "--sweeps, --chains: only for sampling"),
    ("fc-vs-cnn", ["--langevin", "--sampler", "collapsed", "--langevin-steps", "100"],
     "--langevin-steps is Langevin's"),
    ("fc-vs-cnn", ["--langevin", "--sweeps", "100"], "--sweeps is the collapsed sampler's"),
    ("fc-vs-cnn", ["--task", "digits", "--classes", "0::1"], "empty group"),
    ("fc-vs-cnn", ["--task", "digits", "--classes", "0:1:"], "empty group"),
    ("check-theory", ["--chains", "1"], "--chains 1: the verdict needs a standard error"),
    ("check-theory", ["--atlas", "--chains", "1"], "--chains 1"),
    ("check-theory", ["--burn-in", "400"], "--burn-in 400 must be smaller than --sweeps 400"),
    ("check-theory", ["--finite-filter"], "--finite-filter is for --arch cnn --activation relu"),
    ("check-theory", ["--atlas-M", "4"], "--atlas-M: only with --atlas"),
    ("check-theory", ["--atlas", "--atlas-M", ""], "expected a comma-separated list"),
    ("check-theory", ["--atlas", "--atlas-activations", "erf,erf"], "repeated"),
    ("check-theory", ["--atlas", "--width", "10", "--burn-in", "5"],
     "--width, --burn-in: not used by --atlas"),
    ("check-theory", ["--atlas", "--classes", "0,1"], "task 'local-teacher' would ignore it"),
    ("check-theory", ["--atlas", "--finite-filter", "--atlas-activations", "erf"],
     "--finite-filter is for relu CNN cells"),
    ("nets-vs-linearized", ["--tasks", "digits@0:1", "--classes", "3,8"], "would be ignored"),
    ("nets-vs-linearized", ["--arch", "fc,fc"], "an architecture is repeated"),
    ("nets-vs-linearized", ["--tasks", "digits@0::1"], "empty group"),
])
def test_refused_in_one_line(capsys, command, args, message):
    assert message in _refused(capsys, command, *args)


def test_check_theory_python_api_refuses_one_chain_before_fitting():
    from lkr.experiments.check_theory import check

    with pytest.raises(ValueError, match="chains"):
        check(P=8, P_test=8, input_shape=(16,), sweeps=4, chains=1)


def test_digits_size_hint_offers_more_classes_only_when_some_are_left(capsys):
    pytest.importorskip("sklearn")
    line = _refused(capsys, "fc-vs-cnn", "--task", "digits", "--classes", "all", "-P", "5000")
    assert "use P <= 1796" in line and "more classes" not in line
    line = _refused(capsys, "fc-vs-cnn", "--task", "digits", "-P", "1500", "--P-test", "1500")
    assert "more classes (e.g. 'all')" in line


def test_one_seed_ladder_header_keeps_its_columns_apart():
    pytest.importorskip("sklearn")
    from lkr.experiments import nets_vs_linearized as nvl

    r = nvl.run_experiment("digits@0,1", P=12, P_test=12, architectures=("fc",),
                           multipliers=(1,), base_widths={"fc": 4}, steps=5, seeds=1)
    head = [ln for ln in nvl.format_table(r).splitlines() if ln.startswith("task ")][0]
    for name in ("difficulty", "net error", "gap acc", "narrowest", "widest", "rel gap mse",
                 "erank/rows", "capped"):
        assert f" {name}" in head, head
