r"""The linear algebra of the collapsed sampler (docs/training.md, "Collapsed sampler").

Features are kept scaled, ``G[c, j, :] = sigma_j(X) / sqrt(lambda_r N_eff)`` (C chains, n
features, P samples), so that the kernel given the hidden weights is K_W = G^T G and
A = T I + G^T G. The state of a chain is the *augmented factor* S (P, P + D):

    S[j, i] = L[i, j]  (j <= i < P; zero below),   S[j, P + d] = (L^{-1} Y)[j, d],

L the lower Cholesky factor of A: column j of L is row j of S, which is the layout the
compiled up/downdates stream through (csrc/lkr/cholupdate.hpp), and the columns P.. carry
b = L^{-1} Y along with every update. The collapsed log-likelihood is then

    log p(Y | W) = -1/2 sum_d |b_d|^2 - D sum_j log L_jj   (+ const).
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

__all__ = ["augmented_factor", "loglik", "predictive", "design"]


def augmented_factor(G, Y, T):
    """S (C, P, P + D) of every chain from the features G (C, n, P) and labels Y (P, D).

    One batched Cholesky of the bordered matrix [[A, Y], [Y^T, c I]] (c large enough to
    keep it positive definite): its first P columns are those of L and of (L^{-1} Y)^T.
    Raises numpy.linalg.LinAlgError when A is not positive definite (T > 0 prevents it).
    """
    C, n, P = G.shape
    D = Y.shape[1]
    M = np.zeros((C, P + D, P + D))
    np.matmul(G.transpose(0, 2, 1), G, out=M[:, :P, :P])
    idx = np.arange(P)
    M[:, idx, idx] += T
    M[:, :P, P:] = Y
    M[:, P:, :P] = Y.T
    # the Schur complement c I - Y^T A^-1 Y is >= 1 since A >= T I
    c = float((Y * Y).sum()) / T + 1.0
    jdx = np.arange(P, P + D)
    M[:, jdx, jdx] = c
    La = np.linalg.cholesky(M)
    return np.ascontiguousarray(La[:, :, :P].transpose(0, 2, 1))


def loglik(S):
    """The collapsed log-likelihood (C,) of each chain, up to a constant."""
    P = S.shape[1]
    D = S.shape[2] - P
    diag = np.diagonal(S[:, :, :P], axis1=1, axis2=2)
    return -0.5 * (S[:, :, P:] ** 2).sum(axis=(1, 2)) - D * np.log(diag).sum(axis=1)


def predictive(S, G, Gt):
    r"""The Gaussian-process predictive given the features, per chain.

    m0 = k^T A^{-1} Y and v0 = kappa - k^T A^{-1} k with k = G^T Gt (P, Pt) and
    kappa = |Gt_col|^2 (the prior variance of f at the test inputs given the features):
    returns m0 (C, Pt, D) and v0 (C, Pt). Cost O(P Pt n + P^2 Pt) per chain.
    """
    C, n, P = G.shape
    Pt = Gt.shape[2]
    D = S.shape[2] - P
    K0 = np.matmul(G.transpose(0, 2, 1), Gt)                  # (C, P, Pt)
    m0 = np.empty((C, Pt, D))
    v0 = np.einsum("cjt,cjt->ct", Gt, Gt)
    for c in range(C):
        # S[c, :, :P] = L^T (upper): trans="T" solves L V = K0
        V = scipy.linalg.solve_triangular(S[c, :, :P], K0[c], trans="T", lower=False,
                                          check_finite=False)
        m0[c] = V.T @ S[c, :, P:]
        v0[c] -= np.einsum("jt,jt->t", V, V)
    np.maximum(v0, 0.0, out=v0)  # rounding can make a vanishing variance slightly negative
    return m0, v0


def design(Y, P, name="Y"):
    """Labels as a float64 (P, D) array and whether they were given as a vector (P,)."""
    a = np.asarray(Y)
    vector = a.ndim == 1
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] != P or a.shape[1] < 1:
        raise ValueError(f"{name} must have shape ({P},) or ({P}, D), got {tuple(np.shape(Y))}")
    return np.ascontiguousarray(a, dtype=np.float64), vector
