"""One width's point of ``lkr nets-vs-linearized`` at the default size, and its parts.

Cases: the whole point (empirical NTK on train and test, spectrum, GD on the net, GD on the
linearisation, kernel solution) for FC (N = 128), CNN (16 channels) and LCN (8 channels) on
the default task (digits even vs odd, P = 256, 2 outputs, 1000 steps), with the share of it
spent in Jacobian/Gram work (``note``). Against torch.func where torch is installed, for
the FC point: the Jacobian Gram (vmap(jacrev) Jacobian of the same 2-output net, then
J J^T) and the net's 1000 GD steps (autograd), float64 both, same weights; ``ratio`` is
torch time / lkr time (> 1: lkr faster). ``--quick``: P = 32, 50 steps.
"""
from __future__ import annotations

import math

import numpy as np

from .harness import measure, record

SUITE = "nets_vs_lin"

_WIDTHS = {"fc": 128, "cnn": 16, "lcn": 8}


def _setup(P, P_test):
    from lkr import data
    from lkr.geometry import PatchGeometry

    X, g, Xt, gt, info = data.digits_groups(P, P_test, 0, classes="0,2,4,6,8:1,3,5,7,9")
    geo = PatchGeometry((8, 8), (3, 3), (1, 1), boundary="valid")
    return geo.flatten(X), g, geo.flatten(Xt), gt, geo


def _torch_fc(m):
    import torch

    W0 = torch.tensor(np.asarray(m.params["W"]))
    V0 = torch.tensor(np.asarray(m.params["v"]))
    N1, N0 = W0.shape

    def f(params, x):
        return torch.relu(x @ params["W"].T / math.sqrt(N0)) @ params["v"].T / math.sqrt(N1)

    return {"W": W0.clone(), "v": V0.clone()}, f


def run(quick: bool = False):
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return [record(SUITE, "point", "lkr", float("nan"), 0.0, 0,
                       note="skipped: needs scikit-learn (lkr[data])")]
    from lkr.experiments import multioutput as mo
    from lkr.experiments import nets_vs_linearized as nvl

    P, P_test, steps = (32, 64, 50) if quick else (256, 512, 1000)
    X, g, Xt, gt, geo = _setup(P, P_test)
    rows = []
    for arch, w in _WIDTHS.items():
        if quick:
            w = max(1, w // 4)

        def point():
            with nvl._one_thread():
                return nvl._point(arch, w, 0, geo, "relu", X, g, Xt, gt, 2, steps, 1.5, None)

        med, iqr, n, out = measure(point, repeats=1 if not quick else 2, warmup=0)
        t = out["timing"]
        case = f"{arch} N={w} P={P} steps={steps}"
        rows.append(record(SUITE, case, "lkr point", med, iqr, n))
        # the parts of the (last) timed point, with their share of it in `rate`
        for part, key in (("Jacobian/Gram+spectrum", "kernel_and_rank_s"),
                          ("net GD", "net_s"), ("linearised GD+kernel", "linearized_s")):
            rows.append(record(SUITE, case, f"  {part}", t[key], 0.0, 1,
                               rate=100 * t[key] / t["total_s"], rate_unit="% of point"))
    try:
        import torch
        from torch.func import functional_call, jacrev, vmap  # noqa: F401
    except ImportError:
        rows.append(record(SUITE, "fc vs torch.func", "torch", float("nan"), 0.0, 0,
                           note="skipped: torch not installed"))
        return rows
    from lkr.nets import FCNet

    w = _WIDTHS["fc"] // (4 if quick else 1)
    m = mo.MultiOutput(FCNet(64, w, activation="relu", seed=0), 2, seed=0)
    params, f = _torch_fc(m)
    Xt_ = torch.tensor(X)
    Y = np.eye(2)[g]

    def lkr_gram():
        with nvl._one_thread():
            return mo.ntk(m, X)

    def torch_gram():
        with torch.no_grad():
            jac = vmap(jacrev(lambda p, x: f(p, x[None])[0]), in_dims=(None, 0))(params, Xt_)
            J = torch.cat([jac[k].reshape(jac[k].shape[0] * 2, -1) for k in params], dim=1)
            return (J @ J.T).numpy()

    lr = 1.5 / np.linalg.eigvalsh(mo.ntk(m, X))[-1]

    def lkr_train():
        with nvl._one_thread():
            return mo.train_net(m, X, Y, lr, steps)[0]

    def torch_train():
        p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        Yt = torch.tensor(Y)
        for _ in range(steps):
            loss = 0.5 * ((Yt - f(p, Xt_)) ** 2).sum()
            gr = torch.autograd.grad(loss, list(p.values()))
            with torch.no_grad():
                for v, gv in zip(p.values(), gr):
                    v -= lr * gv
        return p

    nthreads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same single thread as lkr's point (loaded machine)
    try:
        for case, ours, theirs, check in (("Gram J J^T", lkr_gram, torch_gram, "gram"),
                                          (f"net GD {steps} steps", lkr_train, torch_train, "W")):
            # alternate the two, one process, so that the machine's load hits both alike
            a = measure(ours, repeats=3, warmup=1)
            b = measure(theirs, repeats=3, warmup=1)
            if check == "gram":
                err = float(np.abs(a[3] - b[3]).max() / np.abs(a[3]).max())
            else:
                err = float(np.abs(a[3]["W"] - b[3]["W"].detach().numpy()).max()
                            / np.abs(a[3]["W"]).max())
            rows.append(record(SUITE, f"fc N={w} P={P}: {case}", "lkr", a[0], a[1], a[2]))
            rows.append(record(SUITE, f"fc N={w} P={P}: {case}", "torch.func" if check == "gram"
                               else "torch autograd", b[0], b[1], b[2], ratio=b[0] / a[0],
                               vs="lkr", max_rel_err=err))
    finally:
        torch.set_num_threads(nthreads)
    return rows
