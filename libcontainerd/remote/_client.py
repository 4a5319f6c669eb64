"""The remote backend's one implementation: blocking handles over containerd's gRPC API.

:mod:`libcontainerd.remote._async` wraps these same objects for asyncio, so the
behaviour lives here only.
"""

from __future__ import annotations

import contextlib
import signal as _signal
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from google.protobuf import any_pb2, empty_pb2, field_mask_pb2

from .._backend_rules import (
    EventCallbackPump,
    check_filters,
    check_labels,
    check_runtime_name,
    check_signal,
    check_terminal,
    check_terminal_size,
    container_exists,
    container_not_found,
    exec_exists,
    no_terminal,
    process_not_found,
    runtime_failure,
    task_exists,
    task_not_found,
)
from .._checkpoint import restore_dir
from .._health import HealthStatus, check_health
from ..client import Container
from ..config import ClientConfig
from ..errors import (
    AlreadyExists,
    Canceled,
    DeadlineExceeded,
    Error,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unimplemented,
    Unknown,
)
from ..oci.validate import validate_process, validate_spec
from ..types.container import ContainerInfo
from ..types.process import ProcessInfo
from ..types.stats import Resources, Stats
from ..types.status import ExitStatus, Status
from ..types.stdio import Stdio
from ..types.version import Version
from . import _convert
from ._convert import RUNC_OPTIONS_TYPE
from ._events import RemoteEventStream, subscribe
from ._extras import Introspection, Leases, Namespaces
from ._pb.containerd.runc.v1 import oci_pb2
from ._pb.containerd.services.containers.v1 import containers_pb2
from ._pb.containerd.services.tasks.v1 import tasks_pb2
from ._pb.containerd.v1.types import task_pb2
from ._stdio import PipedStreams, ProcessStdio, attach_stdio, fifo_dir, prepare_stdio
from ._stdio import remove_fifo_dir as _remove_fifo_dir
from ._transport import NO_TIMEOUT, REGISTRY_OPTION_KEYS, Transport

if TYPE_CHECKING:
    from ._images import RemoteImages

__all__ = ["RemoteClient", "RemoteContainer", "RemoteProcess", "RemoteTask"]

DEFAULT_RUNTIME = "io.containerd.runc.v2"
"""The runtime containers get when none is named."""

_FORCE_DELETE_WAIT = 10.0
# Length of one Wait call when a wait can be cancelled (async callers).
_WAIT_SLICE = 1.0


def _validate_id(value: object, kind: str) -> str:
    from ..types.identifiers import validate_identifier

    return validate_identifier(value, kind=kind)


def _exit_status(code: int, exited_at: Any, has_time: bool) -> ExitStatus:
    if has_time:
        return ExitStatus(code, _convert.to_datetime(exited_at))
    return ExitStatus(code)


