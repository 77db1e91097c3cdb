"""The fastest plain-NumPy formulations of K_R(Q) and G(W) we could write: the peer that
lkr's compiled kernels are measured against.

What makes them fast (each measured on the benchmark case, P = 1024, Np = 16):

* patches are prepared once as in lkr (scaled so that u = z_i . z_j and K = s_i s_j F(u)),
  so the map needs no per-entry normalisation;
* the local kernel is never held: samples are taken in blocks, the patch dot products of a
  block pair are one GEMM written into a preallocated buffer, and every elementwise step
  (arcsin, the ReLU terms, the Q weights) runs in place with ``out=``. Preallocation
  matters more than anything else here: a fresh 100 MB temporary per step costs ~18 ns per
  element in page faults on a VM, where NumPy's SIMD arcsin itself costs ~1 ns;
* the symmetric case computes only the upper block triangle;
* the Q contraction is a loop of Np batched matrix-vector products (the fastest of the
  einsum / tensordot / broadcast-and-sum variants we timed);
* erf skips ``clip`` when |u| <= max 2c / (1 + 2c) < 1 guarantees the range.

Everything runs on one core: NumPy's ufuncs are single-threaded, and the GEMMs are kept
on one OpenBLAS thread (see single_threaded_blas). Compare per core, or scale by the
``threads`` lkr used.
"""
from __future__ import annotations

import contextlib
import ctypes

import numpy as np


def _openblas():
    """The OpenBLAS that NumPy loaded, with its get/set thread-count functions, or None."""
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "openblas" in line.lower() and "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    return get, put
    return None


@contextlib.contextmanager
def single_threaded_blas():
    """Run NumPy's GEMMs on one thread (best effort: OpenBLAS only).

    The peer's GEMMs are small (Np b x M by M x Np b'); OpenBLAS threads gain nothing on
    them, and on a busy machine each call can stall waiting for a descheduled helper
    thread (we saw 0.2 s to 8 s for the same call). One thread is the honest best case."""
    fns = _openblas()
    if fns is None:
        yield
        return
    get, put = fns
    before = get()
    put(1)
    try:
        yield
    finally:
        put(before)


def prepare(PX, activation, lambda0):
    """z (P, Np, M) and amplitudes s (P, Np): K_ij = s_i s_j F(z_i . z_j)."""
    PX = np.asarray(PX)
    M = PX.shape[2]
    sq = np.einsum("pim,pim->pi", PX, PX)
    c = sq / (lambda0 * M)
    if activation == "linear":
        scale = np.full_like(c, 1 / np.sqrt(lambda0 * M))
        s = np.ones_like(c)
    elif activation == "erf":
        scale = np.sqrt(2 / (lambda0 * M) / (1 + 2 * c))
        s = np.ones_like(c)
    else:
        with np.errstate(divide="ignore"):
            scale = np.where(sq > 0, 1 / np.sqrt(sq), 0)
        s = np.sqrt(c)
    return (PX * scale[..., None]).astype(PX.dtype), s.astype(PX.dtype), c


