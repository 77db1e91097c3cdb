"""CUDA host side of the deep-CNN kernel (``csrc/cuda/deep_kernel.cu``): the functions
``lkr._core.deep_*`` for CuPy arrays, with the same signatures:

- ``deep_local_kernel(X, Y, layers, plan, activation, lambda0, nthreads)``: (P, P2, d, d)
- ``deep_renormalized_kernel(X, Y, Q, layers, plan, activation, lambda0, lambdaL,
  nthreads)``: (P, P2)
- ``deep_renormalized_kernel_diag(X, Q, layers, plan, activation, lambda0, lambdaL,
  nthreads)``: (P,)
- ``deep_local_kernel_adjoint(X, Y, W, w_symmetric, layers, plan, activation, lambda0,
  nthreads)``: (d, d)
- ``deep_pack_compressed(X, cols, ncols, layers, plan, activation, lambda0, nthreads)``:
  (P (P + 1) / 2, ncols)

X, Y are the flattened inputs (P, n0); ``layers = (index1, tables, norms)`` the layer-1 patch
index (n1, M1), the int32 (n_l, k_l) window tables of layers 2..L and their
1 / (k_l lambda_{l-1}); ``plan = (pairs, gathers, chunks)`` the pair plan of
:meth:`lkr.DeepGeometry.pair_plan` (see :mod:`lkr._deep_kernels`; the chunks matter only to
the C++ engine). The planning runs over any array module through :class:`lkr._cuda.Engine`,
so that the tests drive it with the host emulator. Memory: the output, O(P (n_1 M_1 +
sum_l n_l)) for the prepared samples, and a workspace of sum_l (plan pairs_l + 1) per block
for at most a few blocks per multiprocessor.
"""
from __future__ import annotations

import numpy as np

from .kernels import _suffix

__all__ = ["DeepEngine", "DeepEngineMixin"]

_THREADS = 256  # LKR_DEEP_THREADS in deep_kernel.cu
_WORK_BYTES = 1 << 30  # cap of the per-block workspaces together


def _host(a, dtype):
    return np.asarray(a.get() if hasattr(a, "get") else a, dtype=dtype)


