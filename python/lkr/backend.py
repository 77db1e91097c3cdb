"""The one dispatch point: which implementation runs a kernel, chosen by array type.

NumPy arrays (and CPU arrays of any library that speaks DLPack: torch, JAX) go to the C++
extension ``lkr._core``; CuPy arrays (and CUDA DLPack arrays) go to the CUDA kernels in
``lkr._cuda``. Results come back in the array library of the input.

Threads: every compiled call takes ``nthreads``; 0 means all cores. The default is read
from ``LKR_NUM_THREADS`` and can be changed with :func:`set_num_threads`.
"""
from __future__ import annotations

import sys
from types import ModuleType

import numpy as np

from . import _env
from ._validate import integer as _integer

__all__ = ["array_module", "asarray", "check_floating", "check_finite", "result_dtype",
           "core", "cuda", "implementation", "get_num_threads", "set_num_threads",
           "wrap_like", "is_gpu_array", "to_numpy", "info", "gpu_available"]

# None until first needed: LKR_NUM_THREADS is parsed then (lkr._env), so that a bad value
# names itself at the first use instead of breaking `import lkr`.
_num_threads = None


def _cupy():
    """CuPy if it is already imported or importable, else None (quietly)."""
    cp = sys.modules.get("cupy")
    if cp is not None:
        return cp
    try:
        import cupy as cp  # noqa: F401
    except Exception:
        return None
    return cp


def is_gpu_array(x) -> bool:
    """True for CuPy arrays (checked without importing CuPy)."""
    return type(x).__module__.split(".")[0] == "cupy"


def array_module(*arrays) -> ModuleType:
    """``numpy`` or ``cupy``: the library the given arrays live in.

    Mixing CPU and GPU arrays is a ``TypeError``; ``None`` entries are ignored.
    """
    gpu = [is_gpu_array(a) for a in arrays if a is not None]
    if any(gpu):
        if not all(gpu):
            raise TypeError("arrays mix CPU and GPU memory; move them to one device first")
        return _cupy()
    return np


def _dlpack_device(x):
    try:
        return tuple(x.__dlpack_device__())
    except Exception:
        return None


def asarray(x, name: str = "array"):
    """Take an array from any library without a copy where possible.

    NumPy and CuPy arrays pass through; objects with ``__dlpack__`` (torch, JAX, ...) are
    imported through DLPack (CPU -> NumPy, CUDA -> CuPy); anything else goes through
    ``numpy.asarray``.
    """
    if x is None:
        return None
    if isinstance(x, np.ndarray) or is_gpu_array(x):
        return x
    if hasattr(x, "__dlpack__"):
        dev = _dlpack_device(x)
        if dev is not None and dev[0] in (2, 13):  # kDLCUDA, kDLCUDAManaged
            cp = _cupy()
            if cp is None:
                raise TypeError(f"{name} is a CUDA array but CuPy is not installed; "
                                "pip install lkr[gpu]")
            return cp.from_dlpack(x)
        try:
            return np.from_dlpack(x)
        except (TypeError, BufferError, RuntimeError):
            pass  # e.g. a torch tensor that requires grad: fall back to a copy
        if hasattr(x, "detach"):
            return np.asarray(x.detach().cpu())
    try:
        return np.asarray(x)
    except Exception as exc:  # pragma: no cover - depends on the foreign type
        raise TypeError(f"{name} of type {type(x).__name__} is not an array") from exc


def check_floating(x, name: str = "array"):
    """Raise TypeError unless x holds real numbers (ints and bools are accepted)."""
    kind = x.dtype.kind
    if kind not in "fiub":
        raise TypeError(f"{name} must be real-valued, got dtype {x.dtype}")


def result_dtype(*arrays):
    """float32 when every floating input is float32, float64 otherwise (NumPy's rule for
    kernels: integers and mixtures promote to float64)."""
    dts = [a.dtype for a in arrays if a is not None]
    if dts and all(d == np.float32 for d in dts):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def check_finite(x, name: str = "array"):
    """Raise ValueError if x has NaN or inf, with the count and the first position."""
    xp = array_module(x)
    bad = ~xp.isfinite(x)
    if bool(bad.any()):
        n = int(bad.sum())
        first = tuple(int(i) for i in xp.argwhere(bad)[0])
        raise ValueError(f"{name} has {n} non-finite value(s) (NaN or inf), first at index {first}")


