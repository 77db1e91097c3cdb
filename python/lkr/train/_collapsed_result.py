r"""What the collapsed sampler returns (:class:`CollapsedResult`) and its running statistics.

Every retained sample s of a chain contributes the Gaussian-process predictive given its
features (Rao-Blackwellised): mean m0_s (Pt, D) and variance v0_s (Pt,). Per chain the
posterior mean of f is the average of m0 and its variance the average of v0 plus the
variance of m0 over the samples (law of total variance); the test error of a chain is the
mean over test points and outputs of (y0 - mean)^2 + variance, which equals the average
over samples of mean[(y0 - m0_s)^2 + v0_s] (docs/training.md, "Collapsed sampler").
"""
from __future__ import annotations

import math

import numpy as np

from .._json import dumps, jsonable

__all__ = ["CollapsedResult", "RunningPredictive", "rhat"]


class RunningPredictive:
    """Per-chain Welford sums of m0 (C, Pt, D) and the running mean of v0 (C, Pt), float64.
    Each update is computed aside and swapped in, so an interrupt never leaves it torn."""

    def __init__(self, chains, Pt, D):
        self.count = 0
        self.mean = np.zeros((chains, Pt, D))
        self.m2 = np.zeros((chains, Pt, D))
        self.vbar = np.zeros((chains, Pt))

    def add(self, m0, v0):
        n = self.count + 1
        delta = m0 - self.mean
        mean = self.mean + delta / n
        m2 = self.m2 + delta * (m0 - mean)
        vbar = self.vbar + (v0 - self.vbar) / n
        self.mean, self.m2, self.vbar, self.count = mean, m2, vbar, n


