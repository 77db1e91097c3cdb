r"""Deep CNN theory: L convolutional layers of equal width Nc, the last one renormalised
(docs/deep-cnn.md sections 5 and 6).

.. math::

    S(Q) = L \operatorname{Tr} Q^{1/L} - \log\det Q + \frac{\alpha}{P}\left[y^T A^{-1} y
           + \log\det A\right], \qquad A = T I + K_R(Q), \qquad \alpha = P / N_c,

    K_R(Q)^{\mu\nu} = \frac{1}{\lambda_L d}\sum_{ij} Q_{ij} K^L_{ij}(\mu, \nu), \qquad
    \frac{\partial S}{\partial Q} = Q^{1/L - 1} - Q^{-1} + \frac{\alpha}{P \lambda_L d} G(B),

with K^L the final blocks of the multi-layer kernel recursion (:mod:`lkr._deep_kernels`),
d the final patches, B = A^{-1} - a a^T, a = A^{-1} y, G the adjoint of the local kernel
and Q = R^L (R the per-layer order parameter). L = 1 is :class:`CNNTheory`'s action.

Only the prior term and the kernel operator differ from the one-layer CNN, so
:class:`DeepCNNTheory` subclasses :class:`CNNTheory` and reuses its data term, Q checks and
posterior algebra. The solver is the same BFGS in a Cholesky parametrisation
Q = L0 L L^T L0^T (every iterate SPD, exact log det), with Q^{1/L} from an eigendecomposition
of the d x d Q per evaluation (d is small next to P).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .. import _linalg, backend
from .._deep_kernels import local_kernel_adjoint as deep_local_kernel_adjoint
from .._deep_kernels import pack_compressed
from .._kernel_args import resolve_lambdas
from ..deep_geometry import DeepGeometry
from ..kernels import DEFAULT_MAX_BYTES, renormalized_kernel, renormalized_kernel_diag
from . import _base
from ._base import DEFAULT_MAXITER, DEFAULT_TOL, positive
from ._optim import bfgs, cholesky_point
from ._scalar import ScalarProblem
from .conv import CNNTheory
from .result import Solution

__all__ = ["DeepCNNTheory", "DeepLocalOperator", "matrix_power"]

_SCALAR_START_MAX_P = 3000


def matrix_power(Q, p):
    """Q^p for a symmetric positive-definite Q (eigendecomposition; p any real)."""
    w, U = np.linalg.eigh((Q + Q.T) / 2)
    if w[0] <= 0:
        raise ValueError(f"Q must be positive definite (smallest eigenvalue {w[0]:.3g})")
    M = (U * w**p) @ U.T
    return (M + M.T) / 2


class DeepLocalOperator:
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
        budget = DEFAULT_MAX_BYTES if max_bytes is None else int(max_bytes)
        if materialize is None:
            materialize = self.nbytes <= budget
        elif materialize and self.nbytes > budget:
            raise MemoryError(
                f"the compressed deep local kernel needs {self.nbytes / 1e9:.3g} GB for P = {P}, "
                f"d = {d}, above max_bytes = {budget / 1e9:.3g} GB; pass materialize=False to "
                "stream, or raise max_bytes")
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
        """K_R(Q) (P x P) = (1/(lambda_L d)) sum_ij Q_ij K^L_ij (``lambda1`` is lambda_L)."""
        if Qm is not None:
            raise ValueError("the deep CNN theory has no mean (non-central) term")
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
        """G(B) (d x d), symmetrised, for a symmetric (P, P) B."""
        if centred:
            raise ValueError("the deep CNN theory has no mean (non-central) term")
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


class DeepCNNTheory(CNNTheory):
    r"""Bayesian deep CNN (L convolutional layers of Nc channels, bias-free, dense readout
    over the d final patches) at proportional width: the last layer's local kernel
    renormalised by a d x d matrix Qbar = R^L.

    .. math::

        S(Q) = L \operatorname{Tr} Q^{1/L} - \log\det Q + \frac{\alpha}{P}\left[y^T A^{-1} y
               + \log\det A\right],\quad A = T I + K_R(Q),\quad \alpha = P / N_c .

    Parameters
    ----------
    geometry : DeepGeometry
        The L layers (filters, strides, paddings); d = ``geometry.num_patches``.
    width : float
        Channels Nc of every layer (alpha = P / Nc). The action assumes Nc >= d.
    temperature : float
        T >= 0.
    activation : {"erf", "linear", "relu"}
        relu warns: the central (odd-style) action is used, exact only for odd activations.
    lambdas : sequence of L + 1 floats, optional
        (lambda_0, ..., lambda_L): layer-l weight precisions and the readout's last
        (default all 1).
    tol, maxiter, max_bytes, materialize : as for :class:`CNNTheory`.

    Notes
    -----
    ``fit`` returns a :class:`Solution` with ``Q`` the (d, d) saddle and ``R = Q^{1/L}``
    (also ``solution.extra["R"]``). One output only. L = 1 is :class:`CNNTheory`;
    d = 1 is the vanilla :class:`DeepFCTheory` with all Q_l = R.
    """

    _multi_output = False
    _corrected = False

    def __init__(self, geometry: DeepGeometry, width: float, temperature: float,
                 activation: str = "erf", lambdas: Optional[Sequence[float]] = None, *,
                 tol: float = DEFAULT_TOL, maxiter: int = DEFAULT_MAXITER,
                 max_bytes: Optional[int] = None, materialize: Optional[bool] = None):
        if not isinstance(geometry, DeepGeometry):
            raise TypeError(f"geometry must be a DeepGeometry, got {type(geometry).__name__}")
        self.geometry = geometry
        self.depth = geometry.depth
        self.width = positive(width, "width")
        _base.width_condition(self.width, geometry.num_patches, "DeepCNNTheory",
                              f"d = {geometry.num_patches} final patches")
        self.activation = _base.activation_name(activation)
        self.lambdas = resolve_lambdas(lambdas, 1.0, 1.0, self.depth)
        self.lambda0, self.lambda1 = self.lambdas[0], self.lambdas[-1]
        if materialize not in (None, True, False):
            raise ValueError(f"materialize must be None, True or False, got {materialize!r}")
        self.materialize = materialize
        self.max_bytes = None if max_bytes is None else int(positive(max_bytes, "max_bytes"))
        self.kernel_dtype = None
        self.mean = "ignore"  # the central action for every activation (relu warns)
        _base._Theory.__init__(self, temperature_value=temperature, tol=tol, maxiter=maxiter)
        _base.warn_relu(self.activation, type(self).__name__)

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
                                 max_bytes=self.max_bytes, materialize=self.materialize)

    def _min_width(self):
        return self.num_patches  # Nc >= d, checked again before every solve (fit_path)

    # -- the prior term -----------------------------------------------------------------
    def _prior(self, Q, logdetQ=None):
        """L tr Q^{1/L} - log det Q and its gradient Q^{1/L - 1} - Q^{-1} (both from one
        eigendecomposition); also Q^{1/L - 1} and Q^{-1} for the convergence measure."""
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

    def action(self, Q: Any) -> float:
        r"""S(Q) = L Tr Q^{1/L} - log det Q + (alpha/P)[y^T A^{-1} y + log det A]."""
        self._need_data("action")
        Qn = self._check_Q(Q)
        data, _ = self._data(self._to_dev(Qn))
        return self._prior(Qn)[0] + data

    def gradient(self, Q: Any):
        r"""dS/dQ = Q^{1/L - 1} - Q^{-1} + (alpha/(P lambda_L d)) G(B), a (d, d) symmetric
        array."""
        self._need_data("gradient")
        Qn = self._check_Q(Q)
        _, state = self._data(self._to_dev(Qn))
        _, Pw, Qi = self._prior(Qn)
        g = Pw - Qi + self._c() * self._G(state)
        return (g + g.T) / 2

    # -- solver -------------------------------------------------------------------------
    def _start(self, Q0):
        d = self.num_patches
        if Q0 is not None:
            return self._check_Q(Q0), "Q0"
        if self.num_samples > _SCALAR_START_MAX_P:
            return np.eye(d), "identity"
        # Q = r^L I: the vanilla deep-FC scalar problem on the spectrum of K_R(I)
        op = self._cache
        lam, U = _linalg.eigh(op.kr(op.xp.eye(d)))
        lam = np.maximum(backend.to_numpy(lam), 0.0)
        _base.check_T0_spectrum(lam, self.temperature, type(self).__name__)
        z = backend.to_numpy(U.T @ self._y.reshape(-1))
        try:
            r = ScalarProblem(lam, z * z, alpha=self.alpha, T=self.temperature,
                              L=self.depth).solve()[0]
        except ArithmeticError:
            return np.eye(d), "identity"
        return r**self.depth * np.eye(d), "scalar saddle"

    def _solve(self, Q0, tol, maxiter):
        d = self.num_patches
        Qs, how = self._start(Q0)
        self._data(self._to_dev(Qs))  # an infeasible start (T = 0, singular K_R) raises here
        c = self._c()
        L0 = np.linalg.cholesky(Qs)
        tril = np.tril_indices(d)
        on_diag = tril[0] == tril[1]
        state = {}

        def unpack(x):
            return cholesky_point(L0, x, tril, on_diag)

        def value(x):
            Q, M, logdetQ = unpack(x)
            state.clear()
            state["x"] = x.copy()
            try:
                data, st = self._data(self._to_dev(Q))
                prior, Pw, Qi = self._prior(Q, logdetQ)
            except (_linalg.NotPositiveDefiniteError, ValueError):
                return np.inf
            S = prior + data
            state.update(Q=Q, M=M, S=S, st=st, Pw=Pw, Qi=Qi)
            return S if np.isfinite(S) else np.inf

        def gradient(x):
            if state.get("x") is None or not np.array_equal(state["x"], x) or "st" not in state:
                value(x)
            if "g" not in state:
                G = self._G(state["st"])
                gQ = state["Pw"] - state["Qi"] + c * G
                gQ = (gQ + gQ.T) / 2
                D = 2.0 * L0.T @ gQ @ state["M"]
                gx = D[tril]
                gx[on_diag] *= np.exp(x[on_diag])  # d L_ii / d x_ii = L_ii
                rel = np.linalg.norm(gQ) / (np.linalg.norm(state["Pw"])
                                            + np.linalg.norm(state["Qi"])
                                            + c * np.linalg.norm(G))
                state.update(gQ=gQ, g=gx, rel=rel)
            return state["g"], state["rel"]

        res = bfgs(value, gradient, np.zeros(len(tril[0])), tol=tol, maxiter=maxiter)
        value(res.x)
        _, rel = gradient(res.x)
        Q = state["Q"]
        R = matrix_power(Q, 1.0 / self.depth)
        sol = Solution(Q=Q, action=state["S"], grad_norm=float(np.linalg.norm(state["gQ"])),
                       rel_grad_norm=float(rel), iterations=res.iterations,
                       converged=bool(rel <= tol), tol=tol, evaluations=res.evaluations + 1,
                       message=res.message,
                       extra={"start": how, "materialized": bool(self._cache.materialized),
                              "depth": self.depth, "R": R})
        sol.R = R
        return sol

    # -- predictions --------------------------------------------------------------------
    def _predict(self, Xt):
        Q = self._to_dev(self.solution.Q)
        op = self._cache
        xp = op.xp
        A = op.kr(Q)
        A[xp.diag_indices(A.shape[0])] += self.temperature
        chol = _base.cholesky_of_A(A, self.temperature, f"{type(self).__name__}.predict")
        kw = dict(Q=Q, geometry=self.geometry, activation=self.activation, lambdas=self.lambdas)
        k_cross = renormalized_kernel(Xt, self._X, **kw)
        k_diag = renormalized_kernel_diag(Xt, **kw)
        return _base.gp_posterior(chol, self._y.reshape(-1), k_cross, k_diag)
