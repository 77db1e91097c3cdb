r"""Convolutional (CNN) and locally-connected (LCN) theories: local kernel renormalisation.

One hidden layer of Nc channels over Np patches, alpha = P / Nc (docs/theory.md section 2):

.. math::

    S(Q) = \operatorname{Tr} Q - \log\det Q + \frac{\alpha}{P}\left[y^T A^{-1} y
           + \log\det A\right], \qquad A = T I + K_R(Q),

    K_R(Q)^{\mu\nu} = \frac{1}{\lambda_1 N_p}\sum_{ij} Q_{ij} K_{ij}^{\mu\nu}, \qquad
    \frac{\partial S}{\partial Q_{ij}} = \delta_{ij} - (Q^{-1})_{ji}
        + \frac{\alpha}{P \lambda_1 N_p} G(B)_{ij},

with B = A^{-1} - a a^T, a = A^{-1} y and G the adjoint of the local kernel. The CNN
order parameter is a symmetric positive-definite Np x Np matrix (the filter is shared by
all patches, so every pair of patches is coupled); the LCN keeps only its diagonal (one
filter per patch: only K_ii enter).

Solver: BFGS in a Cholesky parametrisation Q = L0 L L^T L0^T (L lower triangular with
log-diagonal, L0 the factor of the starting point), so every iterate is SPD and the log
det is exact; a backtracking line search on S; convergence when the relative gradient
||dS/dQ||_F / (||I||_F + ||Q^{-1}||_F + ||c G(B)||_F) <= tol (default 1e-8). The start is
the best multiple of the identity (a scalar saddle on the spectrum of K_R(I)) unless Q0 is
given. The local kernel is computed once per training set (see :mod:`._local`).
"""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from .. import _linalg, backend
from ..geometry import PatchGeometry
from ..kernels import renormalized_kernel, renormalized_kernel_diag
from . import _base
from ._base import DEFAULT_MAXITER, DEFAULT_TOL, positive
from ._local import LocalOperator
from ._optim import bfgs
from ._scalar import ScalarProblem
from .result import Solution

__all__ = ["CNNTheory", "LCNTheory"]

#: Largest P for which the starting point solves the scalar problem on eig(K_R(I)).
_SCALAR_START_MAX_P = 3000


def _inverse_from_cholesky(chol):
    """A^{-1} from its Cholesky factor (LAPACK potri on the CPU: a third of two solves)."""
    if chol.xp is np:
        from scipy.linalg import lapack

        Ai, info = lapack.dpotri(chol.L, lower=1)
        if info == 0:
            Ai = np.tril(Ai)
            return Ai + np.tril(Ai, -1).T
    return chol.inverse()


