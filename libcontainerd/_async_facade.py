"""The asyncio facade both backends share.

Each backend writes its behaviour once, as blocking objects that implement the protocols
of :mod:`libcontainerd.client`. The classes here turn any such implementation into the
asyncio twins (``AsyncClient``, ``AsyncContainer``, ``AsyncTask``, ``AsyncProcess`` ...)
by running every blocking call on a thread pool the async client owns, so the two APIs
cannot drift and neither backend keeps its own copy of this layer.

Calls that can block for long are made in short slices, so cancelling the awaiting task
frees its pool thread soon after: ``wait`` through the backend's own ``cancel=`` when its
``wait`` takes one, else as a series of short ``wait(timeout)`` calls; event reads through
``poll(timeout)`` when the stream has it.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import (
    IO,
    TYPE_CHECKING,
    Any,
    Generic,
    ParamSpec,
    Protocol,
    TypeGuard,
    TypeVar,
    runtime_checkable,
)

from libcontainerd._async_images import AsyncImageServiceFacade
from libcontainerd._async_runner import MAX_THREADS, Runner
from libcontainerd.async_shortcuts import (
    AsyncClientShortcuts,
    AsyncContainerShortcuts,
    AsyncTaskShortcuts,
)
from libcontainerd.client import (
    AsyncContainer,
    BackendName,
    Client,
    Container,
    EventStream,
    Process,
    ProcessIO,
    ProcessSpec,
    Spec,
    Task,
)
from libcontainerd.errors import Canceled, DeadlineExceeded, FailedPrecondition
from libcontainerd.types.container import ContainerInfo
from libcontainerd.types.events import Event
from libcontainerd.types.process import ProcessInfo
from libcontainerd.types.stats import Resources, Stats
from libcontainerd.types.status import ExitStatus, Status
from libcontainerd.types.stdio import Stdio
from libcontainerd.types.version import Version

__all__ = [
    "MAX_THREADS",
    "WAIT_SLICE",
    "AsyncClientFacade",
    "AsyncContainerFacade",
    "AsyncEventStreamFacade",
    "AsyncImageServiceFacade",
    "AsyncProcessFacade",
    "AsyncProcessIOFacade",
    "AsyncTaskFacade",
    "PollableEventStream",
    "Runner",
]

P = ParamSpec("P")
T = TypeVar("T")

WAIT_SLICE = 1.0
"""Longest single blocking ``wait`` call: a cancelled async wait frees its thread this soon."""

_EVENT_POLL = 0.5


# --------------------------------------------------------------------- protocols


@runtime_checkable
class PollableEventStream(Protocol):
    """An event stream that can wait a bounded time for its next event."""

    def poll(self, timeout: float | None) -> Event | None:
        """The next event, or ``None`` when none came within ``timeout`` or on close."""

    @property
    def closed(self) -> bool:
        """Whether the stream was closed."""


class _CancellableWait(Protocol):
    def wait(
        self, timeout: float | None = None, *, cancel: threading.Event | None = None
    ) -> ExitStatus: ...


@functools.cache
def _wait_takes_cancel(kind: type) -> bool:
    wait = getattr(kind, "wait", None)
    if wait is None:
        return False
    try:
        parameter = inspect.signature(wait).parameters.get("cancel")
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.kind is inspect.Parameter.KEYWORD_ONLY


def _takes_cancel(process: Process) -> TypeGuard[_CancellableWait]:
    return _wait_takes_cancel(type(process))


def _sliced_wait(process: Process, timeout: float | None, cancel: threading.Event) -> ExitStatus:
    """``process.wait(timeout)`` made of short waits; ``Canceled`` soon after ``cancel`` is set.

    For backends whose own ``wait`` takes no ``cancel``: any ``wait(timeout)`` will do.
    """
    if timeout is not None and not timeout > 0:
        return process.wait(timeout)  # the backend decides what a non-positive timeout means
    end = None if timeout is None else time.monotonic() + timeout
    while True:
        if cancel.is_set():
            raise Canceled(f"wait for process {process.id!r} was cancelled")
        left = None if end is None else end - time.monotonic()
        if left is not None and left <= 0:
            raise DeadlineExceeded(f"process {process.id!r} did not exit within {timeout} s")
        try:
            return process.wait(WAIT_SLICE if left is None else min(left, WAIT_SLICE))
        except DeadlineExceeded:
            continue


# ----------------------------------------------------------------------- wrappers

S = TypeVar("S")


class _Facade(Generic[S]):
    """An async wrapper: the blocking object it drives and the pool it runs calls on."""

    def __init__(self, sync: S, run: Runner) -> None:
        self._sync = sync
        self._run = run

    @property
    def sync(self) -> S:
        """The blocking object this one drives."""
        return self._sync


class AsyncProcessIOFacade(_Facade[ProcessIO]):
    """The live streams of a process, for asyncio callers (implements ``AsyncProcessIO``)."""

    @property
    def streams(self) -> ProcessIO:
        """The underlying blocking streams (the same as ``sync``)."""
        return self._sync

    async def write(self, data: bytes) -> None:
        """Write to the process's stdin."""
        stdin = self._sync.stdin
        if stdin is None:
            raise FailedPrecondition(
                "the process has no stdin stream; create it with PipedIO(stdin=True) "
                "or TerminalIO to write to it"
            )
        await self._run(stdin.write, data)

    async def close_stdin(self) -> None:
        """Send EOF on stdin (nothing to do without a stdin stream)."""
        stdin = self._sync.stdin
        if stdin is not None:
            await self._run(stdin.close)

    async def read_stdout(self, n: int = -1) -> bytes:
        """Read stdout: up to ``n`` bytes, or to EOF when ``n`` is -1; ``b""`` at EOF."""
        return await self._read(self._sync.stdout, n)

    async def read_stderr(self, n: int = -1) -> bytes:
        """Read stderr like :meth:`read_stdout` (a terminal has none: always ``b""``)."""
        return await self._read(self._sync.stderr, n)

    async def _read(self, stream: IO[bytes] | None, n: int) -> bytes:
        if stream is None:
            return b""
        # A raw non-blocking stream may answer None: no data, which callers see as b"".
        return (await self._run(stream.read, n)) or b""

    async def close(self) -> None:
        """Close every stream."""
        await self._run(self._sync.close)


