"""Events of the local backend: one JSON-lines file per namespace, tailed by subscribers.

Monitors append task events (create, start, exec-started, exit) and clients the rest
(exec-added, paused, resumed, delete, container events), each line under an exclusive
lock, so a container's events appear in the order they happened.

The file is bounded: at ``max_bytes`` it becomes ``<name>.jsonl.1`` and a new file starts.
A subscriber reads the rotated file to its end before moving to the new one, so it misses
nothing unless it falls more than a whole file behind.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from libcontainerd._event_iteration import IteratesByPolling
from libcontainerd.local._monitor_protocol import EVENTS_MAX_BYTES, append_event, now_iso
from libcontainerd.local._store import matches_filters
from libcontainerd.types.events import Event

__all__ = ["EventLog", "LocalEventStream", "to_event"]

_POLL = 0.01


def to_event(record: dict[str, Any]) -> Event:
    """The typed :class:`Event` for one line of the events file."""

    def when(key: str) -> _dt.datetime | None:
        value = record.get(key)
        return _dt.datetime.fromisoformat(value) if isinstance(value, str) else None

    pid = record.get("pid")
    code = record.get("exit_code")
    return Event(
        type=str(record.get("topic", "")),
        topic=str(record.get("topic", "")),
        namespace=str(record.get("namespace", "")),
        timestamp=when("timestamp") or _dt.datetime.now(_dt.timezone.utc),
        container_id=str(record.get("container_id", "")),
        process_id=str(record.get("process_id", "")),
        pid=pid if isinstance(pid, int) and pid >= 0 else None,
        exit_code=code if isinstance(code, int) and code >= 0 else None,
        exited_at=when("exited_at"),
        image=str(record.get("image", "")),
        raw=record,
    )


def _lookup(event: Event) -> Callable[[str], str | None]:
    def lookup(key: str) -> str | None:
        if key == "topic":
            return event.topic
        if key == "namespace":
            return event.namespace
        if key in ("id", "container_id", "event.container_id"):
            return event.container_id
        if key in ("process_id", "event.process_id", "exec_id"):
            return event.process_id
        return None

    return lookup


class EventLog:
    """Writes events of one namespace."""

    def __init__(self, path: str, namespace: str, *, max_bytes: int = EVENTS_MAX_BYTES) -> None:
        self.path = path
        self.namespace = namespace
        self.max_bytes = max_bytes

    def publish(self, topic: str, **fields: Any) -> None:
        """Append an event with ``topic`` and ``fields``."""
        record: dict[str, Any] = {
            "topic": topic,
            "namespace": self.namespace,
            "timestamp": now_iso(),
        }
        record.update(fields)
        append_event(self.path, record, max_bytes=self.max_bytes)


class LocalEventStream(IteratesByPolling):
    """A blocking iterator over events appended after it was created."""

    def __init__(self, path: str, filters: Sequence[str] = ()) -> None:
        matches_filters(filters, lambda _key: None)  # validate early
        self._filters = list(filters)
        self._path = path
        self._closed = threading.Event()
        # Serialises reads with close(), which may come from another thread.
        self._io_lock = threading.Lock()
        # Open (creating if needed) and start at the end: only new events are seen.
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._file = os.fdopen(fd, "rb")
        self._file.seek(0, os.SEEK_END)
        self._partial = b""
        self._pending: deque[bytes] = deque()

    def _follow_rotation(self) -> bool:
        """At the end of our file: if it was rotated, finish it and open the new one."""
        try:
            current = os.stat(self._path)
        except FileNotFoundError:
            return False  # rotated, and no event written since
        mine = os.fstat(self._file.fileno())
        if (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev):
            return False
        # Writers never touch a rotated file again, so what is left in it is final.
        rest = self._file.read().splitlines(keepends=True)
        if rest and not rest[-1].endswith(b"\n"):
            rest[-1] += b"\n"  # a torn line must not glue onto the next file's first
        elif not rest:
            self._partial = b""
        self._pending.extend(rest)
        try:
            fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return bool(rest)
        self._file.close()
        self._file = os.fdopen(fd, "rb")
        return True

    def _next_line(self) -> bytes | None:
        """The next complete line, ``b""`` when none is there yet, ``None`` once closed."""
        with self._io_lock:
            while not self._closed.is_set():
                line = self._pending.popleft() if self._pending else self._file.readline()
                if not line:
                    if self._follow_rotation():
                        continue
                    return b""
                self._partial += line
                if self._partial.endswith(b"\n"):
                    data, self._partial = self._partial, b""
                    return data
            return None

    def poll(self, timeout: float | None) -> Event | None:
        """The next event, or ``None`` when none came within ``timeout`` or on close."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            data = self._next_line()
            if data is None:
                return None
            if data:
                try:
                    record = json.loads(data)
                except ValueError:
                    continue
                if not isinstance(record, dict):
                    continue
                event = to_event(record)
                if matches_filters(self._filters, _lookup(event)):
                    return event
                continue
            if deadline is not None and time.monotonic() >= deadline:
                return None
            self._closed.wait(_POLL)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed.is_set()

    def close(self) -> None:
        """Stop the subscription and release its file; a blocked ``next()`` ends."""
        self._closed.set()
        with self._io_lock:
            self._file.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._file.close()
