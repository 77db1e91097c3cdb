"""The one JSON converter of lkr: standard JSON, NaN and infinities written as null.

Every writer of results (``LangevinResult.to_dict``, ``lkr fc-vs-cnn``, ``lkr train``,
``lkr info``, the theory sweeps) goes through :func:`jsonable` / :func:`dumps`, so that every
file lkr writes is strict JSON (``json.dumps(..., allow_nan=False)`` accepts it) and a
missing or non-finite number reads back as ``None``.
"""
from __future__ import annotations

import json
import math

import numpy as np

__all__ = ["jsonable", "dumps", "dump"]


def jsonable(x):
    """A JSON-friendly copy: dicts (keys as str), lists, tuples, arrays (-> lists), NumPy
    scalars (-> Python), objects with ``to_dict``; non-finite floats -> None; anything else
    -> its ``str``."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "shape") and hasattr(x, "tolist"):
        if type(x).__module__.split(".")[0] == "cupy":
            x = x.get()
        return jsonable(np.asarray(x).tolist())
    if isinstance(x, np.generic):
        return jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "to_dict"):
        return jsonable(x.to_dict())
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return str(x)  # e.g. a path: its text


def dumps(obj, **kwargs) -> str:
    """``json.dumps`` of :func:`jsonable` (obj), strict (``allow_nan=False``)."""
    return json.dumps(jsonable(obj), allow_nan=False, **kwargs)


def dump(obj, fh, **kwargs) -> None:
    """``json.dump`` of :func:`jsonable` (obj) into an open file, strict."""
    json.dump(jsonable(obj), fh, allow_nan=False, **kwargs)