class DeepEngine:
    """Launch planning of the deep kernel over an :class:`lkr._cuda.Engine`."""

    def __init__(self, engine):
        self.e = engine

    # -- helpers
    def _layers(self, layers, N0):
        """The layer-1 index and the tables of the variance recursion, checked."""
        index1, tables, norms = layers
        index1 = _host(index1, np.int32)
        if index1.ndim != 2 or index1.shape[1] < 1:
            raise ValueError(f"the layer-1 index must be (n1, M1), got {index1.shape}")
        if index1.size and (index1.min() < 0 or index1.max() > N0):
            raise ValueError(f"the layer-1 index has entries outside [0, {N0}]")
        if len(tables) != len(norms):
            raise ValueError(f"{len(tables)} layer tables but {len(norms)} norms")
        N1 = index1.shape[0]
        meta, flat, pos, off, n_in = [], [], 0, 0, N1
        sizes, ks, pos_offs = [N1], [], [0]
        for i, t in enumerate(tables):
            t = _host(t, np.int32)
            if t.ndim != 2 or t.shape[1] < 1:
                raise ValueError(f"layer table {i + 2} must be (n_out, k), got {t.shape}")
            if t.size and (t.min() < 0 or t.max() > n_in):
                raise ValueError(f"layer table {i + 2} has indices outside [0, {n_in}]")
            meta += [n_in, t.shape[0], t.shape[1], off, pos]
            flat.append(t.ravel())
            pos_offs.append(pos)
            ks.append(t.shape[1])
            off += t.size
            pos += t.shape[0]
            n_in = t.shape[0]
            sizes.append(t.shape[0])
        xp = self.e.xp
        idx = np.concatenate(flat) if flat else np.zeros(1, np.int32)
        m = np.asarray(meta if meta else [0], dtype=np.int64)
        nrm = np.asarray(list(norms) if norms else [1.0], dtype=np.float64)
        return dict(index1=xp.asarray(index1), tmeta=xp.asarray(m), idx=xp.asarray(idx),
                    norms=xp.asarray(nrm), nl=len(tables), S=pos, sizes=sizes, ks=ks,
                    pos_offs=pos_offs)

    def _plan(self, plan, lay):
        """The plan's levels as one meta table and two flat index arrays, checked (a bad
        index would read out of bounds on the device)."""
        pairs, gathers, _ = plan
        sizes, ks = lay["sizes"], lay["ks"]
        L = len(sizes)
        if len(pairs) != L or len(gathers) != L - 1:
            raise ValueError(f"deep pair plan: {len(pairs)} pair levels and {len(gathers)} "
                             f"gather levels for {L} layers")
        meta, pflat, gflat, poff, goff, woff = [], [], [], 0, 0, 0
        counts = []
        for lev in range(L):
            p = _host(pairs[lev], np.int32)
            if p.ndim != 2 or p.shape[1] != 2:
                raise ValueError(f"deep pair plan: level {lev + 1} pairs must be (n, 2), got "
                                 f"{p.shape}")
            if p.size and (p.min() < 0 or p.max() >= sizes[lev]):
                raise ValueError(f"deep pair plan: level {lev + 1} has positions outside "
                                 f"[0, {sizes[lev]})")
            n = p.shape[0]
            k = 0
            if lev:
                g = _host(gathers[lev - 1], np.int32)
                k = ks[lev - 1]
                if g.shape != (n, k):
                    raise ValueError(f"deep pair plan: level {lev + 1} gathers must be ({n}, {k}),"
                                     f" got {g.shape}")
                if g.size and (g.min() < 0 or g.max() > counts[-1]):
                    raise ValueError(f"deep pair plan: level {lev + 1} reads pairs outside "
                                     f"[0, {counts[-1]}]")
                gflat.append(g.ravel())
            meta += [n, poff, goff, k, lay["pos_offs"][lev], woff]
            pflat.append(p.ravel())
            poff += p.size
            goff += n * k
            woff += n + 1  # + 1: the zero a padded window position reads
            counts.append(n)
        xp = self.e.xp
        pairs_flat = np.concatenate(pflat) if poff else np.zeros(1, np.int32)
        gathers_flat = np.concatenate(gflat) if goff else np.zeros(1, np.int32)
        return dict(pmeta=xp.asarray(np.asarray(meta, dtype=np.int64)),
                    pairs=xp.asarray(pairs_flat), gathers=xp.asarray(gathers_flat),
                    wsize=woff, nfinal=counts[-1], final=_host(pairs[-1], np.int32))

    def _prepare(self, X, act, lambda0, lay, M):
        e = self.e
        P, N0 = X.shape
        N1 = lay["sizes"][0]
        dt = X.dtype
        S = lay["S"]
        z = e._alloc((P, N1, M), dt)
        s1 = e._alloc((P, N1), dt)
        r = e._alloc((P, max(S, 1)), dt)
        s = e._alloc((P, max(S, 1)), dt)
        nmax = max(lay["sizes"])
        kd = e._alloc((P, 2 * nmax), np.float64, zero=True)
        if P:
            nblocks = min(P, 32 * e.num_sms())
            e._launch(f"lkr_deep_prepare_{act}_{_suffix(dt)}", dt, nblocks,
                      (X, lay["index1"], z, s1, r, s, kd, lay["tmeta"], lay["idx"],
                       lay["norms"], np.int64(P), np.int64(N0), np.int64(N1), np.int64(M),
                       np.int32(lay["nl"]), np.int64(max(S, 1)), np.int64(nmax),
                       np.float64(1.0 / (float(lambda0) * M))))
        return z, s1, r, s

    def _run(self, mode, X, Y, aux, layers, plan, activation, lambda0, sym, outnorm, out,
             npairs, adjoint=False, cols=None, ncols=0):
        e = self.e
        act = e._activation(activation)
        P, N0 = X.shape
        P2 = P if Y is None else Y.shape[0]
        lay = self._layers(layers, N0)
        pl = self._plan(plan, lay)
        N1, M = lay["sizes"][0], int(lay["index1"].shape[1])
        d = lay["sizes"][-1]
        dt = X.dtype
        A = self._prepare(X, act, lambda0, lay, M)
        B = A if Y is None else self._prepare(Y, act, lambda0, lay, M)
        wsize = pl["wsize"]
        per_block = wsize * np.dtype(dt).itemsize
        nblocks = int(max(1, min(npairs, 8 * e.num_sms(), _WORK_BYTES // max(per_block, 1))))
        work = e._alloc((nblocks, wsize), dt, zero=True)  # zero: the padding entries
        H = e._alloc((nblocks, pl["nfinal"]) if adjoint else (1,), np.float64, zero=True)
        aux = e._alloc((1,), dt, zero=True) if aux is None else aux
        cols = e.xp.zeros(1, np.int32) if cols is None else e.xp.asarray(cols, dtype=np.int32)
        name = f"lkr_deep_{mode}_{act}_{_suffix(dt)}"
        e._launch(name, dt, nblocks,
                  (A[0], A[1], A[2], A[3], B[0], B[1], B[2], B[3], pl["pmeta"], pl["pairs"],
                   pl["gathers"], lay["norms"], aux, cols, np.int64(ncols), out, H, work,
                   np.int64(P), np.int64(P2), np.int64(N1), np.int64(M),
                   np.int32(len(lay["sizes"])), np.int64(max(lay["S"], 1)), np.int64(d),
                   np.int64(wsize), np.int64(npairs), np.int32(sym), np.float64(outnorm)))
        return H, pl

    @staticmethod
    def _d(layers):
        index1, tables, _ = layers
        return int(tables[-1].shape[0]) if len(tables) else int(index1.shape[0])

    def _inputs(self, X, Y, extra=(), names=(), ndims=()):
        e = self.e
        dtype = e._check((X, Y) + tuple(extra), ("X", "Y") + tuple(names), (2, 2) + tuple(ndims))
        if Y is not None and Y.shape[1] != X.shape[1]:
            raise ValueError(f"X and Y differ in input size: {X.shape[1]} vs {Y.shape[1]}")
        return dtype

    # -- the backend's functions
    def deep_local_kernel(self, X, Y, layers, plan, activation, lambda0, nthreads=0):
        e = self.e
        dtype = self._inputs(X, Y)
        P = X.shape[0]
        P2 = P if Y is None else Y.shape[0]
        d = self._d(layers)
        with e.device_of(X):
            dense = len(plan[0][-1]) == d * d
            out = e._alloc((P, P2, d, d), dtype, zero=not dense)
            if out.size == 0:
                return out
            sym = Y is None
            npairs = P * (P + 1) // 2 if sym else P * P2
            self._run("full", X, Y, None, layers, plan, activation, lambda0, sym, 1.0, out, npairs)
        return out

    def deep_renormalized_kernel(self, X, Y, Q, layers, plan, activation, lambda0, lambdaL,
                                 nthreads=0):
        e = self.e
        dtype = self._inputs(X, Y, (Q,), ("Q",), (2,))
        P = X.shape[0]
        P2 = P if Y is None else Y.shape[0]
        d = self._d(layers)
        if Q.shape != (d, d):
            raise ValueError(f"Q must have shape ({d}, {d}), got {Q.shape}")
        with e.device_of(X):
            out = e._alloc((P, P2), dtype)
            if out.size == 0:
                return out
            sym = Y is None
            npairs = P * (P + 1) // 2 if sym else P * P2
            self._run("renormalized", X, Y, Q, layers, plan, activation, lambda0, sym,
                      1.0 / (float(lambdaL) * d), out, npairs)
        return out

    def deep_renormalized_kernel_diag(self, X, Q, layers, plan, activation, lambda0, lambdaL,
                                      nthreads=0):
        e = self.e
        dtype = self._inputs(X, None, (Q,), ("Q",), (2,))
        P = X.shape[0]
        d = self._d(layers)
        if Q.shape != (d, d):
            raise ValueError(f"Q must have shape ({d}, {d}), got {Q.shape}")
        with e.device_of(X):
            out = e._alloc((P,), dtype)
            if P == 0:
                return out
            self._run("diag", X, None, Q, layers, plan, activation, lambda0, 0,
                      1.0 / (float(lambdaL) * d), out, P)
        return out

    def deep_local_kernel_adjoint(self, X, Y, W, w_symmetric, layers, plan, activation,
                                  lambda0, nthreads=0):
        e = self.e
        dtype = self._inputs(X, Y, (W,), ("W",), (2,))
        P = X.shape[0]
        P2 = P if Y is None else Y.shape[0]
        if W.shape != (P, P2):
            raise ValueError(f"W must have shape ({P}, {P2}), got {W.shape}")
        d = self._d(layers)
        xp = e.xp
        with e.device_of(X):
            if P == 0 or P2 == 0:
                return xp.zeros((d, d), dtype=dtype)
            sym = Y is None and bool(w_symmetric)
            npairs = P * (P + 1) // 2 if sym else P * P2
            H, pl = self._run("adjoint", X, Y, W, layers, plan, activation, lambda0, sym, 1.0,
                              e._alloc((1,), dtype, zero=True), npairs, adjoint=True)
            h = H.sum(axis=0)  # the blocks' slices, in a fixed order
            fin = xp.asarray(pl["final"].astype(np.int64))
            G = xp.zeros(d * d, dtype=np.float64)
            G[fin[:, 0] * d + fin[:, 1]] = h  # final pairs are distinct
            G = G.reshape(d, d)
            if sym:
                G = G + G.T
            return xp.ascontiguousarray(G, dtype=dtype)

    def deep_pack_compressed(self, X, cols, ncols, layers, plan, activation, lambda0,
                             nthreads=0):
        e = self.e
        dtype = self._inputs(X, None)
        P = X.shape[0]
        nf = len(plan[0][-1])
        hc = _host(cols, np.int32)
        if hc.shape != (nf,):
            raise ValueError(f"cols must have one entry per final pair ({nf}), got shape "
                             f"{hc.shape}")
        if hc.size and (hc.min() < 0 or hc.max() >= ncols):
            raise ValueError(f"cols has entries outside [0, {ncols})")
        with e.device_of(X):
            out = e._alloc((P * (P + 1) // 2, int(ncols)), dtype)
            if out.size == 0:
                return out
            self._run("pack", X, None, None, layers, plan, activation, lambda0, 1, 1.0, out,
                      P * (P + 1) // 2, cols=hc, ncols=int(ncols))
        return out


class DeepEngineMixin:
    """The deep-kernel calls of :class:`lkr._cuda.Engine` (the functions of ``lkr._core``)."""

    def _deep(self):
        return DeepEngine(self)

    def deep_local_kernel(self, X, Y, layers, plan, activation, lambda0, nthreads=0):
        """Final blocks K_L (P, P2, d, d); see :func:`lkr.kernels.local_kernel`."""
        return self._deep().deep_local_kernel(X, Y, layers, plan, activation, lambda0)

    def deep_renormalized_kernel(self, X, Y, Q, layers, plan, activation, lambda0, lambdaL,
                                 nthreads=0):
        """Deep K_R(Q) (P, P2); see :func:`lkr.kernels.renormalized_kernel`."""
        return self._deep().deep_renormalized_kernel(X, Y, Q, layers, plan, activation,
                                                     lambda0, lambdaL)

    def deep_renormalized_kernel_diag(self, X, Q, layers, plan, activation, lambda0, lambdaL,
                                      nthreads=0):
        """Deep K_R(Q)(x, x) (P,)."""
        return self._deep().deep_renormalized_kernel_diag(X, Q, layers, plan, activation,
                                                          lambda0, lambdaL)

    def deep_local_kernel_adjoint(self, X, Y, W, w_symmetric, layers, plan, activation,
                                  lambda0, nthreads=0):
        """Deep G(W) (d, d); see :func:`lkr.kernels.local_kernel_adjoint`."""
        return self._deep().deep_local_kernel_adjoint(X, Y, W, w_symmetric, layers, plan,
                                                      activation, lambda0)

    def deep_pack_compressed(self, X, cols, ncols, layers, plan, activation, lambda0,
                             nthreads=0):
        """The stored deep kernel of the theories; see :func:`lkr._deep_kernels.pack_compressed`."""
        return self._deep().deep_pack_compressed(X, cols, ncols, layers, plan, activation,
                                                 lambda0)
