"""The package's shape: the layers of docs/development.md with no import cycle among lkr's
modules, counting every import (at module level, inside functions, and the dynamic
``import_module`` calls of the registries); small modules; tests that mirror the package."""
import ast
import re
from pathlib import Path

import pytest

import lkr

ROOT = Path(lkr.__file__).parent
TESTS = Path(__file__).resolve().parent

#: The layers, lowest first (docs/development.md, "Layers"): a module imports only from its
#: own layer or below. A key names a module or a package (and then all its modules, unless
#: a longer key names one of them).
LAYERS = {
    # 0 base: argument checks, environment, files, arrays, formulas, patch geometry
    "lkr._env": 0, "lkr._validate": 0, "lkr._arrays": 0, "lkr._io": 0, "lkr._json": 0,
    "lkr._progress": 0, "lkr._interrupt": 0, "lkr._warnings": 0, "lkr._version": 0,
    "lkr._blas": 0, "lkr._scale": 0, "lkr.activations": 0, "lkr.geometry": 0,
    "lkr.deep_geometry": 0, "lkr._patch_reference": 0,
    # 1 engines: the one dispatch point and the CUDA host side (they know nothing of nets)
    "lkr.backend": 1, "lkr._cuda": 1,
    # 2 kernels and the array algebra on them
    "lkr.kernels": 2, "lkr._kernel_args": 2, "lkr._deep_kernels": 2, "lkr.kernels_multi": 2,
    "lkr.arccos": 2, "lkr.spectrum": 2, "lkr._gram": 2, "lkr._linalg": 2,
    "lkr.distributed": 2,
    # 3 models: theories, networks and their Jacobians, data
    "lkr.theory": 3, "lkr.nets": 3, "lkr.ntk": 3, "lkr.data": 3, "lkr._task": 3,
    "lkr._labels": 3, "lkr._task_options": 3, "lkr.datasets_sklearn": 3,
    "lkr._datafiles": 3, "lkr.data_groups": 3,
    # 4 training
    "lkr.train": 4,
    # 5 experiments (one module per subcommand), 6 the command line
    "lkr.experiments": 5,
    "lkr.cli": 6, "lkr.__main__": 6,
    # the package itself: the public names, re-exported (nothing below imports it)
    "lkr": 7,
}