class _Blocks:
    """Block bookkeeping and the in-place map on one block of u = z_i . z_j."""

    def __init__(self, PX, PY, activation, lambda0, block):
        self.sym = PY is None
        self.act = activation
        self.ZX, self.SX, cx = prepare(PX, activation, lambda0)
        if self.sym:
            self.ZY, self.SY, cy = self.ZX, self.SX, cx
        else:
            self.ZY, self.SY, cy = prepare(PY, activation, lambda0)
        self.P, self.Np, self.M = self.ZX.shape
        self.P2 = self.ZY.shape[0]
        self.dtype = self.ZX.dtype
        Np = self.ZX.shape[1]
        self.bs, self.cs = block if block is not None else (max(1, 256 // Np), max(1, 1024 // Np))
        if activation == "erf":  # |u| <= sqrt(b_i b_j) with b = 2c / (1 + 2c) < 1
            bmax = max(float(np.max(2 * cx / (1 + 2 * cx), initial=0)),
                       float(np.max(2 * cy / (1 + 2 * cy), initial=0)))
            self.clip = bmax > 1 - 1e-6
        else:
            self.clip = activation == "relu"
        self.ZXf = self.ZX.reshape(self.P * self.Np, self.M)
        self.ZYf = self.ZY.reshape(self.P2 * self.Np, self.M)
        self.ubuf = np.empty(self.bs * self.cs * self.Np ** 2, self.dtype)
        self.tbuf = np.empty_like(self.ubuf) if activation == "relu" else None

    def pairs(self):
        for a0 in range(0, self.P, self.bs):
            a1 = min(self.P, a0 + self.bs)
            for b0 in range(a0 if self.sym else 0, self.P2, self.cs):
                yield a0, a1, b0, min(self.P2, b0 + self.cs)

    def block(self, a0, a1, b0, b1):
        """F values (a1 - a0, Np, b1 - b0, Np) times the relu amplitudes, in the buffer."""
        Np = self.Np
        rows, cols = (a1 - a0) * Np, (b1 - b0) * Np
        U = self.ubuf[:rows * cols].reshape(rows, cols)
        np.matmul(self.ZXf[a0 * Np:a1 * Np], self.ZYf[b0 * Np:b1 * Np].T, out=U)
        if self.clip:
            np.clip(U, -1, 1, out=U)
        if self.act == "erf":
            np.arcsin(U, out=U)
            U *= self.dtype.type(2 / np.pi)
        elif self.act == "relu":
            T = self.tbuf[:rows * cols].reshape(rows, cols)
            np.multiply(U, U, out=T)          # u^2
            np.subtract(1, T, out=T)          # 1 - u^2
            np.sqrt(T, out=T)
            V = np.arccos(U)                  # the one temporary: u (pi - arccos u)
            np.subtract(np.pi, V, out=V)
            np.multiply(U, V, out=U)
            U += T
            U *= self.dtype.type(1 / (2 * np.pi))
            U4 = U.reshape(a1 - a0, Np, b1 - b0, Np)
            U4 *= self.SX[a0:a1, :, None, None]
            U4 *= self.SY[None, None, b0:b1, :]
        return U.reshape(a1 - a0, Np, b1 - b0, Np)


def _renormalized_kernel(PX, PY, Q, activation="erf", lambda0=1.0, lambda1=1.0, block=None):
    """K_R(Q) (P, P') from patch tensors (P, Np, M) in plain NumPy (see the module doc).
    ``block``: samples per block of rows and of columns; by default (256/Np, 1024/Np), so
    that the buffer holds 256k values (2 MB in float64, in L2) whatever Np."""
    if activation == "linear":
        return _renormalized_linear(PX, PY, Q, lambda0, lambda1)
    B = _Blocks(PX, PY, activation, lambda0, block)
    Q = np.asarray(Q, dtype=B.dtype)
    out = np.empty((B.P, B.P2), B.dtype)
    for a0, a1, b0, b1 in B.pairs():
        U4 = B.block(a0, a1, b0, b1)
        acc = np.zeros((a1 - a0, b1 - b0), B.dtype)
        for i in range(B.Np):
            acc += np.matmul(U4[:, i], Q[i])  # (na, nb, Np) @ (Np,): sum_j Q_ij K_ij
        out[a0:a1, b0:b1] = acc
        if B.sym:
            out[b0:b1, a0:a1] = acc.T
    out *= B.dtype.type(1 / (lambda1 * B.Np))
    return out


def _local_kernel_adjoint(PX, PY, W, activation="erf", lambda0=1.0, block=None):
    """G(W) (Np, Np) from patch tensors in plain NumPy. With PY None, W must be symmetric:
    each unordered block pair is then visited once."""
    if activation == "linear":
        return _adjoint_linear(PX, PY, W, lambda0)
    B = _Blocks(PX, PY, activation, lambda0, block)
    W = np.asarray(W, dtype=B.dtype)
    G = np.zeros((B.Np, B.Np), np.float64)
    for a0, a1, b0, b1 in B.pairs():
        U4 = B.block(a0, a1, b0, b1)
        Wb = W[a0:a1, b0:b1]
        if B.sym:
            # the diagonal block holds both (mu, nu) and (nu, mu), the others one of the two:
            # weight the others twice and symmetrise G at the end
            Wb = Wb * 2
            if b0 == a0:
                Wb[:, :a1 - a0] *= 0.5
        Wr = Wb[:, None, :]  # (na, 1, nb)
        for i in range(B.Np):
            # sum_{mu nu} W_{mu nu} K_ij^{mu nu} for one i: a batched (1, nb) @ (nb, Np)
            G[i] += np.matmul(Wr, U4[:, i]).sum(axis=(0, 1))
    if B.sym:
        G = (G + G.T) / 2
    return G.astype(B.dtype)


# The linear map needs no local kernel at all: two GEMMs (docs/theory.md section 2).
def _renormalized_linear(PX, PY, Q, lambda0, lambda1):
    """K_R = <X^mu, Q X^nu>_F / (lambda0 lambda1 M Np), X^mu the (Np, M) patch matrix."""
    B = PX if PY is None else PY
    P, Np, M = PX.shape
    QB = np.matmul(np.asarray(Q, dtype=PX.dtype), B)
    out = PX.reshape(P, -1) @ QB.reshape(B.shape[0], -1).T
    out *= PX.dtype.type(1 / (lambda0 * lambda1 * M * Np))
    return out


def _adjoint_linear(PX, PY, W, lambda0):
    """G = sum_mu X^mu (sum_nu W_{mu nu} X^nu)^T / (lambda0 M)."""
    B = PX if PY is None else PY
    P, Np, M = PX.shape
    V = (np.asarray(W, dtype=PX.dtype) @ B.reshape(B.shape[0], -1)).reshape(P, Np, M)
    G = np.tensordot(PX, V, axes=([0, 2], [0, 2]))
    G *= PX.dtype.type(1 / (lambda0 * M))
    return G


def renormalized_kernel(PX, PY, Q, activation="erf", lambda0=1.0, lambda1=1.0, block=None):
    """K_R(Q) (P, P') from patch tensors (P, Np, M) in plain NumPy (see the module doc)."""
    with single_threaded_blas():
        return _renormalized_kernel(PX, PY, Q, activation, lambda0, lambda1, block)


def local_kernel_adjoint(PX, PY, W, activation="erf", lambda0=1.0, block=None):
    """G(W) (Np, Np) from patch tensors in plain NumPy (see the module doc)."""
    with single_threaded_blas():
        return _local_kernel_adjoint(PX, PY, W, activation, lambda0, block)
