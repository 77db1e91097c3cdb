r"""The scalar saddle on a diagonalised kernel (FC and vanilla deep FC).

With K' = U diag(lam) U^T and z = U^T y, every term of the action is a sum over the P
eigenvalues, so each evaluation is O(P):

.. math::

    S(q) = L (q - \log q) + \frac{\alpha}{P}\Big[\sum_k \frac{z_k^2}{T + u\,\lambda_k}
           + \sum_k \log(T + u\,\lambda_k)\Big], \qquad u = q^L .

(L = 1 is the FC action with K' = K / lambda1.) The saddle is found as a root of
dS/d(log q) / L on a grid in log q that brackets every sign change, refined by Brent's
method; of several roots the one with the lowest action is returned, so the result is
the global minimum of S over q > 0.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

__all__ = ["ScalarProblem"]


class ScalarProblem:
    """S(q) and its derivatives for fixed spectrum ``lam``, weights ``z2``, T, alpha, L."""

    def __init__(self, lam, z2, *, alpha, T, L=1):
        self.lam = np.asarray(lam, dtype=float)
        self.z2 = np.asarray(z2, dtype=float)
        self.P = self.lam.size
        self.c = alpha / self.P
        self.T = float(T)
        self.L = int(L)

    def _d(self, u):
        return self.T + np.multiply.outer(u, self.lam)  # (..., P)

    def data(self, u):
        """f(u) = sum z^2/d + sum log d, d = T + u lam."""
        d = self._d(u)
        return (self.z2 / d).sum(-1) + np.log(d).sum(-1)

    def data_prime_terms(self, u):
        """u f'(u) = sum (u lam / d - z^2 u lam / d^2), and the sum of the magnitudes."""
        d = self._d(u)
        r = np.multiply.outer(u, self.lam) / d
        pos = r.sum(-1)
        neg = (self.z2 * r / d).sum(-1)
        return pos - neg, pos + neg

    def action(self, q):
        q = np.asarray(q, dtype=float)
        return self.L * (q - np.log(q)) + self.c * self.data(q ** self.L)

    def phi(self, s):
        """dS/ds / L at q = e^s: (q - 1) + c u f'(u)."""
        q = np.exp(s)
        uf, _ = self.data_prime_terms(q ** self.L)
        return (q - 1.0) + self.c * uf

    def gradient(self, q):
        """dS/dq_l for every layer at q_l = q (all equal), and the relative norm
        |dS/dq| / (1 + 1/q + c |u f'(u)| / q) (the sizes of the terms that cancel)."""
        uf, mag = self.data_prime_terms(np.asarray(q, float) ** self.L)
        g = 1.0 - 1.0 / q + self.c * uf / q
        rel = abs(g) / (1.0 + 1.0 / q + self.c * mag / q)
        return float(g), float(rel)

    def solve(self, *, xtol=1e-15, smin=-40.0, smax=40.0, n=801, maxiter=200):
        """Global minimiser q* over q > 0.

        ``maxiter`` caps Brent's iterations per bracketed root (0: the bracket's midpoint,
        which is then reported unconverged by the caller's gradient check).

        Returns (q, action, evaluations, brent_iterations): evaluations of dS/dlog q in
        all (grid and refinement), and Brent iterations of the chosen root."""
        s = np.linspace(smin, smax, n)
        # grid evaluations in chunks keep memory O(chunk * P)
        chunks = np.array_split(s, max(1, n * self.P // 2_000_000))
        vals = np.concatenate([self.phi(c) for c in chunks])
        nev = n
        roots, iters = [], []
        sign = np.sign(vals)
        for k in np.nonzero(sign[:-1] * sign[1:] <= 0)[0]:
            a, b = s[k], s[k + 1]
            if vals[k] == 0:
                roots.append(a)
                iters.append(0)
                continue
            if vals[k + 1] == 0:
                continue  # picked up as the left end of the next interval
            if maxiter == 0:
                roots.append(0.5 * (a + b))
                iters.append(0)
                continue
            r, info = brentq(self.phi, a, b, xtol=xtol, rtol=4 * np.finfo(float).eps,
                             full_output=True, maxiter=maxiter, disp=False)
            nev += info.function_calls
            roots.append(r)
            iters.append(info.iterations)
        if not roots:
            raise ArithmeticError(
                f"no saddle of the scalar action for log q in [{smin}, {smax}] (dS/dlog q "
                f"ranges over [{vals.min():.3g}, {vals.max():.3g}]); the problem is badly scaled")
        qs = np.exp(np.array(roots))
        acts = self.action(qs)
        best = int(np.argmin(acts))
        return float(qs[best]), float(acts[best]), nev, int(iters[best])
