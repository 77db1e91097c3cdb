"""Parameter sweeps of the theories on any ``concurrent.futures.Executor``, with resume.

One point of a grid is a dict of keyword arguments for a theory factory (``width``,
``temperature``, ``seed``, ...); each point is fitted on the training set and evaluated on
the test set, independently of the others, so a sweep runs serially, on a process pool or
on a Dask cluster (``lkr.distributed.executor``) alike. With ``out``, every finished point
is appended to a JSON-lines file at once, and a rerun skips the points already there: an
interrupted sweep resumes where it stopped.
"""
from __future__ import annotations

import concurrent.futures as cf
import itertools
import json
import numbers
import os
import pickle
import time
import warnings

import numpy as np

from .._json import dumps

__all__ = ["sweep", "grid_points"]

#: Result columns of the rows (lkr's solution summary and the scores), which parameter
#: names must not shadow.
_RESULT_KEYS = ("Q", "mean_diagonal", "mean_off_diagonal", "min_eigenvalue", "max_eigenvalue",
                "action", "converged", "iterations", "rel_grad_norm", "grad_norm", "error",
                "bias2", "variance", "elapsed_s", "conjugate", "outputs", "per_output",
                "filter_dim", "accuracy", "confusion", "class_coding")


def _plain(value, where):
    """A JSON-representable copy of one grid value (NumPy scalars to Python)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    raise TypeError(f"{where} = {value!r} ({type(value).__name__}) is not a number, string, "
                    "bool, None or a list of them; sweep points must be JSON values so that "
                    "results can be written and matched on resume")


def grid_points(grid):
    """The points of a grid, in order.

    Parameters
    ----------
    grid : dict of lists, or list of dicts
        A dict ``{name: [values...]}`` is expanded to its cartesian product (in the dict's
        key order, the last key varying fastest); a list of dicts is taken as it is.

    Returns
    -------
    list of dict
        Each point's values as plain Python values (NumPy scalars converted).
    """
    if isinstance(grid, dict):
        names = list(grid)
        axes = []
        for name in names:
            if not isinstance(name, str):
                raise TypeError(f"grid keys must be strings (keyword names), got {name!r}")
            values = grid[name]
            if isinstance(values, np.ndarray):
                values = values.tolist()
            if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, range)):
                raise TypeError(f"grid[{name!r}] must be a list of values, got {values!r}; "
                                f"wrap a single value as [{values!r}]")
            if len(values) == 0:
                raise ValueError(f"grid[{name!r}] is empty")
            axes.append(values)
        raw = [dict(zip(names, combo)) for combo in itertools.product(*axes)]
    elif isinstance(grid, (list, tuple)):
        raw = list(grid)
        for i, point in enumerate(raw):
            if not isinstance(point, dict):
                raise TypeError(f"grid[{i}] must be a dict of keyword arguments, got {point!r}")
    else:
        raise TypeError(f"grid must be a dict of lists or a list of dicts, got "
                        f"{type(grid).__name__}")
    points, seen = [], set()
    for i, point in enumerate(raw):
        clean = {}
        for name, value in point.items():
            if not isinstance(name, str):
                raise TypeError(f"point {i}: keys must be strings, got {name!r}")
            if name in _RESULT_KEYS:
                raise ValueError(f"point {i}: {name!r} is a result column of the sweep and "
                                 "cannot be a parameter name")
            clean[name] = _plain(value, f"point {i}: {name}")
        key = _key(clean)
        if key in seen:
            raise ValueError(f"grid has the point {clean!r} twice; add a distinguishing "
                             "parameter (e.g. a seed) if repeats are meant")
        seen.add(key)
        points.append(clean)
    return points


def _key(point):
    return json.dumps(point, sort_keys=True)


def _summary(solution):
    """The solution's JSON-friendly digest (lkr's Solution.summary(), or its main fields)."""
    if hasattr(solution, "summary"):
        out = dict(solution.summary())
    else:
        out = {k: getattr(solution, k) for k in ("action", "iterations", "converged")
               if hasattr(solution, k)}
    out["grad_norm"] = getattr(solution, "grad_norm", None)
    out["converged"] = getattr(solution, "converged", out.get("converged"))
    return out


def _run_point(theory_factory, point, X, y, X_test, y_test):
    """Fit and evaluate one point (runs on a worker); returns its row."""
    t0 = time.perf_counter()
    theory = theory_factory(**point)
    for method in ("fit", "evaluate"):
        if not callable(getattr(theory, method, None)):
            raise TypeError(f"theory_factory(**{point!r}) returned a {type(theory).__name__}, "
                            f"which has no {method}() method")
    solution = theory.fit(X, y)
    scores = theory.evaluate(X_test, y_test)
    elapsed = time.perf_counter() - t0
    results = _summary(solution)
    results.update(error=scores["error"], bias2=scores["bias2"], variance=scores["variance"],
                   elapsed_s=elapsed)
    if "per_output" in scores:  # several outputs: the length-D breakdown as lists
        results["per_output"] = {k: list(map(float, v))
                                 for k, v in scores["per_output"].items()}
    if "accuracy" in scores:  # class targets (lkr.theory._classes)
        results.update(accuracy=float(scores["accuracy"]),
                       confusion=np.asarray(scores["confusion"]).tolist(),
                       class_coding=scores["class_coding"])
    clash = sorted(set(point) & set(results))
    if clash:
        raise ValueError(f"parameter name(s) {clash} clash with result columns of the sweep; "
                         "rename them in the grid")
    row = dict(point)
    row.update(results)
    # Through JSON so that a fresh row and one read back on resume are the same values.
    return json.loads(dumps(row))


def _read_done(out, points):
    """Rows already in ``out`` for the given points, by point key (later lines win)."""
    done = {}
    if out is None or not os.path.exists(out):
        return done
    wanted = {_key(p): list(p) for p in points}
    names = {tuple(sorted(v)) for v in wanted.values()}
    with open(out, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                # A line cut short by an interruption: its point is simply run again.
                warnings.warn(f"{out}:{lineno}: unreadable line skipped (its point will be "
                              "recomputed)", RuntimeWarning, stacklevel=3)
                continue
            if not isinstance(row, dict):
                continue
            for keys in names:
                if all(k in row for k in keys):
                    k = _key({n: row[n] for n in keys})
                    if k in wanted:
                        done[k] = row
    return done


class _Writer:
    """Appends one JSON line per finished point, flushed and synced at once."""

    def __init__(self, path):
        self.fh = None
        if path is None:
            return
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        needs_newline = False
        if os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                needs_newline = fh.read(1) != b"\n"
        self.fh = open(path, "a", encoding="utf-8")
        if needs_newline:  # do not glue a new row onto a line cut short
            self.fh.write("\n")

    def write(self, row):
        if self.fh is None:
            return
        self.fh.write(dumps(row) + "\n")
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self):
        if self.fh is not None:
            self.fh.close()


def sweep(theory_factory, grid, X, y, X_test, y_test, executor=None, out=None):
    """Fit and evaluate a theory at every point of a parameter grid.

    Parameters
    ----------
    theory_factory : callable
        ``theory_factory(**point)`` returns an object with ``fit(X, y)`` (returning a
        solution: lkr's :class:`~lkr.theory.result.Solution` or anything with
        ``converged``, ``action``, ``grad_norm``, ``iterations``) and
        ``evaluate(X_test, y_test)`` (returning ``{"error", "bias2", "variance"}``), e.g. a
        theory class itself, or ``functools.partial(CNNTheory, geometry=g)``. It must be
        picklable for a ``ProcessPoolExecutor`` (a module-level function or a class, not a
        lambda); Dask pickles lambdas too.
    grid : dict of lists, or list of dicts
        The points: a dict is expanded to its cartesian product (last key fastest), a list
        of dicts is taken in order (see :func:`grid_points`). Values must be JSON values
        (numbers, strings, bools, None, lists).
    X, y : array_like
        Training set.
    X_test, y_test : array_like
        Test set.
    executor : concurrent.futures.Executor, optional
        Where the points run: ``None`` runs them one after another in this process; a
        ``ProcessPoolExecutor``, or a Dask client's executor
        (:func:`lkr.distributed.executor`, ``client.get_executor()``) runs them in parallel.
        Create a process pool with ``mp_context=multiprocessing.get_context("spawn")``: a
        forked child can deadlock in OpenMP or BLAS (a fork-started pool warns).
    out : str or os.PathLike, optional
        A JSON-lines file. Each finished point is appended at once (one line, flushed), and
        points already in the file are not run again but read back: rerunning an
        interrupted sweep computes only the missing points. Lines of other points are kept.

    Returns
    -------
    list of dict
        One row per point, in grid order: the point's parameters, the solution summary
        (``action``, ``converged``, ``iterations``, ``rel_grad_norm``, ``grad_norm`` and
        ``Q`` or, for a matrix Q, its mean diagonal, mean off-diagonal and extreme
        eigenvalues), ``filter_dim`` (M of the renormalised layer, FC: N0; below 16 the
        fit warns, docs/validity.md), ``conjugate`` (non-central actions) and ``outputs``
        (D > 1) when present, ``error``, ``bias2``, ``variance`` (means over test points and
        outputs), ``per_output`` (D outputs: the three as length-D lists), for class targets
        (one-hot, +-1; see :meth:`lkr.theory.Prediction.error`) ``accuracy``, ``confusion``
        (true by predicted class, a list of lists) and ``class_coding``, and ``elapsed_s`` (seconds of
        fit and evaluation on the worker). ``pandas.DataFrame(rows)`` makes it a table.

    Raises
    ------
    RuntimeError
        When a point fails; the remaining queued points are cancelled, and the points
        finished so far are already in ``out``.
    """
    if not callable(theory_factory):
        raise TypeError(f"theory_factory must be callable, got {type(theory_factory).__name__}")
    if executor is not None and not isinstance(executor, cf.Executor):
        submit = getattr(executor, "submit", None)
        if not callable(submit):
            raise TypeError("executor must be a concurrent.futures.Executor (or None for "
                            f"serial), got {type(executor).__name__}")
    if isinstance(executor, cf.ProcessPoolExecutor):
        ctx = getattr(executor, "_mp_context", None)
        if ctx is not None and ctx.get_start_method() == "fork":
            warnings.warn("a fork-started ProcessPoolExecutor can deadlock once OpenMP or BLAS "
                          "threads have run in this process; create it with "
                          "mp_context=multiprocessing.get_context('spawn')", RuntimeWarning,
                          stacklevel=2)
        try:
            pickle.dumps(theory_factory)
        except Exception as exc:
            raise TypeError("theory_factory cannot be pickled for a ProcessPoolExecutor "
                            f"({exc}); use a module-level function, a class or "
                            "functools.partial instead of a lambda or local function") from exc
    out = None if out is None else os.fspath(out)
    points = grid_points(grid)
    done = _read_done(out, points)
    todo = [p for p in points if _key(p) not in done]
    rows = dict(done)
    writer = _Writer(out if todo else None)
    try:
        if executor is None:
            for p in todo:
                try:
                    row = _run_point(theory_factory, p, X, y, X_test, y_test)
                except Exception as exc:
                    raise _failure(p, exc, out) from exc
                writer.write(row)
                rows[_key(p)] = row
        else:
            futures = {executor.submit(_run_point, theory_factory, p, X, y, X_test, y_test): p
                       for p in todo}
            try:
                for fut in cf.as_completed(futures):
                    p = futures[fut]
                    try:
                        row = fut.result()
                    except Exception as exc:
                        raise _failure(p, exc, out) from exc
                    writer.write(row)
                    rows[_key(p)] = row
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    finally:
        writer.close()
    return [rows[_key(p)] for p in points]


def _failure(point, exc, out):
    where = f"; the points finished so far are in {out}" if out else ""
    return RuntimeError(f"sweep point {point!r} failed: {type(exc).__name__}: {exc}{where}")
