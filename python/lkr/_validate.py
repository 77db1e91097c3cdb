"""Argument checks shared by the public functions: one wording for every message.

Scalars (:func:`real`, :func:`positive`, :func:`integer`, :func:`count`, :func:`width`,
:func:`seed`,
:func:`choice`, :func:`is_integer`) and arrays of samples and labels (:func:`samples`,
:func:`labels`, :func:`targets`), taken from any array library (:mod:`lkr._arrays`).
"""
from __future__ import annotations

import numpy as np

from . import _arrays

__all__ = ["real", "positive", "integer", "count", "width", "seed", "choice", "is_integer", "samples",
           "labels", "targets", "ArgumentTypeError"]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type. A TypeError; also a ValueError, because several of
    lkr's checks raised ValueError for a wrong type before they were made one."""


def real(value, name: str, *, positive: bool = False, nonneg: bool = False) -> float:
    """``float(value)``, or TypeError/ValueError naming ``name`` and the value. A string
    (``'0.1'``) is refused like a bool: a number typed as text is a mistake upstream."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise ArgumentTypeError(f"{name} must be a real number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"{name} must be a real number, got {value!r}") from None
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and not v > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    if nonneg and v < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return v


def positive(value, name: str) -> float:
    """A positive, finite real number."""
    try:
        return real(value, name, positive=True)
    except ArgumentTypeError:
        raise
    except ValueError:
        raise ValueError(f"{name} must be positive and finite, got {value!r}") from None


def _integer_kind(minimum) -> str:
    if minimum is None:
        return "an integer"
    if minimum == 0:
        return "a non-negative integer"
    if minimum == 1:
        return ">= 1 (a positive integer)"
    return f">= {minimum} (an integer)"


def is_integer(value) -> bool:
    """True for a Python or NumPy integer; False for a bool (which Python counts as one)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def integer(value, name: str, minimum=None) -> int:
    """An integer (not a bool), at least ``minimum`` when given.

    A value of the wrong type raises :class:`ArgumentTypeError` (a TypeError), a value
    below ``minimum`` a ValueError; both say ``"{name} must be <kind>, got {value!r}"``.
    """
    if not is_integer(value):
        raise ArgumentTypeError(f"{name} must be {_integer_kind(minimum)}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be {_integer_kind(minimum)}, got {value!r}")
    return int(value)


def count(value, name: str, minimum: int = 1) -> int:
    """A count: an integer of at least ``minimum`` (1 unless said)."""
    return integer(value, name, minimum)


def width(value, name: str = "width") -> int:
    """A hidden width (units N1, channels Nc): a positive integer, or a float with an integer
    value (``64.0``, e.g. from ``P / alpha``), returned as an int. A string (``'64'``), a
    fraction (2.5), a bool or a non-finite value raises :class:`ArgumentTypeError` (a
    TypeError and a ValueError); 0 or less a ValueError."""
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        value = int(value)
    if not is_integer(value):
        raise ArgumentTypeError(f"{name} must be a positive integer (a number of units or "
                                f"channels), got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer (a number of units or "
                         f"channels), got {value!r}")
    return int(value)


def seed(value, name: str = "seed") -> int:
    """A seed: a non-negative integer (TypeError for a non-integer, ValueError when < 0)."""
    return integer(value, name, 0)


def choice(value, name: str, options):
    """``value`` if it is one of ``options``, else ValueError naming them."""
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")
    return value


# -- arrays of samples and labels ---------------------------------------------------------------
def samples(X, name: str = "X", *, dtype=None):
    """Inputs with samples first, shape (P, ...) with P >= 1, real and finite, in their own
    array library (NumPy or CuPy; others through DLPack); C-contiguous in ``dtype`` when
    given. TypeError for complex or non-numeric data, ValueError naming the shape or the
    first non-finite entry."""
    a = _arrays.asarray(X, name)
    _arrays.check_floating(a, name)
    if a.ndim < 2 or a.shape[0] < 1:
        raise ValueError(f"{name} must have shape (P, ...) with P >= 1 samples first, got "
                         f"shape {tuple(a.shape)}")
    if dtype is not None:
        a = _arrays.array_module(a).ascontiguousarray(a, dtype=dtype)
    _arrays.check_finite(a, name)
    return a


def labels(y, P: int, name: str = "y", xp=None, dtype=None):
    """Scalar labels of P samples: shape (P,), real and finite; in the array library ``xp``
    and ``dtype`` when given (a copy only where they differ)."""
    a = _arrays.asarray(y, name)
    _arrays.check_floating(a, name)
    if a.ndim != 1 or a.shape[0] != P:
        raise ValueError(f"{name} must have shape ({P},), got {tuple(a.shape)}")
    if xp is not None or dtype is not None:
        xp = _arrays.array_module(a) if xp is None else xp
        a = xp.asarray(a, dtype=dtype)
    _arrays.check_finite(a, name)
    return a


def targets(y, P: int, xp, *, multi: bool = False, what: str = "this theory"):
    """Training targets as float64: a vector of length P, or with ``multi`` a (P, D) matrix.

    (P,) and (P, 1) give a vector (the single-output shapes); (P, D) with D >= 2 gives a
    matrix when ``multi`` is true and a ValueError naming ``what`` otherwise. D = 0, a row
    count other than P, another device than ``xp``'s and NaN/inf raise.
    """
    ya = _arrays.asarray(y, "y")
    _arrays.check_floating(ya, "y")
    if ya.ndim == 2 and ya.shape[1] == 1:
        ya = ya[:, 0]
    if ya.ndim not in (1, 2) or ya.shape[0] != P:
        raise ValueError(f"y must have shape ({P},) or ({P}, D) (one row of labels per "
                         f"sample of X), got shape {tuple(ya.shape)}")
    if ya.ndim == 2:
        if ya.shape[1] == 0:
            raise ValueError(f"y has D = 0 outputs (shape {tuple(ya.shape)}); need D >= 1")
        if not multi:
            raise ValueError(f"{what} takes one output: y must have shape ({P},), got shape "
                             f"{tuple(ya.shape)} (D = {ya.shape[1]} outputs)")
    if _arrays.array_module(ya) is not xp:
        raise TypeError("y and X live on different devices (one NumPy, one CuPy); move them "
                        "to one device first")
    ya = xp.ascontiguousarray(ya, dtype=np.float64)
    _arrays.check_finite(ya, "y")
    return ya
