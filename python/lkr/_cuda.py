r"""CUDA backend of the local-kernel engine: the functions of ``lkr._core`` for CuPy arrays.

:mod:`lkr.backend` routes CuPy inputs here; the public API is :mod:`lkr.kernels`, which
validates its arguments and calls, with patch tensors ``PX`` (P, Np, M) and ``PY``
(P2, Np, M) or ``None`` (C-contiguous, one dtype, float32 or float64):

=====================================================================  =====================
``local_kernel(PX, PY, activation, lambda0, nthreads)``                 (P, P2, Np, Np)
``renormalized_kernel(PX, PY, Q, activation, lambda0, lambda1, nthreads)``  (P, P2)
``renormalized_kernel_diag(PX, Q, activation, lambda0, lambda1, nthreads)`` (P,)
``local_kernel_adjoint(PX, PY, W, w_symmetric, activation, lambda0, nthreads)`` (Np, Np)
``nngp_map_inplace(K, dx, dy, activation, nthreads)``                   None (K in place)
``patch_forward(Z, W, v, *, local, activation, nthreads)``              (C, P)
``patch_vjp(Z, W, v, r, *, local, activation, nthreads)``               (dW, dv)
``patch_jvp(Z, W, v, tW, tv, *, local, activation, nthreads)``          (C, P)
``patch_value_and_grad(Z, W, v, y, *, local, activation, nthreads)``    (f, dW, dv)
``patch_features(Z, W, v, a0, a1, *, local, activation, nthreads)``     (S, G)
``activation_pair(H, *, activation, derivative, nthreads)``             sigma(H) (, sigma'(H))
``deep_*(...)``: the deep-CNN kernel, see :mod:`lkr._cuda_deep`
=====================================================================  =====================

(the function list of ``lkr._core``, stated in ``_core.pyi``; a test checks both engines
against it).

with (docs/theory.md section 2)

.. math::

    K_{ij}^{\mu\nu} = s_i^\mu s_j^\nu F(z_i^\mu \cdot z_j^\nu), \qquad
    K_R(Q)^{\mu\nu} = \frac{1}{\lambda_1 N_p} \sum_{ij} Q_{ij} K_{ij}^{\mu\nu}, \qquad
    G(W)_{ij} = \sum_{\mu\nu} W_{\mu\nu} K_{ij}^{\mu\nu}

for the prepared patches z and amplitudes s of ``csrc/lkr/activations.hpp``; the patch
passes are those of the CNN/LCN nets (``csrc/lkr/nets.hpp``, ``csrc/cuda/nets.cu``), with
chained parameters (a leading chain axis of length C, or 1 to broadcast). ``nthreads``
is accepted and ignored. The kernels are ``csrc/cuda/*.cu``, installed as package data in
``lkr/cuda/`` (read from ``<repo>/csrc/cuda`` in a source checkout; see :func:`source_dir`),
compiled at run time by NVRTC through ``cupy.RawModule`` once per dtype and device (and
cached on disk by CuPy).
No device pointer crosses pybind11: everything here is CuPy.

Importing this module needs neither CuPy nor a device (CuPy is imported at the first call);
nothing is compiled until a kernel runs.
"""
from __future__ import annotations

import threading
from contextlib import nullcontext
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from ._cuda_deep import (
    DeepEngineMixin,
    deep_local_kernel,
    deep_local_kernel_adjoint,
    deep_renormalized_kernel,
    deep_renormalized_kernel_diag,
)
from ._cuda_multi import MultiOutputCalls
from ._cuda_multi import module_functions as _multi_functions
from ._cuda_sources import SOURCES, load_source, source_dir, source_of
from ._cuda_train import TrainingCalls
from ._cuda_train import module_functions as _train_functions

