r"""D-output CNN/LCN/deep-CNN solves: a start with every output sharing one patch matrix, and
the fixed point of the odd action (docs/theory-beyond-odd.md section 3.3).

**Shared start.** Restricted to order parameters that act alike on every output,
Qbar = Q1 (x) I_D (and Q = Qc1 (x) I_D for the non-central action), the kernel is
K_R = K_R1(Q1) (x) I_D and A = A1 (x) I_D with A1 = T I + K_R1 (P x P), so that

.. math::

    \frac{S}{D} = \mathrm{prior}(Q_1) + \frac{\alpha}{P}\left[\frac{1}{D}
        \operatorname{tr}(Y^T A_1^{-1} Y) + \log\det A_1\right],\qquad
    \frac{1}{D}\frac{\partial S}{\partial Q_1} = \ldots + c\,G_1(B_1),\quad
    B_1 = A_1^{-1} - \frac{1}{D} A_1^{-1} Y Y^T A_1^{-1}:

the one-output problem on the P x P kernel with y y^T replaced by Y Y^T / D. Its saddle
(at P^3 cost per evaluation instead of (P D)^3) is the start of the full solve, which then
only corrects the output structure. :class:`SharedOutputs` is that problem behind the
evaluation interface of the theories (``_data``, ``_G``, ``_c``, ``_to_dev``,
``_block_mask``), so the solvers of the full problem run on it unchanged.

**Odd fixed point.** The stationarity of S(Q) = L Tr Q^{1/L} - log det Q + data (L = 1:
the CNN and LCN; L layers: the deep CNN's central action) reads Q^{-1} - Q^{1/L - 1} = c G(B(Q)),
which :func:`prior_map` solves for Q given G eigenvalue by eigenvalue (L = 1:
Q = (I + c G)^{-1}); iterated with Anderson mixing (:func:`._anderson.anderson_root`) from
the shared start it needs a few evaluations, where BFGS over the (Np D)(Np D + 1)/2
unknowns needs many. Converged means the theories' relative gradient
||Q^{1/L-1} - Q^{-1} + c G|| / (||Q^{1/L-1}|| + ||Q^{-1}|| + ||c G||) <= tol; where the map
is undefined or the iteration stalls, the caller falls back to BFGS from the last point.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg as sla

from .. import _linalg, backend
from . import _base
from ._anderson import anderson_root
from ._saddle import _sym_from, free_entries

__all__ = ["SharedOutputs", "SharedState", "odd_fixed_point", "prior_map", "kron_outputs",
           "shared_blocks"]

#: The shared start is solved to this relative gradient (it is a start: the full solve
#: corrects it).
START_TOL = 1e-6


class SharedState(NamedTuple):
    """The state of an evaluation at Q = Q1 (x) I_D: the Cholesky factor of A1 (P x P) and
    a = A1^{-1} Y (P, D) (A^{-1} y = a.reshape(-1))."""

    chol: object
    a: object


def shared_blocks(Q, Qm, D):
    """(Q1, Qm1) when Q = Q1 (x) I_D and Qm = Qm1 (x) I_D (or None) to rounding (1e-13 of
    max(|M|, 1): the copies of Q1 made by a Cholesky-based inverse differ in the last bits,
    and Qm = (I + Q)^{-1} - Qbar is a difference of O(1) terms), else None (a cheap test:
    O((Np D)^2))."""
    out = []
    for M in (Q, Qm):
        if M is None:
            out.append(None)
            continue
        Mn = np.asarray(backend.to_numpy(M))
        n = Mn.shape[0] // D
        M4 = Mn.reshape(n, D, n, D)
        M1 = M4[:, 0, :, 0]
        tol = 1e-13 * max(float(np.abs(Mn).max()), 1.0)
        if np.abs(M4 - np.einsum("ij,ab->iajb", M1, np.eye(D))).max() > tol:
            return None
        out.append(np.ascontiguousarray(M1))
    return tuple(out)


def kron_outputs(Q1, D):
    """Q1 (x) I_D in the patch-major index i D + a."""
    return np.kron(np.asarray(Q1, dtype=float), np.eye(D))


class SharedOutputs:
    """A D-output local theory restricted to Q = Q1 (x) I_D (see the module docstring): the
    evaluation interface of the theory on (Np, Np) order parameters."""

    def __init__(self, theory):
        self.th = theory
        self.D = theory.num_outputs
        self._n = theory.num_patches
        self.Y = theory._y  # (P, D), on the device of X

    def _c(self):
        return self.th._c()

    def _to_dev(self, Q):
        return self.th._to_dev(Q)

    def _block_mask(self):
        return np.eye(self._n, dtype=bool) if self.th._diagonal else None

    def _data(self, Q_dev, Qm_dev=None):
        th = self.th
        op = th._cache
        xp = op.xp
        A = op.kr(Q_dev, th.lambda1, Qm_dev)
        A[xp.diag_indices(A.shape[0])] += th.temperature
        chol = _base.cholesky_of_A(A, th.temperature, type(th).__name__)
        a = chol.solve(self.Y)
        val = (th.alpha / th.num_samples) * (float(xp.sum(self.Y * a)) / self.D
                                              + chol.logdet())
        return val, (chol, a / np.sqrt(self.D))

    def _G(self, state, centred=False):
        chol, a = state
        xp = self.th._cache.xp
        B = self.th._inverse(chol) - a @ a.T
        out = self.th._cache.adjoint((B + B.T) / 2, centred=centred)
        if centred:
            return tuple(backend.to_numpy(g) for g in out)
        return backend.to_numpy(out) if xp is not np else out


def prior_map(G, c, L):
    """Q solving the odd stationarity Q^{1/L - 1} - Q^{-1} + c G = 0 for Q given G: with
    c G = U diag(g) U^T, Q = U diag(t^L) U^T where t^{-L} (1 - t) = g on the branch
    0 < t < L / (L - 1) through t = 1 at g = 0 (L = 1: Q = (I + c G)^{-1}). None where some
    g lies below the branch's minimum -(t*)^{-L} / (L - 1), t* = L / (L - 1)."""
    n = G.shape[0]
    I = np.eye(n)
    if L == 1:
        try:
            M = sla.cholesky(I + c * (G + G.T) / 2, lower=True)
        except np.linalg.LinAlgError:
            return None  # the map is undefined here (I + c G not positive definite)
        Mi = sla.solve_triangular(M, I, lower=True)
        return Mi.T @ Mi
    g, U = np.linalg.eigh(c * (G + G.T) / 2)
    ts = L / (L - 1.0)
    if g[0] <= -ts ** (-L) / (L - 1.0):
        return None
    # bisection in log t on (1e-12, t*]: f(t) = t^{-L} (1 - t) decreases there
    lo, hi = np.full(n, np.log(1e-12)), np.full(n, np.log(ts))
    for _ in range(200):
        mid = (lo + hi) / 2
        t = np.exp(mid)
        above = t ** (-L) * (1.0 - t) > g
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    t = np.exp((lo + hi) / 2)
    Q = (U * t**L) @ U.T
    return (Q + Q.T) / 2


