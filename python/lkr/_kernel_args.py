"""Argument checks and preparation shared by the kernel functions (:mod:`lkr.kernels`,
:mod:`lkr._deep_kernels`, :mod:`lkr.kernels_multi`): geometry, precisions, inputs as patch
tensors (validated and finite), matrices Q and W, the memory budget and the common dtype.
"""
from __future__ import annotations

import numpy as np

from . import _env, _scale, backend
from ._validate import positive as _positive
from .activations import check_activation
from .geometry import PatchGeometry

__all__ = ["resolve_lambdas", "one_layer_lambdas", "check_budget", "inputs", "matrix",
           "symmetric_Q", "is_symmetric", "prepare", "prepare_deep", "cast", "geometry_of"]


def resolve_lambdas(lambdas, lambda0, lambda1, depth):
    """``(lambda_0, ..., lambda_L)`` from ``lambdas`` or the one-layer ``lambda0``/``lambda1``.

    ``lambdas=None`` gives ``(lambda0, 1, ..., 1, lambda1)`` (hidden layers' precisions 1).
    Giving ``lambdas`` together with a ``lambda0``/``lambda1`` other than 1 is an error.
    """
    if lambdas is None:
        out = [lambda0] + [1.0] * (depth - 1) + [lambda1]
        names = ["lambda0"] + [f"lambdas[{i}]" for i in range(1, depth)] + ["lambda1"]
    else:
        if np.ndim(lambdas) != 1 or len(lambdas) != depth + 1:
            raise ValueError(f"lambdas must hold {depth + 1} values (lambda_0, ..., "
                             f"lambda_{depth}) for depth {depth}, got {lambdas!r}")
        if lambda0 != 1.0 or lambda1 != 1.0:
            raise ValueError(f"give either lambdas or lambda0/lambda1, not both (lambdas="
                             f"{lambdas!r}, lambda0={lambda0!r}, lambda1={lambda1!r})")
        out = list(lambdas)
        names = [f"lambdas[{i}]" for i in range(depth + 1)]
    return tuple(_positive(v, n) for v, n in zip(out, names))


def geometry_of(geometry):
    if not isinstance(geometry, PatchGeometry):
        raise TypeError(f"geometry must be a PatchGeometry, got {type(geometry).__name__} "
                        "(or a DeepGeometry for the deep-CNN kernel)")
    return geometry


def one_layer_lambdas(lambdas, lambda0, lambda1):
    """lambda0, lambda1 of a one-layer call, from ``lambdas`` = (lambda0, lambda1) if given."""
    if lambdas is None:
        return lambda0, lambda1
    return resolve_lambdas(lambdas, lambda0, lambda1, 1)


def check_budget(P, P2, Np, dtype, max_bytes):
    need = P * P2 * Np * Np * dtype.itemsize
    budget = _env.max_bytes() if max_bytes is None else int(max_bytes)
    if need > budget:
        raise MemoryError(
            f"local_kernel would need {need / 1e9:.3g} GB for a ({P}, {P2}, {Np}, {Np}) {dtype} "
            f"tensor, above max_bytes={budget / 1e9:.3g} GB; use renormalized_kernel / "
            "local_kernel_adjoint, which stream over tiles, or raise max_bytes")


def inputs(X, Y, geometry):
    """Patch tensors of X and Y (validated, finite, in the common dtype)."""
    Xa = backend.asarray(X, "X")
    Ya = backend.asarray(Y, "Y")
    xp = backend.array_module(Xa, Ya)
    PX = geometry.patches(Xa, "X")
    PY = None if Ya is None else geometry.patches(Ya, "Y")
    # on the inputs as given, so that a NaN is reported at its own index, not a patch's
    backend.check_finite(Xa, "X")
    if Ya is not None:
        backend.check_finite(Ya, "Y")
    return xp, PX, PY


def matrix(A, name, shape, xp, dtype):
    A = backend.asarray(A, name)
    if backend.array_module(A) is not xp:
        raise TypeError(f"{name} must live on the same device as X")
    backend.check_floating(A, name)
    if A.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {A.shape}")
    backend.check_finite(A, name)
    return xp.ascontiguousarray(A, dtype=dtype)


def symmetric_Q(Q, Np, xp, dtype):
    Q = matrix(Q, "Q", (Np, Np), xp, dtype)
    scale = float(xp.abs(Q).max()) if Q.size else 0.0
    asym = float(xp.abs(Q - Q.T).max()) if Q.size else 0.0
    if asym > 1e-10 * max(scale, 1e-300):
        raise ValueError(f"Q must be symmetric: max |Q - Q.T| = {asym:.3g} (max |Q| = {scale:.3g}); "
                         "pass (Q + Q.T) / 2 if that is what you mean")
    half = dtype.type(0.5)  # halves first: (Q + Q.T) / 2 overflows for entries near the max
    return Q * half + Q.T * half


_BLOCK = 512  # side of the blocks below: their temporaries stay small (2 MB in float64)


def is_symmetric(A, xp):
    """A == A.T exactly, block by block with an early exit (no P x P temporary)."""
    n = A.shape[0]
    if A.ndim != 2 or n != A.shape[1]:
        return False
    for i in range(0, n, _BLOCK):
        for j in range(i, n, _BLOCK):
            if not bool((A[i:i + _BLOCK, j:j + _BLOCK] == A[j:j + _BLOCK, i:i + _BLOCK].T).all()):
                return False
    return True


def prepare(X, Y, geometry, activation, lambda0):
    geometry = geometry_of(geometry)
    check_activation(activation)
    lambda0 = _positive(lambda0, "lambda0")
    xp, PX, PY = inputs(X, Y, geometry)
    return geometry, lambda0, xp, PX, PY


def cast(PX, PY, dtype, xp, activation, lambda0):
    """Contiguous patch tensors in ``dtype`` (finite: checked on the inputs), after checking
    that a relu or linear kernel of them is representable (see lkr._scale)."""
    PX = xp.ascontiguousarray(PX, dtype=dtype)
    PY = None if PY is None else xp.ascontiguousarray(PY, dtype=dtype)
    _scale.check_growth(activation, (("X", PX), ("Y", PY)), lambda0, PX.shape[-1], dtype)
    return PX, PY


def prepare_deep(X, Y, geometry, activation, lambdas, lambda0, lambda1):
    """(lambdas, xp, PX, PY) of a call on a DeepGeometry: the activation, the precisions
    ``(lambda_0, ..., lambda_L)`` and the inputs checked, the inputs as layer-1 patches."""
    check_activation(activation)
    lams = resolve_lambdas(lambdas, lambda0, lambda1, geometry.depth)
    xp, PX, PY = inputs(X, Y, geometry)  # validated and finite
    return lams, xp, PX, PY