__all__ = ["local_kernel", "renormalized_kernel", "renormalized_kernel_diag",
           "local_kernel_adjoint", "nngp_map_inplace", "patch_forward", "patch_vjp",
           "patch_jvp", "patch_value_and_grad", "patch_features", "activation_pair",
           "source_dir", "source_of", "load_source", "compile_options",
           "device_info", "Engine", "SOURCES", "patch_mean", "renormalized_kernel_multi",
           "local_kernel_adjoint_multi", "stored_matmul", "pack_compressed", "stored_sym",
           "deep_local_kernel", "deep_renormalized_kernel", "deep_renormalized_kernel_diag",
           "deep_local_kernel_adjoint"]

_ACTIVATIONS = ("linear", "erf", "relu")

# Tiling of csrc/cuda/local_kernel.cu (LKR_TM, LKR_TILE, LKR_THREADS): keep in sync.
_TM = 4
_TILE = 64
_THREADS = 256
_MAX_GRID_X = 2**31 - 1
_MAX_GRID_Y = 65535

#: When true, outputs are allocated filled with NaN instead of left uninitialised, so that
#: an element a kernel fails to write shows up (tests set it).
POISON = False


def _suffix(dtype) -> str:
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return "f32"
    if dtype == np.float64:
        return "f64"
    raise TypeError(f"the CUDA kernels take float32 or float64, got {dtype}")


def compile_options(dtype) -> Tuple[str, ...]:
    """NVRTC options of the module for ``dtype`` (one dtype's kernels per module)."""
    return ("-std=c++17", "-DLKR_ONLY_F32" if _suffix(dtype) == "f32" else "-DLKR_ONLY_F64")


# -- CuPy kernel loading -----------------------------------------------------------------------
_lock = threading.Lock()
_modules: Dict[tuple, object] = {}


def _cupy():
    import cupy

    return cupy


def _cupy_kernel(name: str, dtype):
    """The RawKernel ``name`` from the module for ``dtype`` on the current device."""
    cp = _cupy()
    dev = cp.cuda.runtime.getDevice()
    src = source_of(name)
    key = (src, _suffix(dtype), dev)
    with _lock:
        mod = _modules.get(key)
        if mod is None:
            cc = int(cp.cuda.Device(dev).compute_capability)
            if cc < 60:  # double-precision atomicAdd, used by G(W)
                raise RuntimeError(f"lkr's CUDA kernels need compute capability >= 6.0; device "
                                   f"{dev} has {cc // 10}.{cc % 10}")
            mod = cp.RawModule(code=load_source(src), options=compile_options(dtype))
            _modules[key] = mod
    return mod.get_function(name)


_num_sms: Dict[int, int] = {}


def _cupy_num_sms() -> int:
    """Multiprocessors of the current device (cached: it sizes the adjoint's grid)."""
    cp = _cupy()
    dev = cp.cuda.runtime.getDevice()
    n = _num_sms.get(dev)
    if n is None:
        n = _num_sms[dev] = int(cp.cuda.runtime.deviceGetAttribute(
            cp.cuda.runtime.cudaDevAttrMultiProcessorCount, dev))
    return n


def device_info() -> dict:
    """The current CUDA device and toolchain, for ``lkr info``."""
    cp = _cupy()
    dev = cp.cuda.runtime.getDevice()
    props = cp.cuda.runtime.getDeviceProperties(dev)
    name = props["name"]
    out = {
        "device": f"{dev}: {name.decode() if isinstance(name, bytes) else name}",
        "compute_capability": f"{props['major']}.{props['minor']}",
        "multiprocessors": int(props["multiProcessorCount"]),
        "memory_GiB": round(props["totalGlobalMem"] / 2**30, 1),
        "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
        "cuda_driver": cp.cuda.runtime.driverGetVersion(),
    }
    try:
        out["nvrtc"] = ".".join(str(v) for v in cp.cuda.nvrtc.getVersion())
    except Exception:  # pragma: no cover - depends on the CuPy build
        pass
    try:
        out["kernel_sources"] = str(source_dir())
    except FileNotFoundError as exc:
        out["kernel_sources"] = f"missing ({exc})"
    return out


