"""The asyncio facade of the local backend: every call runs the sync core in a thread.

Only the sync classes in :mod:`._client` hold behaviour; these wrappers forward to them
with :func:`asyncio.to_thread`, so the two APIs cannot drift.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

from libcontainerd.client import AsyncContainer, ProcessSpec, Spec
from libcontainerd.errors import FailedPrecondition
from libcontainerd.local._client import (
    LocalClient,
    LocalContainer,
    LocalProcess,
    LocalTask,
)
from libcontainerd.local._events import LocalEventStream
from libcontainerd.local._stdio import FifoIO
from libcontainerd.types.container import ContainerInfo
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.events import Event
from libcontainerd.types.image import Image
from libcontainerd.types.process import ProcessInfo
from libcontainerd.types.stats import Resources, Stats
from libcontainerd.types.status import ExitStatus, Status
from libcontainerd.types.stdio import Stdio
from libcontainerd.types.version import Version

__all__ = [
    "AsyncLocalClient",
    "AsyncLocalContainer",
    "AsyncLocalEventStream",
    "AsyncLocalImageService",
    "AsyncLocalProcess",
    "AsyncLocalProcessIO",
    "AsyncLocalTask",
]


class AsyncLocalProcessIO:
    """Async access to a process's live streams."""

    def __init__(self, io: FifoIO) -> None:
        self._io = io

    @staticmethod
    def _stream(stream: IO[bytes] | None, name: str) -> IO[bytes]:
        if stream is None:
            raise FailedPrecondition(f"the process has no {name} stream")
        return stream

    async def write(self, data: bytes) -> None:
        """Write to stdin."""
        await asyncio.to_thread(self._stream(self._io.stdin, "stdin").write, data)

    async def close_stdin(self) -> None:
        """Close stdin."""
        await asyncio.to_thread(self._io.close_stdin)

    async def read_stdout(self, n: int = -1) -> bytes:
        """Read stdout (to EOF when ``n`` is -1); ``b""`` when there is no such stream."""
        return await self._read(self._io.stdout, n)

    async def read_stderr(self, n: int = -1) -> bytes:
        """Read stderr like :meth:`read_stdout` (a terminal has none: always ``b""``)."""
        return await self._read(self._io.stderr, n)

    @staticmethod
    async def _read(stream: IO[bytes] | None, n: int) -> bytes:
        if stream is None:
            return b""
        data = await asyncio.to_thread(stream.read, n)
        return data or b""

    async def close(self) -> None:
        """Close every stream."""
        await asyncio.to_thread(self._io.close)


class AsyncLocalProcess:
    """The asyncio twin of :class:`LocalProcess`."""

    def __init__(self, sync: LocalProcess) -> None:
        self.sync = sync
        self._io = AsyncLocalProcessIO(sync.io) if sync.io is not None else None

    @property
    def id(self) -> str:
        """The process id."""
        return self.sync.id

    @property
    def container_id(self) -> str:
        """The container id."""
        return self.sync.container_id

    @property
    def pid(self) -> int:
        """The host pid."""
        return self.sync.pid

    @property
    def io(self) -> AsyncLocalProcessIO | None:
        """The live streams."""
        return self._io

    async def start(self) -> None:
        """Start the process."""
        await asyncio.to_thread(self.sync.start)

    async def kill(self, signal: int, *, all: bool = False) -> None:
        """Send a signal."""
        await asyncio.to_thread(self.sync.kill, signal, all=all)

    async def wait(self, timeout: float | None = None) -> ExitStatus:
        """Wait for the exit."""
        return await asyncio.to_thread(self.sync.wait, timeout)

    async def status(self) -> Status:
        """The status."""
        return await asyncio.to_thread(self.sync.status)

    async def resize(self, width: int, height: int) -> None:
        """Resize the terminal."""
        await asyncio.to_thread(self.sync.resize, width, height)

    async def close_stdin(self) -> None:
        """Close stdin."""
        await asyncio.to_thread(self.sync.close_stdin)

    async def delete(self) -> ExitStatus:
        """Delete the exited process."""
        return await asyncio.to_thread(self.sync.delete)