class RemoteProcess:
    """A process of a task: the init process (``id`` == container id) or an exec."""

    def __init__(
        self,
        client: RemoteClient,
        container_id: str,
        exec_id: str,
        *,
        pid: int = 0,
        stdio: ProcessStdio | None = None,
    ) -> None:
        self._client = client
        self._container_id = container_id
        self._exec_id = exec_id
        self._pid = pid
        self._stdio = stdio
        # Set once a wait() on this handle returned: a process never runs again after
        # exiting, so delete() need not ask containerd whether it still runs.
        self._exited = False

    @property
    def id(self) -> str:
        """The exec id, or the container id for a task's init process."""
        return self._exec_id or self._container_id

    @property
    def container_id(self) -> str:
        """The id of the container the process belongs to."""
        return self._container_id

    @property
    def pid(self) -> int:
        """The host pid (0 before the process was created)."""
        return self._pid

    @property
    def io(self) -> PipedStreams | None:
        """The client's ends of the process's FIFOs (piped or terminal stdio only)."""
        return None if self._stdio is None else self._stdio.streams

    @property
    def _t(self) -> Transport:
        return self._client.transport

    def start(self) -> None:
        """Start the process."""
        response = self._t.call(
            self._t.tasks.Start,
            tasks_pb2.StartRequest(container_id=self._container_id, exec_id=self._exec_id),
        )
        self._pid = response.pid
        if self._stdio is not None:
            self._stdio.started()
            if self._stdio.size is not None:
                self._initial_resize(*self._stdio.size)

    def _initial_resize(self, width: int, height: int) -> None:
        # A short-lived process may be gone before its terminal gets its first size;
        # that is not the caller's error.
        try:
            self.resize(width, height)
        except Error:
            try:
                status = self.status()
            except NotFound:
                return
            if status is not Status.STOPPED:
                raise

    def kill(self, signal: int, *, all: bool = False) -> None:
        """Send ``signal`` to the process; with ``all=True`` to every process of the task."""
        signal = check_signal(signal)
        self._t.call(
            self._t.tasks.Kill,
            tasks_pb2.KillRequest(
                container_id=self._container_id,
                exec_id=self._exec_id,
                signal=signal,
                all=all,
            ),
        )

    def wait(
        self, timeout: float | None = None, *, cancel: threading.Event | None = None
    ) -> ExitStatus:
        """Block until the process exits (containerd keeps the status until delete).

        Survives a containerd restart (the shim keeps the process). With ``cancel``, the
        wait is made of short calls and ends with ``Canceled`` soon after ``cancel`` is
        set, so an abandoned wait does not hold a thread forever.
        """
        if timeout is not None and not timeout > 0:
            raise InvalidArgument(f"timeout must be positive seconds or None, got {timeout!r}")
        end = None if timeout is None else time.monotonic() + timeout
        request = tasks_pb2.WaitRequest(container_id=self._container_id, exec_id=self._exec_id)
        while True:
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                raise DeadlineExceeded(
                    f"process {self.id!r} of container {self._container_id!r} did not exit "
                    f"within {timeout} s"
                )
            piece = left if cancel is None else min(left or _WAIT_SLICE, _WAIT_SLICE)
            if cancel is not None and cancel.is_set():
                raise Canceled(f"wait for process {self.id!r} was cancelled")
            try:
                response = self._t.call(
                    self._t.tasks.Wait,
                    request,
                    timeout=NO_TIMEOUT if piece is None else piece,
                    idempotent=True,
                )
            except DeadlineExceeded:
                continue
            except Unknown as error:
                # containerd hands our deadline to the shim, whose expiry can come back
                # as an untyped error before the client's own deadline fires.
                if piece is not None and "deadline exceeded" in str(error):
                    continue
                raise
            break
        self._exited = True
        return _exit_status(
            response.exit_status, response.exited_at, response.HasField("exited_at")
        )

    def _get(self) -> task_pb2.Process:
        response = self._t.call(
            self._t.tasks.Get,
            tasks_pb2.GetRequest(container_id=self._container_id, exec_id=self._exec_id),
            idempotent=True,
        )
        return response.process

    def status(self) -> Status:
        """The current status."""
        return Status.from_proto(self._get().status)

    def _is_running(self) -> bool:
        """False once the process has exited or is gone; True when containerd cannot say."""
        try:
            return self.status() is not Status.STOPPED
        except NotFound:
            return False
        except Error:
            return True

    def resize(self, width: int, height: int) -> None:
        """Resize the process's terminal."""
        check_terminal_size(width, height)
        # containerd accepts ResizePty for a process without a terminal and does nothing.
        has_terminal = self._stdio.terminal if self._stdio is not None else self._get().terminal
        if not has_terminal:
            raise no_terminal(self.id)
        self._t.call(
            self._t.tasks.ResizePty,
            tasks_pb2.ResizePtyRequest(
                container_id=self._container_id,
                exec_id=self._exec_id,
                width=width,
                height=height,
            ),
        )

    def _close_io(self) -> None:
        self._t.call(
            self._t.tasks.CloseIO,
            tasks_pb2.CloseIORequest(
                container_id=self._container_id, exec_id=self._exec_id, stdin=True
            ),
        )

    def close_stdin(self) -> None:
        """Close the process's stdin so it reads EOF."""
        streams = self.io
        if streams is not None and streams.stdin is not None and not streams.stdin.closed:
            streams.stdin.close()  # also sends CloseIO
        else:
            self._close_io()

    def _check_deletable(self) -> None:
        # containerd stops the task's OOM monitor before it asks the shim to delete, even
        # when the shim then refuses because the process runs: ask first, unless a wait()
        # on this handle already saw the exit.
        if self._exited:
            return
        status = self.status()
        if status in (Status.RUNNING, Status.PAUSED, Status.PAUSING):
            raise FailedPrecondition(
                f"process {self.id!r} of container {self._container_id!r} is "
                f"{status.value}; it must be stopped before deletion (kill it and wait, "
                "or use force_delete)"
            )

    def _release_stdio(self) -> None:
        if self._stdio is not None:
            self._client._forget(self._stdio)
            self._stdio.close()
        _remove_fifo_dir(fifo_dir(self._client.namespace, self._container_id, self._exec_id))

    def delete(self) -> ExitStatus:
        """Remove the exited process and its stdio; returns its exit status."""
        self._check_deletable()
        response = self._t.call(
            self._t.tasks.DeleteProcess,
            tasks_pb2.DeleteProcessRequest(container_id=self._container_id, exec_id=self._exec_id),
        )
        self._release_stdio()
        return _exit_status(
            response.exit_status, response.exited_at, response.HasField("exited_at")
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._container_id}/{self.id} pid={self._pid}>"