class AsyncProcessFacade(AsyncTaskShortcuts, _Facade[Process]):
    """The asyncio twin of a blocking :class:`~libcontainerd.client.Process`."""

    def __init__(self, sync: Process, run: Runner) -> None:
        super().__init__(sync, run)
        self._io: AsyncProcessIOFacade | None = None

    @property
    def id(self) -> str:
        """The exec id, or the container id for a task."""
        return self._sync.id

    @property
    def container_id(self) -> str:
        """The container the process belongs to."""
        return self._sync.container_id

    @property
    def pid(self) -> int:
        """The host pid."""
        return self._sync.pid

    @property
    def io(self) -> AsyncProcessIOFacade | None:
        """The live streams (piped or terminal stdio only)."""
        streams = self._sync.io
        if streams is None:
            return None
        if self._io is None or self._io.streams is not streams:
            self._io = AsyncProcessIOFacade(streams, self._run)
        return self._io

    async def start(self) -> None:
        """Start the process."""
        await self._run(self._sync.start)

    async def kill(self, signal: int, *, all: bool = False) -> None:
        """Send ``signal`` (to every process of the container with ``all``)."""
        await self._run(self._sync.kill, signal, all=all)

    async def wait(self, timeout: float | None = None) -> ExitStatus:
        """Wait for the process to exit; cancelling the await releases the pool thread."""
        cancel = threading.Event()
        sync = self._sync
        try:
            if _takes_cancel(sync):
                return await self._run(sync.wait, timeout, cancel=cancel)
            return await self._run(_sliced_wait, sync, timeout, cancel)
        finally:
            # Set on every exit path: after a cancellation the blocking wait is still
            # running and stops at its next slice.
            cancel.set()

    async def status(self) -> Status:
        """The current status."""
        return await self._run(self._sync.status)

    async def resize(self, width: int, height: int) -> None:
        """Resize the terminal."""
        await self._run(self._sync.resize, width, height)

    async def close_stdin(self) -> None:
        """Close stdin so the process reads EOF."""
        await self._run(self._sync.close_stdin)

    async def delete(self) -> ExitStatus:
        """Delete the exited process; returns its exit status."""
        return await self._run(self._sync.delete)


