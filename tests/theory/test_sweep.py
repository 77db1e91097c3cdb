"""lkr.theory.sweep serially and on a process pool (no Dask): grid expansion, row order and
content, resume from the JSON lines, and clear errors."""
import concurrent.futures as cf
import functools
import json
import multiprocessing

import numpy as np
import pytest

from lkr.theory import FCTheory, sweep
from lkr.theory.sweep import grid_points


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((24, 6))
    y = np.sign(X[:, 0] * X[:, 1])
    Xt = rng.standard_normal((10, 6))
    yt = np.sign(Xt[:, 0] * Xt[:, 1])
    return X, y, Xt, yt


GRID = {"width": [12, 48], "temperature": [0.02, 0.2], "lambda1": [1.0]}


def fc(width, temperature, lambda1=1.0, fail=False, log=None):
    """Module-level (picklable) factory; ``log`` counts calls across processes, ``fail``
    makes this point raise."""
    if log is not None:
        with open(log, "a") as fh:
            fh.write(f"{width} {temperature}\n")
    if fail:
        raise RuntimeError(f"point width={width} fails on purpose")
    return FCTheory(width=width, temperature=temperature, activation="erf", lambda1=lambda1)


def _pool(n):
    # spawn, not fork: a child forked after OpenMP/BLAS threads ran here can deadlock.
    return cf.ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]


def test_grid_points():
    pts = grid_points({"a": [1, 2], "b": ["x", "y", "z"]})
    assert pts == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 1, "b": "z"},
                   {"a": 2, "b": "x"}, {"a": 2, "b": "y"}, {"a": 2, "b": "z"}]
    pts = grid_points({"a": np.array([0.5, 1.5]), "b": [np.int64(3)]})
    assert pts == [{"a": 0.5, "b": 3}, {"a": 1.5, "b": 3}]
    assert type(pts[0]["a"]) is float and type(pts[0]["b"]) is int
    assert grid_points([{"a": 2}, {"a": 1, "c": True}]) == [{"a": 2}, {"a": 1, "c": True}]
    with pytest.raises(TypeError, match="list of values"):
        grid_points({"a": 3})
    with pytest.raises(TypeError, match="list of values"):
        grid_points({"a": "abc"})
    with pytest.raises(ValueError, match="empty"):
        grid_points({"a": []})
    with pytest.raises(ValueError, match="twice"):
        grid_points([{"a": 1}, {"a": 1}])
    with pytest.raises(ValueError, match="result column"):
        grid_points({"error": [1]})
    with pytest.raises(TypeError, match="JSON"):
        grid_points({"a": [object()]})
    with pytest.raises(TypeError, match="dict of lists or a list of dicts"):
        grid_points(5)


def test_serial_rows(data):
    X, y, Xt, yt = data
    rows = sweep(fc, GRID, X, y, Xt, yt)
    assert [(r["width"], r["temperature"]) for r in rows] == \
        [(12, 0.02), (12, 0.2), (48, 0.02), (48, 0.2)]
    for r in rows:
        th = FCTheory(width=r["width"], temperature=r["temperature"], activation="erf")
        sol = th.fit(X, y)
        ev = th.evaluate(Xt, yt)
        assert r["Q"] == pytest.approx(float(sol.Q), rel=1e-12)
        assert r["action"] == pytest.approx(sol.action, rel=1e-12)
        assert r["converged"] is True and r["converged"] == sol.converged
        for k in ("error", "bias2", "variance"):
            assert r[k] == pytest.approx(ev[k], rel=1e-12)
        assert r["error"] == pytest.approx(r["bias2"] + r["variance"], rel=1e-12)
        assert r["elapsed_s"] > 0 and r["lambda1"] == 1.0
        json.dumps(r)  # every row is JSON


def test_process_pool_equals_serial(data):
    X, y, Xt, yt = data
    serial = sweep(fc, GRID, X, y, Xt, yt)
    with _pool(2) as ex:
        pooled = sweep(fc, GRID, X, y, Xt, yt, executor=ex)
    assert _strip(pooled) == _strip(serial)


def test_process_pool_needs_picklable_factory(data):
    X, y, Xt, yt = data
    with _pool(1) as ex:
        with pytest.raises(TypeError, match="pickled"):
            sweep(lambda **p: fc(**p), GRID, X, y, Xt, yt, executor=ex)


