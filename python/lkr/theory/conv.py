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

Several outputs (Y of shape (P, D), docs/theory-beyond-odd.md section 2.2): Q is
(Np D) x (Np D) SPD,
patch-major (index i D + a), K_R[(mu a), (nu b)] = (1/(lambda1 Np)) sum_ij K_ij^{mu nu}
Q[(i a), (j b)] on the targets stacked example-major, y = Y.reshape(-1); the same action
and solver (limited-memory BFGS above 2000 unknowns). LCN: Np blocks of D x D.

Activations with a non-zero mean (relu), ``mean="auto"`` (EXPERIMENTAL: a derivation with
no published implementation, valid where the filter dimension M is large): the non-central
action of docs/theory-beyond-odd.md sections 1.2 (one output) and 3 (D outputs) with Qbar
and its conjugate Q (see :mod:`._cnn_noncentral`).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import scipy.linalg as sla

from .. import _linalg, _memory, backend
from .._validate import width as _width
from ..activations import has_mean
from ..geometry import PatchGeometry
from . import _base, _cnn_finite_filter, _cnn_noncentral, _cnn_odd_solve, _cnn_predict, _shared_outputs
from ._base import DEFAULT_MAXITER, DEFAULT_TOL, positive
from ._local import LocalOperator
from ._scalar import ScalarProblem

