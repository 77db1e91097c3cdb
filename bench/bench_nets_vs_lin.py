"""``lkr nets-vs-linearized``: where the default run's time goes, and the Jacobian Gram of its
widest nets against torch.func.

Cases:

- ``default run``: the whole default run (:data:`lkr.experiments.nets_vs_linearized.DEFAULTS`:
  four digits rungs, FC/CNN/LCN/deep CNN at four widths, three seeds) with its CPU time, and
  its parts summed over all points: Jacobian/Gram (the empirical NTK on train and test),
  the eigendecomposition (shared by the rank, the linearisation and the kernel solution),
  the nets' GD, the linearisations' GD and the kernel solution, each with its share of the
  points' time (``rate``, % of the run). ``--quick``: one seed, two rungs, P = 32.
- ``Gram vs torch.func``: for the widest net of each architecture on the ten-class rung (the
  largest Gram of the run: P D rows), lkr's Gram (:func:`lkr.experiments.multioutput.ntk`,
  closed forms or the deep CNN's batched back-propagation) against the same D-output net
  written in PyTorch, J by ``vmap(jacrev)`` then J J^T, float64, same weights, both on one
  thread, alternated in one process; ``ratio`` = torch time / lkr time (> 1: lkr faster),
  ``max_rel_err`` the largest difference relative to the largest entry. Skipped with a note
  when torch is not installed.
"""
from __future__ import annotations

import math
import time

import numpy as np

from .harness import alternate, record

SUITE = "nets_vs_lin"

_PARTS = (("Jacobian/Gram", "jacobian_gram_s"), ("eigendecomposition", "eig_s"),
          ("net GD", "net_s"), ("linearised GD", "linearized_s"),
          ("kernel solution", "kernel_s"))


def _default_run(quick):
    from lkr.experiments import nets_vs_linearized as nvl

    kw = {}
    if quick:
        kw = dict(tasks=["digits@0:1", "digits@all"], P=32, P_test=64, seeds=1,
                  multipliers=(1, 2), max_steps=200)
    c0, t0 = time.process_time(), time.perf_counter()
    res = nvl.run_experiment(**kw)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    sums = {k: sum(p["timing"][k] for p in res["points"]) for _, k in _PARTS}
    case = "quick run" if quick else "default run"
    rows = [record(SUITE, case, "lkr (whole run)", wall, 0.0, 1, threads=1,
                   rate=cpu, rate_unit="CPU s", note=f"{len(res['points'])} points")]
    for name, k in _PARTS:
        rows.append(record(SUITE, case, f"  {name}", sums[k], 0.0, 1, threads=1,
                           rate=100 * sums[k] / wall, rate_unit="% of run"))
    rest = wall - sum(sums.values())
    rows.append(record(SUITE, case, "  data, forward passes, other", rest, 0.0, 1, threads=1,
                       rate=100 * rest / wall, rate_unit="% of run"))
    return rows, res


