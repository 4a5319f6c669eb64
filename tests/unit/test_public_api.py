"""The exported names are the documented ones, and each is present."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path
from typing import get_origin

import pytest

import libcontainerd

MODULES = [
    "libcontainerd",
    "libcontainerd.errors",
    "libcontainerd.client",
    "libcontainerd.system",
    "libcontainerd.address",
    "libcontainerd.types",
    "libcontainerd.oci",
    "libcontainerd.testing",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist_and_are_documented(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__
    for exported in module.__all__:
        value = getattr(module, exported)
        if (inspect.isfunction(value) or inspect.isclass(value)) and get_origin(value) is None:
            assert getattr(value, "__doc__", None), f"{name}.{exported} has no docstring"


def test_top_level_contract() -> None:
    assert {
        "new_client",
        "new_async_client",
        "Client",
        "AsyncClient",
        "errors",
        "types",
    } <= set(libcontainerd.__all__)
    assert libcontainerd.__version__


def _package_imports(package: str) -> set[tuple[str, str]]:
    """Every absolute module a package's files import from within libcontainerd."""
    root = Path(importlib.import_module(package).__file__ or "").parent
    found: set[tuple[str, str]] = set()
    for path in root.rglob("*.py"):
        depth = len(path.relative_to(root).parts) - 1
        base = package.split(".") + list(path.relative_to(root).parts[:-1])
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parent = base[: len(base) - node.level + 1] if node.level > 1 else base
                    target = ".".join([*parent, node.module] if node.module else parent)
                else:
                    target = node.module or ""
                found.add((str(path.name), target))
            elif isinstance(node, ast.Import):
                found.update((str(path.name), alias.name) for alias in node.names)
        del depth
    return {(f, m) for f, m in found if m.startswith("libcontainerd")}


def test_types_depend_only_on_errors() -> None:
    for source, module in _package_imports("libcontainerd.types"):
        assert module.startswith(("libcontainerd.types", "libcontainerd.errors")), (
            f"types/{source} imports {module}"
        )


@pytest.mark.parametrize(("package", "other"), [("local", "remote"), ("remote", "local")])
def test_backends_never_import_each_other(package: str, other: str) -> None:
    name = f"libcontainerd.{package}"
    try:
        imports = _package_imports(name)
    except ModuleNotFoundError:
        pytest.skip(f"{name} is not in this tree")
    for source, module in imports:
        assert not module.startswith(f"libcontainerd.{other}"), f"{package}/{source} -> {module}"
