"""One point of ``lkr nets-vs-linearized``: a (task, architecture, width, seed) trained and
measured (:mod:`lkr.experiments.nets_vs_linearized`, docs/nets-vs-linearized.md)."""
from __future__ import annotations

import math
import time

import numpy as np

from .multioutput import StopRule

__all__ = ["point"]


def _metrics(F, groups, Y):
    return {"accuracy": float(np.mean(np.argmax(F, axis=1) == groups)),
            "mse": float(np.mean((Y - F) ** 2))}


def _singular_values(w):
    """sigma_k of J from Theta's ascending eigenvalues w, descending; those within the
    rounding of zero (<= n eps lambda_max) set to 0, as :func:`lkr.spectrum.singular_values`
    does for a Gram matrix."""
    wd = w[::-1]
    floor = wd.size * np.finfo(np.float64).eps * max(float(wd[0]), 0.0)
    return np.sqrt(np.where(wd > floor, wd, 0.0))


def point(arch, spec, width, seed, task, activation, rule, lr_scale, batch, momentum=0.0):
    """Every number of one (task, architecture, width, seed): ``spec`` the architecture's
    :class:`~lkr.experiments.nets_vs_linearized.Arch`, ``task`` a PreparedTask, ``rule`` a
    :class:`StopRule` or a number of steps."""
    from .. import spectrum
    from ..data import one_hot
    from . import multioutput as mo

    if not isinstance(rule, StopRule):
        rule = StopRule.fixed(rule)
    X, g, Xt, gt, info, D = task.data
    geometry = task.deep if spec.geometry == "deep" else task.geometry
    t0 = time.perf_counter()
    net = spec.make(width, geometry, activation, seed)
    m = mo.MultiOutput(net, D, seed=seed, readout=spec.readout)
    Y, Yt = one_hot(g, D), one_hot(gt, D)
    K = mo.ntk(m, X)                      # Theta = J J^T on the training set
    t1 = time.perf_counter()
    eig = mo.eig(K)
    s = _singular_values(eig[0])
    lam_max = float(eig[0][-1])
    lr = lr_scale / lam_max
    F0, F0t = m.forward(X), m.forward(Xt)
    t2 = time.perf_counter()
    tr = mo.train_net(m, X, Y, lr, rule, batch, seed, momentum=momentum)
    params = tr.result
    Fn, Fnt = m.forward(X, params), m.forward(Xt, params)
    t3 = time.perf_counter()
    P = X.shape[0]

    def predict(alpha):
        # train: f0 + Theta alpha; test: f0 + J(X_test) u with u = J(X)^T alpha, a vjp and
        # a jvp (no test-by-train NTK, whose cost is P_test D x P D x params)
        u = m.vjp(X, alpha.reshape(P, D))
        return F0 + (K @ alpha).reshape(P, D), F0t + m.jvp(Xt, u)

    if batch is None:
        lin = mo.linearized_gd(eig, F0, Y, lr, rule, momentum=momentum)
    else:
        lin = mo.train_linearized(K, F0, Y, lr, rule, batch, seed, D, momentum=momentum)
    F_lin = predict(lin.result)
    t4 = time.perf_counter()
    F_ker = predict(mo.kernel_solution(K, F0, Y, eig=eig))
    t5 = time.perf_counter()
    moved = math.sqrt(sum(float(((params[k] - m.params[k]) ** 2).sum()) for k in params))
    norm0 = math.sqrt(sum(float((m.params[k] ** 2).sum()) for k in params))
    out = {"task": task.spec.label, "arch": arch, "width": int(width), "seed": int(seed),
           "num_params": m.num_params, "rows": P * D,
           "effective_rank": spectrum.effective_rank(s, values=True),
           "stable_rank": spectrum.stable_rank(s, values=True), "lambda_max": lam_max,
           "lr": lr, "relative_weight_change": moved / norm0,
           "train_mse_init": float(np.mean((Y - F0) ** 2))}
    for name, (Ftr, Fte) in (("net", (Fn, Fnt)), ("lin", F_lin), ("kernel", F_ker)):
        te, trm = _metrics(Fte, gt, Yt), _metrics(Ftr, g, Y)
        out[name] = {"test_accuracy": te["accuracy"], "test_mse": te["mse"],
                     "train_accuracy": trm["accuracy"], "train_mse": trm["mse"]}
    for name, run in (("net", tr), ("lin", lin)):
        out[name].update(steps=int(run.steps), stopped=run.stopped)
    out["gap"] = {"test_accuracy": out["net"]["test_accuracy"] - out["lin"]["test_accuracy"],
                  "test_mse": out["lin"]["test_mse"] - out["net"]["test_mse"]}
    out["timing"] = {"jacobian_gram_s": t1 - t0, "eig_s": t2 - t1, "net_s": t3 - t2,
                     "linearized_s": t4 - t3, "kernel_s": t5 - t4,
                     "total_s": time.perf_counter() - t0}
    return out
