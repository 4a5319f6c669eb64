"""Iteration over an event stream, for the streams of both backends.

A stream implements ``poll(timeout)`` (the next event, or ``None`` once it is closed or
the timeout passed); iterating it is ``poll`` without a timeout until the stream ends.
"""

from __future__ import annotations

from typing import Protocol, TypeVar, cast

from libcontainerd._closing import ClosesOnExit
from libcontainerd.types.events import Event

_Self = TypeVar("_Self", bound="IteratesByPolling")


class _Polls(Protocol):
    def poll(self, timeout: float | None) -> Event | None: ...


class IteratesByPolling(ClosesOnExit):
    """Mixin: ``for event in stream`` and ``with stream:`` for a stream with ``poll``."""

    def __iter__(self: _Self) -> _Self:
        return self

    def __next__(self) -> Event:
        event = cast(_Polls, self).poll(None)
        if event is None:
            raise StopIteration
        return event
