r"""The local-kernel operator behind the CNN and LCN actions: Q -> K_R(Q) and B -> G(B),
for one or D outputs and with the mean (non-central) terms.

All maps are linear in the local kernel K_ij^{mu nu}, which does not change during a solve.
When it fits the memory budget it is computed once and stored compressed: the sample
pairs mu <= nu (K_R and B are symmetric) times the patch pairs i <= j, as a matrix
T_S of shape (sample pairs, patch pairs) with

    T_S[(mu, nu), (i, j)] = K_ij^{mu nu} + K_ji^{mu nu}   (i < j),   K_ii^{mu nu}   (i = j).

One output: K_R(Q) = T_S q / (lambda1 Np) with q_(ij) = Q_ij, and G(B) from w^T T_S with
w_(mu nu) = B_{mu nu} (2 B_{mu nu} off the diagonal): two matrix-vector products per
evaluation. D outputs: Q's (i, j) block is not symmetric in the output indices, so the
antisymmetric part T_A = K_ij - K_ji (i < j) is stored too (on first use), and both maps
become GEMMs with D^2 right-hand sides (K_ij q + K_ji q' = T_S (q + q')/2 + T_A (q - q')/2).
The LCN keeps only the Np diagonal blocks K_ii (symmetric in mu, nu).

Storage is float64, or float32 (``kernel_dtype``; the products then accumulate in float64,
through :func:`lkr._core.stored_matmul`): half the memory and memory traffic, at a relative
error of the stored entries of 6e-8. The budget (``max_bytes``) defaults to
``LKR_MAX_BYTES`` when set, else half of the memory available now (MemAvailable of
/proc/meminfo). Above it every evaluation streams through the compiled kernels
(:func:`lkr.renormalized_kernel` / :func:`lkr.local_kernel_adjoint` for one odd output,
:mod:`lkr.kernels_multi` otherwise), and the last K_R is kept so that the line search's
final point is not streamed twice.

Mean terms: m (P, Np) the mean patch activations, M_ij^{mu nu} = m_i^mu m_j^nu; the
non-central K_R adds (1 / (lambda1 Np)) m Qm m^T (by output blocks), and the centred
adjoint returns G - G_m and G_m with G_m(B) = m^T B m.
"""
from __future__ import annotations

import numpy as np

from .. import _memory, backend
from .._env import default_budget
from ..activations import nngp_map
from ..kernels import (
    local_kernel,
    local_kernel_adjoint,
    nngp,
    renormalized_kernel,
    renormalized_kernel_diag,
)
from ..kernels_multi import local_kernel_adjoint_multi, patch_mean, renormalized_kernel_multi

__all__ = ["LocalOperator", "StoredKernel", "default_budget"]

_BLOCK_BYTES = 64 * 1024**2  # working set of one block of the tensor while packing
_KERNEL_DTYPES = (None, "float64", "float32")


def _pairs_of(Np, diagonal):
    if diagonal:
        return np.arange(Np), np.arange(Np)
    return np.triu_indices(Np)


