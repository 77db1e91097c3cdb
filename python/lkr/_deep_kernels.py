r"""The public kernels of :mod:`lkr.kernels` for a :class:`~lkr.DeepGeometry`
(docs/deep-cnn.md section 4).

.. math::

    C^1_{pq}(\mu,\nu) = x_p^\mu \cdot x_q^\nu / (\lambda_0 M_1), \qquad
    K^l_{pq} = K_\sigma(C^l_{pp}(\mu,\mu), C^l_{pq}(\mu,\nu), C^l_{qq}(\nu,\nu)),

    C^{l+1}_{pq}(\mu,\nu) = \frac{1}{k_{l+1} \lambda_l} \sum_t K^l_{p+t,\,q+t}(\mu,\nu),

    K_R(Q)^{\mu\nu} = \frac{1}{\lambda_L d} \sum_{ij} Q_{ij} K^L_{ij}(\mu,\nu), \qquad
    G(W)_{ij} = \sum_{\mu\nu} W_{\mu\nu} K^L_{ij}(\mu,\nu),

with p + t the t-th site of window p of layer l + 1 in layer l's output grid (padded sites
contribute 0), k_{l+1} the window's size and ``lambdas = (lambda_0, ..., lambda_L)``. The
adjoint identity sum W * K_R(Q) = (1 / (lambda_L d)) sum Q * G(W) holds as for one layer.
A one-layer DeepGeometry runs the one-layer kernels unchanged.

The compiled engines (``lkr._core.deep_*``, ``lkr._cuda.deep_*``) stream over tiles of
sample pairs; per pair they hold all position pairs of every layer, O(sum_l n_l^2), so
memory is O(P P' + tile x sum_l n_l^2).
"""
from __future__ import annotations

import numpy as np

from . import backend
from ._validate import positive as _positive
from .activations import check_activation
from .deep_geometry import DeepGeometry

__all__ = ["resolve_lambdas", "local_kernel", "renormalized_kernel",
           "renormalized_kernel_diag", "local_kernel_adjoint"]


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


def _tables(geometry: DeepGeometry, lams):
    """The layer tables (int32 (n_l, k_l)) and norms 1 / (k_l lambda_{l-1}) of layers 2..L."""
    tables, norms = [], []
    for i, (idx, k) in enumerate(geometry.gather_tables(), start=1):
        tables.append(idx)
        norms.append(1.0 / (k * lams[i]))
    return tables, norms


def _prepare(X, Y, geometry, activation, lambdas, lambda0, lambda1):
    check_activation(activation)
    lams = resolve_lambdas(lambdas, lambda0, lambda1, geometry.depth)
    from . import kernels

    xp, PX, PY = kernels._inputs(X, Y, geometry)  # validated and finite
    return lams, xp, PX, PY


def _device_tables(tables, xp):
    return tables if xp is np else [xp.asarray(t) for t in tables]


def _one_layer(geometry):
    return geometry.layers[0]


def local_kernel(X, Y, *, geometry, activation, lambdas, lambda0, max_bytes, nthreads):
    from . import kernels

    lams, xp, PX, PY = _prepare(X, Y, geometry, activation, lambdas, lambda0, 1.0)
    if geometry.depth == 1:
        return kernels.local_kernel(X, Y, geometry=_one_layer(geometry), activation=activation,
                                    lambda0=lams[0], max_bytes=max_bytes, nthreads=nthreads)
    dtype = backend.result_dtype(PX, PY)
    P, d = PX.shape[0], geometry.num_patches
    P2 = P if PY is None else PY.shape[0]
    kernels._check_budget(P, P2, d, dtype, max_bytes)
    PX, PY = kernels._cast(PX, PY, dtype, xp, activation, lams[0])
    tables, norms = _tables(geometry, lams)
    out = backend.implementation(xp).deep_local_kernel(
        PX, PY, _device_tables(tables, xp), norms, activation, lams[0],
        backend.resolve_threads(nthreads))
    return backend.wrap_like(out, X)


def renormalized_kernel(X, Y, *, Q, geometry, activation, lambdas, lambda0, lambda1, nthreads):
    from . import kernels

    lams, xp, PX, PY = _prepare(X, Y, geometry, activation, lambdas, lambda0, lambda1)
    if geometry.depth == 1:
        return kernels.renormalized_kernel(X, Y, Q=Q, geometry=_one_layer(geometry),
                                           activation=activation, lambda0=lams[0],
                                           lambda1=lams[1], nthreads=nthreads)
    Qa = backend.asarray(Q, "Q")
    dtype = backend.result_dtype(PX, PY, Qa)
    Qs = kernels._symmetric_Q(Qa, geometry.num_patches, xp, dtype)
    PX, PY = kernels._cast(PX, PY, dtype, xp, activation, lams[0])
    tables, norms = _tables(geometry, lams)
    out = backend.implementation(xp).deep_renormalized_kernel(
        PX, PY, Qs, _device_tables(tables, xp), norms, activation, lams[0], lams[-1],
        backend.resolve_threads(nthreads))
    return backend.wrap_like(out, X)


def renormalized_kernel_diag(X, *, Q, geometry, activation, lambdas, lambda0, lambda1,
                             nthreads):
    from . import kernels

    lams, xp, PX, _ = _prepare(X, None, geometry, activation, lambdas, lambda0, lambda1)
    if geometry.depth == 1:
        return kernels.renormalized_kernel_diag(X, Q=Q, geometry=_one_layer(geometry),
                                                activation=activation, lambda0=lams[0],
                                                lambda1=lams[1], nthreads=nthreads)
    Qa = backend.asarray(Q, "Q")
    dtype = backend.result_dtype(PX, Qa)
    Qs = kernels._symmetric_Q(Qa, geometry.num_patches, xp, dtype)
    PX, _ = kernels._cast(PX, None, dtype, xp, activation, lams[0])
    tables, norms = _tables(geometry, lams)
    out = backend.implementation(xp).deep_renormalized_kernel_diag(
        PX, Qs, _device_tables(tables, xp), norms, activation, lams[0], lams[-1],
        backend.resolve_threads(nthreads))
    return backend.wrap_like(out, X)


def local_kernel_adjoint(X, W, *, geometry, Y, activation, lambdas, lambda0, nthreads):
    from . import kernels

    lams, xp, PX, PY = _prepare(X, Y, geometry, activation, lambdas, lambda0, 1.0)
    if geometry.depth == 1:
        return kernels.local_kernel_adjoint(X, W, geometry=_one_layer(geometry), Y=Y,
                                            activation=activation, lambda0=lams[0],
                                            nthreads=nthreads)
    Wa = backend.asarray(W, "W")
    dtype = backend.result_dtype(PX, PY, Wa)
    P = PX.shape[0]
    P2 = P if PY is None else PY.shape[0]
    Wc = kernels._matrix(Wa, "W", (P, P2), xp, dtype)
    PX, PY = kernels._cast(PX, PY, dtype, xp, activation, lams[0])
    symmetric = PY is None and kernels._is_symmetric(Wc, xp)
    tables, norms = _tables(geometry, lams)
    out = backend.implementation(xp).deep_local_kernel_adjoint(
        PX, PY, Wc, symmetric, _device_tables(tables, xp), norms, activation, lams[0],
        backend.resolve_threads(nthreads))
    return backend.wrap_like(out, X)
