"""Where lkr's CUDA sources are and how they are read (for :mod:`lkr._cuda` and the tests)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from .. import _env

__all__ = ["SOURCES", "source_dir", "load_source", "source_of"]

#: the CUDA translation units lkr compiles (each one RawModule per dtype and device)
SOURCES = ("local_kernel.cu", "nets.cu", "deep_kernel.cu")


def source_dir() -> Path:
    """The folder holding the ``.cu``/``.cuh`` sources.

    In a source checkout (this file in ``<repo>/python/lkr/_cuda``, as in an editable install),
    ``<repo>/csrc/cuda``: an editable install also has a copy in the package data, but that
    copy is only refreshed by a rebuild, and an edited kernel must not silently run stale.
    Otherwise the installed package data ``lkr/cuda/``. The environment variable
    ``LKR_CUDA_SOURCES`` names another folder (to try a modified kernel without a rebuild).
    """
    override = _env.cuda_sources()  # an existing folder, or None
    if override:
        d = Path(override)
        missing = [name for name in SOURCES if not (d / name).is_file()]
        if missing:
            raise FileNotFoundError(f"LKR_CUDA_SOURCES={override} lacks {missing}")
        return d
    package = Path(__file__).resolve().parents[1]  # <repo>/python/lkr, or site-packages/lkr
    candidates = [package.parents[1] / "csrc" / "cuda", package / "cuda"]
    try:  # the package data, also where lkr is imported through a custom loader
        from importlib.resources import files

        candidates.append(Path(str(files("lkr") / "cuda")))
    except Exception:  # pragma: no cover - very old importlib
        pass
    for d in candidates:
        if all((d / name).is_file() for name in SOURCES):
            return d
    raise FileNotFoundError(
        "lkr's CUDA sources (" + ", ".join(SOURCES) + ") were not found in "
        + " or ".join(str(d) for d in candidates) + "; reinstall lkr (`pip install .`)")


_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[ \t]*$', re.M)


def load_source(name: str, directory: Optional[Path] = None) -> str:
    """The text of ``name`` with its local ``#include "..."`` files inlined.

    Inlining (rather than ``-I``) makes the source self-contained, so CuPy's disk cache,
    keyed by the source text, sees a change in a header too. Each header is inlined once
    (the headers use ``#pragma once``).
    """
    directory = source_dir() if directory is None else Path(directory)
    seen = set()

    def expand(fname: str) -> str:
        path = directory / fname
        if not path.is_file():
            raise FileNotFoundError(f"CUDA source {fname!r} not found in {directory}")
        text = path.read_text()

        def repl(m):
            inc = m.group(1)
            if inc in seen:
                return f"// (already included: {inc})"
            seen.add(inc)
            return f"// ---- begin {inc}\n{expand(inc)}\n// ---- end {inc}"

        return _INCLUDE.sub(repl, text)

    seen.add(name)
    return expand(name)


def source_of(name: str) -> str:
    """The translation unit that defines kernel ``name`` (by its prefix)."""
    if name.startswith("lkr_deep_"):
        return "deep_kernel.cu"
    return "nets.cu" if name.startswith("lkr_net_") else "local_kernel.cu"
