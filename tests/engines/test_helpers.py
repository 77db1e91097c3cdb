"""The one-home helpers: the JSON converter, the argument checks, the progress bar."""
import io
import json
import math

import numpy as np
import pytest

from lkr import _json, _validate, backend, ntk, spectrum, train
from lkr._progress import progress_bar


# -- JSON ----------------------------------------------------------------------------------------
def test_json_writes_nan_and_inf_as_null():
    obj = {"a": float("nan"), "b": [1.0, float("inf"), -np.inf], "c": np.float32("nan"),
           "d": np.array([0.5, np.nan]), 3: np.int64(7), "e": (np.bool_(True), None, "x")}
    text = _json.dumps(obj)
    back = json.loads(text)
    assert back == {"a": None, "b": [1.0, None, None], "c": None, "d": [0.5, None], "3": 7,
                    "e": [True, None, "x"]}
    # strict JSON: the standard library's strict reader accepts it (no NaN/Infinity tokens)
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard token {c}"))


def test_json_uses_to_dict_and_str():
    class R:
        def to_dict(self):
            return {"x": math.nan}

    class P:
        def __str__(self):
            return "a/path"

    assert _json.jsonable({"r": R(), "p": P()}) == {"r": {"x": None}, "p": "a/path"}


def test_json_dump_writes_a_file(tmp_path):
    path = tmp_path / "out.json"
    with open(path, "w") as fh:
        _json.dump({"v": np.array([1.0, np.inf])}, fh)
    assert json.loads(path.read_text()) == {"v": [1.0, None]}


def test_results_use_the_one_converter():
    # a result with NaN inside (one chain: no standard error) writes standard JSON
    net = __import__("lkr").nets.FCNet(3, 4, seed=0)
    X, y = np.random.default_rng(0).standard_normal((5, 3)), np.zeros(5)
    res = train.langevin(net, X, y, 0.1, lr=0.01, steps=4, burn_in=2, chains=1, X_test=X,
                         y_test=y, progress=False)
    d = json.loads(res.to_json())
    assert d["test_error"]["error_se"] is None


# -- argument checks -----------------------------------------------------------------------------
INTEGER_CHECKS = [
    ("seed", lambda v: train.langevin(*_tiny(), 0.1, steps=2, seed=v, progress=False)),
    ("seed", lambda v: train.gradient_descent(*_tiny(), 0.01, 2, seed=v)),
    ("seed", lambda v: __import__("lkr").data.load_task("gaussian-linear", 4, 4, v)),
    ("nthreads", backend.set_num_threads),
    ("max_bytes", lambda v: ntk.empirical_ntk(_tiny()[0], _tiny()[1], max_bytes=v)),
    ("k", lambda v: spectrum.top_k(np.eye(4), v)),
    ("depth", lambda v: __import__("lkr").theory.DeepFCTheory(depth=v, width=4, temperature=0.1)),
]


def _tiny():
    from lkr import nets

    rng = np.random.default_rng(1)
    return nets.FCNet(3, 4, seed=0), rng.standard_normal((5, 3)), rng.standard_normal(5)


@pytest.mark.parametrize("name, call", INTEGER_CHECKS, ids=[n for n, _ in INTEGER_CHECKS])
def test_integer_arguments_agree_on_the_error_class(name, call):
    # a wrong type is a TypeError, a bad value a ValueError; both name the argument
    for bad_type in (1.5, "3", True):
        with pytest.raises(TypeError, match=name):
            call(bad_type)
    with pytest.raises(ValueError, match=name):
        call(-1)


def test_validate_helpers():
    assert _validate.integer(np.int32(3), "n", 1) == 3
    assert _validate.seed(0) == 0
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -2"):
        _validate.seed(-2)
    with pytest.raises(TypeError, match="seed must be a non-negative integer, got None"):
        _validate.seed(None)
    with pytest.raises(ValueError, match=r"n must be >= 3 \(an integer\), got 2"):
        _validate.integer(2, "n", 3)
    # a wrong type is a TypeError (that older callers may still catch as a ValueError)
    assert issubclass(_validate.ArgumentTypeError, TypeError)
    assert _validate.choice("a", "x", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"x must be one of \('a', 'b'\), got 'c'"):
        _validate.choice("c", "x", ("a", "b"))
    with pytest.raises(TypeError, match="lr must be a real number"):
        _validate.real("fast", "lr")
    with pytest.raises(ValueError, match="lr must be finite"):
        _validate.real(float("nan"), "lr")


# -- progress ------------------------------------------------------------------------------------
def test_progress_bar_is_quiet_off_a_terminal_unless_asked():
    stream = io.StringIO()  # not a terminal
    with progress_bar(5, "job", None, stream=stream) as bar:
        bar.update(5)
    assert stream.getvalue() == ""
    with progress_bar(5, "job", True, stream=stream) as bar:
        bar.update(5)
    assert "job" in stream.getvalue() and "5/5" in stream.getvalue()


def test_integer_predicate():
    from lkr._validate import is_integer

    assert is_integer(3) and is_integer(np.int64(-2))
    assert not any(is_integer(v) for v in (True, np.bool_(False), 3.0, "3", None))


def test_sample_and_label_checks():
    from lkr._validate import labels, samples, targets

    X = samples(np.ones((3, 2), dtype=np.float32), dtype=np.float64)
    assert X.dtype == np.float64 and X.flags.c_contiguous
    for bad in (np.ones(3), np.ones((0, 2))):
        with pytest.raises(ValueError, match=r"X must have shape \(P, \.\.\.\) with P >= 1"):
            samples(bad)
    with pytest.raises(TypeError, match="real-valued"):
        samples(np.ones((2, 2), dtype=complex))
    with pytest.raises(ValueError, match="non-finite"):
        samples(np.array([[1.0, np.nan]]))
    assert labels([1, 2, 3], 3, xp=np, dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match=r"y_test must have shape \(3,\)"):
        labels(np.ones(2), 3, "y_test")
    assert targets(np.ones((3, 1)), 3, np).shape == (3,)
    with pytest.raises(ValueError, match="takes one output"):
        targets(np.ones((3, 2)), 3, np, what="FCTheory")
