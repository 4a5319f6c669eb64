"""The ``with`` block shared by every closable handle: enter returns it, exit closes it."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, TypeVar, cast

_Self = TypeVar("_Self", bound="ClosesOnExit")


class _Closable(Protocol):
    def close(self) -> None: ...


class ClosesOnExit:
    """Mixin for a handle with a ``close()``: ``with handle:`` yields it and closes it after."""

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        cast(_Closable, self).close()