# -- launch planning (array-library agnostic, so that the host test emulator drives it) -------
def _grid(nblocks: int) -> Tuple[int, int]:
    """A (x, y) grid with at least ``nblocks`` blocks; the kernels skip ids >= nblocks."""
    if nblocks <= _MAX_GRID_X:
        return (max(int(nblocks), 1), 1)
    gy = -(-nblocks // _MAX_GRID_X)
    if gy > _MAX_GRID_Y:
        raise ValueError(f"{nblocks} thread blocks exceed the CUDA grid limit")
    return (-(-nblocks // gy), gy)


def _panels(PNp: int) -> Tuple[int, int, int]:
    """(CW, S, nchunks): patches per panel side, samples stacked per side, chunks of PNp."""
    CW = min(PNp, _TILE)
    return CW, _TILE // CW, -(-PNp // CW)


class Engine(MultiOutputCalls, DeepEngineMixin, TrainingCalls):
    """The launch-level implementation over an array module ``xp`` and a kernel loader.

    ``get_kernel(name, dtype)`` returns a callable ``(grid, block, args)`` with CuPy's
    RawKernel convention (scalars as NumPy scalars of the kernel's parameter types).
    The module-level functions use CuPy; tests drive the same planning code with NumPy
    arrays and a host emulator of the kernels.
    """

    def __init__(self, xp, get_kernel: Callable, num_sms: Callable[[], int],
                 device_of: Optional[Callable] = None):
        self.xp = xp
        self.get_kernel = get_kernel
        self.num_sms = num_sms
        self.device_of = device_of or (lambda a: nullcontext())

    # -- helpers
    def _alloc(self, shape, dtype, zero=False):
        xp = self.xp
        if zero:
            return xp.zeros(shape, dtype=dtype)
        if POISON:
            return xp.full(shape, np.nan, dtype=dtype)
        return xp.empty(shape, dtype=dtype)

    def _launch(self, name, dtype, nblocks, args):
        self.get_kernel(name, dtype)(_grid(nblocks), (_THREADS,), args)

    def _check(self, arrays, names, ndims):
        """Same dtype (float32/float64), C-contiguous, right rank, one device."""
        xp = self.xp
        dtype = arrays[0].dtype
        _suffix(dtype)
        for a, n, d in zip(arrays, names, ndims):
            if a is None:
                continue
            if not isinstance(a, xp.ndarray):
                raise TypeError(f"{n} must be a {xp.__name__} array, got {type(a).__name__}")
            if a.dtype != dtype:
                raise TypeError(f"{n} has dtype {a.dtype}, expected {dtype} like {names[0]}")
            if a.ndim != d:
                raise ValueError(f"{n} must have {d} dimensions, got shape {a.shape}")
            if not a.flags.c_contiguous:
                raise ValueError(f"{n} must be C-contiguous")
        dev = getattr(arrays[0], "device", None)
        for a, n in zip(arrays, names):
            if a is not None and getattr(a, "device", None) != dev:
                raise ValueError(f"{n} is on {a.device}, {names[0]} on {dev}: use one device")
        return dtype

    @staticmethod
    def _activation(activation):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {_ACTIVATIONS}")
        return activation

    def _prepare(self, X, act, lambda0):
        """Prepared rows z (P, PNp, M) and amplitudes s (P, PNp), PNp = Np rounded up to
        a multiple of the micro-tile, padded rows zero (s = 0)."""
        P, Np, M = X.shape
        PNp = -(-Np // _TM) * _TM
        z = self._alloc((P, PNp, M), X.dtype)
        s = self._alloc((P, PNp), X.dtype)
        if P:
            nblocks = min(-(-(P * PNp) // _THREADS), 32 * self.num_sms())
            self._launch(f"lkr_prepare_{act}_{_suffix(X.dtype)}", X.dtype, nblocks,
                         (X, z, s, np.int64(P), np.int64(Np), np.int64(PNp), np.int64(M),
                          np.float64(1.0 / (float(lambda0) * M))))
        return z, s, PNp

    def _pad_square(self, A, PNp):
        """A zero-padded (PNp, PNp) copy: the kernels read its rows as 16-byte vectors, so it
        must be a fresh (aligned) allocation even when no padding is needed."""
        n = A.shape[0]
        out = self.xp.zeros((PNp, PNp), dtype=A.dtype)
        out[:n, :n] = A
        return out

    @staticmethod
    def _same_patches(PX, PY):
        if PY is not None and PY.shape[1:] != PX.shape[1:]:
            raise ValueError(f"X and Y patch tensors differ in (Np, M): {PX.shape[1:]} vs "
                             f"{PY.shape[1:]}")

    # -- the backend's functions
    def local_kernel(self, PX, PY, activation, lambda0, nthreads=0):
        dtype = self._check((PX, PY), ("X", "Y"), (3, 3))
        self._same_patches(PX, PY)
        act = self._activation(activation)
        P, Np, M = PX.shape
        P2 = P if PY is None else PY.shape[0]
        with self.device_of(PX):
            out = self._alloc((P, P2, Np, Np), dtype)
            if out.size == 0:
                return out
            za, sa, PNp = self._prepare(PX, act, lambda0)
            zb, sb = (za, sa) if PY is None else self._prepare(PY, act, lambda0)[:2]
            CW, S, nchunks = _panels(PNp)
            npairs = -(-P // S) * -(-P2 // S)
            self._launch(f"lkr_full_{act}_{_suffix(dtype)}", dtype, npairs,
                         (za, sa, zb, sb, out, np.int64(P), np.int64(P2), np.int64(Np),
                          np.int64(PNp), np.int64(M), np.int64(CW), np.int64(S),
                          np.int64(nchunks), np.int64(npairs)))
        return out

    def renormalized_kernel(self, PX, PY, Q, activation, lambda0, lambda1, nthreads=0):
        dtype = self._check((PX, PY, Q), ("X", "Y", "Q"), (3, 3, 2))
        self._same_patches(PX, PY)
        act = self._activation(activation)
        P, Np, M = PX.shape
        if Q.shape != (Np, Np):
            raise ValueError(f"Q must have shape ({Np}, {Np}), got {Q.shape}")
        P2 = P if PY is None else PY.shape[0]
        with self.device_of(PX):
            out = self._alloc((P, P2), dtype)
            if out.size == 0:
                return out
            za, sa, PNp = self._prepare(PX, act, lambda0)
            zb, sb = (za, sa) if PY is None else self._prepare(PY, act, lambda0)[:2]
            CW, S, nchunks = _panels(PNp)
            sym = PY is None
            na, nb = -(-P // S), -(-P2 // S)
            npairs = na * (na + 1) // 2 if sym else na * nb
            self._launch(f"lkr_renormalized_{act}_{_suffix(dtype)}", dtype, npairs,
                         (za, sa, zb, sb, self._pad_square(Q, PNp), out, np.int64(P),
                          np.int64(P2), np.int64(PNp), np.int64(M), np.int64(CW), np.int64(S),
                          np.int64(nchunks), np.int64(npairs), np.int32(sym),
                          np.float64(1.0 / (float(lambda1) * Np))))
        return out

    def renormalized_kernel_diag(self, PX, Q, activation, lambda0, lambda1, nthreads=0):
        dtype = self._check((PX, Q), ("X", "Q"), (3, 2))
        act = self._activation(activation)
        P, Np, M = PX.shape
        if Q.shape != (Np, Np):
            raise ValueError(f"Q must have shape ({Np}, {Np}), got {Q.shape}")
        with self.device_of(PX):
            out = self._alloc((P,), dtype)
            if P == 0:
                return out
            z, s, PNp = self._prepare(PX, act, lambda0)
            self._launch(f"lkr_diag_{act}_{_suffix(dtype)}", dtype, P,
                         (z, s, self._pad_square(Q, PNp), out, np.int64(P), np.int64(Np),
                          np.int64(PNp), np.int64(M), np.float64(1.0 / (float(lambda1) * Np))))
        return out

    def local_kernel_adjoint(self, PX, PY, W, w_symmetric, activation, lambda0, nthreads=0):
        dtype = self._check((PX, PY, W), ("X", "Y", "W"), (3, 3, 2))
        self._same_patches(PX, PY)
        act = self._activation(activation)
        P, Np, M = PX.shape
        P2 = P if PY is None else PY.shape[0]
        if W.shape != (P, P2):
            raise ValueError(f"W must have shape ({P}, {P2}), got {W.shape}")
        xp = self.xp
        with self.device_of(PX):
            if P == 0 or P2 == 0:
                return xp.zeros((Np, Np), dtype=dtype)
            za, sa, PNp = self._prepare(PX, act, lambda0)
            zb, sb = (za, sa) if PY is None else self._prepare(PY, act, lambda0)[:2]
            CW, S, nchunks = _panels(PNp)
            sym = PY is None and bool(w_symmetric)
            na, nb = -(-P // S), -(-P2 // S)
            npairs = na * (na + 1) // 2 if sym else na * nb
            # Enough blocks to fill the device a few times over; each adds its CW x CW
            # partial G to H once, so more blocks only cost atomics.
            nc2 = nchunks * nchunks
            nsplit = max(1, min(npairs, -(-8 * self.num_sms() // nc2)))
            H = self._alloc((PNp, PNp), np.float64, zero=True)
            self._launch(f"lkr_adjoint_{act}_{_suffix(dtype)}", dtype, nc2 * nsplit,
                         (za, sa, zb, sb, W, H, np.int64(P), np.int64(P2), np.int64(PNp),
                          np.int64(M), np.int64(CW), np.int64(S), np.int64(nchunks),
                          np.int64(npairs), np.int64(nsplit), np.int32(sym)))
            G = H[:Np, :Np]
            if sym:
                G = G + G.T
            return xp.ascontiguousarray(G, dtype=dtype)

    def nngp_map_inplace(self, K, dx, dy, activation, nthreads=0):
        dtype = self._check((K, dx, dy), ("K", "dx", "dy"), (2, 1, 1))
        act = self._activation(activation)
        P, P2 = K.shape
        if dx.shape != (P,) or dy.shape != (P2,):
            raise ValueError(f"dx, dy must have shapes ({P},), ({P2},) for K of shape "
                             f"{K.shape}, got {dx.shape}, {dy.shape}")
        if K.size == 0:
            return None
        with self.device_of(K):
            nblocks = min(-(-(P * P2) // _THREADS), 32 * self.num_sms())
            self._launch(f"lkr_nngp_{act}_{_suffix(dtype)}", dtype, nblocks,
                         (K, dx, dy, np.int64(P), np.int64(P2)))
        return None

    # -- patch passes of the CNN / LCN nets
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
        from .nets._reference import reference_features

        S, G = reference_features(Z, W[a0:a1], v[a0:a1], self._activation(activation), local,
                                  W.shape[0])
        if combined:
            P = Z.shape[0]
            return self.xp.concatenate([S.reshape(P, -1), G.reshape(P, -1)], axis=1)
        return S, G

    def activation_pair(self, H, *, activation, derivative, nthreads=0):
        """sigma(H), or (sigma(H), sigma'(H)) with derivative=True, elementwise."""
        from .nets._activations import sigma, sigma_prime

        act = self._activation(activation)
        S = H.copy() if act == "linear" else sigma(act, H)
        return (S, sigma_prime(act, H)) if derivative else S


_engine: Optional[Engine] = None


def _default_engine() -> Engine:
    global _engine
    if _engine is None:
        cp = _cupy()
        _engine = Engine(cp, _cupy_kernel, _cupy_num_sms, device_of=lambda a: a.device)
    return _engine


# -- the functions lkr.backend dispatches to (the signatures of lkr._core) --------------------
def local_kernel(PX, PY, activation, lambda0, nthreads=0):
    """The materialised tensor K (P, P2, Np, Np); see :func:`lkr.kernels.local_kernel`."""
    return _default_engine().local_kernel(PX, PY, activation, lambda0, nthreads)


def renormalized_kernel(PX, PY, Q, activation, lambda0, lambda1, nthreads=0):
    """K_R(Q) (P, P2), streamed; symmetric when PY is None. See
    :func:`lkr.kernels.renormalized_kernel`."""
    return _default_engine().renormalized_kernel(PX, PY, Q, activation, lambda0, lambda1,
                                                 nthreads)


def renormalized_kernel_diag(PX, Q, activation, lambda0, lambda1, nthreads=0):
    """K_R(Q)(x, x) (P,); see :func:`lkr.kernels.renormalized_kernel_diag`."""
    return _default_engine().renormalized_kernel_diag(PX, Q, activation, lambda0, lambda1,
                                                      nthreads)


def local_kernel_adjoint(PX, PY, W, w_symmetric, activation, lambda0, nthreads=0):
    """G(W) (Np, Np); see :func:`lkr.kernels.local_kernel_adjoint`. Accumulated in float64
    with atomics, so two runs may differ in the last bits."""
    return _default_engine().local_kernel_adjoint(PX, PY, W, w_symmetric, activation, lambda0,
                                                  nthreads)


def nngp_map_inplace(K, dx, dy, activation, nthreads=0):
    """K[m, n] <- K_sigma(dx[m], K[m, n], dy[n]) in place; see :func:`lkr.kernels.nngp`."""
    return _default_engine().nngp_map_inplace(K, dx, dy, activation, nthreads)


def patch_forward(Z, W, v, *, local, activation, nthreads=0):
    """CNN/LCN outputs f (C, P) from patches Z (P, Np, M), chained W and v (as
    ``lkr._core.patch_forward``)."""
    return _default_engine().patch_forward(Z, W, v, local=local, activation=activation)


def patch_vjp(Z, W, v, r, *, local, activation, nthreads=0):
    """Gradients (dW, dv) of sum_p r[c, p] f_c(x_p), chained (as ``lkr._core.patch_vjp``)."""
    return _default_engine().patch_vjp(Z, W, v, r, local=local, activation=activation)


def patch_jvp(Z, W, v, tW, tv, *, local, activation, nthreads=0):
    """Directional derivatives J t (C, P) along (tW, tv), chained (as
    ``lkr._core.patch_jvp``)."""
    return _default_engine().patch_jvp(Z, W, v, tW, tv, local=local, activation=activation)


def patch_value_and_grad(Z, W, v, y, *, local, activation, nthreads=0):
    """(f, dW, dv) of the squared loss, chained (as ``lkr._core.patch_value_and_grad``)."""
    return _default_engine().patch_value_and_grad(Z, W, v, y, local=local, activation=activation)


def patch_features(Z, W, v, a0, a1, *, local, activation, nthreads=0, combined=False):
    """NTK features of a block of channels (as ``lkr._core.patch_features``)."""
    return _default_engine().patch_features(Z, W, v, a0, a1, local=local, activation=activation,
                                            combined=combined)


def activation_pair(H, *, activation, derivative, nthreads=0):
    """sigma(H) (and sigma'(H)), elementwise (as ``lkr._core.activation_pair``)."""
    return _default_engine().activation_pair(H, activation=activation, derivative=derivative)


# the multi-output / compressed-kernel calls (lkr._cuda_multi): the same engine
_multi = _multi_functions(_default_engine)
patch_mean = _multi["patch_mean"]
renormalized_kernel_multi = _multi["renormalized_kernel_multi"]
local_kernel_adjoint_multi = _multi["local_kernel_adjoint_multi"]
stored_matmul = _multi["stored_matmul"]
pack_compressed = _multi["pack_compressed"]
stored_sym = _multi["stored_sym"]


# the training objectives' passes, step and update (lkr._cuda_train): the same engine
_train = _train_functions(_default_engine)
readout_forward, readout_backward = _train["readout_forward"], _train["readout_backward"]
train_step, langevin_update = _train["train_step"], _train["langevin_update"]
