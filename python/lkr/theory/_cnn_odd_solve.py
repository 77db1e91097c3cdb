"""Solvers of the odd (central) CNN/LCN action (the module docstring of :mod:`.conv`):
BFGS in the Cholesky parametrisation, with the multilevel start at large P (:mod:`._large`),
and for D outputs the fixed point of :mod:`._shared_outputs` from the shared-outputs start;
with the fit's progress line and its LAPACK thread choice.

One output keeps BFGS: where an evaluation is dear (large P, hence large alpha at a given
width) the fixed point fails (docs/cnn-theory-engine.md, "Large P"). At large alpha the
data term dominates the curvature, so the map's Jacobian has eigenvalues far beyond -1
(down to -45 at the bench problem's saddle, P = 512, alpha = 102): the plain iteration
diverges, the map (I + c G)^{-1} is undefined at the scalar and the multilevel starts
(P = 1024, 2048), and Anderson mixing in Qbar^{-1} stalls at a relative gradient of 0.2-0.9.

A deep CNN (:class:`lkr.theory.DeepCNNTheory`) runs the same solvers with its own prior
(``theory._prior_value``, ``theory._prior_parts``, ``theory._prior_depth``).
"""
from __future__ import annotations

import contextlib

import numpy as np

from .. import _linalg, backend
from .._blas import held_at_one
from .._progress import progress_bar
from .._tuning import BlasChoice
from . import _large, _shared_outputs
from ._optim import bfgs, cholesky_point
from .result import Solution

__all__ = ["solve_bfgs", "solve_fixed_point", "shared_start"]


def _storage_note(theory):
    """How the local kernel is held, for the progress line (streamed when it does not fit
    the memory budget: every evaluation then recomputes it)."""
    op = theory._cache
    gb = op.nbytes / 1e9
    if op.materialized:
        return f"P = {theory.num_samples}: kernel stored ({op.dtype.name}, {gb:.3g} GB)"
    budget = getattr(op, "budget", None)  # the deep operator keeps none of its own
    over = "" if budget is None else f" > budget {budget / 1e9:.3g} GB, LKR_MAX_BYTES"
    return (f"P = {theory.num_samples}: kernel STREAMED, each evaluation recomputes it (stored "
            f"it would take {gb:.3g} GB{over})")


def _lapack_threads(theory):
    """BLAS threads of the evaluations' Cholesky and inverse: held at one for small P
    (lkr.theory._base), else 1 or lkr's count by measurement (lkr._tuning: n threads on a
    quiet machine, one where other processes hold the cores -- multi-threaded LAPACK then
    ran 5-10x slower here)."""
    if held_at_one() or backend.array_module(theory._X) is not np:
        return _NoChoice()
    return BlasChoice(backend.get_num_threads())


class _NoChoice:
    def timed(self):
        return contextlib.nullcontext()

    held = timed


def _large_bar(theory):
    """The fit's progress line (a terminal only, after a second; None for a subsample level
    or when switched off)."""
    if theory._report is not None or theory.progress is False:
        return None
    bar = progress_bar(None, type(theory).__name__, theory.progress, unit="it", delay=1.0)
    if bar.disable:
        bar.close()
        return None
    return bar


def shared_start(theory, tol):
    """The odd saddle restricted to Q1 (x) I_D (:mod:`._shared_outputs`): (Q, evaluations)
    or (None, evaluations) where it fails."""
    view = _shared_outputs.SharedOutputs(theory)
    Q1, how = theory._start(None, outputs=1)
    try:
        res = _shared_outputs.odd_fixed_point(view, theory.num_patches, Q1, tol=tol,
                                              maxiter=200, L=theory._prior_depth)
    except ValueError:
        return None, 0
    if not res.converged:
        return None, res.evaluations
    return _shared_outputs.kron_outputs(res.state["Q"], theory.num_outputs), res.evaluations


