r"""FC with D outputs (docs/theory-beyond-odd.md 2.1): a D x D SPD order parameter on the eigenbasis
of the kernel.

With K' = U diag(l) U^T (K' = K / lambda1 for one hidden layer, K^{(L)} for the vanilla deep
FC), Yt = U^T Y (P x D) and u = Q^{1/L}:

.. math::

    S(Q) = L \operatorname{tr} Q^{1/L} - \log\det Q + \frac{\alpha}{P}\sum_k
           \left[\log\det A_k + Yt_k^T A_k^{-1} Yt_k\right], \qquad A_k = T I_D + l_k Q,

    \frac{\partial S}{\partial Q} = Q^{1/L - 1} - Q^{-1}
        + \frac{\alpha}{P}\sum_k l_k\left[A_k^{-1} - b_k b_k^T\right],\quad b_k = A_k^{-1} Yt_k .

The P D x P D matrix T + Q (x) K' is never formed. With Q = V diag(q) V^T every A_k is
diagonal in the basis V, A_k = V diag(T + l_k q) V^T, so with Yv = Yt V one evaluation costs
one D x D eigendecomposition and O(P D^2) (the products Yt V and R^T diag(l) R,
R = Yv / (T + l q)).

At T = 0 and L = 1 the saddle is closed-form: W = Y^T K'^{-1} Y,
Q = ((1 - alpha) I + ((1 - alpha)^2 I + 4 alpha W / P)^{1/2}) / 2.

Solver: BFGS in a Cholesky parametrisation (Q = L0 M M^T L0^T, M lower triangular with
log-diagonal, L0 the factor of the start) with the analytic gradient, run to tol / 1000;
where it stalls short of tol, damped Newton polish steps with a finite-difference Hessian of
the analytic gradient (D(D+1)/2 unknowns).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._optim import bfgs

__all__ = ["MultiOutputProblem", "closed_form_T0"]


@dataclass
class MultiEval:
    S: float
    grad: np.ndarray   # (D, D) dS/dQ
    rel: float
    q: np.ndarray      # eigenvalues of Q
    V: np.ndarray      # eigenvectors of Q
    R: np.ndarray      # (P, D) Yv / (T + l q)


def _sym(A):
    return (A + A.T) / 2


class MultiOutputProblem:
    """S(Q), dS/dQ and the saddle for a fixed spectrum ``lam`` (P,) and ``Yt`` (P, D)."""

    def __init__(self, lam, Yt, *, alpha, T, L=1):
        self.lam = np.asarray(lam, float)
        self.Yt = np.asarray(Yt, float)
        self.P, self.D = self.Yt.shape
        self.c = alpha / self.P
        self.T = float(T)
        self.L = int(L)

    def evaluate(self, Q, need_grad=True):
        """A MultiEval at the symmetric matrix Q, or None when Q or some A_k is not
        positive definite."""
        Q = _sym(np.asarray(Q, float))
        q, V = np.linalg.eigh(Q)
        if not (q[0] > 0 and np.all(np.isfinite(q))):
            return None
        den = self.T + np.multiply.outer(self.lam, q)  # (P, D)
        if not np.all(den > 0):
            return None
        Yv = self.Yt @ V
        R = Yv / den
        data = float(np.log(den).sum() + (Yv * R).sum())
        L = self.L
        prior = L * float((q ** (1.0 / L)).sum()) - float(np.log(q).sum())
        S = prior + self.c * data
        if not need_grad:
            return MultiEval(S, None, np.nan, q, V, R)
        g_prior = q ** (1.0 / L - 1.0) - 1.0 / q
        diag_part = (self.lam[:, None] / den).sum(0)            # sum_k l_k / (T + l_k q_a)
        RlR = R.T @ (self.lam[:, None] * R)                      # sum_k l_k r_k r_k^T
        G = np.diag(diag_part) - RlR                              # in the basis V
        grad = _sym(V @ (np.diag(g_prior) + self.c * G) @ V.T)
        mag = (np.linalg.norm(q ** (1.0 / L - 1.0)) + np.linalg.norm(1.0 / q)
               + self.c * (np.linalg.norm(diag_part) + np.linalg.norm(RlR)))
        return MultiEval(S, grad, float(np.linalg.norm(grad) / mag), q, V, R)

    def action(self, Q):
        ev = self.evaluate(Q, need_grad=False)
        return np.inf if ev is None else ev.S

    def solve(self, Q_start, *, tol, maxiter, polish=3):
        """Saddle (minimum) of S from ``Q_start``.

        Returns (Q, MultiEval, iterations, evaluations, message)."""
        D = self.D
        L0 = np.linalg.cholesky(_sym(np.asarray(Q_start, float)))
        tril = np.tril_indices(D)
        on_diag = tril[0] == tril[1]
        state = {}

        def unpack(x):
            Mt = np.zeros((D, D))
            Mt[tril] = x
            Mt[np.diag_indices(D)] = np.exp(np.diag(Mt))
            M = L0 @ Mt
            return _sym(M @ M.T), M

        def value(x):
            Q, M = unpack(x)
            ev = self.evaluate(Q)
            state.clear()
            state.update(x=x.copy(), ev=ev, M=M, Q=Q)
            return np.inf if ev is None or not np.isfinite(ev.S) else ev.S

        def gradient(x):
            if state.get("x") is None or not np.array_equal(state["x"], x):
                value(x)
            ev, M = state["ev"], state["M"]
            Dm = 2.0 * L0.T @ ev.grad @ M
            gx = Dm[tril]
            gx[on_diag] *= np.exp(x[on_diag])  # d M_ii / d x_ii = M_ii
            return gx, ev.rel

        x0 = np.zeros(len(tril[0]))
        # BFGS to a tighter target than tol, then Newton polish: the reported Q should be
        # exact to rounding, not merely to tol.
        res = bfgs(value, gradient, x0, tol=tol * 1e-3, maxiter=maxiter)
        x = res.x
        value(x)
        ev = state["ev"]
        if ev is None:
            return unpack(x)[0], None, res.iterations, res.evaluations, res.message
        nev = res.evaluations + 1
        its = res.iterations
        message = res.message
        n = x.size
        # Newton polish only where BFGS stopped short of tol (a stall at its rounding floor);
        # a converged BFGS run is already at tol / 1000
        for _ in range(polish if maxiter > 0 else 0):
            g0, rel0 = gradient(x)
            if rel0 <= tol:
                break
            h = 1e-6
            H = np.empty((n, n))
            for j in range(n):
                e = np.zeros(n)
                e[j] = h
                gp, _ = gradient(x + e)
                gm, _ = gradient(x - e)
                H[:, j] = (gp - gm) / (2 * h)
            nev += 2 * n
            try:
                step = -np.linalg.solve(_sym(H), g0)
            except np.linalg.LinAlgError:
                break
            t, ok = 1.0, False
            for _ in range(20):
                value(x + t * step)
                nev += 1
                evn = state["ev"]
                if evn is not None and evn.rel < rel0:
                    ok = True
                    break
                t *= 0.5
            if not ok:
                break
            x = x + t * step
            its += 1
        value(x)
        ev = state["ev"]
        if ev.rel <= tol:
            message = "converged"
        return state["Q"], ev, its, nev, message


def closed_form_T0(lam, Yt, alpha):
    """Q at T = 0, L = 1: ((1 - a) I + ((1 - a)^2 I + 4 a W / P)^{1/2}) / 2, W = Yt^T
    diag(1/l) Yt = Y^T K'^{-1} Y."""
    P, D = Yt.shape
    W = _sym(Yt.T @ (Yt / lam[:, None]))
    Mx = (1 - alpha) ** 2 * np.eye(D) + 4 * alpha * W / P
    s, E = np.linalg.eigh(_sym(Mx))
    root = (E * np.sqrt(np.maximum(s, 0))) @ E.T
    return _sym(((1 - alpha) * np.eye(D) + root) / 2)
