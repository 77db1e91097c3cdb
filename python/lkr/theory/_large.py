r"""The CNN saddle at large P: a start from smaller problems, carried over with its curvature.

Why: the BFGS solve of :mod:`.conv` takes 50-70 iterations on the 136 unknowns of a
16-patch Q, each a P x P Cholesky, its inverse and two passes over the local kernel; at P
in the thousands that is the whole cost of a fit. The saddle of the same problem on a
random subsample of P / 4 samples, at the same alpha = P / N (width scaled by 1/4), lies
near the full one (the order parameter is self-averaging; measured 10-25 % apart) and
costs 1/16 (kernel passes) to 1/64 (Cholesky) as much per iteration. So the solve runs
on a ladder of subsamples (each level started the same way from the next smaller one,
down to below ``MULTILEVEL_MIN_P``), and the full problem starts from the last level's Q
with that level's final BFGS inverse Hessian, moved into the full problem's coordinates
(:func:`carried_inverse_hessian`). Measured at P = 1024: 27-37 full-size iterations
instead of 60. The subsamples are nested prefixes of one fixed random permutation, so a
fit is reproducible.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla

__all__ = ["MULTILEVEL_MIN_P", "applies", "multilevel_start", "carried_inverse_hessian"]

#: the smallest P solved on a subsample first (levels shrink by 4 while they stay >= 256)
MULTILEVEL_MIN_P = 1024
#: subsample size ratio between levels
FACTOR = 4
#: the relative-gradient tolerance of the subsample levels (a start, not a result: their
#: own distance to the full saddle is ~10 %)
LEVEL_TOL = 1e-6


def applies(theory) -> bool:
    """One-output central CNN (dense Q), at P >= MULTILEVEL_MIN_P."""
    from ._local import LocalOperator

    return (isinstance(theory._cache, LocalOperator) and not theory._diagonal
            and (theory.num_outputs or 1) == 1 and not theory.noncentral
            and theory.num_samples >= MULTILEVEL_MIN_P)


def multilevel_start(theory, tol, maxiter, report=None):
    """Solve ``theory``'s bound problem on a subsample of P / 4 (recursively) and return
    ``(Q, how, carry)``: the subsample's saddle, a description, and what
    :func:`carried_inverse_hessian` needs (or None)."""
    P = theory.num_samples
    Ps = P // FACTOR
    idx = np.sort(np.random.default_rng(0x6C6B72).permutation(P)[:Ps])
    sub = type(theory)(theory.geometry, theory.width, theory.temperature,
                       activation=theory.activation, lambda0=theory.lambda0,
                       lambda1=theory.lambda1, mean=theory.mean, tol=max(tol, LEVEL_TOL),
                       maxiter=maxiter, max_bytes=theory.max_bytes,
                       kernel_dtype=theory.kernel_dtype, progress=False)
    # the subsample keeps the full problem's alpha = P / Nc: its width P_s Nc / P is a
    # fraction in general, which the constructor (user input: whole channels) refuses
    sub.width = theory.width * Ps / P
    sub._report = report
    if report is not None:
        report(f"start: solving on a subsample P = {Ps}")
    sub.set_data(theory._X[idx], theory._y[idx])
    sol = sub._solve(None, max(tol, LEVEL_TOL), maxiter)
    how = f"subsample P = {Ps} ({sol.extra.get('start', '')}, {sol.iterations} iterations)"
    carry = getattr(sub, "_solver_state", None)
    return np.asarray(sol.Q), how, carry


def carried_inverse_hessian(carry, L0, tril, on_diag):
    """The subsample's final BFGS inverse Hessian in the full problem's coordinates.

    Both solves parametrise Q = L0 Lt Lt^T L0^T (Lt lower triangular, log diagonal),
    around their own L0; the change of coordinates x_s -> x_f, Lt_f = L0^{-1} L0_s Lt_s,
    has Jacobian J (by central differences: 2 n small triangular products), and an
    inverse Hessian transforms as H_f = J H_s J^T.
    """
    if carry is None:
        return None
    L0s, xs, Hs, tril_s, on_diag_s = carry
    if Hs is None or len(xs) != len(tril[0]):
        return None
    n = L0.shape[0]
    R = sla.solve_triangular(L0, L0s, lower=True)

    def coords(x):
        Lt = np.zeros((n, n))
        Lt[tril_s] = x
        Lt[np.diag_indices(n)] = np.exp(np.diag(Lt))
        Lf = R @ Lt
        out = Lf[tril].copy()
        out[on_diag] = np.log(out[on_diag])
        return out

    m = len(xs)
    J = np.empty((m, m))
    for k in range(m):
        e = np.zeros(m)
        e[k] = 1e-6
        J[:, k] = (coords(xs + e) - coords(xs - e)) / 2e-6
    H = J @ Hs @ J.T
    H = (H + H.T) / 2
    try:
        np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        return None
    return H
