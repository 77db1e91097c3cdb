r"""Public kernel API: the FC NNGP kernel and the patch-wise local kernel with its
contractions (docs/theory.md section 2).

With patches x_i of M entries (see :class:`lkr.PatchGeometry`):

.. math::

    C_{ij}^{\mu\nu} = x_i^\mu \cdot x_j^\nu / (\lambda_0 M), \qquad
    K_{ij}^{\mu\nu} = K_\sigma(C_{ii}^{\mu\mu}, C_{ij}^{\mu\nu}, C_{jj}^{\nu\nu}),

    K_R(Q)^{\mu\nu} = \frac{1}{\lambda_1 N_p} \sum_{ij} Q_{ij} K_{ij}^{\mu\nu}, \qquad
    G(W)_{ij} = \sum_{\mu\nu} W_{\mu\nu} K_{ij}^{\mu\nu}.

They satisfy the adjoint identity sum W * K_R(Q) = (1 / (lambda1 Np)) sum Q * G(W).
``renormalized_kernel`` and ``local_kernel_adjoint`` stream over tiles of sample pairs and
never hold the 4-index tensor (memory O(P P' + tile)); ``local_kernel`` materialises it
only within ``max_bytes``. The linear map uses the GEMM form.

With a :class:`lkr.DeepGeometry` (L convolutional layers) the same functions compute the
deep-CNN kernel of docs/deep-cnn.md: the final blocks K_L,ij (P, P', d, d), K_R(Q) with Q
d x d, and G(W); ``lambdas = (lambda0, ..., lambda_L)`` (see :mod:`lkr._deep_kernels`).

Every function accepts NumPy arrays (C++ kernels, OpenMP), CuPy arrays (CUDA kernels) and
CPU arrays of other libraries through DLPack, and returns the input's array library.
Dtypes: float32 when every array argument is float32, float64 otherwise.
"""
from __future__ import annotations

import math
import os
from typing import Optional, Sequence, Union

import numpy as np

from . import _deep_kernels, _env, _scale, backend
from . import _kernel_args as _args
from ._arrays import Array, ArrayLike
from ._blas import blas_threads
from ._validate import positive as _positive
from .activations import check_activation
from .deep_geometry import DeepGeometry
from .geometry import PatchGeometry

#: a one-layer PatchGeometry or an L-layer DeepGeometry
Geometry = Union[PatchGeometry, DeepGeometry]

__all__ = ["nngp", "local_kernel", "renormalized_kernel", "renormalized_kernel_diag",
           "local_kernel_adjoint", "DEFAULT_MAX_BYTES"]

#: Default memory budget of :func:`local_kernel` (bytes): ``LKR_MAX_BYTES`` as it was at
#: import when valid, else 2 GiB. Calls read the variable again (lkr._env), so that a bad
#: value is reported, naming itself, at the first use rather than breaking ``import lkr``.
try:
    DEFAULT_MAX_BYTES = _env.max_bytes()
except ValueError:
    DEFAULT_MAX_BYTES = _env.DEFAULT_MAX_BYTES


def _symmetric_product(A, B, xp, nthreads=None):
    """A @ B.T for a product known to be symmetric (B = A, or A with the symmetric Q
    applied), exactly symmetric, without a second pass over the result.

    NumPy: the upper block triangle only (half the flops of the full GEMM), tile by tile
    into a cache-resident buffer that is written to the tile and to its mirror: every entry
    of the P x P result is written once. For the short inner dimensions of kernels the
    product is bound by writing the result, which a symmetrising pass after a full GEMM
    ((K + K^T) / 2, or NumPy's own mirror after syrk) would double. The tiles are spread
    over ``nthreads`` Python threads (NumPy releases the GIL in GEMMs and copies) with
    BLAS on one thread each: multithreaded BLAS on many small GEMMs waits on its own
    threads on a busy machine (measured 8x slower under load). Other libraries: one GEMM
    and (K + K^T) / 2.
    """
    if xp is not np:
        K = A @ B.T
        return (K + K.T) / 2
    n = A.shape[0]
    if B is A and n <= 2048:
        # NumPy's syrk and its mirror: at this size the mirror is cheap and one call beats
        # the tile loop (measured at P = 1024; the tiles win at P = 4096)
        return A @ A.T
    dtype = np.result_type(A, B)
    K = np.empty((n, n), dtype=dtype)
    b = 256  # a 256 x 256 float64 tile is 512 KiB: it stays in L2 for its two copies
    starts = list(range(0, n, b))

    def rows(mine):
        buf = np.empty((min(b, n), min(b, n)), dtype=dtype)
        for i in mine:
            i1 = min(n, i + b)
            for j in range(i, n, b):
                j1 = min(n, j + b)
                T = buf[:i1 - i, :j1 - j]
                np.matmul(A[i:i1], B[j:j1].T, out=T)
                if j == i:  # a diagonal tile: its upper triangle, mirrored
                    K[i:i1, j:j1] = np.triu(T) + np.triu(T, 1).T
                    continue
                K[i:i1, j:j1] = T
                K[j:j1, i:i1] = T.T

    workers = backend.resolve_threads(nthreads) or (os.cpu_count() or 1)
    workers = max(1, min(workers, len(starts)))
    with blas_threads(1):
        if workers == 1:
            rows(starts)
        else:
            from concurrent.futures import ThreadPoolExecutor

            # one row of tiles per task, the longest first: dynamic load balance
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(lambda i: rows([i]), starts))
    return K


