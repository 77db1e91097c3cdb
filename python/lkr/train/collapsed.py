r"""Exact posterior sampling with the readout integrated out (:func:`collapsed`).

Given the hidden weights W, the readout v ~ N(0, 1/lambda_r) and the Gaussian likelihood
make f a Gaussian process with kernel K_W = G^T G (G the scaled last-layer features), so
the posterior of W alone is known in closed form (docs/training.md, "Collapsed sampler"):

.. math:: \log p(W \mid \text{data}) = \log p(W) - \tfrac12 \sum_d y_d^T A_W^{-1} y_d
          - \tfrac D2 \log\det A_W + \text{const}, \qquad A_W = T I + K_W .

It is sampled by Metropolis-within-Gibbs: for each block of units/channels in turn, a
preconditioned Crank-Nicolson proposal w' = sqrt(1 - beta^2) w + beta xi / sqrt(lambda)
(which leaves the Gaussian prior invariant, so the prior cancels in the acceptance ratio),
accepted with probability min(1, exp(delta log-likelihood)). A block of the last hidden
layer changes A by a rank-(block * Np) term: the Cholesky factor of A is updated, not
recomputed (the compiled ``collapsed_sweep``). Predictions are Rao-Blackwellised: each
retained sample contributes the GP predictive given its features. No step-size bias.
"""
from __future__ import annotations

import math
import time

import numpy as np

from .. import _interrupt, _memory, backend
from .._blas import blas_threads
from .._progress import progress_bar
from .._validate import integer as _int
from .._validate import real as _real
from .._validate import seed as _seed
from ._collapsed_linalg import augmented_factor, design, loglik, predictive
from ._collapsed_models import model_for
from ._collapsed_result import CollapsedResult, RunningPredictive
from ._common import check_net, inputs, net_config, warn_run_end

__all__ = ["collapsed", "CollapsedResult", "default_sweeps_burn_in", "TARGET_ACCEPTANCE"]

#: the acceptance rate the pCN step is adapted to during burn-in (0.2-0.35 is efficient)
TARGET_ACCEPTANCE = 0.27


def default_sweeps_burn_in(sweeps: int) -> int:
    """The default burn-in of ``sweeps`` collapsed sweeps: a quarter (``sweeps // 4``).
    A sweep moves every block, so the chains forget their start within tens of sweeps;
    the burn-in also adapts the step."""
    return sweeps // 4


class _State:
    """What the callback sees after each sweep (one object, updated in place)."""

    __slots__ = ("sweep", "total", "phase", "params", "samples_per_chain", "acceptance",
                 "loglik", "step")

    def __repr__(self):
        return (f"State(sweep={self.sweep}/{self.total}, phase={self.phase!r}, "
                f"samples_per_chain={self.samples_per_chain})")


def _check_args(temperature, sweeps, burn_in, chains, thin, step, block, refresh, seed,
                progress, callback, adapt):
    T = _real(temperature, "temperature", positive=True)
    sweeps = _int(sweeps, "sweeps", 1)
    burn_in = (default_sweeps_burn_in(sweeps) if burn_in is None
               else _int(burn_in, "burn_in", 0))
    if burn_in > sweeps:
        raise ValueError(f"burn_in ({burn_in}) must not exceed sweeps ({sweeps}): sweeps counts "
                         "every sweep, burn-in included")
    step = _real(step, "step", positive=True)
    if step > 1:
        raise ValueError(f"step (the pCN beta) must be in (0, 1], got {step!r}")
    if not isinstance(adapt, (bool, np.bool_)):
        raise TypeError(f"adapt must be True or False, got {adapt!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    if progress not in (None, True, False):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")
    return (T, sweeps, burn_in, _int(chains, "chains", 1), _int(thin, "thin", 1), step,
            _int(block, "block", 1), _int(refresh, "refresh", 1), _seed(seed))


def _numpy_inputs(X, name):
    X = inputs(X, name)
    if backend.array_module(X) is not np:
        raise TypeError(f"the collapsed sampler runs on the CPU: pass {name} as a NumPy array "
                        "(lkr.backend.to_numpy)")
    return X


