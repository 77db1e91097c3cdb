r"""Gradient descent and SGD on lkr's networks (:func:`gradient_descent`).

Full-batch GD or minibatch SGD on (1/2) sum (y - f)^2 + (wd/2) |theta|^2, on the nets and on
linearised nets (:func:`lkr.nets.linearize`), for the lazy-versus-feature-learning
comparison.
"""
from __future__ import annotations

import time

import numpy as np

from .. import backend
from .._blas import blas_threads
from .._json import jsonable
from .._validate import integer as _int
from .._validate import labels as _labels
from .._validate import real as _real
from .._validate import samples as _samples
from .._validate import seed as _seed
from . import _common as _c

__all__ = ["gradient_descent", "GDResult"]


class GDResult:
    """What :func:`gradient_descent` returns.

    Attributes
    ----------
    params : dict
        Final parameters (no chain axis).
    net : the net with those parameters (``net.with_params(params)``), when it supports it
    prediction : ndarray (P_test,) or None
        f at X_test after training.
    trace : dict
        ``step``, ``loss`` (the full training loss), ``train_error`` (mean_mu (y - f)^2),
        ``test_error`` (with y_test), ``distance`` (|theta - theta0| / |theta0| per
        parameter: small in the lazy regime, order one when features are learned).
    settings : dict
    """

    def __init__(self, params, net, prediction, trace, settings, elapsed_s):
        self.params, self.net, self.prediction = params, net, prediction
        self.trace, self.settings, self.elapsed_s = trace, settings, float(elapsed_s)

    @property
    def train_error(self):
        return self.trace["train_error"][-1] if self.trace["train_error"] else float("nan")

    @property
    def test_error(self):
        te = self.trace.get("test_error")
        return te[-1] if te else None

    def to_dict(self) -> dict:
        return jsonable(dict(settings=self.settings, trace=self.trace, prediction=self.prediction,
                        elapsed_s=self.elapsed_s))

    def __repr__(self):
        return (f"GDResult(steps={self.settings['steps']}, train_error={self.train_error:.4g}, "
                f"test_error={self.test_error})")


