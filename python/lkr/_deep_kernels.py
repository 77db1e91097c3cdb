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
A one-layer DeepGeometry runs the one-layer kernels unchanged (:mod:`lkr.kernels` hands only
L >= 2 to the functions here).

The compiled engines (``lkr._core.deep_*``, ``lkr._cuda.deep_*``) stream over tiles of
sample pairs; per pair they hold all position pairs of every layer, O(sum_l n_l^2), so
memory is O(P P' + tile x sum_l n_l^2).
"""
from __future__ import annotations

import numpy as np

from . import _kernel_args as _args
from . import backend
from ._kernel_args import resolve_lambdas  # noqa: F401 - its former home
from .deep_geometry import DeepGeometry

__all__ = ["resolve_lambdas", "one_layer", "local_kernel", "renormalized_kernel",
           "renormalized_kernel_diag", "local_kernel_adjoint"]


def _tables(geometry: DeepGeometry, lams):
    """The layer tables (int32 (n_l, k_l)) and norms 1 / (k_l lambda_{l-1}) of layers 2..L."""
    tables, norms = [], []
    for i, (idx, k) in enumerate(geometry.gather_tables(), start=1):
        tables.append(idx)
        norms.append(1.0 / (k * lams[i]))
    return tables, norms


def _device_tables(tables, xp):
    return tables if xp is np else [xp.asarray(t) for t in tables]


def one_layer(X, Y, geometry, activation, lambdas, lambda0, lambda1):
    """A one-layer DeepGeometry runs the one-layer kernels: its PatchGeometry and
    (lambda0, lambda1), after the checks of a deep call."""
    lams = _args.prepare_deep(X, Y, geometry, activation, lambdas, lambda0, lambda1)[0]
    return geometry.layers[0], lams[0], lams[1]


def local_kernel(X, Y, *, geometry, activation, lambdas, lambda0, max_bytes, nthreads):
    lams, xp, PX, PY = _args.prepare_deep(X, Y, geometry, activation, lambdas, lambda0, 1.0)
    dtype = backend.result_dtype(PX, PY)
    P, d = PX.shape[0], geometry.num_patches
    P2 = P if PY is None else PY.shape[0]
    _args.check_budget(P, P2, d, dtype, max_bytes)
    PX, PY = _args.cast(PX, PY, dtype, xp, activation, lams[0])
    tables, norms = _tables(geometry, lams)
    out = backend.implementation(xp).deep_local_kernel(
        PX, PY, _device_tables(tables, xp), norms, activation, lams[0],
        backend.resolve_threads(nthreads))
    return backend.wrap_like(out, X)


def renormalized_kernel(X, Y, *, Q, geometry, activation, lambdas, lambda0, lambda1, nthreads):
    lams, xp, PX, PY = _args.prepare_deep(X, Y, geometry, activation, lambdas, lambda0, lambda1)
    Qa = backend.asarray(Q, "Q")
    dtype = backend.result_dtype(PX, PY, Qa)
    _args.check_result_memory("renormalized_kernel", PX.shape[0],
                              None if PY is None else PY.shape[0], 1, dtype, xp)
    Qs = _args.symmetric_Q(Qa, geometry.num_patches, xp, dtype)
    PX, PY = _args.cast(PX, PY, dtype, xp, activation, lams[0])
    tables, norms = _tables(geometry, lams)
    out = backend.implementation(xp).deep_renormalized_kernel(
        PX, PY, Qs, _device_tables(tables, xp), norms, activation, lams[0], lams[-1],
        backend.resolve_threads(nthreads))
    return backend.wrap_like(out, X)


def renormalized_kernel_diag(X, *, Q, geometry, activation, lambdas, lambda0, lambda1,
                             nthreads):
    lams, xp, PX, _ = _args.prepare_deep(X, None, geometry, activation, lambdas, lambda0, lambda1)
    Qa = backend.asarray(Q, "Q")
    dtype = backend.result_dtype(PX, Qa)
    Qs = _args.symmetric_Q(Qa, geometry.num_patches, xp, dtype)
    PX, _ = _args.cast(PX, None, dtype, xp, activation, lams[0])
    tables, norms = _tables(geometry, lams)
    out = backend.implementation(xp).deep_renormalized_kernel_diag(
        PX, Qs, _device_tables(tables, xp), norms, activation, lams[0], lams[-1],
        backend.resolve_threads(nthreads))
    return backend.wrap_like(out, X)


def local_kernel_adjoint(X, W, *, geometry, Y, activation, lambdas, lambda0, nthreads):
    lams, xp, PX, PY = _args.prepare_deep(X, Y, geometry, activation, lambdas, lambda0, 1.0)
    Wa = backend.asarray(W, "W")
    dtype = backend.result_dtype(PX, PY, Wa)
    P = PX.shape[0]
    P2 = P if PY is None else PY.shape[0]
    Wc = _args.matrix(Wa, "W", (P, P2), xp, dtype)
    PX, PY = _args.cast(PX, PY, dtype, xp, activation, lams[0])
    symmetric = PY is None and _args.is_symmetric(Wc, xp)
    tables, norms = _tables(geometry, lams)
    out = backend.implementation(xp).deep_local_kernel_adjoint(
        PX, PY, Wc, symmetric, _device_tables(tables, xp), norms, activation, lams[0],
        backend.resolve_threads(nthreads))
    return backend.wrap_like(out, X)
