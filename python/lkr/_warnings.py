"""lkr's own warning classes (the test suite turns them into errors where they are not the
point of a test)."""
from __future__ import annotations

__all__ = ["LkrWarning", "SamplingWarning", "ConvergenceWarning", "ActivationCaveatWarning"]


class LkrWarning(UserWarning):
    """Base class of every warning lkr issues."""


class SamplingWarning(LkrWarning):
    """Sampling stopped early (interrupted) or produced no samples."""


class ConvergenceWarning(LkrWarning, RuntimeWarning):
    """A solver stopped before its tolerance was met (the result is returned anyway)."""


class ActivationCaveatWarning(LkrWarning):
    """A theory is used with an activation for which it is an approximation (non-odd)."""
