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
L >= 2 to the public kernels here; the adjoint on a pattern and the stored kernel of the
theories take L = 1 too).

The compiled engines (``lkr._core.deep_*``, ``lkr._cuda.deep_*``) compute only the position
pairs of a plan (:meth:`lkr.DeepGeometry.pair_plan`): the final pairs the readout needs and
the pairs of the layers below that these read. K_R(Q) and its diagonal pick the plan from
the support of Q (a diagonal Q, e.g. the GP's Q = I, needs only the diagonal pairs of every
layer: O(P^2 sum_l n_l) instead of O(P^2 sum_l n_l^2)); the materialised kernel, the
adjoint and the stored kernel of the theories use the dense plan unless told otherwise.
They stream over tiles of sample pairs, so memory is O(P P' + tile x chunk of the plan).
"""
from __future__ import annotations

import numpy as np

from . import _kernel_args as _args
from . import _scale, backend
from ._kernel_args import resolve_lambdas  # noqa: F401 - its former home
from .activations import check_activation
from .deep_geometry import DeepGeometry

__all__ = ["resolve_lambdas", "one_layer", "plan_for", "local_kernel", "renormalized_kernel",
           "renormalized_kernel_diag", "local_kernel_adjoint", "pack_compressed"]


def _layers(geometry: DeepGeometry, lams, xp):
    """(index1, tables, norms): the layer-1 patch index (n1, M1) into the flattened inputs,
    the window tables (int32 (n_l, k_l)) of layers 2..L and their norms 1 / (k_l lambda_{l-1}),
    as the compiled engines take them."""
    index1 = np.ascontiguousarray(geometry.layers[0].patch_index(), dtype=np.int32)
    tables, norms = [], []
    for i, (idx, k) in enumerate(geometry.gather_tables(), start=1):
        tables.append(idx)
        norms.append(1.0 / (k * lams[i]))
    if xp is not np:
        index1, tables = xp.asarray(index1), [xp.asarray(t) for t in tables]
    return index1, tables, norms


def plan_for(geometry: DeepGeometry, Q=None, pattern=None):
    """The pair plan of a readout: from ``pattern`` ("dense", "diagonal" or a (d, d) mask),
    else from the support of Q (symmetrised), else dense."""
    if pattern is not None:
        return geometry.pair_plan(pattern)
    if Q is None:
        return geometry.pair_plan("dense")
    return geometry.pair_plan(backend.to_numpy(Q) != 0)


def _lambdas(geometry, activation, lambdas, lambda0, lambda1):
    check_activation(activation)
    return resolve_lambdas(lambdas, lambda0, lambda1, geometry.depth)


def one_layer(X, Y, geometry, activation, lambdas, lambda0, lambda1):
    """A one-layer DeepGeometry runs the one-layer kernels: its PatchGeometry and
    (lambda0, lambda1), after the checks of a deep call."""
    lams = _lambdas(geometry, activation, lambdas, lambda0, lambda1)
    _inputs(X, Y, geometry)
    return geometry.layers[0], lams[0], lams[1]


def _inputs(X, Y, geometry):
    """X and Y flattened (P, n0) channels-last, validated and finite: the engines read the
    layer-1 patches through the index, never a (P, n1, M1) patch tensor."""
    Xa, Ya = backend.asarray(X, "X"), backend.asarray(Y, "Y")
    xp = backend.array_module(Xa, Ya)
    flat = []
    for A, name in ((Xa, "X"), (Ya, "Y")):
        if A is None:
            flat.append(None)
            continue
        backend.check_floating(A, name)
        F = geometry.flatten(A, name)
        backend.check_finite(A, name)  # on the input as given: a NaN at its own index
        flat.append(F)
    return xp, flat[0], flat[1]


def _cast(FX, FY, dtype, xp, geometry, activation, lambda0):
    """Inputs in ``dtype`` (the C++ engine reads strided views: no copy when the dtype fits;
    the CUDA one wants them contiguous), after checking that a relu or linear kernel of
    them is representable (see lkr._scale)."""
    out = []
    for F, name in ((FX, "X"), (FY, "Y")):
        if F is None:
            out.append(None)
            continue
        F = F.astype(dtype, copy=False) if xp is np else xp.ascontiguousarray(F, dtype=dtype)
        if activation != "erf" and F.size:
            amax = _scale.max_abs(F)
            if amax * amax / lambda0 > float(np.finfo(dtype).max) / 4:  # the cheap bound fails
                _scale.check_growth(activation, ((name, geometry.patches(F, name)),), lambda0,
                                    geometry.patch_size, dtype)
        out.append(F)
    return out[0], out[1]


def local_kernel(X, Y, *, geometry, activation, lambdas, lambda0, max_bytes, nthreads):
    lams = _lambdas(geometry, activation, lambdas, lambda0, 1.0)
    xp, FX, FY = _inputs(X, Y, geometry)
    dtype = backend.result_dtype(FX, FY)
    P, d = FX.shape[0], geometry.num_patches
    P2 = P if FY is None else FY.shape[0]
    _args.check_budget(P, P2, d, dtype, max_bytes)
    FX, FY = _cast(FX, FY, dtype, xp, geometry, activation, lams[0])
    out = backend.implementation(xp).deep_local_kernel(
        FX, FY, _layers(geometry, lams, xp), plan_for(geometry).arrays(), activation, lams[0],
        backend.resolve_threads(nthreads))
    return backend.wrap_like(out, X)


def renormalized_kernel(X, Y, *, Q, geometry, activation, lambdas, lambda0, lambda1, nthreads):
    lams = _lambdas(geometry, activation, lambdas, lambda0, lambda1)
    xp, FX, FY = _inputs(X, Y, geometry)
    Qa = backend.asarray(Q, "Q")
    dtype = backend.result_dtype(FX, FY, Qa)
    Qs = _args.symmetric_Q(Qa, geometry.num_patches, xp, dtype)
    FX, FY = _cast(FX, FY, dtype, xp, geometry, activation, lams[0])
    out = backend.implementation(xp).deep_renormalized_kernel(
        FX, FY, Qs, _layers(geometry, lams, xp), plan_for(geometry, Qs).arrays(), activation,
        lams[0], lams[-1], backend.resolve_threads(nthreads))
    return backend.wrap_like(out, X)


def renormalized_kernel_diag(X, *, Q, geometry, activation, lambdas, lambda0, lambda1,
                             nthreads):
    lams = _lambdas(geometry, activation, lambdas, lambda0, lambda1)
    xp, FX, _ = _inputs(X, None, geometry)
    Qa = backend.asarray(Q, "Q")
    dtype = backend.result_dtype(FX, Qa)
    Qs = _args.symmetric_Q(Qa, geometry.num_patches, xp, dtype)
    FX, _ = _cast(FX, None, dtype, xp, geometry, activation, lams[0])
    out = backend.implementation(xp).deep_renormalized_kernel_diag(
        FX, Qs, _layers(geometry, lams, xp), plan_for(geometry, Qs).arrays(), activation,
        lams[0], lams[-1], backend.resolve_threads(nthreads))
    return backend.wrap_like(out, X)


def local_kernel_adjoint(X, W, *, geometry, Y, activation, lambdas, lambda0, nthreads,
                         pattern=None):
    """G(W) on the final pairs of ``pattern`` (default all; 0 elsewhere), any depth."""
    lams = _lambdas(geometry, activation, lambdas, lambda0, 1.0)
    xp, FX, FY = _inputs(X, Y, geometry)
    Wa = backend.asarray(W, "W")
    dtype = backend.result_dtype(FX, FY, Wa)
    P = FX.shape[0]
    P2 = P if FY is None else FY.shape[0]
    Wc = _args.matrix(Wa, "W", (P, P2), xp, dtype)
    FX, FY = _cast(FX, FY, dtype, xp, geometry, activation, lams[0])
    symmetric = FY is None and _args.is_symmetric(Wc, xp)
    out = backend.implementation(xp).deep_local_kernel_adjoint(
        FX, FY, Wc, symmetric, _layers(geometry, lams, xp),
        plan_for(geometry, pattern=pattern).arrays(), activation, lams[0],
        backend.resolve_threads(nthreads))
    return backend.wrap_like(out, X)


def pack_compressed(X, *, geometry, activation, lambdas, pattern=None, nthreads=None):
    """The stored kernel of the theories, (P (P + 1) / 2, ncols), and its plan.

    Row ``mu P - mu (mu - 1) / 2 + nu - mu`` holds the sample pair mu <= nu; column c the
    unordered final pair ``plan.col_pairs[c] = (i, j)``, i <= j: K^L_ij + K^L_ji for i < j,
    K^L_ii for i = j (the pairs of ``pattern``, default all). Then
    sum_ij Q_ij K^L_ij = S q with q_c = Q_ij, and G(B)_ij + G(B)_ji = (w B) S with
    w_{mu nu} = 1 on mu = nu and 2 above (the upper triangle of a symmetric B).
    """
    lams = _lambdas(geometry, activation, lambdas, 1.0, 1.0)
    xp, FX, _ = _inputs(X, None, geometry)
    FX, _ = _cast(FX, None, backend.result_dtype(FX), xp, geometry, activation, lams[0])
    plan = plan_for(geometry, pattern=pattern)
    cols = plan.cols if xp is np else xp.asarray(plan.cols)
    S = backend.implementation(xp).deep_pack_compressed(
        FX, cols, plan.ncols, _layers(geometry, lams, xp), plan.arrays(), activation, lams[0],
        backend.resolve_threads(nthreads))
    return S, plan
