"""A small dense BFGS driver for the matrix actions (CNN, LCN, nested deep FC).

Why not ``scipy.optimize.minimize``: the stopping rule here is the *relative* gradient of
the action in Q (not in the solver's coordinates), infeasible trial points (A not
positive definite at T = 0) must count as +inf rather than errors, and near the saddle the
action changes by less than its rounding error, where SciPy's line search reports
"precision loss" although the gradient still shrinks. The problems have at most a few
hundred unknowns, so a dense inverse-Hessian approximation is cheap next to one action
evaluation (a P x P Cholesky and two passes over the local kernel).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["bfgs", "OptResult"]

#: Above this many unknowns ``bfgs`` keeps a limited-memory model (dense n x n costs O(n^2)
#: memory and time per step: 1.3 GB at the 12,880 unknowns of a 160 x 160 Q).
DENSE_MAX = 2000


class _DenseH:
    """The dense BFGS inverse-Hessian approximation."""

    def __init__(self, h0):
        self.h0 = h0
        self.reset()

    def reset(self):
        self.H = np.diag(self.h0)
        self.fresh = True  # still the initial guess (rescale after the first good step)

    def apply(self, g):
        return self.H @ g

    def update(self, s, yv, sy):
        if self.fresh:
            # Shanno-Phua scaling of the initial guess before the first update
            self.H = np.eye(s.size) * (sy / float(yv @ yv))
            self.fresh = False
        rho = 1.0 / sy
        Hy = self.H @ yv
        self.H = (self.H - rho * (np.outer(s, Hy) + np.outer(Hy, s))
                  + (rho * rho * float(yv @ Hy) + rho) * np.outer(s, s))


class _LimitedH:
    """L-BFGS two-loop recursion over the last ``m`` pairs (same initial scaling)."""

    def __init__(self, h0, m=20):
        self.h0, self.m = h0, m
        self.reset()

    def reset(self):
        self.S, self.Y = [], []
        self.gamma = None
        self.fresh = True

    def apply(self, g):
        q = g.copy()
        alphas = []
        for s, yv in zip(reversed(self.S), reversed(self.Y)):
            a = float(s @ q) / float(s @ yv)
            alphas.append(a)
            q -= a * yv
        r = q * (self.h0 if self.gamma is None else self.gamma)
        for (s, yv), a in zip(zip(self.S, self.Y), reversed(alphas)):
            b = float(yv @ r) / float(s @ yv)
            r += (a - b) * s
        return r

    def update(self, s, yv, sy):
        self.gamma = sy / float(yv @ yv)
        self.fresh = False
        self.S.append(s)
        self.Y.append(yv)
        if len(self.S) > self.m:
            self.S.pop(0)
            self.Y.pop(0)


@dataclass
class OptResult:
    x: np.ndarray
    f: float
    g: np.ndarray
    rel: float
    iterations: int
    evaluations: int
    converged: bool
    message: str
    H: object = None  # the final dense inverse-Hessian model (None for L-BFGS)


def bfgs(value, gradient, x0, *, tol, maxiter, h0=None, max_step=1.0, stall=100, H0=None,
         callback=None):
    """Minimise f by BFGS with a backtracking Armijo line search.

    Parameters
    ----------
    value : callable x -> float
        The objective; +inf (or NaN, treated as +inf) marks an infeasible point.
    gradient : callable x -> (g, rel)
        Gradient in x at the last point passed to ``value`` and the relative gradient
        norm used for the stopping rule (``rel <= tol``).
    x0 : ndarray
    tol : float
    maxiter : int
    h0 : ndarray, optional
        Diagonal of the initial inverse Hessian (default: identity).
    max_step : float
        Largest infinity-norm of one step in x (keeps exp-parametrised entries finite).
    stall : int
        Stop (unconverged) when the best relative gradient has not halved in this many
        iterations: the gradient has reached the rounding noise of its own evaluation
        (e.g. a nearly singular A at tiny T), and more iterations only cost time.
    H0 : ndarray (n, n), optional
        A whole initial inverse Hessian (e.g. carried over from a smaller problem), used
        as it is (no Shanno-Phua rescaling); a restart after lost positive definiteness
        falls back to ``h0``.
    callback : callable, optional
        ``callback(iteration, rel, evaluations)`` after every iteration.
    """
    x = np.array(x0, dtype=float)
    n = x.size
    h0v = np.ones(n) if h0 is None else np.asarray(h0, float)
    model = _DenseH(h0v) if n <= DENSE_MAX else _LimitedH(h0v)
    if H0 is not None and n <= DENSE_MAX:
        model.H = np.array(H0, dtype=float)
        model.fresh = False
    f = value(x)
    nev = 1
    if not np.isfinite(f):
        return OptResult(x, f, np.full_like(x, np.nan), np.inf, 0, nev, False,
                         "the starting point is infeasible (A not positive definite)")
    g, rel = gradient(x)
    it = 0
    message = "maximum number of iterations reached"
    converged = rel <= tol
    if converged:
        message = "converged"
    best, best_it = rel, 0
    while not converged and it < maxiter:
        it += 1
        p = -model.apply(g)
        slope = float(g @ p)
        if not slope < 0:  # H lost positive definiteness to rounding: restart
            model.reset()
            p = -model.apply(g)
            slope = float(g @ p)
        big = np.max(np.abs(p))
        t = 1.0 if big <= max_step else max_step / big
        accepted = False
        gn = None
        for _ in range(60):
            xn = x + t * p
            fn = value(xn)
            nev += 1
            if np.isfinite(fn) and fn <= f + 1e-4 * t * slope:
                accepted = True
            elif np.isfinite(fn) and fn - f <= 1e-13 * max(1.0, abs(f)):
                # At the saddle S is flat to rounding: accept when the gradient shrinks.
                gn_try, reln_try = gradient(xn)
                if reln_try < rel:
                    accepted = True
                    gn, reln = gn_try, reln_try
            if accepted:
                break
            if np.isfinite(fn):
                # quadratic interpolation of the step, kept inside [0.1 t, 0.5 t]
                denom = 2.0 * (fn - f - t * slope)
                tq = -slope * t * t / denom if denom > 0 else 0.5 * t
                t = min(max(tq, 0.1 * t), 0.5 * t)
            else:
                t *= 0.25
        if not accepted:
            if not model.fresh:  # a stale curvature model can point badly: restart once
                model.reset()
                value(x)
                nev += 1
                continue
            value(x)  # leave the evaluator's cache at x
            nev += 1
            message = "line search failed to decrease the action"
            break
        if gn is None:
            gn, reln = gradient(xn)
        s = xn - x
        yv = gn - g
        sy = float(s @ yv)
        if sy > 1e-12 * np.linalg.norm(s) * np.linalg.norm(yv):
            model.update(s, yv, sy)
        x, f, g, rel = xn, fn, gn, reln
        if callback is not None:
            callback(it, rel, nev)
        if rel <= tol:
            converged = True
            message = "converged"
        elif rel < 0.5 * best:
            best, best_it = rel, it
        elif it - best_it >= stall:
            message = (f"stalled: the relative gradient has not halved in {stall} iterations "
                       "(likely its rounding-noise floor; an ill-conditioned A, e.g. T tiny "
                       "against a rank-deficient kernel)")
            break
    return OptResult(x, f, g, rel, it, nev, converged, message,
                     model.H if isinstance(model, _DenseH) else None)


def cholesky_point(L0, x, tril, on_diag):
    """The SPD point of the Cholesky parametrisation used by the matrix solvers:
    Q = M M^T with M = L0 Lt, Lt lower triangular with entries x (its diagonal stored as
    logs). Returns ``(Q, M, log det Q)``; Q is symmetrised exactly."""
    n = L0.shape[0]
    Lt = np.zeros((n, n))
    Lt[tril] = x
    Lt[np.diag_indices(n)] = np.exp(np.diag(Lt))
    M = L0 @ Lt
    Q = M @ M.T
    return (Q + Q.T) / 2, M, 2 * np.sum(np.log(np.diag(L0)) + x[on_diag])