class RemoteTask(RemoteProcess):
    """A container's task: its init process plus container-wide operations."""

    def __init__(
        self,
        client: RemoteClient,
        container_id: str,
        *,
        pid: int = 0,
        stdio: ProcessStdio | None = None,
    ) -> None:
        super().__init__(client, container_id, "", pid=pid, stdio=stdio)

    def pause(self) -> None:
        """Freeze every process of the container."""
        self._t.call(
            self._t.tasks.Pause, tasks_pb2.PauseTaskRequest(container_id=self._container_id)
        )

    def resume(self) -> None:
        """Thaw a paused container."""
        self._t.call(
            self._t.tasks.Resume, tasks_pb2.ResumeTaskRequest(container_id=self._container_id)
        )

    def exec(
        self, process_id: str, process: Mapping[str, Any], *, stdio: Stdio | None = None
    ) -> RemoteProcess:
        """Create (not start) an extra process described by an OCI ``process`` object."""
        exec_id = _validate_id(process_id, "exec id")
        process = validate_process(process)
        check_terminal(process, stdio, f"exec process {exec_id!r}")
        spec = _convert.json_any(_convert.PROCESS_SPEC_TYPE, dict(process))
        process_stdio = self._client._prepare(stdio, self._container_id, exec_id)
        try:
            self._t.call(
                self._t.tasks.Exec,
                tasks_pb2.ExecProcessRequest(
                    container_id=self._container_id,
                    exec_id=exec_id,
                    stdin=process_stdio.stdin,
                    stdout=process_stdio.stdout,
                    stderr=process_stdio.stderr,
                    terminal=process_stdio.terminal,
                    spec=spec,
                ),
            )
        except BaseException as error:
            self._client._forget(process_stdio)
            process_stdio.close()
            if isinstance(error, AlreadyExists):
                raise exec_exists(exec_id, self._container_id, error) from error
            raise
        return RemoteProcess(self._client, self._container_id, exec_id, stdio=process_stdio)

    def load_process(self, process_id: str, *, stdio: Stdio | None = None) -> RemoteProcess:
        """A handle on an existing exec'd process; ``NotFound`` when there is none.

        With piped or terminal ``stdio`` the handle re-opens the process's FIFOs.
        """
        exec_id = _validate_id(process_id, "exec id")
        process = RemoteProcess(self._client, self._container_id, exec_id)
        try:
            info = process._get()
        except NotFound as error:
            raise process_not_found(exec_id, self._container_id, error) from error
        process._pid = info.pid
        if stdio is not None:
            process._stdio = self._client._track(
                attach_stdio(
                    stdio,
                    stdin=info.stdin,
                    stdout=info.stdout,
                    stderr=info.stderr,
                    terminal=info.terminal,
                    on_stdin_close=process._close_io,
                    is_running=process._is_running,
                )
            )
        return process

    def pids(self) -> list[ProcessInfo]:
        """The host pids of every process in the container."""
        response = self._t.call(
            self._t.tasks.ListPids,
            tasks_pb2.ListPidsRequest(container_id=self._container_id),
            idempotent=True,
        )
        result = []
        for item in response.processes:
            info: dict[str, Any] | None = None
            if item.HasField("info"):
                details = oci_pb2.ProcessDetails()
                if item.info.Unpack(details) or item.info.type_url.endswith("ProcessDetails"):
                    details.ParseFromString(item.info.value)
                    info = {"exec_id": details.exec_id}
            result.append(ProcessInfo(item.pid, info))
        return result

    def summary(self) -> Mapping[str, Any]:
        """The task as containerd reports it: id, pid, status, stdio paths, exit details."""
        process = self._get()
        return {
            "id": process.id or self._container_id,
            "container_id": process.container_id,
            "pid": process.pid,
            "status": Status.from_proto(process.status).value,
            "stdin": process.stdin,
            "stdout": process.stdout,
            "stderr": process.stderr,
            "terminal": process.terminal,
            "exit_status": process.exit_status,
            "exited_at": (
                _convert.to_datetime(process.exited_at) if process.HasField("exited_at") else None
            ),
        }

    def stats(self) -> Stats:
        """Resource usage from the container's cgroup (containerd's Metrics)."""
        response = self._t.call(
            self._t.tasks.Metrics,
            tasks_pb2.MetricsRequest(filters=[f"id=={self._container_id}"]),
            idempotent=True,
        )
        for metric in response.metrics:
            if metric.id == self._container_id:
                return _convert.metrics_to_stats(
                    metric.data, _convert.to_datetime(metric.timestamp)
                )
        raise NotFound(f"no metrics for task {self._container_id!r}: it does not exist")

    def update_resources(self, resources: Resources) -> None:
        """Change the container's resource limits while it runs."""
        if not isinstance(resources, Resources):
            raise InvalidArgument(
                f"resources must be a libcontainerd Resources, not {type(resources).__name__}"
            )
        try:
            self._t.call(
                self._t.tasks.Update,
                tasks_pb2.UpdateTaskRequest(
                    container_id=self._container_id,
                    resources=_convert.json_any(_convert.LINUX_RESOURCES_TYPE, resources.to_oci()),
                ),
            )
        except Unknown as error:
            raise runtime_failure(
                f"update the resources of {self._container_id!r}", "", error
            ) from error

    def create_checkpoint(self, checkpoint_dir: Path, *, exit: bool = False) -> None:
        """Checkpoint the task with CRIU into ``checkpoint_dir`` (an absolute directory)."""
        path = Path(checkpoint_dir)
        if not path.is_absolute():
            raise InvalidArgument(f"checkpoint_dir {str(path)!r} must be an absolute path")
        options = oci_pb2.CheckpointOptions(exit=exit, image_path=str(path))
        packed = any_pb2.Any(
            type_url="containerd.runc.v1.CheckpointOptions", value=options.SerializeToString()
        )
        path.mkdir(parents=True, exist_ok=True)
        self._t.call(
            self._t.tasks.Checkpoint,
            tasks_pb2.CheckpointTaskRequest(container_id=self._container_id, options=packed),
            timeout=NO_TIMEOUT,
        )

    def delete(self) -> ExitStatus:
        """Delete the stopped task and its stdio; ``FailedPrecondition`` while it runs."""
        self._check_deletable()
        response = self._t.call(
            self._t.tasks.Delete, tasks_pb2.DeleteTaskRequest(container_id=self._container_id)
        )
        self._release_stdio()
        return _exit_status(
            response.exit_status, response.exited_at, response.HasField("exited_at")
        )

    def force_delete(self) -> ExitStatus:
        """Kill every process of the task, wait for the init process, then delete it."""
        with contextlib.suppress(NotFound, FailedPrecondition):
            self.kill(_signal.SIGKILL, all=True)
        with contextlib.suppress(NotFound, DeadlineExceeded):
            self.wait(timeout=_FORCE_DELETE_WAIT)
        return self.delete()


