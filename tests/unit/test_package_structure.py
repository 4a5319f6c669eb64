"""The package's shape: room sizes, one import style, and an import graph without cycles.

Imports are read from the source (every ``import``, function-level and ``TYPE_CHECKING``
ones included), so a cycle that only a type checker would follow still counts.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "libcontainerd"
MAX_LINES = 600


def _sources() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if "_pb" in parts:
            continue  # generated protobuf code
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


MODULES = dict(_sources())


def _imported(module: str, path: Path) -> Iterator[tuple[str, ast.AST]]:
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, node
            for alias in node.names:
                yield f"{target}.{alias.name}", node


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, _ in _imported(name, path):
            if target in MODULES and target != name:
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_sees_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_has_no_cycle() -> None:
    assert _cycles(_graph()) == []


def test_backends_never_import_each_other() -> None:
    graph = _graph()
    for name, targets in graph.items():
        for other, forbidden in (("local", "remote"), ("remote", "local")):
            if name.startswith(f"libcontainerd.{other}"):
                assert not [t for t in targets if t.startswith(f"libcontainerd.{forbidden}")], name


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_over_its_size(name: str) -> None:
    lines = MODULES[name].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by concept"


def test_imports_are_absolute_and_name_no_private_object() -> None:
    offenders = []
    for name, path in MODULES.items():
        for target, node in _imported(name, path):
            if isinstance(node, ast.ImportFrom) and node.level:
                offenders.append(f"{name}: relative import of {target}")
            leaf = target.rsplit(".", 1)[-1]
            # A private module may be imported; a private object out of another module not.
            private = leaf.startswith("_") and not leaf.startswith("__")
            if (
                private
                and target not in MODULES
                and isinstance(node, ast.ImportFrom)
                and target.startswith("libcontainerd")
            ):
                offenders.append(f"{name}: imports private {target}")
    assert sorted(set(offenders)) == []
