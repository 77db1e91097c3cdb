r"""Root of a saddle's gradient by an accelerated fixed-point iteration (docs/theory-beyond-odd.md section 5).

The non-central CNN/LCN saddle has stationarity conditions that read as a fixed point
x = Phi(x) (each order parameter expressed through the conjugate's gradient term). The
iteration x <- Phi(x) is accelerated by Anderson mixing (type II, the last ``depth``
residuals, least squares with Tikhonov regularisation); a trial point that is infeasible
(Phi undefined) or raises the residual by more than a factor 2 is replaced by the plain
step, then by damped steps x + t (Phi(x) - x). Convergence is judged by the caller's
relative gradient, never by S (S is unbounded at a saddle). Where it stalls,
:func:`damped_newton` finishes from its best point.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["anderson_root", "damped_newton", "RootResult"]


@dataclass
class RootResult:
    x: np.ndarray
    state: Any
    rel: float
    iterations: int
    evaluations: int
    converged: bool
    message: str


def anderson_root(evaluate, x0, *, tol, maxiter, depth=6, reg=1e-10):
    """Iterate x <- Phi(x) with Anderson acceleration.

    Parameters
    ----------
    evaluate : callable x -> (phi, rel, state) or None
        Phi(x), the relative gradient at x and anything the caller wants back; None where x
        is infeasible.
    x0 : ndarray
        A feasible start (the infinite-width point).
    tol : float
        Stop when rel <= tol.
    maxiter : int
    """
    x = np.array(x0, dtype=float)
    ev = evaluate(x)
    nev = 1
    if ev is None:
        # evaluate() gives None both where A is not positive definite and where its map
        # is undefined (the odd map (I + c G)^{-1} far from the saddle): say both
        raise ValueError("the starting point of the saddle iteration is infeasible (A = T I "
                         "+ K_R not positive definite, or the fixed-point map undefined there)")
    phi, rel, state = ev
    F_hist, G_hist = [], []
    it = 0
    message = "maximum number of iterations reached"
    while rel > tol and it < maxiter:
        it += 1
        f = phi - x
        F_hist.append(f)
        G_hist.append(phi)
        if len(F_hist) > depth + 1:
            F_hist.pop(0)
            G_hist.pop(0)
        cand = [phi]
        if len(F_hist) > 1:
            dF = np.array([F_hist[k + 1] - F_hist[k] for k in range(len(F_hist) - 1)]).T
            dG = np.array([G_hist[k + 1] - G_hist[k] for k in range(len(G_hist) - 1)]).T
            A = dF.T @ dF
            A += reg * np.trace(A) * np.eye(A.shape[0]) + 1e-300 * np.eye(A.shape[0])
            try:
                gamma = np.linalg.solve(A, dF.T @ f)
                cand.insert(0, phi - dG @ gamma)
            except np.linalg.LinAlgError:
                pass
        fnorm = np.linalg.norm(f)
        accepted = False
        for xn in cand + [x + t * f for t in (0.5, 0.25, 0.1)]:
            evn = evaluate(xn)
            nev += 1
            if evn is None:
                continue
            if np.linalg.norm(evn[0] - xn) <= 2.0 * fnorm or xn is cand[-1] and evn[1] < rel:
                accepted = True
                break
        if not accepted:
            message = "no feasible step reduces the residual"
            break
        if xn is not cand[0] and len(cand) > 1:
            F_hist.clear()  # the mixing misled: start its history afresh
            G_hist.clear()
        x = xn
        phi, rel, state = evn
    converged = rel <= tol
    if converged:
        message = "converged: root of the gradient (Anderson-accelerated fixed point from " \
                  "the infinite-width point)"
    return RootResult(x, state, float(rel), it, nev, converged, message)


def damped_newton(resid, x, prev, *, tol, maxiter, max_step, done, first=None):
    """Damped Newton on a gradient, with a forward-difference Jacobian, from ``x``.

    ``resid(x)`` returns ``(r, ev)``: the gradient's free entries and the evaluation dict
    (with ``"rel"``, the relative gradient), or ``(None, None)`` where x is infeasible (a
    difference then goes the other way). A step longer than ``max_step`` (max norm) is
    shortened to it, then halved until |r| falls by 1e-4 of the step (at most 40 halvings).
    ``prev`` is the :class:`RootResult` this continues (its iterations and evaluations are
    counted on); ``done`` is the message on convergence; ``first``: ``resid(x)`` when the
    caller has it already. Returns ``prev`` when x itself is infeasible.
    """
    r, ev = resid(x) if first is None else first
    if r is None:
        return prev
    nev, it = prev.evaluations + 1, 0
    message = "maximum number of iterations reached"
    while ev["rel"] > tol and it < maxiter:
        it += 1
        J = np.empty((r.size, x.size))
        for j in range(x.size):
            h = 1e-6 * max(1.0, abs(x[j]))
            z = x.copy()
            z[j] += h
            rj, _ = resid(z)
            nev += 1
            if rj is None:
                z[j] -= 2 * h
                rj, _ = resid(z)
                nev += 1
                h = -h
            J[:, j] = (rj - r) / h
        step = np.linalg.lstsq(J, -r, rcond=None)[0]
        big = np.max(np.abs(step))
        lam = 1.0 if big <= max_step else max_step / big
        f0 = np.linalg.norm(r)
        for _ in range(40):
            rn, evn = resid(x + lam * step)
            nev += 1
            if rn is not None and np.linalg.norm(rn) < (1 - 1e-4 * lam) * f0:
                break
            lam *= 0.5
        else:
            message = "damped Newton: no step reduces the gradient"
            break
        x, r, ev = x + lam * step, rn, evn
    converged = ev["rel"] <= tol
    if converged:
        message = done
    return RootResult(x, ev, float(ev["rel"]), prev.iterations + it, nev, converged, message)