def _unit_scale(A, dtype, xp):
    """(A 2^-e, e) with e = 0 for ordinary inputs: the bilinear (linear-activation) GEMM
    forms then cannot overflow in their intermediate sums; the result is scaled back by the
    exponents, exactly (see lkr._scale)."""
    if A is None:
        return None, 0
    e = _scale.exponent(_scale.max_abs(A), dtype, math.prod(A.shape[1:]))  # terms per sum
    return (A if e == 0 else xp.ldexp(A, -e)), e


def _rescaled(out, e, xp):
    return out if e == 0 else xp.ldexp(out, e)


# -- public API -------------------------------------------------------------------------
def nngp(X: ArrayLike, Y: Optional[ArrayLike] = None, activation: str = "erf",
         lambda0: float = 1.0, *, nthreads: Optional[int] = None) -> Array:
    r"""Fully-connected NNGP kernel.

    .. math:: C^{\mu\nu} = x^\mu \cdot x^\nu / (\lambda_0 N_0), \qquad
              K^{\mu\nu} = K_\sigma(C^{\mu\mu}, C^{\mu\nu}, C^{\nu\nu})

    Parameters
    ----------
    X : array_like, shape (P, ...)
        Inputs, samples first; trailing axes are flattened (N0 = their product).
    Y : array_like, shape (P', ...), optional
        Second set (test points); ``None`` means X.
    activation : {"linear", "erf", "relu"}
    lambda0 : float
        Inverse prior variance of the first-layer weights.
    nthreads : int, optional
        Threads of the compiled map (0 = all cores).

    Returns
    -------
    K : ndarray, shape (P, P')
    """
    check_activation(activation)
    lambda0 = _positive(lambda0, "lambda0")
    Xa = backend.asarray(X, "X")
    Ya = backend.asarray(Y, "Y")
    xp = backend.array_module(Xa, Ya)
    for A, name in ((Xa, "X"), (Ya, "Y")):
        if A is not None:
            backend.check_floating(A, name)
            if A.ndim < 2:
                raise ValueError(f"{name} must be (P, N0) with samples first, got shape {A.shape}")
    dtype = backend.result_dtype(Xa, Ya)
    # explicit sizes rather than -1, which cannot be resolved for P = 0
    Xf = xp.ascontiguousarray(Xa.reshape(Xa.shape[0], math.prod(Xa.shape[1:])), dtype=dtype)
    Yf = Xf if Ya is None else xp.ascontiguousarray(
        Ya.reshape(Ya.shape[0], math.prod(Ya.shape[1:])), dtype=dtype)
    if Yf.shape[1] != Xf.shape[1]:
        raise ValueError(f"X and Y differ in input size: {Xf.shape[1]} vs {Yf.shape[1]}")
    backend.check_finite(Xa, "X")  # in the input's own shape, for the index of a NaN
    if Ya is not None:
        backend.check_finite(Ya, "Y")
    P, P2, N0 = Xf.shape[0], Yf.shape[0], Xf.shape[1]
    scale = 1.0 / max(lambda0 * N0, 1e-300)
    ex = _scale.row_exponents(Xf, xp, dtype, N0, lambda0)
    ey = ex if Ya is None else _scale.row_exponents(Yf, xp, dtype, N0, lambda0)
    if ex is not None or ey is not None:
        K = _nngp_rescaled(Xf, None if Ya is None else Yf, ex, ey, activation, scale, xp,
                           dtype, backend.resolve_threads(nthreads))
        return backend.wrap_like(K, X)
    fold = (P + P2) * N0 < P * P2
    if fold:
        # sqrt(scale) on the inputs costs less than a pass over the P x P' result
        root = dtype.type(math.sqrt(scale))
        Xf = Xf * root
        Yf = Xf if Ya is None else Yf * root
    # X X^T exactly symmetric (the tests check it), at GEMM speed
    K = _symmetric_product(Xf, Xf, xp, nthreads) if Ya is None else Xf @ Yf.T
    rest = dtype.type(1.0 if fold else scale)
    if not fold:
        K *= rest  # in place: a fresh P x P' temporary costs more in page faults than the map
    dx = xp.einsum("pi,pi->p", Xf, Xf) * rest
    dy = dx if Ya is None else xp.einsum("pi,pi->p", Yf, Yf) * rest
    if activation != "linear":
        K = xp.ascontiguousarray(K)
        backend.implementation(xp).nngp_map_inplace(K, dx, dy, activation,
                                                    backend.resolve_threads(nthreads))
    return backend.wrap_like(K, X)


