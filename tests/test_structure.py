"""The package stays readable: no root module over 900 lines, no class over 500, and
no import circle among the root modules (TYPE_CHECKING imports included).

Read from the source's AST, not by importing: a circle that only type checkers see
still means two modules that cannot be read (or changed) one without the other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 900
MAX_CLASS_LINES = 500


def _root_modules() -> dict[str, ast.Module]:
    """The package's own modules (the repository root is the package), by name."""
    return {
        path.stem: ast.parse(path.read_text(), filename=str(path))
        for path in sorted(ROOT.glob("*.py"))
    }


def _classes(tree: ast.AST) -> Iterator[ast.ClassDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            yield node


def _relative_imports(tree: ast.Module, modules: set[str]) -> set[str]:
    """Root modules this one imports: `from .x import ...` and `from . import x`,
    wherever they are written (inside `if TYPE_CHECKING:` and functions too)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level != 1:
            continue
        if node.module is None:
            found.update(alias.name for alias in node.names if alias.name in modules)
        else:
            name = node.module.split(".")[0]
            if name in modules:
                found.add(name)
    return found


def _cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One circle through each module that is on any (depth-first search)."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_no_root_module_is_over_900_lines() -> None:
    lengths = {path.name: len(path.read_text().splitlines()) for path in ROOT.glob("*.py")}
    assert {name: n for name, n in lengths.items() if n > MAX_MODULE_LINES} == {}


def test_no_class_is_over_500_lines() -> None:
    lengths = {
        f"{name}.{cls.name}": (cls.end_lineno or cls.lineno) - cls.lineno + 1
        for name, tree in _root_modules().items()
        for cls in _classes(tree)
    }
    assert {name: n for name, n in lengths.items() if n > MAX_CLASS_LINES} == {}


def test_no_import_circle_among_root_modules() -> None:
    modules = _root_modules()
    graph = {name: _relative_imports(tree, set(modules)) for name, tree in modules.items()}
    assert _cycles(graph) == []


def test_the_engine_modules_are_seen() -> None:
    """The checks above read the package: its core and its imports are there."""
    modules = _root_modules()
    assert {"session_core", "turns", "extension", "session"} <= set(modules)
    core_imports = _relative_imports(modules["session_core"], set(modules))
    assert {"engine_io", "supervisor", "sender", "watch", "turns"} <= core_imports
    assert "SessionCore" in {cls.name for cls in _classes(modules["session_core"])}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from . import b\n", {"b"}),
        ("from .b import x\n", {"b"}),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import X\n", {"b"}),
        ("from .b.c import x\nfrom .. import d\nimport b\n", {"b"}),
    ],
)
def test_relative_imports_are_read(source: str, expected: set[str]) -> None:
    assert _relative_imports(ast.parse(source), {"a", "b", "d"}) == expected


def test_the_cycle_finder_finds_circles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []
    assert _cycles({"a": {"a"}}) == [["a", "a"]]
