"""Where the effective actions hold: the filter dimension check behind
:class:`~lkr._warnings.TheoryRegimeWarning` (docs/validity.md).

Every CNN, LCN and deep-CNN action is the saddle point of a Gaussian-equivalent model: each
channel's readout sums over patches are taken jointly Gaussian over the channel's filter.
That needs a large filter dimension M = C_in k_h k_w of the renormalised layer (FC: a large
input dimension N0), because the filter norm |w_a|^2 lambda0 / M ~ chi^2_M / M, shared by
every patch and sample of a channel, fluctuates with relative variance 2 / M. Linear
networks are exempt: their preactivations are exactly Gaussian over the weights.

The theories call :func:`check` once per fit; :data:`MEASURED` holds the measured share of
the finite-width shift that quotes the consequence in the warning.
"""
from __future__ import annotations

import warnings

from .._warnings import TheoryRegimeWarning

__all__ = ["MIN_FILTER_DIM", "MEASURED", "message", "check"]

#: Below this filter dimension (FC: input dimension) the theories warn.
MIN_FILTER_DIM = 16

#: The share of the finite-width shift, (theory - GP) / (exact - GP), that the actions
#: captured against the exact collapsed sampler, over three teacher tasks (P = 24, T = 0.1,
#: alpha = 0.25-4; FC alpha = 0.25-1; docs/validity.md sections 3 and 8):
#: (architecture, activation) -> {M (FC: N0): range}.
MEASURED = {
    ("cnn", "relu"): {4: "-570% to -40% (the wrong sign)", 9: "8% to 76%", 16: "53% to 76%",
                      64: "75% to 110%"},
    ("cnn", "erf"): {4: "150% to 660% (several times the shift)", 9: "-16% to 107%",
                     16: "56% to 112%", 64: "79% to 100%"},
    ("fc", "relu"): {4: "19% to 74%", 9: "35% to 83%", 64: "85% to 119%"},
    ("fc", "erf"): {4: "-42% to -17% (the wrong sign)", 64: "82% to 99%"},
}


def _nearest(table: dict, M: float):
    """The measured M closest to M (in log M) at or below the threshold."""
    import math

    below = [m for m in table if m < MIN_FILTER_DIM] or list(table)
    return min(below, key=lambda m: abs(math.log(m) - math.log(max(M, 1e-300))))


def message(theory: str, M, activation: str, arch: str = "cnn") -> str:
    """The one-line warning for ``theory`` at filter dimension ``M`` (FC: N0)."""
    what = "input dimension N0" if arch == "fc" else "filter dimension M"
    sym = "N0" if arch == "fc" else "M"
    owner, vec = ("unit", "weight") if arch == "fc" else ("channel", "filter")
    head = (f"{theory}: {what} = {M:g} is below {MIN_FILTER_DIM}: the action takes each "
            f"{owner}'s features as Gaussian, but its {vec} norm fluctuates (relative "
            f"variance 2/{sym} = {2.0 / M:.2g})")
    table = MEASURED.get(("fc" if arch == "fc" else "cnn", activation))
    if table:
        near = _nearest(table, M)
        big = max(table)
        ref = "one-hidden-layer FC nets" if arch == "fc" else "one-layer CNNs"
        head += (f"; measured against exact sampling of {ref} ({activation}), its share of "
                 f"the finite-width shift was {table[near]} at {sym} = {near} and "
                 f"{table[big]} at {sym} = {big}")
    return head + " (docs/validity.md)"


def check(theory, solution, stacklevel: int = 4) -> None:
    """Record ``solution.filter_dim`` and warn once for this fit when it is below
    :data:`MIN_FILTER_DIM` and the activation is not linear."""
    M = theory._filter_dim()
    solution.filter_dim = M
    if M is None or M >= MIN_FILTER_DIM or getattr(theory, "activation", "linear") == "linear":
        return
    arch = "fc" if type(theory).__name__ == "FCTheory" else "cnn"
    warnings.warn(message(type(theory).__name__, M, theory.activation, arch),
                  TheoryRegimeWarning, stacklevel=stacklevel)
