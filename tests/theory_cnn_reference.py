"""Plain-NumPy reference for the CNN/LCN theories beyond one odd output
(docs/theory-beyond-odd.md sections 1.2, 2.2, 4): the local kernel materialised as a
(P, P', Np, Np) tensor, the actions and gradients written out term by term, and saddles
found by MINPACK's hybrid root finder on the gradient (scipy.optimize.root) to a gradient
of ~1e-13. Independent of lkr.theory."""
from __future__ import annotations

import numpy as np
import scipy.optimize as so
from reference import geometry_patches, ref_local_kernel


def mean_of(PX, act, lambda0):
    c = np.einsum("pik,pik->pi", PX, PX) / (lambda0 * PX.shape[2])
    return np.sqrt(c / (2 * np.pi)) if act == "relu" else np.zeros_like(c)


class Problem:
    def __init__(self, X, Y, g, *, width, T, act, lambda0=1.0, lambda1=1.0, lcn=False):
        self.PX = np.asarray(geometry_patches(X, g), float)
        self.g, self.act, self.lambda0, self.lambda1 = g, act, lambda0, lambda1
        self.K = ref_local_kernel(self.PX, None, act, lambda0)
        self.m = mean_of(self.PX, act, lambda0)
        Y = np.asarray(Y, float)
        self.Y = Y.reshape(len(Y), -1)
        self.P, self.D = self.Y.shape
        self.Np = self.K.shape[2]
        self.n = self.Np * self.D
        self.T, self.alpha = T, self.P / width
        self.c = self.alpha / (self.P * lambda1 * self.Np)
        self.mask = (np.kron(np.eye(self.Np), np.ones((self.D, self.D))).astype(bool) if lcn
                     else np.ones((self.n, self.n), bool))

    # kernels -------------------------------------------------------------------------
    def kr(self, Q, Qm=None, K=None, m1=None, m2=None):
        K = self.K if K is None else K
        P1, P2 = K.shape[:2]
        D, Np = self.D, self.Np
        out = np.einsum("mnij,iajb->manb", K, Q.reshape(Np, D, Np, D))
        if Qm is not None:
            m1 = self.m if m1 is None else m1
            m2 = self.m if m2 is None else m2
            out = out + np.einsum("mi,iajb,nj->manb", m1, Qm.reshape(Np, D, Np, D), m2)
        return out.reshape(P1 * D, P2 * D) / (self.lambda1 * Np)

    def _B(self, A):
        Ai = np.linalg.inv(A)
        a = Ai @ self.Y.reshape(-1)
        return Ai - np.outer(a, a), a

    def data(self, A):
        y = self.Y.reshape(-1)
        return self.alpha / self.P * (y @ np.linalg.solve(A, y) + np.linalg.slogdet(A)[1])

    def G(self, B, centred=False):
        D, P = self.D, self.P
        B4 = B.reshape(P, D, P, D)
        G = np.einsum("mnij,manb->iajb", self.K, B4).reshape(self.n, self.n)
        Gm = np.einsum("mi,manb,nj->iajb", self.m, B4, self.m).reshape(self.n, self.n)
        return (G - Gm, Gm) if centred else G

    # odd action ----------------------------------------------------------------------
    def odd_action(self, Q):
        A = self.T * np.eye(self.P * self.D) + self.kr(Q)
        return np.trace(Q) - np.linalg.slogdet(Q)[1] + self.data(A)

    def odd_gradient(self, Q):
        A = self.T * np.eye(self.P * self.D) + self.kr(Q)
        B, _ = self._B(A)
        g = np.eye(self.n) - np.linalg.inv(Q) + self.c * self.G(B)
        return np.where(self.mask, (g + g.T) / 2, 0.0)

    # non-central action ----------------------------------------------------------------
    def nc_action(self, Qbar, Qc):
        Sm = np.linalg.inv(np.eye(self.n) + Qc)
        A = self.T * np.eye(self.P * self.D) + self.kr(Qbar, Sm - Qbar)
        return -np.sum(Qbar * Qc) + np.linalg.slogdet(np.eye(self.n) + Qc)[1] + self.data(A)

    def nc_gradient(self, Qbar, Qc):
        Sm = np.linalg.inv(np.eye(self.n) + Qc)
        A = self.T * np.eye(self.P * self.D) + self.kr(Qbar, Sm - Qbar)
        B, _ = self._B(A)
        Gc, Gm = self.G(B, centred=True)
        gb = -Qc + self.c * Gc
        gq = -Qbar + Sm - self.c * Sm @ Gm @ Sm
        return (np.where(self.mask, (gb + gb.T) / 2, 0.0),
                np.where(self.mask, (gq + gq.T) / 2, 0.0))

    # root finding ---------------------------------------------------------------------
    def _idx(self):
        iu = np.triu_indices(self.n)
        keep = self.mask[iu]
        return iu[0][keep], iu[1][keep]

    def _sym(self, v):
        M = np.zeros((self.n, self.n))
        M[self._idx()] = v
        return M + np.triu(M, 1).T

    def solve_odd(self):
        idx = self._idx()
        sol = so.root(lambda v: self.odd_gradient(self._sym(v))[idx],
                      np.eye(self.n)[idx], method="hybr", options={"xtol": 1e-14})
        Q = self._sym(sol.x)
        assert np.linalg.norm(self.odd_gradient(Q)) < 1e-11, sol.message
        return Q

    def solve_noncentral(self):
        idx = self._idx()
        k = len(idx[0])

        def F(v):
            gb, gq = self.nc_gradient(self._sym(v[:k]), self._sym(v[k:]))
            return np.concatenate([gb[idx], gq[idx]])

        x0 = np.concatenate([np.eye(self.n)[idx], np.zeros(k)])
        sol = so.root(F, x0, method="hybr", options={"xtol": 1e-14})
        Qbar, Qc = self._sym(sol.x[:k]), self._sym(sol.x[k:])
        assert np.linalg.norm(F(sol.x)) < 1e-11, sol.message
        return Qbar, Qc

    # prediction ----------------------------------------------------------------------
    def predict(self, Xt, Q, Qc=None, corrected=False):
        PT = np.asarray(geometry_patches(Xt, self.g), float)
        Kx = ref_local_kernel(PT, self.PX, self.act, self.lambda0)
        Kt = np.stack([ref_local_kernel(PT[t:t + 1], None, self.act, self.lambda0)[0, 0]
                       for t in range(len(PT))])[:, None]  # (Pt, 1, Np, Np)
        mt = mean_of(PT, self.act, self.lambda0)
        Qm = None if Qc is None else np.linalg.inv(np.eye(self.n) + Qc) - Q
        KR = self.kr(Q, Qm)
        kR = self.kr(Q, Qm, K=Kx, m1=mt)
        D = self.D
        blocks = np.stack([self.kr(Q, Qm, K=Kt[t:t + 1, :], m1=mt[t:t + 1], m2=mt[t:t + 1])
                           for t in range(len(PT))])  # (Pt, D, D)
        y = self.Y.reshape(-1)
        if corrected:  # docs/theory-beyond-odd.md section 4, written out
            c = self.alpha / self.P
            A = self.T * np.eye(len(y)) + KR
            B, _ = self._B(A)
            kappa = np.array([b[0, 0] for b in blocks]) - c * np.einsum(
                "ij,jk,ik->i", kR, B, kR)
            KR, kR = KR - c * KR @ B @ KR, kR - c * kR @ B @ KR
            blocks = kappa[:, None, None]
        A = self.T * np.eye(len(y)) + KR
        mean = kR @ np.linalg.solve(A, y)
        Pt = len(PT)
        kR3 = kR.reshape(Pt, D, -1)
        cov = blocks - np.einsum("tar,rs,tbs->tab", kR3, np.linalg.inv(A), kR3)
        return mean.reshape(Pt, D), cov
