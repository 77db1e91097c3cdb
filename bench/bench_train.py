"""Langevin steps per second: lkr against the same update written in PyTorch.

One Langevin step is theta <- (1 - lr T lambda) theta - lr J^T (f - y) + sqrt(2 lr T) xi on
the full training set (docs/theory.md section 2): a forward pass, the gradient of the squared
loss, one Gaussian draw per parameter. Workloads (the issue's):

FC
    N0 = 784, N1 = 512, P = 500, erf.
CNN
    32 x 32 inputs, one channel, 8 x 8 filters at stride 8 (Np = 16 patches of M = 64),
    64 channels, P = 500, erf.

Each workload runs in float64 and float32, at 1 and 2 threads (lkr: ``lkr.set_num_threads``;
torch: ``torch.set_num_threads``); every row names its thread count, dtype and the load
average when it was measured. Implementations:

``lkr.train.langevin``
    the compiled step (inputs or patches prepared once; one job of lkr's task pool per
    step with single-threaded BLAS products inside, the Philox noise and update fused; see
    docs/training.md). At n threads the step runs on 1 or n of them, whichever its
    measurements find faster (lkr._tuning; the numbers are the same either way):
    ``step_threads`` says what the step was using at the end of the group. The time
    includes starting the run (prior draw, patches).
``lkr nets forward+vjp``
    the same loop through the nets' own ``forward``/``vjp`` (``fused=False``).
``torch autograd``
    the PyTorch program a user would write: forward, ``torch.autograd.grad`` of the same
    loss, in-place update with ``torch.randn_like`` noise (CNN: ``conv2d``).
``torch patches``
    CNN only: the same with the patch tensor cut once and a matmul instead of ``conv2d``.

The implementations of one (workload, dtype, threads) group are timed alternating, one run
of each per round, so that the machine's load falls on all of them alike.

``rate`` is steps per second (per chain; the 4-chain lkr row reports chain-steps per
second), ``ratio`` the speed-up of an lkr row over the fastest torch row at the same thread
count and dtype (issue 21's goal: >= 1.5 at 2 threads in float64, >= 1.2 in float32), and
``max_rel_err`` the largest relative difference between lkr's and torch's loss gradients
at the same parameters. Torch rows are skipped when torch is not installed (it is never a
dependency of lkr).
"""
from __future__ import annotations

import gc
import math
import os
import statistics
import sys
import time

import numpy as np

from .harness import record

SUITE = "train"

_T, _LR = 0.1, 1e-4


def _log(msg):
    print(f"  [{SUITE}] {msg}", file=sys.stderr, flush=True)


def _workloads():
    import lkr
    from lkr import nets

    rng = np.random.default_rng(0)
    P = 500
    y = rng.standard_normal(P)
    fc = nets.FCNet(784, 512, activation="erf", seed=0)
    Xfc = rng.standard_normal((P, 784))
    g = lkr.PatchGeometry((32, 32), (8, 8), (8, 8))
    cnn = nets.CNNNet(geometry=g, width=64, activation="erf", seed=0)
    Xcnn = rng.standard_normal((P, 32, 32))
    return [("FC N0=784 N1=512 P=500", fc, Xfc, y),
            ("CNN 32x32 m=8 s=8 Nc=64 P=500", cnn, Xcnn, y)]


def _lkr_runner(net, X, y, steps, chains, fused, dtype):
    from lkr import train

    init = {k: a.astype(dtype) for k, a in net.init_params(1, chains=chains).items()}
    X, y = X.astype(dtype), y.astype(dtype)
    # the net's own parameters in the row's dtype: langevin computes in float32 only when
    # the net, the inputs and the start all are float32
    net = net.with_params({k: a.astype(dtype) for k, a in net.params.items()})

    def go():
        return train.langevin(net, X, y, _T, lr=_LR, steps=steps, burn_in=0, chains=chains,
                              seed=0, init=init, progress=False, fused=fused)
    return go