def _nngp_rescaled(Xf, Yf, ex, ey, activation, scale, xp, dtype, nthreads):
    """The FC kernel of rows with huge or tiny entries: each row x is divided by 2^e (e the
    exponent of its largest entry, exact), the covariances g = C 2^-(e_x + e_y) computed at
    that scale, and the map evaluated without forming C:

    * linear, relu (homogeneous of degree 1 in C): K = 2^(e_x + e_y) K(g), after checking
      that max C is representable;
    * erf: u = 2 C_xy / sqrt((1 + 2 C_xx)(1 + 2 C_yy))
      = g_xy / (sqrt(2^(-2 e_x) / 2 + g_xx) sqrt(2^(-2 e_y) / 2 + g_yy)),
      which tends to the correlation as C grows, and K = (2/pi) arcsin(u).
    """
    P = Xf.shape[0]
    P2 = P if Yf is None else Yf.shape[0]
    ex = xp.zeros(P, np.int64) if ex is None else ex
    ey = ex if Yf is None else (xp.zeros(P2, np.int64) if ey is None else ey)
    Xs = xp.ldexp(Xf, (-ex).astype(np.int32)[:, None])
    Ys = Xs if Yf is None else xp.ldexp(Yf, (-ey).astype(np.int32)[:, None])
    K = Xs @ Ys.T
    K *= dtype.type(scale)
    gx = xp.einsum("pi,pi->p", Xs, Xs) * dtype.type(scale)
    gy = gx if Yf is None else xp.einsum("pi,pi->p", Ys, Ys) * dtype.type(scale)
    if Yf is None and xp is not np:
        K = (K + K.T) / 2
    if activation == "erf":
        with np.errstate(over="ignore"):  # 2^(-2e) = inf for tiny rows: then a = 0, K = 0
            ax = 1.0 / xp.sqrt(xp.ldexp(0.5, (-2 * ex).astype(np.int32)) + gx.astype(np.float64))
            ay = ax if Yf is None else 1.0 / xp.sqrt(
                xp.ldexp(0.5, (-2 * ey).astype(np.int32)) + gy.astype(np.float64))
        K *= (ax[:, None] * ay[None, :]).astype(dtype)  # a product that commutes: K stays symmetric
        K *= dtype.type(0.5)  # the map below doubles it: with C_xx = C_yy = 0, K = F(2 u / 2)
        zx = xp.zeros(P, dtype)
        zy = zx if P2 == P else xp.zeros(P2, dtype)
        backend.implementation(xp).nngp_map_inplace(xp.ascontiguousarray(K), zx, zy, "erf",
                                                    nthreads)
        return K
    for name, g, e in (("X", gx, ex), ("Y", gy, ey)):
        with np.errstate(over="ignore"):
            c = xp.ldexp(g.astype(np.float64), (2 * e).astype(np.int32))
        cmax = float(c.max()) if c.size else 0.0
        if cmax > float(np.finfo(dtype).max) / 4:
            A = Xf if name == "X" else Yf
            raise _scale.overflow_error(name, _scale.max_abs(A), cmax, activation, dtype)
    K = xp.ascontiguousarray(K)
    if activation == "relu":
        backend.implementation(xp).nngp_map_inplace(K, gx, gy, "relu", nthreads)
    with np.errstate(under="ignore"):  # tiny rows: K below the smallest float is 0
        return xp.ldexp(K, (ex[:, None] + ey[None, :]).astype(np.int32))


