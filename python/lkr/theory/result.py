"""Result types of the effective-action solvers: :class:`Solution` and :class:`Prediction`,
and :class:`ConvergenceError` for ``fit(..., strict=True)``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .. import backend
from .._json import jsonable

__all__ = ["Solution", "Prediction", "ConvergenceError"]


class ConvergenceError(RuntimeError):
    """A solver stopped before reaching its tolerance (raised by ``fit(..., strict=True)``).

    The unconverged :class:`Solution` is attached as ``.solution``.
    """

    def __init__(self, message: str, solution: Solution):
        super().__init__(message)
        self.solution = solution


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
    width, alpha, temperature : float
        N, P / N and T of the problem (width = inf, alpha = 0 for the GP).
    seconds : float
        Wall time of the solve (after the kernel was cached).
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

    def summary(self) -> dict:
        """A short JSON-friendly digest of Qbar.

        Scalar Q: ``{"Q": q}``. Per-layer Q: ``{"Q": [q_1, ...]}``. Matrix Q:
        ``mean_diagonal``, ``mean_off_diagonal`` (0 for Np = 1), ``min_eigenvalue``,
        ``max_eigenvalue``. Always ``action``, ``converged``, ``iterations``,
        ``rel_grad_norm``.
        """
        out = {}
        Q = self.Q
        if np.ndim(Q) == 0:
            out["Q"] = float(Q)
        elif np.ndim(Q) == 1:
            out["Q"] = [float(q) for q in backend.to_numpy(Q)]
        else:
            Qn = backend.to_numpy(Q)
            n = Qn.shape[0]
            off = Qn[~np.eye(n, dtype=bool)]
            ev = np.linalg.eigvalsh((Qn + Qn.T) / 2)
            out.update(mean_diagonal=float(np.mean(np.diag(Qn))),
                       mean_off_diagonal=float(off.mean()) if off.size else 0.0,
                       min_eigenvalue=float(ev[0]), max_eigenvalue=float(ev[-1]))
        out.update(action=self.action, converged=self.converged, iterations=self.iterations,
                   rel_grad_norm=self.rel_grad_norm)
        return jsonable(out)

    def to_dict(self) -> dict:
        """Every field, JSON-friendly (arrays as nested lists), plus the summary."""
        d = {k: getattr(self, k) for k in ("Q", "action", "grad_norm", "rel_grad_norm",
                                           "iterations", "converged", "tol", "evaluations",
                                           "message", "theory", "width", "alpha",
                                           "temperature", "seconds", "extra")}
        d["summary"] = self.summary()
        return jsonable(d)

    def __repr__(self) -> str:
        s = self.summary()
        q = s.get("Q", None)
        qs = (f"Q={q!r}" if q is not None else
              f"Q: diag {s['mean_diagonal']:.4g}, off {s['mean_off_diagonal']:.4g}, "
              f"eig [{s['min_eigenvalue']:.4g}, {s['max_eigenvalue']:.4g}]")
        act = "None" if self.action is None else f"{self.action:.10g}"
        return (f"Solution({self.theory}, {qs}, action={act}, converged={self.converged}, "
                f"iterations={self.iterations}, rel_grad_norm={self.rel_grad_norm:.3g})")


@dataclass
class Prediction:
    """Posterior predictive at test points.

    Attributes
    ----------
    mean : ndarray, shape (P_test,)
        k_R^T A^{-1} y.
    variance : ndarray, shape (P_test,)
        K_R^{00} - k_R^T A^{-1} k_R (T not added), clipped at 0 against rounding.
    """

    mean: Any
    variance: Any

    @property
    def std(self):
        """sqrt(variance)."""
        xp = backend.array_module(self.variance)
        return xp.sqrt(self.variance)

    def error(self, y_test) -> dict:
        """Test-set means of bias^2 = (y0 - mean)^2, variance, and their sum ``error``."""
        xp = backend.array_module(self.mean)
        y0 = xp.asarray(y_test, dtype=self.mean.dtype).reshape(-1)
        if y0.shape != self.mean.shape:
            raise ValueError(f"y_test has {y0.shape[0]} entries, expected {self.mean.shape[0]} "
                             "(one per test point)")
        backend.check_finite(y0, "y_test")
        bias2 = float(xp.mean((y0 - self.mean) ** 2))
        var = float(xp.mean(self.variance))
        return {"error": bias2 + var, "bias2": bias2, "variance": var}
