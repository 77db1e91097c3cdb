r"""Training lkr's networks: Bayesian sampling by Langevin dynamics, and gradient descent.

Langevin sampling (:func:`langevin`)
    The Bayesian posterior of docs/theory.md section 2 at temperature T is
    :math:`p(\theta) \propto \exp(-\mathcal{L}(\theta)/T)` with

    .. math:: \mathcal{L}(\theta) = \tfrac12 \sum_\mu (y^\mu - f(x^\mu))^2
              + \tfrac{T}{2} \sum_{\rm name} \lambda_{\rm name} |\theta_{\rm name}|^2 ,

    the precisions :math:`\lambda` taken from ``net.priors`` (lambda0 for the first layer,
    lambda1 for the readout), so that the prior is :math:`\theta \sim N(0, 1/\lambda)`.
    It is sampled with the unadjusted Langevin algorithm (Euler-Maruyama),

    .. math:: \theta \leftarrow \theta - \eta \nabla\mathcal{L}(\theta)
              + \sqrt{2 \eta T}\, \xi, \qquad \xi \sim N(0, I),

    whose stationary law is the posterior up to an O(eta) discretisation bias: on a
    quadratic mode of curvature k the sampled variance is
    :math:`T / (k (1 - \eta k / 2))` instead of T / k (exact; the tests use it). The update is
    stable for :math:`\eta k_{\max} < 2`; :func:`suggest_lr` picks eta from the largest
    curvature.

    Chains are independent, start from prior draws, and run as one array computation
    (parameters carry a leading chain axis). Starting from the prior matters at small T: the
    directions the data do not constrain relax only at rate :math:`\eta T \lambda` per step,
    but their posterior is (nearly) the prior, so they start in equilibrium.

Gradient descent (:func:`gradient_descent`)
    Full-batch GD or minibatch SGD on (1/2) sum (y - f)^2 + (wd/2) |theta|^2, on the same nets
    and on linearised nets (:func:`lkr.nets.linearize`), for the lazy-versus-feature-learning
    comparison.

Any object that follows the network protocol of :mod:`lkr.nets` (``params``, ``priors``,
``forward``, ``vjp`` with an optional leading chain axis) can be trained. For
:class:`~lkr.nets.FCNet`, :class:`~lkr.nets.CNNNet` and :class:`~lkr.nets.LCNNet` a fused
evaluation is used that computes f and the gradient from one set of pre-activations, on
inputs (or patches) prepared once: two BLAS products per step, with erf and erf' from the
compiled, vectorised activation pass of the C++ extension. It is checked against the nets'
own ``forward``/``vjp`` in the tests. (For these shapes it is faster than
``net.value_and_grad``, whose per-sample patch kernel does the products without BLAS:
measured on one core, 1.4x for the CNN in float64 and 1.9x in float32.)
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
import warnings

import numpy as np

from . import backend
from ._blas import blas_threads
from ._validate import integer as _int
from ._validate import real as _real

__all__ = ["langevin", "LangevinResult", "gradient_descent", "GDResult", "loss_and_grad",
           "suggest_lr", "sampled_test_error", "SamplingWarning", "ARCHITECTURES"]

#: architectures that :func:`sampled_test_error` builds
ARCHITECTURES = ("fc", "cnn", "lcn")


class SamplingWarning(UserWarning):
    """Sampling stopped early (interrupted) or produced no samples."""


# -- validation (the shared checks: lkr._validate) ------------------------------------------
def _check_net(net):
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


def _labels(y, P, name, xp, dtype):
    a = backend.asarray(y, name)
    backend.check_floating(a, name)
    if a.ndim != 1 or a.shape[0] != P:
        raise ValueError(f"{name} must have shape ({P},), got {tuple(a.shape)}")
    a = xp.asarray(a, dtype=dtype)
    backend.check_finite(a, name)
    return a


def _inputs(X, name):
    a = backend.asarray(X, name)
    backend.check_floating(a, name)
    if a.ndim < 2 or a.shape[0] < 1:
        raise ValueError(f"{name} must have shape (P, ...) with P >= 1 samples first, got "
                         f"{tuple(a.shape)}")
    backend.check_finite(a, name)
    return a


# -- activations (values and derivatives from one pre-activation array) --------------------
def _erf(xp):
    if xp is np:
        from scipy.special import erf
    else:  # pragma: no cover - GPU only
        from cupyx.scipy.special import erf
    return erf


# The update and the noise of large parameter arrays run on a few threads, in parts
# (NumPy ufuncs and Generator fills release the GIL); erf and erf' come from the compiled
# activation pass (_core_activation), which has its own threads.
_PARALLEL_MIN = 1 << 16   # below this, threads cost more than they save
_pool = None


def _nthreads():
    return backend.get_num_threads() or os.cpu_count() or 1


def _run_parts(fn, parts):
    """fn(*args) for each args in parts, on the thread pool when there is more than one."""
    global _pool
    n = min(_nthreads(), len(parts))
    if n <= 1:
        for args in parts:
            fn(*args)
        return
    if _pool is None or _pool._max_workers < n:
        from concurrent.futures import ThreadPoolExecutor

        _pool = ThreadPoolExecutor(max_workers=max(n, 2), thread_name_prefix="lkr-train")
    for fut in [_pool.submit(fn, *args) for args in parts]:
        fut.result()


def _gemm_flops(net, X, chains):
    """Flops of the largest per-step product of lkr's own nets (None for other nets)."""
    from . import nets as _nets

    P = X.shape[0]
    if type(net) is _nets.FCNet:
        return 2.0 * chains * net.N1 * net.N0 * P
    if type(net) in (_nets.CNNNet, _nets.LCNNet):
        g = net.geometry
        return 2.0 * chains * net.channels * g.patch_size * g.num_patches * P
    return None


