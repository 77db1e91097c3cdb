r"""Array-expression references of the patch passes of CNN/LCN (NumPy or CuPy).

The tests check the compiled passes (C++ and CUDA) against these; the CUDA engine uses
:func:`reference_features` for the NTK features. Shapes: Z (P, Np, M), W (..., Nc, M) or
(..., Nc, Np, M), v (..., Nc, Np), r (..., P); pre-activations H are (..., P, Nc, Np).
"""
from __future__ import annotations

import math

from . import _arrays
from .activations import sigma, sigma_prime


def preact(Z, W, local):
    xp = _arrays.array_module(Z, W)
    M = Z.shape[-1]
    if local:
        return xp.einsum("pim,...aim->...pai", Z, W) / math.sqrt(M)
    return xp.einsum("pim,...am->...pai", Z, W) / math.sqrt(M)


def reference_forward(Z, W, v, activation, local):
    xp = _arrays.array_module(Z, W, v)
    Nc, Np = v.shape[-2:]
    S = sigma(activation, preact(Z, W, local))
    return xp.einsum("...pai,...ai->...p", S, v) / math.sqrt(Nc * Np)


def reference_vjp(Z, W, v, r, activation, local):
    xp = _arrays.array_module(Z, W, v, r)
    Nc, Np = v.shape[-2:]
    M = Z.shape[-1]
    H = preact(Z, W, local)
    c = 1.0 / math.sqrt(Nc * Np)
    dv = xp.einsum("...p,...pai->...ai", r, sigma(activation, H)) * c
    G = r[..., :, None, None] * v[..., None, :, :] * sigma_prime(activation, H) * c
    if local:
        dW = xp.einsum("...pai,pim->...aim", G, Z) / math.sqrt(M)
    else:
        dW = xp.einsum("...pai,pim->...am", G, Z) / math.sqrt(M)
    return dW, dv


def reference_jvp(Z, W, v, dW, dv, activation, local):
    xp = _arrays.array_module(Z, W, v)
    Nc, Np = v.shape[-2:]
    H = preact(Z, W, local)
    dH = preact(Z, dW, local)
    out = (xp.einsum("...pai,...ai->...p", sigma_prime(activation, H) * dH, v)
           + xp.einsum("...pai,...ai->...p", sigma(activation, H), dv))
    return out / math.sqrt(Nc * Np)




def reference_features(Z, W, v, activation, local, Nc):
    """NumPy/CuPy reference of the compiled features (W, v restricted to a channel block)."""
    xp = _arrays.array_module(Z)
    P, Np, M = Z.shape
    cs = 1.0 / math.sqrt(Nc * Np)
    H = preact(Z, W, local)                       # (P, nb, Np)
    S = cs * sigma(activation, H)
    E = (cs / math.sqrt(M)) * v[None] * sigma_prime(activation, H)
    if local:
        return S, E
    return S, xp.einsum("pai,pim->pam", E, Z)


# the names the tests and benchmarks have used
_preact, _reference_forward, _reference_vjp, _reference_jvp = (
    preact, reference_forward, reference_vjp, reference_jvp)
_reference_features = reference_features