def _start(model, net, init, chains, rng):
    """Hidden weights (C, ...) float64 per group: prior draws, the net's own, or given."""
    W = {}
    for g in model.groups:
        shape = tuple(net.params[g.name].shape)
        if isinstance(init, str):
            if init == "prior":
                W[g.name] = rng.standard_normal((chains,) + shape) / math.sqrt(g.lam)
            elif init == "net":
                W[g.name] = np.array(np.broadcast_to(np.asarray(net.params[g.name], np.float64),
                                                     (chains,) + shape))
            else:
                raise ValueError(f"init must be 'prior', 'net' or a dict of params, got {init!r}")
            continue
        if not isinstance(init, dict):
            raise TypeError(f"init must be 'prior', 'net' or a dict, got {type(init).__name__}")
        if g.name not in init:
            raise ValueError(f"init has no {g.name!r} (needs the hidden weights "
                             f"{[h.name for h in model.groups]})")
        a = np.asarray(backend.to_numpy(backend.asarray(init[g.name], f"init[{g.name!r}]")),
                       dtype=np.float64)
        if a.shape == shape:
            a = np.broadcast_to(a, (chains,) + shape)
        elif a.shape != (chains,) + shape:
            raise ValueError(f"init[{g.name!r}] must have shape {shape} or "
                             f"{(chains,) + shape}, got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"init[{g.name!r}] contains NaN or inf")
        W[g.name] = np.array(a)
    return W


def _check_memory(net, P, Pt, D, chains):
    """Refuse a run whose factors and features would not fit the memory budget, before any
    is allocated (lkr._memory)."""
    hidden = net._hidden_units() if hasattr(net, "_hidden_units") else 0

    def need(n):
        return _memory.collapsed_bytes(n, Pt, D, hidden, chains)

    _memory.check(need(P), f"the collapsed sampler on P = {P} samples x {chains} chain(s)",
                  "use fewer samples or chains (or Langevin: lkr.train.langevin)",
                  size=("P", P, need))


def collapsed(net, X, Y, temperature, *, sweeps=1000, burn_in=None, chains=4, X_test=None,
              y_test=None, seed=0, thin=1, step=0.5, adapt=True, block=1, refresh=10,
              init="prior", progress=None, callback=None) -> CollapsedResult:
    r"""Sample a network's Bayesian posterior exactly, with the readout integrated out.

    The posterior of docs/theory.md section 2 at temperature T, over the hidden weights W
    only (the readout v is Gaussian given W and is marginalised analytically; see the
    module docstring and docs/training.md, "Collapsed sampler"). Metropolis-within-Gibbs
    with pCN proposals per block of units (FC) or channels (CNN, LCN, each layer of a deep
    CNN), exact for any step (no discretisation bias); predictions are the GP predictive
    given each sample's features (Rao-Blackwellised), test errors of the latent f (T not
    added), as everywhere in lkr.

    Parameters
    ----------
    net : FCNet, CNNNet, LCNNet or DeepCNNNet
        Its architecture, activation and priors (its own parameters only with
        ``init="net"``; its readout is never used).
    X : array (P, ...)
        Training inputs, as the net takes them (NumPy).
    Y : array (P,) or (P, D)
        Labels; D columns are D outputs sharing the hidden layer with independent readouts
        (one factorisation of A serves all). Results take the shape of Y (a vector Y gives
        (P_test,) arrays).
    temperature : float
        T > 0.
    sweeps : int
        Sweeps per chain, burn-in included; one sweep proposes a move for every block.
    burn_in : int, optional
        Sweeps discarded first (default ``sweeps // 4``); the step adapts during them only.
    chains : int
        Independent chains from independent starts (the batch axis of every computation).
    X_test : array (P_test, ...), optional
        Where to predict (default: the training inputs).
    y_test : array (P_test,) or (P_test, D), optional
        Test labels: a per-sample test-error trace and ``test_error`` in ``to_dict``.
    seed : int
        Seeds the starts and every draw: the same seed gives the same numbers, for any
        thread count.
    thin : int
        Keep every ``thin``-th sweep after burn-in (predictions cost about
        O(P P_test N) each).
    step : float in (0, 1]
        Initial pCN step beta (1: independent draws from the prior).
    adapt : bool
        Adapt beta during burn-in towards an acceptance of 0.27 (stochastic approximation on
        log beta, pooled over chains and blocks, gain max(0.1, 1/sqrt(sweep + 1)) so that
        it tracks until the end of burn-in); fixed afterwards, so the sampling phase is an
        exact Markov chain. False keeps ``step``.
    block : int
        Units (FC) or channels (CNN, LCN, deep CNN's last layer) per proposal block; must
        divide the width. 1 (default) updates one unit/channel at a time.
    refresh : int
        Refactorise A from the features every this many sweeps (against rounding drift of
        the updated factor; the drift found is reported in ``diagnostics``).
    init : "prior", "net" or dict
        Start from prior draws (default), the net's own hidden weights, or given ones (e.g.
        ``result.params`` to continue).
    progress : bool or None
        A progress bar on stderr (None: on a terminal, for runs over a second).
    callback : callable, optional
        ``callback(state)`` after every sweep (``sweep``, ``total``, ``phase``,
        ``params``, ``samples_per_chain``, ``acceptance``, ``loglik``, ``step``);
        returning True stops the run, raising KeyboardInterrupt stops it as Ctrl-C does.

    Returns
    -------
    CollapsedResult
        ``mean``, ``variance``, ``mean_se``, ``test_error(y_test)``, ``rhat``,
        ``rhat_split``, ``acceptance``, ``step``, traces and settings.

    Notes
    -----
    Cost per sweep: the proposal features (as one forward pass) plus about 3 N P^2
    flops for the rank updates and triangular solves (N = N1 or Nc Np features), plus a
    full refactorisation per channel of a deep CNN's lower layers. Ctrl-C stops at the end
    of the current sweep and returns what was sampled, with ``interrupted=True`` and a
    :class:`SamplingWarning`; a second Ctrl-C stops at once. Computations run in float64.
    """
    check_net(net)
    (T, sweeps, burn_in, chains, thin, step, block, refresh, seed) = _check_args(
        temperature, sweeps, burn_in, chains, thin, step, block, refresh, seed, progress,
        callback, adapt)
    X = _numpy_inputs(X, "X")
    P = X.shape[0]
    Ya = backend.asarray(Y, "Y")
    backend.check_floating(Ya, "Y")
    backend.check_finite(Ya, "Y")
    Yd, vector = design(backend.to_numpy(Ya), P, "Y")
    D = Yd.shape[1]
    test_is_train = X_test is None
    if not test_is_train:
        X_test = _numpy_inputs(X_test, "X_test")
        if math.prod(X_test.shape[1:]) != math.prod(X.shape[1:]):
            # named here: the net's own check would call X_test "X"
            raise ValueError(f"X_test must hold samples of the shape of X's, {X.shape[1:]}; got "
                             f"X_test of shape {X_test.shape}")
    elif y_test is not None:
        raise ValueError("y_test given without X_test")
    Pt = P if test_is_train else X_test.shape[0]
    yt = None
    if y_test is not None:
        yt_a = backend.asarray(y_test, "y_test")
        backend.check_floating(yt_a, "y_test")
        backend.check_finite(yt_a, "y_test")
        yt, yt_vector = design(backend.to_numpy(yt_a), Pt, "y_test")
        if yt.shape[1] != D or yt_vector != vector:
            want = f"({Pt},)" if vector else f"({Pt}, {D})"
            raise ValueError(f"y_test must have shape {want} (as Y), got "
                             f"{tuple(np.shape(y_test))}")
    _check_memory(net, P, Pt, D, chains)
    model = model_for(net, X, X_test, block)

    ss_init, ss_run = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(ss_run)
    W = _start(model, net, init, chains, np.random.default_rng(ss_init))
    impl = backend.implementation(np)
    nthreads = backend.get_num_threads()
    groups = model.groups
    betas = [step] * len(groups)
    planned = (sweeps - burn_in) // thin
    stats = RunningPredictive(chains, Pt, D)
    halves = (RunningPredictive(chains, Pt, D), RunningPredictive(chains, Pt, D))
    acc_sampling = [0] * len(groups)
    prop_sampling = [0] * len(groups)
    trace = dict(sweep=[], loglik=[], acceptance=[])
    err_trace = []
    drift = 0.0
    breakdowns = 0
    trace_every = max(1, sweeps // 500)
    state = _State()
    state.total = sweeps
    interrupted = stopped = False
    done = 0
    t0 = time.perf_counter()
    nblas = backend.get_num_threads()
    with _interrupt.polling(), blas_threads(nblas or 1, enabled=nblas > 0), \
            progress_bar(sweeps, "collapsed", progress, delay=1.0, unit="sweeps") as bar:
        try:
            G = model.features(W)
            S = augmented_factor(G, Yd, T)
            for t in range(sweeps):
                sampling = t >= burn_in
                rates = []
                for gi, g in enumerate(groups):
                    beta = betas[gi]
                    shrink = math.sqrt(max(0.0, 1.0 - beta * beta))
                    noise = beta / math.sqrt(g.lam)
                    if g.low_rank:
                        Wg = W[g.name]
                        Wp = shrink * Wg + noise * rng.standard_normal(Wg.shape)
                        logu = np.log(rng.random((chains, g.nb)))
                        Gp = model.last_proposal_features(W, Wp)
                        acc, _, status = impl.collapsed_sweep(S, G, Gp, logu, model.k,
                                                              nthreads=nthreads)
                        acc = acc.astype(bool)
                        Wv, Wpv = Wg.reshape(chains, g.nb, -1), Wp.reshape(chains, g.nb, -1)
                        Wv[acc] = Wpv[acc]
                        broken = np.flatnonzero(status)
                        if broken.size:   # a failed downdate: rebuild from the features
                            breakdowns += int(broken.size)
                            S[broken] = augmented_factor(G[broken], Yd, T)
                        n_acc = int(acc.sum())
                    else:
                        n_acc = _lower_layer(model, g, W, rng, shrink, noise, chains, Yd, T,
                                             G, S)
                    rate = n_acc / (chains * g.nb)
                    rates.append(rate)
                    if sampling:
                        acc_sampling[gi] += n_acc
                        prop_sampling[gi] += chains * g.nb
                    elif adapt:
                        # decaying gain with a floor: it keeps tracking while the chains
                        # still approach the posterior, so beta fits the end of burn-in
                        gamma = max(0.1, 1.0 / math.sqrt(t + 1.0))
                        betas[gi] = float(min(1.0, max(1e-6, beta * math.exp(
                            gamma * (rate - TARGET_ACCEPTANCE)))))
                if (t + 1) % refresh == 0:
                    fresh = augmented_factor(G, Yd, T)
                    drift = max(drift, float(np.max(np.abs(loglik(fresh) - loglik(S)))))
                    S = fresh
                if sampling and (t - burn_in + 1) % thin == 0:
                    Gt = G if test_is_train else model.features(W, test=True)
                    m0, v0 = predictive(S, G, Gt)
                    k = stats.count
                    (halves[0] if k < planned // 2 else halves[1]).add(m0, v0)
                    if yt is not None:
                        err_trace.append(((yt[None] - m0) ** 2 + v0[..., None]).mean(axis=(1, 2)))
                    stats.add(m0, v0)
                done = t + 1
                if t % trace_every == 0 or t == sweeps - 1:
                    trace["sweep"].append(t)
                    trace["loglik"].append(loglik(S))
                    trace["acceptance"].append(float(np.mean(rates)))
                if callback is not None:
                    state.sweep, state.params, state.samples_per_chain = t, W, stats.count
                    state.phase = "sampling" if sampling else "burn-in"
                    state.acceptance, state.loglik, state.step = rates[-1], loglik(S), betas[-1]
                    if callback(state) is True:
                        stopped = True
                        break
                if not bar.disable:
                    bar.update(1)
                    bar.set_postfix_str(f"acc {rates[-1]:.2f} beta {betas[-1]:.3g}",
                                        refresh=False)
                _interrupt.check()
        except KeyboardInterrupt:
            interrupted = True
    elapsed = time.perf_counter() - t0
    count = stats.count
    warn_run_end("collapsed", interrupted, done, sweeps, "sweeps", count)
    accs = [a / p if p else float("nan") for a, p in zip(acc_sampling, prop_sampling)]
    total_p = sum(prop_sampling)
    settings = dict(method="collapsed (readout integrated out; Metropolis-within-Gibbs, pCN)",
                    net=net_config(net), temperature=T, sweeps=sweeps, burn_in=burn_in,
                    thin=thin, chains=chains, seed=seed, step=step, adapt=bool(adapt),
                    block=block, refresh=refresh, outputs=D, P=P, P_test=Pt,
                    test_is_train=test_is_train, layers=[g.name for g in groups],
                    init=init if isinstance(init, str) else "given",
                    stopped_by_callback=stopped, dtype="float64")
    trace["loglik"] = np.array(trace["loglik"]) if trace["loglik"] else np.zeros((0, chains))
    if yt is not None:
        trace["test_error"] = np.array(err_trace) if err_trace else np.zeros((0, chains))
    return CollapsedResult(
        stats=stats, halves=halves, vector=vector, sweeps_done=done, interrupted=interrupted,
        params=W, trace=trace, settings=settings, elapsed_s=elapsed,
        acceptance=sum(acc_sampling) / total_p if total_p else float("nan"), steps=betas,
        acceptances=accs, diagnostics=dict(factor_drift=drift, breakdowns=breakdowns),
        y_test=None if yt is None else (yt[:, 0] if vector else yt))


def _lower_layer(model, g, W, rng, shrink, noise, chains, Yd, T, G, S):
    """pCN on each channel of a lower layer of a deep CNN: every feature changes, so each
    proposal refactorises A. Updates W, G, S (and the model's cached windows) in place for
    the accepted chains; returns the number of accepted proposals."""
    ll = loglik(S)
    n_acc = 0
    for a in range(g.nb):
        Wg = W[g.name]
        Wp = Wg.copy()
        Wp[:, a] = shrink * Wg[:, a] + noise * rng.standard_normal(Wg[:, a].shape)
        logu = np.log(rng.random(chains))
        windows, Gp = model.run_windows({**W, g.name: Wp})
        Sp = augmented_factor(Gp, Yd, T)
        llp = loglik(Sp)
        acc = logu < llp - ll
        if acc.any():
            Wg[acc] = Wp[acc]
            G[acc] = Gp[acc]
            S[acc] = Sp[acc]
            ll[acc] = llp[acc]
            model.set_windows(windows, acc)
            n_acc += int(acc.sum())
    return n_acc
