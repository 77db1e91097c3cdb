"""Shared test setup: the helpers' folder on the import path, hypothesis profiles (as
NumPy's), and the `xp` fixture for one test body on NumPy and CuPy.

The tests mirror the package (tests/kernels, tests/theory, ...; docs/development.md) and are
imported by pytest's ``importlib`` mode, so that two test files may share a name. The shared
helpers live here in tests/ (``reference.py``, ``kernel_strategies.py``, ``net_factories.py``,
``deep_reference.py``, ``theory*_reference.py``, ``data_files.py``, ``cuda_emulator.py``,
``testing.py``) and are imported by name (``from reference import ref_map``); test modules
never import each other.
"""
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

_HELPERS = str(Path(__file__).resolve().parent)
if _HELPERS not in sys.path:
    sys.path.insert(0, _HELPERS)

from cuda_emulator import emulator, poison  # noqa: E402,F401 - fixtures for every test

# RTOL and to_numpy too, for tests that still say `from conftest import ...` (new ones: from
# testing import ...)
from testing import RTOL, skip_or_fail_without_gpu, to_numpy  # noqa: E402,F401

# Derandomised in CI so a failure reproduces; no deadline (the first call compiles/warms).
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=30,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=30,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=500,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module a test body runs on: NumPy always, CuPy when a GPU is present."""
    if request.param == "numpy":
        return np
    skip_or_fail_without_gpu()
    import cupy

    return cupy
