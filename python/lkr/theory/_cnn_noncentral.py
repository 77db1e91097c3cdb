r"""The non-central CNN/LCN action (docs/theory-beyond-odd.md section 1.2). EXPERIMENTAL: a derivation with
no published implementation; the tests hold it against Langevin sampling of ReLU CNNs.

With the mean patch activations m_i^mu = E[sigma(h)], h ~ N(0, C_ii^{mu mu}), and
M_ij^{mu nu} = m_i^mu m_j^nu, two symmetric Np x Np matrices, Qbar (the order parameter)
and Q (its conjugate), S_ = (I + Q)^{-1}:

.. math::

    K_R = \frac{1}{\lambda_1 N_p}\sum_{ij}\left[\bar Q_{ij}(K_{ij} - M_{ij})
          + (S_-)_{ij} M_{ij}\right],

    S(\bar Q, Q) = -\operatorname{Tr}(\bar Q Q) + \log\det(I + Q)
                   + \frac{\alpha}{P}\left[\log\det A + y^T A^{-1} y\right],

    \partial S/\partial \bar Q = -Q + c\,G_c(B), \qquad
    \partial S/\partial Q = -\bar Q + S_- - c\,S_- G_m(B) S_-, \qquad
    c = \frac{\alpha}{P \lambda_1 N_p},

G_c(B)_ij = sum B_{mu nu}(K_ij - M_ij)^{mu nu}, G_m(B)_ij = m_i^T B m_j (both from one
call of the operator). LCN: Qbar and Q diagonal. Infinite width: (Qbar, Q) = (I, 0). With
M = 0 the root has Qbar = (I + Q)^{-1} and Qbar is the odd CNN saddle. Np = 1 is the FC
action of section 1.1.

The saddle is a root of the gradient (S is unbounded: never minimised). The stationarity
conditions give the fixed point Q = c G_c(B), Qbar = S_ - c S_ G_m(B) S_ (S_ from the new
Q), iterated from (I, 0) with Anderson acceleration (:mod:`._anderson`). Where that
iteration does not converge (large alpha: the map overshoots), damped Newton steps on the
gradient take over, in coordinates that keep every iterate feasible (Qbar = L1 L1^T and
(I + Q)^{-1} = L2 L2^T with log-diagonal Cholesky factors: K - M and M are PSD, so A is
positive definite for T > 0), with a forward-difference Jacobian of the analytic gradient
(one evaluation per unknown). Converged means
the relative gradient ||grad|| / (||Q|| + ||c G_c|| + ||Qbar|| + ||S_|| + ||c S_ G_m S_||)
is at most ``tol``.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from .. import _linalg
from ._anderson import anderson_root
from .result import Solution

__all__ = ["evaluate", "action", "gradient", "solve"]


def _restrict(theory, G):
    mask = theory._block_mask()
    return G if mask is None else np.where(mask, G, 0.0)


def evaluate(theory, Qbar, Qc):
    """S, the gradient pair and the pieces of the fixed point at (Qbar, Qc), or None where
    I + Qc or A is not positive definite."""
    n = Qbar.shape[0]
    I = np.eye(n)
    try:
        L = sla.cholesky(I + Qc, lower=True)
    except np.linalg.LinAlgError:
        return None
    Linv = sla.solve_triangular(L, I, lower=True)
    Sm = Linv.T @ Linv
    Sm = (Sm + Sm.T) / 2
    logdet_IQ = 2.0 * float(np.sum(np.log(np.diag(L))))
    try:
        data, state = theory._data(theory._to_dev(Qbar), theory._to_dev(Sm - Qbar))
    except _linalg.NotPositiveDefiniteError:
        return None
    Gc, Gm = theory._G(state, centred=True)
    Gc, Gm = _restrict(theory, Gc), _restrict(theory, Gm)
    c = theory._c()
    SGS = Sm @ Gm @ Sm
    gbar = -Qc + c * Gc
    gq = -Qbar + Sm - c * SGS
    S = -float(np.sum(Qbar * Qc)) + logdet_IQ + data
    mag = (np.linalg.norm(Qc) + c * np.linalg.norm(Gc) + np.linalg.norm(Qbar)
           + np.linalg.norm(Sm) + c * np.linalg.norm(SGS))
    rel = float(np.sqrt(np.sum(gbar**2) + np.sum(gq**2)) / max(mag, 1e-300))
    return dict(S=S, gbar=gbar, gq=gq, rel=rel, Gc=Gc, Gm=Gm, c=c)


def _pair(theory, Q, conjugate):
    Qbar = theory._check_Q(Q, "Q", definite=False)
    Qc = theory._check_Q(conjugate, "conjugate", definite=False)
    return Qbar, Qc


def action(theory, Q, conjugate):
    ev = evaluate(theory, *_pair(theory, Q, conjugate))
    if ev is None:
        raise ValueError("the non-central action is undefined here: I + conjugate or "
                         "A = T I + K_R is not positive definite")
    return ev["S"]


def gradient(theory, Q, conjugate):
    ev = evaluate(theory, *_pair(theory, Q, conjugate))
    if ev is None:
        raise ValueError("the non-central action is undefined here: I + conjugate or "
                         "A = T I + K_R is not positive definite")
    return ev["gbar"], ev["gq"]


def solve(theory, Q0, tol, maxiter):
    n = theory._n
    I = np.eye(n)
    if theory._diagonal:
        idx = (np.arange(n), np.arange(n))
    else:
        idx = np.triu_indices(n)
    k = len(idx[0])

    def pack(Qbar, Qc):
        return np.concatenate([Qbar[idx], Qc[idx]])

    def unpack(x):
        out = []
        for part in (x[:k], x[k:]):
            M = np.zeros((n, n))
            M[idx] = part
            M = M + np.triu(M, 1).T
            out.append(M)
        return out

    def phi(x):
        Qbar, Qc = unpack(x)
        ev = evaluate(theory, Qbar, Qc)
        if ev is None:
            return None
        Qc_new = ev["c"] * ev["Gc"]
        Qc_new = (Qc_new + Qc_new.T) / 2
        try:
            S_new = np.linalg.inv(I + Qc_new)
        except np.linalg.LinAlgError:
            return None
        Qbar_new = S_new - ev["c"] * S_new @ ev["Gm"] @ S_new
        Qbar_new = (Qbar_new + Qbar_new.T) / 2
        ev["Qbar"], ev["Qc"] = Qbar, Qc
        return pack(Qbar_new, Qc_new), ev["rel"], ev

    start = "infinite width (I, 0)"
    x0 = pack(I, np.zeros((n, n)))
    if Q0 is not None:
        # a warm start from a neighbouring saddle's Qbar; its conjugate from the odd
        # relation Qbar = (I + Q)^{-1}
        Qs = theory._check_Q(Q0)
        xs = pack(Qs, np.linalg.inv(Qs) - I)
        if phi(xs) is not None:
            x0, start = xs, "Q0"
    res = anderson_root(phi, x0, tol=tol, maxiter=maxiter)
    if not res.converged:
        best = res.state if res.state is not None else None
        start_pair = ((best["Qbar"], best["Qc"]) if best is not None and best.get("Qbar")
                      is not None else (I, np.zeros((n, n))))
        res = _newton(theory, start_pair, tol, maxiter, res)
    ev = res.state
    gn = float(np.sqrt(np.sum(ev["gbar"]**2) + np.sum(ev["gq"]**2)))
    return Solution(Q=ev["Qbar"], conjugate=ev["Qc"], action=ev["S"], grad_norm=gn,
                    rel_grad_norm=res.rel, iterations=res.iterations,
                    converged=res.converged, tol=tol, evaluations=res.evaluations,
                    message=res.message,
                    extra=theory._extra(start=start, action="non-central (Qbar, Q), "
                                        "experimental"))


def _newton(theory, start, tol, maxiter, prev):
    """Damped Newton on the gradient in log-Cholesky coordinates of (Qbar, (I + Q)^{-1})."""
    n = theory._n
    I = np.eye(n)
    if theory._diagonal:
        tri = (np.arange(n), np.arange(n))
    else:
        tri = np.tril_indices(n)
    k = len(tri[0])
    on_diag = tri[0] == tri[1]
    idx = (tri[1], tri[0])  # the same entries of the symmetric gradients (upper triangle)

    def factor(x):
        L = np.zeros((n, n))
        L[tri] = x
        L[np.diag_indices(n)] = np.exp(np.diag(L))
        return L

    def coords(Msym):
        L = np.linalg.cholesky(Msym)
        x = L[tri].copy()
        x[on_diag] = np.log(x[on_diag])
        return x

    def point(x):
        L1, L2 = factor(x[:k]), factor(x[k:])
        Qbar = L1 @ L1.T
        Sm = L2 @ L2.T
        return Qbar, np.linalg.inv(Sm) - I

    def resid(x):
        Qbar, Qc = point(x)
        ev = evaluate(theory, (Qbar + Qbar.T) / 2, (Qc + Qc.T) / 2)
        if ev is None:
            return None, None
        ev["Qbar"], ev["Qc"] = Qbar, Qc
        return np.concatenate([ev["gbar"][idx], ev["gq"][idx]]), ev

    Qbar0, Qc0 = start
    try:
        x = np.concatenate([coords(Qbar0), coords(np.linalg.inv(I + Qc0))])
    except np.linalg.LinAlgError:  # the fixed point left the PSD cone: restart at (I, 0)
        x = np.zeros(2 * k)
    r, ev = resid(x)
    if r is None:
        x = np.zeros(2 * k)
        r, ev = resid(x)
    nev = prev.evaluations + 1
    it = 0
    message = "maximum number of iterations reached"
    while ev["rel"] > tol and it < maxiter:
        it += 1
        J = np.empty((r.size, x.size))
        for j in range(x.size):
            h = 1e-6 * max(1.0, abs(x[j]))
            xp_ = x.copy()
            xp_[j] += h
            rj, _ = resid(xp_)
            nev += 1
            if rj is None:
                xp_[j] -= 2 * h
                rj, _ = resid(xp_)
                nev += 1
                h = -h
            J[:, j] = (rj - r) / h
        step = np.linalg.lstsq(J, -r, rcond=None)[0]
        big = np.max(np.abs(step))
        t = 1.0 if big <= 2.0 else 2.0 / big
        f0 = np.linalg.norm(r)
        accepted = False
        for _ in range(40):
            rn, evn = resid(x + t * step)
            nev += 1
            if rn is not None and np.linalg.norm(rn) < (1 - 1e-4 * t) * f0:
                accepted = True
                break
            t *= 0.5
        if not accepted:
            message = "damped Newton: no step reduces the gradient"
            break
        x, r, ev = x + t * step, rn, evn
    converged = ev["rel"] <= tol
    if converged:
        message = "converged: root of the gradient (damped Newton after the fixed point)"
    from ._anderson import RootResult

    return RootResult(x, ev, float(ev["rel"]), prev.iterations + it, nev, converged, message)
