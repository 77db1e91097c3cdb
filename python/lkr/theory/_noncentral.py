r"""The non-central FC action (docs/theory-beyond-odd.md 1.1): two scalars (Q0, Q1) for activations
with a non-zero mean (relu), on a diagonalised kernel.

With the mean activations m (m_mu = E[sigma(h)], h ~ N(0, C^{mu mu})) and M = m m^T,

.. math::

    K_R = \frac{Q_0}{\lambda_1}(K - M) + \frac{M}{\lambda_1 (1 + Q_1)}, \qquad
    S = -Q_0 Q_1 + \log(1 + Q_1) + \frac{\alpha}{P}\left[\log\det A + y^T A^{-1} y\right],

A = T I + K_R. Writing K_c = T I + (Q_0/\lambda_1) K and
delta = (Q_0 - 1/(1 + Q_1)) / lambda_1, A = K_c - delta m m^T, and Sherman-Morrison on the
eigenbasis K = U diag(l) U^T (z = U^T y, w = U^T m, d = T + Q_0 l / lambda_1) makes every
term a sum over P numbers:

    g = 1 - delta sum w^2/d,  log det A = sum log d + log g,
    y^T A^{-1} y = sum z^2/d + delta (sum z w/d)^2 / g.

The gradient (B = A^{-1} - a a^T, a = A^{-1} y):

    dS/dQ0 = -Q1 + (alpha/(P lambda1)) Tr[B (K - M)]
    dS/dQ1 = -Q0 + 1/(1 + Q1) - (alpha/(P lambda1 (1 + Q1)^2)) [m^T A^{-1} m - (a.m)^2]

S is unbounded (the -Q0 Q1 term): the solution is a saddle, found as a root of the
gradient by damped Newton steps in (log Q0, log(1 + Q1)) from the infinite-width point
(Q0, Q1) = (1, 0); never by minimising S. With m = 0 the root has Q0 = 1 / (1 + Q1) and
Q0 is the saddle of the odd FC action.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["NonCentralEval", "NonCentralProblem"]


@dataclass
class NonCentralEval:
    S: float
    grad: np.ndarray      # (dS/dQ0, dS/dQ1)
    mag: np.ndarray       # sizes of the terms that cancel in each component
    rel: float            # ||grad|| / ||mag||
    d: np.ndarray         # T + Q0 l / lambda1
    delta: float
    g: float              # 1 - delta m^T Kc^{-1} m
    a_hat: np.ndarray     # U^T A^{-1} y


class NonCentralProblem:
    """S(Q0, Q1), its gradient and the saddle for a fixed spectrum.

    Parameters
    ----------
    lam : (P,) eigenvalues of K (>= 0); z : (P,) U^T y; w : (P,) U^T m;
    alpha, T, lambda1 : floats.
    """

    def __init__(self, lam, z, w, *, alpha, T, lambda1):
        self.lam = np.asarray(lam, float)
        self.z = np.asarray(z, float)
        self.w = np.asarray(w, float)
        self.P = self.lam.size
        self.c = alpha / self.P
        self.T = float(T)
        self.lambda1 = float(lambda1)

    def evaluate(self, Q0, Q1):
        """A :class:`NonCentralEval` at (Q0, Q1), or None where A is not positive definite
        (or Q0 <= 0, Q1 <= -1)."""
        Q0, Q1 = float(Q0), float(Q1)
        if not (Q0 > 0 and Q1 > -1 and np.isfinite(Q0) and np.isfinite(Q1)):
            return None
        lam, z, w, c, l1 = self.lam, self.z, self.w, self.c, self.lambda1
        d = self.T + (Q0 / l1) * lam
        if not np.all(d > 0):
            return None
        s = 1.0 / (1.0 + Q1)
        delta = (Q0 - s) / l1
        v = w / d
        s_mm = float(w @ v)
        s_ym = float(z @ v)
        s_yy = float(z @ (z / d))
        g = 1.0 - delta * s_mm
        if not g > 0:
            return None
        logdet = float(np.log(d).sum()) + np.log(g)
        quad = s_yy + delta * s_ym * s_ym / g
        S = -Q0 * Q1 + np.log1p(Q1) + c * (logdet + quad)
        a_hat = z / d + (delta * s_ym / g) * v
        mAm = s_mm / g
        am = s_ym / g
        tr_AK = float((lam / d).sum()) + (delta / g) * float(lam @ (v * v))
        aKa = float(lam @ (a_hat * a_hat))
        trBM = mAm - am * am
        trBKM = tr_AK - aKa - trBM
        grad = np.array([-Q1 + (c / l1) * trBKM,
                         -Q0 + s - c * s * s / l1 * trBM])
        mag = np.array([abs(Q1) + (c / l1) * (tr_AK + aKa + mAm + am * am),
                        Q0 + s + c * s * s / l1 * (mAm + am * am)])
        rel = float(np.linalg.norm(grad) / np.linalg.norm(mag))
        return NonCentralEval(float(S), grad, mag, rel, d, delta, g, a_hat)

    def action(self, Q0, Q1):
        ev = self.evaluate(Q0, Q1)
        return np.inf if ev is None else ev.S

    # -- root finding ------------------------------------------------------------------
    @staticmethod
    def _q(x):
        return np.exp(x[0]), np.expm1(x[1])

    def _F(self, x):
        ev = self.evaluate(*self._q(x))
        return ev, (None if ev is None else ev.grad)

    def _jacobian(self, x, h=1e-6):
        J = np.empty((2, 2))
        for j in range(2):
            e = np.zeros(2)
            e[j] = h
            _, Fp = self._F(x + e)
            _, Fm = self._F(x - e)
            if Fp is None or Fm is None:  # at the edge of the feasible set: one-sided
                _, F0 = self._F(x)
                if Fp is not None:
                    J[:, j] = (Fp - F0) / h
                elif Fm is not None:
                    J[:, j] = (F0 - Fm) / h
                else:
                    return None
            else:
                J[:, j] = (Fp - Fm) / (2 * h)
        return J

    def solve(self, start=(1.0, 0.0), *, tol, maxiter, polish=2):
        """Root of the gradient by damped Newton steps in x = (log Q0, log(1 + Q1)).

        The Jacobian is a central difference of the analytic gradient (4 O(P) evaluations).
        A step is halved until the point is feasible and ||grad|| decreases. After the
        relative gradient reaches ``tol``, up to ``polish`` more steps run while it keeps
        shrinking (the answer is then exact to rounding, not just to ``tol``).

        Returns (Q0, Q1, NonCentralEval, iterations, evaluations, message).
        """
        Q0, Q1 = float(start[0]), float(start[1])
        x = np.array([np.log(Q0), np.log1p(Q1)])
        ev = self.evaluate(Q0, Q1)
        nev = 1
        if ev is None:
            raise ValueError(f"the starting point (Q0, Q1) = ({Q0:g}, {Q1:g}) is infeasible "
                             "(A = T I + K_R not positive definite)")
        it = 0
        extra = 0
        message = "maximum number of iterations reached"
        while it < maxiter:
            if ev.rel <= tol:
                if extra >= polish:
                    break
                extra += 1
            J = self._jacobian(x)
            nev += 4
            step = None
            if J is not None:
                try:
                    step = -np.linalg.solve(J, ev.grad)
                except np.linalg.LinAlgError:
                    step = None
            if step is None or not np.all(np.isfinite(step)):
                message = "singular Jacobian"
                break
            big = np.max(np.abs(step))
            t = 1.0 if big <= 2.0 else 2.0 / big  # at most a factor e^2 per step
            f0 = np.linalg.norm(ev.grad)
            accepted = False
            for _ in range(50):
                xn = x + t * step
                evn = self.evaluate(*self._q(xn))
                nev += 1
                if evn is not None and np.linalg.norm(evn.grad) < (1 - 1e-4 * t) * f0:
                    accepted = True
                    break
                t *= 0.5
            if not accepted:
                message = ("no step reduces the gradient (its rounding floor)" if ev.rel <= tol
                           else "line search failed to reduce the gradient")
                break
            it += 1
            x, ev = xn, evn
        else:
            if ev.rel <= tol:
                message = "converged"
        if ev.rel <= tol:
            message = "converged: root of the gradient (damped Newton from (1, 0))"
        Q0, Q1 = self._q(x)
        return float(Q0), float(Q1), ev, it, nev, message
