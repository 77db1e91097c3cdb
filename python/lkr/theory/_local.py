r"""The local-kernel operator behind the CNN and LCN actions: Q -> K_R(Q) and B -> G(B).

Both are linear in the local kernel K_ij^{mu nu}, which does not change during a solve. When
it fits the memory budget it is computed once and stored compressed: only the Np(Np+1)/2
independent patch pairs (i <= j; Q and G are symmetric) and the P(P+1)/2 sample pairs
mu <= nu (K_R and B are symmetric), as a matrix T of shape (sample pairs, patch pairs) with

    T[(mu, nu), (i, j)] = K_ij^{mu nu} + K_ji^{mu nu}   (i < j),   K_ii^{mu nu}   (i = j).

Then K_R(Q) = T q / (lambda1 Np) with q_(ij) = Q_ij, and G(B) from w^T T with
w_(mu nu) = B_{mu nu} (2 B_{mu nu} off the diagonal): two BLAS matrix-vector products per
evaluation, a quarter of the memory traffic of the plain 4-index tensor. Otherwise each
evaluation streams through :func:`lkr.renormalized_kernel` and
:func:`lkr.local_kernel_adjoint` (the LCN, which needs only the Np diagonal blocks, streams
through one NNGP kernel per patch).
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..kernels import (
    DEFAULT_MAX_BYTES,
    local_kernel,
    local_kernel_adjoint,
    nngp,
    renormalized_kernel,
)

__all__ = ["LocalOperator"]

_BLOCK_BYTES = 64 * 1024**2  # working set of one block of the tensor while packing


class LocalOperator:
    """K_R(Q) and G(B) on one training set.

    Parameters
    ----------
    X : (P, N0) array (flattened inputs of ``geometry``).
    geometry, activation, lambda0 : as for the kernels.
    diagonal : bool
        Only the diagonal blocks K_ii enter (LCN).
    max_bytes : int, optional
        Budget for the compressed tensor (default :data:`lkr.kernels.DEFAULT_MAX_BYTES`).
    materialize : bool or None
        True: materialise (MemoryError above the budget); False: stream; None: materialise
        when it fits.
    """

    def __init__(self, X, geometry, activation, lambda0, *, diagonal=False, max_bytes=None,
                 materialize=None):
        self.X = X
        self.geometry = geometry
        self.activation = activation
        self.lambda0 = lambda0
        self.diagonal = diagonal
        xp = backend.array_module(X)
        self.xp = xp
        P = X.shape[0]
        Np = geometry.num_patches
        self.P, self.Np = P, Np
        if diagonal:
            pi = pj = np.arange(Np)
        else:
            pi, pj = np.triu_indices(Np)
        self.pairs = (pi, pj)
        nvec = P * (P + 1) // 2
        self.nbytes = len(pi) * nvec * 8
        budget = DEFAULT_MAX_BYTES if max_bytes is None else int(max_bytes)
        if materialize is None:
            materialize = self.nbytes <= budget
        elif materialize and self.nbytes > budget:
            raise MemoryError(
                f"the compressed local kernel needs {self.nbytes / 1e9:.3g} GB for P = {P}, "
                f"{len(pi)} patch pairs, above max_bytes = {budget / 1e9:.3g} GB; pass "
                "materialize=False to stream, or raise max_bytes")
        self.materialized = bool(materialize)
        self.patches = geometry.patches(X)  # (P, Np, M)
        if self.materialized:
            iu = np.triu_indices(P)
            self.iu = tuple(xp.asarray(i) for i in iu)
            w = np.where(iu[0] == iu[1], 1.0, 2.0)
            self.w = xp.asarray(w)
            self._pi, self._pj = xp.asarray(pi), xp.asarray(pj)
            self.T = self._pack(iu)
        elif diagonal:
            self._diag_blocks = None  # computed per evaluation

    # -- packing ------------------------------------------------------------------------
    def _pack(self, iu):
        xp, P, Np = self.xp, self.P, self.Np
        pi, pj = self.pairs
        # (sample pairs, patch pairs), row-major: a block of sample rows is one contiguous
        # slab, and both contractions are single GEMVs on it
        T = xp.empty((P * (P + 1) // 2, len(pi)), dtype=np.float64)
        if self.diagonal:
            for i in range(Np):
                Ki = nngp(self.patches[:, i, :], activation=self.activation,
                          lambda0=self.lambda0)
                T[:, i] = Ki[self.iu]
            return T
        rows = max(1, _BLOCK_BYTES // max(1, P * Np * Np * 8))
        start = np.concatenate([[0], np.cumsum(P - np.arange(P))])
        ij = xp.asarray(pi * Np + pj)
        ji = xp.asarray(pj * Np + pi)
        on_diag = xp.asarray(np.nonzero(pi == pj)[0])
        for a in range(0, P, rows):
            b = min(P, a + rows)
            Kb = local_kernel(self.X[a:b], self.X[a:], geometry=self.geometry,
                              activation=self.activation, lambda0=self.lambda0,
                              max_bytes=4 * _BLOCK_BYTES)
            Kf = Kb.reshape(b - a, P - a, Np * Np)
            # K_ij + K_ji for i < j; the diagonal pairs get 2 K_ii, halved below
            V = xp.take(Kf, ij, axis=2)
            V += xp.take(Kf, ji, axis=2)
            V[:, :, on_diag] *= 0.5
            for mu in range(a, b):  # keep nu >= mu of each row
                T[int(start[mu]):int(start[mu + 1])] = V[mu - a, mu - a:]
            del Kb, Kf, V
        return T

    # -- the two contractions -----------------------------------------------------------
    def kr(self, Q, lambda1):
        """K_R(Q) (P x P) for a symmetric (Np, Np) Q of the array library of X."""
        xp, P, Np = self.xp, self.P, self.Np
        scale = 1.0 / (lambda1 * Np)
        if self.materialized:
            q = Q[self._pi, self._pj]
            v = (self.T @ q) * scale
            K = xp.empty((P, P), dtype=np.float64)
            K[self.iu] = v
            K[self.iu[1], self.iu[0]] = v
            return K
        if self.diagonal:
            K = xp.zeros((P, P), dtype=np.float64)
            for i in range(Np):
                K += Q[i, i] * nngp(self.patches[:, i, :], activation=self.activation,
                                    lambda0=self.lambda0)
            K *= scale
            return (K + K.T) / 2
        return renormalized_kernel(self.X, Q=Q, geometry=self.geometry,
                                   activation=self.activation, lambda0=self.lambda0,
                                   lambda1=lambda1)

    def adjoint(self, B):
        """G(B) (Np x Np) for a symmetric (P, P) B; only the diagonal when ``diagonal``."""
        xp, Np = self.xp, self.Np
        if self.materialized:
            g = (B[self.iu] * self.w) @ self.T
            G = xp.zeros((Np, Np), dtype=np.float64)
            if self.diagonal:
                G[self._pi, self._pi] = g
                return G
            # off-diagonal pairs hold G_ij + G_ji = 2 G_ij
            g = xp.where(self._pi == self._pj, g, g / 2)
            G[self._pi, self._pj] = g
            G[self._pj, self._pi] = g
            return G
        if self.diagonal:
            G = xp.zeros((Np, Np), dtype=np.float64)
            for i in range(Np):
                Ki = nngp(self.patches[:, i, :], activation=self.activation,
                          lambda0=self.lambda0)
                G[i, i] = (B * Ki).sum()
            return G
        G = local_kernel_adjoint(self.X, B, geometry=self.geometry, activation=self.activation,
                                 lambda0=self.lambda0)
        return (G + G.T) / 2
