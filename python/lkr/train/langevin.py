r"""Langevin sampling of a network's Bayesian posterior (:func:`langevin`).

The posterior of docs/theory.md section 2 at temperature T is
:math:`p(\theta) \propto \exp(-\mathcal{L}(\theta)/T)`, sampled by the unadjusted Langevin
algorithm (see :mod:`lkr.train`). Here: the sampler, its result, the in-place updater and
the step-size suggestion.
"""
from __future__ import annotations

import math
import time

import numpy as np

from .. import _interrupt, backend
from .._blas import blas_threads
from .._json import dumps, jsonable
from .._progress import progress_bar
from .._validate import integer as _int
from .._validate import labels
from .._validate import real as _real
from .._validate import samples as inputs
from .._validate import seed as _seed
from ._common import (
    blas_count,
    chained,
    check_memory,
    check_net,
    net_config,
    objective,
    params_dtype,
    precisions,
    prior_draws,
    warn_run_end,
)

__all__ = ["langevin", "LangevinResult", "suggest_lr", "DEFAULT_BURN_IN_FRACTION",
           "default_burn_in"]

#: the default burn-in is this fraction of the steps (the one default of lkr: the library,
#: ``lkr train`` and ``lkr fc-vs-cnn --langevin``)
DEFAULT_BURN_IN_FRACTION = 0.5


def default_burn_in(steps: int) -> int:
    """The default burn-in of ``steps`` Langevin steps: ``steps // 2``."""
    return steps // 2


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
        yt = labels(y_test, m.shape[1], "y_test", xp, m.dtype)
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
        return jsonable(out)

    def to_json(self, **kwargs) -> str:
        return dumps(self.to_dict(), **kwargs)

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


