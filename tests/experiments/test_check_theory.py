"""``lkr check-theory``: the verdict logic, one tiny check per architecture, the atlas (tiny),
its table, JSON and plot, bad options and Ctrl-C (docs/validity.md)."""
import json
import math

import numpy as np
import pytest

from lkr import _interrupt
from lkr.cli import main
from lkr.experiments import _atlas, _theory_check
from lkr.experiments._theory_check import compare, share, verdict

TINY = ["-P", "10", "--P-test", "12", "--sweeps", "24", "--chains", "2", "--quiet"]


# -- the verdict ---------------------------------------------------------------------------
def test_share_and_its_standard_error():
    s, se = share(1.1, 1.0, 1.2, 0.01)
    assert s == pytest.approx(0.5) and se == pytest.approx(0.1 * 0.01 / 0.04)
    # delta method against a direct perturbation of the exact value
    h = 1e-7
    ds = (share(1.1, 1.0, 1.2 + h, 0.0)[0] - share(1.1, 1.0, 1.2 - h, 0.0)[0]) / (2 * h)
    assert se == pytest.approx(abs(ds) * 0.01, rel=1e-6)
    assert all(math.isnan(v) for v in share(1.1, 1.0, 1.0, 0.01))


def test_verdicts():
    # within: the theory has 95% of a well-resolved shift
    v = verdict(1.095, 1.0, 1.1, 0.001, 1.01, filter_dim=64)
    assert v == {"status": "within", "within": True, "reasons": []}
    # outside: half the shift, and M = 4 named as a reason (not for linear)
    v = verdict(1.05, 1.0, 1.1, 0.001, 1.01, filter_dim=4, activation="relu")
    assert v["status"] == "outside" and not v["within"]
    assert "50%" in v["reasons"][0] and any("M = 4 is below 16" in r for r in v["reasons"])
    v = verdict(1.05, 1.0, 1.1, 0.001, 1.01, filter_dim=4, activation="linear")
    assert not any("below 16" in r for r in v["reasons"])
    assert "N0 = 8" in verdict(1.05, 1.0, 1.1, 0.001, filter_dim=8, arch="fc")["reasons"][1]
    # the shift is not resolved: judged in absolute terms
    v = verdict(1.001, 1.0, 1.002, 0.01, 1.0)
    assert v["status"] == "unresolved" and v["within"]
    assert "not resolved" in v["reasons"][-1]
    assert not verdict(1.2, 1.0, 1.002, 0.01, 1.0)["within"]
    # unmixed chains: no verdict
    v = verdict(1.095, 1.0, 1.1, 0.001, 1.3)
    assert v["status"] == "unmixed" and v["within"] is None and "R-hat 1.3" in v["reasons"][-1]
    # an uncertain share says so
    v = verdict(1.09, 1.0, 1.1, 0.02, 1.0)
    assert v["status"] == "within" and "sharpen" in v["reasons"][-1]
    assert "did not converge" in verdict(1.095, 1.0, 1.1, 0.001, converged=False)["reasons"][0]


# -- one check -----------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["fc", "cnn", "lcn"])
def test_compare_returns_the_three_errors(arch):
    import lkr
    from lkr import data

    X, y, Xt, yt, _ = data.load_task("local-teacher", 10, 12, 0, input_shape=(16,),
                                     filter_size=(4,), teacher_channels=2)
    g = lkr.PatchGeometry((16,), 4)
    r = compare(arch, 6, geometry=g, X=X, y=y, X_test=Xt, y_test=yt, temperature=0.1,
                sweeps=24, chains=2, seed=1, finite_filter=False)
    assert set(r) >= {"gp", "theory", "exact", "exact_se", "rhat", "share", "share_se",
                      "verdict", "filter_dim", "sampler"}
    assert r["filter_dim"] == (16 if arch == "fc" else 4)
    assert r["exact_se"] > 0 and np.isfinite(r["exact"]) and r["rhat"] > 0
    assert r["sampler"]["samples"] == 2 * (24 - 6)
    # the same seed gives the same exact number
    r2 = compare(arch, 6, geometry=g, X=X, y=y, X_test=Xt, y_test=yt, temperature=0.1,
                 sweeps=24, chains=2, seed=1)
    assert r2["exact"] == r["exact"]


