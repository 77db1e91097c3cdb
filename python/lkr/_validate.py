"""Argument checks shared by the public functions: one wording for every message."""
from __future__ import annotations

import numpy as np

__all__ = ["real", "positive", "integer", "count", "seed", "choice", "ArgumentTypeError"]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type. A TypeError; also a ValueError, because several of
    lkr's checks raised ValueError for a wrong type before they were made one."""


def real(value, name: str, *, positive: bool = False, nonneg: bool = False) -> float:
    """``float(value)``, or TypeError/ValueError naming ``name`` and the value."""
    if isinstance(value, (bool, np.bool_)):
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


def integer(value, name: str, minimum=None) -> int:
    """An integer (not a bool), at least ``minimum`` when given.

    A value of the wrong type raises :class:`ArgumentTypeError` (a TypeError), a value
    below ``minimum`` a ValueError; both say ``"{name} must be <kind>, got {value!r}"``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ArgumentTypeError(f"{name} must be {_integer_kind(minimum)}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be {_integer_kind(minimum)}, got {value!r}")
    return int(value)


def count(value, name: str, minimum: int = 1) -> int:
    """A count: an integer of at least ``minimum`` (1 unless said)."""
    return integer(value, name, minimum)


def seed(value, name: str = "seed") -> int:
    """A seed: a non-negative integer (TypeError for a non-integer, ValueError when < 0)."""
    return integer(value, name, 0)


def choice(value, name: str, options):
    """``value`` if it is one of ``options``, else ValueError naming them."""
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")
    return value
