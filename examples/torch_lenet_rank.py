"""Effective rank of LeNet-5's Jacobian on the digits, for any framework's network.

LeNet-5 (LeCun et al. 1998: two 5x5 convolutions with average pooling, then three dense
layers) is defined in PyTorch with a width multiplier k on every layer (6k, 16k channels;
120k, 84k units) and one output per class group. ``lkr.ntk.from_torch`` builds its
Jacobian J = grad_w f(w0, X) on P digits (8x8 images enlarged 4x to LeNet's 32x32 by
repeating pixels) through ``torch.func`` and returns lkr's spectral diagnostics: the same
effective rank exp(H(sigma / sum sigma)) and stable rank as the rank columns of
``lkr nets-vs-linearized`` (rows = P x outputs).

The script first checks that definition on one of lkr's own nets: an FC net written in
PyTorch with the same parameters gives, through ``from_torch``, the effective rank that
``lkr nets-vs-linearized`` computes from its Gram path.

Run::

    python examples/torch_lenet_rank.py                 # P = 64, k = 0.5, 1, 2
    python examples/torch_lenet_rank.py -P 128 --widths 1,2,4 --classes all

Needs PyTorch and scikit-learn (``pip install torch scikit-learn``).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def lenet5(k: float, outputs: int, dtype):
    """LeNet-5 with every width multiplied by k (k = 1 is the original)."""
    import torch
    from torch import nn

    c1, c2, h1, h2 = (max(1, round(k * n)) for n in (6, 16, 120, 84))
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, c1, 5), nn.Tanh(), nn.AvgPool2d(2),        # 32 -> 28 -> 14
        nn.Conv2d(c1, c2, 5), nn.Tanh(), nn.AvgPool2d(2),       # 14 -> 10 -> 5
        nn.Flatten(), nn.Linear(c2 * 25, h1), nn.Tanh(),
        nn.Linear(h1, h2), nn.Tanh(), nn.Linear(h2, outputs)).to(dtype)


def torch_fc(m):
    """lkr's D-output FCNet (lkr.experiments.multioutput.MultiOutput of an FCNet) in PyTorch,
    with the same parameters: f_d(x) = N1^{-1/2} v_d . relu(W x / sqrt(N0))."""
    import torch
    from torch import nn

    W = torch.tensor(m.params["W"])
    V = torch.tensor(m.params["v"])
    N1, N0 = W.shape

    class FC(nn.Module):
        def __init__(self):
            super().__init__()
            self.W = nn.Parameter(W.clone())
            self.v = nn.Parameter(V.clone())

        def forward(self, x):
            act = {"relu": torch.relu, "erf": torch.erf, "linear": lambda h: h}[m.base.activation]
            return act(x @ self.W.T / N0 ** 0.5) @ self.v.T / N1 ** 0.5

    return FC()


def check_definition(X, D, width=16, activation="relu"):
    """(lkr's Gram path, from_torch) effective and stable ranks of the same FC net."""
    from lkr import ntk, spectrum
    from lkr.experiments import multioutput as mo
    from lkr.nets import FCNet

    m = mo.MultiOutput(FCNet(X.shape[1], width, activation=activation, seed=0), D, seed=0)
    s = spectrum.singular_values(mo.ntk(m, X), gram=True)
    res = ntk.from_torch(torch_fc(m), X)
    return ((spectrum.effective_rank(s, values=True), spectrum.stable_rank(s, values=True)),
            (res.effective_rank, res.stable_rank))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-P", type=int, default=64, help="digits in J's rows (default 64)")
    p.add_argument("--widths", default="0.5,1,2", help="LeNet width multipliers k")
    p.add_argument("--classes", default="0,2,4,6,8:1,3,5,7,9",
                   help="class groups, one output each (default even vs odd)")
    p.add_argument("--float32", action="store_true", help="float32 (half the memory)")
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        sys.exit("this example needs PyTorch: pip install torch")
    from lkr import data, ntk

    X, g, _, _, info = data.digits_groups(args.P, 1, seed=0, classes=args.classes)
    D = int(info["groups"])
    dtype = torch.float32 if args.float32 else torch.float64

    (er_lkr, sr_lkr), (er_t, sr_t) = check_definition(X.reshape(len(X), -1), D)
    print(f"same definition: lkr FC net, Gram path erank {er_lkr:.4f} srank {sr_lkr:.4f}; "
          f"the same net in PyTorch through from_torch erank {er_t:.4f} srank {sr_t:.4f}")

    big = np.kron(X, np.ones((4, 4)))[:, None]              # (P, 1, 32, 32)
    Xt = torch.as_tensor(big, dtype=dtype)
    rows = []
    print(f"LeNet-5 on {info['description']}: P = {args.P}, {D} outputs, rows of J = {args.P * D}")
    print(f"{'k':>5}{'params':>9}{'rows':>6}{'erank':>9}{'srank':>8}{'seconds':>9}")
    for k in (float(w) for w in args.widths.split(",")):
        model = lenet5(k, D, dtype)
        t0 = time.perf_counter()
        res = ntk.from_torch(model, Xt, chunk=32)
        n = sum(q.numel() for q in model.parameters())
        rows.append(dict(k=k, params=n, rows=args.P * D, effective_rank=res.effective_rank,
                         stable_rank=res.stable_rank, seconds=time.perf_counter() - t0))
        r = rows[-1]
        print(f"{k:>5g}{n:>9}{r['rows']:>6}{r['effective_rank']:>9.1f}{r['stable_rank']:>8.2f}"
              f"{r['seconds']:>9.2f}", flush=True)
    return dict(check=dict(lkr=(er_lkr, sr_lkr), torch=(er_t, sr_t)), lenet=rows)


if __name__ == "__main__":
    main()
