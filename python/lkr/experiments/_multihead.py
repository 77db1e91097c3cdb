r"""The training objective of a D-output net whose hidden layers are computed once.

:class:`~lkr.experiments.multioutput.MultiOutput` runs its D outputs as D chains of the
base net, which computes the (identical) hidden layers D times. For lkr's FC, CNN, LCN and
deep CNN nets, whose output is linear in the readout ``v``,

.. math:: f_d(x) = c \, \phi(x) \cdot v_d,

with phi(x) = sigma(last pre-activations) (flattened) and c the readout scale
(FC 1/sqrt(N1), CNN/LCN 1/sqrt(Nc Np), deep CNN 1/sqrt(Nc d)). The gradient of
(1/2) sum_{mu d} (Y - f)^2 is then, with R = F - Y (P x D):

- readouts: g_{v_d} = c sum_mu R_{mu d} phi(x_mu);
- hidden weights: back-propagation of the per-sample cotangent
  d phi(x_mu) = c sum_d R_{mu d} v_d through the hidden layers, once.

The work per step is one hidden forward and backward pass plus two (P x D) products,
instead of D passes (about D x M / (M + D) times less for a CNN with M-entry patches).
:func:`prepare` returns this objective, or None for nets it does not know (MultiOutput then
keeps its chain path; the tests check both give the same numbers).
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..nets import CNNNet, DeepCNNNet, FCNet, LCNNet
from ..nets._activations import sigma_pair

__all__ = ["prepare"]


class _Head:
    """The readout part shared by every net: F = c S Vf^T, g_V and the cotangent of S."""

    def __init__(self, m, X):
        self.m, self.D, self.act = m, m.D, m.base.activation
        self.Z = self._inputs(np.ascontiguousarray(backend.to_numpy(X), dtype=np.float64))

    # subclasses: _inputs(X), _hidden(params, Z) -> (S (n, K), Dsig (n, K), cache),
    # _vflat(v (D, ...)) -> (D, K), _vback(g (D, K)) -> shaped like v,
    # _hidden_grads(params, dH (n, K), cache) -> dict

    def _take(self, rows):
        return self.Z if rows is None else self.Z[rows]

    def forward(self, params, rows=None):
        Z = self._take(rows)
        S = self._hidden(params, Z, False)[0]
        return (S @ self._vflat(params["v"]).T) * self.c

    def value_and_grad(self, params, Y, rows=None):
        """(F (n, D), gradient of (1/2) sum (Y - F)^2), params as MultiOutput's."""
        Z = self._take(rows)
        S, Dsig, cache = self._hidden(params, Z, True)
        Vf = self._vflat(params["v"])
        F = (S @ Vf.T) * self.c
        R = (F - Y) * self.c
        grads = {"v": self._vback(R.T @ S)}
        dH = R @ Vf
        dH *= Dsig
        grads.update(self._hidden_grads(params, dH, cache))
        return F, grads


class _FC(_Head):
    def _inputs(self, X):
        base = self.m.base
        self.c = 1.0 / math.sqrt(base.N1)
        return X.reshape(X.shape[0], -1) / math.sqrt(base.N0)

    def _hidden(self, params, Z, derivative):
        S, Dsig = sigma_pair(self.act, Z @ params["W"].T, derivative)
        return S, Dsig, Z

    def _vflat(self, v):
        return v

    def _vback(self, g):
        return g

    def _hidden_grads(self, params, dH, Z):
        return {"W": dH.T @ Z}


