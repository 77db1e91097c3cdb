"""Least-squares fit of a linearised network (the lazy, kernel limit of training)."""
from __future__ import annotations

import numpy as np

from .. import backend
from .._validate import real as _real
from ..nets import LinearizedNet, Net
from ..ntk import jacobian

__all__ = ["fit_linearized"]


def fit_linearized(net, X, y, X_test=None, y_test=None, ridge: float = 0.0) -> dict:
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
    dict
        ``u`` (num_params,), ``train_error`` = mean_mu (y - f_lin)^2 over the training set,
        ``train_prediction``; with a test set also ``test_prediction`` and ``test_error``.
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
    out = dict(u=u, train_prediction=pred, train_error=float(np.mean((y - pred) ** 2)))
    if X_test is not None:
        lin = LinearizedNet(base, u.astype(base.dtype))
        pt = np.asarray(backend.to_numpy(lin.forward(X_test)), dtype=np.float64)
        out["test_prediction"] = pt
        if y_test is not None:
            yt = np.asarray(backend.to_numpy(backend.asarray(y_test, "y_test")), np.float64)
            if yt.shape != pt.shape:
                raise ValueError(f"y_test must have shape {pt.shape}, got {yt.shape}")
            out["test_error"] = float(np.mean((yt - pt) ** 2))
    elif y_test is not None:
        raise ValueError("y_test given without X_test")
    return out

