r"""NNGP maps K_sigma(c_xx, c_xy, c_yy) = E[sigma(u) sigma(v)] for centred Gaussian (u, v)
with covariance [[c_xx, c_xy], [c_xy, c_yy]] (docs/theory.md section 2).

``linear``  K = c_xy
``erf``     K = (2/pi) arcsin(2 c_xy / sqrt((1 + 2 c_xx)(1 + 2 c_yy)))
``relu``    K = sqrt(c_xx c_yy) / (2 pi) (u (pi - arccos u) + sqrt(1 - u^2)),
            u = c_xy / sqrt(c_xx c_yy) clipped to [-1, 1]; 0 where c_xx c_yy = 0
            (half of Cho & Saul's kappa_1).

These are the plain array-library versions (NumPy or CuPy, whichever the inputs are); the
compiled kernels implement the same maps in ``csrc/lkr/activations.hpp``.

Mean activations m(c) = E[sigma(h)], h ~ N(0, c) (:func:`mean_map`):

``linear``, ``erf``  m = 0 (odd)
``relu``            m = sqrt(c / (2 pi))

The activations themselves, sigma(h) and sigma'(h) elementwise (:func:`sigma`,
:func:`sigma_prime`): ``linear`` (sigma(h) = h), ``erf`` (the plain error function, whose NNGP
map is the arcsine formula above; sigma'(h) = (2/sqrt(pi)) exp(-h^2)) and ``relu``
(max(h, 0), step derivative). The nets take erf and erf' from the compiled activation pass
instead (:func:`lkr.nets.sigma_pair`); these are the formulas, and the references.

ReLU is not odd: its post-activations have a non-zero mean, which the non-central actions
of :mod:`lkr.theory` (``mean="auto"``) treat exactly; the one-order-parameter actions
(``mean="ignore"``) are exact only for odd activations and warn for relu.
"""
from __future__ import annotations

import math

import numpy as np

from . import _arrays

__all__ = ["ACTIVATIONS", "check_activation", "nngp_map", "is_odd", "mean_map", "has_mean",
           "sigma", "sigma_prime"]

ACTIVATIONS = ("linear", "erf", "relu")


def check_activation(activation) -> str:
    """Return the activation name, or raise ValueError naming the accepted ones."""
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
    return activation


def is_odd(activation: str) -> bool:
    """True when sigma(-x) = -sigma(x), where the single-Qbar actions are exact."""
    return check_activation(activation) in ("linear", "erf")


def nngp_map(activation: str, cxx, cxy, cyy):
    """K_sigma(c_xx, c_xy, c_yy), elementwise with broadcasting.

    Parameters
    ----------
    activation : {"linear", "erf", "relu"}
    cxx, cxy, cyy : array_like
        Variances and covariance of the pre-activations (broadcast together).

    Returns
    -------
    ndarray
        The NNGP kernel values, same array library as the inputs.
    """
    check_activation(activation)
    xp = _arrays.array_module(cxx, cxy, cyy)
    cxx, cxy, cyy = (xp.asarray(a) for a in (cxx, cxy, cyy))
    if activation == "linear":
        return cxy * xp.ones_like(cxx) * xp.ones_like(cyy)
    # Square roots taken apart, so that covariances up to the largest float do not overflow
    # in the products (issue 14): erf tends to (2/pi) arcsin(c_xy / sqrt(c_xx c_yy)) there.
    if activation == "erf":
        u = cxy / (xp.sqrt(0.5 + cxx) * xp.sqrt(0.5 + cyy))
        return (2 / np.pi) * xp.arcsin(xp.clip(u, -1, 1))
    n = xp.sqrt(cxx) * xp.sqrt(cyy)
    safe = xp.where(n > 0, n, 1)
    u = xp.clip(cxy / safe, -1, 1)
    # (1 - u)(1 + u) rather than 1 - u^2: exact near |u| = 1, where the terms' singularities cancel
    k = n / (2 * np.pi) * (u * (np.pi - xp.arccos(u)) + xp.sqrt((1 - u) * (1 + u)))
    return xp.where(n > 0, k, 0)


def has_mean(activation: str) -> bool:
    """True when E[sigma(h)] != 0 for centred Gaussian h (relu): the non-central actions
    apply."""
    return not is_odd(activation)


def mean_map(activation: str, c):
    """Mean activation m(c) = E[sigma(h)], h ~ N(0, c), elementwise.

    Parameters
    ----------
    activation : {"linear", "erf", "relu"}
    c : array_like
        Pre-activation variances (>= 0).

    Returns
    -------
    ndarray
        ``sqrt(c / (2 pi))`` for relu (note: c / (2 pi), not c / 2 * pi), zeros for the odd
        activations; same array library as ``c``.
    """
    check_activation(activation)
    xp = _arrays.array_module(c)
    c = xp.asarray(c)
    if activation == "relu":
        return xp.sqrt(xp.maximum(c, 0) / (2 * np.pi))
    return xp.zeros_like(c, dtype=np.result_type(c.dtype, np.float64))


def _erf(xp):
    if xp is np:
        from scipy.special import erf
    else:  # pragma: no cover - GPU only
        from cupyx.scipy.special import erf
    return erf


def sigma(activation: str, h):
    """The activation sigma(h), elementwise (``erf`` is the plain error function)."""
    xp = _arrays.array_module(h)
    if activation == "linear":
        return h
    if activation == "erf":
        return _erf(xp)(h)
    return xp.maximum(h, 0)


def sigma_prime(activation: str, h):
    """sigma'(h): 1, (2/sqrt(pi)) exp(-h^2), or the step (h > 0) for relu."""
    xp = _arrays.array_module(h)
    if activation == "linear":
        return xp.ones_like(h)
    if activation == "erf":
        return (2.0 / math.sqrt(math.pi)) * xp.exp(-h * h)
    return (h > 0).astype(h.dtype)
