"""Shared pieces of the trainers: checks, start-up draws, the objective, threads (Ctrl-C: lkr._interrupt)."""
from __future__ import annotations

import warnings

import numpy as np

from .. import backend
from .._json import jsonable
from .._validate import labels as _labels
from .._validate import real as _real
from .._validate import samples as _samples
from .._warnings import SamplingWarning
from ..nets import Objective

__all__ = ["SamplingWarning", "loss_and_grad"]


# -- validation (the shared checks: lkr._validate) ------------------------------------------
def check_net(net):
    for attr in ("params", "priors", "forward", "vjp"):
        if not hasattr(net, attr):
            raise TypeError(f"net must follow lkr's network protocol (params, priors, forward, "
                            f"vjp); {type(net).__name__} has no {attr!r}")
    params = net.params
    if not isinstance(params, dict) or not params:
        raise TypeError(f"net.params must be a non-empty dict, got {type(params).__name__}")
    missing = [k for k in params if k not in net.priors]
    if missing:
        raise ValueError(f"net.priors has no precision for parameter(s) {missing}")
    return params




#: below this many flops per product, OpenBLAS runs on one thread during training
_SMALL_GEMM = 3e7


def check_memory(net, n, chains):
    """Refuse a run whose net would not fit on n samples x chains (lkr._memory), before
    anything is allocated; nets that do not estimate their memory pass."""
    check = getattr(net, "check_memory", None)
    if check is not None:
        check(int(n), int(chains))


def objective(net, X, X_test, dtype, fused=True):
    """The net's prepared objective (:meth:`lkr.nets.Net.prepare`: fused for FC, CNN and
    LCN), or the generic one for other objects that follow the network protocol."""
    prepare = getattr(net, "prepare", None)
    if prepare is None:
        return Objective(net, X, X_test)
    return prepare(X, X_test, dtype=dtype, fused=fused)


def small_gemm(obj, chains):
    """True when the objective's products are small enough that OpenBLAS should run on one
    thread (its threads then cost more than they save)."""
    flops = obj.gemm_flops(chains) if obj.fused else None
    return flops is not None and flops < _SMALL_GEMM


def blas_count(obj, chains):
    """OpenBLAS threads for a training run: one for the compiled step (which runs on lkr's
    threads and calls BLAS on each) and for small products (:func:`small_gemm`), else
    lkr's thread count (``lkr.set_num_threads``, so that one setting governs the compiled
    passes and the BLAS products alike); None leaves BLAS as it is (lkr at 0 = all cores,
    or an objective whose products are unknown)."""
    if getattr(obj, "own_threads", False) or small_gemm(obj, chains):
        # the compiled step threads itself and calls BLAS on each of its threads
        return 1
    n = backend.get_num_threads()
    return n if n > 0 and obj.fused else None


def params_dtype(params, X):
    dts = [np.dtype(a.dtype) for a in params.values()] + [np.dtype(X.dtype)]
    return np.dtype(np.float32) if all(d == np.float32 for d in dts) else np.dtype(np.float64)


def chained(params, chains, xp, dtype):
    # a fresh writable copy: the chains are updated in place
    return {k: xp.array(xp.broadcast_to(xp.asarray(a, dtype=dtype), (chains,) + tuple(a.shape)),
                        copy=True)
            for k, a in params.items()}


def prior_draws(net, chains, rng, xp, dtype):
    """theta ~ N(0, 1/lambda) per entry, with the precisions of net.priors (scalars or
    per-entry arrays, as a linearised net's)."""
    out = {}
    for k, a in net.params.items():
        prec = np.asarray(backend.to_numpy(xp.asarray(net.priors[k])), dtype=np.float64)
        z = rng.standard_normal((chains,) + tuple(a.shape))
        out[k] = xp.asarray(z / np.sqrt(prec), dtype=dtype)
    return out


def precisions(net, xp, dtype):
    out = {}
    for k, a in net.params.items():
        lam = xp.asarray(net.priors[k], dtype=dtype)
        if not bool(xp.all(lam > 0)) or not bool(xp.all(xp.isfinite(lam))):
            raise ValueError(f"prior precision of {k!r} must be positive and finite")
        if lam.ndim and tuple(lam.shape) != tuple(a.shape):
            raise ValueError(f"prior precision of {k!r} has shape {tuple(lam.shape)}, expected a "
                             f"scalar or {tuple(a.shape)}")
        out[k] = float(lam) if lam.ndim == 0 else lam
    return out


# -- the loss, for users and for the tests --------------------------------------------------
def loss_and_grad(net, X, y, temperature, params=None):
    r"""The Langevin loss and its gradient.

    .. math:: \mathcal{L} = \tfrac12 \sum_\mu (y^\mu - f(x^\mu))^2
              + \tfrac{T}{2} \sum_{\rm name} \lambda_{\rm name} |\theta_{\rm name}|^2,
              \qquad \nabla \mathcal{L} = J^T (f - y) + T \lambda \theta .

    Parameters
    ----------
    net : a network of :mod:`lkr.nets` (or any object following its protocol)
    X : array (P, ...)
    y : array (P,)
    temperature : float
        T >= 0.
    params : dict, optional
        Parameters (default ``net.params``), optionally with a leading chain axis.

    Returns
    -------
    loss : float, or array (chains,)
    grads : dict shaped like params
    """
    check_net(net)
    T = _real(temperature, "temperature", nonneg=True)
    X = _samples(X, "X")
    xp = backend.array_module(X)
    p = net.params if params is None else params
    if not isinstance(p, dict) or set(p) != set(net.params):
        raise ValueError(f"params must be a dict with keys {sorted(net.params)}")
    dtype = params_dtype(p, X)
    f = net.forward(X, p)
    yv = _labels(y, X.shape[0], "y", xp, dtype)
    r = f - yv
    g = net.vjp(X, r, p)
    lam = precisions(net, xp, dtype)
    loss = 0.5 * (r * r).sum(axis=-1)
    grads = {}
    for k, a in p.items():
        a = xp.asarray(a, dtype=dtype)
        base_nd = np.ndim(net.params[k])
        axes = tuple(range(a.ndim - base_nd, a.ndim))
        loss = loss + 0.5 * T * (lam[k] * a * a).sum(axis=axes)
        grads[k] = g[k] + T * lam[k] * a
    if np.ndim(loss) == 0:
        loss = float(loss)
    return loss, grads



def net_config(net):
    cfg = getattr(net, "config", None)
    if isinstance(cfg, dict):
        return jsonable(cfg)
    return dict(type=type(net).__name__)



# the names the trainers used for the checks that now live in lkr._validate
inputs, labels = _samples, _labels


def warn_run_end(sampler, interrupted, done, total, unit, count, stacklevel=3):
    """The sampler's closing warning: interrupted after ``done`` of ``total`` ``unit``, or a
    run that kept no sample (``count`` samples per chain)."""
    if interrupted:
        warnings.warn(f"{sampler} sampling interrupted after {done} of {total} {unit}; "
                      f"returning {count} samples per chain", SamplingWarning,
                      stacklevel=stacklevel)
    elif count == 0:
        warnings.warn(f"no samples were taken (({unit} - burn_in) // thin == 0)",
                      SamplingWarning, stacklevel=stacklevel)
