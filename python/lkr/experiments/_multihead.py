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

#: memory of one block of Jacobian columns in the LCN's NTK
_BLOCK_BYTES = 64 << 20


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
        F = (S @ self._vflat(params["v"]).T) * self.c
        return F, self._back(params, F - Y, S, Dsig, cache)

    def _back(self, params, R, S, Dsig, cache):
        """J^T R: the gradient of sum_{mu d} R_{mu d} f_d(x_mu) (a dict like params)."""
        Vf = self._vflat(params["v"])
        R = R * self.c
        grads = {"v": self._vback(R.T @ S)}
        dH = R @ Vf
        dH *= Dsig
        grads.update(self._hidden_grads(params, dH, cache))
        return grads

    def vjp(self, params, R):
        """J(X)^T R for R (P, D) on the prepared inputs: a dict shaped like params."""
        S, Dsig, cache = self._hidden(params, self.Z, True)
        return self._back(params, np.asarray(R, np.float64), S, Dsig, cache)

    def jvp(self, params, tangent):
        """J(X) t (P, D) on the prepared inputs, for a tangent t shaped like params (the
        hidden tangents shared by the outputs, one readout tangent per output):
        df_d = c (sigma'(h) dh(t_hidden) . v_d + phi . t_{v_d})."""
        S, dS = self._hidden_jvp(params, tangent, self.Z)
        return (dS @ self._vflat(params["v"]).T + S @ self._vflat(tangent["v"]).T) * self.c

    def ntk(self, X2=None):
        """The empirical NTK Theta(X, X2) of the D outputs at the current parameters,
        (P D, P2 D) sample-major (see :func:`lkr.experiments.multioutput.ntk`): the hidden
        block from the net's closed form (:meth:`_hidden_ntk`), the readout block
        delta_{d d'} c^2 phi(x) . phi(x')."""
        p = self.m.params
        Z1 = self.Z
        Z2 = Z1 if X2 is None else self._inputs(
            np.ascontiguousarray(backend.to_numpy(X2), dtype=np.float64))
        S1, D1, _ = self._hidden(p, Z1, True)
        S2, D2 = (S1, D1) if X2 is None else self._hidden(p, Z2, True)[:2]
        K = self._hidden_ntk(p, Z1, D1, Z2, D2)                     # (P, D, P2, D)
        Kv = (S1 @ S2.T) * self.c ** 2
        for d in range(self.D):
            K[:, d, :, d] += Kv
        P, P2 = K.shape[0], K.shape[2]
        K = K.reshape(P * self.D, P2 * self.D)
        if X2 is None:
            K = 0.5 * (K + K.T)
        return K

    def _rows(self, Dsig, v):
        """(P, D, K): c v_d sigma'(h) per sample and output, the hidden layer's cotangent."""
        return (Dsig[:, None, :] * self._vflat(v)[None, :, :]) * self.c


class _FC(_Head):
    def _inputs(self, X):
        base = self.m.base
        N1, N0 = base.param_shapes["W"]     # the shapes, not attribute names (N1 / width)
        self.c = 1.0 / math.sqrt(N1)
        return X.reshape(X.shape[0], -1) / math.sqrt(N0)

    def _hidden(self, params, Z, derivative):
        S, Dsig = sigma_pair(self.act, Z @ params["W"].T, derivative)
        return S, Dsig, Z

    def _vflat(self, v):
        return v

    def _vback(self, g):
        return g

    def _hidden_grads(self, params, dH, Z):
        return {"W": dH.T @ Z}

    def _hidden_jvp(self, params, t, Z):
        S, Dsig = sigma_pair(self.act, Z @ params["W"].T, True)
        return S, Dsig * (Z @ t["W"].T)

    def _hidden_ntk(self, params, Z1, D1, Z2, D2):
        # (A1 A2^T) o (Z1 Z2^T): A[(mu d), k] = c v_dk sigma'(h_mu k), output-major inside
        # (the Hadamard product then runs over rows of P2 entries)
        A1 = self._rows(D1, params["v"]).transpose(1, 0, 2)
        A2 = A1 if Z2 is Z1 else self._rows(D2, params["v"]).transpose(1, 0, 2)
        D, P, P2 = self.D, A1.shape[1], A2.shape[1]
        K = (A1.reshape(D * P, -1) @ A2.reshape(D * P2, -1).T).reshape(D, P, D, P2)
        K *= (Z1 @ Z2.T)[None, :, None, :]
        return K.transpose(1, 0, 3, 2)


