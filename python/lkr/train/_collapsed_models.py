r"""What the collapsed sampler needs from each network: its hidden weights, in blocks, and the
scaled features of the last hidden layer (docs/training.md, "Collapsed sampler").

The readout v ~ N(0, 1/lambda_r) is integrated out, so a net enters only through its
features: G[c, j, mu] = sigma_j(x^mu) / sqrt(lambda_r N_eff) (C chains, n = N_eff features)
with

* FCNet: sigma(w_k . x / sqrt(N0)), one feature per unit (N_eff = N1);
* CNNNet / LCNNet: sigma(w_a . x_i / sqrt(M)) (LCN: w_{ai}), feature index a Np + i
  (N_eff = Nc Np);
* DeepCNNNet: the last layer's sigma(h^L_{a,i}), a d + i (N_eff = Nc d).

The weights that change the features are updated by pCN proposals in blocks (a block of
``block`` consecutive units or channels); the blocks of the last hidden layer change ``block
* Np`` consecutive feature rows each (a low-rank change of A), the blocks of the lower
layers of a deep CNN change every feature (the factor is recomputed).
"""
from __future__ import annotations

import math

import numpy as np

from ..nets import CNNNet, DeepCNNNet, FCNet, LCNNet, sigma_pair

__all__ = ["model_for", "SUPPORTED"]

SUPPORTED = (FCNet, CNNNet, LCNNet, DeepCNNNet)


def _sigma(act, H):
    return sigma_pair(act, np.ascontiguousarray(H), False)[0]


class Group:
    """One layer's weights under pCN: ``name`` in params, prior precision ``lam``, ``nb``
    blocks (the weight array reshaped to (C, nb, -1) gives one row per block)."""

    def __init__(self, name, lam, nb, low_rank):
        self.name, self.lam, self.nb, self.low_rank = name, float(lam), int(nb), bool(low_rank)


class _Model:
    """Base: features of the last hidden layer for chained hidden weights (dict of arrays
    with a leading chain axis, float64)."""

    #: the net's readout parameter (integrated out)
    readout = "v"

    def __init__(self, net, block):
        self.net = net
        self.act = net.activation
        self.block = block

    @property
    def hidden(self):
        return [g.name for g in self.groups]

    def features(self, W, test=False):  # pragma: no cover - abstract
        raise NotImplementedError

    def last_proposal_features(self, W, Wp_last):
        """Features with the last group's weights replaced by Wp_last (other groups from W)."""
        return self.features({**W, self.groups[-1].name: Wp_last})

    def commit(self, W, accepted):
        """Called after the last group's sweep with the new weights (caches to refresh)."""


