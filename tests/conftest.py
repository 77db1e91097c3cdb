"""Shared test setup: hypothesis profiles (as NumPy's), the `xp` fixture for one test body
on NumPy and CuPy, and per-dtype tolerances."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# The shared helpers (reference.py, kernel_strategies.py, ...) live in tests/ beside this file;
# the test modules in the subfolders import them by name. (Until the helpers that sit in
# test modules have homes of their own, the subfolders are on the path too.)
_TESTS = Path(__file__).resolve().parent
for _d in [_TESTS] + sorted(p for p in _TESTS.iterdir() if p.is_dir() and p.name != "__pycache__"):
    if str(_d) not in sys.path:
        sys.path.insert(0, str(_d))

# Derandomised in CI so a failure reproduces; no deadline (the first call compiles/warms).
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=30,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=30,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=500,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

REQUIRE_GPU = os.environ.get("LKR_REQUIRE_GPU", "") not in ("", "0")

#: relative tolerances for comparisons against the float64 NumPy references
RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}


def gpu_available():
    """(available, reason)."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install
        return False, f"CuPy is not installed ({exc.__class__.__name__})"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"no CUDA device ({exc.__class__.__name__}: {exc})"
    if n < 1:
        return False, "no CUDA device"
    return True, ""


def skip_or_fail_without_gpu():
    ok, why = gpu_available()
    if not ok:
        if REQUIRE_GPU:
            pytest.fail(f"LKR_REQUIRE_GPU=1 but {why}")
        pytest.skip(why)


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module a test body runs on: NumPy always, CuPy when a GPU is present."""
    if request.param == "numpy":
        return np
    skip_or_fail_without_gpu()
    import cupy

    return cupy


def to_numpy(a):
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)