def odd_fixed_point(prob, n, Q0, *, tol, maxiter, L=1):
    """The root of the odd gradient Q^{1/L - 1} - Q^{-1} + c G(B(Q)) (CNN/LCN: L = 1,
    I - Q^{-1} + c G) by the Anderson-mixed fixed point Q <- :func:`prior_map` (G(B(Q)))
    from ``Q0`` (an (n, n) SPD start).

    ``prob`` has the theories' evaluation interface (the theory itself or
    :class:`SharedOutputs`). Returns the :class:`._anderson.RootResult` (its ``state``: the
    dict of the last point, with ``Q``, ``S``, ``gQ``, ``rel``) or raises ValueError when
    the start is infeasible. S is the action of the L-layer prior
    L tr Q^{1/L} - log det Q plus the data term.
    """
    mask = prob._block_mask()
    idx = free_entries(n, mask)
    c = prob._c()

    def evaluate(x):
        Q = _sym_from(x, n, idx)
        w, V = np.linalg.eigh(Q)
        if not w[0] > 0:
            return None
        try:
            data, st = prob._data(prob._to_dev(Q))
        except _linalg.NotPositiveDefiniteError:
            return None
        G = np.asarray(prob._G(st))
        if mask is not None:
            G = np.where(mask, G, 0.0)
        Qinv = (V / w) @ V.T
        Pw = (V * w ** (1.0 / L - 1.0)) @ V.T
        gQ = Pw - Qinv + c * G
        gQ = (gQ + gQ.T) / 2
        rel = float(np.linalg.norm(gQ) / (np.linalg.norm(Pw) + np.linalg.norm(Qinv)
                                          + c * np.linalg.norm(G)))
        S = float(L * np.sum(w ** (1.0 / L)) - np.sum(np.log(w)) + data)
        state = dict(Q=Q, S=S, gQ=gQ, rel=rel)
        Qn = prior_map(G, c, L)
        if Qn is None:
            return None
        return Qn[idx], rel, state

    return anderson_root(evaluate, np.asarray(Q0, dtype=float)[idx], tol=tol, maxiter=maxiter)
