"""The package's imports run downward only: no import cycle between its modules, counting the
imports inside functions too (a lazy import that closes a cycle is still a cycle in the design),
and the device side never imports the workstation's libraries."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("edge_rbmlp", "train")
# larq_compute_engine's interpreter is the device's explicit LCE fallback (edge_rbmlp.engines.tflite)
WORKSTATION_ONLY = ("tensorflow", "tf_keras", "larq", "ray", "train")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def sources():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            yield module_name(path), path


def imports_of(name: str, path: Path, known: set):
    """Every module ``name`` imports (absolute, relative, inside functions), resolved to modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            for alias in node.names:  # `from . import x` / `from pkg import submodule`
                found.add(f"{target}.{alias.name}")
    out = set()
    for mod in found:
        # the nearest known module: `edge_rbmlp.engines.base.Engine` -> `edge_rbmlp.engines.base`
        while mod and mod not in known:
            mod = mod.rpartition(".")[0]
        # a module's own ancestor packages are imported before it anyway (`from .. import _native`
        # reaches the extension through the package): not an edge of the design
        if mod and mod != name and not name.startswith(mod + "."):
            out.add(mod)
    return out


def graph():
    mods = dict(sources())
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def cycles(g):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read():
    g = graph()
    assert "edge_rbmlp.engines.native" in g["edge_rbmlp.engines"] or "edge_rbmlp.engines.base" in g[
        "edge_rbmlp.engines"]
    assert "edge_rbmlp.engines.base" in g["edge_rbmlp.server.infer"]


def test_no_import_cycles():
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_in_server_imports_the_cli():
    g = graph()
    offenders = [m for m in g if m.startswith("edge_rbmlp.server") and "edge_rbmlp.cli" in g[m]]
    assert not offenders


@pytest.mark.parametrize("name", [n for n, _ in sources() if n.startswith("edge_rbmlp")])
def test_the_device_side_never_imports_workstation_libraries(name):
    path = dict(sources())[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        mods = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
        for mod in mods:
            assert mod.split(".")[0] not in WORKSTATION_ONLY, f"{name} imports {mod}"
