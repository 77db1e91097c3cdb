r"""The non-central CNN/LCN action (docs/theory-beyond-odd.md sections 1.2 and 3).
EXPERIMENTAL: a derivation with no published implementation, resting on a Gaussian
equivalence that needs a large filter dimension M; the tests hold it against Langevin
sampling of ReLU CNNs.

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
call of the operator). LCN: Qbar and Q diagonal (D x D blocks with D outputs). Infinite
width: (Qbar, Q) = (I, 0). With M = 0 the root has Qbar = (I + Q)^{-1} and Qbar is the odd
CNN saddle. Np = 1 is the FC action of section 1.1.

The saddle is a root of the gradient (S is unbounded: never minimised), found by
:func:`._saddle.solve_pair`: an Anderson-accelerated fixed point from (I, 0) or a warm start,
damped Newton on small problems, and continuation in alpha from the infinite-width point
where both fail. A warm start is the pair (Qbar, Q) of a neighbouring saddle (``fit_path``),
or a lone Qbar whose conjugate then comes from the odd relation Qbar = (I + Q)^{-1}.
Converged means both gradients are small against the terms that cancel in them:
max(||dS/dQbar|| / (||Q|| + ||c G_c||), ||dS/dQ|| / (||Qbar|| + ||S_|| + ||c S_ G_m S_||))
<= ``tol``.

D outputs (docs/theory-beyond-odd.md section 3): the same with (Np D) x (Np D) order
parameters (patch-major), K_R, B and the adjoints over (P D) x (P D) example-major indices;
the LCN keeps the Np diagonal D x D blocks. Everything goes through the theory's local-kernel
operator (``theory._cache``: ``kr(Q, lambda1, Qm)``, ``adjoint(B, centred=True)``), so any
operator with those methods and its mean patch activations gets this action.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from .. import _linalg
from . import _shared_outputs
from ._saddle import solve_pair, start_pair
from .result import Solution

__all__ = ["evaluate", "action", "gradient", "solve"]


def _restrict(theory, G):
    mask = theory._block_mask()
    return G if mask is None else np.where(mask, G, 0.0)


def evaluate(theory, Qbar, Qc, scale=1.0):
    """S, the gradient pair and the pieces of the fixed point at (Qbar, Qc), or None where
    I + Qc or A is not positive definite. ``scale`` multiplies alpha (the solver's
    continuation from the infinite-width point; 1 is the theory's own action)."""
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
    c = scale * theory._c()
    data = scale * data
    SGS = Sm @ Gm @ Sm
    gbar = -Qc + c * Gc
    gq = -Qbar + Sm - c * SGS
    S = -float(np.sum(Qbar * Qc)) + logdet_IQ + data
    # each gradient relative to the terms that cancel in it (a combined measure lets a
    # large term of one hide an error in the other)
    mag_bar = np.linalg.norm(Qc) + c * np.linalg.norm(Gc)
    mag_q = np.linalg.norm(Qbar) + np.linalg.norm(Sm) + c * np.linalg.norm(SGS)
    rel = float(max(np.linalg.norm(gbar) / max(mag_bar, 1e-300),
                    np.linalg.norm(gq) / max(mag_q, 1e-300)))
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


def _shared_start(theory):
    """The saddle restricted to (Q1 (x) I_D, Qc1 (x) I_D) (:mod:`._shared_outputs`): the
    pair and the evaluations spent, or None where it does not converge."""
    view = _shared_outputs.SharedOutputs(theory)
    n1 = theory.num_patches
    I = np.eye(n1)
    try:
        res, _ = solve_pair(lambda Qb, Qq, t=1.0: evaluate(view, Qb, Qq, t), n1,
                            (I, np.zeros((n1, n1))), tol=_shared_outputs.START_TOL,
                            maxiter=200, mask=view._block_mask())
    except ValueError:
        return None
    if not res.converged:
        return None
    D = theory.num_outputs
    st = res.state
    return ((_shared_outputs.kron_outputs(st["Qbar"], D),
             _shared_outputs.kron_outputs(st["Qc"], D)), res.evaluations)


def solve(theory, Q0, tol, maxiter):
    """The saddle by :func:`._saddle.solve_pair`; ``Q0`` a pair (Qbar, Q) (warm start), a
    lone Qbar (conjugate from the odd relation) or None (with D outputs the shared-outputs
    saddle of :mod:`._shared_outputs`, else, or where that fails, the infinite-width
    point)."""
    n = theory._n
    mask = theory._block_mask()
    spent = 0
    shared = None
    if Q0 is None and (theory.num_outputs or 1) > 1:
        shared = _shared_start(theory)
    if shared is not None:
        (Qbar, Qc), spent = shared
        how = "shared outputs (Q1 (x) I_D, Qc1 (x) I_D)"
    else:
        Qbar, Qc, how = start_pair(Q0, n, lambda M, name, definite: theory._check_Q(
            M, name, definite), mask)
    res, used = solve_pair(lambda Qb, Qq, t=1.0: evaluate(theory, Qb, Qq, t), n, (Qbar, Qc),
                           tol=tol, maxiter=maxiter, mask=mask)
    if used != "given":
        how = used
    ev = res.state
    gn = float(np.sqrt(np.sum(ev["gbar"]**2) + np.sum(ev["gq"]**2)))
    return Solution(Q=ev["Qbar"], conjugate=ev["Qc"], action=ev["S"], grad_norm=gn,
                    rel_grad_norm=res.rel, iterations=res.iterations,
                    converged=res.converged, tol=tol, evaluations=res.evaluations,
                    message=res.message,
                    extra=theory._extra(start=how, action="non-central (Qbar, Q), "
                                        "experimental", shared_start_evaluations=spent))