# -- the same nets in PyTorch --------------------------------------------------------------------
def _torch_model(m):
    """f(params, x) -> (D,) for one flattened input, and params as torch tensors, of lkr's
    D-output net m (its readouts stacked on a leading axis)."""
    import torch
    import torch.nn.functional as tF

    from lkr import nets

    base = m.base
    T = {k: torch.tensor(np.asarray(v)) for k, v in m.params.items()}
    act = {"relu": torch.relu, "erf": torch.erf, "linear": lambda h: h}[base.activation]
    if isinstance(base, nets.FCNet):
        N1, N0 = base.params["W"].shape

        def f(p, x):
            return act(p["W"] @ x / math.sqrt(N0)) @ p["v"].T / math.sqrt(N1)
        return f, T
    if isinstance(base, nets.DeepCNNNet):
        g = base.geometry
        Nc, L = base.param_shapes["v"][0], base.depth
        (H, W), ws = g.input_shape, []
        for l in range(L):
            fh, fw = g.filter_sizes[l]
            cin = 1 if l == 0 else Nc
            # lkr's window entries are (row, column, channel): conv2d wants (out, in, h, w)
            ws.append((f"W{l + 1}", (Nc, fh, fw, cin), g.strides[l], base._scales[l]))
        c = base._c1

        def f(p, x):
            a = x.reshape(1, 1, H, W)
            for name, shp, st, sc in ws:
                w = p[name].reshape((-1,) + shp[1:]).permute(0, 3, 1, 2)
                a = act(tF.conv2d(a, w, stride=st) * sc)
            return (p["v"] * a.reshape(1, Nc, -1)).sum(dim=(1, 2)) * c
        return f, T
    g = base.geometry
    (H, W), (fh, fw), st = g.input_shape, g.filter_size, g.stride
    Nc, Np, M = base.param_shapes["v"][0], g.num_patches, g.patch_size
    c = 1.0 / math.sqrt(Nc * Np)

    def patches(x):
        return tF.unfold(x.reshape(1, 1, H, W), (fh, fw), stride=st)[0].T   # (Np, M)

    if base.local:
        def f(p, x):
            h = torch.einsum("aim,im->ai", p["W"], patches(x)) / math.sqrt(M)
            return (p["v"] * act(h)).sum(dim=(1, 2)) * c
        return f, T

    def f(p, x):
        h = p["W"] @ patches(x).T / math.sqrt(M)                              # (Nc, Np)
        return (p["v"] * act(h)).sum(dim=(1, 2)) * c
    return f, T


def _torch_gram(f, T, X):
    import torch
    from torch.func import jacrev, vmap

    with torch.no_grad():
        jac = vmap(jacrev(f), in_dims=(None, 0))(T, X)          # name -> (P, D, *shape)
        P, D = X.shape[0], next(iter(jac.values())).shape[1]
        J = torch.cat([jac[k].reshape(P * D, -1) for k in T], dim=1)
        return (J @ J.T).numpy()


def _versus_torch(quick):
    try:
        import torch
        import torch.func  # noqa: F401
    except ImportError:
        return [record(SUITE, "Gram vs torch.func", "torch", float("nan"), 0.0, 0,
                       note="skipped: torch not installed (pip install torch)")]
    from lkr.experiments import multioutput as mo
    from lkr.experiments import nets_vs_linearized as nvl

    P = 32 if quick else nvl.DEFAULTS["P"]
    kmax = max(nvl.DEFAULTS["multipliers"])
    prep = nvl.prepare("digits@all", P=P, P_test=10, architectures=tuple(nvl.ARCHITECTURES),
                       multipliers=(kmax,), seeds=1)
    task = prep.tasks[0]
    X, D = task.data[0], task.data[5]
    Xt = torch.tensor(X)
    rows = []
    nthreads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same single thread as lkr's run (loaded machine)
    try:
        for spec in nvl.ARCHITECTURES.values():
            w = spec.base_width * (1 if quick else kmax)
            geo = task.deep if spec.geometry == "deep" else task.geometry
            m = mo.MultiOutput(spec.make(w, geo, "relu", 0), D, seed=0)
            f, T = _torch_model(m)

            def ours():
                with nvl._one_thread():
                    return mo.ntk(m, X)

            res = alternate({"lkr": ours, "torch": lambda: _torch_gram(f, T, Xt)},
                            repeats=3, warmup=1)
            a, b = res["lkr"], res["torch"]
            err = float(np.abs(a[3] - b[3]).max() / np.abs(a[3]).max())
            case = f"Gram, {spec.label} N={w} (P D = {P * D} rows, {m.num_params} params)"
            rows.append(record(SUITE, case, "lkr", a[0], a[1], a[2], threads=1))
            rows.append(record(SUITE, case, "torch.func vmap(jacrev), J J^T", b[0], b[1], b[2],
                               ratio=b[0] / a[0], vs="lkr", max_rel_err=err))
    finally:
        torch.set_num_threads(nthreads)
    return rows


def run(quick: bool = False):
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return [record(SUITE, "default run", "lkr", float("nan"), 0.0, 0,
                       note="skipped: needs scikit-learn (lkr[data])")]
    rows, _ = _default_run(quick)
    return rows + _versus_torch(quick)
