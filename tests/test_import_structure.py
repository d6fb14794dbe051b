"""Data flows one way: the loop never imports a world, and no import cycle exists in engine/.

Imports are read with ast, function-level imports included (a lazy import hides a cycle from
Python, not from a reader).
"""
import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "engine"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ENGINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(f): f for f in ENGINE.rglob("*.py")}


def _imports(path: Path, modules: dict) -> set[str]:
    """The engine modules a file imports (names resolved to modules where they are ones)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                     for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name.startswith("engine"):
                found.add(name)
    return found


def _graph(key) -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        for dep in _imports(path, modules):
            a, b = key(name), key(dep)
            if a != b and a != "engine" and b != "engine":   # engine/__init__ re-exports the API
                graph.setdefault(a, set()).add(b)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def test_the_loop_never_imports_a_world():
    modules = _modules()
    offenders = {name: sorted(d for d in _imports(path, modules) if d.startswith("engine.world"))
                 for name, path in modules.items() if name.startswith("engine.selfalign")}
    assert not {k: v for k, v in offenders.items() if v}


def test_no_import_cycle_between_packages():
    assert _cycle(_graph(lambda m: ".".join(m.split(".")[:2]))) is None


def test_no_import_cycle_between_modules():
    assert _cycle(_graph(lambda m: m)) is None


def test_the_checker_sees_a_cycle():
    """The cycle finder itself finds one where there is one."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None