def local_kernel(X: ArrayLike, Y: Optional[ArrayLike] = None, *, geometry: Geometry,
                 activation: str = "erf", lambda0: float = 1.0, max_bytes: Optional[int] = None,
                 nthreads: Optional[int] = None,
                 lambdas: Optional[Sequence[float]] = None) -> Array:
    r"""The 4-index local kernel tensor K_ij^{mu nu}, materialised.

    .. math:: K_{ij}^{\mu\nu} = K_\sigma(C_{ii}^{\mu\mu}, C_{ij}^{\mu\nu}, C_{jj}^{\nu\nu}),
              \quad C_{ij}^{\mu\nu} = x_i^\mu \cdot x_j^\nu / (\lambda_0 M)

    Parameters
    ----------
    X, Y : array_like
        Inputs (Y defaults to X) in a shape ``geometry`` accepts.
    geometry : PatchGeometry or DeepGeometry
        With a DeepGeometry the result is the final blocks K_L,ij (P, P', d, d) of the
        L-layer recursion.
    activation : {"linear", "erf", "relu"}
    lambda0 : float
    lambdas : sequence of float, optional
        ``(lambda0, ..., lambda_L)``: the layers' weight precisions and the readout's
        (the last one does not enter the local kernel). Instead of ``lambda0``.
    max_bytes : int, optional
        Memory budget for the result (default :data:`DEFAULT_MAX_BYTES`, 2 GiB, or the
        ``LKR_MAX_BYTES`` environment variable). Above it a ``MemoryError`` says how large
        the tensor would be; use :func:`renormalized_kernel` and
        :func:`local_kernel_adjoint`, which stream.
    nthreads : int, optional

    Returns
    -------
    K : ndarray, shape (P, P', Np, Np)
        ``K[mu, nu, i, j]``; K[mu, nu].T == K[nu, mu] when Y is None.
    """
    if isinstance(geometry, DeepGeometry):
        if geometry.depth > 1:
            return _deep_kernels.local_kernel(X, Y, geometry=geometry, activation=activation,
                                              lambdas=lambdas, lambda0=lambda0,
                                              max_bytes=max_bytes, nthreads=nthreads)
        geometry, lambda0, _ = _deep_kernels.one_layer(X, Y, geometry, activation, lambdas,
                                                       lambda0, 1.0)
        lambdas = None
    lambda0, _ = _args.one_layer_lambdas(lambdas, lambda0, 1.0)
    geometry, lambda0, xp, PX, PY = _args.prepare(X, Y, geometry, activation, lambda0)
    dtype = backend.result_dtype(PX, PY)
    P, Np = PX.shape[0], geometry.num_patches
    P2 = P if PY is None else PY.shape[0]
    _args.check_budget(P, P2, Np, dtype, max_bytes)
    PX, PY = _args.cast(PX, PY, dtype, xp, activation, lambda0)
    out = backend.implementation(xp).local_kernel(PX, PY, activation, lambda0,
                                                  backend.resolve_threads(nthreads))
    return backend.wrap_like(out, X)


