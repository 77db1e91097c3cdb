r"""EXPERIMENTAL: the finite-filter action of a ReLU CNN, ``CNNTheory(..., activation="relu",
filter_norm="exact")`` (docs/validity.md section 4).

ReLU is positively homogeneous, sigma(s u) = s sigma(u): each channel's features are its
filter norm s_a (s_a^2 = |w_a|^2 lambda0 / M ~ chi^2_M / M, shared by every patch and sample
of the channel) times a direction part. The plain non-central action takes the whole
feature Gaussian; this one keeps s exact and takes only the direction part Gaussian, with
mean m / E[s] and covariance K - Mh, Mh = m m^T / E[s]^2. Order parameters Qbar, Rbar
(symmetric Np x Np; the direction covariance and mean blocks) and their conjugates Q, R:

.. math::

    S = -\operatorname{Tr}(\bar Q Q) - \operatorname{Tr}(\bar R R) + \Phi(Q, R)
        + \frac{\alpha}{P}\left[\log\det A + y^T A^{-1} y\right],

    \Phi(Q, R) = -2 \log E_s\left[\det(I + s^2 Q)^{-1/2}
                 \exp\left(-\tfrac{s^2}{2}\operatorname{Tr}((I + s^2 Q)^{-1} R)\right)\right],

    K_R = \frac{1}{\lambda_1 N_p}\sum_{ij}\left[\bar Q_{ij}(K - M_h)_{ij}
          + \bar R_{ij} (M_h)_{ij}\right].

Gradients, with c = alpha / (P lambda1 Np), S_t = (I + t Q)^{-1} (t = s^2) and <.> the
average over t tilted by the integrand of Phi:

    dS/dQbar = -Q + c G_{K - Mh}(B),   dS/dRbar = -R + c G_{Mh}(B),
    dS/dQ = -Qbar + <t S_t - t^2 S_t R S_t>,   dS/dR = -Rbar + <t S_t>.

With s = 1 (M -> infinity) the saddle has Rbar = (I + Q)^{-1} and this is the non-central
action of docs/theory-beyond-odd.md section 1.2 (same saddle, same value).

The average over t ~ chi^2_M / M (a Gamma(M/2, 2/M) law) is an n-point generalised
Gauss-Laguerre rule (weight u^{M/2 - 1} e^{-u}, t = 2u/M; Golub-Welsch). The integrand is
singular at t = -1/q for a negative eigenvalue q of Q, which is the common case (Qbar > 1,
the kernel amplified by the data): the chi^2 tail beyond it makes the average undefined, and
only its bulk is meaningful at a saddle point. The rule therefore takes the largest n of
(16, 12, 8, 6, 4, 3, 2) whose nodes keep 1 + t q >= 1/10 at the s = 1 saddle (n is in
``solution.extra["nodes"]``); where even n = 2 cannot, the fit refuses (M too small for
this width ratio).

Solver: start at the s = 1 (non-central) saddle; Anderson-accelerated fixed point
Q = c G_{K-Mh}(B), R = c G_{Mh}(B), Qbar = <t S_t - t^2 S_t R S_t>, Rbar = <t S_t>; damped
Newton on the gradient (forward-difference Jacobian of the analytic gradient) where that
stalls. Converged means the relative gradient (its norm over the norms of the terms that
cancel) is at most ``tol``.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln

from .. import _linalg
from ._anderson import anderson_root, damped_newton
from .result import Solution

__all__ = ["chi2_rule", "mean_s_squared", "average", "evaluate", "solve", "mean_coefficient",
           "NODE_CHOICES"]

#: The node counts tried, most first (see the module docstring).
NODE_CHOICES = (16, 12, 8, 6, 4, 3, 2)
#: Every node must keep 1 + t q at least this at the s = 1 saddle.
_MARGIN = 0.1


def chi2_rule(M, n):
    """Nodes t_k and weights w_k (summing to 1) of the n-point Gauss rule for
    t ~ chi^2_M / M; M = inf gives the single node t = 1."""
    if not np.isfinite(M):
        return np.ones(1), np.ones(1)
    a = M / 2.0 - 1.0
    k = np.arange(n, dtype=float)
    off = np.sqrt(np.arange(1, n) * (np.arange(1, n) + a))
    J = np.diag(2 * k + a + 1) + np.diag(off, 1) + np.diag(off, -1)
    u, V = np.linalg.eigh(J)
    w = V[0] ** 2
    return 2.0 * u / M, w / w.sum()


def mean_s_squared(M) -> float:
    """E[s]^2 for s^2 ~ chi^2_M / M: (2/M) (Gamma((M+1)/2) / Gamma(M/2))^2; 1 for M = inf."""
    if not np.isfinite(M):
        return 1.0
    return (2.0 / M) * math.exp(2.0 * (gammaln((M + 1) / 2.0) - gammaln(M / 2.0)))


def average(Q, R, t, w):
    """Phi(Q, R) and its gradients (dPhi/dQ, dPhi/dR), or None where some node has
    I + t Q not positive definite."""
    q, V = np.linalg.eigh((Q + Q.T) / 2)
    Rp = V.T @ ((R + R.T) / 2) @ V
    den = 1.0 + np.outer(t, q)  # (nodes, n)
    if den.min() <= 0:
        return None
    d = 1.0 / den
    logf = -0.5 * np.log(den).sum(1) - 0.5 * t * (d @ np.diag(Rp))
    lw = np.log(w) + logf
    top = lw.max()
    pi = np.exp(lw - top)
    Z = pi.sum()
    pi /= Z
    phi = -2.0 * (top + math.log(Z))
    td = pi @ (t[:, None] * d)  # <t S_t> in the eigenbasis (diagonal)
    W = np.einsum("k,ka,kb->ab", pi * t * t, d, d)
    gR = (V * td) @ V.T
    gQ = V @ (np.diag(td) - W * Rp) @ V.T
    return phi, (gQ + gQ.T) / 2, (gR + gR.T) / 2


def _sym(A):
    return (A + A.T) / 2


def evaluate(theory, Qbar, Rbar, Qc, Rc, rule, e2):
    """S, the four gradients and the pieces of the fixed point, or None where the point is
    infeasible (A or some I + t Q not positive definite)."""
    t, w = rule
    avg = average(Qc, Rc, t, w)
    if avg is None:
        return None
    phi, PQ, PR = avg
    try:
        data, state = theory._data(theory._to_dev(Qbar), theory._to_dev((Rbar - Qbar) / e2))
    except _linalg.NotPositiveDefiniteError:
        return None
    Gc, Gm = theory._G(state, centred=True)  # G_{K-M}, G_M
    Gd = _sym(Gc + Gm - Gm / e2)  # G_{K - Mh}
    Gh = _sym(Gm / e2)  # G_{Mh}
    c = theory._c()
    g = (-Qc + c * Gd, -Rc + c * Gh, -Qbar + PQ, -Rbar + PR)
    S = -float(np.sum(Qbar * Qc)) - float(np.sum(Rbar * Rc)) + phi + data
    mag = (np.linalg.norm(Qc) + c * np.linalg.norm(Gd) + np.linalg.norm(Rc)
           + c * np.linalg.norm(Gh) + np.linalg.norm(Qbar) + np.linalg.norm(PQ)
           + np.linalg.norm(Rbar) + np.linalg.norm(PR))
    rel = float(np.sqrt(sum(np.sum(x * x) for x in g)) / max(mag, 1e-300))
    return dict(S=S, grad=g, rel=rel, Gd=Gd, Gh=Gh, c=c, point=(Qbar, Rbar, Qc, Rc))


def _choose_nodes(M, Qc):
    """The largest n of NODE_CHOICES whose nodes keep 1 + t q >= 1/10 at Qc, or None."""
    if not np.isfinite(M):
        return 1
    qmin = float(np.linalg.eigvalsh(_sym(Qc))[0])
    for n in NODE_CHOICES:
        t, _ = chi2_rule(M, n)
        if 1.0 + t.max() * min(qmin, 0.0) >= _MARGIN:
            return n
    return None


def solve(theory, Q0, tol, maxiter, M=None):
    """The saddle of the finite-filter action (module docstring); M defaults to the
    geometry's filter dimension (M = inf gives the non-central action's saddle)."""
    from . import _cnn_noncentral

    M = float(theory.geometry.patch_size if M is None else M)
    start = _cnn_noncentral.solve(theory, Q0, tol, maxiter)
    if not start.converged:
        raise ArithmeticError(f"{type(theory).__name__}(filter_norm='exact'): the s = 1 "
                              f"(non-central) saddle it starts from did not converge "
                              f"({start.message})")
    n = _choose_nodes(M, start.conjugate)
    if n is None:
        qmin = float(np.linalg.eigvalsh(_sym(start.conjugate))[0])
        raise ValueError(f"{type(theory).__name__}(filter_norm='exact'): at M = {M:g} the "
                         f"average over the filter norm s^2 ~ chi^2_M/M does not exist here: the "
                         f"conjugate order parameter has an eigenvalue {qmin:.3g}, so the "
                         f"integrand is singular at s^2 = {-1 / qmin:.3g}, inside the bulk of "
                         "the chi^2 law (M too small for this width ratio); use the plain "
                         "action (filter_norm='gaussian')")
    rule = chi2_rule(M, n)
    e2 = mean_s_squared(M)
    k = theory._n
    I = np.eye(k)
    iu = np.triu_indices(k)
    m = len(iu[0])

    def pack(mats):
        return np.concatenate([A[iu] for A in mats])

    def unpack(x):
        out = []
        for j in range(4):
            A = np.zeros((k, k))
            A[iu] = x[j * m:(j + 1) * m]
            out.append(A + np.triu(A, 1).T)
        return out

    def phi(x):
        ev = evaluate(theory, *unpack(x), rule, e2)
        if ev is None:
            return None
        Qn, Rn = ev["c"] * ev["Gd"], ev["c"] * ev["Gh"]
        avg = average(Qn, Rn, *rule)
        if avg is None:
            return None
        return pack([avg[1], avg[2], Qn, Rn]), ev["rel"], ev

    Qbar1, Qc1 = np.asarray(start.Q, dtype=float), np.asarray(start.conjugate, dtype=float)
    x0 = pack([Qbar1, np.linalg.inv(I + Qc1), Qc1, np.zeros((k, k))])
    if phi(x0) is None:
        x0 = pack([I, I, np.zeros((k, k)), np.zeros((k, k))])
    res = anderson_root(phi, x0, tol=tol, maxiter=maxiter)
    if not res.converged:
        res = _newton(lambda x: evaluate(theory, *unpack(x), rule, e2), pack, res, tol,
                      maxiter)
    ev = res.state
    Qbar, Rbar, Qc, Rc = ev["point"]
    gn = float(np.sqrt(sum(np.sum(g * g) for g in ev["grad"])))
    return Solution(Q=Qbar, conjugate=Qc, action=ev["S"], grad_norm=gn, rel_grad_norm=res.rel,
                    iterations=start.iterations + res.iterations,
                    converged=bool(res.converged), tol=tol,
                    evaluations=start.evaluations + res.evaluations, message=res.message,
                    extra=theory._extra(start="the s = 1 (non-central) saddle",
                                        action="finite filter (Qbar, Rbar, Q, R), "
                                               "experimental",
                                        filter_norm="exact", nodes=n, filter_dim=M,
                                        mean_s_squared=e2, mean_order=Rbar,
                                        mean_conjugate=Rc))


def _newton(resid_of, pack, prev, tol, maxiter):
    """Damped Newton on the four gradients (forward-difference Jacobian of the analytic
    gradient), from the best point of the fixed-point iteration."""
    ev = prev.state
    x = pack(list(ev["point"]))

    def resid(z):
        e = resid_of(z)
        return (None, None) if e is None else (pack(list(e["grad"])), e)

    return damped_newton(resid, x, prev, tol=tol, maxiter=maxiter, max_step=1.0,
                         done="converged: root of the gradient (from the s = 1 saddle)")


def mean_coefficient(theory):
    """The coefficient of M = m m^T in K_R at the fitted saddle: (Rbar - Qbar) / E[s]^2."""
    sol = theory.solution
    ex = sol.extra
    return (np.asarray(ex["mean_order"]) - np.asarray(sol.Q)) / ex["mean_s_squared"]
