"""Handles on containerd processes: a task's init process, its execs, the task itself.

:class:`Session` is what every handle of one client shares (the transport and the stdio
streams to close with the client).
"""

from __future__ import annotations

import contextlib
import signal as _signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from google.protobuf import any_pb2

import libcontainerd._backend_rules as rules
import libcontainerd.remote._convert as _convert
from libcontainerd.errors import (
    AlreadyExists,
    Canceled,
    DeadlineExceeded,
    Error,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    Unknown,
)
from libcontainerd.network import Networks
from libcontainerd.oci.validate import validate_process
from libcontainerd.remote._pb.containerd.runc.v1 import oci_pb2
from libcontainerd.remote._pb.containerd.services.tasks.v1 import tasks_pb2
from libcontainerd.remote._pb.containerd.v1.types import task_pb2
from libcontainerd.remote._stdio import (
    PipedStreams,
    ProcessStdio,
    attach_stdio,
    fifo_dir,
    log_file,
    prepare_stdio,
    remove_fifo_dir,
)
from libcontainerd.remote._transport import NO_TIMEOUT, Transport
from libcontainerd.shortcuts import TaskShortcuts, resolve_log_stdio
from libcontainerd.types.identifiers import validate_identifier
from libcontainerd.types.process import ProcessInfo
from libcontainerd.types.stats import Resources, Stats
from libcontainerd.types.status import ExitStatus, Status
from libcontainerd.types.stdio import Stdio

__all__ = [
    "DEFAULT_RUNTIME",
    "RemoteProcess",
    "RemoteTask",
    "Session",
    "exit_status",
    "validate_id",
]

DEFAULT_RUNTIME = "io.containerd.runc.v2"
"""The runtime containers get when none is named."""

_FORCE_DELETE_WAIT = 10.0
# Length of one Wait call when a wait can be cancelled (async callers).
_WAIT_SLICE = 1.0


def validate_id(value: object, kind: str) -> str:
    """``value`` checked as a containerd identifier of ``kind`` (container id, exec id)."""
    return validate_identifier(value, kind=kind)


def exit_status(code: int, exited_at: Any, has_time: bool) -> ExitStatus:
    """An :class:`ExitStatus` from containerd's code and (optional) exit time."""
    if has_time:
        return ExitStatus(code, _convert.to_datetime(exited_at))
    return ExitStatus(code)


class Session:
    """What the handles of one client share: the transport and the open stdio streams."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.networks: Networks | None = None
        """The client's CNI networks, released when a task is deleted (set by the client)."""
        self._lock = threading.Lock()
        self._stdios: set[ProcessStdio] = set()
        self._closed = False

    @property
    def namespace(self) -> str:
        """The namespace every call acts in."""
        return self.transport.namespace

    def track(self, stdio: ProcessStdio) -> ProcessStdio:
        """Remember ``stdio`` so that closing the client closes it."""
        with self._lock:
            self._stdios.add(stdio)
        return stdio

    def forget(self, stdio: ProcessStdio) -> None:
        """Stop tracking ``stdio`` (its process was deleted)."""
        with self._lock:
            self._stdios.discard(stdio)

    def prepare(self, stdio: Stdio | None, container_id: str, exec_id: str) -> ProcessStdio:
        """FIFOs (or files) for a process about to be created, tracked."""
        holder: dict[str, RemoteProcess] = {}

        def close_io() -> None:
            process = holder.get("process")
            if process is not None:
                process.close_io()

        def is_running() -> bool:
            process = holder.get("process")
            return process is None or process.is_running()

        prepared = prepare_stdio(
            resolve_log_stdio(
                stdio, log_file(self.transport.address, self.namespace, container_id)
            ),
            namespace=self.namespace,
            container_id=container_id,
            exec_id=exec_id,
            on_stdin_close=close_io,
            is_running=is_running,
        )
        holder["process"] = RemoteProcess(self, container_id, exec_id)
        return self.track(prepared)

    def close(self) -> bool:
        """Close every tracked stream, keeping FIFOs on disk; False when already closed."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            stdios, self._stdios = list(self._stdios), set()
        for stdio in stdios:
            stdio.close(remove=False)
        return True


class RemoteProcess(TaskShortcuts):
    """A process of a task: the init process (``id`` == container id) or an exec."""

    def __init__(
        self,
        session: Session,
        container_id: str,
        exec_id: str,
        *,
        pid: int = 0,
        stdio: ProcessStdio | None = None,
    ) -> None:
        self._session = session
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
        return self._session.transport

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
        signal = rules.check_signal(signal)
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
        self,
        timeout: float | None = None,
        *,
        cancel: threading.Event | None = None,
        wait_ready: float | None = None,
    ) -> ExitStatus:
        """Block until the process exits (containerd keeps the status until delete).

        A wait in progress survives a containerd restart (the shim keeps the process);
        one begun while containerd is unreachable raises ``Unavailable`` at once unless
        ``wait_ready`` (seconds) asks it to wait for containerd. With ``cancel``, the
        wait is made of short calls and ends with ``Canceled`` soon after ``cancel`` is
        set, so an abandoned wait does not hold a thread forever.
        """
        if timeout is not None and not timeout > 0:
            raise InvalidArgument(f"timeout must be positive seconds or None, got {timeout!r}")
        end = None if timeout is None else time.monotonic() + timeout
        request = tasks_pb2.WaitRequest(container_id=self._container_id, exec_id=self._exec_id)
        waiting = False
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
                    wait_ready=wait_ready,
                    keep_waiting=waiting,
                )
            except DeadlineExceeded:
                waiting = True  # containerd was there and the process still ran
                continue
            except Unavailable as error:
                # The connection broke while this wait was in progress (containerd
                # restarts): the shim keeps the process, so keep waiting for it.
                if waiting or "failed to connect" in str(error):
                    raise
                waiting = True
                continue
            except Unknown as error:
                # containerd hands our deadline to the shim, whose expiry can come back
                # as an untyped error before the client's own deadline fires.
                if piece is not None and "deadline exceeded" in str(error):
                    continue
                raise
            break
        self._exited = True
        return exit_status(response.exit_status, response.exited_at, response.HasField("exited_at"))

    def _get(self, wait_ready: float | None = None) -> task_pb2.Process:
        response = self._t.call(
            self._t.tasks.Get,
            tasks_pb2.GetRequest(container_id=self._container_id, exec_id=self._exec_id),
            idempotent=True,
            wait_ready=wait_ready,
        )
        return response.process

    def status(self, *, wait_ready: float | None = None) -> Status:
        """The current status (``wait_ready``: seconds to wait for an unreachable containerd)."""
        return Status.from_proto(self._get(wait_ready).status)

    def is_running(self) -> bool:
        """False once the process has exited or is gone; True when containerd cannot say."""
        try:
            return self.status() is not Status.STOPPED
        except NotFound:
            return False
        except Error:
            return True

    def resize(self, width: int, height: int) -> None:
        """Resize the process's terminal."""
        rules.check_terminal_size(width, height)
        # containerd accepts ResizePty for a process without a terminal and does nothing.
        has_terminal = self._stdio.terminal if self._stdio is not None else self._get().terminal
        if not has_terminal:
            raise rules.no_terminal(self.id)
        self._t.call(
            self._t.tasks.ResizePty,
            tasks_pb2.ResizePtyRequest(
                container_id=self._container_id,
                exec_id=self._exec_id,
                width=width,
                height=height,
            ),
        )

    def close_io(self) -> None:
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
            self.close_io()

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
            self._session.forget(self._stdio)
            self._stdio.close()
        remove_fifo_dir(fifo_dir(self._session.namespace, self._container_id, self._exec_id))

    def delete(self) -> ExitStatus:
        """Remove the exited process and its stdio; returns its exit status."""
        self._check_deletable()
        response = self._t.call(
            self._t.tasks.DeleteProcess,
            tasks_pb2.DeleteProcessRequest(container_id=self._container_id, exec_id=self._exec_id),
        )
        self._release_stdio()
        return exit_status(response.exit_status, response.exited_at, response.HasField("exited_at"))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._container_id}/{self.id} pid={self._pid}>"


