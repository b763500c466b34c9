"""The layout holds: meta_core's engine never imports its app layer or ComfyUI, no package imports inside
functions to dodge a cycle, and the import graph of meta_core, headless and nodes is acyclic."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("meta_core", "headless", "nodes")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(current: str, is_package: bool, node: ast.ImportFrom, modules) -> list[str]:
    """The modules `from ... import ...` reads: each imported sub-module, or else the module named."""
    base = current.split(".") if is_package else current.split(".")[:-1]
    if node.level:
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return sorted({f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names})


def import_graph():
    modules = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph, inner = {m: set() for m in modules}, []
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        is_package = path.name == "__init__.py"
        top_level = set(map(id, tree.body))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                targets = resolve(name, is_package, node, modules)
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            found = {t for t in targets if t in modules and t != name}
            if not found:
                continue
            if id(node) not in top_level and not any(id(node) in map(id, ast.walk(b)) for b in tree.body
                                                     if isinstance(b, (ast.If, ast.Try))):
                inner.append((name, sorted(found)))
            graph[name] |= found
    return graph, inner


def test_no_package_import_inside_a_function():
    _, inner = import_graph()
    assert inner == []


def test_the_import_graph_is_acyclic():
    graph, _ = import_graph()
    # an __init__ importing its own sub-modules is how a package exports them, not a cycle
    edges = {m: {t for t in ts if not (m + ".").startswith(t + ".") and not m.startswith(t + ".")}
             for m, ts in graph.items()}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert cycles == []


def test_the_engine_does_not_import_what_is_built_on_it():
    graph, _ = import_graph()
    engine = [m for m in graph if m.startswith("meta_core") and not m.startswith("meta_core.app")]
    bad = {m: sorted(t for t in graph[m] if t.startswith("meta_core.app")) for m in engine if m != "meta_core.__main__"}
    assert {m: ts for m, ts in bad.items() if ts} == {}
    assert not any(t.split(".")[0] in ("nodes", "headless") for m in engine for t in graph[m])


def test_the_checker_sees_a_cycle_and_an_inner_import(tmp_path, monkeypatch):
    pkg = tmp_path / "meta_core"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    for name in ("headless", "nodes"):
        (tmp_path / name).mkdir()
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    graph, inner = import_graph()
    assert inner == [("meta_core.b", ["meta_core.a"])]
    assert "meta_core.b" in graph["meta_core.a"] and "meta_core.a" in graph["meta_core.b"]
