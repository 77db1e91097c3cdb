r"""NNGP maps with their partial derivatives, and the deep FC kernel recursions.

The nested deep action differentiates K_sigma(c_xx, c_xy, c_yy) through the layers:
dK^{mu nu} = k_xx dc^{mu mu} + k_xy dc^{mu nu} + k_yy dc^{nu nu}.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..activations import nngp_map
from ..kernels import nngp

__all__ = ["map_partials", "layer_kernels", "diag_map"]


def map_partials(activation, cxx, cxy, cyy):
    """K_sigma and (dK/dc_xx, dK/dc_xy, dK/dc_yy), elementwise with broadcasting."""
    xp = backend.array_module(cxx, cxy, cyy)
    if activation == "linear":
        k = cxy * xp.ones_like(cxx) * xp.ones_like(cyy)
        one = xp.ones_like(k)
        return k, 0 * one, one, 0 * one
    if activation == "erf":
        ax, ay = 1 + 2 * cxx, 1 + 2 * cyy
        den = xp.sqrt(ax * ay)
        u = xp.clip(2 * cxy / den, -1, 1)
        k = (2 / np.pi) * xp.arcsin(u)
        dk = (2 / np.pi) / xp.sqrt(xp.maximum(1 - u * u, 1e-300))
        return k, dk * (-u / ax), dk * (2 / den), dk * (-u / ay)
    # relu: k = (n s + c_xy (pi - arccos u)) / (2 pi), n = sqrt(c_xx c_yy), u = c_xy / n
    n = xp.sqrt(cxx * cyy)
    ok = n > 0
    safe_n = xp.where(ok, n, 1)
    u = xp.clip(cxy / safe_n, -1, 1)
    s = xp.sqrt(xp.maximum(1 - u * u, 0))
    k = xp.where(ok, (n * s + cxy * (np.pi - xp.arccos(u))) / (2 * np.pi), 0)
    kxy = xp.where(ok, (np.pi - xp.arccos(u)) / (2 * np.pi), 0)
    kxx = xp.where(ok, n * s / (4 * np.pi * xp.where(ok, cxx, 1)), 0)
    kyy = xp.where(ok, n * s / (4 * np.pi * xp.where(ok, cyy, 1)), 0)
    return k, kxx, kxy, kyy


def diag_map(activation, c):
    """K_sigma(c, c, c) (the kernel's diagonal from the pre-activation variances)."""
    return nngp_map(activation, c, c, c)


def layer_kernels(X, Y, activation, lambda0, multipliers):
    """Deep FC kernels K_l = m_l K_sigma(K_{l-1}), K_0 = C = x.y / (lambda0 N0).

    Parameters
    ----------
    X : (P, N0) training inputs; Y : (P', N0) or None (then the training kernel).
    multipliers : sequence of L floats m_l (1/lambda_l for vanilla, Q_l/lambda_l nested).

    Returns
    -------
    list of (K_cross, dX, dY) per layer 1..L: the (P, P') kernel and the diagonals of the
    X-X and Y-Y kernels at that layer (dY is None when Y is None).
    """
    xp = backend.array_module(X)
    N0 = X.shape[1]
    dX = xp.einsum("pi,pi->p", X, X) / (lambda0 * N0)
    dY = None if Y is None else xp.einsum("pi,pi->p", Y, Y) / (lambda0 * N0)
    out = []
    K = None
    for l, m in enumerate(multipliers):
        if l == 0:
            K = m * nngp(X, Y, activation=activation, lambda0=lambda0)
        else:
            K = m * nngp_map(activation, dX[:, None], K, (dX if dY is None else dY)[None, :])
        dX = m * diag_map(activation, dX)
        if dY is not None:
            dY = m * diag_map(activation, dY)
        if Y is None:
            K = (K + K.T) / 2
        out.append((K, dX, dY))
    return out
