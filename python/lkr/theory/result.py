"""Result types of the effective-action solvers: :class:`Solution` and :class:`Prediction`,
and :class:`ConvergenceError` for ``fit(..., strict=True)``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .. import backend
from .._json import jsonable
from ._classes import class_scores

__all__ = ["Solution", "Prediction", "ConvergenceError"]


class ConvergenceError(RuntimeError):
    """A solver stopped before reaching its tolerance (raised by ``fit(..., strict=True)``).

    The unconverged :class:`Solution` is attached as ``.solution``.
    """

    def __init__(self, message: str, solution: Solution):
        super().__init__(message)
        self.solution = solution


def _digest(Q):
    """A float (scalar), a list (per-layer vector) or, for a matrix, a dict with its mean
    diagonal, mean off-diagonal (0 for 1 x 1) and extreme eigenvalues."""
    if np.ndim(Q) == 0:
        return float(Q)
    Qn = np.asarray(backend.to_numpy(Q), dtype=float)
    if Qn.ndim == 1:
        return [float(q) for q in Qn]
    n = Qn.shape[0]
    off = Qn[~np.eye(n, dtype=bool)]
    ev = np.linalg.eigvalsh((Qn + Qn.T) / 2)
    return {"mean_diagonal": float(np.mean(np.diag(Qn))),
            "mean_off_diagonal": float(off.mean()) if off.size else 0.0,
            "min_eigenvalue": float(ev[0]), "max_eigenvalue": float(ev[-1])}


@dataclass
class Solution:
    """The saddle point of an effective action, with how it was reached.

    Attributes
    ----------
    Q : float or ndarray
        The order parameter Qbar: a float (FC), an (L,) array (deep FC, one per layer),
        an (Np, Np) symmetric positive-definite matrix (CNN; diagonal for LCN), or the fixed
        infinite-width value (GP: 1, I or 11^T/Np).
    action : float or None
        S(Qbar) (None for the GP, which has no action).
    grad_norm : float
        Frobenius norm of dS/dQ at Q (absolute).
    rel_grad_norm : float
        The convergence measure: ``grad_norm`` divided by the sizes of the terms that
        cancel at the saddle, ||I|| + ||Q^{-1}|| + ||c G(B)|| (see each theory).
    iterations : int
        Solver iterations (0 for the GP).
    converged : bool
        ``rel_grad_norm <= tol``.
    tol : float
        The tolerance asked for.
    evaluations : int
        Evaluations of the action (each one K_R(Q) and a Cholesky of A).
    message : str
        How the solver stopped.
    theory : str
        Class name of the theory that produced it.
    conjugate : float, ndarray or None
        The conjugate order parameter of the non-central (non-odd activation) actions: Q1
        of FCTheory(mean="auto") with relu, the conjugate matrix of the CNN/LCN analogue;
        None for odd activations, ``mean="ignore"`` and the GP.
    width, alpha, temperature : float
        N, P / N and T of the problem (width = inf, alpha = 0 for the GP).
    seconds : float
        Wall time of the solve (after the kernel was cached).
    filter_dim : int or None
        The filter dimension M = C_in k_h k_w of the renormalised layer (deep CNN: of the
        last layer; FC: the input dimension N0); None for the GP. The actions need a large
        M: below 16 (non-linear activations) the fit issues a
        :class:`~lkr._warnings.TheoryRegimeWarning` (docs/validity.md).
    """

    Q: Any
    action: Optional[float]
    grad_norm: float
    rel_grad_norm: float
    iterations: int
    converged: bool
    tol: float
    evaluations: int = 0
    message: str = ""
    theory: str = ""
    width: float = float("inf")
    alpha: float = 0.0
    temperature: float = 0.0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    conjugate: Any = None
    filter_dim: Optional[int] = None

    @property
    def num_outputs(self) -> int:
        """D: the side of a multi-output (D x D) Q, else 1 (read from ``extra``)."""
        return int(self.extra.get("outputs", 1))

    def summary(self) -> dict:
        """A short JSON-friendly digest of Qbar.

        Scalar Q: ``{"Q": q}``. Per-layer Q: ``{"Q": [q_1, ...]}``. Matrix Q:
        ``mean_diagonal``, ``mean_off_diagonal`` (0 for Np = 1), ``min_eigenvalue``,
        ``max_eigenvalue``. Always ``action``, ``converged``, ``iterations``,
        ``rel_grad_norm``; ``filter_dim`` when known (not for the GP). ``conjugate`` (the
        same digest of the conjugate order parameter: a float, a list or a dict) when there
        is one, and ``outputs`` when D > 1.
        """
        out = _digest(self.Q)
        if not isinstance(out, dict):
            out = {"Q": out}
        if self.conjugate is not None:
            out["conjugate"] = _digest(self.conjugate)
        if self.num_outputs > 1:
            out["outputs"] = self.num_outputs
        out.update(action=self.action, converged=self.converged, iterations=self.iterations,
                   rel_grad_norm=self.rel_grad_norm)
        if self.filter_dim is not None:
            out["filter_dim"] = self.filter_dim
        return jsonable(out)

    def to_dict(self) -> dict:
        """Every field, JSON-friendly (arrays as nested lists), plus the summary."""
        d = {k: getattr(self, k) for k in ("Q", "action", "grad_norm", "rel_grad_norm",
                                           "iterations", "converged", "tol", "evaluations",
                                           "message", "theory", "width", "alpha",
                                           "temperature", "seconds", "extra", "conjugate",
                                           "filter_dim")}
        d["summary"] = self.summary()
        return jsonable(d)

    def __repr__(self) -> str:
        s = self.summary()
        q = s.get("Q", None)
        qs = (f"Q={q!r}" if q is not None else
              f"Q: diag {s['mean_diagonal']:.4g}, off {s['mean_off_diagonal']:.4g}, "
              f"eig [{s['min_eigenvalue']:.4g}, {s['max_eigenvalue']:.4g}]")
        if self.conjugate is not None:
            c = s["conjugate"]
            qs += (f", conjugate={c!r}" if not isinstance(c, dict) else
                   f", conjugate: diag {c['mean_diagonal']:.4g}")
        act = "None" if self.action is None else f"{self.action:.10g}"
        return (f"Solution({self.theory}, {qs}, action={act}, converged={self.converged}, "
                f"iterations={self.iterations}, rel_grad_norm={self.rel_grad_norm:.3g})")


@dataclass
class Prediction:
    """Posterior predictive at test points.

    One output (1-D training ``y``):

    mean : ndarray, shape (P_test,)
        k_R^T A^{-1} y.
    variance : ndarray, shape (P_test,)
        K_R^{00} - k_R^T A^{-1} k_R (T not added), clipped at 0 against rounding.
    covariance : ndarray, shape (P_test, 1, 1)
        The variance as 1 x 1 matrices (a view), so code written for D outputs works.

    D outputs (training ``Y`` of shape (P, D), D >= 2):

    mean : ndarray, shape (P_test, D)
    covariance : ndarray, shape (P_test, D, D)
        The posterior covariance of the D outputs at each test point (T not added).
    variance : ndarray, shape (P_test, D)
        Its diagonal.

    A Prediction unpacks as ``mean, variance = theory.predict(Xt)``.
    """

    mean: Any
    variance: Any
    covariance: Any = None

    def __post_init__(self):
        if self.covariance is None and self.variance is not None:
            v = self.variance
            self.covariance = (v[:, None, None] if v.ndim == 1 else
                               _diag_embed(v))

    @property
    def num_outputs(self) -> int:
        """D (1 for a 1-D mean)."""
        return 1 if self.mean.ndim == 1 else int(self.mean.shape[1])

    def __iter__(self):
        """``mean, variance = prediction``."""
        return iter((self.mean, self.variance))

    @property
    def std(self):
        """sqrt(variance)."""
        xp = backend.array_module(self.variance)
        return xp.sqrt(self.variance)

    def error(self, y_test) -> dict:
        """Test-set means of bias^2 = (y0 - mean)^2, variance, and their sum ``error``.

        With D outputs the means run over test points and outputs, and ``per_output`` holds
        ``{"error", "bias2", "variance"}`` as length-D NumPy arrays (means over test points).
        A 1-D prediction returns the three floats.

        Class targets (one-hot, +-1 one-hot or centred one-hot with D outputs; +-1 with one;
        see :mod:`lkr.theory._classes`) add ``accuracy`` (the fraction of test points whose
        predicted class, the argmax of the posterior mean, or its sign for +-1, is theirs),
        ``confusion`` (a (K, K) int array: true class by predicted class) and
        ``class_coding``; any other target gives none of them (no guessing on regression
        targets).
        """
        xp = backend.array_module(self.mean)
        y0 = xp.asarray(y_test, dtype=self.mean.dtype)
        if self.mean.ndim == 1:
            y0 = y0.reshape(-1)
            if y0.shape != self.mean.shape:
                raise ValueError(f"y_test has {y0.shape[0]} entries, expected "
                                 f"{self.mean.shape[0]} (one per test point)")
        elif y0.shape != self.mean.shape:
            raise ValueError(f"y_test must have shape {tuple(self.mean.shape)} (test points, "
                             f"outputs), got {tuple(y0.shape)}")
        backend.check_finite(y0, "y_test")
        classes = class_scores(backend.to_numpy(self.mean), backend.to_numpy(y0))
        if self.mean.ndim == 1:
            bias2 = float(xp.mean((y0 - self.mean) ** 2))
            var = float(xp.mean(self.variance))
            out = {"error": bias2 + var, "bias2": bias2, "variance": var}
        else:
            b = backend.to_numpy(xp.mean((y0 - self.mean) ** 2, axis=0))
            v = backend.to_numpy(xp.mean(self.variance, axis=0))
            out = {"error": float(b.mean() + v.mean()), "bias2": float(b.mean()),
                   "variance": float(v.mean()),
                   "per_output": {"error": b + v, "bias2": b, "variance": v}}
        if classes is not None:
            out.update(classes)
        return out


def _diag_embed(v):
    """(n, D) -> (n, D, D) with v on the diagonals."""
    xp = backend.array_module(v)
    out = xp.zeros(v.shape + (v.shape[-1],), dtype=v.dtype)
    idx = xp.arange(v.shape[-1])
    out[:, idx, idx] = v
    return out