def test_resume_runs_only_missing_points(data, tmp_path):
    X, y, Xt, yt = data
    out = tmp_path / "runs" / "sweep.jsonl"
    log = tmp_path / "calls.txt"
    points = grid_points(GRID)
    # A sweep interrupted at its third point (serial: the first two are finished).
    boom = functools.partial(fc, log=str(log))

    def interrupted(**p):
        return boom(**p, fail=(p["width"], p["temperature"]) == (48, 0.02))

    with pytest.raises(RuntimeError, match="fails on purpose"):
        sweep(interrupted, GRID, X, y, Xt, yt, out=out)
    assert len(out.read_text().splitlines()) == 2
    assert len(log.read_text().splitlines()) == 3
    # Rerun on a process pool: only the two missing points are computed.
    with _pool(2) as ex:
        rows = sweep(functools.partial(fc, log=str(log)), GRID, X, y, Xt, yt, executor=ex,
                     out=out)
    assert len(log.read_text().splitlines()) == 3 + 2
    assert _strip(rows) == _strip(sweep(fc, GRID, X, y, Xt, yt))
    assert [(r["width"], r["temperature"]) for r in rows] == \
        [(p["width"], p["temperature"]) for p in points]
    lines = [json.loads(s) for s in out.read_text().splitlines()]
    assert len(lines) == 4
    # Done: a third run computes nothing and returns the same rows.
    assert sweep(functools.partial(fc, log=str(log)), GRID, X, y, Xt, yt, out=out) == rows
    assert len(log.read_text().splitlines()) == 5


def test_resume_after_a_cut_line(data, tmp_path):
    X, y, Xt, yt = data
    out = tmp_path / "sweep.jsonl"
    full = sweep(fc, GRID, X, y, Xt, yt, out=out)
    lines = out.read_text().splitlines()
    # The process died while writing the last line: half of it is on disk.
    out.write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2])
    log = tmp_path / "calls.txt"
    with pytest.warns(RuntimeWarning, match="unreadable line"):
        rows = sweep(functools.partial(fc, log=str(log)), GRID, X, y, Xt, yt, out=out)
    assert len(log.read_text().splitlines()) == 1
    assert _strip(rows) == _strip(full)
    parsed = []
    for s in out.read_text().splitlines():
        try:
            parsed.append(json.loads(s))
        except json.JSONDecodeError:
            pass
    assert len(parsed) == 4  # the new row is on its own line, not glued to the cut one


def test_other_points_in_file_are_kept(data, tmp_path):
    X, y, Xt, yt = data
    out = tmp_path / "sweep.jsonl"
    sweep(fc, {"width": [12], "temperature": [0.5]}, X, y, Xt, yt, out=out)
    rows = sweep(fc, {"width": [12], "temperature": [0.02]}, X, y, Xt, yt, out=out)
    assert [r["temperature"] for r in rows] == [0.02]
    assert len(out.read_text().splitlines()) == 2


def test_fork_pool_warns(data):
    X, y, Xt, yt = data
    with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as ex:
        with pytest.warns(RuntimeWarning, match="spawn"):
            # An empty list of points: nothing is submitted, so nothing can hang.
            assert sweep(fc, [], X, y, Xt, yt, executor=ex) == []


def test_errors(data):
    X, y, Xt, yt = data
    with pytest.raises(TypeError, match="callable"):
        sweep(3, GRID, X, y, Xt, yt)
    with pytest.raises(TypeError, match="Executor"):
        sweep(fc, GRID, X, y, Xt, yt, executor="pool")
    with pytest.raises(RuntimeError, match=r"width.*12.*no fit\(\)"):
        sweep(lambda **p: object(), {"width": [12]}, X, y, Xt, yt)
    with pytest.raises(RuntimeError, match="unexpected keyword|got an unexpected"):
        sweep(fc, {"depth": [2]}, X, y, Xt, yt)


def test_distributed_without_dask_says_how_to_install(monkeypatch):
    # Here rather than in test_distributed.py, which is skipped as a whole without Dask.
    import sys

    from lkr import distributed as ld

    monkeypatch.setitem(sys.modules, "distributed", None)  # makes `import distributed` fail
    with pytest.raises(ImportError, match=r"pip install lkr\[distributed\]"):
        ld.renormalized_kernel(np.zeros((2, 4)), Q=np.eye(1), geometry=None, client=None)
    with pytest.raises(ImportError, match=r"pip install lkr\[distributed\]"):
        with ld.executor(workers=1):
            pass