class RemoteTask(RemoteProcess):
    """A container's task: its init process plus container-wide operations."""

    def __init__(
        self,
        session: Session,
        container_id: str,
        *,
        pid: int = 0,
        stdio: ProcessStdio | None = None,
    ) -> None:
        super().__init__(session, container_id, "", pid=pid, stdio=stdio)

    @classmethod
    def attach(
        cls,
        session: Session,
        container_id: str,
        process: task_pb2.Process,
        stdio: Stdio | None,
    ) -> RemoteTask:
        """A handle on an existing task that re-opens its FIFOs (``attach_task``)."""
        task = cls(session, container_id, pid=process.pid)
        task._stdio = session.track(
            attach_stdio(
                stdio,
                stdin=process.stdin,
                stdout=process.stdout,
                stderr=process.stderr,
                terminal=process.terminal,
                on_stdin_close=task.close_io,
                is_running=task.is_running,
            )
        )
        return task

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
        exec_id = validate_id(process_id, "exec id")
        process = validate_process(process)
        rules.check_terminal(process, stdio, f"exec process {exec_id!r}")
        spec = _convert.json_any(_convert.PROCESS_SPEC_TYPE, dict(process))
        process_stdio = self._session.prepare(stdio, self._container_id, exec_id)
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
            self._session.forget(process_stdio)
            process_stdio.close()
            if isinstance(error, AlreadyExists):
                raise rules.exec_exists(exec_id, self._container_id, error) from error
            raise
        return RemoteProcess(self._session, self._container_id, exec_id, stdio=process_stdio)

    def load_process(self, process_id: str, *, stdio: Stdio | None = None) -> RemoteProcess:
        """A handle on an existing exec'd process; ``NotFound`` when there is none.

        With piped or terminal ``stdio`` the handle re-opens the process's FIFOs.
        """
        exec_id = validate_id(process_id, "exec id")
        process = RemoteProcess(self._session, self._container_id, exec_id)
        try:
            info = process._get()
        except NotFound as error:
            raise rules.process_not_found(exec_id, self._container_id, error) from error
        process._pid = info.pid
        if stdio is not None:
            process._stdio = self._session.track(
                attach_stdio(
                    stdio,
                    stdin=info.stdin,
                    stdout=info.stdout,
                    stderr=info.stderr,
                    terminal=info.terminal,
                    on_stdin_close=process.close_io,
                    is_running=process.is_running,
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
            raise rules.runtime_failure(
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
        if self._session.networks is not None:
            self._session.networks.detach(self._container_id)
        return exit_status(response.exit_status, response.exited_at, response.HasField("exited_at"))

    def force_delete(self) -> ExitStatus:
        """Kill every process of the task, wait for the init process, then delete it."""
        with contextlib.suppress(NotFound, FailedPrecondition):
            self.kill(_signal.SIGKILL, all=True)
        with contextlib.suppress(NotFound, DeadlineExceeded):
            self.wait(timeout=_FORCE_DELETE_WAIT)
        return self.delete()
