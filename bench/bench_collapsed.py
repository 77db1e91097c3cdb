"""Sampling efficiency: the collapsed sampler against Langevin, on the same nets and tasks.

The figure of merit of a posterior sampler used to estimate the test error is
``SE^2 x CPU seconds``: the squared standard error of the estimated test error times the CPU
time spent sampling (the inverse of the effective samples per CPU second, times the
variance). Smaller is better; ``ratio`` = Langevin's / the collapsed sampler's (how many
times less CPU the collapsed sampler needs for the same standard error).

Both samplers estimate the same posterior test error (latent f, T not added) as a time
average of one number per retained sample and chain: the test MSE of the sample (Langevin)
or the Rao-Blackwellised error mean_t[(y0 - m0)^2 + v0] (collapsed). The standard error is
computed from these series, pooled over chains, with the integrated autocorrelation time
tau (Sokal's automatic window, c = 5): SE^2 = var(e) tau / (samples x chains). (The spread of
the chain means, which ``test_error()`` reports, agrees within its own large uncertainty;
it is printed as ``se_chains``.) CPU seconds are ``time.process_time`` over the sampling
phase only (burn-in excluded for both, which favours Langevin: it also needs the longer
burn-in). ``tau`` is in retained samples; a run shorter than 50 tau is flagged ``short``.

Workloads (erf, T = 0.1, lambda0 = lambda1 = 1, synthetic local-teacher tasks of
:func:`lkr.data.local_teacher`: Gaussian inputs labelled by an erf CNN teacher with 4
channels on the student's patches, unit label variance):

``cnn1d-P48``
    1D CNN, N0 = 64, filter 16, stride 16 (Np = 4, M = 16), Nc = 48 (alpha = 1), P = 48.
``fc-P500``
    FC on 28 x 28 = 784 inputs (teacher: 7 x 7 filters), N1 = 500 (alpha = 1), P = 500.
``cnn28-P500``, ``cnn28-P500-Nc256``
    CNN on 28 x 28, filter 7 x 7 at stride 7 (Np = 16, M = 49), Nc = 64 (alpha = 7.8) and
    256 (alpha = 2), P = 500.

P_test = 200 in every case. Langevin: ``lr="auto"`` (a quarter of the stability limit),
the net's fused objective. Threads: the suite runs at lkr's thread setting (every row
names it); BLAS follows it.
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np

from .harness import lkr_threads, load, record

SUITE = "collapsed"


def _log(msg):
    print(f"  [{SUITE}] {msg}", file=sys.stderr, flush=True)


def tau_int(x, c=5.0):
    """Integrated autocorrelation time of series x (samples, chains), the autocorrelation
    averaged over chains, Sokal's window (smallest W with W >= c tau(W))."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    x = x - x.mean(axis=0)
    f = np.fft.rfft(x, n=2 * n, axis=0)
    acf = np.fft.irfft(f * np.conj(f), axis=0)[:n].mean(axis=1)
    if acf[0] <= 0:
        return 1.0
    rho = acf / acf[0]
    tau = 1.0
    for w in range(1, n):
        tau += 2.0 * rho[w]
        if w >= c * tau:
            break
    return max(tau, 1.0)


def _cases(quick):
    from lkr import PatchGeometry, data, nets

    def cnn1d():
        t = data.local_teacher(48, 200, seed=0, input_shape=(64,), filter_size=16)
        g = PatchGeometry((64,), 16, 16)
        return nets.CNNNet(g, 48, seed=0), t

    def fc():
        P = 100 if quick else 500
        t = data.local_teacher(P, 200, seed=0, input_shape=(28, 28), filter_size=(7, 7))
        X, Xt = t.X.reshape(P, -1), t.X_test.reshape(len(t.X_test), -1)
        return nets.FCNet(784, 100 if quick else 500, seed=0), t._replace(X=X, X_test=Xt)

    def cnn28(Nc):
        def build():
            t = data.local_teacher(500, 200, seed=0, input_shape=(28, 28), filter_size=(7, 7))
            g = PatchGeometry((28, 28), (7, 7), (7, 7))
            return nets.CNNNet(g, Nc, seed=0), t
        return build

    # (name, builder, langevin (steps, burn_in, thin), collapsed (sweeps, burn_in, thin))
    if quick:
        return [("cnn1d-P48", cnn1d, (2000, 1000, 10), (200, 50, 1))]
    return [("cnn1d-P48", cnn1d, (60000, 20000, 20), (1500, 300, 1)),
            ("fc-P500", fc, (6000, 2000, 5), (250, 50, 1)),
            ("cnn28-P500", cnn28(64), (8000, 2000, 5), (300, 100, 1)),
            ("cnn28-P500-Nc256", cnn28(256), (4000, 1000, 5), (120, 30, 1))]