class _LocalTheory(_base._Theory):
    _diagonal = False

    def __init__(self, geometry, width, temperature, activation="erf", lambda0=1.0,
                 lambda1=1.0, *, tol=DEFAULT_TOL, maxiter=DEFAULT_MAXITER, max_bytes=None,
                 materialize=None):
        if not isinstance(geometry, PatchGeometry):
            raise TypeError(f"geometry must be a PatchGeometry, got {type(geometry).__name__}")
        self.geometry = geometry
        self.width = positive(width, "width")
        self.activation = _base.activation_name(activation)
        self.lambda0 = positive(lambda0, "lambda0")
        self.lambda1 = positive(lambda1, "lambda1")
        if materialize not in (None, True, False):
            raise ValueError(f"materialize must be None, True or False, got {materialize!r}")
        self.materialize = materialize
        self.max_bytes = None if max_bytes is None else int(positive(max_bytes, "max_bytes"))
        super().__init__(temperature_value=temperature, tol=tol, maxiter=maxiter)
        _base.warn_relu(self.activation, type(self).__name__)

    @property
    def num_patches(self):
        return self.geometry.num_patches

    def _validate_X(self, X):
        Xa = _base.inputs(X)
        return self.geometry.flatten(Xa, "X")  # ValueError when X does not fit the geometry

    def _cache_settings(self):
        return (type(self).__name__, self.geometry._key(), self.activation, self.lambda0,
                self.max_bytes, self.materialize)

    def _bind(self, X):
        return LocalOperator(X, self.geometry, self.activation, self.lambda0,
                             diagonal=self._diagonal, max_bytes=self.max_bytes,
                             materialize=self.materialize)

    @property
    def materialized(self):
        """Whether the local kernel of the bound training set is held in memory."""
        return None if self._cache is None else self._cache.materialized

    # -- the action ---------------------------------------------------------------------
    def _c(self):
        """alpha / (P lambda1 Np): the weight of G(B) in the gradient."""
        return self.alpha / (self.num_samples * self.lambda1 * self.num_patches)

    def _data(self, Q_dev):
        """(alpha/P)[y^T A^{-1} y + log det A] and the Cholesky state for the gradient."""
        op = self._cache
        xp = op.xp
        A = op.kr(Q_dev, self.lambda1)
        A[xp.diag_indices(A.shape[0])] += self.temperature
        chol = _base.cholesky_of_A(A, self.temperature, type(self).__name__)
        a = chol.solve(self._y)
        val = (self.alpha / self.num_samples) * (float(self._y @ a) + chol.logdet())
        return val, (chol, a)

    def _G(self, state):
        chol, a = state
        xp = self._cache.xp
        B = _inverse_from_cholesky(chol) - xp.outer(a, a)
        if xp is not np:
            # cuSOLVER's inverse is symmetric only to rounding; an exactly symmetric B lets
            # the adjoint visit each unordered pair of samples once.
            B = 0.5 * (B + B.T)
        return backend.to_numpy(self._cache.adjoint(B))

    def _check_Q(self, Q):
        Np = self.num_patches
        Qn = np.asarray(backend.to_numpy(Q), dtype=float)
        if self._diagonal and Qn.shape == (Np,):
            Qn = np.diag(Qn)
        if Qn.shape != (Np, Np):
            raise ValueError(f"Q must have shape ({Np}, {Np})"
                             + (f" or ({Np},)" if self._diagonal else "") +
                             f", got {Qn.shape}")
        if not np.all(np.isfinite(Qn)):
            raise ValueError("Q has non-finite entries")
        scale = max(np.abs(Qn).max(), 1e-300)
        if np.abs(Qn - Qn.T).max() > 1e-10 * scale:
            raise ValueError(f"Q must be symmetric (max |Q - Q.T| = "
                             f"{np.abs(Qn - Qn.T).max():.3g})")
        if self._diagonal and np.abs(Qn - np.diag(np.diag(Qn))).max() > 0:
            raise ValueError("LCN: Q must be diagonal")
        Qn = (Qn + Qn.T) / 2
        try:
            sla.cholesky(Qn, lower=True)
        except np.linalg.LinAlgError:
            raise ValueError("Q must be positive definite") from None
        return Qn

    def _to_dev(self, Qn):
        return self._cache.xp.asarray(Qn)

    def action(self, Q):
        r"""S(Q) = Tr Q - log det Q + (alpha/P)[y^T A^{-1} y + log det A] on the bound data."""
        self._need_data("action")
        Qn = self._check_Q(Q)
        data, _ = self._data(self._to_dev(Qn))
        return float(np.trace(Qn) - np.linalg.slogdet(Qn)[1] + data)

    def gradient(self, Q):
        r"""dS/dQ = I - Q^{-1} + (alpha/(P lambda1 Np)) G(B), an (Np, Np) symmetric array
        (LCN: the diagonal matrix of dS/dQ_ii)."""
        self._need_data("gradient")
        Qn = self._check_Q(Q)
        _, state = self._data(self._to_dev(Qn))
        g = np.eye(self.num_patches) - np.linalg.inv(Qn) + self._c() * self._G(state)
        if self._diagonal:
            g = np.diag(np.diag(g))
        return g

    # -- solver -------------------------------------------------------------------------
    def _start(self, Q0):
        Np = self.num_patches
        if Q0 is not None:
            return self._check_Q(Q0), "Q0"
        if self.num_samples > _SCALAR_START_MAX_P:
            return np.eye(Np), "identity"
        # best multiple of the identity: K_R(q I) = q K_R(I), an FC-like scalar problem
        op = self._cache
        K = op.kr(op.xp.eye(Np), self.lambda1)
        lam, U = _linalg.eigh(K)
        lam = np.maximum(backend.to_numpy(lam), 0.0)
        _base.check_T0_spectrum(lam, self.temperature, type(self).__name__)
        z = backend.to_numpy(U.T @ self._y)
        try:
            q = ScalarProblem(lam, z * z, alpha=self.alpha, T=self.temperature).solve()[0]
        except ArithmeticError:
            return np.eye(Np), "identity"
        return q * np.eye(Np), "scalar saddle"

    def _solve(self, Q0, tol, maxiter):
        Np = self.num_patches
        Qs, how = self._start(Q0)
        self._data(self._to_dev(Qs))  # an infeasible start (T = 0, singular K_R) raises here
        c = self._c()
        diag = self._diagonal
        if diag:
            q0 = np.diag(Qs).copy()
            x0 = np.zeros(Np)
        else:
            L0 = np.linalg.cholesky(Qs)
            tril = np.tril_indices(Np)
            on_diag = tril[0] == tril[1]
            x0 = np.zeros(len(tril[0]))
        state = {}

        def unpack(x):
            if diag:
                qd = q0 * np.exp(x)
                return np.diag(qd), None, float(np.sum(np.log(q0) + x))
            Lt = np.zeros((Np, Np))
            Lt[tril] = x
            Lt[np.diag_indices(Np)] = np.exp(np.diag(Lt))
            M = L0 @ Lt
            Q = M @ M.T
            return (Q + Q.T) / 2, M, 2 * np.sum(np.log(np.diag(L0)) + x[on_diag])

        def value(x):
            Q, M, logdetQ = unpack(x)
            state.clear()
            state["x"] = x.copy()
            try:
                data, st = self._data(self._to_dev(Q))
            except _linalg.NotPositiveDefiniteError:
                return np.inf
            S = float(np.trace(Q) - logdetQ + data)
            state.update(Q=Q, M=M, S=S, st=st)
            return S if np.isfinite(S) else np.inf

        def gradient(x):
            if state.get("x") is None or not np.array_equal(state["x"], x) or "st" not in state:
                value(x)
            if "g" not in state:
                Q, M = state["Q"], state["M"]
                G = self._G(state["st"])
                if diag:
                    qd = np.diag(Q)
                    gq = 1.0 - 1.0 / qd + c * np.diag(G)
                    rel = np.linalg.norm(gq) / (np.sqrt(Np) + np.linalg.norm(1.0 / qd)
                                                + c * np.linalg.norm(np.diag(G)))
                    state.update(gQ=np.diag(gq), g=gq * qd, rel=rel)
                else:
                    Minv = sla.solve_triangular(M, np.eye(Np), lower=True)
                    Qinv = Minv.T @ Minv
                    gQ = np.eye(Np) - Qinv + c * G
                    gQ = (gQ + gQ.T) / 2
                    D = 2.0 * L0.T @ gQ @ M
                    gx = D[tril]
                    gx[on_diag] *= np.exp(x[on_diag])  # d L_ii / d x_ii = L_ii
                    rel = np.linalg.norm(gQ) / (np.sqrt(Np) + np.linalg.norm(Qinv)
                                                + c * np.linalg.norm(G))
                    state.update(gQ=gQ, g=gx, rel=rel)
            return state["g"], state["rel"]

        res = bfgs(value, gradient, x0, tol=tol, maxiter=maxiter)
        value(res.x)
        g, rel = gradient(res.x)
        Q = state["Q"]
        if diag:
            Q = np.diag(np.diag(Q))
        sol = Solution(Q=Q, action=state["S"], grad_norm=float(np.linalg.norm(state["gQ"])),
                       rel_grad_norm=float(rel), iterations=res.iterations,
                       converged=bool(rel <= tol), tol=tol, evaluations=res.evaluations + 1,
                       message=res.message,
                       extra={"start": how, "materialized": bool(self._cache.materialized)})
        return sol

    # -- predictions --------------------------------------------------------------------
    def _predict(self, Xt):
        Q = self._to_dev(self.solution.Q)
        op = self._cache
        xp = op.xp
        A = op.kr(Q, self.lambda1)
        A[xp.diag_indices(A.shape[0])] += self.temperature
        chol = _base.cholesky_of_A(A, self.temperature, f"{type(self).__name__}.predict")
        kw = dict(Q=Q, geometry=self.geometry, activation=self.activation,
                  lambda0=self.lambda0, lambda1=self.lambda1)
        k_cross = renormalized_kernel(Xt, self._X, **kw)
        k_diag = renormalized_kernel_diag(Xt, **kw)
        return _base.gp_posterior(chol, self._y, k_cross, k_diag)


