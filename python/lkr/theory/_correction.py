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

D outputs (docs/theory-beyond-odd.md section 4.2): the same in the P D space, each test
point's D x D block corrected (:func:`corrected_kernels`, :func:`corrected_posterior_multi`).
"""
from __future__ import annotations

from .. import backend
from . import _base
from .result import Prediction

__all__ = ["corrected_posterior", "corrected_kernels", "corrected_posterior_multi",
           "block_posterior"]


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


def block_posterior(chol, y, kR, blocks) -> Prediction:
    """D-output posterior from a Cholesky of A = T I + K_R (P D x P D, example-major):
    mean (Pt, D) = k_R A^{-1} y and covariance (Pt, D, D) = kappa_R[t] - k_R[t] A^{-1}
    k_R[t]^T, with ``kR`` (Pt D, P D) and the test blocks ``blocks`` (Pt, D, D)."""
    xp = backend.array_module(kR)
    Pt, D = blocks.shape[:2]
    mean = (kR @ chol.solve(y)).reshape(Pt, D)
    V = chol.half_solve(kR.T).reshape(-1, Pt, D)
    cov = blocks - xp.einsum("rta,rtb->tab", V, V)
    cov = (cov + cov.transpose(0, 2, 1)) / 2
    var = xp.maximum(xp.einsum("taa->ta", cov), 0.0)
    return Prediction(mean=mean, variance=var, covariance=cov)


def corrected_kernels(KR, kR, blocks, y, T: float, c: float, what: str):
    r"""The 1/N-corrected kernels with D outputs (docs/theory-beyond-odd.md section 4.2).

    In the P D space (example-major, index mu D + a), with A = T I + K_R, a = A^{-1} y and
    B = A^{-1} - a a^T:

        K_R^c = K_R - c K_R B K_R,   k_R^c = k_R - c k_R B K_R,
        kappa_R^c[t] = kappa_R[t] - c [k_R B k_R^T]_(t., t.)   (the D x D block of point t).

    Evaluated through the identities (b = K_R a = y - T a)

        K_R B K_R = K_R - T I + T^2 A^{-1} - b b^T,
        k_R B K_R = k_R - T k_R A^{-1} - (k_R a) b^T,

    so that one factorisation and one inverse of A replace products of P D x P D matrices.
    At T = 0, K_R^c = (1 - c) K_R + c y y^T.

    Parameters
    ----------
    KR : (n, n) with n = P D; kR : (Pt D, n); blocks : (Pt, D, D); y : (n,) targets stacked
    example-major; T : temperature; c : alpha / P; what : name for error messages.

    Returns
    -------
    (KRc, kRc, blocks_c)
    """
    xp = backend.array_module(KR)
    n = KR.shape[0]
    Pt, D = blocks.shape[:2]
    chol = _base.cholesky_of_A(KR + T * xp.eye(n), T, what)
    a = chol.solve(y)
    b = y - T * a
    ka = kR @ a
    kAi = chol.solve(kR.T).T                                   # k_R A^{-1}  (Pt D, n)
    KRc = (1.0 - c) * KR + c * xp.outer(b, b)
    kRc = (1.0 - c) * kR + c * xp.outer(ka, b)
    if T != 0:
        KRc += c * T * xp.eye(n) - c * T * T * chol.inverse()
        kRc += c * T * kAi
    KRc = (KRc + KRc.T) / 2
    ka2 = ka.reshape(Pt, D)
    kBk = (xp.einsum("tan,tbn->tab", kAi.reshape(Pt, D, n), kR.reshape(Pt, D, n))
           - ka2[:, :, None] * ka2[:, None, :])
    blocks_c = blocks - c * (kBk + kBk.transpose(0, 2, 1)) / 2
    return KRc, kRc, blocks_c


def corrected_posterior_multi(KR, kR, blocks, y, T: float, c: float, what: str) -> Prediction:
    """Corrected mean (Pt, D) and covariance (Pt, D, D) with D outputs: the GP posterior
    with the kernels of :func:`corrected_kernels` (same parameters)."""
    xp = backend.array_module(KR)
    KRc, kRc, blocks_c = corrected_kernels(KR, kR, blocks, y, T, c, what)
    chol_c = _base.cholesky_of_A(KRc + T * xp.eye(KR.shape[0]), T,
                                 what + " (corrected kernel)")
    return block_posterior(chol_c, y, kRc, blocks_c)