class AsyncLocalTask(AsyncLocalProcess):
    """The asyncio twin of :class:`LocalTask`."""

    sync: LocalTask

    def __init__(self, sync: LocalTask) -> None:
        super().__init__(sync)

    async def pause(self) -> None:
        """Freeze the container."""
        await asyncio.to_thread(self.sync.pause)

    async def resume(self) -> None:
        """Thaw the container."""
        await asyncio.to_thread(self.sync.resume)

    async def exec(
        self, process_id: str, process: ProcessSpec, *, stdio: Stdio | None = None
    ) -> AsyncLocalProcess:
        """Create an exec'd process."""
        return AsyncLocalProcess(
            await asyncio.to_thread(self.sync.exec, process_id, process, stdio=stdio)
        )

    async def load_process(self, process_id: str) -> AsyncLocalProcess:
        """A handle on an exec'd process."""
        return AsyncLocalProcess(await asyncio.to_thread(self.sync.load_process, process_id))

    async def pids(self) -> list[ProcessInfo]:
        """The container's pids."""
        return await asyncio.to_thread(self.sync.pids)

    async def summary(self) -> Mapping[str, Any]:
        """A summary of the task."""
        return await asyncio.to_thread(self.sync.summary)

    async def stats(self) -> Stats:
        """Resource usage."""
        return await asyncio.to_thread(self.sync.stats)

    async def update_resources(self, resources: Resources) -> None:
        """Change resource limits."""
        await asyncio.to_thread(self.sync.update_resources, resources)

    async def create_checkpoint(self, checkpoint_dir: Path, *, exit: bool = False) -> None:
        """Checkpoint with CRIU."""
        await asyncio.to_thread(self.sync.create_checkpoint, checkpoint_dir, exit=exit)

    async def force_delete(self) -> ExitStatus:
        """Kill and delete the task."""
        return await asyncio.to_thread(self.sync.force_delete)


class AsyncLocalContainer:
    """The asyncio twin of :class:`LocalContainer`."""

    def __init__(self, sync: LocalContainer) -> None:
        self.sync = sync

    @property
    def id(self) -> str:
        """The container id."""
        return self.sync.id

    async def info(self) -> ContainerInfo:
        """The stored record."""
        return await asyncio.to_thread(self.sync.info)

    async def spec(self) -> Spec:
        """The OCI spec."""
        return await asyncio.to_thread(self.sync.spec)

    async def labels(self) -> dict[str, str]:
        """The labels."""
        return await asyncio.to_thread(self.sync.labels)

    async def set_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """Merge labels."""
        return await asyncio.to_thread(self.sync.set_labels, labels)

    async def new_task(
        self, *, stdio: Stdio | None = None, checkpoint_dir: Path | None = None
    ) -> AsyncLocalTask:
        """Create the task."""
        return AsyncLocalTask(
            await asyncio.to_thread(self.sync.new_task, stdio=stdio, checkpoint_dir=checkpoint_dir)
        )

    async def task(self) -> AsyncLocalTask:
        """The existing task."""
        return AsyncLocalTask(await asyncio.to_thread(self.sync.task))

    async def attach_task(self, *, stdio: Stdio | None = None) -> AsyncLocalTask:
        """Re-attach to the existing task."""
        return AsyncLocalTask(await asyncio.to_thread(self.sync.attach_task, stdio=stdio))

    async def delete(self, *, cleanup_snapshot: bool = True) -> None:
        """Delete the container."""
        await asyncio.to_thread(self.sync.delete, cleanup_snapshot=cleanup_snapshot)


