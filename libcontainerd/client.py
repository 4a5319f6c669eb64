"""The one interface both backends implement: client, container, task, process, images.

Every operation exists twice, once blocking (:class:`Client` and friends) and once
for asyncio (:class:`AsyncClient` and friends), with the same names, arguments
and results. A backend provides one implementation that serves both, so the two
cannot drift apart.

Objects are handles the caller keeps (client -> container -> task -> process):
a handle remembers what it learned so repeated calls need no extra round trip.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from libcontainerd.shortcuts import SupportsRun
from libcontainerd.types.aliases import (
    BackendName,
    EventCallback,
    ProcessSpec,
    ProgressCallback,
    Spec,
)
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

if TYPE_CHECKING:
    from libcontainerd.network import DnsConfig, Networks, PortMapping

__all__ = [
    "AsyncClient",
    "AsyncContainer",
    "AsyncEventStream",
    "AsyncImageService",
    "AsyncProcess",
    "AsyncProcessIO",
    "AsyncTask",
    "BackendName",
    "Client",
    "Container",
    "EventCallback",
    "EventStream",
    "ImageService",
    "PlatformRequest",
    "Process",
    "ProcessIO",
    "ProcessSpec",
    "ProgressCallback",
    "Spec",
    "Task",
]

_Self = TypeVar("_Self")


# --------------------------------------------------------------------------- sync


class ProcessIO(Protocol):
    """The live streams of a process started with ``PipedIO`` or ``TerminalIO``.

    A stream is ``None`` when it was not requested. Writing ``stdin`` and closing it
    delivers EOF to the process; ``close()`` releases every stream.
    """

    @property
    def stdin(self) -> IO[bytes] | None:
        """The write end of the process's stdin, when requested."""

    @property
    def stdout(self) -> IO[bytes] | None:
        """The process's stdout (a terminal's output), when requested."""

    @property
    def stderr(self) -> IO[bytes] | None:
        """The process's stderr, when requested (never with a terminal)."""

    def close(self) -> None:
        """Close every stream this object holds."""


@runtime_checkable
class Process(Protocol):
    """A process in a container: a task's init process or one added with ``exec``."""

    @property
    def id(self) -> str:
        """The process id in the backend (for a task: the container id)."""

    @property
    def container_id(self) -> str:
        """The id of the container the process belongs to."""

    @property
    def pid(self) -> int:
        """The host pid (0 before the process was created)."""

    @property
    def io(self) -> ProcessIO | None:
        """The live streams, when the process was created with piped or terminal stdio."""

    def start(self) -> None:
        """Start the process. A ``wait()`` begun before ``start()`` never misses its exit."""

    def kill(self, signal: int, *, all: bool = False) -> None:
        """Send ``signal``; with ``all=True`` to every process of the container."""

    def wait(self, timeout: float | None = None) -> ExitStatus:
        """Block until the process exits; raise ``DeadlineExceeded`` after ``timeout`` seconds."""

    def status(self) -> Status:
        """The current status."""

    def resize(self, width: int, height: int) -> None:
        """Resize the process's terminal (only for processes with a terminal)."""

    def close_stdin(self) -> None:
        """Close the process's stdin so it reads EOF."""

    def delete(self) -> ExitStatus:
        """Remove the exited process and its stdio; returns its exit status."""

    def stop(self, timeout: float = 10.0) -> ExitStatus:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit status."""

    def __enter__(self: _Self) -> _Self:
        """``with process:`` stops and deletes it on the way out."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leave ``with``: release or clean up what the object holds."""


@runtime_checkable
class Task(Process, Protocol):
    """The running instance of a container: its init process plus container-wide operations."""

    def pause(self) -> None:
        """Freeze every process of the container."""

    def resume(self) -> None:
        """Thaw a paused container."""

    def exec(self, process_id: str, process: ProcessSpec, *, stdio: Stdio | None = None) -> Process:
        """Create (not start) an extra process in the container."""

    def load_process(self, process_id: str, *, stdio: Stdio | None = None) -> Process:
        """A handle on an existing exec'd process; ``NotFound`` when there is none.

        With ``PipedIO`` or ``TerminalIO`` the handle re-attaches to the live streams the
        process was created with (after the caller restarted, say); without, ``io`` is None.
        """

    def pids(self) -> list[ProcessInfo]:
        """The host pids of every process in the container."""

    def summary(self) -> Mapping[str, Any]:
        """A backend-specific summary of the task (id, pid, status, exit details)."""

    def stats(self) -> Stats:
        """Resource usage from the container's cgroup."""

    def update_resources(self, resources: Resources) -> None:
        """Change the container's resource limits while it runs."""

    def create_checkpoint(self, checkpoint_dir: Path, *, exit: bool = False) -> None:
        """Checkpoint the container with CRIU into ``checkpoint_dir``; ``exit`` stops it after."""

    def force_delete(self) -> ExitStatus:
        """Kill every process and delete the task even when it still runs."""


