"""lkr's own warning classes (the test suite turns them into errors where they are not the
point of a test)."""
from __future__ import annotations

__all__ = ["LkrWarning", "SamplingWarning", "ConvergenceWarning", "ActivationCaveatWarning",
           "TheoryRegimeWarning"]


class LkrWarning(UserWarning):
    """Base class of every warning lkr issues."""


class SamplingWarning(LkrWarning):
    """Sampling stopped early (interrupted) or produced no samples."""


class ConvergenceWarning(LkrWarning, RuntimeWarning):
    """A solver stopped before its tolerance was met (the result is returned anyway)."""


class ActivationCaveatWarning(LkrWarning):
    """A theory is used with an activation for which it is an approximation (non-odd)."""


class TheoryRegimeWarning(LkrWarning):
    """An effective action is used outside the regime where it was measured to hold: the
    filter dimension M of its renormalised layer (FC: the input dimension N0) is small, so
    the Gaussian equivalence behind the action is poor (docs/validity.md)."""