class _Updater:
    """The Langevin update theta <- decay theta - lr g + amp xi, in place, per parameter.

    ``decay = 1 - lr T lambda``. On NumPy arrays one compiled pass per parameter
    (``langevin_update`` of the engine, csrc/lkr/noise.hpp): the noise xi ~ N(0, 1) of
    entry i at step t is a fixed function of (seed, parameter, t, i) (Philox4x32-10 and
    Box-Muller), so the numbers do not depend on the thread count. On CuPy, CuPy's
    generator.
    """

    def __init__(self, seed_seq, params, decay, lr, amp, xp):
        self.xp, self.decay, self.lr, self.amp = xp, decay, lr, amp
        self.t = 0
        if xp is np:
            self.key = int(seed_seq.generate_state(1, np.uint64)[0])
            self.eng = backend.implementation(np)
        else:  # pragma: no cover - GPU only
            self.rng = xp.random.RandomState(int(seed_seq.generate_state(1)[0]))

    def step(self, params, grads, own_grads, threads=None):
        """own_grads: the gradient arrays are fresh (the fused objectives'; unused here);
        threads: at most this many threads (the objective's last choice)."""
        xp = self.xp
        nt = backend.get_num_threads() if threads is None else threads
        for j, (k, a) in enumerate(params.items()):
            if xp is not np:  # pragma: no cover - GPU only
                a *= self.decay[k]
                a -= self.lr * grads[k]
                a += self.amp * self.rng.standard_normal(a.shape, dtype=a.dtype)
                continue
            decay = self.decay[k]
            if not isinstance(decay, float):   # per-entry precisions (a linearised net)
                a *= decay
                decay = 1.0
            g = np.ascontiguousarray(grads[k], dtype=a.dtype)
            self.eng.langevin_update(a, g, decay=decay, lr=self.lr, amp=self.amp, key=self.key,
                                     stream=j, step=self.t, nthreads=nt)
        self.t += 1


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
        The first steps, whose states are discarded; default ``steps // 2``
        (:func:`default_burn_in`). At most
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
    check_net(net)
    T = _real(temperature, "temperature", positive=True)
    steps = _int(steps, "steps", 0)
    burn_in = default_burn_in(steps) if burn_in is None else _int(burn_in, "burn_in", 0)
    if burn_in > steps:
        raise ValueError(f"burn_in ({burn_in}) must not exceed steps ({steps}): steps counts "
                         "every Langevin step, burn-in included")
    thin = _int(thin, "thin", 1)
    chains = _int(chains, "chains", 1)
    seed = _seed(seed)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    if progress not in (None, True, False):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")
    X = inputs(X, "X")
    xp = backend.array_module(X)
    P = X.shape[0]
    test_is_train = X_test is None
    if not test_is_train:
        X_test = inputs(X_test, "X_test")
        if backend.array_module(X_test) is not xp:
            raise TypeError("X and X_test must live on the same device")
    elif y_test is not None:
        raise ValueError("y_test given without X_test")
    dtype = params_dtype(net.params, X)
    yv = labels(y, P, "y", xp, dtype)
    Pt = P if test_is_train else X_test.shape[0]
    check_memory(net, P + (0 if test_is_train else Pt), chains)
    ytv = None if y_test is None else labels(y_test, Pt, "y_test", xp, dtype)
    if isinstance(lr, str):
        if lr != "auto":
            raise ValueError(f"lr must be a positive number or 'auto', got {lr!r}")
        lr = suggest_lr(net, X, T)
    lr = _real(lr, "lr", positive=True)
    lam = precisions(net, xp, dtype)
    total = steps
    trace_every = (max(1, total // 500) if trace_every is None
                   else _int(trace_every, "trace_every", 1))

    ss_init, ss_noise = np.random.SeedSequence(seed).spawn(2)
    params = _start_params(net, init, chains, ss_init, xp, dtype)
    obj = objective(net, X, None if test_is_train else X_test, dtype, fused)
    decay = {k: 1.0 - lr * T * val for k, val in lam.items()}
    updater = _Updater(ss_noise, params, decay, lr, math.sqrt(2.0 * lr * T), xp)
    stats = _RunningStats(chains, Pt, xp)
    tr_step, tr_train, tr_test = [], [], []

    state = _State()
    state.total = total
    interrupted = stopped = False
    done = 0  # steps whose update has completed
    t0 = time.perf_counter()
    nblas = blas_count(obj, chains)
    with _interrupt.polling(), blas_threads(nblas or 1, enabled=nblas is not None), \
            progress_bar(total, "langevin", progress, delay=1.0) as bar:
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
                    stats.add(ft)
                if record:
                    tr_step.append(t)
                    tr_train.append(backend.to_numpy(sq))
                    if ytv is not None:
                        tr_test.append(backend.to_numpy(((ft - ytv) ** 2).mean(axis=1)))
                # theta <- (1 - lr T lambda) theta - lr J^T (f - y) + sqrt(2 lr T) xi
                updater.step(params, g, own_grads=obj.fused,
                             threads=getattr(obj, "threads_now", None))
                done = t + 1
                if callback is not None:
                    state.step, state.params, state.f_train = t, params, f
                    state.samples_per_chain = stats.count
                    state.phase = "sampling" if sampling else "burn-in"
                    if callback(state) is True:
                        stopped = True
                        break
                if not bar.disable:
                    bar.update(1)
                    bar.set_postfix_str(f"train mse {float(sq.mean()):.4g}", refresh=False)
                _interrupt.check()
        except KeyboardInterrupt:
            interrupted = True
    elapsed = time.perf_counter() - t0
    count = stats.count
    warn_run_end("Langevin", interrupted, done, total, "steps", count)
    settings = dict(method="langevin (unadjusted, Euler-Maruyama)", net=net_config(net),
                    temperature=T, lr=lr, steps=steps, burn_in=burn_in, thin=thin,
                    chains=chains, seed=seed, init=init if isinstance(init, str) else "given",
                    P=P, P_test=Pt, test_is_train=test_is_train, dtype=str(np.dtype(dtype)),
                    fused=bool(obj.fused), stopped_by_callback=stopped,
                    priors={k: (v if isinstance(v, float) else "per-entry")
                            for k, v in lam.items()})
    trace = dict(step=tr_step,
                 train_error=np.array(tr_train) if tr_train else np.zeros((0, chains)))
    if ytv is not None:
        trace["test_error"] = np.array(tr_test) if tr_test else np.zeros((0, chains))
    return LangevinResult(chain_mean=stats.mean, chain_m2=stats.m2, count=count,
                          steps_done=done, interrupted=interrupted, params=params, trace=trace,
                          settings=settings, elapsed_s=elapsed, y_test=ytv)


def _start_params(net, init, chains, seed_seq, xp, dtype):
    """The chains' starting parameters (leading chain axis, fresh writable arrays): prior
    draws (``init="prior"``), the net's own (``"net"``) or given ones (a dict)."""
    if isinstance(init, str):
        if init == "prior":
            return prior_draws(net, chains, np.random.default_rng(seed_seq), xp, dtype)
        if init == "net":
            return chained(net.params, chains, xp, dtype)
        raise ValueError(f"init must be 'prior', 'net' or a dict of params, got {init!r}")
    if not isinstance(init, dict):
        raise TypeError(f"init must be 'prior', 'net' or a dict, got {type(init).__name__}")
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
    return params


class _RunningStats:
    """Per-chain running mean and sum of squared deviations (Welford) of f at the test
    inputs, in float64. Each update is computed aside and then swapped in, so that an
    interrupt never leaves the count and the sums out of step."""

    def __init__(self, chains, P, xp):
        self.count = 0
        self.mean = xp.zeros((chains, P), dtype=np.float64)
        self.m2 = xp.zeros((chains, P), dtype=np.float64)

    def add(self, f):
        delta = f - self.mean
        new_mean = self.mean + delta / (self.count + 1)
        new_m2 = self.m2 + delta * (f - new_mean)
        self.mean, self.m2, self.count = new_mean, new_m2, self.count + 1


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
    check_net(net)
    T = _real(temperature, "temperature", nonneg=True)
    target = _real(target, "target", positive=True)
    iterations = _int(iterations, "iterations", 1)
    X = inputs(X, "X")
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