@runtime_checkable
class Container(Protocol):
    """A container record: spec, labels and runtime, with at most one task."""

    @property
    def id(self) -> str:
        """The container id."""

    def info(self) -> ContainerInfo:
        """The container's stored record, freshly read."""

    def spec(self) -> Spec:
        """The container's OCI runtime spec."""

    def labels(self) -> dict[str, str]:
        """The container's labels."""

    def set_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """Merge ``labels`` into the container's labels (an empty value removes one)."""

    def new_task(
        self,
        *,
        stdio: Stdio | None = None,
        checkpoint_dir: Path | None = None,
    ) -> Task:
        """Create the container's task (created, not started). ``stdio`` defaults to NullIO."""

    def task(self) -> Task:
        """The container's existing task; ``NotFound`` when it has none."""

    def attach_task(self, *, stdio: Stdio | None = None) -> Task:
        """Re-attach to the existing task's stdio after the caller restarted."""

    def delete(self, *, cleanup_snapshot: bool = True) -> None:
        """Delete the container; ``FailedPrecondition`` while its task exists."""

    def logs(self, *, follow: bool = False) -> Iterator[bytes]:
        """The output ``LogIO`` kept, in chunks; ``follow`` reads on until the task exits."""

    def __enter__(self: _Self) -> _Self:
        """``with container:`` force-deletes its task and the container on the way out."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leave ``with``: release or clean up what the object holds."""


class EventStream(Protocol):
    """A blocking iterator of events; close it (or use ``with``) to unsubscribe."""

    def __iter__(self) -> Iterator[Event]: ...

    def __next__(self) -> Event: ...

    def close(self) -> None:
        """Stop the subscription."""

    def __enter__(self) -> EventStream:
        """``with`` hands back the stream; leaving closes it."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leave ``with``: release or clean up what the object holds."""


class ImageService(Protocol):
    """Images: pull from and push to registries, list, remove, import and export archives."""

    def pull(
        self,
        ref: str,
        *,
        platform: PlatformRequest | None = None,
        progress: ProgressCallback | None = None,
        auth: Credentials | None = None,
        unpack: bool = True,
    ) -> Image:
        """Pull ``ref`` for ``platform`` (default: this host) and, by default, unpack it."""

    def push(
        self,
        ref: str,
        *,
        source: str | None = None,
        platform: PlatformRequest | None = None,
        progress: ProgressCallback | None = None,
        auth: Credentials | None = None,
    ) -> Descriptor:
        """Push the local image ``source`` (default: ``ref``) to ``ref``'s registry."""

    def list(self, filters: Sequence[str] = ()) -> builtins.list[Image]:
        """Every image record, optionally filtered."""

    def get(self, ref: str) -> Image:
        """One image record; ``NotFound`` when absent."""

    def remove(self, ref: str, *, sync: bool = False) -> None:
        """Remove an image record; ``sync`` waits for garbage collection."""

    def import_archive(
        self,
        source: Path | str | IO[bytes],
        *,
        platform: PlatformRequest | None = None,
        base_name: str | None = None,
    ) -> builtins.list[Image]:
        """Import an OCI image-layout or docker-archive tarball (every platform by default).

        Images are named as ``ctr images import --base-name`` names them, on every backend:
        the ``io.containerd.image.name`` annotation, else a full reference in
        ``org.opencontainers.image.ref.name``, else ``<base_name>:<ref name>``, else the
        digest; docker archives by their ``RepoTags``.
        """

    def export_archive(
        self,
        refs: Sequence[str],
        dest: Path | str | IO[bytes],
        *,
        platform: PlatformRequest | None = None,
    ) -> None:
        """Write the images ``refs`` into an OCI image-layout tarball."""

    def tag(self, ref: str, new_ref: str) -> Image:
        """Give the image ``ref`` a second name ``new_ref``."""


@runtime_checkable
class Client(SupportsRun["Container"], Protocol):
    """A connection to one backend, bound to one namespace."""

    @property
    def backend(self) -> BackendName:
        """Which implementation this is: ``"local"`` or ``"remote"``."""

    @property
    def namespace(self) -> str:
        """The namespace every call acts in."""

    @property
    def images(self) -> ImageService:
        """The image service."""

    @property
    def networks(self) -> Networks:
        """CNI networks: create, list, remove, and each container's network status."""

    def version(self) -> Version:
        """The version of the daemon or runtime behind this client."""

    def new_container(
        self,
        container_id: str,
        spec: Spec | None = None,
        *,
        image: str | None = None,
        runtime: str | None = None,
        runtime_options: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        network: str | None = None,
        ports: Sequence[str | PortMapping] | None = None,
        dns: DnsConfig | Sequence[str] | None = None,
        hostname: str | None = None,
    ) -> Container:
        """Create a container from ``spec`` (and ``image``'s root filesystem and config).

        ``network`` is ``"none"`` (loopback only), ``"host"``, ``"bridge"`` or a CNI
        network's name; without any of ``network``, ``ports``, ``dns`` and ``hostname``
        the spec's own namespace is kept (loopback only) and no files are generated.
        """

    def load_container(self, container_id: str) -> Container:
        """A handle on an existing container; ``NotFound`` when absent."""

    def containers(self, filters: Sequence[str] = ()) -> list[Container]:
        """Every container in the namespace, optionally filtered."""

    def events(self, filters: Sequence[str] = ()) -> EventStream:
        """Subscribe to events from now on.

        Remote: containerd acknowledges a subscription only by delivering its first event,
        so the stream goes live a moment after this returns; to see every event of a
        container, create it once an event of the stream (or of ``on_event``) has arrived.
        """

    def close(self) -> None:
        """Release connections, threads and stdio the client holds."""

    def __enter__(self) -> Client:
        """``with`` hands back the client; leaving closes it."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leave ``with``: release or clean up what the object holds."""


# The asyncio twins live in their own module; imported here so both come from one place.
from libcontainerd.async_client import (  # noqa: E402
    AsyncClient,
    AsyncContainer,
    AsyncEventStream,
    AsyncImageService,
    AsyncProcess,
    AsyncProcessIO,
    AsyncTask,
)