def _langevin(net, t, T, steps, burn_in, thin, chains):
    from lkr import train

    mark = {}

    def cb(state):
        if state.phase == "sampling" and "t" not in mark:
            mark["t"] = time.process_time()

    c0 = time.process_time()
    res = train.langevin(net, t.X, t.y, T, lr="auto", steps=steps, burn_in=burn_in, thin=thin,
                         trace_every=thin, X_test=t.X_test, y_test=t.y_test, chains=chains,
                         seed=1, progress=False, callback=cb)
    c1 = time.process_time()
    steps_tr = np.asarray(res.trace["step"])
    e = res.trace["test_error"][steps_tr >= burn_in]
    return res, e, c1 - mark.get("t", c0), c1 - c0


def _collapsed(net, t, T, sweeps, burn_in, thin, chains):
    from lkr import train

    mark = {}

    def cb(state):
        if state.phase == "sampling" and "t" not in mark:
            mark["t"] = time.process_time()

    c0 = time.process_time()
    res = train.collapsed(net, t.X, t.y, T, sweeps=sweeps, burn_in=burn_in, thin=thin,
                          X_test=t.X_test, y_test=t.y_test, chains=chains, seed=1,
                          progress=False, callback=cb)
    c1 = time.process_time()
    # the sampling phase starts after the callback of the last burn-in sweep
    return res, res.trace["test_error"], c1 - mark.get("t", c0), c1 - c0


def _row(case, impl, res, e, cpu, cpu_total, extra):
    n, C = e.shape
    tau = tau_int(e)
    se2 = float(e.var(ddof=1) * tau / (n * C))
    te = res.test_error()
    return record(SUITE, case, impl, cpu, 0.0, 1, error=te["error"], se=math.sqrt(se2),
                  se_chains=te["error_se"], tau=tau, samples=n, chains=C, cpu_s=cpu,
                  cpu_total_s=cpu_total, se2_cpu=se2 * cpu, rate=1.0 / (se2 * cpu),
                  rate_unit="1/(SE^2 cpu-s)", short=bool(n < 50 * tau), threads=lkr_threads(),
                  **extra)


def run(quick: bool = False, only=None):
    T, chains = 0.1, 4
    rows = []
    for name, build, (steps, lb, lthin), (sweeps, cb_, cthin) in _cases(quick):
        if only is not None and name not in only:
            continue
        net, t = build()
        _log(f"{name}: Langevin {chains} chains x {steps} steps ...")
        res, e, cpu, tot = _langevin(net, t, T, steps, lb, lthin, chains)
        lrow = _row(name, "langevin", res, e, cpu, tot, dict(lr=res.settings["lr"]))
        _log(f"{name}: collapsed {chains} chains x {sweeps} sweeps ...")
        res, e, cpu, tot = _collapsed(net, t, T, sweeps, cb_, cthin, chains)
        crow = _row(name, "collapsed", res, e, cpu, tot,
                    dict(acceptance=res.acceptance, step=res.step))
        crow["ratio"] = lrow["se2_cpu"] / crow["se2_cpu"]
        crow["vs"] = "langevin"
        rows += [lrow, crow]
        _log(format_efficiency([lrow, crow]))
    ld = load()
    for r in rows:
        r["loadavg"] = ld["loadavg"]
    return rows


def format_efficiency(rows) -> str:
    """The efficiency table (the columns the runner's table does not show)."""
    cols = ["case", "impl", "threads", "error", "se", "se_chains", "tau", "samples", "cpu_s",
            "se2_cpu", "ratio"]
    out = ["  ".join(f"{c:>10}" for c in cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{v:>10.4g}" if isinstance(v, float) else f"{v!s:>10}")
        out.append("  ".join(cells) + ("  short" if r.get("short") else ""))
    return "\n".join(out)
