"""Settings the tests share: per-dtype tolerances, the GPU skip (or failure, with
``LKR_REQUIRE_GPU=1``), and arrays back to NumPy."""
from __future__ import annotations

import os

import numpy as np
import pytest

from lkr.backend import gpu_available

#: relative tolerances for comparisons against the float64 NumPy references
RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}

# (read by the tests, not by lkr: it only turns GPU skips into failures)
REQUIRE_GPU = os.environ.get("LKR_REQUIRE_GPU", "") not in ("", "0")


def skip_or_fail_without_gpu():
    ok, why = gpu_available()
    if not ok:
        if REQUIRE_GPU:
            pytest.fail(f"LKR_REQUIRE_GPU=1 but {why}")
        pytest.skip(why)


def to_numpy(a):
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)
