"""Transfer progress of ``pull`` and ``push``: a live per-layer display or plain lines.

On a terminal with ``rich`` installed every blob gets a bar with bytes, total and speed,
redrawn in place. Otherwise (piped, or no rich) one line is printed each time a blob
changes state (resolved, downloading, done ...), never one per chunk.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import IO, Any

from libcontainerd.cli.output import console
from libcontainerd.types.progress import ProgressEvent, ProgressKind

__all__ = ["TransferDisplay", "human_bytes"]

_FINISHED = (ProgressKind.DONE, ProgressKind.EXISTS)


def human_bytes(count: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"  # pragma: no cover - the loop always returns


class TransferDisplay:
    """Receives :class:`ProgressEvent` values (pass it as ``progress=``); ``with`` it."""

    def __init__(self, verb: str, stream: IO[str] | None = None) -> None:
        self._verb = verb
        self._stream = stream or sys.stdout
        self._rich_console = console(self._stream)
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        self._states: dict[str, ProgressKind] = {}
        self._started = time.monotonic()
        self._bytes: dict[str, int] = {}

    def __enter__(self) -> TransferDisplay:
        """Start the live display (on a terminal with rich)."""
        if self._rich_console is not None:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=self._rich_console,
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the live display, leaving its last state on screen."""
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, event: ProgressEvent) -> None:
        """Show one progress event (called from the transfer's threads)."""
        self._bytes[event.digest] = event.current
        if self._progress is not None:
            self._show_rich(event)
        elif self._states.get(event.digest) != event.kind:
            self._states[event.digest] = event.kind
            size = human_bytes(event.total) if event.total else "?"
            print(
                f"{_short(event.digest)}: {event.kind.value} ({size})",
                file=self._stream,
                flush=True,
            )

    def _show_rich(self, event: ProgressEvent) -> None:
        task = self._tasks.get(event.digest)
        description = f"{_short(event.digest)} {event.kind.value:<11}"
        if task is None:
            task = self._progress.add_task(description, total=event.total or None)
            self._tasks[event.digest] = task
        completed = event.total if event.kind in _FINISHED and event.total else event.current
        self._progress.update(
            task, description=description, completed=completed, total=event.total or None
        )

    def summary(self) -> str:
        """Bytes moved, time taken and the mean speed, for the closing line."""
        took = max(time.monotonic() - self._started, 1e-6)
        moved = sum(self._bytes.values())
        return f"{human_bytes(moved)} in {took:.1f} s ({human_bytes(moved / took)}/s)"


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]