def _torch_runner(torch, net, X, y, steps, variant, dtype):
    """The update in PyTorch; returns (run k steps, gradient at the initial params)."""
    from lkr import nets

    dt = torch.float64 if dtype == np.float64 else torch.float32
    X, y = X.astype(dtype), y.astype(dtype)
    p0 = net.params
    lam = net.priors
    Xt = torch.from_numpy(np.ascontiguousarray(X))
    yt = torch.from_numpy(y)
    amp = math.sqrt(2 * _LR * _T)
    if isinstance(net, nets.FCNet):
        N0, N1 = net.N0, net.N1

        def f_of(W, v):
            return torch.erf(Xt @ W.T / math.sqrt(N0)) @ v / math.sqrt(N1)
    else:
        g = net.geometry
        Nc, Np, M = net.channels, g.num_patches, g.patch_size
        c1 = 1.0 / math.sqrt(Nc * Np)
        if variant == "conv2d":
            Ximg = Xt.reshape(X.shape[0], 1, 32, 32)

            def f_of(W, v):
                H = torch.nn.functional.conv2d(Ximg, W.reshape(Nc, 1, 8, 8), stride=8)
                return (torch.erf(H / math.sqrt(M)).reshape(-1, Nc, Np) * v).sum((1, 2)) * c1
        else:
            Z = torch.from_numpy(np.ascontiguousarray(g.patches(X), dtype=dtype)) / math.sqrt(M)

            def f_of(W, v):
                S = torch.erf(Z @ W.T)                                   # (P, Np, Nc)
                return torch.einsum("pia,ai->p", S, v) * c1

    def grads(W, v):
        f = f_of(W, v)
        loss = 0.5 * ((yt - f) ** 2).sum() + 0.5 * _T * (lam["W"] * (W * W).sum()
                                                         + lam["v"] * (v * v).sum())
        return torch.autograd.grad(loss, (W, v))

    def fresh():
        return (torch.tensor(p0["W"], dtype=dt, requires_grad=True),
                torch.tensor(p0["v"], dtype=dt, requires_grad=True))

    def go():
        W, v = fresh()
        gen = torch.Generator().manual_seed(0)
        for _ in range(steps):
            gW, gv = grads(W, v)
            with torch.no_grad():
                for a, ga in ((W, gW), (v, gv)):
                    a -= _LR * ga
                    a += amp * torch.randn(a.shape, generator=gen, dtype=dt)
        return W
    W, v = fresh()
    gW, gv = grads(W, v)
    return go, {"W": gW.detach().numpy(), "v": gv.detach().numpy()}


def _step_threads(net, X, dtype, chains):
    """The thread count the compiled step of this workload was using last (lkr._tuning)."""
    from lkr import nets
    from lkr.nets import _base

    kind = "_FCObjective" if isinstance(net, nets.FCNet) else "_CNNObjective"
    dt = np.dtype(dtype).name
    for key, tuner in _base._TUNERS.items():
        if key[0] == kind and key[-1] == dt and key[2][0] == chains and \
                key[1][0] % X.shape[0] == 0:
            return tuner.current
    return None


def _with_threads(torch, n, go):
    def run_it():
        old = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return go()
        finally:
            torch.set_num_threads(old)
    return run_it


def _lkr_threads(n, go):
    """lkr at n threads: the compiled passes and the BLAS products."""
    import lkr
    from lkr._blas import blas_threads

    def run_it():
        old = lkr.get_num_threads()
        lkr.set_num_threads(n)
        try:
            with blas_threads(n):
                return go()
        finally:
            lkr.set_num_threads(old)
    return run_it


