"""Plain-NumPy reference for the non-central FC action with D outputs and for the 1/N-corrected
predictor with D outputs (docs/theory-beyond-odd.md sections 3 and 4; test-only).

Deliberately independent of lkr.theory: the PD x PD matrices are formed densely, targets
stacked output by output (FC: index a P + mu), np.linalg.slogdet / inv, the gradients written
from the formulas block by block, and the saddle found by MINPACK's hybrid root finder
(scipy.optimize.root) on the gradient to ~1e-12.
"""
from __future__ import annotations

import numpy as np
import scipy.optimize as so


def _sym(v, D):
    iu = np.triu_indices(D)
    M = np.zeros((D, D))
    M[iu] = v
    return M + np.triu(M, 1).T


class FCProblem:
    """Non-central FC with D outputs, dense: K (P, P) the NNGP kernel, m (P,) the mean
    activations, Y (P, D)."""

    def __init__(self, K, m, Y, *, width, T, lambda1=1.0):
        self.K, self.m = np.asarray(K, float), np.asarray(m, float)
        self.Y = np.asarray(Y, float).reshape(len(K), -1)
        self.P, self.D = self.Y.shape
        self.T, self.lambda1 = float(T), float(lambda1)
        self.alpha = self.P / width
        self.M = np.outer(self.m, self.m)

    def y(self):
        return self.Y.T.reshape(-1)  # output-major

    def KR(self, Qbar, Qc):
        Sm = np.linalg.inv(np.eye(self.D) + Qc)
        return (np.kron(Qbar, self.K - self.M) + np.kron(Sm, self.M)) / self.lambda1

    def A(self, Qbar, Qc):
        return self.T * np.eye(self.P * self.D) + self.KR(Qbar, Qc)

    def action(self, Qbar, Qc):
        A = self.A(Qbar, Qc)
        s, logdet = np.linalg.slogdet(A)
        assert s > 0
        y = self.y()
        s2, ld2 = np.linalg.slogdet(np.eye(self.D) + Qc)
        assert s2 > 0
        return (-np.sum(Qbar * Qc) + ld2
                + self.alpha / self.P * (logdet + y @ np.linalg.solve(A, y)))

    def B(self, Qbar, Qc):
        Ai = np.linalg.inv(self.A(Qbar, Qc))
        a = Ai @ self.y()
        return Ai - np.outer(a, a)

    def gradient(self, Qbar, Qc):
        P, D = self.P, self.D
        B = self.B(Qbar, Qc)
        Gc = np.empty((D, D))
        Gm = np.empty((D, D))
        for a in range(D):
            for b in range(D):
                blk = B[a * P:(a + 1) * P, b * P:(b + 1) * P]
                Gc[a, b] = np.sum(blk * (self.K - self.M))
                Gm[a, b] = self.m @ blk @ self.m
        c = self.alpha / (P * self.lambda1)
        Sm = np.linalg.inv(np.eye(D) + Qc)
        gb = -Qc + c * (Gc + Gc.T) / 2
        gq = -Qbar + Sm - c * Sm @ ((Gm + Gm.T) / 2) @ Sm
        return (gb + gb.T) / 2, (gq + gq.T) / 2

    def solve(self, x0=None):
        D = self.D
        iu = np.triu_indices(D)
        k = len(iu[0])

        def F(x):
            gb, gq = self.gradient(_sym(x[:k], D), _sym(x[k:], D))
            return np.concatenate([gb[iu], gq[iu]])

        if x0 is None:
            x0 = np.concatenate([np.eye(D)[iu], np.zeros(k)])
        sol = so.root(F, x0, method="hybr", options={"xtol": 1e-14})
        assert np.linalg.norm(F(sol.x)) < 1e-11, (sol.message, np.linalg.norm(F(sol.x)))
        return _sym(sol.x[:k], D), _sym(sol.x[k:], D)

    def test_kernels(self, Qbar, Qc, k, kappa, m0):
        """k_R (Pt D, P D) and kappa_R blocks (Pt, D, D), rows test-point-major (t D + a),
        columns output-major (a P + mu)."""
        D = self.D
        Sm = np.linalg.inv(np.eye(D) + Qc)
        Pt = k.shape[0]
        kc = k - np.outer(m0, self.m)
        km = np.outer(m0, self.m)
        kR = np.zeros((Pt * D, self.P * D))
        blocks = np.zeros((Pt, D, D))
        for t in range(Pt):
            for a in range(D):
                for b in range(D):
                    kR[t * D + a, b * self.P:(b + 1) * self.P] = (
                        Qbar[a, b] * kc[t] + Sm[a, b] * km[t]) / self.lambda1
                    blocks[t, a, b] = (Qbar[a, b] * (kappa[t] - m0[t] ** 2)
                                       + Sm[a, b] * m0[t] ** 2) / self.lambda1
        return kR, blocks

    def predict(self, Qbar, Qc, k, kappa, m0, corrected=False):
        kR, blocks = self.test_kernels(Qbar, Qc, k, kappa, m0)
        KR = self.KR(Qbar, Qc)
        return posterior(KR, kR, blocks, self.y(), self.T,
                         self.alpha / self.P if corrected else None)


def posterior(KR, kR, blocks, y, T, c=None):
    """GP posterior mean (Pt, D) and covariance (Pt, D, D) with D x D test blocks, written
    out; with ``c`` the 1/N-corrected kernels of docs/theory-beyond-odd.md section 4:
    K_R^c = K_R - c K_R B K_R, k_R^c = k_R - c k_R B K_R,
    kappa_R^c = kappa_R - c [k_R B k_R^T] (the D x D diagonal blocks of each test point)."""
    n = len(y)
    Pt, D = blocks.shape[:2]
    if c is not None:
        Ai = np.linalg.inv(T * np.eye(n) + KR)
        a = Ai @ y
        B = Ai - np.outer(a, a)
        kBk = kR @ B @ kR.T
        blocks = blocks - c * np.stack([kBk[t * D:(t + 1) * D, t * D:(t + 1) * D]
                                        for t in range(Pt)])
        KR, kR = KR - c * KR @ B @ KR, kR - c * kR @ B @ KR
    A = T * np.eye(n) + KR
    mean = (kR @ np.linalg.solve(A, y)).reshape(Pt, D)
    full = kR @ np.linalg.solve(A, kR.T)
    cov = blocks - np.stack([full[t * D:(t + 1) * D, t * D:(t + 1) * D] for t in range(Pt)])
    return mean, cov