_IMPORTERS = {"import_module", "_import_module"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules():
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _resolve(module: str, is_package: bool, level: int, target) -> str:
    """The absolute name of ``from <level dots><target> import ...`` inside ``module``."""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[:len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _dynamic_pattern(call: ast.Call, module: str, is_package: bool):
    """A regex of the module names that ``import_module(<str or f-string>[, __package__])``
    may import, or None when the name is not a (formatted) string. ``__name__`` and
    ``__package__`` inside the f-string are the importer's; any other formatted part
    stands for one name component."""
    if not call.args:
        return None
    arg = call.args[0]
    package = module if is_package else module.rpartition(".")[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        pieces = [re.escape(arg.value)]
    elif isinstance(arg, ast.JoinedStr):
        pieces = []
        for part in arg.values:
            if isinstance(part, ast.Constant):
                pieces.append(re.escape(part.value))
            elif isinstance(part.value, ast.Name) and part.value.id == "__name__":
                pieces.append(re.escape(module))
            elif isinstance(part.value, ast.Name) and part.value.id == "__package__":
                pieces.append(re.escape(package))
            else:
                pieces.append(r"[^.]+")
    else:
        return None
    pattern = "".join(pieces)
    if pattern.startswith(r"\."):  # relative to the package given as second argument
        pattern = re.escape(package) + pattern
    return re.compile(pattern + r"\Z")


def import_graph():
    """lkr module -> the lkr modules it imports, anywhere: at module level, inside functions
    and methods (a deferred import still ties the two modules together), in ``__getattr__``
    shims, and through ``importlib.import_module`` with a string or f-string name.

    Importing ``a.b.c`` imports the packages ``a.b`` and ``a`` too, except the packages that
    contain the importer (they are initialised before it)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        deps = set()
        patterns = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = (_resolve(name, is_package, node.level, node.module) if node.level
                        else node.module)
                deps.add(base)
                # `from . import x` imports the submodule x when there is one
                deps.update(f"{base}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Call):
                fn = node.func
                called = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
                if called in _IMPORTERS:
                    pattern = _dynamic_pattern(node, name, is_package)
                    if pattern is not None:
                        patterns.append(pattern)
        deps.update(m for m in modules for p in patterns if p.match(m))
        # the packages that contain this module are initialised before it runs: importing
        # from them (``from . import x``) is not an edge back to their __init__
        ancestors = {".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 1)}
        if is_package:
            ancestors.add(name)
        out = set()
        for d in deps:
            # importing a.b.c imports the packages a.b and a too
            parts = d.split(".")
            for k in range(1, len(parts) + 1):
                cand = ".".join(parts[:k])
                if cand in modules and cand not in ancestors and cand != name:
                    out.add(cand)
        graph[name] = out
    return graph


def layer_of(module: str) -> int:
    """The layer of ``module``: that of the longest key of :data:`LAYERS` naming it or a
    package above it."""
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        key = ".".join(parts[:k])
        if key in LAYERS:
            return LAYERS[key]
    raise KeyError(f"{module} has no layer: add it to LAYERS (and to docs/development.md)")


def _cycle(graph):
    """One cycle of the graph as a list of modules, or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(graph, WHITE)
    path = []

    def visit(n):
        color[n] = GREY
        path.append(n)
        for m in sorted(graph[n]):
            if color[m] == GREY:
                return path[path.index(m):] + [m]
            if color[m] == WHITE:
                found = visit(m)
                if found:
                    return found
        path.pop()
        color[n] = BLACK
        return None

    for n in sorted(graph):
        if color[n] == WHITE:
            found = visit(n)
            if found:
                return found
    return None


def test_the_graph_sees_the_packages():
    g = import_graph()
    assert {"lkr", "lkr.nets", "lkr.nets.fc", "lkr.train", "lkr.train.langevin", "lkr.ntk",
            "lkr._cuda", "lkr._cuda.kernels"} <= set(g)
    assert "lkr.nets" in g["lkr.ntk"] and "lkr.ntk" in g["lkr.train.linearized"]


def test_the_graph_counts_deferred_and_dynamic_imports():
    g = import_graph()
    # backend imports the CUDA engine inside a function, at the first CuPy call
    assert "lkr._cuda" in g["lkr.backend"]
    # the command registry imports its subcommands by name (import_module of an f-string)
    assert {"lkr.experiments.fc_vs_cnn", "lkr.experiments.train_one"} <= g["lkr.cli"]
    # and the package's lazy submodules (``lkr.theory`` on first use)
    assert {"lkr.theory", "lkr.train", "lkr.cli"} <= g["lkr"]


def test_dynamic_names_resolve(tmp_path):
    tree = ast.parse('import_module(f".experiments.{NAMES[k]}", __package__)\n'
                     'importlib.import_module(f"{__name__}.{name}")\n'
                     'import_module(name)\n')
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    p = [_dynamic_pattern(c, "lkr.cli", False) for c in calls]
    assert p[0].match("lkr.experiments.info") and not p[0].match("lkr.experiments.a.b")
    assert p[1].match("lkr.cli.x") and not p[1].match("lkr.x")
    assert p[2] is None


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_among_lkr_modules():
    cycle = _cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_has_a_layer():
    missing = []
    for m in _modules():
        try:
            layer_of(m)
        except KeyError:
            missing.append(m)
    assert not missing, f"modules without a layer in LAYERS: {missing}"


def test_imports_point_down_the_layers():
    """A module imports only from its own layer or below (docs/development.md)."""
    up = sorted(f"{m} (layer {layer_of(m)}) imports {d} (layer {layer_of(d)})"
                for m, deps in import_graph().items() for d in deps
                if layer_of(d) > layer_of(m))
    assert not up, "imports that point up a layer:\n" + "\n".join(up)


def test_engines_know_nothing_of_the_nets():
    g = import_graph()
    for m in g:
        if layer_of(m) <= 1:
            assert not {d for d in g[m] if d.startswith(("lkr.nets", "lkr.ntk", "lkr.theory"))}, m


def test_modules_stay_small():
    sizes = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in ROOT.rglob("*.py")}
    big = {str(p): n for p, n in sizes.items() if n > 600}
    assert not big, big


# -- the tests' own layout ------------------------------------------------------------------
_TEST_FOLDERS = {"kernels", "theory", "nets", "train", "experiments", "data", "engines"}


def _test_files():
    return sorted(TESTS.rglob("test_*.py"))


def test_tests_mirror_the_package():
    """Test modules live in the folder of the package part they test (and this one on top)."""
    stray = [str(p.relative_to(TESTS)) for p in _test_files()
             if p.parent != TESTS and p.parent.name not in _TEST_FOLDERS]
    top = [p.name for p in _test_files() if p.parent == TESTS]
    assert not stray, stray
    assert top == ["test_structure.py"], top


def test_test_modules_do_not_import_each_other():
    """Shared fixtures and references live in helper modules in tests/ (reference.py,
    cuda_emulator.py, ...), never in a test module: importing one test module from another
    runs it twice under pytest's importlib mode and ties test files across folders."""
    names = {p.stem for p in _test_files()} | {"conftest"}
    bad = []
    for p in _test_files():
        for node in ast.walk(ast.parse(p.read_text())):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module] if isinstance(node, ast.ImportFrom) and not node.level
                    else [])
            bad += [f"{p.relative_to(TESTS)} imports {m}" for m in mods if m in names]
    assert not bad, bad


@pytest.mark.parametrize("folder", sorted(_TEST_FOLDERS))
def test_test_folders_exist(folder):
    assert any((TESTS / folder).glob("test_*.py")), folder


# -- the typed public API ----------------------------------------------------------------------
def _public_callables():
    import inspect

    from lkr import kernels_multi, theory

    fns = [lkr.nngp, lkr.local_kernel, lkr.renormalized_kernel, lkr.renormalized_kernel_diag,
           lkr.local_kernel_adjoint, kernels_multi.patch_mean,
           kernels_multi.renormalized_kernel_multi, kernels_multi.local_kernel_adjoint_multi]
    for cls in (theory.GPTheory, theory.FCTheory, theory.DeepFCTheory, theory.CNNTheory,
                theory.LCNTheory, theory.DeepCNNTheory):
        fns += [getattr(cls, n) for n in ("__init__", "fit", "fit_path", "predict", "evaluate",
                                          "set_data", "action", "gradient") if hasattr(cls, n)]
    return [(f, inspect.signature(f)) for f in fns]


def test_public_kernels_and_theories_are_annotated():
    import typing

    missing = []
    for fn, sig in _public_callables():
        hints = typing.get_type_hints(fn)  # the annotations resolve (names exist)
        for name, par in sig.parameters.items():
            if name == "self" or par.kind in (par.VAR_KEYWORD, par.VAR_POSITIONAL):
                continue
            if name not in hints:
                missing.append(f"{fn.__qualname__}({name})")
    assert not missing, missing


def test_the_package_says_it_is_typed():
    assert (ROOT / "py.typed").is_file()
