r"""Root of the gradient of a non-central action in the pair (Qbar, Q) (docs/theory-beyond-odd.md
section 5): the solver shared by the FC with D outputs, the CNN and the LCN (one or D
outputs), and by any theory that supplies the same evaluation.

The actions have the form

.. math::

    S(\bar Q, Q) = -\operatorname{Tr}(\bar Q Q) + \log\det(I + Q) + F(K_R),\quad
    K_R = \bar Q \cdot (K - M) + (I + Q)^{-1} \cdot M,

so that, with G_c and G_m the adjoints of the centred and mean kernels at
B = A^{-1} - a a^T and c their weight,

    dS/dQbar = -Q + c G_c,   dS/dQ = -Qbar + S_ - c S_ G_m S_,   S_ = (I + Q)^{-1}.

The caller's ``evaluate(Qbar, Qc, t)`` (the action with alpha multiplied by t) returns a
dict with ``S``, ``gbar``, ``gq``, ``rel`` (the relative gradient), ``Gc``, ``Gm`` and ``c``
(restricted to the free entries, e.g. the LCN's blocks), or None where I + Q or A is not
positive definite.

Algorithm: S is unbounded (the -Tr(Qbar Q) term), so the saddle is a root of the gradient,
never a minimum. The stationarity conditions read as the fixed point
Q = c G_c, Qbar = S_ - c S_ G_m S_ (S_ from the new Q), iterated from the infinite-width
point (I, 0) (or a warm start) with Anderson acceleration (:mod:`._anderson`). Where that
does not converge and the problem is small (at most ``NEWTON_MAX_UNKNOWNS`` unknowns), damped
Newton steps on the gradient take over, in coordinates that keep every iterate feasible
(Qbar = L1 L1^T and (I + Q)^{-1} = L2 L2^T, log-diagonal Cholesky factors), with a
forward-difference Jacobian of the analytic gradient. Where both fail (large alpha, small T:
the plain iteration overshoots out of the feasible set, Newton from a poor point wanders),
continuation in alpha: the data term weighted by t alpha, t raised from 0 (where (I, 0) is
the exact root) to 1, each root started from the previous one. Converged means
``rel <= tol``.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ._anderson import anderson_root, damped_newton

__all__ = ["solve_pair", "start_pair", "is_pair", "free_entries", "NEWTON_MAX_UNKNOWNS"]

#: Largest number of unknowns for the finite-difference Newton fallback (each Jacobian costs
#: one evaluation per unknown).
NEWTON_MAX_UNKNOWNS = 400
#: Iterations of one Anderson run (a converging run needs tens; one that has not converged
#: by then hands over to Newton or to a shorter continuation step).
ANDERSON_MAX_ITER = 200


def free_entries(n, mask=None):
    """Upper-triangle indices (row <= column) of the free entries of a symmetric n x n
    order parameter: all of them, or those inside a boolean ``mask`` (LCN blocks)."""
    iu = np.triu_indices(n)
    if mask is None:
        return iu
    keep = np.asarray(mask)[iu]
    return iu[0][keep], iu[1][keep]


def is_pair(Q0):
    """Whether a start is the pair (Qbar, Q): a tuple or list of two matrices (a list of two
    rows is a 2 x 2 matrix, not a pair)."""
    return (isinstance(Q0, (tuple, list)) and len(Q0) == 2
            and all(np.ndim(backend.to_numpy(M)) == 2 for M in Q0))


def start_pair(Q0, n, check, mask=None):
    """The starting pair from a user's or a warm start's ``Q0``: a pair (Qbar, Q) is taken
    as it is; a lone Qbar gets the conjugate of the odd relation Qbar = (I + Q)^{-1};
    None is the infinite-width point (I, 0). ``check(M, name, definite)`` validates a
    matrix (shape, symmetry, pattern) and returns it as a float array."""
    I = np.eye(n)
    if Q0 is None:
        return I, np.zeros((n, n)), "infinite width (I, 0)"
    if is_pair(Q0):
        Qbar = check(Q0[0], "Q0[0] (Qbar)", False)
        Qc = check(Q0[1], "Q0[1] (conjugate)", False)
        try:
            np.linalg.cholesky(I + Qc)
        except np.linalg.LinAlgError:
            raise ValueError("Q0: I + conjugate must be positive definite") from None
        return Qbar, Qc, "Q0 (pair)"
    Qbar = check(Q0, "Q0", True)
    Qc = np.linalg.inv(Qbar) - I
    Qc = (Qc + Qc.T) / 2
    if mask is not None:
        Qc = np.where(mask, Qc, 0.0)
    return Qbar, Qc, "Q0 (conjugate from Qbar = (I + Q)^-1)"


def _sym_from(part, n, idx):
    M = np.zeros((n, n))
    M[idx] = part
    return M + np.triu(M, 1).T


def solve_pair(evaluate, n, start, *, tol, maxiter, mask=None, fallback=None):
    """Root of the gradient from ``start`` = (Qbar, Qc).

    Parameters
    ----------
    evaluate : callable (Qbar, Qc, t) -> dict or None
        See the module docstring; ``t`` multiplies alpha (1: the problem itself).
    n : int
        Side of the order parameters.
    start : pair of (n, n) arrays
        Starting point; where it is infeasible, the infinite-width point (I, 0) is used.
    tol, maxiter : float, int
        ``maxiter`` caps the iterations of all stages together.
    mask : (n, n) bool array, optional
        Free entries (LCN blocks); the rest stay 0.
    fallback : bool, optional
        Whether the Newton fallback may run (default: when the unknowns are at most
        ``NEWTON_MAX_UNKNOWNS``).

    Returns
    -------
    (RootResult, str)
        ``RootResult.state`` is the evaluation dict at the answer, with ``Qbar`` and ``Qc``
        added; the string names the start actually used.

    Notes
    -----
    Stages: (1) the Anderson-accelerated fixed point at t = 1 from ``start``, then damped
    Newton from its best point (small problems); (2) if that fails, continuation in alpha
    from the infinite-width point, where (I, 0) is the exact root of t = 0: roots at
    increasing t (step doubled after a success, quartered after a failure), each started
    from the previous one, the intermediate ones to a looser tolerance.
    """
    I = np.eye(n)
    zero = np.zeros((n, n))
    k = len(free_entries(n, mask)[0])
    if fallback is None:
        fallback = 2 * k <= NEWTON_MAX_UNKNOWNS
    spent = [0, 0]  # iterations, evaluations over all stages

    def root(t, pair, tol_t, newton_cap):
        left = maxiter - spent[0]
        res = _anderson(evaluate, n, mask, t, pair, tol_t, min(left, ANDERSON_MAX_ITER))
        if not res.converged and fallback and left > res.iterations:
            best = res.state
            res = _newton(evaluate, n, mask, t, (best["Qbar"], best["Qc"]), tol_t,
                          min(left - res.iterations, newton_cap), res)
        spent[0] += res.iterations  # both counts are cumulative over the two stages
        spent[1] += res.evaluations
        return res

    how = "given"
    try:
        first = root(1.0, start, tol, 50)
    except ValueError:  # an infeasible warm start: begin at the infinite-width point
        how = "infinite width (I, 0): the start was infeasible"
        first = root(1.0, (I, zero), tol, 50)
    if first.converged or maxiter <= spent[0]:
        return _final(first, spent, fallback, k), how
    # continuation in alpha from the infinite-width point
    t, dt, pair, loose = 0.0, 0.25, (I, zero), max(tol, 1e-6)
    last = None
    while t < 1.0 and maxiter > spent[0]:
        tn = min(1.0, t + dt)
        try:
            r = root(tn, pair, tol if tn == 1.0 else loose, 20)
        except ValueError:
            r = None
        if r is not None and r.converged:
            t, pair, last = tn, (r.state["Qbar"], r.state["Qc"]), r
            dt = min(2.0 * dt, 1.0)
        else:
            dt /= 4.0
            if dt < 1e-3:
                break
    if last is not None and t == 1.0:
        last.message = ("converged: root of the gradient by continuation in alpha from the "
                        "infinite-width point (the direct iteration did not converge)")
        return _final(last, spent, fallback, k), how
    first.message += f"; continuation in alpha from the infinite-width point stopped at {t:.3g}"
    return _final(first, spent, fallback, k), how


def _final(res, spent, fallback, k):
    res.iterations, res.evaluations = spent
    if not res.converged and not fallback:
        res.message += (f" (the Newton fallback is off above {NEWTON_MAX_UNKNOWNS} unknowns; "
                        f"this problem has {2 * k})")
    return res


def _anderson(evaluate, n, mask, t, start, tol, maxiter):
    """The fixed point of the stationarity conditions at scale t, Anderson-accelerated."""
    I = np.eye(n)
    idx = free_entries(n, mask)
    k = len(idx[0])

    def pack(Qbar, Qc):
        return np.concatenate([Qbar[idx], Qc[idx]])

    def phi(x):
        Qbar, Qc = _sym_from(x[:k], n, idx), _sym_from(x[k:], n, idx)
        ev = evaluate(Qbar, Qc, t)
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

    return anderson_root(phi, pack(*start), tol=tol, maxiter=maxiter)


def _newton(evaluate, n, mask, t, start, tol, maxiter, prev):
    """Damped Newton on the gradient in log-Cholesky coordinates of (Qbar, (I + Q)^{-1})."""
    I = np.eye(n)
    iu = free_entries(n, mask)
    tri = (iu[1], iu[0])  # the lower-triangle entries of the same pattern
    k = len(tri[0])
    on_diag = tri[0] == tri[1]

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
        Qc = np.linalg.inv(L2 @ L2.T) - I
        return (Qbar + Qbar.T) / 2, (Qc + Qc.T) / 2

    def resid(x):
        Qbar, Qc = point(x)
        ev = evaluate(Qbar, Qc, t)
        if ev is None:
            return None, None
        ev["Qbar"], ev["Qc"] = Qbar, Qc
        return np.concatenate([ev["gbar"][iu], ev["gq"][iu]]), ev

    Qbar0, Qc0 = start
    try:
        x = np.concatenate([coords(Qbar0), coords(np.linalg.inv(I + Qc0))])
    except np.linalg.LinAlgError:  # the fixed point left the PSD cone: restart at (I, 0)
        x = np.zeros(2 * k)
    first = resid(x)
    if first[0] is None:
        x = np.zeros(2 * k)
        first = resid(x)
    # a step of at most 2 in the log-Cholesky coordinates (t is the alpha scale)
    return damped_newton(resid, x, prev, tol=tol, maxiter=maxiter, max_step=2.0, first=first,
                         done="converged: root of the gradient (damped Newton after the "
                              "fixed point)")