def renormalized_kernel(X: ArrayLike, Y: Optional[ArrayLike] = None, *, Q: ArrayLike,
                        geometry: Geometry, activation: str = "erf", lambda0: float = 1.0,
                        lambda1: float = 1.0, nthreads: Optional[int] = None,
                        lambdas: Optional[Sequence[float]] = None) -> Array:
    r"""The renormalised kernel K_R(Q), streamed tile by tile.

    .. math:: K_R(Q)^{\mu\nu} = \frac{1}{\lambda_1 N_p} \sum_{ij} Q_{ij} K_{ij}^{\mu\nu}

    Q = I gives the infinite-width CNN kernel, Q = 11^T / Np global average pooling.

    Parameters
    ----------
    X, Y : array_like
        Inputs (Y defaults to X).
    Q : array_like, shape (Np, Np)
        Symmetric order parameter (the result is linear in Q; positive definiteness is
        not required here). d x d with a DeepGeometry.
    geometry : PatchGeometry or DeepGeometry
        With a DeepGeometry: K_R(Q) = (1 / (lambda_L d)) sum_ij Q_ij K_L,ij.
    activation : {"linear", "erf", "relu"}
    lambda0, lambda1 : float
        Inverse prior variances of filters and readout.
    lambdas : sequence of float, optional
        ``(lambda0, ..., lambda_L)``, the readout's last; instead of lambda0/lambda1.
    nthreads : int, optional

    Returns
    -------
    K_R : ndarray, shape (P, P')
        Symmetric when Y is None. Memory O(P P' + tile); the tensor is never held.
    """
    if isinstance(geometry, DeepGeometry):
        if geometry.depth > 1:
            return _deep_kernels.renormalized_kernel(
                X, Y, Q=Q, geometry=geometry, activation=activation, lambdas=lambdas,
                lambda0=lambda0, lambda1=lambda1, nthreads=nthreads)
        geometry, lambda0, lambda1 = _deep_kernels.one_layer(X, Y, geometry, activation, lambdas,
                                                             lambda0, lambda1)
        lambdas = None
    lambda0, lambda1 = _args.one_layer_lambdas(lambdas, lambda0, lambda1)
    geometry, lambda0, xp, PX, PY = _args.prepare(X, Y, geometry, activation, lambda0)
    lambda1 = _positive(lambda1, "lambda1")
    Qa = backend.asarray(Q, "Q")
    dtype = backend.result_dtype(PX, PY, Qa)
    Np, M = geometry.num_patches, geometry.patch_size
    Qs = _args.symmetric_Q(Qa, Np, xp, dtype)
    PX, PY = _args.cast(PX, PY, dtype, xp, activation, lambda0)
    if activation == "linear":
        # K_R = <X^mu, c Q X^nu>_F, c = 1 / (lambda0 lambda1 M Np): the scale goes into the
        # Np x Np matrix Q (free) rather than over the P x P' result, then one GEMM
        # (P, Np M) x (Np M, P'); with Y None only its upper block triangle, mirrored.
        # Inputs scaled by 2^-e where needed so the sums cannot overflow (lkr._scale).
        A, ea = _unit_scale(PX, dtype, xp)
        B, eb = (A, ea) if PY is None else _unit_scale(PY, dtype, xp)
        QB = xp.matmul(Qs * dtype.type(1.0 / (lambda0 * lambda1 * M * Np)), B)  # (P', Np, M)
        Af = A.reshape(A.shape[0], -1)
        QBf = QB.reshape(B.shape[0], -1)
        out = _symmetric_product(Af, QBf, xp, nthreads) if PY is None else Af @ QBf.T
        out = _rescaled(out, ea + eb, xp)
    else:
        out = backend.implementation(xp).renormalized_kernel(
            PX, PY, Qs, activation, lambda0, lambda1, backend.resolve_threads(nthreads))
    _scale.check_result(out, xp, "renormalized_kernel", (("X", PX), ("Y", PY), ("Q", Qs)))
    return backend.wrap_like(out, X)


def renormalized_kernel_diag(X: ArrayLike, *, Q: ArrayLike, geometry: Geometry,
                             activation: str = "erf", lambda0: float = 1.0, lambda1: float = 1.0,
                             nthreads: Optional[int] = None,
                             lambdas: Optional[Sequence[float]] = None) -> Array:
    r"""The diagonal K_R(Q)(x, x) of the renormalised kernel, O(P Np^2 M).

    .. math:: K_R(Q)^{\mu\mu} = \frac{1}{\lambda_1 N_p} \sum_{ij} Q_{ij} K_{ij}^{\mu\mu}

    Parameters are those of :func:`renormalized_kernel`.

    Returns
    -------
    ndarray, shape (P,)
    """
    if isinstance(geometry, DeepGeometry):
        if geometry.depth > 1:
            return _deep_kernels.renormalized_kernel_diag(
                X, Q=Q, geometry=geometry, activation=activation, lambdas=lambdas,
                lambda0=lambda0, lambda1=lambda1, nthreads=nthreads)
        geometry, lambda0, lambda1 = _deep_kernels.one_layer(X, None, geometry, activation,
                                                             lambdas, lambda0, lambda1)
        lambdas = None
    lambda0, lambda1 = _args.one_layer_lambdas(lambdas, lambda0, lambda1)
    geometry, lambda0, xp, PX, _ = _args.prepare(X, None, geometry, activation, lambda0)
    lambda1 = _positive(lambda1, "lambda1")
    Qa = backend.asarray(Q, "Q")
    dtype = backend.result_dtype(PX, Qa)
    Np, M = geometry.num_patches, geometry.patch_size
    Qs = _args.symmetric_Q(Qa, Np, xp, dtype)
    PX, _ = _args.cast(PX, None, dtype, xp, activation, lambda0)
    if activation == "linear":
        A, e = _unit_scale(PX, dtype, xp)
        out = xp.einsum("pim,pim->p", A, xp.matmul(Qs, A))
        out *= dtype.type(1.0 / (lambda0 * lambda1 * M * Np))
        out = _rescaled(out, 2 * e, xp)
    else:
        out = backend.implementation(xp).renormalized_kernel_diag(
            PX, Qs, activation, lambda0, lambda1, backend.resolve_threads(nthreads))
    _scale.check_result(out, xp, "renormalized_kernel_diag", (("X", PX), ("Q", Qs)))
    return backend.wrap_like(out, X)