class CNNTheory(_LocalTheory):
    __doc__ = r"""Bayesian one-hidden-layer CNN (one filter shared by all patches) at
    proportional width: local kernel renormalisation by an Np x Np matrix Qbar.

    .. math::

        S(Q) = \operatorname{Tr} Q - \log\det Q + \frac{\alpha}{P}\left[y^T A^{-1} y
               + \log\det A\right],\quad A = T I + K_R(Q),\quad \alpha = P / N_c .

    Parameters
    ----------
    geometry : PatchGeometry
        Patches (Np, M) of the inputs.
    width : float
        Channels Nc > 0 (alpha = P / Nc, not P / (Nc Np)).
    temperature : float
        T >= 0 (0 allowed when K_R(I) is positive definite on the training set).
    activation : {"erf", "linear", "relu"}
        relu warns: the action is exact only for odd activations.
    lambda0, lambda1 : float
        Inverse prior variances of filters and readout.
    tol : float
        Relative gradient ||dS/dQ|| / (||I|| + ||Q^{-1}|| + ||c G(B)||), default 1e-8.
    maxiter : int
        BFGS iterations (default 1000).
    max_bytes : int, optional
        Memory budget of the cached local kernel (P(P+1)/2 * Np(Np+1)/2 * 8 bytes);
        above it every evaluation streams through the kernels instead.
    materialize : bool or None
        Force (True) or forbid (False) the cached tensor; None decides by ``max_bytes``.

    Notes
    -----
    ``fit`` returns a :class:`Solution` whose ``Q`` is the (Np, Np) SPD saddle. The
    solver works in float64 on NumPy or CuPy inputs (the P x P algebra on the device
    of X). See the module docstring for the algorithm.
    """


class LCNTheory(_LocalTheory):
    __doc__ = r"""Bayesian one-hidden-layer locally-connected network (one filter per patch):
    the CNN action restricted to a diagonal Qbar, since only the diagonal blocks K_ii of the
    local kernel enter,

    .. math::

        S(Q) = \sum_i (Q_{ii} - \log Q_{ii}) + \frac{\alpha}{P}\left[y^T A^{-1} y
               + \log\det A\right],\quad
        A = T I + \frac{1}{\lambda_1 N_p}\sum_i Q_{ii} K_{ii} .

    Parameters are those of :class:`CNNTheory`. ``solution.Q`` is an (Np, Np) diagonal
    array; :meth:`action` and :meth:`gradient` accept a diagonal matrix or its (Np,)
    diagonal. Solved by BFGS in log Q_ii.
    """
    _diagonal = True
