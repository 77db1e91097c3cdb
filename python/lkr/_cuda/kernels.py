r"""CUDA host side of the one-layer local kernel (``csrc/cuda/local_kernel.cu``): launch
planning, kernel loading through CuPy, and :class:`KernelEngine`, the base of
:class:`lkr._cuda.Engine` with the kernel functions of ``lkr._core`` for CuPy arrays
(``local_kernel``, ``renormalized_kernel``, ``renormalized_kernel_diag``,
``local_kernel_adjoint``, ``nngp_map_inplace``; see :mod:`lkr._cuda` for the list and the
formulas).

The planning is array-library agnostic (an engine over ``xp`` and a kernel loader), so that
the tests drive it with NumPy arrays and a host emulator of the kernels. Importing this
module needs neither CuPy nor a device (CuPy is imported at the first call).
"""
from __future__ import annotations

import threading
from contextlib import nullcontext
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from .sources import SOURCES, load_source, source_dir, source_of

__all__ = ["KernelEngine", "compile_options", "device_info", "POISON", "SOURCES", "source_dir",
           "source_of", "load_source"]

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


class KernelEngine:
    """The launch-level implementation over an array module ``xp`` and a kernel loader
    (the base of :class:`lkr._cuda.Engine`: helpers and the one-layer kernels).

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
