"""The host emulator of lkr's CUDA kernels, as the fixtures ``emulator`` and ``poison``.

The kernels of ``csrc/cuda/*.cu`` are compiled as C++ with a small CUDA emulation layer
(``cuda_host_emulator.hpp``: the threads of a block as fibers switched at __syncthreads,
__shared__ memory per block) and driven by the very launch planning of ``lkr._cuda``
through its ``Engine`` with NumPy arrays. Tests take the fixtures by importing them:
``from cuda_emulator import emulator, poison  # noqa: F401``.
"""
from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lkr import _cuda

# ---------------------------------------------------------------------------------------------
# Host emulator of the CUDA kernels
# ---------------------------------------------------------------------------------------------
# The emulation layer, tests/cuda_host_emulator.hpp, is a plain header: the glue file below
# includes it, then the .cu sources, then exports one C entry point per kernel.
EMULATOR_HEADER = Path(__file__).with_name("cuda_host_emulator.hpp")


class EmulatedKernel:
    """A kernel of the emulator .so with CuPy's RawKernel calling convention."""

    _CTYPES = {np.dtype(np.int32): ctypes.c_int32, np.dtype(np.int64): ctypes.c_int64,
               np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double}

    def __init__(self, fn, name):
        self.fn, self.name = fn, name

    def __call__(self, grid, block, args):
        assert len(grid) == 2 and len(block) == 1
        holders = []
        ptrs = (ctypes.c_void_p * len(args))()
        for i, a in enumerate(args):
            if isinstance(a, np.ndarray):
                assert a.flags.c_contiguous, (self.name, i)
                h = ctypes.c_void_p(a.ctypes.data)
            elif isinstance(a, np.generic) and a.dtype in self._CTYPES:
                h = self._CTYPES[a.dtype](a.item())
            else:  # CuPy would reject a Python int too: the kernel's width must be explicit
                raise TypeError(f"{self.name}: argument {i} is {type(a).__name__}, "
                                "expected an array or a sized NumPy scalar")
            holders.append(h)
            ptrs[i] = ctypes.cast(ctypes.pointer(h), ctypes.c_void_p)
        self.fn(ctypes.c_uint(grid[0]), ctypes.c_uint(grid[1]), ctypes.c_uint(block[0]), ptrs)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """An lkr._cuda Engine over NumPy whose kernels run in the host emulator."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler for the CUDA host emulator")
    d = _cuda.source_dir()
    tmp = tmp_path_factory.mktemp("cuda_emu")
    names = []
    for cu in _cuda.SOURCES:
        pre = subprocess.run([cxx, "-E", "-P", "-x", "c++", "-I", str(d), str(d / cu)],
                             capture_output=True, text=True)
        assert pre.returncode == 0, pre.stderr
        names += re.findall(r'extern "C" __global__ void.*?\b(lkr_\w+)\s*\(', pre.stdout, re.S)
    assert names, "no kernels found"
    glue = tmp / "emu.cpp"
    glue.write_text(f'#include "{EMULATOR_HEADER.as_posix()}"\n'
                    + "".join(f'#include "{cu}"\n' for cu in _cuda.SOURCES)
                    + "".join(f"LKR_EMU_EXPORT({n})\n" for n in names))
    lib = tmp / "emu.so"
    res = subprocess.run([cxx, "-std=c++17", "-O1", "-shared", "-fPIC",
                          "-Wno-unused-parameter", "-I", str(d), "-o", str(lib), str(glue)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        if "ucontext.h" in res.stderr and "No such file" in res.stderr:
            pytest.skip("no <ucontext.h> for the emulator's fibers")
        pytest.fail("the CUDA sources do not compile as host C++ for the emulator:\n"
                    + res.stderr[-4000:])
    so = ctypes.CDLL(str(lib))
    kernels = {}
    for n in names:
        fn = getattr(so, f"emu_{n}")
        fn.restype = None
        kernels[n] = EmulatedKernel(fn, n)

    def get_kernel(name, dtype):
        suf = _cuda._suffix(dtype)
        assert name.endswith("_" + suf), (name, dtype)
        return kernels[name]

    # Two "SMs": few blocks, so that the split over blocks is exercised at small sizes.
    return _cuda.Engine(np, get_kernel, lambda: 2)


@pytest.fixture
def poison(monkeypatch):
    monkeypatch.setattr(_cuda.kernels, "POISON", True)


