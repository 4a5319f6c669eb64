"""One way to read TOML on every supported Python: ``tomllib`` (3.11+), else ``tomli``."""

from __future__ import annotations

import importlib
from typing import Any

from libcontainerd.errors import InvalidArgument, Unimplemented

__all__ = ["loads"]


def _parser() -> Any:
    for name in ("tomllib", "tomli"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise Unimplemented(
        "reading TOML needs a parser: Python 3.11+ has tomllib; on Python 3.10 install the "
        "'tomli' package (pip install 'tomli>=2')"
    )


def loads(text: str, *, what: str) -> dict[str, Any]:
    """Parse ``text``; a syntax error is ``InvalidArgument`` naming ``what`` was read."""
    parser = _parser()
    try:
        document: dict[str, Any] = parser.loads(text)
    except (parser.TOMLDecodeError, RecursionError, ValueError) as exc:
        raise InvalidArgument(f"{what} is not valid TOML: {exc}") from None
    return document
