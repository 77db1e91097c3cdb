r"""Multi-output and non-central contractions of the local kernel (docs/theory-beyond-odd.md
sections 1.2 and 2.2).

With D outputs the order parameter is indexed patch-major, (i, a) -> i D + a, and the
kernel on samples example-major, (mu, a) -> mu D + a:

.. math::

    K_R[(\mu a), (\nu b)] = \frac{1}{\lambda_1 N_p} \sum_{ij} K_{ij}^{\mu\nu} Q_{(ia),(jb)}
        \;+\; \frac{1}{\lambda_1 N_p} \sum_{ij} m_i^\mu m_j^\nu Q^m_{(ia),(jb)},

    G(W)_{(ia),(jb)} = \sum_{\mu\nu} W_{(\mu a),(\nu b)} K_{ij}^{\mu\nu}, \qquad
    G_m(W)_{(ia),(jb)} = \sum_{\mu\nu} m_i^\mu W_{(\mu a),(\nu b)} m_j^\nu,

with m_i^mu = E[sigma(h)], h ~ N(0, C_ii^{mu mu}) the mean patch activation (ReLU:
sqrt(C / (2 pi)); erf and linear: 0), so that K - M (M_ij^{mu nu} = m_i^mu m_j^nu) is the
centred kernel of the non-central CNN action. The adjoint identity holds:
sum W * K_R(Q) = (1 / (lambda1 Np)) sum Q * G(W). D = 1 gives
:func:`lkr.renormalized_kernel` and :func:`lkr.local_kernel_adjoint`.

The compiled engine computes each tile of K_ij^{mu nu} once and applies it to every output
block (no D^2 passes), and ``centred=True`` returns G - G_m and G_m from one call. CuPy
arrays go to the CUDA engine's blockwise composition (:mod:`lkr._cuda.multi`: materialised
row blocks and a tensor contraction; no dedicated CUDA kernel yet).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np

from . import _kernel_args as _args
from . import backend
from ._arrays import Array, ArrayLike
from ._validate import is_integer as _is_integer
from ._validate import positive as _positive
from .activations import mean_map, nngp_map
from .deep_geometry import DeepGeometry
from .geometry import PatchGeometry

__all__ = ["patch_mean", "renormalized_kernel_multi", "local_kernel_adjoint_multi"]

def _outputs(D):
    if not _is_integer(D) or D < 1:
        raise ValueError(f"D must be a positive integer, got {D!r}")
    return int(D)


def patch_mean(X: ArrayLike, *, geometry: Union[PatchGeometry, DeepGeometry],
               activation: str = "erf", lambda0: float = 1.0, nthreads: Optional[int] = None,
               lambdas: Optional[Sequence[float]] = None) -> Array:
    r"""Mean patch activations m_i^mu = E[sigma(h)], h ~ N(0, C_ii^{mu mu}).

    With a :class:`lkr.DeepGeometry`, the means of the last layer's activations: h the
    last layer's pre-activation at final patch i, whose variance C_L,ii^{mu mu} follows from
    the diagonal of the kernel recursion alone (docs/deep-cnn.md section 4):

    .. math::

        C^1_{pp} = |x_p^\mu|^2 / (\lambda_0 M_1), \qquad
        C^{l+1}_{pp} = \frac{1}{k_{l+1}\lambda_l}\sum_t K_\sigma(C^l_{p+t,p+t})

    (K_sigma(c) the variance map, a padded site contributing 0): O(P sum_l n_l k_l).

    Parameters
    ----------
    lambdas : sequence of float, optional
        DeepGeometry only: ``(lambda_0, ..., lambda_L)`` as for the deep kernels (the
        readout's precision does not enter); instead of ``lambda0``.

    Returns
    -------
    m : ndarray, shape (P, Np) (DeepGeometry: (P, d))
        ReLU: sqrt(C_ii^{mu mu} / (2 pi)); zero for the odd activations.
    """
    if isinstance(geometry, DeepGeometry):
        return _deep_patch_mean(X, geometry, activation, lambdas, lambda0, nthreads)
    if lambdas is not None:
        raise ValueError("lambdas is for a DeepGeometry; use lambda0 here")
    geometry, lambda0, xp, PX, _ = _args.prepare(X, None, geometry, activation, lambda0)
    dtype = backend.result_dtype(PX)
    PX, _ = _args.cast(PX, None, dtype, xp, activation, lambda0)
    out = backend.implementation(xp).patch_mean(PX, activation, lambda0,
                                                backend.resolve_threads(nthreads))
    return backend.wrap_like(out, X)


def _deep_patch_mean(X, geometry, activation, lambdas, lambda0, nthreads):
    """The last layer's mean activations (see :func:`patch_mean`): the diagonal of the
    recursion in NumPy/CuPy (O(P sum_l n_l k_l), far below one kernel pass)."""
    lams, xp, PX, _ = _args.prepare_deep(X, None, geometry, activation, lambdas, lambda0, 1.0)
    if geometry.depth == 1:  # the compiled one-layer means, as the one-layer kernels
        return patch_mean(X, geometry=geometry.layers[0], activation=activation,
                          lambda0=lams[0], nthreads=nthreads)
    PX = PX.astype(np.float64, copy=False)
    P = PX.shape[0]
    c = xp.einsum("pim,pim->pi", PX, PX) / (lams[0] * PX.shape[2])      # C1_pp, (P, n1)
    for layer, (idx, k) in enumerate(geometry.gather_tables(), start=1):
        kv = nngp_map(activation, c, c, c)                              # K_l,pp
        kv = xp.concatenate([kv, xp.zeros((P, 1))], axis=1)              # a padded site: 0
        c = kv[:, xp.asarray(idx)].sum(axis=2) / (k * lams[layer])       # C_{l+1},pp
    return backend.wrap_like(mean_map(activation, c), X)


def renormalized_kernel_multi(X: ArrayLike, Y: Optional[ArrayLike] = None, *, Q: ArrayLike,
                              D: int, geometry: PatchGeometry, Qm: Optional[ArrayLike] = None,
                              activation: str = "erf", lambda0: float = 1.0,
                              lambda1: float = 1.0, nthreads: Optional[int] = None) -> Array:
    r"""K_R for D outputs (and the mean term with ``Qm``), streamed tile by tile.

    Parameters
    ----------
    X, Y : array_like
        Inputs (Y defaults to X) in a shape ``geometry`` accepts.
    Q : array_like, shape (Np D, Np D)
        Symmetric, patch-major (index i D + a).
    D : int
        Outputs.
    Qm : array_like, shape (Np D, Np D), optional
        Symmetric coefficient of the mean matrix M (the non-central action passes
        (I + Q)^{-1} - Qbar); omitted: no mean term.
    geometry, activation, lambda0, lambda1, nthreads : as :func:`lkr.renormalized_kernel`.

    Returns
    -------
    K_R : ndarray, shape (P D, P' D)
        Example-major (index mu D + a); symmetric when Y is None.
    """
    D = _outputs(D)
    geometry, lambda0, xp, PX, PY = _args.prepare(X, Y, geometry, activation, lambda0)
    lambda1 = _positive(lambda1, "lambda1")
    Qa = backend.asarray(Q, "Q")
    Qma = backend.asarray(Qm, "Qm")
    dtype = backend.result_dtype(PX, PY, Qa, Qma)
    _args.check_result_memory("renormalized_kernel_multi", PX.shape[0],
                              None if PY is None else PY.shape[0], D, dtype, xp)
    ND = geometry.num_patches * D
    Qs = _args.symmetric_Q(Qa, ND, xp, dtype)
    Qms = None if Qma is None else _args.symmetric_Q(Qma, ND, xp, dtype)
    PX, PY = _args.cast(PX, PY, dtype, xp, activation, lambda0)
    out = backend.implementation(xp).renormalized_kernel_multi(
        PX, PY, Qs, Qms, D, activation, lambda0, lambda1, backend.resolve_threads(nthreads))
    return backend.wrap_like(out, X)


def local_kernel_adjoint_multi(X: ArrayLike, W: ArrayLike, *, D: int, geometry: PatchGeometry,
                               Y: Optional[ArrayLike] = None, centred: bool = False,
                               activation: str = "erf", lambda0: float = 1.0,
                               nthreads: Optional[int] = None) -> Union[Array, Tuple[Array, Array]]:
    r"""G(W) for D outputs; with ``centred``, (G(W) - G_m(W), G_m(W)) from one pass.

    Parameters
    ----------
    X : array_like
        Inputs (P samples).
    W : array_like, shape (P D, P' D)
        Example-major weights (index mu D + a). A symmetric W with Y None visits each
        unordered pair of samples once.
    D : int
    geometry : PatchGeometry
    Y : array_like, optional
    centred : bool
        Also subtract and return the mean part G_m(W) = m^T W m (by blocks).
    activation, lambda0, nthreads : as :func:`lkr.local_kernel_adjoint`.

    Returns
    -------
    G : ndarray, shape (Np D, Np D)
        Patch-major. With ``centred``: the tuple (G - G_m, G_m).
    """
    D = _outputs(D)
    geometry, lambda0, xp, PX, PY = _args.prepare(X, Y, geometry, activation, lambda0)
    Wa = backend.asarray(W, "W")
    dtype = backend.result_dtype(PX, PY, Wa)
    P = PX.shape[0]
    P2 = P if PY is None else PY.shape[0]
    Wc = _args.matrix(Wa, "W", (P * D, P2 * D), xp, dtype)
    PX, PY = _args.cast(PX, PY, dtype, xp, activation, lambda0)
    symmetric = PY is None and _args.is_symmetric(Wc, xp)
    out = backend.implementation(xp).local_kernel_adjoint_multi(
        PX, PY, Wc, symmetric, D, bool(centred), activation, lambda0,
        backend.resolve_threads(nthreads))
    return tuple(backend.wrap_like(o, X) for o in out) if centred else backend.wrap_like(out, X)
