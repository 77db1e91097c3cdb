"""The multi-output / non-central contractions and the compressed-kernel products of
``lkr._core`` (csrc/lkr/local_kernel_multi.hpp) for the CUDA engine.

No dedicated CUDA kernels yet: each call is a blockwise composition of the engine's own
materialised local kernel (row blocks of at most ``_BLOCK_BYTES``) with array-library
contractions, so it runs on the device of its inputs (and in the host emulator of the
tests). Same signatures and results as the C++ calls.
"""
from __future__ import annotations

import functools

import numpy as np

__all__ = ["MultiOutputCalls", "module_functions"]

_BLOCK_BYTES = 256 * 1024**2
_NAMES = ("patch_mean", "renormalized_kernel_multi", "local_kernel_adjoint_multi",
          "stored_matmul", "pack_compressed", "stored_sym", "stored_assemble", "stored_gather")


class MultiOutputCalls:
    """Mixed into :class:`lkr._cuda.Engine` (which provides ``xp`` and ``local_kernel``)."""

    def _row_blocks(self, PX, PY, activation, lambda0):
        P2 = PX.shape[0] if PY is None else PY.shape[0]
        Np = PX.shape[1]
        rows = max(1, _BLOCK_BYTES // max(1, P2 * Np * Np * PX.dtype.itemsize))
        other = PX if PY is None else PY
        for a in range(0, PX.shape[0], rows):
            yield a, self.local_kernel(PX[a:a + rows], other, activation, lambda0)

    def patch_mean(self, X, activation, lambda0, nthreads=0):
        xp = self.xp
        c = (X.astype(np.float64) ** 2).sum(axis=2) / (lambda0 * X.shape[2])
        m = xp.sqrt(c / (2 * np.pi)) if activation == "relu" else xp.zeros_like(c)
        return m.astype(X.dtype)

    def renormalized_kernel_multi(self, X, Y, Q, Qm, D, activation, lambda0, lambda1,
                                  nthreads=0):
        xp = self.xp
        P, Np = X.shape[0], X.shape[1]
        P2 = P if Y is None else Y.shape[0]
        out = xp.empty((P * D, P2 * D), dtype=np.float64)
        Q4 = Q.astype(np.float64).reshape(Np, D, Np, D)
        for a, Kb in self._row_blocks(X, Y, activation, lambda0):
            blk = xp.einsum("mnij,iajb->manb", Kb.astype(np.float64), Q4)
            out[a * D:(a + Kb.shape[0]) * D] = blk.reshape(-1, P2 * D)
        if Qm is not None:
            m = self.patch_mean(X, activation, lambda0).astype(np.float64)
            m2 = m if Y is None else self.patch_mean(Y, activation, lambda0).astype(np.float64)
            out += xp.einsum("mi,iajb,nj->manb", m, Qm.astype(np.float64).reshape(Np, D, Np, D),
                             m2).reshape(P * D, P2 * D)
        out *= 1.0 / (lambda1 * Np)
        if Y is None:
            out = (out + out.T) / 2
        return out.astype(X.dtype)

    def local_kernel_adjoint_multi(self, X, Y, W, w_symmetric, D, centred, activation, lambda0,
                                   nthreads=0):
        xp = self.xp
        P, Np = X.shape[0], X.shape[1]
        P2 = P if Y is None else Y.shape[0]
        W4 = W.astype(np.float64).reshape(P, D, P2, D)
        G = xp.zeros((Np, D, Np, D), dtype=np.float64)
        for a, Kb in self._row_blocks(X, Y, activation, lambda0):
            G += xp.einsum("mnij,manb->iajb", Kb.astype(np.float64), W4[a:a + Kb.shape[0]])
        G = G.reshape(Np * D, Np * D)
        sym = Y is None and w_symmetric
        if sym:
            G = (G + G.T) / 2
        if not centred:
            return G.astype(X.dtype)
        m = self.patch_mean(X, activation, lambda0).astype(np.float64)
        m2 = m if Y is None else self.patch_mean(Y, activation, lambda0).astype(np.float64)
        Gm = xp.einsum("mi,manb,nj->iajb", m, W4, m2).reshape(Np * D, Np * D)
        if sym:
            Gm = (Gm + Gm.T) / 2
        return (G - Gm).astype(X.dtype), Gm.astype(X.dtype)

    def stored_matmul(self, S, X, transpose, nthreads=0):
        S64 = S.astype(np.float64)
        return (S64.T if transpose else S64) @ X

    def pack_compressed(self, X, antisym, diagonal, store32, activation, lambda0, nthreads=0):
        xp = self.xp
        P, Np = X.shape[0], X.shape[1]
        if diagonal:
            pi = pj = np.arange(Np)
        else:
            pi, pj = np.triu_indices(Np, 1 if antisym else 0)
        T = xp.empty((P * (P + 1) // 2, len(pi)), dtype=np.float32 if store32 else np.float64)
        start = np.concatenate([[0], np.cumsum(P - np.arange(P))])
        for a, Kb in self._row_blocks(X, None, activation, lambda0):
            Kb = Kb.astype(np.float64)
            V = Kb[:, :, pi, pj]
            if not diagonal:
                KT = Kb[:, :, pj, pi]
                V = V - KT if antisym else xp.where(xp.asarray(pi == pj), V, V + KT)
            for mu in range(a, a + Kb.shape[0]):
                T[int(start[mu]):int(start[mu + 1])] = V[mu - a, mu:]
        return T

    def stored_sym(self, S, X, P, adjoint, scale, nthreads=0):
        xp = self.xp
        iu = np.triu_indices(P)
        S64 = S.astype(np.float64)
        if adjoint:
            w = X[iu] * xp.asarray(np.where(iu[0] == iu[1], 1.0, 2.0))
            return S64.T @ w
        v = (S64 @ X) * scale
        K = xp.empty((P, P), dtype=np.float64)
        K[iu] = v
        K[iu[1], iu[0]] = v
        return K


    def stored_assemble(self, vS, vA, P, D, scale, nthreads=0):
        xp = self.xp
        tri, st = np.triu_indices(D), np.triu_indices(D, 1)
        v = xp.empty((vS.shape[0], D, D), dtype=np.float64)
        v[:, tri[0], tri[1]] = vS
        v[:, tri[1], tri[0]] = vS
        iu = np.triu_indices(P)
        if vA is not None and D > 1:
            off = xp.asarray(iu[0] != iu[1])[:, None]
            v[:, st[0], st[1]] += xp.where(off, vA, 0.0)
            v[:, st[1], st[0]] -= xp.where(off, vA, 0.0)
        v *= scale
        K4 = xp.empty((P, D, P, D), dtype=np.float64)
        mu, nu = xp.asarray(iu[0]), xp.asarray(iu[1])
        K4[mu, :, nu, :] = v
        K4[nu, :, mu, :] = v.transpose(0, 2, 1)
        return K4.reshape(P * D, P * D)

    def stored_gather(self, B, P, D, nthreads=0):
        xp = self.xp
        iu = np.triu_indices(P)
        W = B.reshape(P, D, P, D)[xp.asarray(iu[0]), :, xp.asarray(iu[1]), :]
        W = W * xp.asarray(np.where(iu[0] == iu[1], 0.5, 1.0))[:, None, None]
        tri, st = np.triu_indices(D), np.triu_indices(D, 1)
        Wt = W.transpose(0, 2, 1)
        return (xp.ascontiguousarray(((W + Wt) / 2)[:, tri[0], tri[1]]),
                xp.ascontiguousarray(((W - Wt) / 2)[:, st[0], st[1]]))


def module_functions(default_engine):
    """Module-level functions of the calls above that use ``default_engine()`` (their
    signatures are the engine methods', through ``__wrapped__``)."""
    out = {}
    for name in _NAMES:
        method = getattr(MultiOutputCalls, name)

        def fn(*args, _name=name, **kw):
            return getattr(default_engine(), _name)(*args, **kw)

        out[name] = functools.wraps(method)(fn)
    return out
