"""Plain-NumPy references for docs/theory-beyond-odd.md sections 1.1, 2.1 and 4 (test-only).

Deliberately independent of lkr.theory: dense P x P (non-central FC) and PD x PD
(D outputs, targets stacked output by output) matrices, np.linalg.slogdet / solve, the
gradients written from the formulas, and roots found by scipy.optimize.root on the
gradient, checked to 1e-12.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize, root


def fc_C(X, lambda0=1.0):
    F = np.asarray(X, float).reshape(len(X), -1)
    return F @ F.T / (lambda0 * F.shape[1])


def relu_kernel(C1, c_a, c_b):
    """E[relu(u) relu(v)] written out (Cho & Saul / 2)."""
    n = np.sqrt(np.outer(c_a, c_b))
    u = np.clip(C1 / n, -1, 1)
    return n / (2 * np.pi) * (u * (np.pi - np.arccos(u)) + np.sqrt(1 - u * u))


def relu_mean(c):
    return np.sqrt(c / (2 * np.pi))


# -- 1.1 non-central FC ------------------------------------------------------------------
def nc_KR(Q0, Q1, K, m, lambda1):
    M = np.outer(m, m)
    return Q0 / lambda1 * (K - M) + M / (lambda1 * (1 + Q1))


def nc_action(Q0, Q1, K, m, y, T, alpha, lambda1):
    P = len(y)
    A = T * np.eye(P) + nc_KR(Q0, Q1, K, m, lambda1)
    sign, logdet = np.linalg.slogdet(A)
    assert sign > 0
    return -Q0 * Q1 + np.log(1 + Q1) + alpha / P * (logdet + y @ np.linalg.solve(A, y))


def nc_grad(Q0, Q1, K, m, y, T, alpha, lambda1):
    P = len(y)
    A = T * np.eye(P) + nc_KR(Q0, Q1, K, m, lambda1)
    Ai = np.linalg.inv(A)
    a = Ai @ y
    B = Ai - np.outer(a, a)
    M = np.outer(m, m)
    c = alpha / (P * lambda1)
    return np.array([-Q1 + c * np.sum(B * (K - M)),
                     -Q0 + 1 / (1 + Q1) - c / (1 + Q1) ** 2 * (m @ Ai @ m - (a @ m) ** 2)])


def nc_solve(K, m, y, T, alpha, lambda1):
    sol = root(lambda q: nc_grad(q[0], q[1], K, m, y, T, alpha, lambda1), [1.0, 0.0],
               method="hybr", options={"xtol": 1e-14})
    g = nc_grad(*sol.x, K, m, y, T, alpha, lambda1)
    assert np.abs(g).max() < 1e-12, g
    return sol.x


def nc_predict(Q0, Q1, K, k, kappa, m, m0, y, T, lambda1):
    """k (Pt, P), kappa (Pt,), m0 (Pt,)."""
    P = len(y)
    A = T * np.eye(P) + nc_KR(Q0, Q1, K, m, lambda1)
    kR = Q0 / lambda1 * (k - np.outer(m0, m)) + np.outer(m0, m) / (lambda1 * (1 + Q1))
    kap = Q0 / lambda1 * (kappa - m0 ** 2) + m0 ** 2 / (lambda1 * (1 + Q1))
    mean = kR @ np.linalg.solve(A, y)
    var = kap - np.einsum("ij,ji->i", kR, np.linalg.solve(A, kR.T))
    return mean, var


# -- 4. 1/N corrections -------------------------------------------------------------------
def corrected_predict(KR, kR, kap, y, T, alpha):
    P = len(y)
    A = T * np.eye(P) + KR
    Ai = np.linalg.inv(A)
    a = Ai @ y
    B = Ai - np.outer(a, a)
    c = alpha / P
    KRc = KR - c * KR @ B @ KR
    kRc = kR - c * kR @ B @ KR
    kapc = kap - c * np.diag(kR @ B @ kR.T)
    Ac = T * np.eye(P) + KRc
    mean = kRc @ np.linalg.solve(Ac, y)
    var = kapc - np.diag(kRc @ np.linalg.solve(Ac, kRc.T))
    return mean, var


# -- 2.1 D outputs ------------------------------------------------------------------------
def _mpow(Q, p):
    s, V = np.linalg.eigh((Q + Q.T) / 2)
    return (V * s ** p) @ V.T


def mo_action(Q, K, Y, T, alpha, L=1):
    P, D = Y.shape
    A = T * np.eye(P * D) + np.kron(Q, K)
    yv = Y.T.reshape(-1)  # output-major
    sign, logdet = np.linalg.slogdet(A)
    assert sign > 0
    return (L * np.trace(_mpow(Q, 1.0 / L)) - np.linalg.slogdet(Q)[1]
            + alpha / P * (logdet + yv @ np.linalg.solve(A, yv)))


def mo_grad(Q, K, Y, T, alpha, L=1):
    P, D = Y.shape
    A = T * np.eye(P * D) + np.kron(Q, K)
    Ai = np.linalg.inv(A)
    a = Ai @ Y.T.reshape(-1)
    B = Ai - np.outer(a, a)
    G = np.array([[np.sum(B[i * P:(i + 1) * P, j * P:(j + 1) * P] * K) for j in range(D)]
                  for i in range(D)])
    return _mpow(Q, 1.0 / L - 1) - np.linalg.inv(Q) + alpha / P * (G + G.T) / 2


def mo_solve(K, Y, T, alpha, L=1):
    D = Y.shape[1]
    iu = np.triu_indices(D)

    def full(x):
        Q = np.zeros((D, D))
        Q[iu] = x
        return Q + np.triu(Q, 1).T

    # a rough minimum of S over Cholesky factors (generic Nelder-Mead, no gradient), then the
    # root of the gradient from there
    il = np.tril_indices(D)

    def chol_action(x):
        Lc = np.zeros((D, D))
        Lc[il] = x
        try:
            return mo_action(Lc @ Lc.T + 1e-12 * np.eye(D), K, Y, T, alpha, L)
        except (AssertionError, np.linalg.LinAlgError):
            return np.inf

    x0 = minimize(chol_action, np.eye(D)[il], method="Nelder-Mead",
                  options={"xatol": 1e-6, "fatol": 1e-12, "maxiter": 20000,
                           "maxfev": 20000}).x
    Lc = np.zeros((D, D))
    Lc[il] = x0
    sol = root(lambda x: mo_grad(full(x), K, Y, T, alpha, L)[iu], (Lc @ Lc.T)[iu],
               method="hybr", options={"xtol": 1e-14})
    Q = full(sol.x)
    g = mo_grad(Q, K, Y, T, alpha, L)
    assert np.abs(g).max() < 1e-12, np.abs(g).max()
    return Q


def mo_predict(Q, K, k, kappa, Y, T):
    """mean (Pt, D), covariance (Pt, D, D) from the dense PD x PD system."""
    P, D = Y.shape
    A = T * np.eye(P * D) + np.kron(Q, K)
    alpha_v = np.linalg.solve(A, Y.T.reshape(-1))
    means, covs = [], []
    for t in range(k.shape[0]):
        Qk = np.kron(Q, k[t][:, None])  # (PD, D): (Q (x) k)
        means.append(Qk.T @ alpha_v)
        covs.append(Q * kappa[t] - Qk.T @ np.linalg.solve(A, Qk))
    return np.array(means), np.array(covs)
