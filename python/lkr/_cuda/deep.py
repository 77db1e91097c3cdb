"""CUDA host side of the deep-CNN kernel (``csrc/cuda/deep_kernel.cu``): the functions
``lkr._core.deep_*`` for CuPy arrays, with the same signatures:

- ``deep_local_kernel(PX, PY, tables, norms, activation, lambda0, nthreads)``: (P, P2, d, d)
- ``deep_renormalized_kernel(PX, PY, Q, tables, norms, activation, lambda0, lambdaL,
  nthreads)``: (P, P2)
- ``deep_renormalized_kernel_diag(PX, Q, tables, norms, activation, lambda0, lambdaL,
  nthreads)``: (P,)
- ``deep_local_kernel_adjoint(PX, PY, W, w_symmetric, tables, norms, activation, lambda0,
  nthreads)``: (d, d)

``tables`` are the int32 (n_l, k_l) window tables of layers 2..L and ``norms`` their
1 / (k_l lambda_{l-1}) (see :mod:`lkr._deep_kernels`). The planning runs over any array
module through :class:`lkr._cuda.Engine`, so that the tests drive it with the host emulator.
Memory: the output, O(P (n_1 M_1 + sum_l n_l)) for the prepared samples, and a workspace
of sum_l (n_l + 1)^2 per block for at most a few blocks per multiprocessor.
"""
from __future__ import annotations

import numpy as np

from .kernels import _suffix

__all__ = ["DeepEngine", "DeepEngineMixin", "needed_layer1_pairs"]

_THREADS = 256  # LKR_DEEP_THREADS in deep_kernel.cu
_WORK_BYTES = 1 << 30  # cap of the per-block workspaces together


def needed_layer1_pairs(tables, N1):
    """Flat indices p N1 + q (int32) of the layer-1 position pairs the layers above read.

    Layer l + 1 reads K_l at (w_p(t), w_q(t)) for the pairs (p, q) it needs (the same offset
    t on both sides); the last layer needs all its pairs. After a stride-2 layer only pairs
    with p = q (mod 2) per axis remain (a quarter in 2D): the rest are not computed.
    """
    sizes = [N1] + [int(t.shape[0]) for t in tables]
    up = np.ones((sizes[-1], sizes[-1]), dtype=bool)
    for i in range(len(tables) - 1, -1, -1):
        t = np.asarray(tables[i].get() if hasattr(tables[i], "get") else tables[i])
        n_in = sizes[i]
        down = np.zeros((n_in + 1, n_in + 1), dtype=bool)  # + 1: the padding sentinel
        a, b = np.nonzero(up)
        for k in range(t.shape[1]):
            down[t[a, k], t[b, k]] = True
        up = down[:n_in, :n_in]
    return np.flatnonzero(up).astype(np.int32)


