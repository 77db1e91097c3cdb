"""Least-squares fit of a linearised network (the lazy, kernel limit of training)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

import numpy as np

from .. import backend
from .._validate import real as _real
from ..nets import LinearizedNet, Net
from ..ntk import jacobian

__all__ = ["fit_linearized", "LinearizedFit"]


@dataclass
class LinearizedFit:
    """The result of :func:`fit_linearized`.

    Attributes
    ----------
    u : ndarray, shape (num_params,)
        The displacement from w0, in the order of ``net.flatten``.
    train_prediction : ndarray, shape (P,)
        f_lin on the training inputs.
    train_error : float
        mean_mu (y - f_lin)^2 over the training set.
    test_prediction : ndarray of shape (P_test,), or None without a test set
    test_error : float, or None without test labels

    ``fit["u"]`` reads a field as the former dict did (a KeyError for one that is None).
    """

    u: np.ndarray
    train_prediction: np.ndarray
    train_error: float
    test_prediction: Optional[np.ndarray] = None
    test_error: Optional[float] = None

    def keys(self):
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def __getitem__(self, key):
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key):
        return key in self.keys()


def fit_linearized(net, X, y, X_test=None, y_test=None, ridge: float = 0.0) -> LinearizedFit:
    r"""Least-squares fit of a linearised network's displacement u.

    Solves :math:`\min_u |J u - (y - f(w_0, X))|^2 + \text{ridge} |u|^2` with J the Jacobian
    at w0 (minimum-norm solution through LAPACK ``gelsd`` when ridge = 0; the kernel form
    u = J^T (J J^T + ridge I)^{-1} r when P <= num_params, else the normal equations).

    Parameters
    ----------
    net : FCNet, DeepFCNet, CNNNet, LCNNet or LinearizedNet
        Linearised around its parameters (a LinearizedNet around its base's w0).
    X, y : arrays
        Training inputs and labels (P,).
    X_test, y_test : arrays, optional
        Test set; errors are reported when y_test is given.
    ridge : float
        Non-negative ridge penalty on u.

    Returns
    -------
    LinearizedFit
        ``u`` (num_params,), ``train_error`` = mean_mu (y - f_lin)^2 over the training set,
        ``train_prediction``; with a test set also ``test_prediction`` and, with its labels,
        ``test_error`` (None otherwise).
    """
    from scipy import linalg as sla

    base = net.base if isinstance(net, LinearizedNet) else net
    if not isinstance(base, Net):
        raise TypeError(f"net must be one of lkr's nets, got {type(net).__name__}")
    ridge = _real(ridge, "ridge", nonneg=True)
    J = backend.to_numpy(jacobian(base, X)).astype(np.float64)
    y = np.asarray(backend.to_numpy(backend.asarray(y, "y")), dtype=np.float64)
    P = J.shape[0]
    if y.shape != (P,):
        raise ValueError(f"y must have shape ({P},), got {y.shape}")
    backend.check_finite(y, "y")
    f0 = np.asarray(backend.to_numpy(base.forward(X)), dtype=np.float64)
    b = y - f0
    if ridge == 0:
        u = sla.lstsq(J, b, check_finite=False)[0]
    elif P <= J.shape[1]:
        A = J @ J.T
        A[np.diag_indices_from(A)] += ridge
        u = J.T @ sla.solve(A, b, assume_a="pos")
    else:
        A = J.T @ J
        A[np.diag_indices_from(A)] += ridge
        u = sla.solve(A, J.T @ b, assume_a="pos")
    pred = f0 + J @ u
    out = LinearizedFit(u=u, train_prediction=pred, train_error=float(np.mean((y - pred) ** 2)))
    if X_test is not None:
        lin = LinearizedNet(base, u.astype(base.dtype))
        pt = np.asarray(backend.to_numpy(lin.forward(X_test)), dtype=np.float64)
        out.test_prediction = pt
        if y_test is not None:
            yt = np.asarray(backend.to_numpy(backend.asarray(y_test, "y_test")), np.float64)
            if yt.shape != pt.shape:
                raise ValueError(f"y_test must have shape {pt.shape}, got {yt.shape}")
            out.test_error = float(np.mean((yt - pt) ** 2))
    elif y_test is not None:
        raise ValueError("y_test given without X_test")
    return out