class AsyncTaskFacade(AsyncProcessFacade):
    """The asyncio twin of a blocking :class:`~libcontainerd.client.Task`."""

    def __init__(self, sync: Task, run: Runner) -> None:
        super().__init__(sync, run)
        self._task = sync

    @property
    def sync(self) -> Task:
        """The blocking task this one drives."""
        return self._task

    async def pause(self) -> None:
        """Freeze every process of the container."""
        await self._run(self._task.pause)

    async def resume(self) -> None:
        """Thaw the container."""
        await self._run(self._task.resume)

    async def exec(
        self, process_id: str, process: ProcessSpec, *, stdio: Stdio | None = None
    ) -> AsyncProcessFacade:
        """Create (not start) an extra process."""
        created = await self._run(self._task.exec, process_id, process, stdio=stdio)
        return AsyncProcessFacade(created, self._run)

    async def load_process(
        self, process_id: str, *, stdio: Stdio | None = None
    ) -> AsyncProcessFacade:
        """A handle on an existing exec'd process, re-attached to its streams with ``stdio``."""
        process = await self._run(self._task.load_process, process_id, stdio=stdio)
        return AsyncProcessFacade(process, self._run)

    async def pids(self) -> list[ProcessInfo]:
        """The host pids of the container's processes."""
        return await self._run(self._task.pids)

    async def summary(self) -> Mapping[str, Any]:
        """A backend-specific summary of the task."""
        return await self._run(self._task.summary)

    async def stats(self) -> Stats:
        """Resource usage."""
        return await self._run(self._task.stats)

    async def update_resources(self, resources: Resources) -> None:
        """Change resource limits."""
        await self._run(self._task.update_resources, resources)

    async def create_checkpoint(self, checkpoint_dir: Path, *, exit: bool = False) -> None:
        """Checkpoint with CRIU."""
        await self._run(self._task.create_checkpoint, checkpoint_dir, exit=exit)

    async def force_delete(self) -> ExitStatus:
        """Kill every process and delete the task."""
        return await self._run(self._task.force_delete)


class AsyncContainerFacade(AsyncContainerShortcuts, _Facade[Container]):
    """The asyncio twin of a blocking :class:`~libcontainerd.client.Container`."""

    @property
    def id(self) -> str:
        """The container id."""
        return self._sync.id

    async def info(self) -> ContainerInfo:
        """The stored record."""
        return await self._run(self._sync.info)

    async def spec(self) -> Spec:
        """The OCI runtime spec."""
        return await self._run(self._sync.spec)

    async def labels(self) -> dict[str, str]:
        """The labels."""
        return await self._run(self._sync.labels)

    async def set_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """Merge ``labels`` into the container's labels."""
        return await self._run(self._sync.set_labels, labels)

    async def new_task(
        self, *, stdio: Stdio | None = None, checkpoint_dir: Path | None = None
    ) -> AsyncTaskFacade:
        """Create the task (created, not started)."""
        task = await self._run(self._sync.new_task, stdio=stdio, checkpoint_dir=checkpoint_dir)
        return AsyncTaskFacade(task, self._run)

    async def task(self) -> AsyncTaskFacade:
        """The existing task."""
        return AsyncTaskFacade(await self._run(self._sync.task), self._run)

    async def attach_task(self, *, stdio: Stdio | None = None) -> AsyncTaskFacade:
        """Re-attach to the existing task's stdio."""
        return AsyncTaskFacade(await self._run(self._sync.attach_task, stdio=stdio), self._run)

    async def delete(self, *, cleanup_snapshot: bool = True) -> None:
        """Delete the container."""
        await self._run(self._sync.delete, cleanup_snapshot=cleanup_snapshot)