class StoredKernel:
    """The algebra shared by the local-kernel operators (one layer, :class:`LocalOperator`;
    the last layer of a deep CNN, :class:`lkr.theory.deep_conv.DeepLocalOperator`) on the
    compressed stored kernel and the mean terms: D-output K_R and G from T_S (and T_A),
    m Qm m^T and m^T B m.

    A subclass provides ``xp``, ``P``, ``Np``, ``T`` (rows mu <= nu in ``np.triu_indices(P)``
    order, one column per patch pair (``_pi[c]``, ``_pj[c]``), i <= j), ``_antisym()`` (T_A:
    K_ij - K_ji over the columns with i < j, in the same order), ``means`` (P, Np) and
    ``diagonal`` (only the pairs (i, i): LCN).
    """

    diagonal = False
    _iu = None

    def _index(self):
        """Sample-pair indices (mu <= nu, row order of T), their weights (1 on the diagonal,
        2 off it) and the diagonal mask; built on first use (the one-output CPU path needs
        none of them: the compiled products index T directly)."""
        if self._iu is None:
            iu = np.triu_indices(self.P)
            xp = self.xp
            self._iu = (tuple(xp.asarray(i) for i in iu),
                        xp.asarray(np.where(iu[0] == iu[1], 1.0, 2.0)),
                        xp.asarray(iu[0] == iu[1]))
        return self._iu

    def _stored(self, S, X, transpose=False):
        """S @ X (S^T @ X) in float64 for a float64 or float32 stored S; X 1-D or 2-D."""
        if S.dtype == np.float64:
            return (S.T if transpose else S) @ X
        X2 = np.ascontiguousarray(X.reshape(X.shape[0], -1), dtype=np.float64)
        out = backend.implementation(np).stored_matmul(S, X2, transpose,
                                                       backend.resolve_threads(None))
        return out.reshape((out.shape[0],) + X.shape[1:])

    def _mean_term(self, Qm, D, scale):
        m = self.xp.asarray(self.means)
        P, Np = self.P, self.Np
        if D == 1:
            return scale * (m @ Qm @ m.T)
        # two GEMMs (an unoptimised three-operand einsum costs P^2 Np^2 D^2), the second
        # one writing the (P D, P D) result in its final example-major layout:
        # Z[mu, a, j, b] = sum_i m_i^mu Qm[(i a), (j b)], K[(nu b), (mu a)] = sum_j m_j^nu Z
        Z = (m @ Qm.reshape(Np, D * Np * D)).reshape(P, D, Np, D)
        Z = self.xp.ascontiguousarray(Z.transpose(2, 3, 0, 1)).reshape(Np, D * P * D)
        return (m @ (scale * Z)).reshape(P * D, P * D)

    def _mean_adjoint(self, B, D):
        """G_m(B) = m^T B m by output blocks (LCN: its block diagonal)."""
        xp, P, Np = self.xp, self.P, self.Np
        m = xp.asarray(self.means)
        if D == 1:
            Gm = m.T @ B @ m
        else:
            # two GEMMs, as in _mean_term
            W = (m.T @ B.reshape(P, D * P * D)).reshape(Np, D, P, D)
            W = W.transpose(0, 1, 3, 2).reshape(Np * D * D, P) @ m        # (Np D D, Np)
            Gm = W.reshape(Np, D, D, Np).transpose(0, 1, 3, 2).reshape(Np * D, Np * D)
        Gm = (Gm + Gm.T) / 2
        if self.diagonal:
            mask = np.kron(np.eye(Np), np.ones((D, D)))
            Gm = Gm * xp.asarray(mask)
        return Gm

    def _kr_stored_multi(self, Q, D, scale):
        """K_R (P D, P D), example-major, from the stored T_S and T_A."""
        xp, P, Np = self.xp, self.P, self.Np
        Q4 = Q.reshape(Np, D, Np, D)
        pi, pj = self._pi, self._pj
        Qij = Q4[pi, :, pj, :]  # (pairs, D, D): block (i, j); block (j, i) is its transpose
        # T_S meets the part of Q_ij symmetric in the outputs, T_A the antisymmetric part:
        # their products are symmetric / antisymmetric in (a, b), so D(D+1)/2 and D(D-1)/2
        # right-hand sides suffice (half of D^2 each)
        tri, st = np.triu_indices(D), np.triu_indices(D, 1)
        Qs = Qij if self.diagonal else (Qij + Qij.transpose(0, 2, 1)) / 2
        vS = self._stored(self.T, xp.ascontiguousarray(Qs[:, tri[0], tri[1]]))
        vA = None
        if not self.diagonal and D > 1:
            off = pi < pj
            cA = ((Qij - Qij.transpose(0, 2, 1)) / 2)[off][:, st[0], st[1]]
            if cA.shape[0]:
                vA = self._stored(self._antisym(), xp.ascontiguousarray(cA))
        # K[(mu a), (nu b)] = K[(nu b), (mu a)] = scale (vS + vA)(a, b) for mu <= nu, the
        # diagonal sample pairs' blocks symmetric (vS only): one compiled pass writes both
        # triangles (lkr._core.stored_assemble; the CUDA engine composes it from indexing)
        return backend.implementation(xp).stored_assemble(vS, vA, P, D, scale,
                                                          backend.resolve_threads(None))

    def _adjoint_stored_multi(self, B, D):
        """G(B) (Np D, Np D) from the stored T_S and T_A."""
        xp, P, Np = self.xp, self.P, self.Np
        pi, pj = self._pi, self._pj
        # W = B[(mu a), (nu b)] over the sample pairs mu <= nu (halved for mu = nu): only its
        # part symmetric in the outputs meets T_S, and only the antisymmetric part meets T_A
        # (see _kr_stored): half the right-hand sides each, gathered in one compiled pass
        Ws, Wa = backend.implementation(xp).stored_gather(xp.ascontiguousarray(B), P, D,
                                                           backend.resolve_threads(None))
        tri, st = np.triu_indices(D), np.triu_indices(D, 1)
        XSv = self._stored(self.T, Ws, transpose=True)              # (pairs, D(D+1)/2)
        XS = xp.empty((XSv.shape[0], D, D), dtype=np.float64)
        XS[:, tri[0], tri[1]] = XSv
        XS[:, tri[1], tri[0]] = XSv
        blocks = XS.copy()  # block (i, j) of G: sym(XS) + anti(XA) for i < j, 2 XS for i = j
        on = xp.asarray(backend.to_numpy(pi == pj))
        blocks[on] *= 2.0
        if not self.diagonal:
            off = backend.to_numpy(pi < pj)
            if off.any():
                XAv = self._stored(self._antisym(), Wa, transpose=True)   # (off pairs, ...)
                XA = xp.zeros((XAv.shape[0], D, D), dtype=np.float64)
                XA[:, st[0], st[1]] = XAv
                XA[:, st[1], st[0]] = -XAv
                blocks[xp.asarray(off)] += XA
        G4 = xp.zeros((Np, D, Np, D), dtype=np.float64)
        G4[pi, :, pj, :] = blocks
        G4[pj, :, pi, :] = blocks.transpose(0, 2, 1)
        G = G4.reshape(Np * D, Np * D)
        return (G + G.T) / 2