def gradient_descent(net, X, y, lr, steps, weight_decay=0.0, batch_size=None, seed=0,
                     X_test=None, *, y_test=None, record_every=None, fused=True) -> GDResult:
    r"""Gradient descent (full batch) or SGD (minibatches) on the squared loss.

    Minimises :math:`\frac12 \sum_\mu (y^\mu - f(x^\mu))^2 + \frac{wd}{2} |\theta|^2`
    starting from ``net.params``: :math:`\theta \leftarrow \theta - \eta \nabla`. With
    ``batch_size = B`` each step uses a minibatch (epochs of a seeded permutation) and the
    data gradient is scaled by P / B, an unbiased estimate of the full one.

    Works on :func:`lkr.nets.linearize` d nets too: training ``linearize(net)`` and ``net`` from
    the same w0 compares lazy (kernel) training with feature learning.

    Parameters
    ----------
    net : a network of :mod:`lkr.nets` (or any object following its protocol)
    X, y : training inputs (P, ...) and labels (P,)
    lr : float
        Step size eta (full-batch GD is stable for eta k_max < 2; see :func:`suggest_lr`).
    steps : int
    weight_decay : float or dict
        wd >= 0, one for all parameters or one per parameter name.
    batch_size : int, optional
        None for full batch; B in 1..P for SGD.
    seed : int
        Seeds the minibatch order.
    X_test, y_test : optional test set (predictions, test-error trace)
    record_every : int, optional
        Trace interval (default about 200 records).

    Returns
    -------
    GDResult
    """
    params0 = _c.check_net(net)
    lr = _real(lr, "lr", positive=True)
    steps = _int(steps, "steps", 0)
    X = _samples(X, "X")
    xp = backend.array_module(X)
    P = X.shape[0]
    dtype = _c.params_dtype(params0, X)
    yv = _labels(y, P, "y", xp, dtype)
    if batch_size is not None:
        batch_size = _int(batch_size, "batch_size", 1)
        if batch_size > P:
            raise ValueError(f"batch_size must be <= P = {P}, got {batch_size}")
        if batch_size == P:
            batch_size = None
    seed = _seed(seed)
    if isinstance(weight_decay, dict):
        unknown = set(weight_decay) - set(params0)
        if unknown:
            raise ValueError(f"weight_decay names unknown parameters {sorted(unknown)}")
        wd = {k: _real(weight_decay.get(k, 0.0), f"weight_decay[{k!r}]", nonneg=True)
              for k in params0}
    else:
        w = _real(weight_decay, "weight_decay", nonneg=True)
        wd = {k: w for k in params0}
    if X_test is not None:
        X_test = _samples(X_test, "X_test")
    elif y_test is not None:
        raise ValueError("y_test given without X_test")
    ytv = None if y_test is None else _labels(y_test, X_test.shape[0], "y_test", xp, dtype)
    record_every = (max(1, steps // 200) if record_every is None
                    else _int(record_every, "record_every", 1))

    obj = _c.objective(net, X, X_test, dtype, fused)
    params = _c.chained(params0, 1, xp, dtype)
    start = {k: a.copy() for k, a in params.items()}
    norm0 = {k: float(xp.linalg.norm(a)) for k, a in start.items()}
    rng = np.random.default_rng(seed)
    trace = dict(step=[], loss=[], train_error=[], distance={k: [] for k in params})
    if ytv is not None:
        trace["test_error"] = []

    def _record(t, f_full):
        r = f_full[0] - yv
        loss = 0.5 * float((r * r).sum()) + sum(0.5 * wd[k] * float((a * a).sum())
                                                for k, a in params.items())
        trace["step"].append(t)
        trace["loss"].append(loss)
        trace["train_error"].append(float((r * r).mean()))
        for k, a in params.items():
            d = float(xp.linalg.norm(a - start[k]))
            trace["distance"][k].append(d / norm0[k] if norm0[k] > 0 else d)
        if ytv is not None:
            ft = obj.forward_test(params)[0]
            trace["test_error"].append(float(((ft - ytv) ** 2).mean()))

    t0 = time.perf_counter()
    nblas = _c.blas_count(obj, 1)
    with blas_threads(nblas or 1, enabled=nblas is not None):
        _gd_loop(obj, params, yv, steps, batch_size, P, rng, lr, wd, record_every, _record, xp)
    final = {k: a[0] for k, a in params.items()}
    f_end = obj.forward_train(params)
    if not bool(xp.all(xp.isfinite(f_end))):
        raise FloatingPointError(f"gradient descent diverged; lower lr (now {lr:g})")
    _record(steps, f_end)
    elapsed = time.perf_counter() - t0
    pred = None if X_test is None else obj.forward_test(params)[0]
    try:
        trained = net.with_params(final)
    except Exception:  # nets without with_params: the parameters are still returned
        trained = None
    settings = dict(method="gd" if batch_size is None else "sgd", net=_c.net_config(net), lr=lr,
                    steps=steps, weight_decay=wd, batch_size=batch_size, seed=seed, P=P,
                    dtype=str(np.dtype(dtype)), fused=bool(obj.fused))
    return GDResult(final, trained, pred, trace, settings, elapsed)


def _gd_loop(obj, params, yv, steps, batch_size, P, rng, lr, wd, record_every, _record, xp):
    order, pos = None, P
    for t in range(steps):
        if batch_size is None:
            f, g = obj.value_and_grad(params, yv)
            scale = 1.0
            f_full = f
        else:
            if pos + batch_size > P:
                order, pos = rng.permutation(P), 0
            rows = order[pos:pos + batch_size]
            pos += batch_size
            f, g = obj.value_and_grad(params, yv[rows], rows=xp.asarray(rows))
            scale = P / batch_size
            f_full = None
        if not bool(xp.all(xp.isfinite(f))):
            raise FloatingPointError(f"gradient descent diverged at step {t}; lower lr (now {lr:g})")
        if t % record_every == 0:
            _record(t, f_full if f_full is not None else obj.forward_train(params))
        for k, a in params.items():
            if wd[k]:
                a *= 1.0 - lr * wd[k]
            if obj.fused:  # our own fresh arrays: scale in place
                gk = g[k]
                gk *= lr * scale
                a -= gk
            else:
                a -= (lr * scale) * g[k]

