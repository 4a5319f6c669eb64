"""A package's exported names, each loaded from its module on first use (PEP 562).

The SDK's packages export their names this way (``types`` keeps its own copy, as it
depends on nothing but ``errors``), so ``import libcontainerd`` and a short-lived process
pay only for what they touch. Only the standard library is imported here: the local
backend's monitor imports package modules with nothing else loaded.
"""

from __future__ import annotations

import importlib
import sys

# typing itself costs milliseconds at import; mypy reads this flag as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

__all__ = ["LazyNames"]


class LazyNames:
    """Where each exported name of ``package`` lives, and its loader.

    ``where`` maps a name to the module defining it under the same name. A loaded name
    is stored in the package, so the package's ``__getattr__`` runs once per name.
    """

    def __init__(self, package: str, where: Mapping[str, str], exported: Iterable[str]) -> None:
        self.package = package
        self.where = dict(where)
        self.exported = frozenset(exported)

    def load(self, name: str) -> Any:
        """The value of ``name``, imported now; ``AttributeError`` for an unknown name."""
        module = self.where.get(name)
        if module is None:
            raise AttributeError(f"module {self.package!r} has no attribute {name!r}")
        return self.keep(name, getattr(importlib.import_module(module), name))

    def keep(self, name: str, value: Any) -> Any:
        """Store ``value`` as the package's ``name`` and return it."""
        setattr(sys.modules[self.package], name, value)
        return value

    def names(self) -> list[str]:
        """The package's ``__dir__``: what it holds now and everything it exports."""
        return sorted({*vars(sys.modules[self.package]), *self.exported})
