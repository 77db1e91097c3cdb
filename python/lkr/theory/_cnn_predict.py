r"""Posterior predictive of the CNN/LCN theories at the fitted saddle: one or D outputs,
odd or non-central kernel, optionally with the 1/N corrections (docs/theory-beyond-odd.md
section 4, with K_R(Q) in place of q K: EXPERIMENTAL for the CNN).

One output: mean = k_R^T A^{-1} y, var = kappa_R - k_R^T A^{-1} k_R with k_R the cross
kernel (test x train) and kappa_R its test diagonal. D outputs: the cross kernel is
(P_test D) x (P D) example-major, and each test point gets the D x D covariance
kappa_R[(t a), (t b)] - k_R[(t a), :] A^{-1} k_R[(t b), :]^T.

The kernels come from the theory's local-kernel operator (``theory._cache``: ``kr`` for the
training set, ``test_kernels`` for the test points), so every operator with those methods
(one convolutional layer, or the last layer of a deep CNN) shares this predictor.
"""
from __future__ import annotations

import numpy as np

from . import _base
from ._correction import block_posterior, corrected_posterior, corrected_posterior_multi

__all__ = ["predict", "mean_coefficient"]


def mean_coefficient(theory):
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
    Qm_n = mean_coefficient(theory)
    Qm = None if Qm_n is None else theory._to_dev(Qm_n)
    D = theory.num_outputs
    T = theory.temperature
    K = op.kr(Q, theory.lambda1, Qm)
    k_cross, blocks = op.test_kernels(Xt, Q, theory.lambda1, Qm)
    y = theory._yvec()
    c = theory.alpha / theory.num_samples
    if D == 1:
        k_diag = blocks[:, 0, 0]
        if corrected:
            return corrected_posterior(K, k_cross, k_diag, y, T, c, name)
        K[xp.diag_indices(K.shape[0])] += T
        return _base.gp_posterior(_base.cholesky_of_A(K, T, name), y, k_cross, k_diag)
    if corrected:
        return corrected_posterior_multi(K, k_cross, blocks, y, T, c, name)
    K[xp.diag_indices(K.shape[0])] += T
    return block_posterior(_base.cholesky_of_A(K, T, name), y, k_cross, blocks)