#: The automatic kernel storage takes float32 only for tolerances above its accuracy floor.
FLOAT32_MIN_TOL = 1e-6

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
    _multi_output = True
    _corrected = True
    _local_memory = True

    def __init__(self, geometry: PatchGeometry, width: float, temperature: float,
                 activation: str = "erf", lambda0: float = 1.0, lambda1: float = 1.0, *,
                 mean: str = "auto", tol: float = DEFAULT_TOL, maxiter: int = DEFAULT_MAXITER,
                 max_bytes: Optional[int] = None, materialize: Optional[bool] = None,
                 kernel_dtype: Optional[str] = None,
                 filter_norm: str = "gaussian", progress: Optional[bool] = None):
        if not isinstance(geometry, PatchGeometry):
            raise TypeError(f"geometry must be a PatchGeometry, got {type(geometry).__name__}")
        self.geometry = geometry
        self.width = float(_width(width))
        self.activation = _base.activation_name(activation)
        self.lambda0 = positive(lambda0, "lambda0")
        self.lambda1 = positive(lambda1, "lambda1")
        if materialize not in (None, True, False):
            raise ValueError(f"materialize must be None, True or False, got {materialize!r}")
        self.materialize = materialize
        self.max_bytes = None if max_bytes is None else int(positive(max_bytes, "max_bytes"))
        if kernel_dtype not in (None, "float64", "float32"):
            raise ValueError(f"kernel_dtype must be None, 'float64' or 'float32', got "
                             f"{kernel_dtype!r}")
        self.kernel_dtype = kernel_dtype
        if progress not in (None, True, False):
            raise TypeError(f"progress must be True, False or None, got {progress!r}")
        self.progress = progress
        self._report = None  # a subsample level reports into its parent's progress line
        self.mean = _base.mean_mode(mean)
        super().__init__(temperature_value=temperature, tol=tol, maxiter=maxiter)
        if self.mean == "ignore":
            _base.warn_relu(self.activation, f"{type(self).__name__}(mean='ignore')")
        self.filter_norm = self._check_filter_norm(filter_norm)

    def _check_filter_norm(self, value):
        """"gaussian" (the actions) or "exact" (EXPERIMENTAL finite-filter action: the CNN
        with relu and mean="auto" only; docs/validity.md section 4)."""
        if value not in ("gaussian", "exact"):
            raise ValueError(f"filter_norm must be 'gaussian' or 'exact', got {value!r}")
        if value == "exact":
            name = type(self).__name__
            if self._diagonal:
                raise ValueError(f"{name}: filter_norm='exact' is implemented for CNNTheory "
                                 "only (an LCN has one filter norm per patch)")
            if self.activation != "relu" or self.mean != "auto":
                raise ValueError(f"{name}: filter_norm='exact' needs a positively homogeneous "
                                 f"activation with its mean kept: activation='relu' and "
                                 f"mean='auto' (got activation={self.activation!r}, "
                                 f"mean={self.mean!r})")
        return value

    @property
    def _finite_filter(self):
        return getattr(self, "filter_norm", "gaussian") == "exact"

    @property
    def noncentral(self):
        """Whether the non-central (Qbar, conjugate) action is used (relu, mean="auto")."""
        return self.mean == "auto" and has_mean(self.activation)

    @property
    def num_patches(self):
        return self.geometry.num_patches

    def _filter_dim(self):
        """M = C_in k_h k_w: the Gaussian-equivalence condition of docs/validity.md."""
        return int(self.geometry.patch_size)

    def _validate_X(self, X):
        Xa = _base.inputs(X)
        return self.geometry.flatten(Xa, "X")  # ValueError when X does not fit the geometry

    def _cache_settings(self):
        return (type(self).__name__, self.geometry._key(), self.activation, self.lambda0,
                self.max_bytes, self.materialize, self.kernel_dtype,
                self.tol >= FLOAT32_MIN_TOL, self._bind_outputs > 1)

    def _unknowns(self, D):
        n, Np = self.num_patches * D, self.num_patches
        return Np * D * (D + 1) // 2 if self._diagonal else n * (n + 1) // 2

    def _tensor_budget(self, X):
        """Bytes for the stored local kernel: ``max_bytes`` when given, else what the fit's
        other arrays leave of the memory budget (lkr._memory)."""
        if self.max_bytes is not None:
            return self.max_bytes
        need = self._fit_bytes(X.shape[0], self._bind_outputs, X.shape[1])
        return max(0, _memory.budget(xp=backend.array_module(X)) - need)

    def _bind(self, X):
        return LocalOperator(X, self.geometry, self.activation, self.lambda0,
                             diagonal=self._diagonal, max_bytes=self._tensor_budget(X),
                             materialize=self.materialize, kernel_dtype=self.kernel_dtype,
                             allow_float32=self.tol >= FLOAT32_MIN_TOL,
                             multi=self._bind_outputs > 1)

    def _min_width(self):
        D = self.num_outputs
        if D is None or D == 1:
            return None  # one output: any width (today's behaviour)
        return D if self._diagonal else self.num_patches * D

    @property
    def _n(self):
        """Size of the order parameter: Np D."""
        return self.num_patches * (self.num_outputs or 1)

    def _block_mask(self):
        """LCN: the block-diagonal pattern (Np blocks of D x D); None for the CNN."""
        if not self._diagonal:
            return None
        D = self.num_outputs or 1
        return np.kron(np.eye(self.num_patches), np.ones((D, D))).astype(bool)

    def _yvec(self):
        """Targets stacked example-major (index mu D + a)."""
        return self._y.reshape(-1)

    @property
    def materialized(self):
        """Whether the local kernel of the bound training set is held in memory."""
        return None if self._cache is None else self._cache.materialized

    # -- the action ---------------------------------------------------------------------
    def _c(self):
        """alpha / (P lambda1 Np): the weight of G(B) in the gradient."""
        return self.alpha / (self.num_samples * self.lambda1 * self.num_patches)

    def _data(self, Q_dev, Qm_dev=None):
        """(alpha/P)[y^T A^{-1} y + log det A] and the Cholesky state for the gradient.

        With D outputs at a point that acts alike on every output (Q = Q1 (x) I_D, and Qm
        too: the shared start), A = A1 (x) I_D and the evaluation costs a P x P Cholesky
        instead of a (P D) x (P D) one (:mod:`._shared_outputs`)."""
        op = self._cache
        xp = op.xp
        D = self.num_outputs or 1
        if D > 1:
            shared = _shared_outputs.shared_blocks(Q_dev, Qm_dev, D)
            if shared is not None:
                return self._data_shared(*shared)
        A = op.kr(Q_dev, self.lambda1, Qm_dev)
        A[xp.diag_indices(A.shape[0])] += self.temperature
        chol = _base.cholesky_of_A(A, self.temperature, type(self).__name__)
        y = self._yvec()
        a = chol.solve(y)
        val = (self.alpha / self.num_samples) * (float(y @ a) + chol.logdet())
        return val, (chol, a)

    def _data_shared(self, Q1, Qm1):
        op = self._cache
        xp = op.xp
        A1 = op.kr(xp.asarray(Q1), self.lambda1, None if Qm1 is None else xp.asarray(Qm1))
        A1[xp.diag_indices(A1.shape[0])] += self.temperature
        chol = _base.cholesky_of_A(A1, self.temperature, type(self).__name__)
        a = chol.solve(self._y)  # (P, D) = A^{-1} y, example-major as a.reshape(-1)
        D = self._y.shape[1]
        val = (self.alpha / self.num_samples) * (float(xp.sum(self._y * a))
                                                 + D * chol.logdet())
        return val, _shared_outputs.SharedState(chol, a)

    def _inverse(self, chol):
        """A^{-1} from the Cholesky factor of A."""
        return _inverse_from_cholesky(chol)

    def _B(self, state):
        xp = self._cache.xp
        if isinstance(state, _shared_outputs.SharedState):
            # B = A1^{-1} (x) I_D - a a^T, example-major
            D = state.a.shape[1]
            a = state.a.reshape(-1)
            B = xp.kron(_inverse_from_cholesky(state.chol), xp.eye(D)) - xp.outer(a, a)
            return 0.5 * (B + B.T)
        chol, a = state
        B = _inverse_from_cholesky(chol) - xp.outer(a, a)
        if xp is not np:
            # cuSOLVER's inverse is symmetric only to rounding; an exactly symmetric B lets
            # the adjoint visit each unordered pair of samples once.
            B = 0.5 * (B + B.T)
        return B

    def _G(self, state, centred=False):
        if not centred:
            of_inverse = getattr(self._cache, "adjoint_of_inverse", None)  # not the deep one
            fast = None if of_inverse is None else of_inverse(*state)  # no full B (large P)
            if fast is not None:
                return backend.to_numpy(fast)
        out = self._cache.adjoint(self._B(state), centred=centred)
        if centred:
            return tuple(backend.to_numpy(g) for g in out)
        return backend.to_numpy(out)

    def _check_Q(self, Q, name="Q", definite=True):
        Np = self._n
        Qn = np.asarray(backend.to_numpy(Q), dtype=float)
        D1 = (self.num_outputs or 1) == 1
        if self._diagonal and D1 and Qn.shape == (Np,):
            Qn = np.diag(Qn)
        if Qn.shape != (Np, Np):
            raise ValueError(f"{name} must have shape ({Np}, {Np})"
                             + (f" or ({Np},)" if self._diagonal and D1 else "") +
                             f", got {Qn.shape}")
        if not np.all(np.isfinite(Qn)):
            raise ValueError(f"{name} has non-finite entries")
        scale = max(np.abs(Qn).max(), 1e-300)
        if np.abs(Qn - Qn.T).max() > 1e-10 * scale:
            raise ValueError(f"{name} must be symmetric (max |{name} - {name}.T| = "
                             f"{np.abs(Qn - Qn.T).max():.3g})")
        mask = self._block_mask()
        if mask is not None and np.abs(Qn[~mask]).max(initial=0.0) > 0:
            raise ValueError(f"LCN: {name} must be " + ("diagonal" if D1 else
                             f"block diagonal ({self.num_patches} blocks of "
                             f"{self.num_outputs} x {self.num_outputs})"))
        Qn = (Qn + Qn.T) / 2
        if definite:
            try:
                sla.cholesky(Qn, lower=True)
            except np.linalg.LinAlgError:
                raise ValueError(f"{name} must be positive definite") from None
        return Qn

    def _to_dev(self, Qn):
        return self._cache.xp.asarray(Qn)

    def action(self, Q: Any, conjugate: Any = None) -> float:
        r"""S(Q) = Tr Q - log det Q + (alpha/P)[y^T A^{-1} y + log det A] on the bound data.

        Non-central action (relu, mean="auto"): pass the conjugate too,
        S(Qbar, Q) = -Tr(Qbar Q) + log det(I + Q) + (alpha/P)[...]."""
        self._need_data("action")
        if self._finite_filter:
            return self._finite_filter_eval(Q, conjugate)["S"]
        if self._need_conjugate(conjugate):
            return _cnn_noncentral.action(self, Q, conjugate)
        Qn = self._check_Q(Q)
        data, _ = self._data(self._to_dev(Qn))
        return float(np.trace(Qn) - np.linalg.slogdet(Qn)[1] + data)

    def gradient(self, Q: Any, conjugate: Any = None):
        r"""dS/dQ = I - Q^{-1} + (alpha/(P lambda1 Np)) G(B), an (Np D, Np D) symmetric array
        (LCN: its block diagonal). Non-central: the pair (dS/dQbar, dS/dQ) of
        :mod:`._cnn_noncentral` at (Q, conjugate)."""
        self._need_data("gradient")
        if self._finite_filter:
            return self._finite_filter_eval(Q, conjugate)["grad"]
        if self._need_conjugate(conjugate):
            return _cnn_noncentral.gradient(self, Q, conjugate)
        Qn = self._check_Q(Q)
        _, state = self._data(self._to_dev(Qn))
        g = np.eye(self._n) - np.linalg.inv(Qn) + self._c() * self._G(state)
        mask = self._block_mask()
        if mask is not None:
            g = np.where(mask, g, 0.0)
        return g

    def _finite_filter_eval(self, Q, conjugate, M=None, nodes=8):
        """filter_norm="exact": the action and its four gradients at Qbar = Q and
        conjugate = (Q, Rbar, R) (an n-point rule, M from the geometry unless given)."""
        if not isinstance(conjugate, (tuple, list)) or len(conjugate) != 3:
            raise ValueError(f"{type(self).__name__}(filter_norm='exact'): conjugate must be "
                             "the triple (Q, Rbar, R) of the finite-filter action")
        mats = [self._check_Q(Q, "Q", definite=False)] + [
            self._check_Q(a, name, definite=False)
            for a, name in zip(conjugate, ("conjugate Q", "Rbar", "R"))]
        M = float(self.geometry.patch_size if M is None else M)
        ev = _cnn_finite_filter.evaluate(self, mats[0], mats[2], mats[1], mats[3],
                                         _cnn_finite_filter.chi2_rule(M, nodes),
                                         _cnn_finite_filter.mean_s_squared(M))
        if ev is None:
            raise ValueError("the finite-filter action is undefined here: A = T I + K_R or "
                             "I + s^2 Q at some quadrature node is not positive definite")
        return ev

    def _need_conjugate(self, conjugate):
        if not self.noncentral:
            if conjugate is not None:
                raise ValueError(f"{type(self).__name__}: conjugate is only for the non-central"
                                 " action (relu with mean='auto')")
            return False
        if conjugate is None:
            raise ValueError(f"{type(self).__name__}: the non-central action (relu, "
                             "mean='auto') takes the order parameter and its conjugate: "
                             "action(Qbar, conjugate)")
        return True

    # -- solver -------------------------------------------------------------------------
    def _start(self, Q0, outputs=None):
        """The best multiple of the identity (or the checked Q0); ``outputs=1`` gives it for
        the shared-outputs problem (Np x Np)."""
        Np = self._n if outputs is None else self.num_patches * outputs
        if Q0 is not None:
            return self._check_Q(Q0), "Q0"
        if self.num_samples > _SCALAR_START_MAX_P:
            return np.eye(Np), "identity"
        # best multiple of the identity: K_R(q I) = q K_R(I), an FC-like scalar problem
        op = self._cache
        # K_R(I) with D outputs is K_R1(I) (x) I_D: one P x P eigendecomposition serves
        # all outputs (eigenvalues repeated D times, z = U^T Y per output)
        K = op.kr(op.xp.eye(self.num_patches), self.lambda1)
        lam, U = _linalg.eigh(K)
        lam = np.maximum(backend.to_numpy(lam), 0.0)
        _base.check_T0_spectrum(lam, self.temperature, type(self).__name__)
        D = self.num_outputs if outputs is None else outputs
        Z = backend.to_numpy(U.T @ self._y)
        if Z.ndim == 1:
            z2 = Z * Z
        elif D == 1:  # the shared-outputs problem: y y^T -> Y Y^T / D
            z2 = np.sum(Z * Z, axis=1) / Z.shape[1]
        else:
            z2 = (Z * Z).reshape(-1)
            lam = np.repeat(lam, D)
        L = self._prior_depth
        try:
            # Q = r^L I: for L > 1 the vanilla deep-FC scalar problem (r per layer)
            r = ScalarProblem(lam, z2, alpha=self.alpha, T=self.temperature, L=L).solve()[0]
        except ArithmeticError:
            return np.eye(Np), "identity"
        return r**L * np.eye(Np), "scalar saddle"

    # -- the prior term of the odd action (a deep CNN replaces it) ----------------------
    #: L of the prior L tr Q^{1/L} - log det Q (1: Tr Q - log det Q).
    _prior_depth = 1

    def _prior_value(self, Q, logdetQ):
        """Tr Q - log det Q."""
        return float(np.trace(Q) - logdetQ)

    def _prior_parts(self, Q, M):
        """The two parts of the prior's gradient, (I, Q^{-1}), from the Cholesky factor M
        of Q (the gradient is their difference; their norms scale the convergence
        measure)."""
        n = Q.shape[0]
        Minv = sla.solve_triangular(M, np.eye(n), lower=True)
        return np.eye(n), Minv.T @ Minv

    def _shared_start(self, tol):
        """The odd saddle restricted to Q1 (x) I_D: (Q, evaluations) or (None, evaluations)."""
        return _cnn_odd_solve.shared_start(self, tol)


    def _solve(self, Q0, tol, maxiter):
        if self.noncentral:
            if self._finite_filter:
                if self.num_outputs > 1:
                    raise ValueError(f"{type(self).__name__}: filter_norm='exact' (experimental) "
                                     f"takes one output, got {self.num_outputs}; use the default "
                                     "filter_norm='gaussian' for several outputs")
                if isinstance(Q0, tuple):  # fit_path's warm start (Qbar, conjugate)
                    Q0 = Q0[0]
                return _cnn_finite_filter.solve(self, Q0, tol, maxiter)
            return _cnn_noncentral.solve(self, Q0, tol, maxiter)
        if (self.num_outputs or 1) > 1:
            return self._solve_fixed_point(Q0, tol, maxiter)
        return self._solve_bfgs(Q0, tol, maxiter)

    def _solve_bfgs(self, Q0, tol, maxiter):
        """The odd saddle by BFGS in the Cholesky parametrisation (see the module)."""
        return _cnn_odd_solve.solve_bfgs(self, Q0, tol, maxiter)

    def _solve_fixed_point(self, Q0, tol, maxiter):
        """The odd D-output saddle by the fixed point, BFGS where it fails."""
        return _cnn_odd_solve.solve_fixed_point(self, Q0, tol, maxiter)

    def _extra(self, **kw):
        out = {"materialized": bool(self._cache.materialized),
               "kernel_dtype": str(self._cache.dtype), "outputs": self.num_outputs, **kw}
        return out

    # -- predictions --------------------------------------------------------------------
    def _predict(self, Xt):
        return _cnn_predict.predict(self, Xt, corrected=False)

    def _predict_corrected(self, Xt):
        if self._finite_filter:
            raise ValueError(f"{type(self).__name__}(filter_norm='exact'): corrected=True is "
                             "not available for the finite-filter action")
        return _cnn_predict.predict(self, Xt, corrected=True)


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
        relu (``mean="auto"``): the non-central action with Qbar and its conjugate
        (experimental; one or D outputs, docs/theory-beyond-odd.md sections 1.2 and 3).
    lambda0, lambda1 : float
        Inverse prior variances of filters and readout.
    mean : {"auto", "ignore"}
        "ignore": the one-parameter action for relu too (warns: an approximation).
    tol : float
        Relative gradient ||dS/dQ|| / (||I|| + ||Q^{-1}|| + ||c G(B)||), default 1e-8.
    maxiter : int
        BFGS iterations (default 1000).
    max_bytes : int, optional
        Memory budget of the cached local kernel (P(P+1)/2 * Np(Np+1)/2 * 8 bytes);
        above it every evaluation streams through the kernels instead.
    materialize : bool or None
        Force (True) or forbid (False) the cached tensor; None decides by ``max_bytes``.
    filter_norm : {"gaussian", "exact"}
        "gaussian" (default): the actions above, which take each channel's features jointly
        Gaussian and need a large filter dimension M (docs/validity.md). "exact"
        (EXPERIMENTAL; relu with mean="auto" only): keep the channel's filter norm
        s^2 ~ chi^2_M / M exact and treat only the direction part as Gaussian
        (:mod:`lkr.theory._cnn_finite_filter`); ``solution.extra`` holds Rbar
        (``mean_order``), R (``mean_conjugate``) and the quadrature ``nodes``.
        ``action``/``gradient`` then take ``conjugate=(Q, Rbar, R)`` and return the four
        gradients (Qbar, Rbar, Q, R).
    progress : bool or None
        A progress line on stderr (iterations, relative gradient, the subsample level of a
        large-P start, and whether the kernel is stored or streamed); None: on a terminal,
        after a second.

    Notes
    -----
    ``fit`` returns a :class:`Solution` whose ``Q`` is the (Np, Np) SPD saddle (with Y of
    shape (P, D): (Np D, Np D), patch-major, and width >= Np D; relu also fills
    ``solution.conjugate``). The
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
