"""The asyncio twins of the protocols in :mod:`libcontainerd.client`.

Every operation has the name, arguments and result of its blocking twin and is awaited;
the async facade (:mod:`libcontainerd._async_facade`) implements them for every backend
by running the blocking implementation on a thread pool.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, TypeVar, runtime_checkable

from libcontainerd.types.aliases import BackendName, ProcessSpec, ProgressCallback, Spec
from libcontainerd.types.auth import Credentials
from libcontainerd.types.container import ContainerInfo
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.events import Event
from libcontainerd.types.image import Image
from libcontainerd.types.platform import PlatformRequest
from libcontainerd.types.process import ProcessInfo
from libcontainerd.types.stats import Resources, Stats
from libcontainerd.types.status import ExitStatus, Status
from libcontainerd.types.stdio import Stdio
from libcontainerd.types.version import Version

__all__ = [
    "AsyncClient",
    "AsyncContainer",
    "AsyncEventStream",
    "AsyncImageService",
    "AsyncProcess",
    "AsyncProcessIO",
    "AsyncTask",
]

_Self = TypeVar("_Self")


class AsyncProcessIO(Protocol):
    """The live streams of a process, for asyncio callers."""

    async def write(self, data: bytes) -> None:
        """Write to the process's stdin."""

    async def close_stdin(self) -> None:
        """Send EOF on stdin."""

    async def read_stdout(self, n: int = -1) -> bytes:
        """Read stdout: up to ``n`` bytes, or to EOF when ``n`` is -1; ``b""`` at EOF."""

    async def read_stderr(self, n: int = -1) -> bytes:
        """Read stderr like ``read_stdout``."""

    async def close(self) -> None:
        """Close every stream."""


@runtime_checkable
class AsyncProcess(Protocol):
    """The asyncio twin of :class:`Process`."""

    @property
    def id(self) -> str:
        """As :meth:`~libcontainerd.client.ProcessIO.write`, awaited."""

    @property
    def container_id(self) -> str:
        """As :meth:`~libcontainerd.client.Process.container_id`, awaited."""

    @property
    def pid(self) -> int:
        """As :meth:`~libcontainerd.client.Process.pid`, awaited."""

    @property
    def io(self) -> AsyncProcessIO | None:
        """As :meth:`~libcontainerd.client.Process.io`, awaited."""

    async def start(self) -> None:
        """As :meth:`~libcontainerd.client.Process.start`, awaited."""

    async def kill(self, signal: int, *, all: bool = False) -> None:
        """As :meth:`~libcontainerd.client.Process.kill`, awaited."""

    async def wait(self, timeout: float | None = None) -> ExitStatus:
        """As :meth:`~libcontainerd.client.Process.wait`, awaited."""

    async def status(self) -> Status:
        """As :meth:`~libcontainerd.client.Process.status`, awaited."""

    async def resize(self, width: int, height: int) -> None:
        """As :meth:`~libcontainerd.client.Process.resize`, awaited."""

    async def close_stdin(self) -> None:
        """As :meth:`~libcontainerd.client.Process.close_stdin`, awaited."""

    async def delete(self) -> ExitStatus:
        """As :meth:`~libcontainerd.client.Process.delete`, awaited."""

    async def stop(self, timeout: float = 10.0) -> ExitStatus:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit status."""

    async def __aenter__(self: _Self) -> _Self:
        """As :meth:`~libcontainerd.client.Process.stop`, awaited."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leave ``async with``: release what the ``with`` held."""


@runtime_checkable
class AsyncTask(AsyncProcess, Protocol):
    """The asyncio twin of :class:`Task`."""

    async def pause(self) -> None:
        """As :meth:`~libcontainerd.client.Task.pause`, awaited."""

    async def resume(self) -> None:
        """As :meth:`~libcontainerd.client.Task.resume`, awaited."""

    async def exec(
        self, process_id: str, process: ProcessSpec, *, stdio: Stdio | None = None
    ) -> AsyncProcess:
        """As :meth:`~libcontainerd.client.Task.exec`, awaited."""

    async def load_process(self, process_id: str, *, stdio: Stdio | None = None) -> AsyncProcess:
        """As :meth:`~libcontainerd.client.Task.load_process`, awaited."""

    async def pids(self) -> list[ProcessInfo]:
        """As :meth:`~libcontainerd.client.Task.pids`, awaited."""

    async def summary(self) -> Mapping[str, Any]:
        """As :meth:`~libcontainerd.client.Task.summary`, awaited."""

    async def stats(self) -> Stats:
        """As :meth:`~libcontainerd.client.Task.stats`, awaited."""

    async def update_resources(self, resources: Resources) -> None:
        """As :meth:`~libcontainerd.client.Task.update_resources`, awaited."""

    async def create_checkpoint(self, checkpoint_dir: Path, *, exit: bool = False) -> None:
        """As :meth:`~libcontainerd.client.Task.create_checkpoint`, awaited."""

    async def force_delete(self) -> ExitStatus:
        """As :meth:`~libcontainerd.client.Task.force_delete`, awaited."""


