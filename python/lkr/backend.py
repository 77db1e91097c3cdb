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
from ._arrays import (  # noqa: F401 - the array helpers, re-exported (lkr.backend.asarray, ...)
    _cupy,
    array_module,
    asarray,
    check_finite,
    check_floating,
    is_gpu_array,
    result_dtype,
    to_numpy,
    wrap_like,
)
from ._validate import integer as _integer

__all__ = ["array_module", "asarray", "check_floating", "check_finite", "result_dtype",
           "core", "cuda", "implementation", "get_num_threads", "set_num_threads",
           "wrap_like", "is_gpu_array", "to_numpy", "info", "gpu_available"]

# None until first needed: LKR_NUM_THREADS is parsed then (lkr._env), so that a bad value
# names itself at the first use instead of breaking `import lkr`.
_num_threads = None


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