class RemoteContainer:
    """A container record in containerd.

    The handle keeps the last record it read or created: ``new_task`` and ``delete`` use
    it instead of asking containerd again (snapshotter and snapshot key never change;
    the spec is the one this handle last saw). ``info``, ``spec`` and ``labels`` always
    read the record afresh.
    """

    def __init__(
        self,
        client: RemoteClient,
        container_id: str,
        record: containers_pb2.Container | None = None,
    ) -> None:
        self._client = client
        self._id = container_id
        self._known = record

    @property
    def id(self) -> str:
        """The container id."""
        return self._id

    @property
    def _t(self) -> Transport:
        return self._client.transport

    def _record(self) -> containers_pb2.Container:
        response = self._t.call(
            self._t.containers.Get,
            containers_pb2.GetContainerRequest(id=self._id),
            idempotent=True,
        )
        self._known = response.container
        return response.container

    def _last_record(self) -> containers_pb2.Container:
        return self._known if self._known is not None else self._record()

    def info(self) -> ContainerInfo:
        """The container's stored record, freshly read."""
        return _convert.container_info(self._record())

    def spec(self) -> dict[str, Any]:
        """The container's OCI runtime spec."""
        return dict(self.info().spec)

    def labels(self) -> dict[str, str]:
        """The container's labels."""
        return dict(self._record().labels)

    def set_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """Merge ``labels`` into the container's labels (an empty value removes one)."""
        labels = check_labels(labels)
        if not labels:
            return self.labels()
        record = containers_pb2.Container(id=self._id, labels=dict(labels))
        mask = field_mask_pb2.FieldMask(paths=[f"labels.{key}" for key in labels])
        response = self._t.call(
            self._t.containers.Update,
            containers_pb2.UpdateContainerRequest(container=record, update_mask=mask),
        )
        return dict(response.container.labels)

    def new_task(
        self, *, stdio: Stdio | None = None, checkpoint_dir: Path | None = None
    ) -> RemoteTask:
        """Create the container's task (created, not started). ``stdio`` defaults to NullIO.

        With ``checkpoint_dir`` (a directory ``create_checkpoint`` wrote) the task is
        restored from it by CRIU through the runc shim.
        """
        record = self._last_record()
        task_options = _restore_options(record.runtime.name, checkpoint_dir)
        spec = _convert.unpack_json(record.spec) if record.HasField("spec") else {}
        process = (spec.get("process") if isinstance(spec, dict) else None) or {}
        check_terminal(process, stdio, f"container {self._id}'s spec")
        from ._images import container_rootfs

        rootfs = container_rootfs(self._t, record.snapshotter, record.snapshot_key)
        process_stdio = self._client._prepare(stdio, self._id, "")
        try:
            response = self._t.call(
                self._t.tasks.Create,
                tasks_pb2.CreateTaskRequest(
                    container_id=self._id,
                    rootfs=rootfs,
                    stdin=process_stdio.stdin,
                    stdout=process_stdio.stdout,
                    stderr=process_stdio.stderr,
                    terminal=process_stdio.terminal,
                    options=task_options,
                ),
                timeout=NO_TIMEOUT if task_options is not None else None,
            )
        except BaseException as error:
            self._client._forget(process_stdio)
            process_stdio.close()
            if isinstance(error, AlreadyExists):
                raise task_exists(self._id, error) from error
            if isinstance(error, Unknown):
                raise runtime_failure(
                    f"create the task of container {self._id!r}", record.runtime.name, error
                ) from error
            raise
        return RemoteTask(self._client, self._id, pid=response.pid, stdio=process_stdio)

    def _task_process(self) -> task_pb2.Process:
        try:
            response = self._t.call(
                self._t.tasks.Get, tasks_pb2.GetRequest(container_id=self._id), idempotent=True
            )
        except NotFound as error:
            raise task_not_found(self._id, error) from error
        return response.process

    def task(self) -> RemoteTask:
        """The container's existing task; ``NotFound`` when it has none."""
        process = self._task_process()
        return RemoteTask(self._client, self._id, pid=process.pid)

    def attach_task(self, *, stdio: Stdio | None = None) -> RemoteTask:
        """Re-open the existing task's FIFOs (after the caller restarted)."""
        process = self._task_process()
        task = RemoteTask(self._client, self._id, pid=process.pid)
        task._stdio = self._client._track(
            attach_stdio(
                stdio,
                stdin=process.stdin,
                stdout=process.stdout,
                stderr=process.stderr,
                terminal=process.terminal,
                on_stdin_close=task._close_io,
                is_running=task._is_running,
            )
        )
        return task

    def delete(self, *, cleanup_snapshot: bool = True) -> None:
        """Delete the container; ``FailedPrecondition`` while its task exists."""
        try:
            self._task_process()
        except NotFound:
            pass
        else:
            raise FailedPrecondition(
                f"container {self._id!r} still has a task; delete the task first "
                "(task.delete() or task.force_delete())"
            )
        record = self._last_record()
        self._t.call(self._t.containers.Delete, containers_pb2.DeleteContainerRequest(id=self._id))
        self._known = None
        if cleanup_snapshot and record.snapshot_key and record.snapshotter:
            self._client._remove_snapshot(record.snapshotter, record.snapshot_key)

    def __repr__(self) -> str:
        return f"<RemoteContainer {self._id}>"