class _OneLayer(_Model):
    """FC, CNN, LCN: one hidden layer, its blocks change ``block * Np`` features each."""

    def __init__(self, net, X, X_test, block):
        super().__init__(net, block)
        if isinstance(net, FCNet):
            self.kind, width, self.Np = "fc", net.N1, 1
            s = 1.0 / math.sqrt(net.N0)
            self.Z = np.ascontiguousarray(net._inputs(X), dtype=np.float64) * s        # (P, N0)
            self.Zt = (None if X_test is None
                       else np.ascontiguousarray(net._inputs(X_test), dtype=np.float64) * s)
        else:
            self.kind = "lcn" if net.local else "cnn"
            width, self.Np = net.channels, net.geometry.num_patches
            s = 1.0 / math.sqrt(net.geometry.patch_size)
            Z = np.asarray(net.geometry.patches(X), dtype=np.float64) * s             # (P, Np, M)
            Zt = None if X_test is None else np.asarray(net.geometry.patches(X_test),
                                                        dtype=np.float64) * s
            if self.kind == "cnn":
                self.Z = np.ascontiguousarray(Z.reshape(-1, Z.shape[2]))
                self.Zt = None if Zt is None else np.ascontiguousarray(Zt.reshape(-1, Zt.shape[2]))
            else:
                self.Z = np.ascontiguousarray(Z.transpose(1, 2, 0))                 # (Np, M, P)
                self.Zt = None if Zt is None else np.ascontiguousarray(Zt.transpose(1, 2, 0))
        if width % block:
            raise ValueError(f"block ({block}) must divide the width ({width} "
                             f"{'units' if self.kind == 'fc' else 'channels'})")
        self.width = width
        self.n = width * self.Np
        self.scale = 1.0 / math.sqrt(net.lambda1 * self.n)
        self.groups = [Group("W", net.lambda0, width // block, True)]
        self.k = block * self.Np

    def features(self, W, test=False):
        Z = self.Zt if test else self.Z
        Wk = W["W"]
        C = Wk.shape[0]
        if self.kind == "fc":
            H = Wk @ Z.T                                                   # (C, N1, P)
        elif self.kind == "cnn":
            P = Z.shape[0] // self.Np
            H = (Wk @ Z.T).reshape(C, self.width, P, self.Np).transpose(0, 1, 3, 2)
        else:
            Np, M, P = Z.shape
            Wi = Wk.transpose(2, 0, 1, 3).reshape(Np, C * self.width, M)    # (Np, C Nc, M)
            H = (Wi @ Z).reshape(Np, C, self.width, P).transpose(1, 2, 0, 3)
        G = _sigma(self.act, H.reshape(C, self.n, -1))
        G *= self.scale
        return G


class _Deep(_Model):
    """DeepCNNNet: the last layer's channels are low-rank blocks (block * d features each);
    each channel of a lower layer is a block whose change recomputes every feature."""

    def __init__(self, net, X, X_test, block):
        super().__init__(net, block)
        Nc, L = net.channels, net.depth
        if Nc % block:
            raise ValueError(f"block ({block}) must divide the width ({Nc} channels)")
        self.Z = np.asarray(net._inputs(X), dtype=np.float64)
        self.Zt = None if X_test is None else np.asarray(net._inputs(X_test), dtype=np.float64)
        self.d = net.geometry.num_patches
        self.width = Nc
        self.n = Nc * self.d
        self.scale = 1.0 / math.sqrt(net.lambdas[L] * self.n)
        names = net._wnames
        self.groups = ([Group(nm, net.lambdas[l], Nc, False) for l, nm in enumerate(names[:-1])]
                       + [Group(names[-1], net.lambdas[L - 1], Nc // block, True)])
        self.k = block * self.d
        self._windows = None  # the last layer's input windows per chain (C, P, d, M_L)

    def _run(self, W, test):
        Z = self.Zt if test else self.Z
        q = dict(W)
        C = q[self.groups[0].name].shape[0]
        q["v"] = np.zeros((C, self.width, self.d))  # the readout does not enter the features
        Zs, Ss, _, _ = self.net._run(Z, q, False)
        return Zs[-1], Ss[-1]

    def _to_features(self, S):
        # S (C, P, d, Nc) -> (C, Nc d, P), row a d + i
        C, P = S.shape[:2]
        G = np.ascontiguousarray(S.transpose(0, 3, 2, 1)).reshape(C, self.n, P)
        G *= self.scale
        return G

    def features(self, W, test=False):
        windows, S = self._run(W, test)
        if not test:
            self._windows = np.broadcast_to(windows, (S.shape[0],) + windows.shape[1:])
        return self._to_features(S)

    def last_proposal_features(self, W, Wp_last):
        Zw = self._windows                                              # (C, P, d, M_L)
        C, P, d, M = Zw.shape
        H = Zw.reshape(C, P * d, M) @ Wp_last.transpose(0, 2, 1)          # (C, P d, Nc)
        H *= self.net._scales[-1]
        S = _sigma(self.act, H).reshape(C, P, d, self.width)
        return self._to_features(S)

    def set_windows(self, windows, mask):
        """Adopt the last layer's input windows of the chains in mask (after an accepted
        lower-layer proposal)."""
        if not self._windows.flags.writeable:
            self._windows = np.array(self._windows)
        self._windows[mask] = windows[mask] if windows.shape[0] > 1 else windows[0]

    def run_windows(self, W):
        """(windows, features) of the training inputs for W (no caching)."""
        windows, S = self._run(W, False)
        return np.broadcast_to(windows, (S.shape[0],) + windows.shape[1:]), self._to_features(S)


def model_for(net, X, X_test, block):
    """The feature model of a supported net (TypeError otherwise)."""
    if isinstance(net, DeepCNNNet):
        return _Deep(net, X, X_test, block)
    if isinstance(net, (FCNet, CNNNet, LCNNet)):
        return _OneLayer(net, X, X_test, block)
    raise TypeError(f"the collapsed sampler supports FCNet, CNNNet, LCNNet and DeepCNNNet, got "
                    f"{type(net).__name__} (use lkr.train.langevin for other nets)")
