"""CUDA host side of the CNN/LCN patch passes (``csrc/cuda/nets.cu``) and the training
objectives' elementwise passes: the ``patch_*``, ``activation_pair`` and ``readout_*``
functions of ``lkr._core`` for CuPy arrays, as a mixin of :class:`lkr._cuda.Engine`.

The passes take chained parameters (a leading chain axis of length C, or 1 to broadcast);
``patch_features``, ``activation_pair`` and the readout passes are array expressions of the
formulas in :mod:`lkr.activations` and :mod:`lkr._patch_reference` (no kernels of their own).
"""
from __future__ import annotations

import numpy as np

from .._patch_reference import reference_features
from ..activations import sigma, sigma_prime
from .kernels import _suffix

__all__ = ["NetPasses"]


class NetPasses:
    """The patch passes of :class:`lkr._cuda.Engine` (which provides ``xp``, ``_check``,
    ``_alloc``, ``_launch`` and ``device_of``)."""

    _NET_TILE_BYTES = 3072 * 8  # LKR_NET_TILE_DOUBLES in nets.cu

    def _net_shapes(self, Z, W, local, chained):
        """(P, Np, M, Nc, C, chain strides) after checking shapes as lkr._core does.
        ``chained``: (array, name, per-chain shape) of every chained operand but W."""
        P, Np, M = Z.shape
        wnd = 4 if local else 3
        if W.ndim != wnd or W.shape[-1] != M or (local and W.shape[2] != Np):
            raise ValueError(f"W must be (chains, Nc, {'Np, ' if local else ''}M) with "
                             f"(Np, M) = ({Np}, {M}), got {W.shape}")
        Nc = W.shape[1]
        ops = [(W, "W", W.shape[1:])] + [(a, n, t(Nc)) for a, n, t in chained]
        for a, n, tail in ops:
            if tuple(a.shape[1:]) != tuple(tail) or a.ndim != len(tail) + 1:
                raise ValueError(f"{n} must have shape (chains, "
                                 f"{', '.join(map(str, tail))}), got {a.shape}")
        C = max(a.shape[0] for a, _, _ in ops)
        for a, n, _ in ops:
            if a.shape[0] not in (1, C):
                raise ValueError(f"{n} has {a.shape[0]} chains, expected 1 or {C}")
        strides = [np.int64(0 if (a.shape[0] == 1 and C > 1) else a.size // max(a.shape[0], 1))
                   for a, _, _ in ops]
        return P, Np, M, Nc, C, strides

    def _net_forward(self, Z, W, v, tW, tv, local, activation):
        jvp = tW is not None
        arrays = (Z, W, v) + ((tW, tv) if jvp else ())
        names = ("Z", "W", "v") + (("tW", "tv") if jvp else ())
        wnd = 4 if local else 3
        dtype = self._check(arrays, names, (3, wnd, 3, wnd, 3)[:len(arrays)])
        act = self._activation(activation)
        chained = [(v, "v", lambda Nc: (Nc, Z.shape[1]))]
        if jvp:
            chained += [(tW, "tW", lambda Nc: W.shape[1:]), (tv, "tv", lambda Nc: (Nc, Z.shape[1]))]
        P, Np, M, Nc, C, st = self._net_shapes(Z, W, local, chained)
        with self.device_of(Z):
            out = self._alloc((C, P), dtype)
            if out.size == 0:
                return out
            tWa, tva = (tW, tv) if jvp else (W, v)  # unread when not jvp
            tw_cs, tv_cs = (st[2], st[3]) if jvp else (np.int64(0), np.int64(0))
            self._launch(f"lkr_net_forward_{act}_{_suffix(dtype)}", dtype, C * P,
                         (Z, W, st[0], v, st[1], tWa, tw_cs, tva, tv_cs, out, np.int64(C),
                          np.int64(P), np.int64(Np), np.int64(M), np.int64(Nc),
                          np.int32(bool(local)), np.int32(jvp), np.float64(1 / np.sqrt(M)),
                          np.float64(1 / np.sqrt(Nc * Np))))
        return out

    def patch_forward(self, Z, W, v, *, local, activation, nthreads=0):
        """f (C, P) of the CNN (local=False) or LCN (local=True) for C parameter chains."""
        return self._net_forward(Z, W, v, None, None, local, activation)

    def patch_jvp(self, Z, W, v, tW, tv, *, local, activation, nthreads=0):
        """J t (C, P) along tangents (tW, tv)."""
        return self._net_forward(Z, W, v, tW, tv, local, activation)

    def patch_vjp(self, Z, W, v, r, *, local, activation, nthreads=0):
        """(dW, dv): gradients of sum_p r[c, p] f_c(x_p); shapes (C,) + W/v per chain."""
        wnd = 4 if local else 3
        dtype = self._check((Z, W, v, r), ("Z", "W", "v", "r"), (3, wnd, 3, 2))
        act = self._activation(activation)
        chained = [(v, "v", lambda Nc: (Nc, Z.shape[1])), (r, "r", lambda Nc: (Z.shape[0],))]
        P, Np, M, Nc, C, st = self._net_shapes(Z, W, local, chained)
        PT = min(64, self._NET_TILE_BYTES // (2 * Np * np.dtype(dtype).itemsize))
        if PT < 1:
            raise ValueError(f"the CUDA patch vjp holds a tile of (sample, patch) terms in "
                             f"shared memory and supports Np <= "
                             f"{self._NET_TILE_BYTES // (2 * np.dtype(dtype).itemsize)}, got {Np}")
        wshape = (C,) + tuple(W.shape[1:])
        with self.device_of(Z):
            dW = self._alloc(wshape, np.float64)
            dv = self._alloc((C, Nc, Np), np.float64)
            if C * Nc > 0:
                self._launch(f"lkr_net_vjp_{act}_{_suffix(dtype)}", dtype, C * Nc,
                             (Z, W, st[0], v, st[1], r, st[2], dW, dv, np.int64(C), np.int64(P),
                              np.int64(Np), np.int64(M), np.int64(Nc), np.int32(bool(local)),
                              np.int64(PT), np.float64(1 / np.sqrt(M)),
                              np.float64(1 / np.sqrt(Nc * Np))))
            return dW.astype(dtype), dv.astype(dtype)

    # -- composed from the passes above and array expressions (no kernels of their own)
    def patch_value_and_grad(self, Z, W, v, y, *, local, activation, nthreads=0):
        """(f (C, P), dW, dv): f and the gradient of (1/2) sum_p (y[c, p] - f_c(x_p))^2,
        i.e. the vjp of f - y (one forward and one vjp pass)."""
        xp = self.xp
        f = self.patch_forward(Z, W, v, local=local, activation=activation)
        r = xp.ascontiguousarray(f - y)  # broadcasts the chains of y and f
        f = xp.ascontiguousarray(xp.broadcast_to(f, r.shape))
        dW, dv = self.patch_vjp(Z, W, v, r, local=local, activation=activation)
        return f, dW, dv

    def patch_features(self, Z, W, v, a0, a1, *, local, activation, nthreads=0,
                       combined=False):
        """NTK features (S, G) of channels [a0, a1) for unchained W, v (as
        ``lkr._core.patch_features``), as array expressions; ``combined``: [S | G]."""
        S, G = reference_features(Z, W[a0:a1], v[a0:a1], self._activation(activation), local,
                                  W.shape[0])
        if combined:
            P = Z.shape[0]
            return self.xp.concatenate([S.reshape(P, -1), G.reshape(P, -1)], axis=1)
        return S, G

    def activation_pair(self, H, *, activation, derivative, nthreads=0):
        """sigma(H), or (sigma(H), sigma'(H)) with derivative=True, elementwise."""
        act = self._activation(activation)
        S = H.copy() if act == "linear" else sigma(act, H)
        return (S, sigma_prime(act, H)) if derivative else S

    def readout_forward(self, H, u, S, f, *, scale, activation, nthreads=0):
        """In place: S = sigma(H), H <- sigma'(H) u, f = scale sum_k u S (readout.hpp)."""
        act = self._activation(activation)
        S[...] = H if act == "linear" else sigma(act, H)
        H[...] = sigma_prime(act, H) * u[:, None, :]
        f[...] = scale * (S * u[:, None, :]).sum(axis=2)

    def readout_backward(self, D, S, rc, g, *, nthreads=0):
        """In place: g[c, k] = sum_p rc[c, p] S[c, p, k]; D *= rc[..., None]."""
        g[...] = (rc[:, :, None] * S).sum(axis=1)
        D *= rc[:, :, None]