def test_cli_check_prints_and_writes(tmp_path, capsys):
    rc = main(["check-theory", *TINY, "--input-shape", "16", "--filter", "4", "--activation",
               "relu", "--finite-filter", "--width", "8", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    for text in ("GP (infinite width)", "theory (effective action)", "exact (collapsed sampler)",
                 "R-hat", "verdict:", "M = 4 is below 16", "finite-filter action"):
        assert text in out
    res = json.loads((tmp_path / "check_theory.json").read_text())
    assert res["check"]["filter_dim"] == 4 and res["settings"]["width"] == 8
    assert res["interrupted"] is False and "finite_filter" in res["check"]


def test_cli_deep_cnn(capsys):
    rc = main(["check-theory", *TINY, "--arch", "deepcnn", "--depth", "2", "--input-shape",
               "16", "--filter", "4,2", "--stride", "2,2", "--width", "8"])
    assert rc == 0
    assert "DEEPCNN Nc = 8" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--arch", "deepcnn"], "--depth"),
    (["--depth", "2", "--filter", "4,2"], "--arch deepcnn"),
    (["--atlas", "--task", "gaussian-linear"], "local-teacher"),
    (["--atlas", "--arch", "deepcnn"], "cnn, lcn or fc"),
    (["--atlas-activations", "tanh"], "unknown activation"),
    (["--task", "gaussian-linear", "--noise", "0.1"], "local-teacher"),
])
def test_bad_options_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["check-theory", *TINY, *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "lkr check-theory: error:" in err and message in err


# -- the atlas -----------------------------------------------------------------------------
def _tiny_atlas(**kw):
    args = dict(filter_dims=(4, 16), alphas=(1.0,), activations=("relu",), P=8, P_test=10,
                sweeps=16, chains=2)
    args.update(kw)
    return _atlas.run_atlas(**args)


def test_atlas_rows_table_and_plot(tmp_path):
    res = _tiny_atlas(finite_filter=True)
    assert [r["M"] for r in res["rows"]] == [4, 16] and res["interrupted"] is False
    assert all("finite_filter" in r for r in res["rows"])
    text = _atlas.format_atlas(res)
    assert "M=4" in text and "M=16" in text and "relu" in text and "finite-filter" in text
    assert _atlas.cell_sweeps(1000, 0.25) == 500 and _atlas.cell_sweeps(1000, 4) == 4000
    two = _tiny_atlas(filter_dims=(16,), seeds=2)
    assert [r["seed"] for r in two["rows"]] == [0, 1]
    c = _atlas.cells(two)[("relu", 1.0, 16)]
    rs = two["rows"]
    dt = [r["theory"] - r["gp"] for r in rs]
    de = [r["exact"] - r["gp"] for r in rs]
    assert c["seeds"] == 2 and c["share"] == pytest.approx(sum(dt) / sum(de))
    # jackknife of two: half the distance between the leave-one-out ratios
    assert c["share_se"] == pytest.approx(abs(dt[0] / de[0] - dt[1] / de[1]) / 2)
    one = _atlas.cells(dict(settings=two["settings"], rows=rs[:1]))[("relu", 1.0, 16)]
    assert one["share"] == pytest.approx(rs[0]["share"])
    assert one["share_se"] == pytest.approx(rs[0]["share_se"])
    assert "seed" in _atlas.format_atlas(two)
    fc = _tiny_atlas(arch="fc", filter_dims=(8,))
    assert fc["settings"]["patches"] == 1 and fc["rows"][0]["filter_dim"] == 8
    assert "N0=8" in _atlas.format_atlas(fc)
    pytest.importorskip("matplotlib")
    path = _atlas.plot_atlas(res, str(tmp_path / "atlas.png"))
    assert (tmp_path / "atlas.png").stat().st_size > 1000 and path.endswith("atlas.png")


def test_atlas_cli_writes_json_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    rc = main(["check-theory", "--atlas", "-P", "8", "--P-test", "10", "--sweeps", "16",
               "--chains", "2", "--atlas-M", "4", "--atlas-alphas", "1",
               "--atlas-activations", "erf", "--quiet", "--out", str(tmp_path)])
    assert rc == 0
    assert "Theory atlas" in capsys.readouterr().out
    res = json.loads((tmp_path / "atlas.json").read_text())
    assert len(res["rows"]) == 1 and (tmp_path / "atlas.png").exists()


def test_atlas_without_matplotlib_still_writes_json(tmp_path, monkeypatch, capsys):
    from lkr.experiments import report

    def missing():
        raise ImportError("matplotlib is not installed; pip install matplotlib for the plot")

    monkeypatch.setattr(report, "pyplot", missing)
    rc = main(["check-theory", "--atlas", "-P", "8", "--P-test", "10", "--sweeps", "16",
               "--chains", "2", "--atlas-M", "4", "--atlas-alphas", "1",
               "--atlas-activations", "erf", "--quiet", "--out", str(tmp_path)])
    assert rc == 0 and (tmp_path / "atlas.json").exists()
    assert not (tmp_path / "atlas.png").exists()
    assert "pip install matplotlib" in capsys.readouterr().err


def test_atlas_interrupt_keeps_finished_cells(tmp_path, monkeypatch, capsys):
    calls = []
    real = _theory_check.compare

    def cut_second(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(_atlas, "compare", cut_second)
    with pytest.raises(_interrupt.Interrupted) as info:
        _tiny_atlas()
    res = info.value.results
    assert res["interrupted"] is True and len(res["rows"]) == 1
    assert "M=16" in res["interrupted_during"]
    calls.clear()
    rc = main(["check-theory", "--atlas", "-P", "8", "--P-test", "10", "--sweeps", "16",
               "--chains", "2", "--atlas-M", "4,16", "--atlas-alphas", "1",
               "--atlas-activations", "relu", "--quiet", "--out", str(tmp_path)])
    assert rc == 130
    assert "INTERRUPTED" in capsys.readouterr().out
    saved = json.loads((tmp_path / "atlas.json").read_text())
    assert saved["interrupted"] is True and len(saved["rows"]) == 1
    assert not (tmp_path / "atlas.png").exists()


def test_atlas_stops_when_the_sampler_was_interrupted(monkeypatch):
    # a first Ctrl-C stops the sampler at the end of a sweep (interrupted=True): that cell
    # is dropped and the atlas stops with what is finished
    real = _theory_check.compare
    calls = []

    def cut(*a, **kw):
        calls.append(1)
        return {"interrupted": True, "sweeps_done": 3} if len(calls) == 2 else real(*a, **kw)

    monkeypatch.setattr(_atlas, "compare", cut)
    with pytest.raises(_interrupt.Interrupted) as info:
        _tiny_atlas()
    assert len(info.value.results["rows"]) == 1
