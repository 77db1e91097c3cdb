r"""First-order 1/N corrections of the predictor (docs/theory-beyond-odd.md 4), shared by
the theories.

The saddle is unchanged; only the predictor's kernels get a correction. With
A = T I + K_R, a = A^{-1} y, B = A^{-1} - a a^T and c = alpha / P:

.. math::

    K_R^c = K_R - c\,K_R B K_R,\qquad k_R^c = k_R - c\,k_R B K_R,\qquad
    \kappa_R^c = \kappa_R - c\,\operatorname{diag}(k_R B k_R^T),

then mean = k_R^c (T + K_R^c)^{-1} y and var = kappa_R^c - diag(k_R^c (T + K_R^c)^{-1}
k_R^c^T). Only the diagonal of the test-test block enters (the variance of each test
point); no test x test matrix is formed. Dense P x P algebra: O(P^3) once per predict.
"""
from __future__ import annotations

from .. import backend
from . import _base
from .result import Prediction

__all__ = ["corrected_posterior"]


def corrected_posterior(KR, kR, kappaR, y, T: float, c: float, what: str) -> Prediction:
    """Corrected mean and variance (one output).

    Parameters
    ----------
    KR : (P, P) renormalised training kernel K_R at the saddle.
    kR : (P_test, P) renormalised cross kernel k_R.
    kappaR : (P_test,) renormalised test variances kappa_R.
    y : (P,) training targets.
    T : temperature; c : alpha / P.
    what : name for error messages.
    """
    xp = backend.array_module(KR)
    P = KR.shape[0]
    chol = _base.cholesky_of_A(KR + T * xp.eye(P), T, what)
    a = chol.solve(y)
    BK = chol.solve(KR) - xp.outer(a, a @ KR)  # B K_R
    KRc = KR - c * (KR @ BK)
    KRc = (KRc + KRc.T) / 2
    kRc = kR - c * (kR @ BK)
    kB = chol.solve(kR.T).T - xp.outer(kR @ a, a)  # k_R B
    kappac = kappaR - c * xp.einsum("ij,ij->i", kB, kR)
    chol_c = _base.cholesky_of_A(KRc + T * xp.eye(P), T, what + " (corrected kernel)")
    return _base.gp_posterior(chol_c, y, kRc, kappac)