def _alternating(runs, repeats, budget):
    """Median and IQR of each run's time, timing one call of each per round (after one
    warm-up round), until ``repeats`` rounds or ``budget`` seconds."""
    for _, go, _ in runs:
        go()
    times = [[] for _ in runs]
    spent = 0.0
    for _ in range(repeats):
        for j, (_, go, _) in enumerate(runs):
            gc.collect()
            t0 = time.perf_counter()
            go()
            dt = time.perf_counter() - t0
            times[j].append(dt)
            spent += dt
        if spent > budget:
            break
    out = []
    for t in times:
        iqr = 0.0
        if len(t) >= 4:
            q = statistics.quantiles(t, n=4)
            iqr = q[2] - q[0]
        out.append((statistics.median(t), iqr, len(t)))
    return out


def run(quick: bool = False):
    from lkr import train

    try:
        import torch
    except ImportError:
        torch = None
        _log("torch is not installed: torch rows skipped (pip install torch to compare)")
    steps = 5 if quick else 20
    repeats = 3 if quick else 7
    budget = 6.0 if quick else 40.0
    rows = []
    for case, net, X, y in _workloads():
        for dtype in (np.float64, np.float32):
            dname = np.dtype(dtype).name
            # lkr's gradient at the initial params, for the accuracy column
            ours = train.loss_and_grad(net, X.astype(dtype), y.astype(dtype), _T,
                                       params={k: a.astype(dtype)
                                               for k, a in net.params.items()})[1]
            for nt in (1, 2):
                tag = f"{dname} {nt} thr"
                runs = [(f"lkr.train.langevin {tag}",
                         _lkr_threads(nt, _lkr_runner(net, X, y, steps, 1, True, dtype)), 1)]
                if not quick:
                    runs.append((f"lkr.train.langevin 4 chains {tag}",
                                 _lkr_threads(nt, _lkr_runner(net, X, y, steps, 4, True, dtype)),
                                 4))
                    runs.append((f"lkr nets forward+vjp {tag}",
                                 _lkr_threads(nt, _lkr_runner(net, X, y, steps, 1, False, dtype)),
                                 1))
                errs = {}
                if torch is not None:
                    variants = ["autograd"] if case.startswith("FC") else ["conv2d", "patches"]
                    for variant in variants:
                        name = ("torch autograd" if variant in ("autograd", "conv2d")
                                else "torch patches")
                        name += (" (conv2d)" if variant == "conv2d" else "") + f" {tag}"
                        go, g = _torch_runner(torch, net, X, y, steps, variant, dtype)
                        errs[name] = max(float(np.abs(g[k] - ours[k]).max()
                                               / np.abs(ours[k]).max()) for k in g)
                        runs.append((name, _with_threads(torch, nt, go), 1))
                timed = _alternating(runs, repeats, budget)
                rates = {name: steps * chains / med
                         for (name, _, chains), (med, _, _) in zip(runs, timed)}
                for name, rate in rates.items():
                    _log(f"{case}: {name}: {rate:.1f} steps/s")
                torch_rates = {k: r for k, r in rates.items() if k.startswith("torch")}
                best = max(torch_rates.items(), key=lambda kv: kv[1]) if torch_rates else None
                load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
                for (name, _, chains), (med, iqr, n) in zip(runs, timed):
                    extra = dict(rate=rates[name], steps=steps, chains=chains, threads=nt,
                                 dtype=dname, load1=round(load1, 2),
                                 rate_unit="chain-steps/s" if chains > 1 else "steps/s")
                    if name.startswith("lkr.train"):
                        extra["step_threads"] = _step_threads(net, X, dtype, chains)
                        if nt == 2 and best is not None:
                            extra["note"] = ("goal: ratio >= 1.5" if dname == "float64"
                                             else "goal: ratio >= 1.2")
                    if name in errs:
                        extra["max_rel_err"] = errs[name]
                    if best is not None and not name.startswith("torch"):
                        extra["ratio"] = rates[name] / best[1]
                        extra["vs"] = best[0]
                    rows.append(record(SUITE, case, name, med / steps, iqr / steps, n, **extra))
    return rows
