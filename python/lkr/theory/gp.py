r"""Infinite-width baselines: Gaussian-process regression with a fixed kernel.

At infinite width (alpha = 0) the saddle of every action is its prior value and the
posterior is a GP with A = T I + K_R:

``kernel="fc"``      K_R = K / lambda1 (Q = 1; K = :func:`lkr.nngp`)
``kernel="cnn"``     K_R = K_R(I) (Q = I: the infinite-width CNN and LCN kernel)
``kernel="pooled"``  K_R = K_R(11^T / Np) (global average pooling before the readout)

The GP is exact for every activation (the ReLU caveat of the finite-width actions does not
apply).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

from .. import backend
from .._arrays import ArrayLike
from .._kernel_args import resolve_lambdas
from ..activations import nngp_map
from ..deep_geometry import DeepGeometry
from ..geometry import PatchGeometry
from ..kernels import nngp, renormalized_kernel, renormalized_kernel_diag
from . import _base
from ._base import DEFAULT_MAXITER, DEFAULT_TOL, positive
from .result import Solution

__all__ = ["GPTheory"]

_KINDS = ("fc", "cnn", "pooled")


class GPTheory(_base._Theory):
    r"""Infinite-width Bayesian network: GP regression with the NNGP (FC), CNN (Q = I) or
    pooled (Q = 11^T/Np) kernel.

    mean = k^T A^{-1} y, variance = k00 - k^T A^{-1} k, A = T I + K_R, by Cholesky.

    Parameters
    ----------
    kernel : {"fc", "cnn", "pooled"}
    geometry : PatchGeometry or DeepGeometry, optional
        Required for "cnn" and "pooled". A DeepGeometry gives the deep CNN-GP: K_R of the
        final blocks of the L-layer kernel recursion (docs/deep-cnn.md section 4).
    temperature : float
        T >= 0 (0 allowed when K_R is positive definite on the training set).
    activation : {"erf", "linear", "relu"}
    lambda0, lambda1 : float
    lambdas : sequence of L + 1 floats, optional
        With a DeepGeometry: (lambda_0, ..., lambda_L), instead of lambda0/lambda1 (which
        then give lambda_0 and lambda_L, the hidden layers' precisions being 1).

    Notes
    -----
    ``fit`` returns a Solution with the fixed Q (1, I or 11^T/Np), ``action=None``,
    ``iterations=0`` and ``converged=True``; ``width`` is infinite and ``alpha`` 0.
    ``fit(X, Y)`` with Y (P, D) fits D independent GPs (the infinite-width limit of every
    multi-output theory, Q = I): mean (P_test, D), the same variance for every output.
    """

    width = float("inf")
    _multi_output = True  # Y (P, D): D independent GPs with one kernel

    def __init__(self, kernel: str = "fc",
                 geometry: Optional[Union[PatchGeometry, DeepGeometry]] = None,
                 temperature: float = 0.0, activation: str = "erf", lambda0: float = 1.0,
                 lambda1: float = 1.0, *, lambdas: Optional[Sequence[float]] = None,
                 tol: float = DEFAULT_TOL, maxiter: int = DEFAULT_MAXITER):
        if kernel not in _KINDS:
            raise ValueError(f"kernel must be one of {_KINDS}, got {kernel!r}")
        if kernel != "fc" and not isinstance(geometry, (PatchGeometry, DeepGeometry)):
            raise TypeError(f"kernel={kernel!r} needs geometry=PatchGeometry(...) or "
                            f"DeepGeometry(...), got {type(geometry).__name__}")
        self.lambdas = None
        if isinstance(geometry, DeepGeometry) and kernel != "fc":
            # the deep CNN-GP: (lambda_0, ..., lambda_L); lambda0/lambda1 = first and last
            self.lambdas = resolve_lambdas(lambdas, lambda0, lambda1, geometry.depth)
            lambda0, lambda1 = self.lambdas[0], self.lambdas[-1]
        elif lambdas is not None:
            raise ValueError("lambdas is for a DeepGeometry (kernel='cnn' or 'pooled'); use "
                             "lambda0 and lambda1 here")
        self.kernel = kernel
        self.geometry = geometry
        self.activation = _base.activation_name(activation)
        self.lambda0 = positive(lambda0, "lambda0")
        self.lambda1 = positive(lambda1, "lambda1")
        super().__init__(temperature_value=temperature, tol=tol, maxiter=maxiter)

    def _validate_X(self, X):
        Xa = _base.inputs(X)
        if self.geometry is not None:
            return self.geometry.flatten(Xa, "X")
        return Xa.reshape(Xa.shape[0], -1)

    def _cache_settings(self):
        g = None if self.geometry is None else self.geometry._key()
        return ("gp", self.kernel, g, self.activation, self.lambda0, self.lambda1,
                self.lambdas)

    def _Q(self, xp):
        if self.kernel == "fc":
            return 1.0
        Np = self.geometry.num_patches
        if self.kernel == "cnn":
            return xp.eye(Np)
        return xp.full((Np, Np), 1.0 / Np)

    def _kernels(self, X, Y=None):
        """K_R(X, Y) and, when Y is given, the diagonal K_R(y, y)."""
        xp = backend.array_module(X)
        if self.kernel == "fc":
            A = X if Y is None else Y
            K = nngp(A, None if Y is None else X, activation=self.activation,
                     lambda0=self.lambda0) / self.lambda1
            if Y is None:
                return K, None
            c = xp.einsum("pi,pi->p", Y, Y) / (self.lambda0 * Y.shape[1])
            return K, nngp_map(self.activation, c, c, c) / self.lambda1
        kw = dict(Q=self._Q(xp), geometry=self.geometry, activation=self.activation)
        if self.lambdas is not None:
            kw["lambdas"] = self.lambdas
        else:
            kw.update(lambda0=self.lambda0, lambda1=self.lambda1)
        if Y is None:
            return renormalized_kernel(X, **kw), None
        return renormalized_kernel(Y, X, **kw), renormalized_kernel_diag(Y, **kw)

    def _bind(self, X):
        K, _ = self._kernels(X)
        xp = backend.array_module(K)
        A = K + self.temperature * xp.eye(K.shape[0])
        return {"chol": _base.cholesky_of_A(A, self.temperature, "GPTheory")}

    def _solve(self, Q0, tol, maxiter):
        xp = backend.array_module(self._X)
        return Solution(Q=self._Q(xp), action=None, grad_norm=0.0, rel_grad_norm=0.0,
                        iterations=0, converged=True, tol=tol, evaluations=0,
                        message="infinite width: Q fixed at its prior value",
                        extra={"outputs": self.num_outputs} if self.num_outputs > 1 else {})

    def fit_path(self, X: ArrayLike, y: ArrayLike, widths: Sequence[float], **kwargs):
        """Not available: the GP is the infinite-width limit and has no width."""
        raise TypeError("GPTheory has no width (it is the infinite-width limit); use "
                        "fit_path on FCTheory, DeepFCTheory, CNNTheory or LCNTheory")

    def _predict(self, Xt):
        k_cross, k_diag = self._kernels(self._X, Xt)
        return _base.gp_posterior(self._cache["chol"], self._y, k_cross, k_diag)
