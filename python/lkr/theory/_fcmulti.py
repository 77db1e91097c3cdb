"""Glue of the D-output FC solver (:mod:`._multiout`) to FCTheory and vanilla DeepFCTheory:
start point, Solution, predictor (docs/theory-beyond-odd.md 2.1)."""
from __future__ import annotations

import numpy as np

from .. import _linalg, backend
from . import _base
from ._multiout import MultiOutputProblem, closed_form_T0
from ._noncentral_multi import check_symmetric
from .result import Prediction, Solution

__all__ = ["MultiOutputMixin"]


def _check_spd(Q, D, name="Q"):
    """None, or a symmetric positive-definite (D, D) array (a scalar means that times I)."""
    if Q is None:
        return None
    Qn = np.asarray(backend.to_numpy(Q), dtype=float)
    if Qn.ndim == 0:
        Qn = float(Qn) * np.eye(D)
    return check_symmetric(Qn, D, name, definite=True)


class MultiOutputMixin:
    """Needs ``_cache['lam']``, ``_cache['U']``, ``_kernel_scale()``, ``temperature``,
    ``alpha`` and a (P, D) ``_y``."""

    def _multi_problem(self, L):
        lam, U = self._cache["lam"], self._cache["U"]
        lam_eff = lam * self._kernel_scale()
        _base.check_T0_spectrum(lam_eff, self.temperature, type(self).__name__)
        Yt = backend.to_numpy(U.T @ self._y)
        return MultiOutputProblem(lam_eff, Yt, alpha=self.alpha, T=self.temperature, L=L)

    @property
    def _multi(self):
        """The D-output path: the bound targets are a (P, D) matrix."""
        return self._y is not None and self._y.ndim == 2

    def _min_width(self):
        D = self.num_outputs
        return D if D is not None and D > 1 else None

    def _solve_multi(self, L, Q0, tol, maxiter):
        prob = self._multi_problem(L)
        D = prob.D
        start = _check_spd(Q0, D, "Q0")
        how = "Q0"
        if start is None:
            if self.temperature == 0 and L == 1:
                start, how = closed_form_T0(prob.lam, prob.Yt, self.alpha), "closed form (T = 0)"
            else:
                start, how = np.eye(D), "identity (infinite width)"
        if prob.evaluate(start) is None:
            raise _linalg.NotPositiveDefiniteError(
                f"{type(self).__name__}: the starting Q is infeasible (A not positive definite)")
        Q, ev, its, nev, msg = prob.solve(start, tol=tol, maxiter=maxiter)
        if ev is None:
            raise FloatingPointError(f"{type(self).__name__}: the multi-output solver left the "
                                     f"feasible set ({msg}); this is a bug, please report it")
        return Solution(Q=Q, action=ev.S, grad_norm=float(np.linalg.norm(ev.grad)),
                        rel_grad_norm=ev.rel, iterations=its, converged=ev.rel <= tol, tol=tol,
                        evaluations=nev, message=msg,
                        extra={"outputs": D, "start": how})

    def _multi_action(self, Q, L, grad=False):
        self._need_data("gradient" if grad else "action")
        prob = self._multi_problem(L)
        Qn = _check_spd(Q, prob.D)
        ev = prob.evaluate(Qn, need_grad=grad)
        if ev is None:
            raise _linalg.NotPositiveDefiniteError("A = T I + Q (x) K is not positive definite")
        return ev.grad if grad else ev.S

    def _multi_predict(self, Q, k_cross, k_diag):
        """mean (Pt, D) = k^T alpha Q, covariance (Pt, D, D) = Q kappa - sum_k kt_k^2
        Q A_k^{-1} Q, in the eigenbasis of Q (where every A_k is diagonal). ``k_cross``
        (Pt, P) and ``k_diag`` (Pt,) are the effective kernels (K' scale)."""
        lam, U = self._cache["lam"], self._cache["U"]
        xp = backend.array_module(U)
        lam_eff = lam * self._kernel_scale()
        q, V = np.linalg.eigh((Q + Q.T) / 2)
        den = self.temperature + np.multiply.outer(lam_eff, q)           # (P, D)
        Yv = backend.to_numpy(U.T @ self._y) @ V
        R = Yv / den
        kt = k_cross @ U                                                  # (Pt, P)
        Vd, Rd, dd = xp.asarray(V), xp.asarray(R), xp.asarray(den)
        mean = (kt @ Rd) * xp.asarray(q)[None, :] @ Vd.T
        c_eig = (k_diag[:, None] * xp.asarray(q)[None, :]
                 - (kt * kt) @ (1.0 / dd) * xp.asarray(q * q)[None, :])  # (Pt, D)
        c_eig = xp.maximum(c_eig, 0.0)
        cov = xp.einsum("ad,td,bd->tab", Vd, c_eig, Vd)
        var = xp.einsum("ad,td,ad->ta", Vd, c_eig, Vd)
        return Prediction(mean=mean, variance=var, covariance=cov)
