"""Install hints for the optional extras, in one wording that works from a clone.

lkr is installed from its source folder (it is not on PyPI), so asking pip for lkr with an
extra by name finds nothing: a hint names the package itself, which pip finds anywhere, and
the extra as ``pip install ".[plot]"`` run in lkr's source folder.
"""
from __future__ import annotations

__all__ = ["EXTRAS", "install_hint"]

#: extra -> what ``pip install`` needs for it (pyproject.toml's [project.optional-dependencies])
EXTRAS = {
    "plot": "matplotlib",
    "data": "scikit-learn",
    "distributed": '"dask[distributed]"',
    # CuPy's wheels are per CUDA version (docs/gpu.md); the extra's `cupy` builds from source
    "gpu": "cupy-cuda12x",
}


def install_hint(extra: str) -> str:
    """``'pip install matplotlib (or pip install ".[plot]" in lkr's source folder)'``."""
    return f'pip install {EXTRAS[extra]} (or pip install ".[{extra}]" in lkr\'s source folder)'
