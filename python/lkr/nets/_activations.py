r"""The activations of the nets: sigma and sigma', elementwise.

The formulas (``linear``, ``erf``, ``relu``) are :func:`lkr.activations.sigma` and
:func:`lkr.activations.sigma_prime`. The nets take erf and erf' from the compiled activation
pass of the backend (:func:`lkr.backend.implementation`: a vectorised erf on the kernels'
threads, about 2x (float64) and 10x (float32) faster than scipy's scalar erf on one core,
within an ulp of it).
"""
from __future__ import annotations

from .. import backend
from ..activations import sigma, sigma_prime

__all__ = ["sigma", "sigma_prime", "sigma_pair", "sigma_pair_inplace"]


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
