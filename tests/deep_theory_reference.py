"""A dense NumPy reference of DeepCNNTheory with D outputs (docs/deep-cnn.md section 6): the
final blocks K_L and the last layer's variances from the plain recursion of
tests/deep_reference.py, the (P D) x (P D) matrices written out, the central action with the
L-layer prior and the non-central action with the last layer's means, saddles by MINPACK's
root finder on the gradient. Independent of lkr.theory."""
from __future__ import annotations

import numpy as np
import scipy.optimize as so
from deep_reference import ref_for


def _sym(A):
    return (A + A.T) / 2


class DeepProblem:
    """The deep CNN theory on (X, Y) with the test inputs Xt stacked in (kernels of the
    joint set computed once)."""

    def __init__(self, dg, X, Y, Xt, *, width, T, act, lams):
        P, Pt = len(X), len(Xt)
        K, v = ref_for(dg, np.concatenate([X, Xt]), None, act, lams, with_variances=True)
        self.Kall = K
        self.mall = np.sqrt(v / (2 * np.pi)) if act == "relu" else np.zeros_like(v)
        self.K, self.m = K[:P, :P], self.mall[:P]
        self.P, self.Pt = P, Pt
        Y = np.asarray(Y, float)
        self.Y = Y.reshape(P, -1)
        self.D = self.Y.shape[1]
        self.d = K.shape[2]
        self.n = self.d * self.D
        self.L, self.T = dg.depth, T
        self.alpha = P / width
        self.scale = 1.0 / (lams[-1] * self.d)
        self.c = self.alpha / P * self.scale

    def kr(self, Q, Qm=None, rows=slice(None), cols=slice(None)):
        d, D = self.d, self.D
        K = self.Kall[rows, cols]
        out = np.einsum("mnij,iajb->manb", K, Q.reshape(d, D, d, D))
        if Qm is not None:
            out = out + np.einsum("mi,iajb,nj->manb", self.mall[rows], Qm.reshape(d, D, d, D),
                                  self.mall[cols])
        return out.reshape(K.shape[0] * D, K.shape[1] * D) * self.scale

    def _A(self, Q, Qm=None):
        tr = slice(0, self.P)
        return self.T * np.eye(self.P * self.D) + self.kr(Q, Qm, tr, tr)

    def _data_B(self, A):
        y = self.Y.reshape(-1)
        Ai = np.linalg.inv(A)
        a = Ai @ y
        data = self.alpha / self.P * (y @ a + np.linalg.slogdet(A)[1])
        return data, Ai - np.outer(a, a)

    def G(self, B, centred=False):
        D, P = self.D, self.P
        B4 = B.reshape(P, D, P, D)
        G = np.einsum("mnij,manb->iajb", self.K, B4).reshape(self.n, self.n)
        Gm = np.einsum("mi,manb,nj->iajb", self.m, B4, self.m).reshape(self.n, self.n)
        return (_sym(G - Gm), _sym(Gm)) if centred else _sym(G)

    # central action, L-layer prior ------------------------------------------------------
    def prior(self, Q):
        w, U = np.linalg.eigh(Q)
        L = self.L
        val = L * np.sum(w ** (1 / L)) - np.sum(np.log(w))
        grad = (U * w ** (1 / L - 1)) @ U.T - (U / w) @ U.T
        return val, _sym(grad)

    def odd_action(self, Q):
        data, _ = self._data_B(self._A(Q))
        return self.prior(Q)[0] + data

    def odd_gradient(self, Q):
        _, B = self._data_B(self._A(Q))
        return self.prior(Q)[1] + self.c * self.G(B)

    # non-central action ------------------------------------------------------------------
    def nc_action(self, Qbar, Qc):
        I = np.eye(self.n)
        Sm = np.linalg.inv(I + Qc)
        data, _ = self._data_B(self._A(Qbar, Sm - Qbar))
        return -np.sum(Qbar * Qc) + np.linalg.slogdet(I + Qc)[1] + data

    def nc_gradient(self, Qbar, Qc):
        Sm = np.linalg.inv(np.eye(self.n) + Qc)
        _, B = self._data_B(self._A(Qbar, Sm - Qbar))
        Gc, Gm = self.G(B, centred=True)
        return _sym(-Qc + self.c * Gc), _sym(-Qbar + Sm - self.c * Sm @ Gm @ Sm)

    # roots -------------------------------------------------------------------------------
    def _sym_from(self, v):
        M = np.zeros((self.n, self.n))
        M[np.triu_indices(self.n)] = v
        return M + np.triu(M, 1).T

    def solve_odd(self):
        iu = np.triu_indices(self.n)
        sol = so.root(lambda v: self.odd_gradient(self._sym_from(v))[iu], np.eye(self.n)[iu],
                      method="hybr", options={"xtol": 1e-14})
        Q = self._sym_from(sol.x)
        assert np.linalg.norm(self.odd_gradient(Q)) < 1e-10, sol.message
        return Q

    def solve_noncentral(self):
        iu = np.triu_indices(self.n)
        k = len(iu[0])

        def F(v):
            gb, gq = self.nc_gradient(self._sym_from(v[:k]), self._sym_from(v[k:]))
            return np.concatenate([gb[iu], gq[iu]])

        x0 = np.concatenate([np.eye(self.n)[iu], np.zeros(k)])
        sol = so.root(F, x0, method="hybr", options={"xtol": 1e-14})
        assert np.linalg.norm(F(sol.x)) < 1e-10, sol.message
        return self._sym_from(sol.x[:k]), self._sym_from(sol.x[k:])

    # predictor ---------------------------------------------------------------------------
    def predict(self, Q, Qc=None):
        """Posterior mean (Pt, D) and covariance (Pt, D, D) at the test inputs."""
        Qm = None if Qc is None else np.linalg.inv(np.eye(self.n) + Qc) - Q
        tr, te = slice(0, self.P), slice(self.P, None)
        A = self.T * np.eye(self.P * self.D) + self.kr(Q, Qm, tr, tr)
        kR = self.kr(Q, Qm, te, tr)
        kap = self.kr(Q, Qm, te, te).reshape(self.Pt, self.D, self.Pt, self.D)
        blocks = np.stack([kap[t, :, t, :] for t in range(self.Pt)])
        mean = kR @ np.linalg.solve(A, self.Y.reshape(-1))
        kR3 = kR.reshape(self.Pt, self.D, -1)
        cov = blocks - np.einsum("tar,rs,tbs->tab", kR3, np.linalg.inv(A), kR3)
        return mean.reshape(self.Pt, self.D), cov