@runtime_checkable
class AsyncContainer(Protocol):
    """The asyncio twin of :class:`Container`."""

    @property
    def id(self) -> str:
        """As :meth:`~libcontainerd.client.Container.id`, awaited."""

    async def info(self) -> ContainerInfo:
        """As :meth:`~libcontainerd.client.Container.info`, awaited."""

    async def spec(self) -> Spec:
        """As :meth:`~libcontainerd.client.Container.spec`, awaited."""

    async def labels(self) -> dict[str, str]:
        """As :meth:`~libcontainerd.client.Container.labels`, awaited."""

    async def set_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """As :meth:`~libcontainerd.client.Container.set_labels`, awaited."""

    async def new_task(
        self, *, stdio: Stdio | None = None, checkpoint_dir: Path | None = None
    ) -> AsyncTask:
        """As :meth:`~libcontainerd.client.Container.new_task`, awaited."""

    async def task(self) -> AsyncTask:
        """As :meth:`~libcontainerd.client.Container.task`, awaited."""

    async def attach_task(self, *, stdio: Stdio | None = None) -> AsyncTask:
        """As :meth:`~libcontainerd.client.Container.attach_task`, awaited."""

    async def delete(self, *, cleanup_snapshot: bool = True) -> None:
        """As :meth:`~libcontainerd.client.Container.delete`, awaited."""

    def logs(self, *, follow: bool = False) -> AsyncIterator[bytes]:
        """The output ``LogIO`` kept, in chunks; ``follow`` reads on until the task exits."""

    async def __aenter__(self: _Self) -> _Self:
        """As :meth:`~libcontainerd.client.Container.logs`, awaited."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leave ``async with``: release what the ``with`` held."""


class AsyncEventStream(Protocol):
    """An async iterator of events; ``aclose()`` (or ``async with``) unsubscribes."""

    def __aiter__(self) -> AsyncIterator[Event]:
        """The iterator itself."""

    async def __anext__(self) -> Event:
        """The next event; ``StopAsyncIteration`` once closed."""

    async def aclose(self) -> None:
        """Stop the subscription; iteration ends."""

    async def __aenter__(self) -> AsyncEventStream:
        """Enter ``async with``."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leave ``async with``: release what the ``with`` held."""


class AsyncImageService(Protocol):
    """The asyncio twin of :class:`ImageService`."""

    async def pull(
        self,
        ref: str,
        *,
        platform: PlatformRequest | None = None,
        progress: ProgressCallback | None = None,
        auth: Credentials | None = None,
        unpack: bool = True,
    ) -> Image:
        """As :meth:`~libcontainerd.client.ImageService.pull`, awaited."""

    async def push(
        self,
        ref: str,
        *,
        source: str | None = None,
        platform: PlatformRequest | None = None,
        progress: ProgressCallback | None = None,
        auth: Credentials | None = None,
    ) -> Descriptor:
        """As :meth:`~libcontainerd.client.ImageService.push`, awaited."""

    async def list(self, filters: Sequence[str] = ()) -> builtins.list[Image]:
        """As :meth:`~libcontainerd.client.ImageService.list`, awaited."""

    async def get(self, ref: str) -> Image:
        """As :meth:`~libcontainerd.client.ImageService.get`, awaited."""

    async def remove(self, ref: str, *, sync: bool = False) -> None:
        """As :meth:`~libcontainerd.client.ImageService.remove`, awaited."""

    async def import_archive(
        self,
        source: Path | str | IO[bytes],
        *,
        platform: PlatformRequest | None = None,
        base_name: str | None = None,
    ) -> builtins.list[Image]:
        """As :meth:`~libcontainerd.client.ImageService.import_archive`, awaited."""

    async def export_archive(
        self,
        refs: Sequence[str],
        dest: Path | str | IO[bytes],
        *,
        platform: PlatformRequest | None = None,
    ) -> None:
        """As :meth:`~libcontainerd.client.ImageService.export_archive`, awaited."""

    async def tag(self, ref: str, new_ref: str) -> Image:
        """Give the image ``ref`` a second name ``new_ref``."""


@runtime_checkable
class AsyncClient(Protocol):
    """The asyncio twin of :class:`Client`."""

    @property
    def backend(self) -> BackendName:
        """As :attr:`~libcontainerd.client.Client.backend`."""

    @property
    def namespace(self) -> str:
        """As :meth:`~libcontainerd.client.Client.namespace`, awaited."""

    @property
    def images(self) -> AsyncImageService:
        """As :meth:`~libcontainerd.client.Client.images`, awaited."""

    async def version(self) -> Version:
        """As :meth:`~libcontainerd.client.Client.version`, awaited."""

    async def new_container(
        self,
        container_id: str,
        spec: Spec | None = None,
        *,
        image: str | None = None,
        runtime: str | None = None,
        runtime_options: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> AsyncContainer:
        """As :meth:`~libcontainerd.client.Client.new_container`, awaited."""

    async def load_container(self, container_id: str) -> AsyncContainer:
        """As :meth:`~libcontainerd.client.Client.load_container`, awaited."""

    async def containers(self, filters: Sequence[str] = ()) -> list[AsyncContainer]:
        """As :meth:`~libcontainerd.client.Client.containers`, awaited."""

    def events(self, filters: Sequence[str] = ()) -> AsyncEventStream:
        """As :meth:`~libcontainerd.client.Client.events`, awaited."""

    async def close(self) -> None:
        """As :meth:`~libcontainerd.client.Client.close`, awaited."""

    async def run(
        self, image: str, args: Sequence[str] = (), *, detach: bool = False, **options: Any
    ) -> Any:
        """``RunResult`` of ``args`` run in a new container, or the started ``AsyncContainer``
        with ``detach=True`` (the keywords of the blocking ``Client.run``)."""

    async def __aenter__(self) -> AsyncClient:
        """As :meth:`~libcontainerd.client.Client.run`, awaited."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leave ``async with``: release what the ``with`` held."""