class DeepEngine:
    """Launch planning of the deep kernel over an :class:`lkr._cuda.Engine`."""

    def __init__(self, engine):
        self.e = engine

    # -- helpers
    def _tables(self, tables, norms, N1):
        xp = self.e.xp
        if len(tables) != len(norms):
            raise ValueError(f"{len(tables)} layer tables but {len(norms)} norms")
        meta, flat, pos, off, n_in = [], [], 0, 0, N1
        for i, t in enumerate(tables):
            t = np.asarray(t.get() if hasattr(t, "get") else t, dtype=np.int32)
            if t.ndim != 2 or t.shape[1] < 1:
                raise ValueError(f"layer table {i + 2} must be (n_out, k), got {t.shape}")
            if t.size and (t.min() < 0 or t.max() > n_in):
                raise ValueError(f"layer table {i + 2} has indices outside [0, {n_in}]")
            meta += [n_in, t.shape[0], t.shape[1], off, pos]
            flat.append(t.ravel())
            off += t.size
            pos += t.shape[0]
            n_in = t.shape[0]
        idx = np.concatenate(flat) if flat else np.zeros(1, np.int32)
        m = np.asarray(meta if meta else [0], dtype=np.int64)
        nrm = np.asarray(list(norms) if norms else [1.0], dtype=np.float64)
        sizes = [N1] + [int(t.shape[0]) for t in tables]
        return (xp.asarray(m), xp.asarray(idx), xp.asarray(nrm), len(tables), pos, sizes)

    def _prepare(self, X, act, lambda0, meta, idx, nrm, nl, S, sizes):
        e = self.e
        P, N1, M = X.shape
        dt = X.dtype
        z = e._alloc((P, N1, M), dt)
        s1 = e._alloc((P, N1), dt)
        r = e._alloc((P, max(S, 1)), dt)
        s = e._alloc((P, max(S, 1)), dt)
        nmax = max(sizes)
        kd = e._alloc((P, 2 * nmax), np.float64, zero=True)
        if P:
            nblocks = min(P, 32 * e.num_sms())
            e._launch(f"lkr_deep_prepare_{act}_{_suffix(dt)}", dt, nblocks,
                      (X, z, s1, r, s, kd, meta, idx, nrm, np.int64(P), np.int64(N1),
                       np.int64(M), np.int32(nl), np.int64(max(S, 1)), np.int64(nmax),
                       np.float64(1.0 / (float(lambda0) * M))))
        return z, s1, r, s

    def _run(self, mode, PX, PY, aux, tables, norms, activation, lambda0, sym, outnorm, out,
             npairs, H=None):
        e = self.e
        act = e._activation(activation)
        P, N1, M = PX.shape
        P2 = P if PY is None else PY.shape[0]
        meta, idx, nrm, nl, S, sizes = self._tables(tables, norms, N1)
        d = sizes[-1]
        dt = PX.dtype
        A = self._prepare(PX, act, lambda0, meta, idx, nrm, nl, S, sizes)
        B = A if PY is None else self._prepare(PY, act, lambda0, meta, idx, nrm, nl, S, sizes)
        wsize = sum((n + 1) * (n + 1) for n in sizes)
        per_block = wsize * np.dtype(dt).itemsize
        nblocks = int(max(1, min(npairs, 8 * e.num_sms(), _WORK_BYTES // max(per_block, 1))))
        work = e._alloc((nblocks, wsize), dt, zero=True)  # zero: the padding sentinels
        if H is None:
            H = e._alloc((1,), np.float64, zero=True)
        elif H.shape[0] != nblocks:
            H = e._alloc((nblocks, d, d), np.float64, zero=True)
        aux = e._alloc((1,), dt, zero=True) if aux is None else aux
        pairs1 = e.xp.asarray(needed_layer1_pairs(tables, N1))
        name = f"lkr_deep_{mode}_{act}_{_suffix(dt)}"
        e._launch(name, dt, nblocks,
                  (A[0], A[1], A[2], A[3], B[0], B[1], B[2], B[3], meta, idx, nrm, pairs1,
                   np.int64(pairs1.size), aux, out, H,
                   work, np.int64(P), np.int64(P2), np.int64(N1), np.int64(M), np.int32(nl),
                   np.int64(max(S, 1)), np.int64(wsize), np.int64(npairs), np.int32(sym),
                   np.float64(outnorm)))
        return out, H, d

    def _final_d(self, tables, N1):
        return int(tables[-1].shape[0]) if len(tables) else N1

    # -- the backend's functions
    def deep_local_kernel(self, PX, PY, tables, norms, activation, lambda0, nthreads=0):
        e = self.e
        dtype = e._check((PX, PY), ("X", "Y"), (3, 3))
        e._same_patches(PX, PY)
        P, N1, _ = PX.shape
        P2 = P if PY is None else PY.shape[0]
        d = self._final_d(tables, N1)
        with e.device_of(PX):
            out = e._alloc((P, P2, d, d), dtype)
            if out.size == 0:
                return out
            sym = PY is None
            npairs = P * (P + 1) // 2 if sym else P * P2
            self._run("full", PX, PY, None, tables, norms, activation, lambda0, sym, 1.0, out,
                      npairs)
        return out

    def deep_renormalized_kernel(self, PX, PY, Q, tables, norms, activation, lambda0, lambdaL,
                                 nthreads=0):
        e = self.e
        dtype = e._check((PX, PY, Q), ("X", "Y", "Q"), (3, 3, 2))
        e._same_patches(PX, PY)
        P, N1, _ = PX.shape
        P2 = P if PY is None else PY.shape[0]
        d = self._final_d(tables, N1)
        if Q.shape != (d, d):
            raise ValueError(f"Q must have shape ({d}, {d}), got {Q.shape}")
        with e.device_of(PX):
            out = e._alloc((P, P2), dtype)
            if out.size == 0:
                return out
            sym = PY is None
            npairs = P * (P + 1) // 2 if sym else P * P2
            self._run("renormalized", PX, PY, Q, tables, norms, activation, lambda0, sym,
                      1.0 / (float(lambdaL) * d), out, npairs)
        return out

    def deep_renormalized_kernel_diag(self, PX, Q, tables, norms, activation, lambda0, lambdaL,
                                      nthreads=0):
        e = self.e
        dtype = e._check((PX, Q), ("X", "Q"), (3, 2))
        P, N1, _ = PX.shape
        d = self._final_d(tables, N1)
        if Q.shape != (d, d):
            raise ValueError(f"Q must have shape ({d}, {d}), got {Q.shape}")
        with e.device_of(PX):
            out = e._alloc((P,), dtype)
            if P == 0:
                return out
            self._run("diag", PX, None, Q, tables, norms, activation, lambda0, 0,
                      1.0 / (float(lambdaL) * d), out, P)
        return out

    def deep_local_kernel_adjoint(self, PX, PY, W, w_symmetric, tables, norms, activation,
                                  lambda0, nthreads=0):
        e = self.e
        dtype = e._check((PX, PY, W), ("X", "Y", "W"), (3, 3, 2))
        e._same_patches(PX, PY)
        P, N1, _ = PX.shape
        P2 = P if PY is None else PY.shape[0]
        if W.shape != (P, P2):
            raise ValueError(f"W must have shape ({P}, {P2}), got {W.shape}")
        d = self._final_d(tables, N1)
        xp = e.xp
        with e.device_of(PX):
            if P == 0 or P2 == 0:
                return xp.zeros((d, d), dtype=dtype)
            sym = PY is None and bool(w_symmetric)
            npairs = P * (P + 1) // 2 if sym else P * P2
            placeholder = e._alloc((0,), np.float64, zero=True)  # sized in _run
            _, H, _ = self._run("adjoint", PX, PY, W, tables, norms, activation, lambda0, sym,
                                1.0, e._alloc((1,), dtype, zero=True), npairs, H=placeholder)
            G = H.sum(axis=0)  # the blocks' slices, in a fixed order
            if sym:
                G = G + G.T
            return xp.ascontiguousarray(G, dtype=dtype)


class DeepEngineMixin:
    """The deep-kernel calls of :class:`lkr._cuda.Engine` (the functions of ``lkr._core``)."""

    def _deep(self):
        return DeepEngine(self)

    def deep_local_kernel(self, PX, PY, tables, norms, activation, lambda0, nthreads=0):
        """Final blocks K_L (P, P2, d, d); see :func:`lkr.kernels.local_kernel`."""
        return self._deep().deep_local_kernel(PX, PY, tables, norms, activation, lambda0)

    def deep_renormalized_kernel(self, PX, PY, Q, tables, norms, activation, lambda0, lambdaL,
                                 nthreads=0):
        """Deep K_R(Q) (P, P2); see :func:`lkr.kernels.renormalized_kernel`."""
        return self._deep().deep_renormalized_kernel(PX, PY, Q, tables, norms, activation,
                                                     lambda0, lambdaL)

    def deep_renormalized_kernel_diag(self, PX, Q, tables, norms, activation, lambda0, lambdaL,
                                      nthreads=0):
        """Deep K_R(Q)(x, x) (P,)."""
        return self._deep().deep_renormalized_kernel_diag(PX, Q, tables, norms, activation,
                                                          lambda0, lambdaL)

    def deep_local_kernel_adjoint(self, PX, PY, W, w_symmetric, tables, norms, activation,
                                  lambda0, nthreads=0):
        """Deep G(W) (d, d); see :func:`lkr.kernels.local_kernel_adjoint`."""
        return self._deep().deep_local_kernel_adjoint(PX, PY, W, w_symmetric, tables, norms,
                                                      activation, lambda0)
