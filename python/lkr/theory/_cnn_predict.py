r"""Posterior predictive of the CNN/LCN theories at the fitted saddle: one or D outputs,
odd or non-central kernel, optionally with the 1/N corrections (THEORY2 section 4, with
K_R(Q) in place of q K: EXPERIMENTAL for the CNN).

One output: mean = k_R^T A^{-1} y, var = kappa_R - k_R^T A^{-1} k_R with k_R the cross
kernel (test x train) and kappa_R its test diagonal. D outputs: the cross kernel is
(P_test D) x (P D) example-major, and each test point gets the D x D covariance
kappa_R[(t a), (t b)] - k_R[(t a), :] A^{-1} k_R[(t b), :]^T.
"""
from __future__ import annotations

import numpy as np

from ..activations import nngp_map
from ..kernels import renormalized_kernel, renormalized_kernel_diag
from ..kernels_multi import patch_mean, renormalized_kernel_multi
from . import _base
from ._correction import corrected_posterior
from .result import Prediction

__all__ = ["predict"]


def _mean_coefficient(theory):
    """(I + Q)^{-1} - Qbar for the non-central action ((Rbar - Qbar) / E[s]^2 for the
    finite-filter one), else None."""
    sol = theory.solution
    if sol.conjugate is None:
        return None
    if sol.extra.get("filter_norm") == "exact":
        from ._cnn_finite_filter import mean_coefficient

        return mean_coefficient(theory)
    n = theory._n
    return np.linalg.inv(np.eye(n) + np.asarray(sol.conjugate)) - np.asarray(sol.Q)


def predict(theory, Xt, corrected):
    name = f"{type(theory).__name__}.predict"
    op = theory._cache
    xp = op.xp
    Q = theory._to_dev(theory.solution.Q)
    Qm_n = _mean_coefficient(theory)
    Qm = None if Qm_n is None else theory._to_dev(Qm_n)
    D = theory.num_outputs
    T = theory.temperature
    K = op.kr(Q, theory.lambda1, Qm)
    kw = dict(geometry=theory.geometry, activation=theory.activation, lambda0=theory.lambda0)
    y = theory._yvec()
    scale = 1.0 / (theory.lambda1 * theory.num_patches)
    if D == 1:
        k_cross = renormalized_kernel(Xt, theory._X, Q=Q, lambda1=theory.lambda1, **kw)
        k_diag = renormalized_kernel_diag(Xt, Q=Q, lambda1=theory.lambda1, **kw)
        if Qm is not None:
            mt = xp.asarray(patch_mean(Xt, **kw), dtype=np.float64)
            m = xp.asarray(op.means)
            k_cross = k_cross + scale * (mt @ Qm @ m.T)
            k_diag = k_diag + scale * xp.einsum("ti,ij,tj->t", mt, Qm, mt)
        if corrected:
            return corrected_posterior(K, k_cross, k_diag, y, T, theory.alpha / theory.num_samples,
                                       name)
        K[xp.diag_indices(K.shape[0])] += T
        chol = _base.cholesky_of_A(K, T, name)
        return _base.gp_posterior(chol, y, k_cross, k_diag)
    if corrected:
        raise ValueError(f"{name}: corrected=True is implemented for one output; got D = {D}")
    Pt = Xt.shape[0]
    k_cross = renormalized_kernel_multi(Xt, theory._X, Q=Q, D=D, lambda1=theory.lambda1, **kw)
    # test-point blocks: the local kernel of each test point with itself, (Pt, Np, Np)
    PXt = xp.asarray(theory.geometry.patches(Xt), dtype=np.float64)
    C = xp.einsum("tim,tjm->tij", PXt, PXt) / (theory.lambda0 * PXt.shape[2])
    cd = xp.einsum("tii->ti", C)
    Ktt = nngp_map(theory.activation, cd[:, :, None], C, cd[:, None, :])
    Np = theory.num_patches
    blocks = scale * xp.einsum("tij,iajb->tab", Ktt, Q.reshape(Np, D, Np, D))
    K[xp.diag_indices(K.shape[0])] += T
    chol = _base.cholesky_of_A(K, T, name)
    mean = (k_cross @ chol.solve(y)).reshape(Pt, D)
    V = chol.half_solve(k_cross.T).reshape(-1, Pt, D)
    cov = blocks - xp.einsum("rta,rtb->tab", V, V)
    cov = (cov + cov.transpose(0, 2, 1)) / 2
    var = xp.maximum(xp.einsum("taa->ta", cov), 0.0)
    return Prediction(mean=mean, variance=var, covariance=cov)