def _restore_options(runtime: str, checkpoint_dir: Path | None) -> any_pb2.Any | None:
    """Task options that make the runc shim restore from ``checkpoint_dir`` (None: no restore)."""
    if checkpoint_dir is None:
        return None
    path = restore_dir(checkpoint_dir)
    if not runtime.startswith("io.containerd.runc."):
        raise Unimplemented(
            f"restoring from a checkpoint directory needs a runc shim runtime, not {runtime!r}"
        )
    options = oci_pb2.Options(criu_image_path=str(path))
    return any_pb2.Any(type_url=RUNC_OPTIONS_TYPE, value=options.SerializeToString())


def _check_registry_options(options: Mapping[str, Any]) -> None:
    """Build (and drop) one registry client so bad values fail at ``new_client``."""
    from ..distribution import RegistryClient

    try:
        RegistryClient(**options).close()
    except TypeError as error:
        raise InvalidArgument(f"option registry: {error}") from None


class RemoteClient:
    """A blocking client for one containerd namespace.

    Backend options (``config.options``, the extra keyword arguments of ``new_client``):
    ``tls_ca``, ``tls_cert``, ``tls_key`` (paths or PEM bytes) secure a ``tcp://``
    connection; ``registry`` is a dict handed to every registry client that pulls and
    pushes, e.g. ``registry={"ca_file": "/etc/ca.pem", "insecure_hosts": ["127.0.0.1:5000"],
    "docker_config": False, "credentials": Credentials(...)}`` (keys:
    ``ca_file``, ``client_cert``, ``credentials``, ``docker_config``, ``insecure_hosts``,
    ``max_retries``, ``retry``, ``timeout``, as :class:`~libcontainerd.distribution.RegistryClient`
    takes them).
    """

    def __init__(self, config: ClientConfig) -> None:
        self._config = config
        registry = config.options.get("registry")
        # Values first, before a channel exists; Transport reports wrong types and keys.
        if isinstance(registry, Mapping) and registry and set(registry) <= REGISTRY_OPTION_KEYS:
            _check_registry_options(registry)
        self.transport = Transport(
            config.address,
            config.namespace,
            timeout=config.timeout,
            options=config.options,
        )
        self._registry_options: dict[str, Any] = dict(registry or {})
        self._lock = threading.Lock()
        self._stdios: set[ProcessStdio] = set()
        self._closed = False
        self.namespaces = Namespaces(self.transport)
        """Create, list, label and delete containerd namespaces."""
        self.introspection = Introspection(self.transport)
        """containerd's plugins and server identity."""
        self.leases = Leases(self.transport)
        """Leases that protect content and snapshots from garbage collection."""
        self._subscription: EventCallbackPump | None = None
        if config.on_event is not None:
            self._subscription = EventCallbackPump(
                subscribe(self.transport, ()), config.on_event, name="libcontainerd-events"
            )

    @property
    def backend(self) -> Literal["remote"]:
        """Always ``"remote"``."""
        return "remote"

    @property
    def namespace(self) -> str:
        """The namespace every call acts in."""
        return self.transport.namespace

    @property
    def address(self) -> str:
        """The daemon address this client talks to."""
        return self.transport.address

    @property
    def images(self) -> RemoteImages:
        """The image service: pull, push, list, get, remove, import and export images."""
        from ._images import RemoteImages

        return RemoteImages(self.transport, registry_options=self._registry_options)

    # -- stdio bookkeeping ----------------------------------------------------------------

    def _track(self, stdio: ProcessStdio) -> ProcessStdio:
        with self._lock:
            self._stdios.add(stdio)
        return stdio

    def _forget(self, stdio: ProcessStdio) -> None:
        with self._lock:
            self._stdios.discard(stdio)

    def _prepare(self, stdio: Stdio | None, container_id: str, exec_id: str) -> ProcessStdio:
        holder: dict[str, RemoteProcess] = {}

        def close_io() -> None:
            process = holder.get("process")
            if process is not None:
                process._close_io()

        def is_running() -> bool:
            process = holder.get("process")
            return process is None or process._is_running()

        prepared = prepare_stdio(
            stdio,
            namespace=self.namespace,
            container_id=container_id,
            exec_id=exec_id,
            on_stdin_close=close_io,
            is_running=is_running,
        )
        holder["process"] = RemoteProcess(self, container_id, exec_id)
        return self._track(prepared)

    def _remove_snapshot(self, snapshotter: str, key: str) -> None:
        from ._pb.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc

        stub = snapshots_pb2_grpc.SnapshotsStub(self.transport.channel)
        with contextlib.suppress(NotFound):
            self.transport.call(
                stub.Remove, snapshots_pb2.RemoveSnapshotRequest(snapshotter=snapshotter, key=key)
            )

    # -- operations -----------------------------------------------------------------------

    def healthy(self, timeout: float = 2.0) -> bool:
        """Whether containerd answers gRPC health checks as SERVING within ``timeout``."""
        if not timeout > 0:
            raise InvalidArgument(f"timeout {timeout!r} must be a positive number of seconds")
        return check_health(self.transport.channel, timeout) is HealthStatus.SERVING

    def version(self) -> Version:
        """containerd's version and revision."""
        response = self.transport.call(
            self.transport.version.Version, empty_pb2.Empty(), idempotent=True
        )
        return Version(
            version=response.version,
            revision=response.revision,
            backend="remote",
            runtime=DEFAULT_RUNTIME,
        )

    def new_container(
        self,
        container_id: str,
        spec: Mapping[str, Any] | None = None,
        *,
        image: str | None = None,
        runtime: str | None = None,
        runtime_options: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> RemoteContainer:
        """Create a container record from ``spec`` (its ``root.path`` names the rootfs)."""
        container_id = _validate_id(container_id, "container id")
        if spec is None and image is None:
            raise InvalidArgument(
                "new_container needs a spec (build one with libcontainerd.oci.generate_spec)"
            )
        if spec is not None:
            spec = validate_spec(spec)
        labels = check_labels(labels)
        runtime = check_runtime_name(runtime)
        prepared = None
        if image is not None:
            from ._images import prepare_image_rootfs

            prepared = prepare_image_rootfs(self.transport, container_id, image, spec)
            spec = prepared.spec
        try:
            record = containers_pb2.Container(
                id=container_id,
                labels=dict(labels or {}),
                spec=_convert.json_any(_convert.SPEC_TYPE, dict(spec or {})),
                runtime=containers_pb2.Container.Runtime(name=runtime or DEFAULT_RUNTIME),
            )
            if prepared is not None:
                record.image = prepared.image_name
                record.snapshotter = prepared.snapshotter
                record.snapshot_key = prepared.key
            if runtime_options:
                record.runtime.options.CopyFrom(_convert.runtime_options_any(runtime_options))
            if extensions:
                for name, value in _convert.encode_extensions(extensions).items():
                    record.extensions[name].CopyFrom(value)
            created = self.transport.call(
                self.transport.containers.Create,
                containers_pb2.CreateContainerRequest(container=record),
            )
        except BaseException as error:
            if prepared is not None:
                prepared.discard()
            if isinstance(error, AlreadyExists):
                raise container_exists(container_id, self.namespace, error) from error
            raise
        if prepared is not None:
            prepared.release()
        return RemoteContainer(self, container_id, created.container)

    def load_container(self, container_id: str) -> RemoteContainer:
        """A handle on an existing container; ``NotFound`` when absent."""
        container = RemoteContainer(self, _validate_id(container_id, "container id"))
        try:
            container._record()
        except NotFound as error:
            raise container_not_found(container.id, self.namespace, error) from error
        return container

    def containers(self, filters: Sequence[str] = ()) -> list[Container]:
        """Every container in the namespace, optionally filtered (containerd filter syntax)."""
        filters = check_filters(filters)
        response = self.transport.call(
            self.transport.containers.List,
            containers_pb2.ListContainersRequest(filters=list(filters)),
            idempotent=True,
        )
        return [RemoteContainer(self, record.id, record) for record in response.containers]

    def events(self, filters: Sequence[str] = ()) -> RemoteEventStream:
        """Subscribe to this namespace's events from now on."""
        return subscribe(self.transport, check_filters(filters))

    def close(self) -> None:
        """Stop the event callback, close every stream and the connection.

        FIFOs of processes that still exist stay on disk so ``attach_task`` can find them.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            stdios, self._stdios = list(self._stdios), set()
        if self._subscription is not None:
            self._subscription.close()
        for stdio in stdios:
            stdio.close(remove=False)
        self.transport.close()

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
