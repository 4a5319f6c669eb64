"""The shared asyncio facade over small in-memory blocking implementations.

The real backends go through the same code in the conformance and integration suites;
these tests pin the parts that are the facade's own: sliced and cancellable waits,
event stream reading, stream edge cases and the pool's life cycle.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from libcontainerd._async_facade import (
    WAIT_SLICE,
    AsyncEventStreamFacade,
    AsyncProcessFacade,
    AsyncProcessIOFacade,
    Runner,
)
from libcontainerd.errors import DeadlineExceeded, FailedPrecondition
from libcontainerd.types.status import ExitStatus


class _Process:
    """A blocking process whose ``wait`` takes no ``cancel`` (as the local backend's)."""

    def __init__(self) -> None:
        self.exited = threading.Event()
        self.waits: list[float | None] = []
        self.active = 0
        self._lock = threading.Lock()
        self.io: Any = None
        self.id = "p"
        self.container_id = "c"
        self.pid = 1

    def wait(self, timeout: float | None = None) -> ExitStatus:
        with self._lock:
            self.waits.append(timeout)
            self.active += 1
        try:
            if not self.exited.wait(timeout):
                raise DeadlineExceeded(f"process p did not exit within {timeout}s")
            return ExitStatus(3)
        finally:
            with self._lock:
                self.active -= 1


class _CancellableProcess(_Process):
    """A blocking process whose ``wait`` takes ``cancel`` (as the remote backend's)."""

    def __init__(self) -> None:
        super().__init__()
        self.cancels: list[threading.Event | None] = []

    def wait(
        self, timeout: float | None = None, *, cancel: threading.Event | None = None
    ) -> ExitStatus:
        self.cancels.append(cancel)
        return ExitStatus(5)


def _until(predicate: Any, limit: float) -> bool:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def test_cancelled_wait_frees_its_thread_without_backend_support() -> None:
    process = _Process()

    async def main() -> None:
        run = Runner("test-facade")
        try:
            handle = AsyncProcessFacade(process, run)  # type: ignore[arg-type]
            waiting = asyncio.ensure_future(handle.wait())
            await asyncio.sleep(0.2)
            assert process.active == 1
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert await asyncio.to_thread(_until, lambda: process.active == 0, WAIT_SLICE + 2)
            assert all(t is not None and t <= WAIT_SLICE for t in process.waits)
        finally:
            run.shutdown()

    asyncio.run(main())


def test_sliced_wait_returns_the_exit_and_keeps_the_callers_deadline() -> None:
    process = _Process()

    async def main() -> None:
        run = Runner("test-facade")
        try:
            handle = AsyncProcessFacade(process, run)  # type: ignore[arg-type]
            started = time.monotonic()
            with pytest.raises(DeadlineExceeded, match=r"within 1\.5 s"):
                await handle.wait(1.5)
            assert 1.4 < time.monotonic() - started < 3.0
            assert len(process.waits) >= 2
            threading.Timer(0.3, process.exited.set).start()
            assert (await handle.wait(30)).code == 3
        finally:
            run.shutdown()

    asyncio.run(main())


def test_backend_cancel_is_used_and_set_when_the_wait_ends() -> None:
    process = _CancellableProcess()

    async def main() -> None:
        run = Runner("test-facade")
        try:
            handle = AsyncProcessFacade(process, run)  # type: ignore[arg-type]
            assert (await handle.wait(10)).code == 5
        finally:
            run.shutdown()

    asyncio.run(main())
    [cancel] = process.cancels
    assert cancel is not None and cancel.is_set()
    assert process.waits == []


class _Streams:
    def __init__(self, stdin: Any, stdout: Any, stderr: Any) -> None:
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr

    def close(self) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                stream.close()


class _NonBlockingReader(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        return None  # nothing there yet


def test_process_io_edges() -> None:
    streams = _Streams(None, io.BytesIO(b"out"), _NonBlockingReader())

    async def main() -> None:
        run = Runner("test-facade")
        try:
            facade = AsyncProcessIOFacade(streams, run)
            with pytest.raises(FailedPrecondition, match="no stdin"):
                await facade.write(b"x")
            await facade.close_stdin()
            assert await facade.read_stdout() == b"out"
            assert await facade.read_stdout() == b""
            assert await facade.read_stderr(4) == b""
            await facade.close()
        finally:
            run.shutdown()

    asyncio.run(main())
    assert streams.stdout.closed


def test_process_io_follows_the_blocking_handle() -> None:
    process = _Process()
    handle = AsyncProcessFacade(process, Runner("test-facade"))  # type: ignore[arg-type]
    assert handle.io is None
    process.io = _Streams(None, None, None)
    first = handle.io
    assert first is not None and first is handle.io
    process.io = _Streams(None, None, None)
    assert handle.io is not first


class _IteratorStream:
    """A blocking stream with only ``__next__`` (as the remote backend's)."""

    def __init__(self, items: list[Any]) -> None:
        self._items: Iterator[Any] = iter(items)
        self.closed_calls = 0

    def __iter__(self) -> _IteratorStream:
        return self

    def __next__(self) -> Any:
        return next(self._items)

    def close(self) -> None:
        self.closed_calls += 1


class _PollStream(_IteratorStream):
    """A blocking stream with ``poll`` and ``closed`` (as the local backend's)."""

    def __init__(self, items: list[Any]) -> None:
        super().__init__(items)
        self.polls: list[float | None] = []

    def poll(self, timeout: float | None) -> Any:
        self.polls.append(timeout)
        return next(self._items, None)

    @property
    def closed(self) -> bool:
        return self.closed_calls > 0


@pytest.mark.parametrize("kind", [_IteratorStream, _PollStream])
def test_event_streams_end_when_the_blocking_stream_does(kind: type[_IteratorStream]) -> None:
    stream = kind(["a", "b"])

    async def main() -> list[Any]:
        run = Runner("test-facade")
        try:
            async with AsyncEventStreamFacade(stream, run) as events:  # type: ignore[arg-type]
                seen = []
                if isinstance(stream, _PollStream):
                    seen = [await events.__anext__(), await events.__anext__()]
                    await events.aclose()
                    with pytest.raises(StopAsyncIteration):
                        await events.__anext__()
                    return seen
                return [event async for event in events]
        finally:
            run.shutdown()

    assert asyncio.run(main()) == ["a", "b"]
    assert stream.closed_calls >= 1
    if isinstance(stream, _PollStream):
        assert stream.polls and all(t is not None and t <= 1 for t in stream.polls)


def test_runner_after_shutdown_is_a_typed_error() -> None:
    async def main() -> None:
        run = Runner("test-facade")
        assert await run(sum, [1, 2]) == 3
        run.shutdown()
        with pytest.raises(FailedPrecondition, match="closed"):
            await run(sum, [1, 2])

    asyncio.run(main())