class _Patch(_Head):
    """CNN and LCN; features in (patch, channel) order, so Vf = v^T flattened."""

    def _inputs(self, X):
        base = self.m.base
        g = base.geometry
        self.Np, self.M, self.Nc = g.num_patches, g.patch_size, base.channels
        self.local = bool(base.local)
        self.c = 1.0 / math.sqrt(self.Nc * self.Np)
        Z = np.ascontiguousarray(g.patches(X)) / math.sqrt(self.M)           # (P, Np, M)
        return np.ascontiguousarray(Z.transpose(1, 0, 2)) if self.local else Z

    def _take(self, rows):
        if rows is None:
            return self.Z
        return self.Z[:, rows] if self.local else self.Z[rows]

    def _hidden(self, params, Z, derivative):
        W = params["W"]
        if self.local:                       # Z (Np, n, M), W (Nc, Np, M): batched over patches
            H = np.matmul(Z, W.transpose(1, 2, 0)).transpose(1, 0, 2)    # (n, Np, Nc)
            n = Z.shape[1]
        else:
            n = Z.shape[0]
            H = Z.reshape(n * self.Np, self.M) @ W.T                          # (n Np, Nc)
        S, Dsig = sigma_pair(self.act, np.ascontiguousarray(H).reshape(n, self.Np * self.Nc),
                             derivative)
        return S, Dsig, Z

    def _vflat(self, v):
        return v.transpose(0, 2, 1).reshape(v.shape[0], self.Np * self.Nc)

    def _vback(self, g):
        return np.ascontiguousarray(g.reshape(-1, self.Np, self.Nc).transpose(0, 2, 1))

    def _hidden_grads(self, params, dH, Z):
        if self.local:
            n = Z.shape[1]
            dHi = dH.reshape(n, self.Np, self.Nc).transpose(1, 2, 0)        # (Np, Nc, n)
            gW = np.matmul(dHi, Z)                                            # (Np, Nc, M)
            return {"W": np.ascontiguousarray(gW.transpose(1, 0, 2))}
        n = Z.shape[0]
        return {"W": dH.reshape(n * self.Np, self.Nc).T @ Z.reshape(n * self.Np, self.M)}


class _Deep(_Head):
    """Deep CNN, through the net's own layer passes (one chain) and a back-propagation
    that starts from the per-sample cotangent of the last activations."""

    def _inputs(self, X):
        base = self.m.base
        self.c = base._c1
        self.d, self.Nc = base.geometry.num_patches, base.channels
        return base._inputs(X)                                                # (P, n1, M1)

    def _lift(self, params):
        return {k: a[None] for k, a in params.items() if k != "v"}

    def _hidden(self, params, Z, derivative):
        net = self.m.base
        q = self._lift(params)
        q["v"] = params["v"][:1]
        Zs, Ss, Ds, _ = net._run(Z, q, derivative)
        n = Z.shape[0]
        S = Ss[-1][0].reshape(n, self.d * self.Nc)                 # (n, d, Nc): site, channel
        Dsig = None if Ds[-1] is None else Ds[-1][0].reshape(n, self.d * self.Nc)
        return S, Dsig, (Zs, Ss, Ds, q)

    def _vflat(self, v):
        return v.transpose(0, 2, 1).reshape(v.shape[0], self.d * self.Nc)

    def _vback(self, g):
        return np.ascontiguousarray(g.reshape(-1, self.d, self.Nc).transpose(0, 2, 1))

    def _hidden_grads(self, params, dH, cache):
        # the loop of DeepCNNNet._back with dH of the last layer given (sigma' applied)
        net = self.m.base
        Zs, Ss, Ds, q = cache
        n = dH.shape[0]
        dH = dH.reshape(1, n, self.d, self.Nc) * net._scales[-1]
        out = {}
        for l in range(net.depth - 1, -1, -1):
            Z = Zs[l]
            out[net._wnames[l]] = (dH.reshape(n * Z.shape[-2], self.Nc).T
                                   @ Z.reshape(-1, Z.shape[-1]))
            if l > 0:
                dZ = dH @ q[net._wnames[l]][:, None]                           # (1, n, m, M)
                dS = net._layers[l - 1].scatter(dZ, np).reshape(Ss[l - 1].shape)
                dH = dS * Ds[l - 1] * net._scales[l - 1]
        return out


def prepare(m, X):
    """The shared-hidden objective of MultiOutput ``m`` on inputs X (``forward(params,
    rows=None)``, ``value_and_grad(params, Y, rows=None)``), or None when its base net is
    not one that this module knows (or the readout is not ``v``, or X is not NumPy)."""
    base = m.base
    if m.readout != "v" or backend.array_module(X) is not np:
        return None
    if type(base) is FCNet:
        return _FC(m, X)
    if isinstance(base, (CNNNet, LCNNet)):
        return _Patch(m, X)
    if isinstance(base, DeepCNNNet):
        return _Deep(m, X)
    return None