def rhat(means, m2s, counts):
    r"""Gelman-Rubin :math:`\hat R = \sqrt{((n-1)/n\, W + B/n) / W}` over the leading axis
    (chains, or half-chains for the split version) from per-chain means, sums of squared
    deviations and counts; W the mean within-chain variance, B/n the variance of the chain
    means. With unequal counts (a run cut short) n is the smallest. None when a chain has
    fewer than 2 samples or there is one chain."""
    counts = np.asarray(counts)
    if means.shape[0] < 2 or counts.min() < 2:
        return None
    n = int(counts.min())
    W = (m2s / (counts.reshape((-1,) + (1,) * (m2s.ndim - 1)) - 1)).mean(axis=0)
    B_n = means.var(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(((n - 1) / n * W + B_n) / W)


def _series_rhat(x):
    """(R-hat, split R-hat) of scalar series x (samples, chains), or (None, None)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 4 or x.shape[1] < 2:
        return None, None
    n = x.shape[0]
    full = rhat(x.mean(0), ((x - x.mean(0)) ** 2).sum(0), [n] * x.shape[1])
    h = n // 2
    halves = np.concatenate([x[:h], x[n - h:]], axis=1)
    split = rhat(halves.mean(0), ((halves - halves.mean(0)) ** 2).sum(0), [h] * halves.shape[1])
    return float(full), float(split)


class CollapsedResult:
    r"""What :func:`lkr.train.collapsed` sampled (the surface of
    :class:`~lkr.train.LangevinResult`, plus the sampler's own figures).

    Attributes
    ----------
    mean, variance : ndarray (P_test,) or (P_test, D), or None
        Posterior mean and variance of f at the test inputs (Rao-Blackwellised), pooled
        over chains; None when no sample was taken. The shape follows Y's.
    chain_mean, chain_variance : ndarray (chains, P_test[, D])
    samples_per_chain, samples : int
    sweeps_done : int
        Sweeps (one pCN proposal per block of every layer) taken, burn-in included.
    acceptance : float
        Acceptance rate of the sampling phase (all proposals); NaN before it starts.
    step : float
        The pCN step beta of the last hidden layer after adaptation (fixed while sampling).
    steps, acceptances : tuple
        The same per hidden layer (one entry for one-hidden-layer nets).
    interrupted : bool
    params : dict
        The chains' last hidden weights (leading chain axis; the readout is integrated out).
    trace : dict
        ``sweep``, ``loglik`` (records, chains): the collapsed log-likelihood,
        ``acceptance`` (records,); with ``y_test``, ``test_error`` (samples, chains): the
        Rao-Blackwellised test error of every retained sample.
    diagnostics : dict
        ``factor_drift``: largest |log-likelihood of the updated factor - that of a fresh
        factorisation| at the refreshes; ``breakdowns``: chains whose factor was rebuilt
        after a failed downdate.
    settings : dict
    elapsed_s, sweeps_per_s : float
    """

    def __init__(self, *, stats, halves, vector, sweeps_done, interrupted, params, trace,
                 settings, elapsed_s, acceptance, steps, acceptances, diagnostics,
                 y_test=None):
        self._stats, self._halves, self._vector = stats, halves, vector
        self.chains = int(settings["chains"])
        self.samples_per_chain = int(stats.count)
        self.samples = self.samples_per_chain * self.chains
        self.sweeps_done = int(sweeps_done)
        self.steps_done = self.sweeps_done  # the name LangevinResult uses
        self.interrupted = bool(interrupted)
        self.params = params
        self.trace = trace
        self.settings = settings
        self.elapsed_s = float(elapsed_s)
        self.sweeps_per_s = (self.sweeps_done / self.elapsed_s if self.elapsed_s > 0
                             else float("nan"))
        self.acceptance = float(acceptance)
        self.steps = tuple(float(b) for b in steps)
        self.step = self.steps[-1]
        self.acceptances = tuple(float(a) for a in acceptances)
        self.diagnostics = diagnostics
        self._y_test = y_test

    def _shape(self, a):
        return None if a is None else (a[..., 0] if self._vector else a)

    # -- pooled statistics ---------------------------------------------------------------
    @property
    def chain_mean(self):
        return self._shape(self._stats.mean)

    def _chain_var(self):
        s = self._stats
        return s.m2 / s.count + s.vbar[..., None]

    @property
    def chain_variance(self):
        if self._stats.count == 0:
            return None
        return self._shape(self._chain_var())

    def _pooled(self):
        s = self._stats
        n = s.count
        between = ((s.mean - s.mean.mean(axis=0)) ** 2).sum(axis=0) * n
        var = (s.m2.sum(axis=0) + between) / (n * self.chains) + s.vbar.mean(axis=0)[..., None]
        return s.mean.mean(axis=0), var

    @property
    def mean(self):
        return None if self._stats.count == 0 else self._shape(self._pooled()[0])

    @property
    def variance(self):
        return None if self._stats.count == 0 else self._shape(self._pooled()[1])

    @property
    def mean_se(self):
        """Standard error of :attr:`mean` from the spread of the chain means."""
        if self._stats.count == 0 or self.chains < 2:
            return None
        return self._shape(self._stats.mean.std(axis=0, ddof=1) / math.sqrt(self.chains))

    @property
    def rhat(self):
        """Gelman-Rubin R-hat of the Rao-Blackwellised mean m0 per test point (and output)."""
        s = self._stats
        out = rhat(s.mean, s.m2, [s.count] * self.chains)
        return self._shape(out)

    @property
    def rhat_split(self):
        """Split R-hat: each chain's first and second half of its samples as separate
        chains (catches a drift within chains that R-hat misses)."""
        a, b = self._halves
        if a.count < 2 or b.count < 2:
            return None
        out = rhat(np.concatenate([a.mean, b.mean]), np.concatenate([a.m2, b.m2]),
                   [a.count] * self.chains + [b.count] * self.chains)
        return self._shape(out)

    def test_error(self, y_test=None) -> dict:
        r"""The posterior test error (latent f; T not added) and its parts.

        error = mean over test points (and outputs) of :math:`(y_0 - \bar f)^2 + {\rm Var} f`
        = bias2 + variance; ``error_se`` from the spread of the per-chain errors over the
        independent chains. With D outputs also ``per_output`` (error, bias2, variance as
        length-D lists). When y_test was given to the sampler, ``rhat`` and ``rhat_split``
        of the per-sample error series are included.
        """
        if y_test is None:
            y_test = self._y_test
        if y_test is None:
            raise ValueError("test_error needs the test labels y_test")
        s = self._stats
        if s.count == 0:
            raise ValueError("no samples were taken (stopped during burn-in?); nothing to "
                             "evaluate")
        Pt, D = s.mean.shape[1:]
        yt = np.asarray(y_test, dtype=np.float64)
        if yt.ndim == 1:
            yt = yt[:, None]
        if yt.shape != (Pt, D) or (self._vector and np.ndim(y_test) != 1):
            want = f"({Pt},)" if self._vector else f"({Pt}, {D})"
            raise ValueError(f"y_test must have shape {want}, got {tuple(np.shape(y_test))}")
        if not np.all(np.isfinite(yt)):
            raise ValueError("y_test contains NaN or inf")
        mean, var = self._pooled()
        b2 = ((yt - mean) ** 2).mean(axis=0)
        vv = var.mean(axis=0)
        chain_err = ((yt[None] - s.mean) ** 2 + self._chain_var()).mean(axis=(1, 2))
        se = (float(chain_err.std(ddof=1) / math.sqrt(self.chains)) if self.chains > 1
              else float("nan"))
        out = dict(error=float((b2 + vv).mean()), error_se=se, bias2=float(b2.mean()),
                   variance=float(vv.mean()), chains=self.chains, samples=self.samples,
                   chain_errors=chain_err.tolist())
        if not self._vector:
            out["per_output"] = dict(error=(b2 + vv).tolist(), bias2=b2.tolist(),
                                     variance=vv.tolist())
        if y_test is self._y_test and "test_error" in self.trace:
            out["rhat"], out["rhat_split"] = _series_rhat(self.trace["test_error"])
        return out

    def to_dict(self) -> dict:
        """Everything but the parameters, JSON-friendly."""
        out = dict(settings=self.settings, samples=self.samples,
                   samples_per_chain=self.samples_per_chain, sweeps_done=self.sweeps_done,
                   interrupted=self.interrupted, elapsed_s=self.elapsed_s,
                   sweeps_per_s=self.sweeps_per_s, acceptance=self.acceptance, step=self.step,
                   steps=list(self.steps), acceptances=list(self.acceptances),
                   diagnostics=self.diagnostics, mean=self.mean, variance=self.variance,
                   mean_se=self.mean_se, trace=self.trace)
        for key in ("rhat", "rhat_split"):
            r = getattr(self, key)
            out[key + "_max"] = None if r is None else float(np.nanmax(r))
        if self._y_test is not None and self.samples_per_chain:
            out["test_error"] = self.test_error()
        return jsonable(out)

    def to_json(self, **kwargs) -> str:
        return dumps(self.to_dict(), **kwargs)

    def __repr__(self) -> str:
        flag = ", interrupted" if self.interrupted else ""
        return (f"CollapsedResult(chains={self.chains}, samples={self.samples}, "
                f"sweeps_done={self.sweeps_done}, acceptance={self.acceptance:.2f}, "
                f"step={self.step:.3g}{flag})")