class AsyncLocalEventStream:
    """An async iterator over a :class:`LocalEventStream`."""

    def __init__(self, sync: LocalEventStream) -> None:
        self.sync = sync

    def __aiter__(self) -> AsyncLocalEventStream:
        return self

    async def __anext__(self) -> Event:
        while True:
            event = await asyncio.to_thread(self.sync.poll, 0.5)
            if event is not None:
                return event
            if self.sync.closed:
                raise StopAsyncIteration

    async def aclose(self) -> None:
        """Unsubscribe."""
        self.sync.close()

    async def __aenter__(self) -> AsyncLocalEventStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.sync.close()


class AsyncLocalImageService:
    """The asyncio twin of the local image service: each call runs in a thread."""

    def __init__(self, client: LocalClient) -> None:
        self._client = client

    async def pull(self, ref: str, **kwargs: Any) -> Image:
        """Pull ``ref`` (see ``LocalImageService.pull``)."""
        return await asyncio.to_thread(lambda: self._client.images.pull(ref, **kwargs))

    async def push(self, ref: str, **kwargs: Any) -> Descriptor:
        """Push ``ref`` (see ``LocalImageService.push``)."""
        return await asyncio.to_thread(lambda: self._client.images.push(ref, **kwargs))

    async def list(self, filters: Sequence[str] = ()) -> builtins.list[Image]:
        """Every image record, optionally filtered."""
        return await asyncio.to_thread(lambda: self._client.images.list(filters))

    async def get(self, ref: str, **kwargs: Any) -> Image:
        """One image record."""
        return await asyncio.to_thread(lambda: self._client.images.get(ref, **kwargs))

    async def remove(self, ref: str, *, sync: bool = False) -> None:
        """Remove an image record."""
        await asyncio.to_thread(lambda: self._client.images.remove(ref, sync=sync))

    async def import_archive(self, source: Any, **kwargs: Any) -> builtins.list[Image]:
        """Import an image archive."""
        return await asyncio.to_thread(lambda: self._client.images.import_archive(source, **kwargs))

    async def export_archive(self, refs: Sequence[str], dest: Any, **kwargs: Any) -> None:
        """Export images to an archive."""
        await asyncio.to_thread(lambda: self._client.images.export_archive(refs, dest, **kwargs))


class AsyncLocalClient:
    """The asyncio twin of :class:`LocalClient`."""

    def __init__(self, sync: LocalClient) -> None:
        self.sync = sync
        self._images = AsyncLocalImageService(sync)

    @property
    def backend(self) -> Literal["local"]:
        """Always ``"local"``."""
        return "local"

    @property
    def namespace(self) -> str:
        """The namespace."""
        return self.sync.namespace

    @property
    def images(self) -> AsyncLocalImageService:
        """The image service."""
        return self._images

    async def version(self) -> Version:
        """The runtime version."""
        return await asyncio.to_thread(self.sync.version)

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
    ) -> AsyncLocalContainer:
        """Create a container."""
        return AsyncLocalContainer(
            await asyncio.to_thread(
                self.sync.new_container,
                container_id,
                spec,
                image=image,
                runtime=runtime,
                runtime_options=runtime_options,
                labels=labels,
                extensions=extensions,
            )
        )

    async def load_container(self, container_id: str) -> AsyncLocalContainer:
        """Load a container."""
        return AsyncLocalContainer(await asyncio.to_thread(self.sync.load_container, container_id))

    async def containers(self, filters: Sequence[str] = ()) -> list[AsyncContainer]:
        """List containers."""
        found = await asyncio.to_thread(self.sync.containers, filters)
        return [AsyncLocalContainer(c) for c in found if isinstance(c, LocalContainer)]

    def events(self, filters: Sequence[str] = ()) -> AsyncLocalEventStream:
        """Subscribe to events."""
        return AsyncLocalEventStream(self.sync.events(filters))

    async def close(self) -> None:
        """Release resources."""
        self.sync.close()

    async def __aenter__(self) -> AsyncLocalClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
