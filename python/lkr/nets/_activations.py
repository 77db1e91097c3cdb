r"""The activations of the nets: sigma and sigma', elementwise.

``linear`` (sigma(h) = h), ``erf`` (the plain error function, whose NNGP map is the arcsine
formula; sigma'(h) = (2/sqrt(pi)) exp(-h^2)) and ``relu`` (max(h, 0), step derivative).
The nets take erf and erf' from the compiled activation pass of the backend
(:func:`lkr.backend.implementation`: a vectorised erf on the kernels' threads, about 2x
(float64) and 10x (float32) faster than scipy's scalar erf on one core, within an ulp of it).
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend

__all__ = ["sigma", "sigma_prime", "sigma_pair", "sigma_pair_inplace"]


def _erf(xp):
    if xp is np:
        from scipy.special import erf
    else:  # pragma: no cover - GPU only
        from cupyx.scipy.special import erf
    return erf


def sigma(activation: str, h):
    """The activation sigma(h), elementwise (``erf`` is the plain error function)."""
    xp = backend.array_module(h)
    if activation == "linear":
        return h
    if activation == "erf":
        return _erf(xp)(h)
    return xp.maximum(h, 0)


def sigma_prime(activation: str, h):
    """sigma'(h): 1, (2/sqrt(pi)) exp(-h^2), or the step (h > 0) for relu."""
    xp = backend.array_module(h)
    if activation == "linear":
        return xp.ones_like(h)
    if activation == "erf":
        return (2.0 / math.sqrt(math.pi)) * xp.exp(-h * h)
    return (h > 0).astype(h.dtype)


def sigma_pair(activation: str, h, derivative: bool):
    """(sigma(h), sigma'(h) or None), from one compiled pass of the backend."""
    xp = backend.array_module(h)
    if activation == "linear":
        return h, (xp.ones_like(h) if derivative else None)
    out = backend.implementation(xp).activation_pair(
        xp.ascontiguousarray(h), activation=activation, derivative=derivative,
        nthreads=backend.get_num_threads())
    return out if derivative else (out, None)


def sigma_pair_inplace(activation: str, H):
    """(sigma(H), sigma'(H)) reusing H's memory where that saves an allocation: H is
    overwritten (it may become sigma'(H)). The fused objectives' hot path."""
    xp = backend.array_module(H)
    if activation == "linear":
        S = H.copy()
        H.fill(1)
        return S, H
    if activation == "relu":
        S = xp.maximum(H, 0)
        xp.greater(H, 0, out=H)  # bool -> float in place: the step function
        return S, H
    return sigma_pair(activation, H, True)
