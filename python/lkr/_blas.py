"""Run the solvers' small dense linear algebra on one BLAS thread.

Why: a solve makes hundreds of LAPACK calls on P x P matrices (Cholesky, potri, triangular
solves) with P in the hundreds. Multi-threaded OpenBLAS gains little there on a quiet
machine, and on a busy one its threads wait on each other: measured on this project's
2-core machine under load, a P = 500 CNN fit took 26 s with 2 BLAS threads and 1.5 s with
one. The large, memory-bound passes over the local kernel are unaffected.

Uses threadpoolctl when it is installed, otherwise the OpenBLAS thread setters found in
the loaded libraries (Linux), otherwise does nothing.
"""
from __future__ import annotations

import contextlib
import ctypes

_SETTERS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads",
            "scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_")
_cache = None


def _openblas():
    """(setter, getter) pairs of every loaded OpenBLAS (NumPy and SciPy ship their own)."""
    global _cache
    if _cache is not None:
        return _cache
    found = []
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh
                     if "openblas" in line.lower() and "/" in line}
    except OSError:
        paths = set()
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SETTERS:
            if hasattr(lib, name):
                getter = getattr(lib, name.replace("set_num_threads", "get_num_threads"), None)
                if getter is not None:
                    found.append((getattr(lib, name), getter))
                break
    _cache = found
    return found


_controller_cache = []


def _controller():
    """One threadpoolctl controller for the process (None without threadpoolctl): its
    library scan reads /proc/self/maps, ~5 ms, too slow to repeat for every call."""
    if not _controller_cache:
        # SciPy's LAPACK/BLAS is a second library beside NumPy's: load it before the scan,
        # or a limit set here would miss the solvers' Cholesky and eigsh's products
        import scipy.linalg  # noqa: F401

        try:
            from threadpoolctl import ThreadpoolController

            _controller_cache.append(ThreadpoolController())
        except ImportError:
            _controller_cache.append(None)
    return _controller_cache[0]


#: the limits of the enclosing blas_threads blocks, innermost last
_limits: list = []


def held_at_one() -> bool:
    """Whether an enclosing :func:`blas_threads` block holds BLAS at one thread."""
    return bool(_limits) and _limits[-1] == 1


@contextlib.contextmanager
def blas_threads(n: int, enabled: bool = True):
    """Limit BLAS to ``n`` threads inside the block (no-op when ``enabled`` is False)."""
    if not enabled:
        yield
        return
    _limits.append(int(n))
    try:
        with _limit(n):
            yield
    finally:
        _limits.pop()


def one_thread():
    """BLAS at one thread inside the block (free when an enclosing block already holds it
    there): for lkr's own threads calling BLAS (the training step)."""
    return contextlib.nullcontext() if held_at_one() else blas_threads(1)


def gemm_capsules():
    """(dgemm, sgemm): the Fortran-ABI GEMMs of SciPy's BLAS as PyCapsules
    (``scipy.linalg.cython_blas``, SciPy's documented export of its BLAS to compiled
    code), for lkr's compiled training step to call from its own threads."""
    from scipy.linalg import cython_blas

    capi = cython_blas.__pyx_capi__
    return capi["dgemm"], capi["sgemm"]


@contextlib.contextmanager
def _limit(n: int):
    controller = _controller()
    if controller is not None:
        with controller.limit(limits=n, user_api="blas"):
            yield
        return
    libs = _openblas()
    old = []
    for setter, getter in libs:
        try:
            old.append((setter, int(getter())))
            setter(int(n))
        except Exception:  # pragma: no cover - exotic builds
            pass
    try:
        yield
    finally:
        for setter, k in old:
            setter(k)
