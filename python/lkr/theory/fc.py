r"""Fully-connected theories: one hidden layer (scalar Qbar) and L hidden layers.

One hidden layer of width N1, alpha = P / N1, K = nngp(X) (docs/theory.md section 2):

.. math::

    S(Q) = Q - \log Q + \frac{\alpha}{P}\left[y^T A^{-1} y + \log\det A\right], \qquad
    A = T I + \frac{Q}{\lambda_1} K .

K is diagonalised once per training set (K = U diag(k) U^T); with z = U^T y every
evaluation of S and dS/dQ is then O(P), and the saddle is a bracketed 1-D root in log Q
(the global minimum over Q > 0 is returned). At T = 0 and small P / N1 the saddle has the
closed form Q = ((1 - alpha) + sqrt((1 - alpha)^2 + 4 alpha lambda1 y^T K^{-1} y / P)) / 2.
The fitted FC theory predicts exactly as the infinite-width GP with readout prior
lambda1 / Q.
"""
from __future__ import annotations

import time
from typing import Any, Optional, Sequence

import numpy as np

from .. import _linalg, backend
from .._validate import integer as _integer
from ..activations import has_mean, mean_map, nngp_map
from ..kernels import nngp
from . import _base, _fcmulti, _spectral
from ._base import DEFAULT_MAXITER, DEFAULT_TOL, positive
from ._correction import corrected_posterior, corrected_posterior_multi
from ._maps import layer_kernels, map_partials
from ._noncentral import NonCentralProblem
from ._noncentral_multi import NonCentralMultiMixin
from ._optim import bfgs
from ._scalar import ScalarProblem
from .result import Prediction, Solution

__all__ = ["FCTheory", "DeepFCTheory"]


def _spectrum(K, what):
    """Eigen-decomposition of a PSD kernel with rounding negatives set to 0 (see
    :func:`lkr.theory._spectral.spectrum` for the LAPACK route)."""
    lam, U = _spectral.eigh_psd(K)
    return lam, U


class _SpectralMixin:
    """Scalar saddle on the eigenbasis of one P x P kernel (FC, vanilla deep FC)."""

    def _scalar_problem(self, L):
        lam, U = self._cache["lam"], self._cache["U"]
        z = backend.to_numpy(U.T @ self._y)
        lam_eff = lam * self._kernel_scale()
        _base.check_T0_spectrum(lam_eff, self.temperature, type(self).__name__)
        return ScalarProblem(lam_eff, z * z, alpha=self.alpha, T=self.temperature, L=L)

    def _spectral_predict(self, u, k_cross, k_diag):
        """mean and variance with A = T + u K' on the cached eigenbasis of K'."""
        lam, U = self._cache["lam"], self._cache["U"]
        xp = backend.array_module(U)
        d = xp.asarray(self.temperature + u * lam * self._kernel_scale())
        z = U.T @ self._y
        kc = u * k_cross  # (P_test, P)
        mean = kc @ (U @ (z / d))
        V = U.T @ kc.T  # (P, P_test)
        var = u * k_diag - ((V * V) / d[:, None]).sum(0)
        return Prediction(mean=mean, variance=xp.maximum(var, 0.0))