class LocalOperator(StoredKernel):
    """K_R(Q), G(B) and their mean terms on one training set.

    Parameters
    ----------
    X : (P, N0) array (flattened inputs of ``geometry``).
    geometry, activation, lambda0 : as for the kernels.
    diagonal : bool
        Only the diagonal blocks K_ii enter (LCN).
    max_bytes : int, optional
        Budget for the compressed tensor (default :func:`default_budget`).
    materialize : bool or None
        True: materialise (MemoryError above the budget); False: stream; None: materialise
        when it fits.
    kernel_dtype : {None, "float64", "float32"}
        Storage of the compressed tensor; None: float64 when it fits the budget, else
        float32 when ``allow_float32`` and that fits.
    allow_float32 : bool
        Whether the automatic choice may take float32 (the theories allow it when their
        tolerance is above float32's accuracy floor).
    multi : bool
        The operator serves D >= 2 outputs: the antisymmetric part T_A is stored too, and
        counts in the budget.
    """

    def __init__(self, X, geometry, activation, lambda0, *, diagonal=False, max_bytes=None,
                 materialize=None, kernel_dtype=None, allow_float32=False, multi=False):
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
        pi, pj = _pairs_of(Np, diagonal)
        self.pairs = (pi, pj)
        budget = default_budget() if max_bytes is None else int(max_bytes)
        self.budget = budget
        if kernel_dtype not in _KERNEL_DTYPES:
            raise ValueError(f"kernel_dtype must be None, 'float64' or 'float32', got "
                             f"{kernel_dtype!r}")
        # T_S over the patch pairs, and T_A over the pairs i < j for D outputs (CNN)
        stored = len(pi) + (int(np.sum(pi < pj)) if multi and not diagonal else 0)
        if kernel_dtype is None:
            fits64 = _memory.stored_kernel_bytes(P, stored, 8) <= budget
            kernel_dtype = "float32" if (not fits64 and allow_float32 and
                                         _memory.stored_kernel_bytes(P, stored, 4) <= budget
                                         ) else "float64"
        if xp is not np:
            kernel_dtype = "float64"  # the mixed-precision products are CPU kernels
        self.dtype = np.dtype(kernel_dtype)
        self.nbytes = _memory.stored_kernel_bytes(P, stored, self.dtype.itemsize)
        if materialize is None:
            materialize = self.nbytes <= budget
        elif materialize and self.nbytes > budget:
            raise _memory.MemoryBudgetError(
                f"the compressed local kernel needs {_memory.format_bytes(self.nbytes)} for "
                f"P = {P}, {stored} patch pairs, above max_bytes = "
                f"{_memory.format_bytes(budget)}; pass materialize=False to stream, or raise "
                "max_bytes")
        self.materialized = bool(materialize)
        self.patches = geometry.patches(X)  # (P, Np, M)
        self._m = None
        self._TA = None
        self._last = None  # (key, K_R) of the last streamed K_R
        self._iu = None
        if self.materialized:
            self._pi, self._pj = xp.asarray(pi), xp.asarray(pj)
            self.T = self._pack(antisym=False)

    @property
    def iu(self):
        return self._index()[0]

    def _fast(self):
        """The compiled one-output products apply (CPU, CNN)."""
        return self.xp is np

    # -- packing ------------------------------------------------------------------------
    def _pack(self, antisym):
        """T_S (or T_A = K_ij - K_ji over i < j when ``antisym``), rows mu <= nu."""
        xp, P, Np = self.xp, self.P, self.Np
        pi, pj = self.pairs
        if xp is np and not self.diagonal:
            # tile by tile in the compiled engine, straight into the compressed layout
            PX = np.ascontiguousarray(self.patches, dtype=np.float64)
            return backend.implementation(np).pack_compressed(
                PX, antisym, False, self.dtype == np.float32, self.activation, self.lambda0,
                backend.resolve_threads(None))
        if antisym:
            keep = pi < pj
            pi, pj = pi[keep], pj[keep]
        # (sample pairs, patch pairs), row-major: a block of sample rows is one contiguous
        # slab, and both contractions are single GEMVs (GEMMs for D outputs) on it
        T = xp.empty((P * (P + 1) // 2, len(pi)), dtype=self.dtype)
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
            V = xp.take(Kf, ij, axis=2)
            if antisym:
                V -= xp.take(Kf, ji, axis=2)
            else:
                # K_ij + K_ji for i < j; the diagonal pairs get 2 K_ii, halved below
                V += xp.take(Kf, ji, axis=2)
                V[:, :, on_diag] *= 0.5
            for mu in range(a, b):  # keep nu >= mu of each row
                T[int(start[mu]):int(start[mu + 1])] = V[mu - a, mu - a:]
            del Kb, Kf, V
        return T

    def _antisym(self):
        if self._TA is None:
            self._TA = self._pack(antisym=True)
        return self._TA

    @property
    def means(self):
        """m (P, Np): mean patch activations (zero for odd activations)."""
        if self._m is None:
            self._m = patch_mean(self.X, geometry=self.geometry, activation=self.activation,
                                 lambda0=self.lambda0).astype(np.float64)
        return self._m

    # -- K_R -----------------------------------------------------------------------------
    def kr(self, Q, lambda1, Qm=None):
        """K_R (P D, P D), example-major, for a symmetric (Np D, Np D) patch-major Q of the
        array library of X; plus the mean term (1/(lambda1 Np)) sum_ij Qm m_i m_j^T."""
        Np = self.Np
        D = Q.shape[0] // Np
        scale = 1.0 / (lambda1 * Np)
        if self.materialized:
            K = self._kr_stored(Q, D, scale)
        else:
            key = (D, float(lambda1), backend.to_numpy(Q).tobytes(),
                   None if Qm is None else backend.to_numpy(Qm).tobytes())
            if self._last is not None and self._last[0] == key:
                return self._last[1].copy()
            K = self._kr_streamed(Q, D, lambda1, Qm)
            self._last = (key, K.copy())
            return K
        if Qm is not None:
            K += self._mean_term(Qm, D, scale)
        return K

    def _kr_stored(self, Q, D, scale):
        xp, P = self.xp, self.P
        if D == 1 and self._fast() and not self.diagonal:
            q = np.ascontiguousarray(Q[self._pi, self._pj], dtype=np.float64)
            return backend.implementation(np).stored_sym(self.T, q, P, False, scale,
                                                         backend.resolve_threads(None))
        if D == 1:
            q = Q[self._pi, self._pj]
            v = self._stored(self.T, q) * scale
            K = xp.empty((P, P), dtype=np.float64)
            K[self.iu] = v
            K[self.iu[1], self.iu[0]] = v
            return K
        return self._kr_stored_multi(Q, D, scale)

    def _kr_streamed(self, Q, D, lambda1, Qm):
        xp, Np = self.xp, self.Np
        if self.diagonal:
            P = self.P
            K4 = xp.zeros((P, D, P, D), dtype=np.float64)
            for i in range(Np):
                Ki = nngp(self.patches[:, i, :], activation=self.activation,
                          lambda0=self.lambda0)
                Qi = Q[i * D:(i + 1) * D, i * D:(i + 1) * D]
                K4 += Ki[:, None, :, None] * Qi[None, :, None, :]
            K = K4.reshape(P * D, P * D) / (lambda1 * Np)
            if Qm is not None:
                K += self._mean_term(Qm, D, 1.0 / (lambda1 * Np))
            return (K + K.T) / 2
        if D == 1:
            # the fused one-output kernel, and the mean term as a GEMM (O(P^2 Np))
            K = renormalized_kernel(self.X, Q=Q, geometry=self.geometry,
                                    activation=self.activation, lambda0=self.lambda0,
                                    lambda1=lambda1)
            if Qm is not None:
                K += self._mean_term(Qm, 1, 1.0 / (lambda1 * Np))
                K = (K + K.T) / 2
            return K
        return renormalized_kernel_multi(self.X, Q=Q, D=D, Qm=Qm, geometry=self.geometry,
                                         activation=self.activation, lambda0=self.lambda0,
                                         lambda1=lambda1)

    # -- G -------------------------------------------------------------------------------
    def adjoint(self, B, centred=False):
        """G(B) (Np D, Np D) for a symmetric (P D, P D) B (LCN: block-diagonal); with
        ``centred``, the pair (G(B) - G_m(B), G_m(B))."""
        xp, P, Np = self.xp, self.P, self.Np
        D = B.shape[0] // P
        if self.materialized:
            G = self._adjoint_stored(B, D)
        elif self.diagonal:
            B4 = B.reshape(P, D, P, D)
            G = xp.zeros((Np * D, Np * D), dtype=np.float64)
            for i in range(Np):
                Ki = nngp(self.patches[:, i, :], activation=self.activation,
                          lambda0=self.lambda0)
                blk = xp.einsum("mn,manb->ab", Ki, B4)
                G[i * D:(i + 1) * D, i * D:(i + 1) * D] = (blk + blk.T) / 2
        elif D == 1:
            G = local_kernel_adjoint(self.X, B, geometry=self.geometry,
                                     activation=self.activation, lambda0=self.lambda0)
            G = (G + G.T) / 2
        else:
            # each tile once for all D^2 blocks, G and G_m in one call
            out = local_kernel_adjoint_multi(self.X, B, D=D, centred=centred,
                                             geometry=self.geometry,
                                             activation=self.activation, lambda0=self.lambda0)
            if centred:
                Gc, Gm = out
                return (Gc + Gc.T) / 2, (Gm + Gm.T) / 2
            return (out + out.T) / 2
        if not centred:
            return G
        Gm = self._mean_adjoint(B, D)
        return G - Gm, Gm

    def adjoint_of_inverse(self, chol, a):
        """G(A^{-1} - a a^T) straight from the Cholesky factor of A, or None where this
        path does not apply (one output, stored CNN kernel on the CPU).

        LAPACK ``potri`` leaves A^{-1} in one triangle, ``syr`` subtracts a a^T there, and
        the compiled product reads just that triangle: no full P x P B is formed, copied
        or mirrored (at P = 2048 that saved a third of the gradient's dense algebra)."""
        if not (self.materialized and self._fast() and not self.diagonal) or chol.xp is not np:
            return None
        if a.ndim != 1 or a.shape[0] != self.P:
            return None
        from scipy.linalg import blas, lapack

        L = np.asfortranarray(chol.L)
        Ai, info = lapack.dpotri(L, lower=1)  # a new array: chol stays usable
        if info != 0:
            return None
        Ai = blas.dsyr(-1.0, np.asarray(a, dtype=np.float64), lower=1, a=Ai, overwrite_a=1)
        # Ai is F-ordered with its lower triangle valid: Ai.T is C-ordered with the upper
        # triangle valid, the one stored_sym reads (B[mu, nu], nu >= mu)
        g = backend.implementation(np).stored_sym(self.T, Ai.T, self.P, True, 0.0,
                                                  backend.resolve_threads(None))
        Np = self.Np
        pi, pj = self._pi, self._pj
        G = np.zeros((Np, Np), dtype=np.float64)
        g = np.where(pi == pj, g, g / 2)  # off-diagonal pairs hold G_ij + G_ji = 2 G_ij
        G[pi, pj] = g
        G[pj, pi] = g
        return G

    def _adjoint_stored(self, B, D):
        xp, P, Np = self.xp, self.P, self.Np
        pi, pj = self._pi, self._pj
        if D == 1:
            if self._fast() and not self.diagonal:
                g = backend.implementation(np).stored_sym(
                    self.T, np.ascontiguousarray(B, dtype=np.float64), P, True, 0.0,
                    backend.resolve_threads(None))
            else:
                g = self._stored(self.T, B[self.iu] * self._index()[1], transpose=True)
            G = xp.zeros((Np, Np), dtype=np.float64)
            if self.diagonal:
                G[pi, pi] = g
                return G
            # off-diagonal pairs hold G_ij + G_ji = 2 G_ij
            g = xp.where(pi == pj, g, g / 2)
            G[pi, pj] = g
            G[pj, pi] = g
            return G
        return self._adjoint_stored_multi(B, D)

    # -- test points ---------------------------------------------------------------------
    def test_kernels(self, Xt, Q, lambda1, Qm=None):
        """The predictor's kernels at test inputs ``Xt`` (flattened like X): the cross
        kernel k_R (Pt D, P D), example-major on both sides, and the test points' own
        D x D blocks kappa_R (Pt, D, D), for the order parameter Q (and the mean
        coefficient Qm) of :meth:`kr`. Every local-kernel operator offers this method, so
        that the CNN predictor (:mod:`lkr.theory._cnn_predict`) works on any of them."""
        xp, Np = self.xp, self.Np
        D = Q.shape[0] // Np
        scale = 1.0 / (lambda1 * Np)
        kw = dict(geometry=self.geometry, activation=self.activation, lambda0=self.lambda0)
        mt = None if Qm is None else xp.asarray(patch_mean(Xt, **kw), dtype=np.float64)
        if D == 1:
            k_cross = renormalized_kernel(Xt, self.X, Q=Q, lambda1=lambda1, **kw)
            k_diag = renormalized_kernel_diag(Xt, Q=Q, lambda1=lambda1, **kw)
            if Qm is not None:
                m = xp.asarray(self.means)
                k_cross = k_cross + scale * (mt @ Qm @ m.T)
                k_diag = k_diag + scale * xp.einsum("ti,ij,tj->t", mt, Qm, mt)
            return k_cross, k_diag[:, None, None]
        k_cross = renormalized_kernel_multi(Xt, self.X, Q=Q, D=D, Qm=Qm, lambda1=lambda1, **kw)
        # the local kernel of each test point with itself, (Pt, Np, Np)
        PXt = xp.asarray(self.geometry.patches(Xt), dtype=np.float64)
        C = xp.einsum("tim,tjm->tij", PXt, PXt) / (self.lambda0 * PXt.shape[2])
        cd = xp.einsum("tii->ti", C)
        Ktt = nngp_map(self.activation, cd[:, :, None], C, cd[:, None, :])
        blocks = scale * xp.einsum("tij,iajb->tab", Ktt, Q.reshape(Np, D, Np, D))
        if Qm is not None:
            blocks += scale * xp.einsum("ti,iajb,tj->tab", mt, Qm.reshape(Np, D, Np, D), mt)
        return k_cross, (blocks + blocks.transpose(0, 2, 1)) / 2
