"""Naive, test-only implementations of the effective actions (docs/theory.md section 2).

Deliberately independent of lkr.theory: the 4-index local kernel is materialised with
einsum and lkr.activations.nngp_map, K_R and the actions use np.linalg on dense matrices,
gradients are central differences, and solutions come from a generic SciPy optimiser on a
Cholesky parametrisation of Q.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from lkr.activations import nngp_map


def patches(X, geometry):
    flat = np.asarray(X, float).reshape(X.shape[0], -1)
    return flat[:, geometry.patch_index()]


def local_kernel(X, geometry, activation="erf", lambda0=1.0):
    """K[mu, nu, i, j], materialised."""
    p = patches(X, geometry)
    M = p.shape[2]
    C = np.einsum("pim,qjm->pqij", p, p) / (lambda0 * M)
    d = np.einsum("pim,pim->pi", p, p) / (lambda0 * M)  # C_ii^{mu mu}
    return nngp_map(activation, d[:, None, :, None], C, d[None, :, None, :])


def fc_kernel(X, activation="erf", lambda0=1.0):
    flat = np.asarray(X, float).reshape(X.shape[0], -1)
    C = flat @ flat.T / (lambda0 * flat.shape[1])
    d = np.diag(C)
    return nngp_map(activation, d[:, None], C, d[None, :])


def kr(T4, Q, lambda1=1.0):
    Np = T4.shape[-1]
    return np.einsum("pqij,ij->pq", T4, Q) / (lambda1 * Np)


def data_term(K_R, y, T, alpha):
    P = len(y)
    A = T * np.eye(P) + K_R
    sign, logdet = np.linalg.slogdet(A)
    if sign <= 0:
        return np.inf
    return alpha / P * (y @ np.linalg.solve(A, y) + logdet)


def cnn_action(Q, T4, y, T, alpha, lambda1=1.0):
    sign, logdetQ = np.linalg.slogdet(Q)
    if sign <= 0:
        return np.inf
    return np.trace(Q) - logdetQ + data_term(kr(T4, Q, lambda1), y, T, alpha)


def fc_action(Q, K, y, T, alpha, lambda1=1.0):
    return Q - np.log(Q) + data_term(Q * K / lambda1, y, T, alpha)


def nested_kernel(X, Qs, lambdas, activation):
    flat = np.asarray(X, float).reshape(X.shape[0], -1)
    K = flat @ flat.T / (lambdas[0] * flat.shape[1])
    for q, lam in zip(Qs, lambdas[1:]):
        d = np.diag(K)
        K = q / lam * nngp_map(activation, d[:, None], K, d[None, :])
    return K


def vanilla_kernel(X, lambdas, activation):
    return nested_kernel(X, np.ones(len(lambdas) - 1), lambdas, activation)


def deep_action(Qs, X, y, T, alpha, lambdas, activation, variant):
    Qs = np.asarray(Qs, float)
    if np.any(Qs <= 0):
        return np.inf
    if variant == "vanilla":
        K_R = np.prod(Qs) * vanilla_kernel(X, lambdas, activation)
    else:
        K_R = nested_kernel(X, Qs, lambdas, activation)
    return np.sum(Qs - np.log(Qs)) + data_term(K_R, y, T, alpha)


# -- generic numerics -----------------------------------------------------------------
def central_gradient_sym(f, Q, h=1e-6):
    """dS/dQ_ij for a function of a symmetric matrix, as the symmetric matrix G with
    dS = sum G_ij dQ_ij for symmetric dQ (so G_ij = G_ji = half the pair derivative)."""
    n = Q.shape[0]
    G = np.zeros_like(Q)
    for i in range(n):
        for j in range(i, n):
            E = np.zeros_like(Q)
            E[i, j] = E[j, i] = 1.0
            step = h * max(1.0, abs(Q[i, j]))
            d = (f(Q + step * E) - f(Q - step * E)) / (2 * step)
            G[i, j] = G[j, i] = d if i == j else d / 2
    return G


def central_gradient(f, x, h=1e-6):
    x = np.asarray(x, float)
    g = np.zeros_like(x)
    for k in range(x.size):
        e = np.zeros_like(x)
        step = h * max(1.0, abs(x.flat[k]))
        e.flat[k] = step
        g.flat[k] = (f(x + e) - f(x - e)) / (2 * step)
    return g


def _chol_to_Q(theta, n, diagonal):
    if diagonal:
        return np.diag(np.exp(theta))
    L = np.zeros((n, n))
    L[np.tril_indices(n)] = theta
    L[np.diag_indices(n)] = np.exp(np.diag(L))
    return L @ L.T


def fit_cnn(T4, y, T, alpha, lambda1=1.0, diagonal=False):
    """Minimise the CNN (or LCN) action with SciPy BFGS (central-difference gradients) over
    Q = L L^T, L lower triangular with log-diagonal."""
    n = T4.shape[-1]
    m = n if diagonal else n * (n + 1) // 2

    def f(theta):
        return cnn_action(_chol_to_Q(theta, n, diagonal), T4, y, T, alpha, lambda1)

    def jac(theta):
        return central_gradient(f, theta, h=1e-6)

    res = minimize(f, np.zeros(m), jac=jac, method="BFGS", options={"gtol": 1e-10,
                                                                     "maxiter": 2000})
    return _chol_to_Q(res.x, n, diagonal)


def fit_scalar(f, lo=1e-6, hi=1e6):
    """Global minimiser of a 1-D function of q > 0 (grid in log q, then bounded Brent)."""
    from scipy.optimize import minimize_scalar

    s = np.linspace(np.log(lo), np.log(hi), 2001)
    vals = np.array([f(np.exp(t)) for t in s])
    k = int(np.argmin(vals))
    a, b = s[max(k - 1, 0)], s[min(k + 1, len(s) - 1)]
    res = minimize_scalar(lambda t: f(np.exp(t)), bounds=(a, b), method="bounded",
                          options={"xatol": 1e-13})
    return float(np.exp(res.x))
