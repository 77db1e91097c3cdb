"""Array-library helpers below the engines: which library an array lives in, intake from
any library (DLPack), dtype and finiteness checks, and results in the caller's library.

Nothing here runs a compiled kernel (that is :mod:`lkr.backend`), so that the formulas and
the patch geometry use them from the base layer. :mod:`lkr.backend` re-exports them all.
"""
from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["Array", "ArrayLike", "array_module", "asarray", "check_floating", "check_finite", "result_dtype",
           "wrap_like", "is_gpu_array", "to_numpy"]

#: What lkr's array functions return: an array of the inputs' own library (a NumPy
#: ndarray, a CuPy ndarray; torch or JAX for their inputs). Inputs are ``ArrayLike`` or any
#: object with ``__dlpack__``.
Array = Any


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