class FCTheory(_fcmulti.MultiOutputMixin, NonCentralMultiMixin, _SpectralMixin,
               _base._Theory):
    r"""Bayesian one-hidden-layer fully-connected network at proportional width.

    Odd activations (erf, linear), or ``mean="ignore"``: one scalar Qbar,

    .. math::

        S(Q) = Q - \log Q + \frac{\alpha}{P}\left[y^T A^{-1} y + \log\det A\right],\quad
        A = T I + (Q/\lambda_1) K,\quad \alpha = P / N_1,

    with K the NNGP kernel :func:`lkr.nngp` (C = x.x'/(lambda0 N0)). The kernel is
    diagonalised once per training set (and shared by all FC theories of the same data);
    each evaluation is then O(P) and the saddle is a bracketed root in log Q (global minimum
    over Q > 0). ``T = 0`` is allowed when K is positive definite on the training set.

    Activations with a non-zero mean (relu) and ``mean="auto"`` (default): the non-central
    action with two scalars (docs/theory-beyond-odd.md 1.1),
    m_mu = E[sigma(h)] = sqrt(C^{mu mu}/(2 pi)),
    M = m m^T,

    .. math::

        K_R = \frac{Q_0}{\lambda_1}(K - M) + \frac{M}{\lambda_1(1 + Q_1)},\quad
        S = -Q_0 Q_1 + \log(1 + Q_1) + \frac{\alpha}{P}\left[\log\det A
            + y^T A^{-1} y\right],

    a saddle found as a root of the gradient from (Q0, Q1) = (1, 0) (Sherman-Morrison on the
    eigenbasis of K: O(P) per evaluation); ``solution.Q`` = Q0, ``solution.conjugate`` = Q1.
    The predictor uses k_R = (Q0/lambda1)(k - m0 m) + m0 m / (lambda1 (1 + Q1)).

    Several outputs, ``fit(X, Y)`` with Y (P, D), D >= 2 (docs/theory-beyond-odd.md 2.1):
    a D x D SPD Qbar,
    K_R = Q (x) K / lambda1, S = tr Q - log det Q + data term, solved on the eigenbasis of K
    (O(P D^2) per evaluation; never a PD x PD matrix); closed form at T = 0. Needs
    width >= D. With relu (``mean="auto"``) and D outputs, the non-central action with a
    D x D Qbar and its D x D conjugate Q (docs/theory-beyond-odd.md 3.1),
    K_R = Qbar (x) (K - M) / lambda1 + (I + Q)^{-1} (x) M / lambda1, solved as a root of
    the gradient with Woodbury on the eigenbasis of K (O(P D^2) per evaluation); the
    ``action``/``gradient`` then take the pair (Qbar, Q).

    Parameters
    ----------
    width : float
        Hidden width N1 > 0 (>= D with D outputs).
    temperature : float
        T >= 0.
    activation : {"erf", "linear", "relu"}
    lambda0, lambda1 : float
        Inverse prior variances of first-layer and readout weights.
    mean : {"auto", "ignore"}
        "auto": the non-central two-parameter action when the activation's mean is non-zero
        (relu), the one-parameter action otherwise. "ignore": the one-parameter action for
        every activation (relu then warns that it is an approximation).
    tol : float
        Relative-gradient tolerance (the gradient over the sizes of the terms that cancel).
    maxiter : int
        Iteration cap: Brent iterations per bracketed root (one parameter), Newton steps
        (non-central), BFGS iterations (several outputs).

    Attributes
    ----------
    solution : Solution
        Of the last fit; ``solution.Q`` is a float (a (D, D) array with D outputs),
        ``solution.conjugate`` Q1 or None.
    alpha : float
        P / width after ``fit``.
    """

    _multi_output = True
    _corrected = True

    def __init__(self, width: float, temperature: float, activation: str = "erf",
                 lambda0: float = 1.0, lambda1: float = 1.0, *, mean: str = "auto",
                 tol: float = DEFAULT_TOL, maxiter: int = DEFAULT_MAXITER):
        self.width = positive(width, "width")
        self.activation = _base.activation_name(activation)
        self.lambda0 = positive(lambda0, "lambda0")
        self.lambda1 = positive(lambda1, "lambda1")
        self.mean = _base.mean_mode(mean)
        super().__init__(temperature_value=temperature, tol=tol, maxiter=maxiter)
        if self.mean == "ignore":
            _base.warn_relu(self.activation, "FCTheory(mean='ignore')")

    @property
    def noncentral(self):
        """Whether the two-parameter (Q0, Q1) action is used."""
        return self.mean == "auto" and has_mean(self.activation)

    def _filter_dim(self):
        """N0, the input dimension: the Gaussian-equivalence condition of docs/validity.md."""
        return None if self._X is None else int(np.prod(self._X.shape[1:]))

    def _cache_settings(self):
        return ("fc", self.activation, self.lambda0)

    def _bind(self, X):
        def build():
            K = nngp(X, activation=self.activation, lambda0=self.lambda0)
            t0 = time.perf_counter()
            lam, U = _spectrum(K, "FCTheory")
            del K
            out = {"lam": lam, "U": U, "eigh_seconds": time.perf_counter() - t0}
            if has_mean(self.activation):
                m = mean_map(self.activation, self._self_c(X))
                out.update(m=m, w=backend.to_numpy(U.T @ m))
            return out
        return _spectral.shared(self._bind_key, build)

    def _self_c(self, X):
        """C^{mu mu} = |x|^2 / (lambda0 N0) of each row."""
        xp = backend.array_module(X)
        Xf = X.reshape(X.shape[0], -1)
        return xp.einsum("pi,pi->p", Xf, Xf) / (self.lambda0 * Xf.shape[1])

    def _kernel_scale(self):
        return 1.0 / self.lambda1

    def _noncentral_problem(self, w=None):
        lam, U = self._cache["lam"], self._cache["U"]
        _base.check_T0_spectrum(lam / self.lambda1, self.temperature, "FCTheory")
        z = backend.to_numpy(U.T @ self._y)
        return NonCentralProblem(lam, z, self._cache["w"] if w is None else w,
                                 alpha=self.alpha, T=self.temperature, lambda1=self.lambda1)

    def _solve(self, Q0, tol, maxiter):
        if self._multi:
            if self.noncentral:
                return self._solve_nc_multi(Q0, tol, maxiter)
            return self._solve_multi(1, Q0, tol, maxiter)
        if self.noncentral:
            start = self._start_pair(Q0)
            prob = self._noncentral_problem()
            q0, q1, ev, its, nev, msg = prob.solve(start, tol=tol, maxiter=maxiter)
            return Solution(Q=q0, conjugate=q1, action=ev.S,
                            grad_norm=float(np.linalg.norm(ev.grad)), rel_grad_norm=ev.rel,
                            iterations=its, converged=ev.rel <= tol, tol=tol, evaluations=nev,
                            message=msg, extra={"action": "non-central (Q0, Q1)"})
        if Q0 is not None:
            self._q(Q0)  # validated (positive); the bracketed root search is global
        prob = self._scalar_problem(L=1)
        q, act, nev, its = prob.solve(maxiter=maxiter)
        g, rel = prob.gradient(q)
        return Solution(Q=q, action=act, grad_norm=abs(g), rel_grad_norm=rel, iterations=its,
                        converged=rel <= tol, tol=tol, evaluations=nev,
                        message="bracketed root in log Q" + ("" if rel <= tol else
                                                              " (not converged)"))

    def _start_pair(self, Q0):
        if Q0 is None:
            return (1.0, 0.0)
        arr = np.asarray(backend.to_numpy(Q0), dtype=float).reshape(-1)
        if arr.size == 1:
            return (self._q(arr[0]), 0.0)
        if arr.size != 2 or not np.all(np.isfinite(arr)) or arr[0] <= 0 or arr[1] <= -1:
            raise ValueError(f"Q0 must be Q0 > 0 or a pair (Q0 > 0, Q1 > -1), got {Q0!r}")
        return (float(arr[0]), float(arr[1]))

    # user-facing action ------------------------------------------------------------------
    def _q(self, Q):
        if Q is None:
            raise TypeError("Q must be a number, got None")
        return positive(Q, "Q")

    def _pair(self, Q):
        arr = np.asarray(backend.to_numpy(Q), dtype=float).reshape(-1) if Q is not None else None
        if arr is None or arr.size != 2:
            raise ValueError(f"FCTheory with the non-central action: Q must be the pair "
                             f"(Q0, Q1), got {Q!r}")
        return float(arr[0]), float(arr[1])

    def action(self, Q: Any) -> float:
        """S at Q on the bound training set (O(P) per call): Q a float (one-parameter
        action), a pair (Q0, Q1) (non-central), a (D, D) SPD matrix (D outputs) or the pair
        (Qbar, Q) of (D, D) matrices (non-central, D outputs)."""
        self._need_data("action")
        if self._multi and self.noncentral:
            return self._nc_multi_eval(Q, "action")[1].S
        if self._multi:
            return float(self._multi_action(Q, 1))
        if self.noncentral:
            return float(self._noncentral_problem().action(*self._pair(Q)))
        return float(self._scalar_problem(L=1).action(self._q(Q)))

    def gradient(self, Q: Any):
        """dS/dQ = 1 - 1/Q + (alpha/P) tr[(A^{-1} - a a^T) K / lambda1]; the pair
        (dS/dQ0, dS/dQ1) for the non-central action; a (D, D) array for D outputs; the pair
        (dS/dQbar, dS/dQ) of (D, D) arrays for the non-central action with D outputs."""
        self._need_data("gradient")
        if self._multi and self.noncentral:
            ev = self._nc_multi_eval(Q, "gradient")[1]
            return ev.gbar, ev.gq
        if self._multi:
            return self._multi_action(Q, 1, grad=True)
        if self.noncentral:
            ev = self._noncentral_problem().evaluate(*self._pair(Q))
            if ev is None:
                raise _linalg.NotPositiveDefiniteError(
                    "FCTheory: A is not positive definite at this (Q0, Q1)")
            return ev.grad
        return self._scalar_problem(L=1).gradient(self._q(Q))[0]

    # predictions -------------------------------------------------------------------------
    def _test_kernels(self, Xt):
        """k (P_test, P) and kappa (P_test,) scaled by 1/lambda1, and m0 (or None)."""
        k_cross = nngp(Xt, self._X, activation=self.activation, lambda0=self.lambda0)
        c = self._self_c(Xt)
        k_diag = nngp_map(self.activation, c, c, c)
        s = 1.0 / self.lambda1
        m0 = mean_map(self.activation, c) if self.noncentral else None
        return s * k_cross, s * k_diag, m0

    def _renormalised(self, Xt):
        """(u, delta, k_cross, k_diag, m0): K_R = u K - delta m m^T (u = Q0 / lambda1 or
        Q / lambda1), k_R = u k - delta m0 m, kappa_R = u kappa - delta m0^2."""
        k_cross, k_diag, m0 = self._test_kernels(Xt)
        sol = self.solution
        if self.noncentral:
            delta = (sol.Q - 1.0 / (1.0 + sol.conjugate)) / self.lambda1
            return sol.Q, delta, k_cross, k_diag, m0
        return sol.Q, 0.0, k_cross, k_diag, None

    def _predict(self, Xt):
        if self._multi:
            k_cross, k_diag, m0 = self._test_kernels(Xt)
            if self.noncentral:
                return self._nc_multi_predict(k_cross, k_diag, m0)
            return self._multi_predict(self.solution.Q, k_cross, k_diag)
        u, delta, k_cross, k_diag, m0 = self._renormalised(Xt)
        if m0 is None:
            return self._spectral_predict(u, k_cross, k_diag)
        # A^{-1} = U (D^{-1} + (delta / g) v v^T) U^T with v = D^{-1} w (Sherman-Morrison)
        lam, U = self._cache["lam"], self._cache["U"]
        xp = backend.array_module(U)
        d = xp.asarray(self.temperature + u * lam / self.lambda1)
        w = xp.asarray(self._cache["w"])
        m = self._cache["m"]
        v = w / d
        g = 1.0 - delta * float(w @ v)
        z = U.T @ self._y
        kR = u * k_cross - delta * xp.outer(m0, m)
        kappa = u * k_diag - delta * m0 * m0
        V = U.T @ kR.T                                                   # (P, P_test)
        a_hat = z / d + (delta * float(z @ v) / g) * v
        mean = V.T @ a_hat
        var = kappa - ((V * V) / d[:, None]).sum(0) - (delta / g) * (v @ V) ** 2
        return Prediction(mean=mean, variance=xp.maximum(var, 0.0))

    def _predict_corrected(self, Xt):
        """docs/theory-beyond-odd.md 4: the predictor with K_R^c = K_R - (alpha/P) K_R B K_R (one
        output; dense P x P algebra, O(P^3))."""
        if self._multi:
            k_cross, k_diag, m0 = self._test_kernels(Xt)
            KR, kR, blocks = self._dense_kernels(k_cross, k_diag, m0)
            return corrected_posterior_multi(KR, kR, blocks, self._y.reshape(-1),
                                             self.temperature, self.alpha / self.num_samples,
                                             "FCTheory.predict")
        u, delta, k_cross, k_diag, m0 = self._renormalised(Xt)
        lam, U = self._cache["lam"], self._cache["U"]
        KR = (U * (u * lam / self.lambda1)) @ U.T
        kR, kappa = u * k_cross, u * k_diag
        if m0 is not None:
            xp = backend.array_module(U)
            m = self._cache["m"]
            KR = KR - delta * xp.outer(m, m)
            kR = kR - delta * xp.outer(m0, m)
            kappa = kappa - delta * m0 * m0
        KR = (KR + KR.T) / 2
        return corrected_posterior(KR, kR, kappa, self._y, self.temperature,
                                   self.alpha / self.num_samples, "FCTheory.predict")