#: below this many flops per product, OpenBLAS runs on one thread during training
_SMALL_GEMM = 3e7


def _split(size, k):
    edges = [size * j // k for j in range(k + 1)]
    return [(edges[j], edges[j + 1]) for j in range(k)]


def _core_activation(activation, H, derivative):
    """sigma(H) (and sigma'(H)) from lkr's compiled activation pass (a vectorised erf on the
    kernels' threads), or None where it does not apply. About 2x (float64) and 10x (float32)
    faster than scipy's scalar erf on one core, to within an ulp of it."""
    if activation != "erf" or not isinstance(H, np.ndarray) or not H.flags.c_contiguous:
        return None
    fn = getattr(backend.core(), "activation_pair", None)
    if fn is None:  # pragma: no cover - an extension built before activation_pair
        return None
    return fn(H, activation=activation, derivative=derivative,
              nthreads=backend.get_num_threads())


def _sigma_and_prime(activation, H, xp):
    """sigma(H) and sigma'(H); H may be overwritten (it can become sigma'(H))."""
    if activation == "linear":
        S = H.copy()
        H.fill(1)
        return S, H
    if activation == "relu":
        S = xp.maximum(H, 0)
        xp.greater(H, 0, out=H)  # bool -> float in place: the step function
        return S, H
    pair = _core_activation(activation, H, True) if xp is np else None
    if pair is not None:
        return pair
    S = _erf(xp)(H)
    xp.square(H, out=H)
    xp.negative(H, out=H)
    xp.exp(H, out=H)
    H *= 2.0 / math.sqrt(math.pi)
    return S, H


def _sigma(activation, H, xp):
    if activation == "linear":
        return H
    if activation == "relu":
        return xp.maximum(H, 0)
    S = _core_activation(activation, H, False) if xp is np else None
    return _erf(xp)(H) if S is None else S


# -- objectives: f and the gradient of the data term, chain-batched ------------------------
class _Objective:
    """Evaluates f on the training inputs and g = J^T (f - y), the gradient of
    (1/2) sum (y - f)^2, for chain-batched params; and f on test inputs.

    ``value_and_grad(params, y, rows=None)`` returns (f (C, n), grads); ``rows`` selects a
    minibatch of training rows (an index array) for SGD.
    """

    fused = False

    def __init__(self, net, X, X_test):
        self.net = net
        self.X = X
        self.X_test = X_test

    def forward_test(self, params):
        return self.net.forward(self.X_test, params)

    def forward_train(self, params):
        return self.net.forward(self.X, params)

    def value_and_grad(self, params, y, rows=None):
        X = self.X if rows is None else self.X[rows]
        f = self.net.forward(X, params)
        r = f - y
        return f, self.net.vjp(X, r, params)


class _FusedObjective(_Objective):
    """f = readout(sigma(pre-activations)) on inputs prepared once per run; subclasses give
    ``_pre`` (pre-activations), ``_f`` (readout) and the prepared (train, test) ``inputs``."""

    fused = True

    @property
    def inputs(self):
        return self.Z, self.Zt

    def _forward(self, params, Z):
        return self._f(_sigma(self.act, self._pre(params["W"], Z), self.xp), params["v"])

    def forward_train(self, params):
        return self._forward(params, self.inputs[0])

    def forward_test(self, params):
        return self._forward(params, self.inputs[1])


class _FCObjective(_FusedObjective):
    # hT (C, N1, n) = W (C N1, N0) @ Xs^T: one GEMM for all chains; Xs = X / sqrt(N0).

    def __init__(self, net, X, X_test, dtype):
        super().__init__(net, X, X_test)
        xp = backend.array_module(X)
        self.xp = xp
        self.act = net.activation
        s0 = 1.0 / math.sqrt(net.N0)
        self.c1 = 1.0 / math.sqrt(net.N1)
        self.Z = xp.ascontiguousarray(net._inputs(X), dtype=dtype) * s0
        self.Zt = (None if X_test is None
                   else xp.ascontiguousarray(net._inputs(X_test), dtype=dtype) * s0)

    def _pre(self, W, Z):
        C, N1, N0 = W.shape
        return (W.reshape(C * N1, N0) @ Z.T).reshape(C, N1, Z.shape[0])

    def _f(self, S, v):
        return (v[:, None, :] @ S)[:, 0, :] * self.c1

    def value_and_grad(self, params, y, rows=None):
        W, v = params["W"], params["v"]
        Z = self.Z if rows is None else self.Z[rows]
        C, N1, N0 = W.shape
        S, D = _sigma_and_prime(self.act, self._pre(W, Z), self.xp)
        f = self._f(S, v)
        r = f - y
        gv = (S @ r[:, :, None])[:, :, 0] * self.c1
        D *= v[:, :, None]
        D *= (r * self.c1)[:, None, :]
        gW = (D.reshape(C * N1, -1) @ Z).reshape(C, N1, N0)
        return f, {"W": gW, "v": gv}


class _CNNObjective(_FusedObjective):
    # H (C, Nc, n, Np) = W (C Nc, M) @ Zflat^T with Zflat the (n Np, M) patches / sqrt(M),
    # cut once: the patch tensor of the training set is reused at every step.

    def __init__(self, net, X, X_test, dtype):
        super().__init__(net, X, X_test)
        xp = backend.array_module(X)
        self.xp = xp
        self.act = net.activation
        g = net.geometry
        self.M, self.Np = g.patch_size, g.num_patches
        sm = 1.0 / math.sqrt(self.M)
        self.c1 = 1.0 / math.sqrt(net.channels * self.Np)
        self.Z = xp.ascontiguousarray(g.patches(X), dtype=dtype) * sm      # (P, Np, M)
        self.Zt = None if X_test is None else xp.ascontiguousarray(g.patches(X_test), dtype=dtype) * sm

    def _pre(self, W, Z):
        C, Nc, M = W.shape
        n = Z.shape[0]
        return (W.reshape(C * Nc, M) @ Z.reshape(n * self.Np, M).T).reshape(C, Nc, n, self.Np)

    def _f(self, S, v):
        return self.xp.einsum("capi,cai->cp", S, v) * self.c1

    def value_and_grad(self, params, y, rows=None):
        W, v = params["W"], params["v"]
        Z = self.Z if rows is None else self.Z[rows]
        C, Nc, M = W.shape
        n = Z.shape[0]
        S, D = _sigma_and_prime(self.act, self._pre(W, Z), self.xp)
        f = self._f(S, v)
        rc = (f - y) * self.c1
        gv = (rc[:, None, None, :] @ S)[:, :, 0, :]                    # (C, Nc, Np)
        D *= v[:, :, None, :]
        D *= rc[:, None, :, None]
        gW = (D.reshape(C * Nc, n * self.Np) @ Z.reshape(n * self.Np, M)).reshape(C, Nc, M)
        return f, {"W": gW, "v": gv}


class _LCNObjective(_CNNObjective):
    # A filter per patch: batched over patches i, H (Np, n, C Nc) = Z_i (n, M) @ W_i (M, C Nc).
    def __init__(self, net, X, X_test, dtype):
        super().__init__(net, X, X_test, dtype)
        xp = self.xp
        self.ZT = xp.ascontiguousarray(self.Z.transpose(1, 0, 2))          # (Np, P, M)
        self.ZtT = None if self.Zt is None else xp.ascontiguousarray(self.Zt.transpose(1, 0, 2))

    def _pre(self, W, ZT):
        C, Nc, Np, M = W.shape
        Wi = W.reshape(C * Nc, Np, M).transpose(1, 2, 0)                   # (Np, M, C Nc)
        return (ZT @ Wi).reshape(Np, ZT.shape[1], C, Nc)                   # (i, p, c, a)

    def _f(self, S, v):
        return self.xp.einsum("ipca,cai->cp", S, v) * self.c1

    @property
    def inputs(self):
        return self.ZT, self.ZtT

    def value_and_grad(self, params, y, rows=None):
        xp = self.xp
        W, v = params["W"], params["v"]
        ZT = self.ZT if rows is None else self.ZT[:, rows]
        C, Nc, Np, M = W.shape
        n = ZT.shape[1]
        S, D = _sigma_and_prime(self.act, self._pre(W, ZT), xp)
        f = self._f(S, v)
        rc = (f - y) * self.c1
        gv = xp.einsum("cp,ipca->cai", rc, S)
        D *= v.transpose(2, 0, 1)[:, None, :, :]
        D *= rc.T[None, :, :, None]
        gW = D.reshape(Np, n, C * Nc).transpose(0, 2, 1) @ ZT                # (Np, C Nc, M)
        gW = xp.ascontiguousarray(gW.reshape(Np, C, Nc, M).transpose(1, 2, 0, 3))
        return f, {"W": gW, "v": gv}


def _objective(net, X, X_test, dtype, fused=True):
    """The fastest evaluation that applies: fused for lkr's 1HL nets, generic otherwise."""
    if fused:
        try:
            from . import nets as _nets
        except ImportError:  # pragma: no cover - nets is part of the package
            _nets = None
        if _nets is not None and backend.array_module(X) is np:
            kind = type(net)
            if kind is _nets.FCNet:
                return _FCObjective(net, X, X_test, dtype)
            if kind is _nets.LCNNet:
                return _LCNObjective(net, X, X_test, dtype)
            if kind is _nets.CNNNet:
                return _CNNObjective(net, X, X_test, dtype)
    return _Objective(net, X, X_test)


def _params_dtype(params, X):
    dts = [np.dtype(a.dtype) for a in params.values()] + [np.dtype(X.dtype)]
    return np.dtype(np.float32) if all(d == np.float32 for d in dts) else np.dtype(np.float64)


def _chained(params, chains, xp, dtype):
    # a fresh writable copy: the chains are updated in place
    return {k: xp.array(xp.broadcast_to(xp.asarray(a, dtype=dtype), (chains,) + tuple(a.shape)),
                        copy=True)
            for k, a in params.items()}


def _prior_draws(net, chains, rng, xp, dtype):
    """theta ~ N(0, 1/lambda) per entry, with the precisions of net.priors (scalars or
    per-entry arrays, as a linearised net's)."""
    out = {}
    for k, a in net.params.items():
        prec = np.asarray(backend.to_numpy(xp.asarray(net.priors[k])), dtype=np.float64)
        z = rng.standard_normal((chains,) + tuple(a.shape))
        out[k] = xp.asarray(z / np.sqrt(prec), dtype=dtype)
    return out


def _precisions(net, xp, dtype):
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
    _check_net(net)
    T = _real(temperature, "temperature", nonneg=True)
    X = _inputs(X, "X")
    xp = backend.array_module(X)
    p = net.params if params is None else params
    if not isinstance(p, dict) or set(p) != set(net.params):
        raise ValueError(f"params must be a dict with keys {sorted(net.params)}")
    dtype = _params_dtype(p, X)
    f = net.forward(X, p)
    yv = _labels(y, X.shape[0], "y", xp, dtype)
    r = f - yv
    g = net.vjp(X, r, p)
    lam = _precisions(net, xp, dtype)
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


# -- progress and interrupts ----------------------------------------------------------------
def _fmt_time(s):
    s = int(max(0, s))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class _Progress:
    """A one-line plain-text progress bar on stderr, redrawn at most 5 times a second.

    ``enabled=None`` (auto) shows it only on a terminal and only once a run has lasted a
    second, so short runs and logs stay quiet.
    """

    def __init__(self, total, label, enabled, stream=None):
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
            self.delay = 1.0
        else:
            self.delay = 0.0
        self.enabled = bool(enabled)
        self.total, self.label = total, label
        self.t0 = time.perf_counter()
        self.last = -1.0
        self.shown = False

    def update(self, done, note=""):
        if not self.enabled:
            return
        now = time.perf_counter()
        el = now - self.t0
        if el < self.delay or (now - self.last < 0.2 and done < self.total):
            return
        self.last = now
        rate = done / el if el > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else 0.0
        frac = done / self.total if self.total else 1.0
        bar = "#" * int(24 * frac)
        self.stream.write(f"\r{self.label} [{bar:<24}] {done}/{self.total} {100 * frac:3.0f}% "
                          f"{rate:,.0f} steps/s eta {_fmt_time(eta)} {note}   ")
        self.stream.flush()
        self.shown = True

    def close(self):
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


class _StopFlag:
    """Turns the first Ctrl-C into a request to stop at the end of the current step (so the
    parameters and the running statistics stay consistent); a second Ctrl-C interrupts at
    once. Installed only in the main thread, and restored afterwards."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            try:
                self._old = signal.signal(signal.SIGINT, self._handler)
            except (ValueError, OSError):  # pragma: no cover - e.g. embedded interpreters
                self._old = None
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


# -- results ---------------------------------------------------------------------------------
def _py(x):
    """JSON-friendly copy: arrays -> lists, NumPy scalars -> Python, NaN and inf -> None
    (strict JSON has no NaN)."""
    if isinstance(x, dict):
        return {str(k): _py(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_py(v) for v in x]
    if hasattr(x, "shape") and hasattr(x, "tolist"):
        return _py(backend.to_numpy(x).tolist())
    if isinstance(x, (np.generic,)):
        return _py(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "to_dict"):
        return _py(x.to_dict())
    return x


class LangevinResult:
    r"""What :func:`langevin` sampled.

    Attributes
    ----------
    mean, variance : ndarray (P_test,) or None
        Posterior mean and variance of f at the test inputs, pooled over all samples of all
        chains (Welford; the variance is the population variance of the samples). None
        when no sample was taken.
    chain_mean, chain_variance : ndarray (chains, P_test)
        The same per chain (samples of one chain only).
    samples_per_chain, samples : int
        Samples taken per chain and in all.
    steps_done : int
        Langevin steps taken (burn-in included).
    interrupted : bool
        True when sampling was stopped by Ctrl-C or a KeyboardInterrupt from the callback.
    params : dict
        The chains' last parameters (leading chain axis), to continue with ``init=``.
    trace : dict
        ``step``; ``train_error`` (records, chains): mean_mu (y - f)^2 on the training set;
        ``test_error`` likewise on the test set when ``y_test`` was given.
    settings : dict
        Every setting of the run (JSON-friendly), the net's configuration included.
    elapsed_s, steps_per_s : float
    """

    def __init__(self, *, chain_mean, chain_m2, count, steps_done, interrupted, params,
                 trace, settings, elapsed_s, y_test=None):
        self.chain_mean = chain_mean
        self._m2 = chain_m2
        self.samples_per_chain = int(count)
        self.chains = int(settings["chains"])
        self.samples = self.samples_per_chain * self.chains
        self.steps_done = int(steps_done)
        self.interrupted = bool(interrupted)
        self.params = params
        self.trace = trace
        self.settings = settings
        self.elapsed_s = float(elapsed_s)
        self.steps_per_s = self.steps_done / self.elapsed_s if self.elapsed_s > 0 else float("nan")
        self._y_test = y_test

    # pooled statistics (Chan et al.'s combination of per-chain Welford sums)
    @property
    def chain_variance(self):
        if self.samples_per_chain == 0:
            return None
        return self._m2 / self.samples_per_chain

    @property
    def mean(self):
        if self.samples_per_chain == 0:
            return None
        return self.chain_mean.mean(axis=0)

    @property
    def variance(self):
        if self.samples_per_chain == 0:
            return None
        n = self.samples_per_chain
        m = self.chain_mean
        between = ((m - m.mean(axis=0)) ** 2).sum(axis=0) * n
        return (self._m2.sum(axis=0) + between) / (n * self.chains)

    @property
    def mean_se(self):
        """Standard error of :attr:`mean` per test point, from the spread of the chain means
        (chains are independent; valid whatever the autocorrelation within a chain)."""
        if self.samples_per_chain == 0 or self.chains < 2:
            return None
        return self.chain_mean.std(axis=0, ddof=1) / math.sqrt(self.chains)

    @property
    def rhat(self):
        r"""Gelman-Rubin potential scale reduction per test point,
        :math:`\hat R = \sqrt{((n-1)/n\, W + B/n) / W}`, W the mean within-chain variance and
        B/n the variance of the chain means. Near 1 when the chains agree; well above 1
        (e.g. > 1.1) when they have not mixed, as happens at small T for the directions the
        data do not constrain (each chain then keeps its own prior draw of them)."""
        n = self.samples_per_chain
        if n < 2 or self.chains < 2:
            return None
        W = self._m2.sum(axis=0) / (self.chains * (n - 1))
        B_n = self.chain_mean.var(axis=0, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.sqrt(((n - 1) / n * W + B_n) / W)

    def test_error(self, y_test=None) -> dict:
        r"""The sampled generalisation error and its parts.

        error = mean over the test set of :math:`(y_0 - \bar f)^2 + \mathrm{Var} f`
        = bias2 + variance, the quantity :meth:`lkr.theory.FCTheory.evaluate` predicts. It
        equals the mean over samples of the test MSE of each sample, so it is unbiased
        however strongly the samples are correlated. ``error_se`` is the standard error from
        the spread of the per-chain errors over the independent chains.

        Returns
        -------
        dict
            ``error``, ``error_se`` (NaN with one chain), ``bias2``, ``variance``,
            ``chains``, ``samples``, ``chain_errors``.
        """
        if y_test is None:
            y_test = self._y_test
        if y_test is None:
            raise ValueError("test_error needs the test labels y_test")
        if self.samples_per_chain == 0:
            raise ValueError("no samples were taken (stopped during burn-in?); nothing to "
                             "evaluate")
        m = self.chain_mean
        xp = backend.array_module(m)
        yt = _labels(y_test, m.shape[1], "y_test", xp, m.dtype)
        mean, var = self.mean, self.variance
        bias2 = float(((yt - mean) ** 2).mean())
        variance = float(var.mean())
        chain_err = ((yt[None] - m) ** 2 + self._m2 / self.samples_per_chain).mean(axis=1)
        chain_err = backend.to_numpy(chain_err).astype(np.float64)
        se = (float(chain_err.std(ddof=1) / math.sqrt(self.chains)) if self.chains > 1
              else float("nan"))
        return dict(error=bias2 + variance, error_se=se, bias2=bias2, variance=variance,
                    chains=self.chains, samples=self.samples, chain_errors=chain_err.tolist())

    def to_dict(self) -> dict:
        """Everything but the parameters, JSON-friendly (arrays as lists)."""
        out = dict(settings=self.settings, samples=self.samples,
                   samples_per_chain=self.samples_per_chain, steps_done=self.steps_done,
                   interrupted=self.interrupted, elapsed_s=self.elapsed_s,
                   steps_per_s=self.steps_per_s, mean=self.mean, variance=self.variance,
                   mean_se=self.mean_se, trace=self.trace)
        rh = self.rhat
        out["rhat_max"] = None if rh is None else float(np.nanmax(backend.to_numpy(rh)))
        if self._y_test is not None and self.samples_per_chain:
            out["test_error"] = self.test_error()
        return _py(out)

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def __repr__(self) -> str:
        flag = ", interrupted" if self.interrupted else ""
        return (f"LangevinResult(chains={self.chains}, samples={self.samples}, "
                f"steps_done={self.steps_done}, {self.steps_per_s:.0f} steps/s{flag})")


class _State:
    """What the callback sees after each step (one object, updated in place)."""

    __slots__ = ("step", "total", "params", "f_train", "samples_per_chain", "phase")

    def __repr__(self):
        return (f"State(step={self.step}/{self.total}, phase={self.phase!r}, "
                f"samples_per_chain={self.samples_per_chain})")


#: independent noise streams; stream j always fills part j of every parameter, so the
#: numbers do not depend on how many threads do the filling
_NOISE_STREAMS = 2


class _Updater:
    """The Langevin update theta <- decay theta - lr g + amp xi, in place, per parameter.

    ``decay = 1 - lr T lambda``; the noise xi ~ N(0, 1) comes from seeded SFC64 streams (the
    fastest of NumPy's generators for normal fills) into reusable buffers.
    """

    def __init__(self, seed_seq, params, decay, lr, amp, xp):
        self.xp, self.decay, self.lr, self.amp = xp, decay, lr, amp
        self.buf = {k: xp.empty_like(a) for k, a in params.items()}
        if xp is np:
            self.rngs = [np.random.Generator(np.random.SFC64(s))
                         for s in seed_seq.spawn(_NOISE_STREAMS)]
        else:  # pragma: no cover - GPU only
            self.rng = xp.random.RandomState(int(seed_seq.generate_state(1)[0]))

    def _part(self, rng, a, g, buf, decay, scale):
        if decay != 1.0:
            a *= decay
        if scale != 1.0:
            g *= scale
        a -= g
        rng.standard_normal(out=buf, dtype=buf.dtype)
        buf *= self.amp
        a += buf

    def step(self, params, grads, own_grads):
        """own_grads: the gradient arrays are ours to overwrite (the fused objectives')."""
        xp = self.xp
        for k, a in params.items():
            if xp is not np:  # pragma: no cover - GPU only
                a *= self.decay[k]
                a -= self.lr * grads[k]
                a += self.amp * self.rng.standard_normal(a.shape, dtype=a.dtype)
                continue
            decay = self.decay[k]
            if not isinstance(decay, float):   # per-entry precisions (a linearised net)
                a *= decay
                decay = 1.0
            if own_grads and grads[k].flags.c_contiguous:
                g, scale = grads[k], self.lr
            else:
                g, scale = np.multiply(grads[k], self.lr), 1.0
            af, gf, bf = a.reshape(-1), g.reshape(-1), self.buf[k].reshape(-1)
            parts = [(rng, af[i:j], gf[i:j], bf[i:j], decay, scale)
                     for rng, (i, j) in zip(self.rngs, _split(af.size, _NOISE_STREAMS))]
            if af.size >= _PARALLEL_MIN:
                _run_parts(self._part, parts)
            else:
                for args in parts:
                    self._part(*args)


# -- Langevin --------------------------------------------------------------------------------
def langevin(net, X, y, temperature, lr=1e-3, steps=10000, burn_in=None, thin=1, X_test=None,
             chains=4, seed=0, progress=None, callback=None, *, y_test=None, init="prior",
             trace_every=None, fused=True) -> LangevinResult:
    r"""Sample the Bayesian posterior of a network by Langevin dynamics.

    Runs ``chains`` independent chains of the unadjusted Langevin algorithm on the loss
    :math:`\mathcal L = \frac12 \sum_\mu (y^\mu - f(x^\mu))^2 + \frac T2 \sum \lambda
    |\theta|^2` (see the module docstring):
    :math:`\theta \leftarrow \theta - \eta \nabla \mathcal L + \sqrt{2\eta T}\,\xi`, and
    accumulates the running posterior mean and variance of f at the test inputs.

    Parameters
    ----------
    net : FCNet, CNNNet, LCNNet, DeepFCNet, LinearizedNet, or any object following the
        network protocol of :mod:`lkr.nets`
    X : array (P, ...)
        Training inputs, in a shape the net accepts.
    y : array (P,)
        Training labels.
    temperature : float
        T > 0.
    lr : float or "auto"
        Step size eta. ``"auto"`` uses :func:`suggest_lr` (eta k_max = 0.25). Steps with
        eta k_max >= 2 diverge; the bias on a mode of curvature k is a factor
        1 / (1 - eta k / 2) on its variance.
    steps : int
        Langevin steps in all, burn-in included.
    burn_in : int, optional
        The first steps, whose states are discarded; default ``steps // 4``. At most
        ``steps``.
    thin : int
        Keep every ``thin``-th state after burn-in: ``(steps - burn_in) // thin`` samples
        per chain.
    X_test : array (P_test, ...), optional
        Where to accumulate predictions; default the training inputs X (then the samples
        cost nothing extra: f(X) is computed for the gradient anyway).
    chains : int
        Independent chains, sampled together as one array computation.
    seed : int
        Seeds the initial draws and the noise: the same seed gives the same numbers.
    progress : bool or None
        A progress bar on stderr; None shows it on a terminal for runs over a second.
    callback : callable, optional
        ``callback(state)`` after every step; ``state`` has ``step``, ``total``, ``phase``
        ("burn-in"/"sampling"), ``params``, ``f_train`` (chains, P) and
        ``samples_per_chain``. Returning True stops the run (not flagged as interrupted);
        raising KeyboardInterrupt stops it as Ctrl-C does.
    y_test : array (P_test,), optional
        Test labels: adds a test-error trace and ``test_error`` to :meth:`LangevinResult.to_dict`.
    init : "prior", "net" or dict
        Start from prior draws (default; see the module docstring for why), from the net's
        own parameters in every chain, or from given parameters (with or without a chain
        axis; e.g. ``result.params`` to continue a run).
    trace_every : int, optional
        Record the error traces every this many steps (default: about 500 records).
    fused : bool
        Use the fused evaluation for FCNet/CNNNet/LCNNet (default); False goes through the
        net's own forward and vjp (same numbers to rounding, slower).

    Returns
    -------
    LangevinResult
        ``mean``, ``variance``, ``test_error(y_test)``, traces, ``samples``, ``settings``.

    Raises
    ------
    FloatingPointError
        When the chains diverge (non-finite loss): lower ``lr``.

    Notes
    -----
    Ctrl-C stops at the end of the current step and returns what was sampled, with
    ``interrupted=True`` and a :class:`SamplingWarning`; a second Ctrl-C stops at once.
    """
    _check_net(net)
    T = _real(temperature, "temperature", positive=True)
    steps = _int(steps, "steps", 0)
    burn_in = steps // 4 if burn_in is None else _int(burn_in, "burn_in", 0)
    if burn_in > steps:
        raise ValueError(f"burn_in ({burn_in}) must not exceed steps ({steps}): steps counts "
                         "every Langevin step, burn-in included")
    thin = _int(thin, "thin", 1)
    chains = _int(chains, "chains", 1)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"seed must be a non-negative integer, got {seed!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    if progress not in (None, True, False):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")
    X = _inputs(X, "X")
    xp = backend.array_module(X)
    P = X.shape[0]
    test_is_train = X_test is None
    if not test_is_train:
        X_test = _inputs(X_test, "X_test")
        if backend.array_module(X_test) is not xp:
            raise TypeError("X and X_test must live on the same device")
    elif y_test is not None:
        raise ValueError("y_test given without X_test")
    dtype = _params_dtype(net.params, X)
    yv = _labels(y, P, "y", xp, dtype)
    Pt = P if test_is_train else X_test.shape[0]
    ytv = None if y_test is None else _labels(y_test, Pt, "y_test", xp, dtype)
    if isinstance(lr, str):
        if lr != "auto":
            raise ValueError(f"lr must be a positive number or 'auto', got {lr!r}")
        lr = suggest_lr(net, X, T)
    lr = _real(lr, "lr", positive=True)
    lam = _precisions(net, xp, dtype)
    total = steps
    trace_every = (max(1, total // 500) if trace_every is None
                   else _int(trace_every, "trace_every", 1))

    ss_init, ss_noise = np.random.SeedSequence(int(seed)).spawn(2)
    if isinstance(init, str):
        if init == "prior":
            params = _prior_draws(net, chains, np.random.default_rng(ss_init), xp, dtype)
        elif init == "net":
            params = _chained(net.params, chains, xp, dtype)
        else:
            raise ValueError(f"init must be 'prior', 'net' or a dict of params, got {init!r}")
    elif isinstance(init, dict):
        if set(init) != set(net.params):
            raise ValueError(f"init must have keys {sorted(net.params)}, got {sorted(init)}")
        params = {}
        for k, a in init.items():
            a = xp.asarray(backend.asarray(a, f"init[{k!r}]"), dtype=dtype)
            base = tuple(net.params[k].shape)
            if tuple(a.shape) == base:
                a = xp.broadcast_to(a, (chains,) + base)
            elif tuple(a.shape) != (chains,) + base:
                raise ValueError(f"init[{k!r}] must have shape {base} or {(chains,) + base}, got "
                                 f"{tuple(a.shape)}")
            params[k] = xp.array(a, copy=True)
    else:
        raise TypeError(f"init must be 'prior', 'net' or a dict, got {type(init).__name__}")

    obj = _objective(net, X, None if test_is_train else X_test, dtype, fused)
    decay = {k: 1.0 - lr * T * l for k, l in lam.items()}
    updater = _Updater(ss_noise, params, decay, lr, math.sqrt(2.0 * lr * T), xp)

    # running per-chain statistics (Welford)
    count = 0
    cmean = xp.zeros((chains, Pt), dtype=np.float64)
    cm2 = xp.zeros((chains, Pt), dtype=np.float64)
    tr_step, tr_train, tr_test = [], [], []

    state = _State()
    state.total = total
    bar = _Progress(total, "langevin", progress)
    interrupted = stopped = False
    done = 0  # steps whose update has completed
    t0 = time.perf_counter()
    flops = _gemm_flops(net, X, chains) if obj.fused else None
    small = flops is not None and flops < _SMALL_GEMM
    with _StopFlag() as stop, blas_threads(1, enabled=small):
        try:
            for t in range(total):
                sampling = t >= burn_in
                f, g = obj.value_and_grad(params, yv)
                with np.errstate(over="ignore", invalid="ignore"):  # divergence: checked next
                    sq = ((f - yv) ** 2).mean(axis=1)
                if not bool(xp.all(xp.isfinite(sq))):
                    raise FloatingPointError(
                        f"Langevin diverged at step {t} (non-finite loss); lower lr (now {lr:g}; "
                        f"suggest_lr gives a stable value)")
                take = sampling and (t - burn_in + 1) % thin == 0
                record = (t + 1) % trace_every == 0 or t == total - 1
                ft = None
                if take or (record and ytv is not None):
                    ft = f if test_is_train else obj.forward_test(params)
                if take:
                    # Welford, per chain; computed aside and then swapped in, so that an
                    # interrupt never leaves the count and the sums out of step
                    delta = ft - cmean
                    new_mean = cmean + delta / (count + 1)
                    new_m2 = cm2 + delta * (ft - new_mean)
                    cmean, cm2, count = new_mean, new_m2, count + 1
                if record:
                    tr_step.append(t)
                    tr_train.append(backend.to_numpy(sq))
                    if ytv is not None:
                        tr_test.append(backend.to_numpy(((ft - ytv) ** 2).mean(axis=1)))
                # theta <- (1 - lr T lambda) theta - lr J^T (f - y) + sqrt(2 lr T) xi
                updater.step(params, g, own_grads=obj.fused)
                done = t + 1
                if callback is not None:
                    state.step, state.params, state.f_train = t, params, f
                    state.samples_per_chain = count
                    state.phase = "sampling" if sampling else "burn-in"
                    if callback(state) is True:
                        stopped = True
                        break
                if bar.enabled:
                    bar.update(done, f"train mse {float(sq.mean()):.4g}")
                if stop.requested:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
    elapsed = time.perf_counter() - t0
    if interrupted:
        warnings.warn(f"Langevin sampling interrupted after {done} of {total} steps; "
                      f"returning {count} samples per chain", SamplingWarning, stacklevel=2)
    elif count == 0:
        warnings.warn("no samples were taken ((steps - burn_in) // thin == 0)", SamplingWarning, stacklevel=2)
    settings = dict(method="langevin (unadjusted, Euler-Maruyama)", net=_net_config(net),
                    temperature=T, lr=lr, steps=steps, burn_in=burn_in, thin=thin,
                    chains=chains, seed=int(seed), init=init if isinstance(init, str) else "given",
                    P=P, P_test=Pt, test_is_train=test_is_train, dtype=str(np.dtype(dtype)),
                    fused=bool(obj.fused), stopped_by_callback=stopped,
                    priors={k: (v if isinstance(v, float) else "per-entry") for k, v in lam.items()})
    trace = dict(step=tr_step, train_error=np.array(tr_train) if tr_train else np.zeros((0, chains)))
    if ytv is not None:
        trace["test_error"] = np.array(tr_test) if tr_test else np.zeros((0, chains))
    return LangevinResult(chain_mean=cmean, chain_m2=cm2, count=count, steps_done=done,
                          interrupted=interrupted, params=params, trace=trace, settings=settings,
                          elapsed_s=elapsed, y_test=ytv)


def _net_config(net):
    cfg = getattr(net, "config", None)
    if isinstance(cfg, dict):
        return _py(cfg)
    return dict(type=type(net).__name__)


# -- step size ---------------------------------------------------------------------------------
def suggest_lr(net, X, temperature, *, target=0.25, iterations=30, seed=0) -> float:
    r"""A stable Langevin / GD step: :math:`\eta = \text{target} / k_{\max}`.

    :math:`k_{\max} \approx \lambda_{\max}(J J^T) + T \max\lambda`, the largest curvature of
    the loss at the net's parameters (Gauss-Newton part; the residual term is neglected), by
    power iteration on the P x P Gram matrix J J^T with J^T r from ``net.vjp`` and J u from
    central differences of ``net.forward`` (or ``net.jvp`` when the net has one).

    Parameters
    ----------
    net, X : the network and the training inputs
    temperature : float
    target : float
        eta k_max; 0.25 keeps the variance bias of the stiffest mode near 14 % and far from
        the instability at 2.
    iterations : int
        Power iterations.
    seed : int
        Seeds the starting vector.
    """
    _check_net(net)
    T = _real(temperature, "temperature", nonneg=True)
    target = _real(target, "target", positive=True)
    iterations = _int(iterations, "iterations", 1)
    X = _inputs(X, "X")
    xp = backend.array_module(X)
    P = X.shape[0]
    p0 = net.params
    rng = np.random.default_rng(seed)
    r = xp.asarray(rng.standard_normal(P))
    r /= xp.linalg.norm(r)
    jvp = getattr(net, "jvp", None)
    lam_max = 0.0
    for _ in range(iterations):
        u = net.vjp(X, r)
        if jvp is not None:
            Ju = jvp(X, u)
        else:
            norm = math.sqrt(sum(float((a * a).sum()) for a in u.values())) or 1.0
            eps = 1e-5 * max(1.0, math.sqrt(sum(float((a * a).sum()) for a in p0.values()))) / norm
            plus = {k: p0[k] + eps * u[k] for k in p0}
            minus = {k: p0[k] - eps * u[k] for k in p0}
            Ju = (net.forward(X, plus) - net.forward(X, minus)) / (2 * eps)
        lam_max = float(r @ Ju)
        nrm = float(xp.linalg.norm(Ju))
        if nrm == 0:
            break
        r = Ju / nrm
    prec = max(float(np.max(backend.to_numpy(xp.asarray(v)))) for v in net.priors.values())
    return target / (max(lam_max, 0.0) + T * prec)


# -- gradient descent ------------------------------------------------------------------------
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
        return _py(dict(settings=self.settings, trace=self.trace, prediction=self.prediction,
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
    params0 = _check_net(net)
    lr = _real(lr, "lr", positive=True)
    steps = _int(steps, "steps", 0)
    X = _inputs(X, "X")
    xp = backend.array_module(X)
    P = X.shape[0]
    dtype = _params_dtype(params0, X)
    yv = _labels(y, P, "y", xp, dtype)
    if batch_size is not None:
        batch_size = _int(batch_size, "batch_size", 1)
        if batch_size > P:
            raise ValueError(f"batch_size must be <= P = {P}, got {batch_size}")
        if batch_size == P:
            batch_size = None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {seed!r}")
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
        X_test = _inputs(X_test, "X_test")
    elif y_test is not None:
        raise ValueError("y_test given without X_test")
    ytv = None if y_test is None else _labels(y_test, X_test.shape[0], "y_test", xp, dtype)
    record_every = (max(1, steps // 200) if record_every is None
                    else _int(record_every, "record_every", 1))

    obj = _objective(net, X, X_test, dtype, fused)
    params = _chained(params0, 1, xp, dtype)
    start = {k: a.copy() for k, a in params.items()}
    norm0 = {k: float(xp.linalg.norm(a)) for k, a in start.items()}
    rng = np.random.default_rng(int(seed))
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

    flops = _gemm_flops(net, X, 1) if obj.fused else None
    t0 = time.perf_counter()
    with blas_threads(1, enabled=flops is not None and flops < _SMALL_GEMM):
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
    settings = dict(method="gd" if batch_size is None else "sgd", net=_net_config(net), lr=lr,
                    steps=steps, weight_decay=wd, batch_size=batch_size, seed=int(seed), P=P,
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


# -- one number for the CLI -------------------------------------------------------------------
def sampled_test_error(arch, *, width, geometry=None, X, y, X_test, y_test, temperature,
                       activation="erf", lambda0=1.0, lambda1=1.0, chains=4, steps=4000,
                       burn_in=None, lr=None, seed=0, thin=1, progress=False) -> dict:
    """Sample a 1HL network's posterior by :func:`langevin` and return its test error.

    Parameters
    ----------
    arch : {"fc", "cnn", "lcn"}
    width : int
        N1 for FC, the channels Nc for CNN/LCN.
    geometry : PatchGeometry
        Required for CNN/LCN; ignored (may be None) for FC.
    X, y, X_test, y_test : the task
    temperature, activation, lambda0, lambda1 : as the theory's
    chains, steps, burn_in, thin, seed : see :func:`langevin` (``steps`` counts burn-in)
    progress : bool or None
        Default False: callers such as ``lkr fc-vs-cnn`` draw their own progress line.
    lr : float, optional
        Default :func:`suggest_lr` at the initial parameters.

    Returns
    -------
    dict
        ``error``, ``error_se`` (over chains), ``bias2``, ``variance``, ``chains``,
        ``samples``, and ``lr``, ``steps_per_s``, ``rhat_max``, ``interrupted``.
    """
    from . import nets

    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
    width = _int(width, "width", 1)
    if arch == "fc":
        Xa = _inputs(X, "X")
        N0 = int(np.prod(Xa.shape[1:]))
        net = nets.FCNet(N0, width, activation=activation, lambda0=lambda0, lambda1=lambda1,
                         seed=seed)
        X = Xa.reshape(Xa.shape[0], N0)
        X_test = _inputs(X_test, "X_test")
        X_test = X_test.reshape(X_test.shape[0], -1)
    else:
        if geometry is None:
            raise ValueError(f"arch {arch!r} needs a geometry (a PatchGeometry)")
        cls = nets.CNNNet if arch == "cnn" else nets.LCNNet
        net = cls(geometry=geometry, channels=width, activation=activation, lambda0=lambda0,
                  lambda1=lambda1, seed=seed)
    if lr is None:
        lr = "auto"
    res = langevin(net, X, y, temperature, lr=lr, steps=steps, burn_in=burn_in, thin=thin,
                   X_test=X_test, y_test=y_test, chains=chains, seed=seed, progress=progress)
    out = res.test_error()
    out.update(lr=res.settings["lr"], steps_per_s=res.steps_per_s,
               rhat_max=res.to_dict()["rhat_max"], interrupted=res.interrupted)
    return out
