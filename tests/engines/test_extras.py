"""Install hints that work from a clone (issue 22, item 6): lkr is not on PyPI, so no
message or page may tell users to ask pip for lkr with an extra by name; every hint names
the package (found anywhere) or ``".[extra]"`` (in the source folder), and matches
pyproject.toml's extras."""
import re
import sys
from pathlib import Path

import pytest

from lkr import _extras

ROOT = Path(__file__).resolve().parents[2]
_BY_NAME = re.compile(r"\blkr\\?\[")


def _files():
    for pattern in ("python/lkr/**/*.py", "bench/*.py", "examples/*.py", "docs/*.md",
                    "README.md", "tests/**/*.py"):
        yield from ROOT.glob(pattern)


def test_no_hint_asks_pip_for_lkr_by_name():
    files = list(_files())
    assert len(files) > 50, "run from a clone: the sources are not here"
    bad = [f"{f.relative_to(ROOT)}:{i}" for f in files
           for i, line in enumerate(f.read_text(errors="replace").splitlines(), 1)
           if _BY_NAME.search(line)]
    assert not bad, bad


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python >= 3.11")
def test_hints_match_the_extras_of_pyproject():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for extra, package in _extras.EXTRAS.items():
        assert extra in extras
        hint = _extras.install_hint(extra)
        assert f'pip install ".[{extra}]"' in hint
        wanted = re.split(r"[<>=\[]", extras[extra][0])[0]
        assert wanted in package, (extra, package, extras[extra])


def test_missing_extras_give_the_hint(monkeypatch):
    from lkr import backend
    from lkr.experiments import report

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install matplotlib \(or pip install "\.\[plot\]"'):
        report.plot_results({"settings": {}}, "unused.png")
    monkeypatch.setitem(sys.modules, "cupy", None)
    ok, why = backend.gpu_available()
    assert not ok and 'pip install ".[gpu]"' in why and "cupy-cuda12x" in why
