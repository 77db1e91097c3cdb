"""LKR_* environment variables (issue 14, item 5): ``import lkr`` and ``lkr info`` never fail
on them; the first use raises a one-line ValueError naming the variable, its value and what
is accepted; ``lkr info`` says which are invalid."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lkr
from lkr import _env, backend

PYTHON_DIR = str(Path(lkr.__file__).resolve().parent.parent)

BAD = [
    ("LKR_NUM_THREADS", "abc"),
    ("LKR_NUM_THREADS", "-1"),
    ("LKR_NUM_THREADS", "2.5"),
    ("LKR_MAX_BYTES", "lots"),
    ("LKR_MAX_BYTES", "-5GB"),
    ("LKR_MAX_BYTES", "0"),
    ("LKR_MAX_BYTES", "2XB"),
    ("LKR_ISA", "avx9000"),
    ("LKR_CUDA_SOURCES", "/nonexistent/lkr-cuda"),
]


def _run(code_or_args, env_extra, module=False):
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR, **env_extra)
    for name in _env.VARIABLES:
        if name not in env_extra:
            env.pop(name, None)
    args = [sys.executable] + (["-m", "lkr", *code_or_args] if module else ["-c", code_or_args])
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name, value", BAD)
def test_bad_values_through_lkr_info(name, value):
    """`lkr info` runs (exit 0) and names the bad variable as INVALID with what it accepts;
    a kernel call in a fresh process raises one line naming variable and value."""
    r = _run(["info"], {name: value}, module=True)
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith(name))
    assert repr(value) in line and "INVALID: expected" in line
    if name == "LKR_CUDA_SOURCES":
        return  # used by the CUDA backend only
    code = ("import numpy as np, lkr\n"
            "try:\n    lkr.nngp(np.ones((2, 3)))\n"
            "except ValueError as e:\n    print('ERR', e)\n")
    r = _run(code, {name: value})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"ERR environment variable {name}={value!r} is invalid; expected ")
    assert len(r.stdout.strip().splitlines()) == 1


def test_good_values_in_lkr_info():
    r = _run(["info", "--json"], {"LKR_NUM_THREADS": "1", "LKR_MAX_BYTES": "2GiB",
                                  "LKR_ISA": "base"}, module=True)
    assert r.returncode == 0, r.stderr
    import json

    data = json.loads(r.stdout)
    assert data["threads"] == 1
    assert data["LKR_MAX_BYTES"] == "'2GiB' (ok)"
    assert data["LKR_ISA"] == "'base' (ok)"
    assert data["LKR_CUDA_SOURCES"] == "unset"


@pytest.mark.parametrize("name, value", BAD)
def test_bad_values_direct(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    reader = {"LKR_NUM_THREADS": _env.num_threads, "LKR_MAX_BYTES": _env.max_bytes,
              "LKR_ISA": _env.isa, "LKR_CUDA_SOURCES": _env.cuda_sources}[name]
    with pytest.raises(ValueError, match=rf"^environment variable {name}=.* is invalid; expected"):
        reader()
    assert "INVALID" in _env.describe()[name]
    if name != "LKR_CUDA_SOURCES":
        with pytest.raises(ValueError, match=name):
            lkr.local_kernel(np.ones((2, 4)), geometry=lkr.PatchGeometry((4,), 2, 2))


def test_num_threads_is_read_at_first_use(monkeypatch):
    monkeypatch.setattr(backend, "_num_threads", None)
    monkeypatch.setenv("LKR_NUM_THREADS", "-1")
    with pytest.raises(ValueError, match="LKR_NUM_THREADS='-1'.*non-negative integer"):
        lkr.get_num_threads()
    monkeypatch.setenv("LKR_NUM_THREADS", " 3 ")
    assert lkr.get_num_threads() == 3
    lkr.set_num_threads(0)
    assert lkr.get_num_threads() == 0


@pytest.mark.parametrize("text, want", [
    ("2147483648", 2 * 1024**3), ("2e9", 2 * 10**9), ("2GB", 2 * 10**9), ("2gb", 2 * 10**9),
    ("2GiB", 2 * 1024**3), ("2G", 2 * 1024**3), ("512M", 512 * 1024**2),
    ("512 MiB", 512 * 1024**2), ("1.5kB", 1500), ("100B", 100), ("3TB", 3 * 10**12),
])
def test_parse_bytes(text, want, monkeypatch):
    assert _env.parse_bytes(text) == want
    monkeypatch.setenv("LKR_MAX_BYTES", text)
    assert _env.max_bytes() == want


def test_max_bytes_reaches_local_kernel(monkeypatch):
    G = lkr.PatchGeometry((8,), 2, 2)
    monkeypatch.setenv("LKR_MAX_BYTES", "1kB")  # (4, 4, 4, 4) float64 = 2048 bytes
    with pytest.raises(MemoryError, match="max_bytes=1e-06 GB"):
        lkr.local_kernel(np.ones((4, 8)), geometry=G)
    monkeypatch.setenv("LKR_MAX_BYTES", "4KiB")
    assert lkr.local_kernel(np.ones((4, 8)), geometry=G).shape == (4, 4, 4, 4)


def test_empty_values_count_as_unset(monkeypatch):
    for name in _env.VARIABLES:
        monkeypatch.setenv(name, "")
    assert set(_env.describe().values()) == {"unset"}
    _env.check_all(cpu=False)
    assert _env.max_bytes() == 2 * 1024**3


def test_default_budget_takes_the_documented_units(monkeypatch):
    # the CNN theories' stored-kernel budget parses LKR_MAX_BYTES as local_kernel's does
    from lkr.theory._local import default_budget

    monkeypatch.setenv("LKR_MAX_BYTES", "2GB")
    assert _env.default_budget() == default_budget() == 2 * 10**9
    monkeypatch.setenv("LKR_MAX_BYTES", "512 MiB")
    assert _env.default_budget() == 512 * 1024**2
    monkeypatch.setenv("LKR_MAX_BYTES", "lots")
    with pytest.raises(ValueError, match="LKR_MAX_BYTES='lots' is invalid"):
        _env.default_budget()
    monkeypatch.delenv("LKR_MAX_BYTES")
    assert _env.default_budget() > 0
