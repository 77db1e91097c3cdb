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

from typing import Optional, Tuple, Union

from . import _kernel_args as _args
from . import backend
from ._arrays import Array, ArrayLike
from ._validate import is_integer as _is_integer
from ._validate import positive as _positive
from .geometry import PatchGeometry

__all__ = ["patch_mean", "renormalized_kernel_multi", "local_kernel_adjoint_multi"]

def _outputs(D):
    if not _is_integer(D) or D < 1:
        raise ValueError(f"D must be a positive integer, got {D!r}")
    return int(D)


def patch_mean(X: ArrayLike, *, geometry: PatchGeometry, activation: str = "erf",
               lambda0: float = 1.0, nthreads: Optional[int] = None) -> Array:
    r"""Mean patch activations m_i^mu = E[sigma(h)], h ~ N(0, C_ii^{mu mu}).

    Returns
    -------
    m : ndarray, shape (P, Np)
        ReLU: sqrt(C_ii^{mu mu} / (2 pi)); zero for the odd activations.
    """
    geometry, lambda0, xp, PX, _ = _args.prepare(X, None, geometry, activation, lambda0)
    dtype = backend.result_dtype(PX)
    PX, _ = _args.cast(PX, None, dtype, xp, activation, lambda0)
    out = backend.implementation(xp).patch_mean(PX, activation, lambda0,
                                                backend.resolve_threads(nthreads))
    return backend.wrap_like(out, X)


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
