r"""The non-central FC action with D outputs (docs/theory-beyond-odd.md section 3.1): two
symmetric D x D order parameters, Qbar and its conjugate Q, on the eigenbasis of the kernel.

With K' = K / lambda1 = U diag(l) U^T, m' = m / sqrt(lambda1) (m the mean activations,
M' = m' m'^T), S_ = (I + Q)^{-1} and the targets stacked output by output,

.. math::

    K_R = \bar Q \otimes (K' - M') + S_- \otimes M'
        = \bar Q \otimes K' + \Delta \otimes m' m'^T, \qquad \Delta = S_- - \bar Q,

    S = -\operatorname{Tr}(\bar Q Q) + \log\det(I + Q)
        + \frac{\alpha}{P}\left[\log\det A + y^T A^{-1} y\right], \qquad A = T I + K_R,

    \partial S/\partial\bar Q = -Q + c\,G_c, \quad
    \partial S/\partial Q = -\bar Q + S_- - c\,S_- G_m S_-, \quad c = \alpha / P,

G_c[a, b] = Tr(B_ab (K' - M')), G_m[a, b] = m'^T B_ab m' (B_ab the (a, b) block of
B = A^{-1} - a a^T). The PD x PD matrix is never formed: with Qbar = V diag(q) V^T, the
part A0 = T + Qbar (x) K' is diagonal in the basis V (x) U, den[k, a] = T + q_a l_k, and the
mean part is the rank-D term W Delta W^T, W = I_D (x) m'. Woodbury and Sylvester's
determinant identity with w = U^T m', H = diag(h), h_a = sum_k w_k^2 / den[k, a],
Delta_v = V^T Delta V and E = I + H^{1/2} Delta_v H^{1/2} give

    log det A   = sum log den + log det E,
    A^{-1}      = A0^{-1} - A0^{-1} W Gamma W^T A0^{-1},
    Gamma       = Delta_v - Delta_v H^{1/2} E^{-1} H^{1/2} Delta_v   (D x D),

so that one evaluation of S and both gradients costs O(P D^2 + D^3) after the one
eigendecomposition of K (shared with the other FC theories). A is positive definite exactly
when A0 and E are. D = 1 is the (Q0, Q1) action of section 1.1; m = 0 gives the odd D-output
action of section 2.1 up to the constant -D. The saddle is found by
:func:`._saddle.solve_pair`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import backend
from ._saddle import is_pair, solve_pair, start_pair
from .result import Prediction, Solution

__all__ = ["NonCentralMultiProblem", "NCMultiEval"]


def _sym(A):
    return (A + A.T) / 2


@dataclass
class NCMultiEval:
    """One evaluation: the action, the gradient pair and the pieces the predictor reuses."""

    S: float
    gbar: np.ndarray
    gq: np.ndarray
    rel: float
    Gc: np.ndarray
    Gm: np.ndarray
    c: float
    q: np.ndarray       # eigenvalues of Qbar
    V: np.ndarray       # its eigenvectors
    den: np.ndarray     # (P, D) T + l q
    v: np.ndarray       # (P, D) w / den
    h: np.ndarray       # (D,)
    Gamma: np.ndarray   # (D, D), in the basis V
    Dv: np.ndarray      # Delta in the basis V
    a_hat: np.ndarray   # (P, D) A^{-1} y in the basis V (x) U
    s: np.ndarray       # (D,) w^T a_hat

    def as_dict(self):
        return dict(S=self.S, gbar=self.gbar, gq=self.gq, rel=self.rel, Gc=self.Gc,
                    Gm=self.Gm, c=self.c, ev=self)


class NonCentralMultiProblem:
    """S(Qbar, Q), its gradient pair and the predictor for a fixed spectrum.

    Parameters
    ----------
    l : (P,) eigenvalues of K' (>= 0; K' = K / lambda1 for one hidden layer)
    Z : (P, D) U^T Y
    w : (P,) U^T m' (m' = m / sqrt(lambda1))
    alpha, T : floats
    """

    def __init__(self, l, Z, w, *, alpha, T):
        self.l = np.asarray(l, float)
        self.Z = np.asarray(Z, float)
        self.w = np.asarray(w, float)
        self.P, self.D = self.Z.shape
        self.c = alpha / self.P
        self.T = float(T)

    def evaluate(self, Qbar, Qc, scale=1.0):
        """An :class:`NCMultiEval` at (Qbar, Qc), or None where Qbar or I + Qc is not
        positive definite, or A is not. ``scale`` multiplies alpha (the solver's
        continuation)."""
        D = self.D
        I = np.eye(D)
        Qbar, Qc = _sym(np.asarray(Qbar, float)), _sym(np.asarray(Qc, float))
        if not (np.all(np.isfinite(Qbar)) and np.all(np.isfinite(Qc))):
            return None
        try:
            L = np.linalg.cholesky(I + Qc)
        except np.linalg.LinAlgError:
            return None
        Li = np.linalg.inv(L)
        Sm = _sym(Li.T @ Li)
        logdet_IQ = 2.0 * float(np.sum(np.log(np.diag(L))))
        q, V = np.linalg.eigh(Qbar)
        if not q[0] > 0:
            return None
        den = self.T + np.multiply.outer(self.l, q)                   # (P, D)
        if not np.all(den > 0):
            return None
        Zv = self.Z @ V
        R = Zv / den
        v = self.w[:, None] / den
        h = self.w @ v                                                  # (D,)
        Dv = _sym(V.T @ Sm @ V) - np.diag(q)
        sh = np.sqrt(h)
        E = I + sh[:, None] * Dv * sh[None, :]
        try:
            LE = np.linalg.cholesky(E)
        except np.linalg.LinAlgError:
            return None
        logdetA = float(np.log(den).sum()) + 2.0 * float(np.sum(np.log(np.diag(LE))))
        X = np.linalg.solve(LE, sh[:, None] * Dv)                      # LE^{-1} H^{1/2} Dv
        Gamma = _sym(Dv - X.T @ X)
        r = self.w @ R                                                  # (D,) W^T A0^{-1} y
        quad = float(np.sum(Zv * R)) - float(r @ Gamma @ r)
        c = self.c * scale
        S = -float(np.sum(Qbar * Qc)) + logdet_IQ + c * (logdetA + quad)
        a_hat = R - v * (Gamma @ r)[None, :]
        s = self.w @ a_hat
        lv = self.l[:, None] * v
        # G_K = [Tr(B_ab K')] and G_m = [m'^T B_ab m'] in the basis V
        GK = (np.diag((self.l[:, None] / den).sum(0)) - Gamma * (v.T @ lv)
              - a_hat.T @ (self.l[:, None] * a_hat))
        Gmv = np.diag(h) - Gamma * np.outer(h, h) - np.outer(s, s)
        Gc = _sym(V @ (GK - Gmv) @ V.T)
        Gm = _sym(V @ Gmv @ V.T)
        SGS = _sym(Sm @ Gm @ Sm)
        gbar = _sym(-Qc + c * Gc)
        gq = _sym(-Qbar + Sm - c * SGS)
        # each gradient relative to the terms that cancel in it (a combined measure lets a
        # large term of one hide an error in the other)
        mag_bar = np.linalg.norm(Qc) + c * np.linalg.norm(Gc)
        mag_q = np.linalg.norm(Qbar) + np.linalg.norm(Sm) + c * np.linalg.norm(SGS)
        rel = float(max(np.linalg.norm(gbar) / max(mag_bar, 1e-300),
                        np.linalg.norm(gq) / max(mag_q, 1e-300)))
        return NCMultiEval(float(S), gbar, gq, rel, Gc, Gm, c, q, V, den, v, h, Gamma, Dv,
                           a_hat, s)

    def evaluate_dict(self, Qbar, Qc, scale=1.0):
        ev = self.evaluate(Qbar, Qc, scale)
        return None if ev is None else ev.as_dict()

    # -- predictor ----------------------------------------------------------------------
    def predict(self, ev, kt, kappa, m0):
        r"""Posterior mean (Pt, D) and covariance (Pt, D, D) at the evaluation ``ev``.

        ``kt`` (Pt, P) = k' U (the scaled cross kernel k' = k / lambda1 in the eigenbasis),
        ``kappa`` (Pt,) the scaled test variances kappa', ``m0`` (Pt,) the test points' scaled
        mean activations m0' = m0 / sqrt(lambda1). The renormalised kernels are
        k_R[(t a), (mu b)] = Qbar_ab k'_{t mu} + Delta_ab m0'_t m'_mu and
        kappa_R[t] = Qbar kappa'_t + Delta m0'_t^2; mean = k_R A^{-1} y and
        cov = kappa_R - k_R A^{-1} k_R^T, both through the Woodbury form of A^{-1}.
        """
        kap = kappa
        q, V, den, v, h, G = ev.q, ev.V, ev.den, ev.v, ev.h, ev.Gamma
        DV = V @ ev.Dv                                  # Delta V (original a, rotated b')
        Vq = V * q[None, :]                             # Qbar V
        ka = kt @ ev.a_hat                              # (Pt, D)
        mean = ka @ Vq.T + np.outer(m0, DV @ ev.s)
        al1 = (kt * kt) @ (1.0 / den)                   # sum_k kt^2 / den
        al2 = kt @ v                                    # sum_k kt w / den
        # F_t A0^{-1} F_t^T and F_t A0^{-1} W (phi_t), F_t = Qbar V (x) kt_t + Delta V (x) m0_t w
        t1 = np.einsum("ab,tb,cb->tac", Vq, al1, Vq)
        cross = np.einsum("ab,tb,cb->tac", Vq, al2, DV) * m0[:, None, None]
        t1 += cross + cross.transpose(0, 2, 1)
        t1 += np.einsum("ab,b,cb->ac", DV, h, DV)[None] * (m0 * m0)[:, None, None]
        phi = Vq[None] * al2[:, None, :] + DV[None] * (m0[:, None] * h[None, :])[:, None, :]
        t2 = np.einsum("tab,bc,tdc->tad", phi, G, phi)
        Qbar = Vq @ V.T
        Delta = DV @ V.T
        kR = Qbar[None] * kap[:, None, None] + Delta[None] * (m0 * m0)[:, None, None]
        cov = kR - t1 + t2
        cov = (cov + cov.transpose(0, 2, 1)) / 2
        var = np.maximum(np.einsum("taa->ta", cov), 0.0)
        return Prediction(mean=mean, variance=var, covariance=cov)


# -- glue to FCTheory ------------------------------------------------------------------------
def check_symmetric(Q, D, name="Q", definite=False):
    """A symmetric (D, D) float array (positive definite when ``definite``), else ValueError
    naming the shape or the defect."""
    Qn = np.asarray(backend.to_numpy(Q), dtype=float)
    if Qn.shape != (D, D):
        raise ValueError(f"{name} must be a ({D}, {D}) matrix for D = {D} outputs, got shape "
                         f"{Qn.shape}")
    if not np.all(np.isfinite(Qn)):
        raise ValueError(f"{name} has non-finite entries")
    if np.abs(Qn - Qn.T).max() > 1e-10 * max(np.abs(Qn).max(), 1e-300):
        raise ValueError(f"{name} must be symmetric")
    Qn = _sym(Qn)
    if definite and np.linalg.eigvalsh(Qn)[0] <= 0:
        raise ValueError(f"{name} must be positive definite (smallest eigenvalue "
                         f"{np.linalg.eigvalsh(Qn)[0]:.3g})")
    return Qn


def matrix_pair(Q, D, what):
    """(Qbar, conjugate) from a user's pair, validated (Qbar symmetric, I + Q p.d. is left to
    the evaluation)."""
    if not is_pair(Q):
        raise ValueError(f"{what} with the non-central action and D = {D} outputs: pass the "
                         f"pair (Qbar, conjugate) of ({D}, {D}) matrices, got {type(Q).__name__}")
    return check_symmetric(Q[0], D, "Qbar"), check_symmetric(Q[1], D, "conjugate")


class NonCentralMultiMixin:
    """FC theories with a non-central activation and D outputs. Needs ``_cache['lam']``,
    ``_cache['U']``, ``_cache['w']`` (U^T m), ``_kernel_scale()`` (K' = scale K), ``alpha``,
    ``temperature`` and a (P, D) ``_y``."""

    def _nc_multi_problem(self):
        from . import _base

        lam, U = self._cache["lam"], self._cache["U"]
        scale = self._kernel_scale()
        _base.check_T0_spectrum(lam * scale, self.temperature, type(self).__name__)
        Z = backend.to_numpy(U.T @ self._y)
        return NonCentralMultiProblem(lam * scale, Z, self._cache["w"] * np.sqrt(scale),
                                      alpha=self.alpha, T=self.temperature)

    def _solve_nc_multi(self, Q0, tol, maxiter):
        prob = self._nc_multi_problem()
        D = prob.D
        Qbar, Qc, how = start_pair(
            Q0, D, lambda M, name, definite: check_symmetric(M, D, name, definite))
        res, used = solve_pair(prob.evaluate_dict, D, (Qbar, Qc), tol=tol, maxiter=maxiter)
        ev = res.state
        if used != "given":
            how = used
        gn = float(np.sqrt(np.sum(ev["gbar"] ** 2) + np.sum(ev["gq"] ** 2)))
        return Solution(Q=ev["Qbar"], conjugate=ev["Qc"], action=ev["S"], grad_norm=gn,
                        rel_grad_norm=res.rel, iterations=res.iterations,
                        converged=res.converged, tol=tol, evaluations=res.evaluations,
                        message=res.message,
                        extra={"outputs": D, "start": how,
                               "action": "non-central (Qbar, Q), D outputs"})

    def _nc_multi_eval(self, Q, what):
        self._need_data(what)
        prob = self._nc_multi_problem()
        Qbar, Qc = matrix_pair(Q, prob.D, f"{type(self).__name__}.{what}")
        ev = prob.evaluate(Qbar, Qc)
        if ev is None:
            raise ValueError(f"{type(self).__name__}.{what}: the non-central action is undefined "
                             "here (Qbar, I + conjugate or A = T I + K_R not positive definite)")
        return prob, ev

    def _nc_multi_predict(self, k_cross, k_diag, m0):
        """``k_cross`` (Pt, P), ``k_diag`` (Pt,) scaled like K'; ``m0`` (Pt,) unscaled."""
        sol = self.solution
        prob = self._nc_multi_problem()
        ev = prob.evaluate(sol.Q, sol.conjugate)
        U = self._cache["U"]
        xp = backend.array_module(U)
        sq = np.sqrt(self._kernel_scale())
        pred = prob.predict(ev, backend.to_numpy(k_cross @ U), backend.to_numpy(k_diag),
                            backend.to_numpy(m0) * sq)
        if xp is np:
            return pred
        return Prediction(mean=xp.asarray(pred.mean), variance=xp.asarray(pred.variance),
                          covariance=xp.asarray(pred.covariance))

    def _dense_kernels(self, k_cross, k_diag, m0):
        """The dense renormalised kernels of the fitted D-output FC theory, example-major
        (index mu D + a), for the corrected predictor: K_R (P D, P D), k_R (Pt D, P D) and
        the kappa_R blocks (Pt, D, D). ``k_cross``, ``k_diag`` scaled like K'; ``m0``
        unscaled (None for the odd action)."""
        sol = self.solution
        lam, U = self._cache["lam"], self._cache["U"]
        xp = backend.array_module(U)
        scale = self._kernel_scale()
        D = sol.Q.shape[0]
        Qbar = xp.asarray(sol.Q)
        P, Pt = U.shape[0], k_cross.shape[0]
        K = (U * (lam * scale)) @ U.T
        KR = K[:, None, :, None] * Qbar[None, :, None, :]
        kR = k_cross[:, None, :, None] * Qbar[None, :, None, :]
        blocks = k_diag[:, None, None] * Qbar[None]
        if sol.conjugate is not None:
            Delta = xp.asarray(np.linalg.inv(np.eye(D) + sol.conjugate) - sol.Q)
            m = self._cache["m"] * np.sqrt(scale)
            m0 = m0 * np.sqrt(scale)
            KR = KR + xp.outer(m, m)[:, None, :, None] * Delta[None, :, None, :]
            kR = kR + xp.outer(m0, m)[:, None, :, None] * Delta[None, :, None, :]
            blocks = blocks + (m0 * m0)[:, None, None] * Delta[None]
        KR = KR.reshape(P * D, P * D)
        return (KR + KR.T) / 2, kR.reshape(Pt * D, P * D), blocks
