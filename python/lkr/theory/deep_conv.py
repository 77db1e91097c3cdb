r"""Deep CNN theory: L convolutional layers of equal width Nc, the last one renormalised
(docs/deep-cnn.md sections 5 and 6), one or D outputs.

.. math::

    S(Q) = L \operatorname{Tr} Q^{1/L} - \log\det Q + \frac{\alpha}{P}\left[y^T A^{-1} y
           + \log\det A\right], \qquad A = T I + K_R(Q), \qquad \alpha = P / N_c,

    K_R(Q)^{\mu\nu} = \frac{1}{\lambda_L d}\sum_{ij} Q_{ij} K^L_{ij}(\mu, \nu), \qquad
    \frac{\partial S}{\partial Q} = Q^{1/L - 1} - Q^{-1} + \frac{\alpha}{P \lambda_L d} G(B),

with K^L the final blocks of the multi-layer kernel recursion (:mod:`lkr._deep_kernels`),
d the final patches, B = A^{-1} - a a^T, a = A^{-1} y, G the adjoint of the local kernel
and Q = R^L (R the per-layer order parameter). L = 1 is :class:`CNNTheory`'s action. With D
outputs Q is (d D) x (d D), patch-major, and K_R, B are (P D) x (P D), example-major, as for
the CNN (docs/theory-beyond-odd.md section 2.2). relu (``mean="auto"``): the non-central
action of the CNN on the last layer's kernel and mean activations (docs/deep-cnn.md
section 6).

Only the prior term and the kernel operator differ from the one-layer CNN, so
:class:`DeepCNNTheory` subclasses :class:`CNNTheory`: the data term, Q checks, the BFGS solver
(Cholesky parametrisation, with this prior's value and gradient from an eigendecomposition
of Q per evaluation), the non-central saddle solver and the predictor are the CNN's, reached
through the operator protocol (``kr``, ``adjoint``, ``means``, ``test_kernels``) that
:class:`DeepLocalOperator` implements.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .. import _memory, backend
from .._deep_kernels import local_kernel_adjoint as deep_local_kernel_adjoint
from .._deep_kernels import pack_compressed
from .._kernel_args import resolve_lambdas
from .._validate import width as _width
from ..deep_geometry import DeepGeometry
from ..kernels import (
    local_kernel,
    renormalized_kernel,
    renormalized_kernel_diag,
)
from ..kernels_multi import patch_mean
from . import _base
from ._base import DEFAULT_MAXITER, DEFAULT_TOL, positive
from ._local import StoredKernel
from .conv import CNNTheory

__all__ = ["DeepCNNTheory", "DeepLocalOperator", "matrix_power"]

#: Working set of one row block of the streamed D-output and test-point contractions.
_STREAM_BYTES = 64 * 1024**2


def matrix_power(Q, p):
    """Q^p for a symmetric positive-definite Q (eigendecomposition; p any real)."""
    w, U = np.linalg.eigh((Q + Q.T) / 2)
    if w[0] <= 0:
        raise ValueError(f"Q must be positive definite (smallest eigenvalue {w[0]:.3g})")
    M = (U * w**p) @ U.T
    return (M + M.T) / 2


class DeepLocalOperator(StoredKernel):
    """Q -> K_R(Q) and B -> G(B) on one training set for a :class:`lkr.DeepGeometry`.

    As :class:`lkr.theory._local.LocalOperator`: the final blocks are stored compressed
    (sample pairs mu <= nu by patch pairs i <= j, T = K_ij + K_ji off the patch diagonal,
    computed by the compiled deep kernel on its dense pair plan) when they fit ``max_bytes``,
    so that each evaluation is two GEMVs; otherwise every evaluation streams through the
    compiled deep kernels (which pick the pair plan from the support of Q). With
    ``diagonal=True`` only the patch pairs (i, i) enter (an LCN-like diagonal readout: the
    diagonal pair plan, O(positions) per sample pair instead of O(positions^2)): ``kr`` uses
    the diagonal of Q and ``adjoint`` returns a diagonal G.
    """

    def __init__(self, X, geometry, activation, lambdas, *, max_bytes=None, materialize=None,
                 diagonal=False):
        self.X, self.geometry, self.activation, self.lambdas = X, geometry, activation, lambdas
        self.xp = xp = backend.array_module(X)
        P, d = X.shape[0], geometry.num_patches
        self.P, self.Np = P, d
        self.dtype = np.dtype(np.float64)
        self.diagonal = bool(diagonal)
        self.pattern = "diagonal" if self.diagonal else "dense"
        ncols = d if self.diagonal else d * (d + 1) // 2
        self.nbytes = ncols * (P * (P + 1) // 2) * 8
        budget = _memory.budget(max_bytes, xp)
        if materialize is None:
            materialize = self.nbytes <= budget
        elif materialize and self.nbytes > budget:
            raise _memory.MemoryBudgetError(
                f"the compressed deep local kernel needs {_memory.format_bytes(self.nbytes)} "
                f"for P = {P}, d = {d}, above max_bytes = {_memory.format_bytes(budget)}; pass "
                "materialize=False to stream, or raise max_bytes")
        self.materialized = bool(materialize)
        if self.materialized:
            iu = np.triu_indices(P)
            self.iu = tuple(xp.asarray(i) for i in iu)
            self.w = xp.asarray(np.where(iu[0] == iu[1], 1.0, 2.0))
            self.T, plan = pack_compressed(xp.asarray(X, dtype=np.float64), geometry=geometry,
                                           activation=activation, lambdas=lambdas,
                                           pattern=self.pattern)
            pi, pj = plan.col_pairs[:, 0], plan.col_pairs[:, 1]
            self._pi, self._pj = xp.asarray(pi), xp.asarray(pj)

    def _kw(self):
        return dict(geometry=self.geometry, activation=self.activation, lambdas=self.lambdas)

    def kr(self, Q, lambda1=None, Qm=None):
        """K_R(Q) (P x P) = (1/(lambda_L d)) sum_ij Q_ij K^L_ij (``lambda1`` is lambda_L);
        for a (d D, d D) Q or a mean coefficient Qm, :meth:`kr_general`."""
        if Qm is not None or Q.shape[0] != self.Np:
            return self.kr_general(Q, Qm)
        xp, P = self.xp, self.P
        if self.materialized:
            v = (self.T @ Q[self._pi, self._pj]) / (self.lambdas[-1] * self.Np)
            K = xp.empty((P, P), dtype=np.float64)
            K[self.iu] = v
            K[self.iu[1], self.iu[0]] = v
            return K
        if self.diagonal:
            Q = xp.diag(xp.diag(Q))
        K = renormalized_kernel(self.X, Q=Q, **self._kw())
        return (K + K.T) / 2

    def adjoint(self, B, centred=False):
        """G(B) (d x d), symmetrised, for a symmetric (P, P) B; for a (P D, P D) B or
        ``centred``, :meth:`adjoint_general`."""
        if centred or B.shape[0] != self.P:
            return self.adjoint_general(B, centred)
        xp, d = self.xp, self.Np
        if self.materialized:
            g = (B[self.iu] * self.w) @ self.T
            g = xp.where(self._pi == self._pj, g, g / 2)
            G = xp.zeros((d, d), dtype=np.float64)
            G[self._pi, self._pj] = g
            G[self._pj, self._pi] = g
            return G
        G = deep_local_kernel_adjoint(self.X, B, Y=None, lambda0=1.0, nthreads=None,
                                      pattern=self.pattern, **self._kw())
        return (G + G.T) / 2

    # -- D outputs, mean terms and test points (docs/deep-cnn.md section 6) -----------------
    @property
    def means(self):
        """m (P, d): the last layer's mean activations E[sigma(h)], h ~ N(0, C_L,ii^{mu mu})
        (zero for odd activations)."""
        if getattr(self, "_m", None) is None:
            self._m = self.xp.asarray(patch_mean(self.X, **self._kw()), dtype=np.float64)
        return self._m

    def _scale(self):
        return 1.0 / (self.lambdas[-1] * self.Np)

    def _row_blocks(self, X1):
        """Row blocks (a, b, K) of the final blocks between X1 and the training set, K of
        shape ((b - a) P, d d), a block within _STREAM_BYTES."""
        P, d = self.P, self.Np
        rows = max(1, _STREAM_BYTES // max(1, P * d * d * 8))
        for a in range(0, X1.shape[0], rows):
            b = min(X1.shape[0], a + rows)
            K = local_kernel(X1[a:b], self.X, max_bytes=4 * _STREAM_BYTES, **self._kw())
            yield a, b, K.reshape((b - a) * P, d * d)

    def _cross(self, X1, Q):
        """sum_ij K^L_ij(X1, X) Q[(i a), (j b)] (the (P1 D, P D) contraction), streamed."""
        xp, P, d = self.xp, self.P, self.Np
        D = Q.shape[0] // d
        # Qr[(i j), (a b)] = Q[(i a), (j b)]
        Qr = xp.ascontiguousarray(Q.reshape(d, D, d, D).transpose(0, 2, 1, 3)).reshape(
            d * d, D * D)
        out = xp.empty((X1.shape[0], D, P, D), dtype=np.float64)
        for a, b, K in self._row_blocks(X1):
            out[a:b] = (K @ Qr).reshape(b - a, P, D, D).transpose(0, 2, 1, 3)
        return out.reshape(X1.shape[0] * D, P * D)

    def _antisym(self):
        """T_A = K^L_ij - K^L_ji over the stored columns with i < j (in their order), rows
        mu <= nu as T; computed on first use (D outputs only)."""
        if getattr(self, "_TA", None) is None:
            self._TA = self._pack_antisym()
        return self._TA

    def _pack_antisym(self):
        xp, P, d = self.xp, self.P, self.Np
        pi, pj = backend.to_numpy(self._pi), backend.to_numpy(self._pj)
        off = pi < pj
        ij, ji = xp.asarray(pi[off] * d + pj[off]), xp.asarray(pj[off] * d + pi[off])
        TA = xp.empty((P * (P + 1) // 2, int(off.sum())), dtype=np.float64)
        rows = max(1, _STREAM_BYTES // max(1, P * d * d * 8))
        start = np.concatenate([[0], np.cumsum(P - np.arange(P))])
        for a in range(0, P, rows):
            b = min(P, a + rows)
            Kb = local_kernel(self.X[a:b], self.X[a:], max_bytes=4 * _STREAM_BYTES,
                              **self._kw())
            Kf = Kb.reshape(b - a, P - a, d * d)
            V = xp.take(Kf, ij, axis=2) - xp.take(Kf, ji, axis=2)
            for mu in range(a, b):  # keep nu >= mu of each row
                TA[int(start[mu]):int(start[mu + 1])] = V[mu - a, mu - a:]
        return TA

    def kr_general(self, Q, Qm=None):
        """K_R (P D, P D), example-major, for a symmetric (d D, d D) patch-major Q, plus the
        mean term (1/(lambda_L d)) sum_ij Qm m_i m_j^T (docs/theory-beyond-odd.md section 3
        with the last layer's kernel and means)."""
        d = self.Np
        D = Q.shape[0] // d
        scale = self._scale()
        if D == 1:
            K = self.kr(Q)
        elif self.materialized:
            K = self._kr_stored_multi(Q, D, scale)
        else:
            K = self._cross(self.X, Q) * scale
            K = (K + K.T) / 2
        if Qm is not None:
            K = K + self._mean_term(Qm, D, scale)
            K = (K + K.T) / 2
        return K

    def adjoint_general(self, B, centred=False):
        """G(B) (d D, d D) for a symmetric (P D, P D) B; with ``centred`` the pair
        (G(B) - G_m(B), G_m(B)), G_m(B) = m^T B m by output blocks."""
        xp, P, d = self.xp, self.P, self.Np
        D = B.shape[0] // P
        if D == 1:
            G = self.adjoint(B)
        elif self.materialized:
            G = self._adjoint_stored_multi(B, D)
        else:
            # G[(i a), (j b)] = sum_{mu nu} K^L_ij(mu, nu) B[(mu a), (nu b)]
            B4 = B.reshape(P, D, P, D)
            Gr = xp.zeros((d * d, D * D), dtype=np.float64)
            for a, b, K in self._row_blocks(self.X):
                Bb = xp.ascontiguousarray(B4[a:b].transpose(0, 2, 1, 3)).reshape(
                    (b - a) * P, D * D)
                Gr += K.T @ Bb
            G = Gr.reshape(d, d, D, D).transpose(0, 2, 1, 3).reshape(d * D, d * D)
            G = (G + G.T) / 2
        if not centred:
            return G
        Gm = self._mean_adjoint(B, D)
        return G - Gm, Gm

    def test_kernels(self, Xt, Q, lambda1=None, Qm=None):
        """The predictor's kernels at test inputs ``Xt`` (flattened): the cross kernel k_R
        (Pt D, P D), example-major, and the test points' own D x D blocks kappa_R
        (Pt, D, D), for Q (and the mean coefficient Qm) of :meth:`kr_general` (the protocol
        of :class:`lkr.theory._local.LocalOperator`, so the CNN predictor serves the deep
        CNN)."""
        xp, d = self.xp, self.Np
        D = Q.shape[0] // d
        scale = self._scale()
        kw = self._kw()
        if D == 1:
            k_cross = renormalized_kernel(Xt, self.X, Q=Q, **kw)
            blocks = renormalized_kernel_diag(Xt, Q=Q, **kw)[:, None, None]
        else:
            k_cross = self._cross(Xt, Q) * scale
            # each test point's own final blocks K^L_ij(t, t), one point at a time
            Ktt = xp.stack([local_kernel(Xt[t:t + 1], **kw)[0, 0] for t in range(Xt.shape[0])])
            blocks = scale * xp.einsum("tij,iajb->tab", Ktt, Q.reshape(d, D, d, D))
        if Qm is not None:
            m, mt = self.means, xp.asarray(patch_mean(Xt, **kw), dtype=np.float64)
            Qm4 = Qm.reshape(d, D, d, D)
            k_cross = k_cross + scale * xp.einsum("ti,iajb,nj->tanb", mt, Qm4, m).reshape(
                k_cross.shape)
            blocks = blocks + scale * xp.einsum("ti,iajb,tj->tab", mt, Qm4, mt)
        return k_cross, (blocks + blocks.transpose(0, 2, 1)) / 2


class DeepCNNTheory(CNNTheory):
    r"""Bayesian deep CNN (L convolutional layers of Nc channels, bias-free, dense readout
    over the d final patches) at proportional width: the last layer's local kernel
    renormalised by a (d D) x (d D) matrix Qbar (D outputs; patch-major, index i D + a).

    Odd activations (erf, linear) and ``mean="ignore"``:

    .. math::

        S(Q) = L \operatorname{Tr} Q^{1/L} - \log\det Q + \frac{\alpha}{P}\left[y^T A^{-1} y
               + \log\det A\right],\quad A = T I + K_R(Q),\quad \alpha = P / N_c .

    relu with ``mean="auto"`` (the default; EXPERIMENTAL): the non-central action of
    :class:`CNNTheory` on the last layer's kernel K^L and mean activations m (from its
    diagonal covariance C_L,ii), the layers below at their infinite-width kernels:

    .. math::

        S(\bar Q, Q) = -\operatorname{Tr}(\bar Q Q) + \log\det(I + Q)
            + \frac{\alpha}{P}\left[y^T A^{-1} y + \log\det A\right],\quad
        K_R = \frac{1}{\lambda_L d}\sum_{ij}\left[\bar Q_{ij}(K^L_{ij} - M_{ij})
              + ((I + Q)^{-1})_{ij} M_{ij}\right]

    (docs/deep-cnn.md section 6 says why this prior and not L Tr Q^{1/L}).

    Parameters
    ----------
    geometry : DeepGeometry
        The L layers (filters, strides, paddings); d = ``geometry.num_patches``.
    width : float
        Channels Nc of every layer (alpha = P / Nc). The action needs Nc >= d D.
    temperature : float
        T >= 0.
    activation : {"erf", "linear", "relu"}
    lambdas : sequence of L + 1 floats, optional
        (lambda_0, ..., lambda_L): layer-l weight precisions and the readout's last
        (default all 1).
    mean : {"auto", "ignore"}
        relu: "auto" the non-central action above; "ignore" the central L-layer action
        (warns: exact only for odd activations). No effect for odd activations.
    tol, maxiter, max_bytes, materialize, progress : as for :class:`CNNTheory`.

    Notes
    -----
    ``fit`` returns a :class:`Solution` with ``Q`` the (d D, d D) saddle; for the central
    action also ``R = Q^{1/L}`` (``solution.R``, ``solution.extra["R"]``), for the
    non-central one the conjugate (``solution.conjugate``). Y of shape (P, D) gives D
    outputs (predictions (Pt, D), covariances (Pt, D, D)). L = 1 is :class:`CNNTheory`
    (odd and relu, one and D outputs); d = 1 is the vanilla :class:`DeepFCTheory` with all
    Q_l = R.
    """

    _multi_output = True
    _corrected = False

    def __init__(self, geometry: DeepGeometry, width: float, temperature: float,
                 activation: str = "erf", lambdas: Optional[Sequence[float]] = None, *,
                 mean: str = "auto", tol: float = DEFAULT_TOL, maxiter: int = DEFAULT_MAXITER,
                 max_bytes: Optional[int] = None, materialize: Optional[bool] = None,
                 progress: Optional[bool] = None):
        if not isinstance(geometry, DeepGeometry):
            raise TypeError(f"geometry must be a DeepGeometry, got {type(geometry).__name__}")
        self.geometry = geometry
        self.depth = geometry.depth
        self.width = float(_width(width))
        _base.width_condition(self.width, geometry.num_patches, "DeepCNNTheory",
                              f"d = {geometry.num_patches} final patches; D outputs need "
                              f"width >= d D")
        self.activation = _base.activation_name(activation)
        self.lambdas = resolve_lambdas(lambdas, 1.0, 1.0, self.depth)
        self.lambda0, self.lambda1 = self.lambdas[0], self.lambdas[-1]
        if materialize not in (None, True, False):
            raise ValueError(f"materialize must be None, True or False, got {materialize!r}")
        self.materialize = materialize
        self.max_bytes = None if max_bytes is None else int(positive(max_bytes, "max_bytes"))
        self.kernel_dtype = None
        if progress not in (None, True, False):
            raise TypeError(f"progress must be True, False or None, got {progress!r}")
        self.progress = progress
        self._report = None
        self.mean = _base.mean_mode(mean)
        _base._Theory.__init__(self, temperature_value=temperature, tol=tol, maxiter=maxiter)
        if self.mean == "ignore":
            _base.warn_relu(self.activation, f"{type(self).__name__}(mean='ignore')")

    @property
    def _prior_depth(self):
        return self.depth

    def _filter_dim(self):
        """M of the last (renormalised) layer: C_in k for L = 1, Nc k_L for L >= 2 (its inputs
        are the Nc channels of layer L - 1); docs/validity.md."""
        M = self.geometry.layers[-1].patch_size  # k_L sites (times C_in for L = 1)
        if self.depth == 1:
            return int(M)
        w = M * self.width
        return int(w) if float(w).is_integer() else float(w)

    def _cache_settings(self):
        return ("deepcnn", self.geometry._key(), self.activation, self.lambdas, self.max_bytes,
                self.materialize)

    def _bind(self, X):
        return DeepLocalOperator(X, self.geometry, self.activation, self.lambdas,
                                 max_bytes=self._tensor_budget(X), materialize=self.materialize)

    def _min_width(self):
        # Nc >= d D, checked again before every solve (fit_path)
        return self.num_patches * (self.num_outputs or 1)

    def _check_width(self):
        need = self._min_width()
        D = self.num_outputs or 1
        if np.isfinite(self.width) and self.width < need:
            why = (f"d = {self.num_patches} final patches" if D == 1 else
                   f"d D = {self.num_patches} x {D}: {self.num_patches} final patches and "
                   f"{D} outputs")
            _base.width_condition(self.width, need, type(self).__name__, why)

    def _extra(self, **kw):
        return super()._extra(depth=self.depth, **kw)

    # -- the prior term of the central action -------------------------------------------
    def _prior(self, Q, logdetQ=None):
        """L tr Q^{1/L} - log det Q and its gradient's parts Q^{1/L - 1} and Q^{-1} (from one
        eigendecomposition)."""
        L = self.depth
        w, U = np.linalg.eigh((Q + Q.T) / 2)
        if w[0] <= 0:
            raise ValueError(f"Q must be positive definite (smallest eigenvalue {w[0]:.3g})")
        if logdetQ is None:
            logdetQ = float(np.sum(np.log(w)))
        val = float(L * np.sum(w ** (1.0 / L)) - logdetQ)
        Pw = (U * w ** (1.0 / L - 1.0)) @ U.T
        Qi = (U / w) @ U.T
        return val, (Pw + Pw.T) / 2, (Qi + Qi.T) / 2

    def _prior_value(self, Q, logdetQ):
        return self._prior(Q, logdetQ)[0]

    def _prior_parts(self, Q, M):
        return self._prior(Q)[1:]

    def action(self, Q: Any, conjugate: Any = None) -> float:
        r"""S(Q) = L Tr Q^{1/L} - log det Q + (alpha/P)[y^T A^{-1} y + log det A] (central),
        or the non-central S(Qbar, conjugate) (relu, mean="auto")."""
        self._need_data("action")
        if self._need_conjugate(conjugate):
            return super().action(Q, conjugate)
        Qn = self._check_Q(Q)
        data, _ = self._data(self._to_dev(Qn))
        return self._prior(Qn)[0] + data

    def gradient(self, Q: Any, conjugate: Any = None):
        r"""dS/dQ = Q^{1/L - 1} - Q^{-1} + (alpha/(P lambda_L d)) G(B), a (d D, d D) symmetric
        array (central); the pair (dS/dQbar, dS/dQ) for the non-central action."""
        self._need_data("gradient")
        if self._need_conjugate(conjugate):
            return super().gradient(Q, conjugate)
        Qn = self._check_Q(Q)
        _, state = self._data(self._to_dev(Qn))
        _, Pw, Qi = self._prior(Qn)
        g = Pw - Qi + self._c() * self._G(state)
        return (g + g.T) / 2

    # -- solver: the CNN's, with this prior (central) or the shared saddle (relu) -------
    def _solve(self, Q0, tol, maxiter):
        sol = super()._solve(Q0, tol, maxiter)
        if sol.conjugate is None:
            R = matrix_power(sol.Q, 1.0 / self.depth)
            sol.extra["R"] = R
            sol.R = R
        return sol
