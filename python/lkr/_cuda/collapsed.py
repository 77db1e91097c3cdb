r"""The collapsed sampler's factor calls for CuPy arrays (and the engine emulator):
``chol_update`` and ``collapsed_sweep`` of ``lkr._core`` (csrc/lkr/cholupdate.hpp), written
over the array module of the engine.

The compiled CPU kernel updates the Cholesky factor by rank-k up/downdates, O(P^2 k) per
block; here each block is evaluated by refactorising A with the array module's batched
Cholesky, O(P^3) per block: simple, exact to rounding, and enough for a GPU, where the
sequential sweep is not where time goes. Both take and return the same arrays:

``S`` (C, P, P + D), float64, in place
    the augmented factor: ``S[c, j, i] = L[i, j]`` for j <= i < P (L the lower Cholesky
    factor of A = T I + G^T G, zeros for i < j) and ``S[c, j, P + d] = (L^{-1} Y)[j, d]``.
``G``, ``Gp`` (C, n, P), float64
    current and proposed scaled features, one row per feature; a block is ``block``
    consecutive rows. ``G`` is overwritten by the accepted blocks of ``Gp``.
``logu`` (C, n / block)
    log-uniform draws; block a of chain c is accepted when logu[c, a] < delta[c, a] with
    delta the change of the collapsed log-likelihood (docs/training.md, "Collapsed").

``collapsed_sweep`` returns (accepted uint8 (C, nb), delta float64 (C, nb), status int32
(C,)): status 1 marks a chain whose factor broke down (its later blocks are skipped, delta
NaN; the caller refactorises it from G). ``chol_update(S, X, sign)`` adds (sign +1) or
removes (-1) X^T X (X (C, k, P)) to A keeping Y, and returns ok (C,) uint8.
"""
from __future__ import annotations

import numpy as np

__all__ = ["CollapsedCalls"]


def _check(S, G=None, Gp=None):
    if S.ndim != 3 or S.shape[2] < S.shape[1]:
        raise ValueError(f"S must have shape (C, P, P + D), got {tuple(S.shape)}")
    for name, a in (("G", G), ("Gp", Gp)):
        if a is not None and (a.ndim != 3 or a.shape[0] != S.shape[0] or a.shape[2] != S.shape[1]):
            raise ValueError(f"{name} must have shape (C, n, P) = ({S.shape[0]}, n, {S.shape[1]}), "
                             f"got {tuple(a.shape)}")


class CollapsedCalls:
    """Engine mixin (needs ``self.xp``)."""

    def _unpack(self, S):
        """(A = L L^T, Y = L b) from the augmented factor."""
        xp = self.xp
        P = S.shape[1]
        L = xp.swapaxes(S[:, :, :P], 1, 2)
        return L @ xp.swapaxes(L, 1, 2), L @ S[:, :, P:]

    def _pack(self, A, Y):
        """(S, ok): the augmented factor of each chain, ok False where A is not PD."""
        xp = self.xp
        C, P, _ = A.shape
        L = xp.zeros_like(A)
        ok = xp.ones(C, dtype=bool)
        for c in range(C):
            try:
                L[c] = xp.linalg.cholesky(A[c])
            except np.linalg.LinAlgError:
                ok[c] = False
        ok &= xp.all(xp.isfinite(L.reshape(C, -1)), axis=1)
        L[~ok] = xp.eye(P)
        b = xp.linalg.solve(L, Y)
        return xp.ascontiguousarray(xp.concatenate([xp.swapaxes(L, 1, 2), b], axis=2)), ok

    def _loglik(self, S):
        xp = self.xp
        P = S.shape[1]
        D = S.shape[2] - P
        diag = xp.diagonal(S[:, :, :P], axis1=1, axis2=2)
        return -0.5 * (S[:, :, P:] ** 2).sum(axis=(1, 2)) - D * xp.log(diag).sum(axis=1)

    def chol_update(self, S, X, sign, nthreads=0):
        xp = self.xp
        _check(S)
        if X.ndim != 3 or X.shape[0] != S.shape[0] or X.shape[2] != S.shape[1]:
            raise ValueError(f"X must have shape (C, k, P), got {tuple(X.shape)}")
        if sign not in (1, -1):
            raise ValueError(f"sign must be +1 or -1, got {sign!r}")
        A, Y = self._unpack(S)
        A = A + sign * (xp.swapaxes(X, 1, 2) @ X)
        S2, ok = self._pack(A, Y)
        S[ok] = S2[ok]
        return ok.astype(np.uint8)

    def collapsed_sweep(self, S, G, Gp, logu, block, nthreads=0):
        xp = self.xp
        _check(S, G, Gp)
        C, n, P = G.shape
        if Gp.shape != G.shape:
            raise ValueError(f"Gp must have the shape of G {tuple(G.shape)}, got {tuple(Gp.shape)}")
        if block < 1 or n % block:
            raise ValueError(f"block must be >= 1 and divide n = {n}, got {block}")
        nb = n // block
        if logu.shape != (C, nb):
            raise ValueError(f"logu must have shape ({C}, {nb}), got {tuple(logu.shape)}")
        A, Y = self._unpack(S)
        ll = self._loglik(S)
        accepted = xp.zeros((C, nb), dtype=np.uint8)
        delta = xp.full((C, nb), np.nan)
        status = xp.zeros(C, dtype=np.int32)
        for a in range(nb):
            rows = slice(a * block, (a + 1) * block)
            Go, Gn = G[:, rows, :], Gp[:, rows, :]
            A2 = A - xp.swapaxes(Go, 1, 2) @ Go + xp.swapaxes(Gn, 1, 2) @ Gn
            S2, ok = self._pack(A2, Y)
            live = status == 0
            status[live & ~ok] = 1
            live = status == 0
            d = xp.where(live, self._loglik(xp.where(live[:, None, None], S2, S)) - ll, np.nan)
            delta[:, a] = d
            acc = live & (logu[:, a] < d)
            accepted[:, a] = acc
            A = xp.where(acc[:, None, None], A2, A)
            S[acc] = S2[acc]
            ll = xp.where(acc, ll + d, ll)
            G[acc, rows, :] = Gn[acc]
        return accepted, delta, status