def to_numpy(x):
    """A NumPy view or copy of any supported array."""
    if is_gpu_array(x):
        return x.get()
    return np.asarray(asarray(x))


def wrap_like(result, like):
    """Return ``result`` in the array library of ``like`` (torch in -> torch out, JAX in ->
    JAX out); NumPy and CuPy results are returned as they are for NumPy/CuPy inputs."""
    if like is None or isinstance(like, np.ndarray) or is_gpu_array(like):
        return result
    root = type(like).__module__.split(".")[0]
    if root == "torch":
        import torch

        return torch.from_dlpack(result)
    if root in ("jax", "jaxlib"):
        import jax.numpy as jnp

        return jnp.from_dlpack(result)
    return result


def core() -> ModuleType:
    """The C++ extension, with an actionable error if it was not built."""
    try:
        from . import _core
    except ImportError as exc:  # pragma: no cover - only in a broken install
        raise ImportError("lkr's compiled extension lkr._core is missing; reinstall with "
                          "`pip install .` from the source tree (needs a C++17 compiler)") from exc
    return _core


def cuda() -> ModuleType:
    """The CUDA backend, with an actionable error when CuPy or a device is missing."""
    if _cupy() is None:
        raise ImportError("CuPy is not installed; pip install lkr[gpu]")
    from . import _cuda

    return _cuda


def gpu_available():
    """``(True, "")`` when CuPy imports and sees a CUDA device, else ``(False, reason)``.

    Never raises and never compiles anything; the reason is a sentence for a user.
    """
    cp = _cupy()
    if cp is None:
        return False, "CuPy is not installed; pip install lkr[gpu]"
    try:
        n = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"no usable CUDA device ({exc.__class__.__name__}: {exc})"
    if n < 1:
        return False, "no CUDA device"
    return True, ""


def implementation(xp) -> ModuleType:
    """The module whose functions run the kernels for arrays of library ``xp``."""
    _env.check_all(cpu=xp is np)  # a bad LKR_* variable fails here, naming itself
    return core() if xp is np else cuda()


def get_num_threads() -> int:
    """Threads the compiled kernels use (0 = all cores); initially ``LKR_NUM_THREADS``."""
    global _num_threads
    if _num_threads is None:
        _num_threads = _env.num_threads()
    return _num_threads


def set_num_threads(n: int) -> None:
    """Set the threads the compiled kernels use; 0 means all cores."""
    global _num_threads
    _num_threads = _integer(n, "nthreads", 0)


def resolve_threads(nthreads) -> int:
    if nthreads is None:
        return get_num_threads()
    return _integer(nthreads, "nthreads", 0)


def _blas_name() -> str:
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:
        return "unknown"


def _threads_for_info(c):
    try:
        return get_num_threads() or c.max_threads()
    except ValueError:
        return f"{c.max_threads()} (LKR_NUM_THREADS is invalid, see below)"


def info() -> dict:
    """Versions, backend, threads and BLAS, as ``lkr info`` prints them."""
    from . import __version__

    c = core()
    out = {
        "lkr": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "cpu_backend": "C++ (lkr._core)",
        "openmp": bool(c.openmp),
        "threads": _threads_for_info(c),
        "blas": _blas_name(),
    }
    try:
        import scipy

        out["scipy"] = scipy.__version__
    except ImportError:  # pragma: no cover
        pass
    ok, why = gpu_available()
    cp = _cupy()
    if cp is None:
        out["gpu"] = "CuPy not installed (pip install lkr[gpu])"
    else:
        out["cupy"] = cp.__version__
        if ok:
            try:
                d = cuda().device_info()
                out["gpu"] = d.pop("device")
                out.update({f"gpu_{k}": v for k, v in d.items()})
            except Exception as exc:  # a broken driver must not break `lkr info`
                out["gpu"] = f"CUDA device present, but it could not be queried ({exc})"
        else:
            out["gpu"] = why
    # Each LKR_* variable with its value and whether it is valid (`lkr info` never fails).
    out.update(_env.describe())
    # Which implementation a call takes, by the array type of its inputs.
    out["dispatch_numpy"] = "C++ lkr._core (OpenMP)"
    out["dispatch_cupy"] = ("CUDA lkr._cuda (CuPy RawModule, NVRTC)" if ok
                            else f"unavailable: {why}")
    return out