class AsyncEventStreamFacade(_Facade[EventStream]):
    """An async iterator of events; ``aclose()`` (or ``async with``) unsubscribes."""

    def __aiter__(self) -> AsyncEventStreamFacade:
        return self

    async def __anext__(self) -> Event:
        sync = self._sync
        if isinstance(sync, PollableEventStream):
            # Short polls: an abandoned __anext__ gives its thread back within one poll.
            while True:
                polled = await self._run(sync.poll, _EVENT_POLL)
                if polled is not None:
                    return polled
                if sync.closed:
                    raise StopAsyncIteration
        event = await self._run(next, sync, None)
        if event is None:
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        """Stop the subscription; iteration ends."""
        self._sync.close()

    async def __aenter__(self) -> AsyncEventStreamFacade:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


ClientT = TypeVar("ClientT", bound=Client)
_Self = TypeVar("_Self", bound="AsyncClientFacade[Any]")


class AsyncClientFacade(AsyncClientShortcuts, _Facade[ClientT]):
    """The asyncio twin of a blocking client; ``close()`` also stops the thread pool."""

    def __init__(self, sync: ClientT, run: Runner) -> None:
        super().__init__(sync, run)
        self._closed = False

    @property
    def backend(self) -> BackendName:
        """Which backend this is: ``"local"`` or ``"remote"``."""
        return self._sync.backend

    @property
    def namespace(self) -> str:
        """The namespace every call acts in."""
        return self._sync.namespace

    @property
    def images(self) -> AsyncImageServiceFacade:
        """The image service."""
        return AsyncImageServiceFacade(lambda: self._sync.images, self._run)

    async def version(self) -> Version:
        """The version of the daemon or runtime behind this client."""
        return await self._run(self._sync.version)

    async def new_container(
        self,
        container_id: str,
        spec: Spec | None = None,
        *,
        image: str | None = None,
        runtime: str | None = None,
        runtime_options: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> AsyncContainerFacade:
        """Create a container (``extensions`` only reaches backends that take it)."""
        extra: dict[str, Any] = {} if extensions is None else {"extensions": extensions}
        container = await self._run(
            self._sync.new_container,
            container_id,
            spec,
            image=image,
            runtime=runtime,
            runtime_options=runtime_options,
            labels=labels,
            **extra,
        )
        return AsyncContainerFacade(container, self._run)

    def _wrap_container(self, container: Container) -> AsyncContainerFacade:
        return AsyncContainerFacade(container, self._run)

    async def load_container(self, container_id: str) -> AsyncContainerFacade:
        """A handle on an existing container."""
        found = await self._run(self._sync.load_container, container_id)
        return AsyncContainerFacade(found, self._run)

    async def containers(self, filters: Sequence[str] = ()) -> list[AsyncContainer]:
        """Every container in the namespace, optionally filtered."""
        found = await self._run(self._sync.containers, filters)
        return [AsyncContainerFacade(c, self._run) for c in found]

    def events(self, filters: Sequence[str] = ()) -> AsyncEventStreamFacade:
        """Subscribe to events from now on."""
        return AsyncEventStreamFacade(self._sync.events(filters), self._run)

    async def close(self) -> None:
        """Release the blocking client, then the pool (a second call does nothing)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._run(self._sync.close)
        finally:
            self._run.shutdown()

    async def __aenter__(self: _Self) -> _Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


if TYPE_CHECKING:
    from libcontainerd.client import (
        AsyncClient,
        AsyncEventStream,
        AsyncImageService,
        AsyncProcess,
        AsyncProcessIO,
        AsyncTask,
    )

    def _conforms(
        client: AsyncClientFacade[Client],
        container: AsyncContainerFacade,
        task: AsyncTaskFacade,
        process: AsyncProcessFacade,
        io: AsyncProcessIOFacade,
        events: AsyncEventStreamFacade,
        images: AsyncImageServiceFacade,
    ) -> tuple[
        AsyncClient,
        AsyncContainer,
        AsyncTask,
        AsyncProcess,
        AsyncProcessIO,
        AsyncEventStream,
        AsyncImageService,
    ]:
        # mypy proves here that the facade implements every async protocol.
        return (client, container, task, process, io, events, images)