class _Patch(_Head):
    """CNN and LCN; features in (patch, channel) order, so Vf = v^T flattened."""

    def _inputs(self, X):
        base = self.m.base
        g = base.geometry
        self.Np, self.M = g.num_patches, g.patch_size
        self.Nc = base.param_shapes["v"][0]     # channels
        self.local = bool(base.local)
        self.c = 1.0 / math.sqrt(self.Nc * self.Np)
        Z = np.ascontiguousarray(g.patches(X)) / math.sqrt(self.M)           # (P, Np, M)
        return np.ascontiguousarray(Z.transpose(1, 0, 2)) if self.local else Z

    def _take(self, rows):
        if rows is None:
            return self.Z
        return self.Z[:, rows] if self.local else self.Z[rows]

    def _hidden(self, params, Z, derivative):
        # Z (n, Np, M), or (Np, n, M) for the LCN (batched over patches): H (n, Np, Nc)
        H = self._pre(params["W"], Z)
        S, Dsig = sigma_pair(self.act, np.ascontiguousarray(H).reshape(H.shape[0], -1),
                             derivative)
        return S, Dsig, Z

    def _vflat(self, v):
        return v.transpose(0, 2, 1).reshape(v.shape[0], self.Np * self.Nc)

    def _pre(self, W, Z):
        if self.local:
            return np.matmul(Z, W.transpose(1, 2, 0)).transpose(1, 0, 2)  # (n, Np, Nc)
        return (Z.reshape(-1, self.M) @ W.T).reshape(-1, self.Np, self.Nc)

    def _hidden_jvp(self, params, t, Z):
        H = self._pre(params["W"], Z)
        n = H.shape[0]
        S, Dsig = sigma_pair(self.act, np.ascontiguousarray(H).reshape(n, -1), True)
        return S, Dsig * self._pre(t["W"], Z).reshape(n, -1)

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

    def _hidden_ntk(self, params, Z1, D1, Z2, D2):
        B1 = self._rows(D1, params["v"])                         # (P, D, Np Nc)
        B2 = B1 if Z2 is Z1 else self._rows(D2, params["v"])
        P, P2, D, Np, Nc = B1.shape[0], B2.shape[0], self.D, self.Np, self.Nc
        if not self.local:
            # the filter Jacobian G[(mu d), a, :] = sum_i B[mu, d, i, a] z_mu,i: one GEMM
            def G(B, Z):
                n = B.shape[0]
                return np.matmul(B.reshape(n, D, Np, Nc).transpose(0, 1, 3, 2),
                                 Z[:, None]).reshape(n * D, Nc * self.M)
            G1 = G(B1, Z1)
            G2 = G1 if Z2 is Z1 else G(B2, Z2)
            return (G1 @ G2.T).reshape(P, D, P2, D)
        # LCN: a filter per patch, sum_i (B_i B_i'^T) o (z_i z_i'^T) with B_i[(d mu), a] =
        # c v_dai sigma'(h_mu ia): per patch one GEMM over the channels and one Hadamard
        # product over rows of P2 entries (output-major inside)
        B1 = B1.reshape(P, D, Np, Nc).transpose(2, 1, 0, 3).reshape(Np, D * P, Nc)
        B2 = B1 if Z2 is Z1 else \
            B2.reshape(P2, D, Np, Nc).transpose(2, 1, 0, 3).reshape(Np, D * P2, Nc)
        K = np.zeros((D, P, D, P2))
        Ki = np.empty((D * P, D * P2))
        for i in range(Np):
            np.matmul(B1[i], B2[i].T, out=Ki)
            K4 = Ki.reshape(D, P, D, P2)
            K4 *= (Z1[i] @ Z2[i].T)[None, :, None, :]
            K += K4
        return K.transpose(1, 0, 3, 2)


def _gram(A, B=None):
    """A A^T through lkr.ntk.gram (a symmetric rank-k update), or A B^T."""
    if B is None:
        from ..ntk import gram

        return np.array(gram(A), dtype=np.float64)
    return A @ B.T


class _Deep(_Head):

    """Deep CNN, through the net's own layer passes (one chain) and a back-propagation
    that starts from the per-sample cotangent of the last activations."""

    def _inputs(self, X):
        base = self.m.base
        self.c = base._c1
        self.d, self.Nc = base.geometry.num_patches, base.param_shapes["v"][0]
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

    def _hidden_jvp(self, params, t, Z):
        # forward mode through the layers: dh^l = s_l (Z^l t_l^T + dZ^l W_l^T)
        net = self.m.base
        q = self._lift(params)
        q["v"] = params["v"][:1]
        Zs, Ss, Ds, _ = net._run(Z, q, True)
        dZ = None
        for l, name in enumerate(net._wnames):
            dH = net._pre(Zs[l], t[name][None], l)
            if dZ is not None:
                dH = dH + net._pre(dZ, q[name], l)
            dS = Ds[l] * dH
            if l + 1 < net.depth:
                dZ = net._layers[l].gather(dS.reshape(1, dS.shape[1], -1), np)
        n = Z.shape[0]
        return Ss[-1][0].reshape(n, -1), dS[0].reshape(n, -1)

    def _hidden_ntk(self, params, Z1, D1, Z2, D2):
        P, P2, D = Z1.shape[0], Z2.shape[0], self.D
        J1 = self._hidden_jacobian(params, Z1)
        J2 = None if Z2 is Z1 else self._hidden_jacobian(params, Z2)
        return _gram(J1, J2).reshape(P, D, P2, D)

    def _hidden_jacobian(self, params, Z):
        """(n D, hidden params): per (sample, output) row the gradient of f_d(x_mu) with
        respect to W1..WL (the back-propagation below, one row per pair)."""
        net = self.m.base
        _, Dsig, (Zs, Ss, Ds, q) = self._hidden(params, Z, True)
        n, D = Z.shape[0], self.D
        dH = self._rows(Dsig, params["v"]).reshape(n, D, self.d, self.Nc) * net._scales[-1]
        out = [None] * net.depth
        for l in range(net.depth - 1, -1, -1):
            Zl = Zs[l][0]                                                      # (n, m, M)
            out[l] = np.matmul(dH.transpose(0, 1, 3, 2), Zl[:, None]).reshape(n * D, -1)
            if l > 0:
                dZ = dH @ q[net._wnames[l]][0]                                 # (n, D, m, M)
                dS = net._layers[l - 1].scatter(dZ, np).reshape((n, D) + Ss[l - 1].shape[2:])
                dH = dS * Ds[l - 1][0][:, None] * net._scales[l - 1]
        return np.concatenate(out, axis=1)

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