def local_kernel_adjoint(X: ArrayLike, W: ArrayLike, *, geometry: Geometry,
                         Y: Optional[ArrayLike] = None, activation: str = "erf",
                         lambda0: float = 1.0, nthreads: Optional[int] = None,
                         lambdas: Optional[Sequence[float]] = None) -> Array:
    r"""The adjoint contraction G(W) of the local kernel, streamed tile by tile.

    .. math:: G(W)_{ij} = \sum_{\mu\nu} W_{\mu\nu} K_{ij}^{\mu\nu}

    It is the adjoint of Q -> K_R(Q): sum W * K_R(Q) = (1 / (lambda1 Np)) sum Q * G(W),
    and so the gradient of any function of K_R with respect to Q. With a DeepGeometry,
    G(W)_ij = sum W_{mu nu} K_L,ij^{mu nu} (d, d) and the identity reads
    sum W * K_R(Q) = (1 / (lambda_L d)) sum Q * G(W).

    Parameters
    ----------
    X : array_like
        Inputs (P samples).
    W : array_like, shape (P, P')
        Weights over sample pairs (P' = P unless Y is given). A symmetric W with Y None
        visits each unordered pair once.
    geometry : PatchGeometry
    Y : array_like, optional
        Second set of inputs (P' samples).
    activation : {"linear", "erf", "relu"}
    lambda0 : float
    nthreads : int, optional

    Returns
    -------
    G : ndarray, shape (Np, Np)
        Symmetric when W is symmetric and Y is None.
    """
    if isinstance(geometry, DeepGeometry):
        if geometry.depth > 1:
            return _deep_kernels.local_kernel_adjoint(
                X, W, geometry=geometry, Y=Y, activation=activation, lambdas=lambdas,
                lambda0=lambda0, nthreads=nthreads)
        geometry, lambda0, _ = _deep_kernels.one_layer(X, Y, geometry, activation, lambdas,
                                                       lambda0, 1.0)
        lambdas = None
    lambda0, _ = _args.one_layer_lambdas(lambdas, lambda0, 1.0)
    geometry, lambda0, xp, PX, PY = _args.prepare(X, Y, geometry, activation, lambda0)
    Wa = backend.asarray(W, "W")
    dtype = backend.result_dtype(PX, PY, Wa)
    P = PX.shape[0]
    P2 = P if PY is None else PY.shape[0]
    Wc = _args.matrix(Wa, "W", (P, P2), xp, dtype)
    PX, PY = _args.cast(PX, PY, dtype, xp, activation, lambda0)
    M = geometry.patch_size
    symmetric = PY is None and _args.is_symmetric(Wc, xp)
    if activation == "linear":
        A, ea = _unit_scale(PX, dtype, xp)
        B, eb = (A, ea) if PY is None else _unit_scale(PY, dtype, xp)
        V = (Wc @ B.reshape(P2, -1)).reshape(A.shape)  # sum_nu W[mu, nu] x^nu_j
        out = xp.tensordot(A, V, axes=([0, 2], [0, 2])) * dtype.type(1.0 / (lambda0 * M))
        if symmetric:
            out = (out + out.T) / 2
        out = _rescaled(out, ea + eb, xp)
    else:
        out = backend.implementation(xp).local_kernel_adjoint(
            PX, PY, Wc, symmetric, activation, lambda0, backend.resolve_threads(nthreads))
    _scale.check_result(out, xp, "local_kernel_adjoint", (("X", PX), ("Y", PY), ("W", Wc)))
    return backend.wrap_like(out, X)
