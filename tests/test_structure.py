"""The package's shape: no import cycles among lkr's modules, small modules."""
import ast
from pathlib import Path

import lkr

ROOT = Path(lkr.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, level: int, target) -> str:
    """The absolute name of ``from <level dots><target> import ...`` inside ``module``."""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[:len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def import_graph():
    """lkr module -> the lkr modules it imports at module level (top-level statements,
    including those under ``if``/``try`` at top level; imports inside functions run late
    and do not count). Importing ``a.b.c`` imports the packages ``a.b`` and ``a`` too,
    except the packages that contain the importer (they are initialised before it)."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        deps = set()
        tree = ast.parse(path.read_text())
        stack = list(tree.body)
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.If, ast.Try)):
                stack.extend(node.body + node.orelse + getattr(node, "finalbody", [])
                             + [s for h in getattr(node, "handlers", []) for s in h.body])
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = (_resolve(name, is_package, node.level, node.module) if node.level
                        else node.module)
                deps.add(base)
                # `from . import x` imports the submodule x when there is one
                deps.update(f"{base}.{a.name}" for a in node.names)
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
    assert {"lkr", "lkr.nets", "lkr.nets.fc", "lkr.train", "lkr.train.langevin", "lkr.ntk"} <= set(g)
    assert "lkr.nets" in g["lkr.ntk"] and "lkr.ntk" in g["lkr.train.linearized"]


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_among_lkr_modules():
    cycle = _cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_modules_stay_small():
    sizes = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in ROOT.rglob("*.py")}
    big = {str(p): n for p, n in sizes.items() if n > 600}
    assert not big, big