class DeepFCTheory(_fcmulti.MultiOutputMixin, _SpectralMixin, _base._Theory):
    r"""Bayesian fully-connected network with L hidden layers of equal width N.

    Priors lambda_0 .. lambda_L (lambda_L the readout), C = x.x'/(lambda0 N0),
    alpha = P / N, one Q_l per hidden layer:

    .. math::

        S = \sum_{l=1}^{L} (Q_l - \log Q_l) + \frac{\alpha}{P}\left[y^T A^{-1} y
            + \log\det A\right], \qquad A = T I + K_R .

    ``variant="vanilla"``: K_R = (prod_l Q_l) K^{(L)}, K^{(0)} = C,
    K^{(l)} = K_sigma(K^{(l-1)}) / lambda_l. Stationarity forces every Q_l to the same
    value, so the saddle is a scalar root on the eigenbasis of K^{(L)} (O(P) per step).

    ``variant="nested"``: K_R^{(l)} = (Q_l / lambda_l) K_sigma(K_R^{(l-1)}),
    K_R^{(0)} = C. Solved by BFGS in log Q_l with gradients through the layer maps. For
    linear and ReLU (positively homogeneous maps) both variants coincide.

    Parameters
    ----------
    depth : int
        L >= 1.
    width : float
        N > 0.
    temperature : float
        T >= 0 (0 needs a positive-definite kernel).
    activation : {"erf", "linear", "relu"}
    lambdas : sequence of L + 1 floats, optional
        (lambda0, ..., lambdaL); default all 1.
    variant : {"vanilla", "nested"}
    tol, maxiter : convergence controls (relative gradient, BFGS iterations for nested).

    Notes
    -----
    ``variant="vanilla"`` also takes several outputs, ``fit(X, Y)`` with Y (P, D), D >= 2
    (docs/theory-beyond-odd.md 2.1):
    S = L tr Q^{1/L} - log det Q + (alpha/P)[log det(T + Q (x) K^{(L)})
    + y^T (T + Q (x) K^{(L)})^{-1} y] with a D x D SPD Q (the product of the layers' order
    parameters; ``solution.extra["per_layer"]`` holds Q^{1/L}), solved on the eigenbasis of
    K^{(L)}. Needs width >= D.
    """

    def __init__(self, depth: int, width: float, temperature: float, activation: str = "erf",
                 lambdas: Optional[Sequence[float]] = None, variant: str = "vanilla", *,
                 tol: float = DEFAULT_TOL, maxiter: int = DEFAULT_MAXITER):
        depth = _integer(depth, "depth", 1)
        self.depth = int(depth)
        self.width = positive(width, "width")
        self.activation = _base.activation_name(activation)
        if lambdas is None:
            lambdas = (1.0,) * (self.depth + 1)
        lambdas = tuple(lambdas)
        if len(lambdas) != self.depth + 1:
            raise ValueError(f"lambdas must have depth + 1 = {self.depth + 1} entries "
                             f"(lambda0 .. lambdaL), got {len(lambdas)}")
        self.lambdas = tuple(positive(v, f"lambdas[{i}]") for i, v in enumerate(lambdas))
        if variant not in ("vanilla", "nested"):
            raise ValueError(f"variant must be 'vanilla' or 'nested', got {variant!r}")
        self.variant = variant
        self._multi_output = variant == "vanilla"
        super().__init__(temperature_value=temperature, tol=tol, maxiter=maxiter)
        _base.warn_relu(self.activation, "DeepFCTheory")

    @property
    def lambda0(self):
        return self.lambdas[0]

    def _cache_settings(self):
        return ("deepfc", self.variant, self.activation, self.lambdas)

    def _bind(self, X):
        Xf = X.reshape(X.shape[0], -1)
        if self.variant == "vanilla":
            K = layer_kernels(Xf, None, self.activation, self.lambdas[0],
                              [1.0 / l for l in self.lambdas[1:]])[-1][0]
            lam, U = _spectrum(K, "DeepFCTheory")
            return {"lam": lam, "U": U}
        xp = backend.array_module(X)
        C = Xf @ Xf.T / (self.lambdas[0] * Xf.shape[1])
        return {"C": (C + C.T) / 2, "xp": xp}

    def _kernel_scale(self):
        return 1.0

    # vanilla -----------------------------------------------------------------------------
    def _vanilla_eval(self, Qs):
        prob = self._scalar_problem(L=self.depth)
        u = float(np.prod(Qs))
        f = float(prob.data(np.array(u)))
        uf, mag = prob.data_prime_terms(np.array(u))
        S = float(np.sum(Qs - np.log(Qs)) + prob.c * f)
        g = 1.0 - 1.0 / Qs + prob.c * float(uf) / Qs
        rel = np.linalg.norm(g) / (np.sqrt(len(Qs)) + np.linalg.norm(1.0 / Qs)
                                   + prob.c * float(mag) * np.linalg.norm(1.0 / Qs))
        return S, g, rel

    # nested ------------------------------------------------------------------------------
    def _nested_forward(self, Qs, tangents):
        """K_R^(L) on the training set and, if asked, dK_R^(L)/d log Q_m for every m."""
        C = self._cache["C"]
        xp = backend.array_module(C)
        K = C
        dK = []
        for l in range(self.depth):
            m = Qs[l] / self.lambdas[l + 1]
            d = xp.diagonal(K)
            if tangents:
                F, kxx, kxy, kyy = map_partials(self.activation, d[:, None], K, d[None, :])
                new = []
                for T_ in dK:
                    td = xp.diagonal(T_)
                    new.append(m * (kxx * td[:, None] + kxy * T_ + kyy * td[None, :]))
                K = m * F
                new.append(K)  # d K_l / d log Q_l = K_l
                dK = new
            else:
                K = m * nngp_map(self.activation, d[:, None], K, d[None, :])
            K = (K + K.T) / 2
        return K, dK

    def _nested_eval(self, Qs, need_grad=True):
        K, dK = self._nested_forward(Qs, need_grad)
        xp = backend.array_module(K)
        P = K.shape[0]
        A = K + self.temperature * xp.eye(P)
        chol = _base.cholesky_of_A(A, self.temperature, "DeepFCTheory")
        a = chol.solve(self._y)
        c = self.alpha / P
        S = float(np.sum(Qs - np.log(Qs))) + c * (float(self._y @ a) + chol.logdet())
        if not need_grad:
            return S, None, None
        B = chol.inverse() - xp.outer(a, a)
        data = np.array([float((B * T_).sum()) for T_ in dK])  # dS_data / d log Q_l / c
        g = 1.0 - 1.0 / Qs + c * data / Qs
        rel = np.linalg.norm(g) / (np.sqrt(len(Qs)) + np.linalg.norm(1.0 / Qs)
                                   + c * np.linalg.norm(data / Qs))
        return S, g, rel

    def _solve(self, Q0, tol, maxiter):
        L = self.depth
        if self._multi:
            sol = self._solve_multi(L, Q0, tol, maxiter)
            q, V = np.linalg.eigh(sol.Q)
            sol.extra["per_layer"] = (V * q ** (1.0 / L)) @ V.T
            return sol
        if Q0 is not None:
            self._qs(Q0)  # validated: positive, one per layer
        if self.variant == "vanilla":
            prob = self._scalar_problem(L=L)
            q, act, nev, its = prob.solve(maxiter=maxiter)
            Qs = np.full(L, q)
            S, g, rel = self._vanilla_eval(Qs)
            return Solution(Q=Qs, action=S, grad_norm=float(np.linalg.norm(g)),
                            rel_grad_norm=float(rel), iterations=its, converged=rel <= tol,
                            tol=tol, evaluations=nev,
                            message="all Q_l equal at the saddle; bracketed root in log Q")
        x0 = np.zeros(L) if Q0 is None else np.log(self._qs(Q0))
        state = {}

        def value(x):
            Qs = np.exp(x)
            try:
                S, g, rel = self._nested_eval(Qs)
            except _linalg.NotPositiveDefiniteError:
                S, g, rel = np.inf, None, np.inf
            state.update(x=x.copy(), S=S, g=g, rel=rel)
            return S if np.isfinite(S) else np.inf

        def gradient(x):
            if "x" not in state or not np.array_equal(state["x"], x):
                value(x)
            return state["g"] * np.exp(x), state["rel"]

        res = bfgs(value, gradient, x0, tol=tol, maxiter=maxiter)
        Qs = np.exp(res.x)
        S, g, rel = self._nested_eval(Qs)
        return Solution(Q=Qs, action=S, grad_norm=float(np.linalg.norm(g)),
                        rel_grad_norm=float(rel), iterations=res.iterations,
                        converged=rel <= tol, tol=tol, evaluations=res.evaluations,
                        message=res.message)

    # user-facing action ------------------------------------------------------------------
    def _qs(self, Q):
        if Q is None:
            raise TypeError("Q must be a number or one per hidden layer, got None")
        Qs = np.asarray(backend.to_numpy(Q), dtype=float).reshape(-1)
        if Qs.size == 1 and self.depth > 1:
            Qs = np.full(self.depth, float(Qs[0]))
        if Qs.shape != (self.depth,):
            raise ValueError(f"Q must have {self.depth} entries (one per hidden layer), got "
                             f"shape {np.shape(Q)}")
        if not np.all(np.isfinite(Qs)) or np.any(Qs <= 0):
            raise ValueError(f"Q must be positive and finite, got {Qs}")
        return Qs

    def action(self, Q: Any) -> float:
        """S(Q_1, ..., Q_L) on the bound training set (a (D, D) SPD Q with D outputs)."""
        self._need_data("action")
        if self._multi:
            return float(self._multi_action(Q, self.depth))
        Qs = self._qs(Q)
        if self.variant == "vanilla":
            return self._vanilla_eval(Qs)[0]
        return self._nested_eval(Qs, need_grad=False)[0]

    def gradient(self, Q: Any):
        """dS/dQ_l for l = 1..L, shape (L,) (dS/dQ, (D, D), with D outputs)."""
        self._need_data("gradient")
        if self._multi:
            return self._multi_action(Q, self.depth, grad=True)
        Qs = self._qs(Q)
        if self.variant == "vanilla":
            return self._vanilla_eval(Qs)[1]
        return self._nested_eval(Qs)[1]

    def _predict(self, Xt):
        Qs = self.solution.Q
        Xf = self._X.reshape(self._X.shape[0], -1)
        Xtf = Xt.reshape(Xt.shape[0], -1)
        if self.variant == "vanilla":
            mult = [1.0 / l for l in self.lambdas[1:]]
            # (P_test, P) cross kernel and the test points' own variances at layer L
            K, dXt, _ = layer_kernels(Xtf, Xf, self.activation, self.lambdas[0], mult)[-1]
            if self._multi:
                return self._multi_predict(Qs, K, dXt)
            return self._spectral_predict(float(np.prod(Qs)), K, dXt)
        mult = [q / l for q, l in zip(Qs, self.lambdas[1:])]
        K_tr = layer_kernels(Xf, None, self.activation, self.lambdas[0], mult)[-1][0]
        K_x, dXt, _ = layer_kernels(Xtf, Xf, self.activation, self.lambdas[0], mult)[-1]
        xp = backend.array_module(K_tr)
        chol = _base.cholesky_of_A(K_tr + self.temperature * xp.eye(K_tr.shape[0]),
                                   self.temperature, "DeepFCTheory.predict")
        return _base.gp_posterior(chol, self._y, K_x, dXt)
