"""The LKR_* environment variables, parsed in one place (issue 14, item 5).

``import lkr`` never fails on them: each is read when first needed, and a bad value then
raises a one-line ValueError naming the variable, its value and what is accepted.
``lkr info`` lists every variable with its value and whether it is valid (:func:`describe`).

=================  ==========================================================================
LKR_NUM_THREADS    threads of the compiled kernels: a non-negative integer, 0 = all cores
LKR_MAX_BYTES      memory budget of ``lkr.local_kernel`` (default 2 GiB, :func:`max_bytes`)
                   and of the CNN theories' stored kernel (default half of the available
                   memory, :func:`default_budget`): a positive size in bytes, as an
                   integer (``2147483648``), in exponent form (``2e9``) or with a unit:
                   ``kB MB GB TB`` (powers of 1000), ``KiB MiB GiB TiB`` or bare
                   ``K M G T`` (powers of 1024); case-insensitive, e.g. ``2GB``, ``512M``
LKR_ISA            cap on the CPU instruction set of the compiled kernels: ``base``, ``v3``
                   (AVX2) or ``v4`` (AVX-512, i.e. no cap); read by the C++ core
LKR_CUDA_SOURCES   a folder holding the CUDA sources to compile instead of the installed ones
=================  ==========================================================================

An empty value counts as unset.
"""
from __future__ import annotations

import math
import os
import re

__all__ = ["VARIABLES", "num_threads", "max_bytes", "default_budget", "isa", "cuda_sources",
           "check_all", "describe", "parse_bytes"]

DEFAULT_MAX_BYTES = 2 * 1024**3

_UNITS = {"": 1, "b": 1,
          "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
          "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_ISAS = ("base", "v3", "v4")

_ACCEPTED = {
    "LKR_NUM_THREADS": "a non-negative integer (0 = all cores)",
    "LKR_MAX_BYTES": ("a positive size in bytes: an integer, 2e9, or with a unit kB MB GB TB "
                      "(powers of 1000) or K M G T, KiB MiB GiB TiB (powers of 1024), e.g. 2GB"),
    "LKR_ISA": "one of " + ", ".join(_ISAS),
    "LKR_CUDA_SOURCES": "an existing folder",
}
VARIABLES = tuple(_ACCEPTED)


def _raw(name):
    v = os.environ.get(name)
    return None if v is None or v.strip() == "" else v


def _bad(name, value):
    return ValueError(f"environment variable {name}={value!r} is invalid; expected "
                      f"{_ACCEPTED[name]}")


def parse_bytes(text: str) -> int:
    """A byte count from ``2147483648``, ``2e9``, ``2GB`` (10^9), ``2GiB``/``2G`` (2^30).

    Raises ValueError (without the variable's name) when the text is not a positive size.
    """
    m = _SIZE.match(str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r}")
    value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"not a positive size: {text!r}")
    return int(value)


def num_threads() -> int:
    """LKR_NUM_THREADS (0 when unset)."""
    v = _raw("LKR_NUM_THREADS")
    if v is None:
        return 0
    try:
        n = int(v.strip())
    except ValueError:
        raise _bad("LKR_NUM_THREADS", v) from None
    if n < 0:
        raise _bad("LKR_NUM_THREADS", v)
    return n


def max_bytes() -> int:
    """LKR_MAX_BYTES (2 GiB when unset)."""
    v = _raw("LKR_MAX_BYTES")
    if v is None:
        return DEFAULT_MAX_BYTES
    try:
        return parse_bytes(v)
    except ValueError:
        raise _bad("LKR_MAX_BYTES", v) from None


def default_budget() -> int:
    """Bytes for a cache that may take much of the memory (the CNN theories' stored kernel):
    LKR_MAX_BYTES when set (parsed as :func:`max_bytes`), else half of the memory available
    now (MemAvailable of /proc/meminfo), else 2 GiB where that file does not exist."""
    if _raw("LKR_MAX_BYTES") is not None:
        return max_bytes()
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    return DEFAULT_MAX_BYTES


def isa():
    """LKR_ISA (None when unset). The C++ core reads the variable itself; this check makes
    a value it would ignore an error instead."""
    v = _raw("LKR_ISA")
    if v is None:
        return None
    if v not in _ISAS:
        raise _bad("LKR_ISA", v)
    return v


def cuda_sources():
    """LKR_CUDA_SOURCES (None when unset)."""
    v = _raw("LKR_CUDA_SOURCES")
    if v is not None and not os.path.isdir(v):
        raise _bad("LKR_CUDA_SOURCES", v)
    return v


_READERS = {"LKR_NUM_THREADS": num_threads, "LKR_MAX_BYTES": max_bytes, "LKR_ISA": isa,
            "LKR_CUDA_SOURCES": cuda_sources}


def check_all(cpu: bool = True) -> None:
    """Raise the first bad variable's ValueError (LKR_CUDA_SOURCES only when ``cpu`` is
    False: it matters to the CUDA backend alone)."""
    for name, read in _READERS.items():
        if cpu and name == "LKR_CUDA_SOURCES":
            continue
        read()


def describe() -> dict:
    """``{name: "value (ok)" | "value (INVALID: expected ...)" | "unset"}`` for ``lkr info``;
    never raises."""
    out = {}
    for name, read in _READERS.items():
        raw = os.environ.get(name)
        if raw is None or raw.strip() == "":
            out[name] = "unset"
            continue
        try:
            read()
            out[name] = f"{raw!r} (ok)"
        except ValueError:
            out[name] = f"{raw!r} (INVALID: expected {_ACCEPTED[name]})"
    return out
