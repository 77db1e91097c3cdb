"""The README's Python blocks run as written (issue 22, item 6), in order and in one
namespace as a reader pastes them; a block that needs an extra that is not installed is
skipped, naming it."""
import importlib.util
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
#: the extras a block may need: module -> what a skip says
_EXTRAS = {"torch": "PyTorch", "cupy": "CuPy (the gpu extra)", "matplotlib": "matplotlib",
           "sklearn": "scikit-learn (the data extra)", "dask": "Dask (the distributed extra)"}


def _blocks():
    if not README.exists():
        pytest.skip("README.md is not beside the tests (an installed copy of the suite)")
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def _missing(code):
    return [name for mod, name in _EXTRAS.items()
            if re.search(rf"\b{mod}\b", code) and importlib.util.find_spec(mod) is None]


def test_readme_has_python_blocks():
    assert len(_blocks()) >= 5


@pytest.mark.slow
def test_readme_python_blocks_run_as_written(monkeypatch):
    monkeypatch.setenv("LKR_NUM_THREADS", "1")
    ns = {"__name__": "readme"}
    skipped = []
    for i, code in enumerate(_blocks()):
        missing = _missing(code)
        if missing:
            skipped.append((i, missing))
            continue
        exec(compile(code, f"README.md python block {i + 1}", "exec"), ns)
    assert "sol" in ns and "res" in ns   # the theory and the training blocks ran
    if skipped:
        pytest.skip(f"blocks that need absent extras: {skipped}")
