"""The asyncio face of the remote backend: each call runs the blocking implementation in
:mod:`libcontainerd.remote._client` on a client-owned thread pool, so behaviour is written
once (see ``benchmarks/remote_call_overhead.py`` for why this direction was chosen).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar

from ..config import ClientConfig
from ..errors import Unimplemented
from ..types.container import ContainerInfo
from ..types.events import Event
from ..types.process import ProcessInfo
from ..types.stats import Resources, Stats
from ..types.status import ExitStatus, Status
from ..types.stdio import Stdio
from ..types.version import Version
from ._client import RemoteClient, RemoteContainer, RemoteProcess, RemoteTask
from ._events import RemoteEventStream
from ._stdio import PipedStreams

__all__ = [
    "AsyncRemoteClient",
    "AsyncRemoteContainer",
    "AsyncRemoteEventStream",
    "AsyncRemoteProcess",
    "AsyncRemoteProcessIO",
    "AsyncRemoteTask",
]

P = ParamSpec("P")
T = TypeVar("T")

# Blocking calls such as Wait and event streams each hold a thread while they last.
_MAX_THREADS = 256


class _Runner:
    """Runs blocking calls off the event loop on a private pool."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(_MAX_THREADS, thread_name_prefix="libcontainerd-remote")

    async def __call__(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class AsyncRemoteProcessIO:
    """The live streams of a process, for asyncio callers."""

    def __init__(self, streams: PipedStreams, run: _Runner) -> None:
        self._streams = streams
        self._run = run

    @property
    def streams(self) -> PipedStreams:
        """The underlying blocking streams."""
        return self._streams

    async def write(self, data: bytes) -> None:
        """Write to the process's stdin."""
        stdin = self._streams.stdin
        if stdin is None:
            raise Unimplemented("the process was created without stdin (PipedIO(stdin=False))")
        await self._run(stdin.write, data)

    async def close_stdin(self) -> None:
        """Send EOF on stdin."""
        if self._streams.stdin is not None:
            await self._run(self._streams.stdin.close)

    async def read_stdout(self, n: int = -1) -> bytes:
        """Read stdout: up to ``n`` bytes, or to EOF when ``n`` is -1; ``b""`` at EOF."""
        stream = self._streams.stdout
        return b"" if stream is None else await self._run(stream.read, n)

    async def read_stderr(self, n: int = -1) -> bytes:
        """Read stderr like ``read_stdout``."""
        stream = self._streams.stderr
        return b"" if stream is None else await self._run(stream.read, n)

    async def close(self) -> None:
        """Close every stream."""
        await self._run(self._streams.close)


class AsyncRemoteProcess:
    """The asyncio twin of :class:`~libcontainerd.remote._client.RemoteProcess`."""

    def __init__(self, sync: RemoteProcess, run: _Runner) -> None:
        self._sync = sync
        self._run = run

    @property
    def sync(self) -> RemoteProcess:
        """The blocking handle this one drives."""
        return self._sync

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
    def io(self) -> AsyncRemoteProcessIO | None:
        """The live streams (piped or terminal stdio only)."""
        streams = self._sync.io
        return None if streams is None else AsyncRemoteProcessIO(streams, self._run)

    async def start(self) -> None:
        """Start the process."""
        await self._run(self._sync.start)

    async def kill(self, signal: int, *, all: bool = False) -> None:
        """Send ``signal``."""
        await self._run(self._sync.kill, signal, all=all)

    async def wait(self, timeout: float | None = None) -> ExitStatus:
        """Wait for the process to exit; cancelling the await releases the pool thread."""
        cancel = threading.Event()
        try:
            return await self._run(self._sync.wait, timeout, cancel=cancel)
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
        """Close stdin."""
        await self._run(self._sync.close_stdin)

    async def delete(self) -> ExitStatus:
        """Delete the exited process."""
        return await self._run(self._sync.delete)


class AsyncRemoteTask(AsyncRemoteProcess):
    """The asyncio twin of :class:`~libcontainerd.remote._client.RemoteTask`."""

    def __init__(self, sync: RemoteTask, run: _Runner) -> None:
        super().__init__(sync, run)
        self._task = sync

    async def pause(self) -> None:
        """Freeze the container."""
        await self._run(self._task.pause)

    async def resume(self) -> None:
        """Thaw the container."""
        await self._run(self._task.resume)

    async def exec(
        self, process_id: str, process: Mapping[str, Any], *, stdio: Stdio | None = None
    ) -> AsyncRemoteProcess:
        """Create an extra process."""
        result = await self._run(self._task.exec, process_id, process, stdio=stdio)
        return AsyncRemoteProcess(result, self._run)

    async def load_process(self, process_id: str) -> AsyncRemoteProcess:
        """A handle on an existing exec."""
        return AsyncRemoteProcess(await self._run(self._task.load_process, process_id), self._run)

    async def pids(self) -> list[ProcessInfo]:
        """Pids of the container's processes."""
        return await self._run(self._task.pids)

    async def summary(self) -> Mapping[str, Any]:
        """The task as containerd reports it."""
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
        """Kill and delete."""
        return await self._run(self._task.force_delete)


class AsyncRemoteContainer:
    """The asyncio twin of :class:`~libcontainerd.remote._client.RemoteContainer`."""

    def __init__(self, sync: RemoteContainer, run: _Runner) -> None:
        self._sync = sync
        self._run = run

    @property
    def id(self) -> str:
        """The container id."""
        return self._sync.id

    async def info(self) -> ContainerInfo:
        """The stored record."""
        return await self._run(self._sync.info)

    async def spec(self) -> dict[str, Any]:
        """The OCI spec."""
        return await self._run(self._sync.spec)

    async def labels(self) -> dict[str, str]:
        """The labels."""
        return await self._run(self._sync.labels)

    async def set_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """Merge labels."""
        return await self._run(self._sync.set_labels, labels)

    async def new_task(
        self, *, stdio: Stdio | None = None, checkpoint_dir: Path | None = None
    ) -> AsyncRemoteTask:
        """Create the task."""
        task = await self._run(self._sync.new_task, stdio=stdio, checkpoint_dir=checkpoint_dir)
        return AsyncRemoteTask(task, self._run)

    async def task(self) -> AsyncRemoteTask:
        """The existing task."""
        return AsyncRemoteTask(await self._run(self._sync.task), self._run)

    async def attach_task(self, *, stdio: Stdio | None = None) -> AsyncRemoteTask:
        """Re-attach to the task's stdio."""
        return AsyncRemoteTask(await self._run(self._sync.attach_task, stdio=stdio), self._run)

    async def delete(self, *, cleanup_snapshot: bool = True) -> None:
        """Delete the container."""
        await self._run(self._sync.delete, cleanup_snapshot=cleanup_snapshot)


class AsyncRemoteEventStream:
    """An async iterator of events; ``aclose()`` unsubscribes."""

    def __init__(self, sync: RemoteEventStream, run: _Runner) -> None:
        self._sync = sync
        self._run = run

    def __aiter__(self) -> AsyncRemoteEventStream:
        return self

    async def __anext__(self) -> Event:
        event = await self._run(next, self._sync, None)
        if event is None:
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        """Stop the subscription."""
        self._sync.close()

    async def __aenter__(self) -> AsyncRemoteEventStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _AsyncExtra:
    """Async view of a remote-only helper (namespaces, introspection, leases)."""

    def __init__(self, sync: object, run: _Runner) -> None:
        self._sync = sync
        self._run = run

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._sync, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._run(method, *args, **kwargs)

        return call


class AsyncRemoteClient:
    """The asyncio client for one containerd namespace."""

    def __init__(self, config: ClientConfig) -> None:
        self._sync = RemoteClient(config)
        self._run = _Runner()
        self.namespaces: Any = _AsyncExtra(self._sync.namespaces, self._run)
        """Async namespaces helper (same methods as the blocking one, awaited)."""
        self.introspection: Any = _AsyncExtra(self._sync.introspection, self._run)
        """Async introspection helper."""
        self.leases: Any = _AsyncExtra(self._sync.leases, self._run)
        """Async leases helper."""

    @property
    def sync(self) -> RemoteClient:
        """The blocking client this one drives."""
        return self._sync

    @property
    def backend(self) -> Literal["remote"]:
        """Always ``"remote"``."""
        return "remote"

    @property
    def namespace(self) -> str:
        """The namespace every call acts in."""
        return self._sync.namespace

    @property
    def images(self) -> Any:
        """The image service (every operation raises ``Unimplemented`` in this version)."""
        return _AsyncExtra(self._sync.images, self._run)

    async def version(self) -> Version:
        """containerd's version."""
        return await self._run(self._sync.version)

    async def new_container(
        self,
        container_id: str,
        spec: Mapping[str, Any] | None = None,
        *,
        image: str | None = None,
        runtime: str | None = None,
        runtime_options: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> AsyncRemoteContainer:
        """Create a container."""
        container = await self._run(
            self._sync.new_container,
            container_id,
            spec,
            image=image,
            runtime=runtime,
            runtime_options=runtime_options,
            labels=labels,
            extensions=extensions,
        )
        return AsyncRemoteContainer(container, self._run)

    async def load_container(self, container_id: str) -> AsyncRemoteContainer:
        """A handle on an existing container."""
        return AsyncRemoteContainer(
            await self._run(self._sync.load_container, container_id), self._run
        )

    async def containers(self, filters: Sequence[str] = ()) -> list[AsyncRemoteContainer]:
        """Every container, optionally filtered."""
        found = await self._run(self._sync.containers, filters)
        return [AsyncRemoteContainer(c, self._run) for c in found]

    def events(self, filters: Sequence[str] = ()) -> AsyncRemoteEventStream:
        """Subscribe to events from now on."""
        return AsyncRemoteEventStream(self._sync.events(filters), self._run)

    async def close(self) -> None:
        """Release the connection, streams and threads."""
        await self._run(self._sync.close)
        self._run.shutdown()

    async def __aenter__(self) -> AsyncRemoteClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
