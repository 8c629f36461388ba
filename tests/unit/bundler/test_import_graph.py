"""The bundler's import graph has no circle: create, verify, sbom and selfcontained no longer import each other round.

Every import counts, the ones inside functions too (a lazy import still makes a circle in the design, it only
hides it from the interpreter). Parsed from the source with ``ast``, nothing is imported to check.
"""

from __future__ import annotations

import ast
from pathlib import Path

import gapseal

ROOT = Path(gapseal.__file__).resolve().parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            # the longest known module the name starts with: "gapseal.bundler.layout" for "...layout.Descriptor"
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("gapseal.bundler.") or name == "gapseal.bundler":
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in (ROOT / "bundler").rglob("*.py")}
    known = set(files) | {"gapseal.bundler"}
    return {name: _imports(path, known) - {name, "gapseal.bundler"} for name, path in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_bundler_import_graph_has_no_circle() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_verify_does_not_import_create_and_both_take_the_statement_from_one_module() -> None:
    graph = _graph()
    assert "gapseal.bundler.create" not in graph["gapseal.bundler.verify"]
    assert "gapseal.bundler.statement" in graph["gapseal.bundler.verify"]
    assert "gapseal.bundler.statement" in graph["gapseal.bundler.create"]


def test_the_checker_finds_a_circle() -> None:
    """The test above proves something only if the checker can fail."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