def solve_bfgs(theory, Q0, tol, maxiter):
    """The odd saddle by BFGS in the Cholesky parametrisation (see the module)."""
    Np = theory._n
    bar = _large_bar(theory)
    report = theory._report or (bar.set_description_str if bar is not None else None)
    carry = None
    if Q0 is None and _large.applies(theory):
        Qs, how, carry = _large.multilevel_start(theory, tol, maxiter, report)
    else:
        Qs, how = theory._start(Q0)
    if report is not None:
        report(_storage_note(theory))
    lapack = _lapack_threads(theory)
    theory._data(theory._to_dev(Qs))  # an infeasible start (T = 0, singular K_R) raises here
    c = theory._c()
    diag = theory._diagonal and theory.num_outputs == 1
    mask = theory._block_mask()
    if diag:
        q0 = np.diag(Qs).copy()
        x0 = np.zeros(Np)
    else:
        L0 = np.linalg.cholesky(Qs)
        tril = np.tril_indices(Np)
        if mask is not None:  # LCN with D outputs: Cholesky factors of the D x D blocks
            keep = mask[tril]
            tril = (tril[0][keep], tril[1][keep])
        on_diag = tril[0] == tril[1]
        x0 = np.zeros(len(tril[0]))
    state = {}

    def unpack(x):
        if diag:
            qd = q0 * np.exp(x)
            return np.diag(qd), None, float(np.sum(np.log(q0) + x))
        return cholesky_point(L0, x, tril, on_diag)

    def value(x):
        Q, M, logdetQ = unpack(x)
        state.clear()
        state["x"] = x.copy()
        try:
            with lapack.timed():
                data, st = theory._data(theory._to_dev(Q))
            prior = theory._prior_value(Q, logdetQ)
        except (_linalg.NotPositiveDefiniteError, ValueError):
            return np.inf
        S = float(prior + data)
        state.update(Q=Q, M=M, S=S, st=st)
        return S if np.isfinite(S) else np.inf

    def gradient(x):
        if state.get("x") is None or not np.array_equal(state["x"], x) or "st" not in state:
            value(x)
        if "g" not in state:
            Q, M = state["Q"], state["M"]
            with lapack.held():
                G = theory._G(state["st"])
            if diag:
                qd = np.diag(Q)
                gq = 1.0 - 1.0 / qd + c * np.diag(G)
                rel = np.linalg.norm(gq) / (np.sqrt(Np) + np.linalg.norm(1.0 / qd)
                                            + c * np.linalg.norm(np.diag(G)))
                state.update(gQ=np.diag(gq), g=gq * qd, rel=rel)
            else:
                Pw, Qinv = theory._prior_parts(Q, M)
                if mask is not None:
                    G = np.where(mask, G, 0.0)
                gQ = Pw - Qinv + c * G
                gQ = (gQ + gQ.T) / 2
                D = 2.0 * L0.T @ gQ @ M
                gx = D[tril]
                gx[on_diag] *= np.exp(x[on_diag])  # d L_ii / d x_ii = L_ii
                rel = np.linalg.norm(gQ) / (np.linalg.norm(Pw) + np.linalg.norm(Qinv)
                                            + c * np.linalg.norm(G))
                state.update(gQ=gQ, g=gx, rel=rel)
        return state["g"], state["rel"]

    H0 = None if diag else _large.carried_inverse_hessian(carry, L0, tril, on_diag)

    def step_done(it, rel, nev):
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"rel grad {rel:.2e}", refresh=False)

    try:
        res = bfgs(value, gradient, x0, tol=tol, maxiter=maxiter, H0=H0, callback=step_done)
    finally:
        if bar is not None:
            bar.close()
    if not diag:
        theory._solver_state = (L0, res.x, res.H, tril, on_diag)  # for a larger level
    value(res.x)
    g, rel = gradient(res.x)
    Q = state["Q"]
    if diag:
        Q = np.diag(np.diag(Q))
    sol = Solution(Q=Q, action=state["S"], grad_norm=float(np.linalg.norm(state["gQ"])),
                   rel_grad_norm=float(rel), iterations=res.iterations,
                   converged=bool(rel <= tol), tol=tol, evaluations=res.evaluations + 1,
                   message=res.message,
                   extra=theory._extra(start=how))
    return sol


def solve_fixed_point(theory, Q0, tol, maxiter):
    """The odd D-output saddle by the fixed point of :mod:`._shared_outputs` (L = 1:
    Q = (I + c G)^{-1}) from the shared start (or Q0); where that start fails, or the
    iteration does not converge, BFGS (from the fixed point's last point)."""
    spent = 0
    how = "Q0"
    if Q0 is None:
        Qs, spent = theory._shared_start(_shared_outputs.START_TOL)
        how = "shared outputs Q1 (x) I_D"
        if Qs is None:
            return theory._solve_bfgs(None, tol, maxiter)
    else:
        Qs = theory._check_Q(Q0)
    try:
        res = _shared_outputs.odd_fixed_point(theory, theory._n, Qs, tol=tol,
                                              maxiter=min(maxiter, 100),
                                              L=theory._prior_depth)
    except ValueError:  # an infeasible start
        return theory._solve_bfgs(None if Q0 is None else Qs, tol, maxiter)
    st = res.state
    if not res.converged:
        sol = theory._solve_bfgs(st["Q"], tol, maxiter)
        sol.evaluations += res.evaluations
        sol.extra.update(fixed_point_evaluations=res.evaluations,
                         shared_start_evaluations=spent,
                         start=f"BFGS after the fixed point from {how}")
        return sol
    return Solution(Q=st["Q"], action=st["S"], grad_norm=float(np.linalg.norm(st["gQ"])),
                    rel_grad_norm=float(res.rel), iterations=res.iterations,
                    converged=True, tol=tol, evaluations=res.evaluations,
                    message=res.message.replace("from the infinite-width point",
                                                f"from {how}"),
                    extra=theory._extra(start=how, shared_start_evaluations=spent))
