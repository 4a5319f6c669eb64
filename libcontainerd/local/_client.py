"""The local backend's client: containers, tasks and processes driven through an OCI runtime.

This module is the one implementation; :mod:`libcontainerd.local._async` wraps it for
asyncio. Durable state lives on disk (see :mod:`._store`) and with the per-container
monitor (see :mod:`._monitor`), so every handle can be rebuilt by a new client.
"""

from __future__ import annotations

import array
import contextlib
import datetime as _dt
import json
import os
import select
import shutil
import signal as _signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from libcontainerd._backend_rules import (
    EventCallbackPump,
    check_filters,
    check_labels,
    check_runtime_name,
    check_signal,
    check_terminal,
    check_terminal_size,
    container_exists,
    exec_exists,
    no_terminal,
    process_not_found,
    runtime_refused,
    task_exists,
    task_not_found,
)
from libcontainerd._checkpoint import restore_dir
from libcontainerd.client import Container, ProcessSpec, Spec
from libcontainerd.config import ClientConfig
from libcontainerd.errors import (
    DeadlineExceeded,
    Error,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    RuntimeCommandError,
    Unavailable,
)
from libcontainerd.local import _monitor
from libcontainerd.local._events import EventLog, LocalEventStream
from libcontainerd.local._runtime import (
    RuntimeDriver,
    runtime_error,
    validate_runtime_options,
)
from libcontainerd.local._stdio import (
    FifoIO,
    open_fifo_reader,
    open_fifo_writer,
    read_cgroup_stats,
)
from libcontainerd.local._store import (
    ContainerStore,
    Layout,
    default_root,
    default_state,
    matches_filters,
    record_to_info,
)
from libcontainerd.oci import generate_spec, spec_with_image
from libcontainerd.oci.validate import validate_process, validate_spec
from libcontainerd.types.container import ContainerInfo
from libcontainerd.types.identifiers import validate_identifier
from libcontainerd.types.process import ProcessInfo
from libcontainerd.types.stats import Resources, Stats
from libcontainerd.types.status import ExitStatus, Status
from libcontainerd.types.stdio import FileIO, NullIO, PipedIO, Stdio, TerminalIO
from libcontainerd.types.version import Version

if TYPE_CHECKING:
    from libcontainerd.local._images import LocalImageService

__all__ = ["LocalClient", "LocalContainer", "LocalProcess", "LocalTask"]

DEFAULT_RUNTIME = "runc"
DEFAULT_TIMEOUT = 30.0
_MONITOR_SCRIPT = _monitor.__file__
_KNOWN_OPTIONS: frozenset[str] = frozenset({"events_max_bytes"})
_MIN_EVENTS_BYTES = 1024
_ALIVE = (Status.RUNNING, Status.PAUSED, Status.PAUSING)


def _exit_status(record: Mapping[str, Any]) -> ExitStatus:
    error = record.get("error")
    return ExitStatus(
        int(record["code"]),
        _dt.datetime.fromisoformat(str(record["exited_at"])),
        str(error) if error else None,
    )


def _wait_pidfd(pidfd: int, deadline: float | None) -> bool:
    """Whether the process behind ``pidfd`` exited before ``deadline``."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    while True:
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        if poller.poll(None if left is None else int(left * 1000) + 1):
            return True
        if left is not None and left <= 0:
            return False


def _stdio_record(stdio: Stdio) -> dict[str, Any]:
    if isinstance(stdio, NullIO):
        return {"kind": "null"}
    if isinstance(stdio, FileIO):
        return {
            "kind": "file",
            "stdout": str(stdio.stdout),
            "stderr": str(stdio.stderr or stdio.stdout),
        }
    if isinstance(stdio, PipedIO):
        return {
            "kind": "piped",
            "stdin": stdio.stdin,
            "stdout": stdio.stdout,
            "stderr": stdio.stderr,
        }
    if isinstance(stdio, TerminalIO):
        return {"kind": "tty", "stdin": stdio.stdin, "width": stdio.width, "height": stdio.height}
    raise InvalidArgument(
        f"stdio must be NullIO, FileIO, PipedIO or TerminalIO, not {type(stdio).__name__}"
    )


def _with_console_size(process: Mapping[str, Any], stdio: Stdio) -> dict[str, Any]:
    """``process`` with the terminal's size, so the process sees it from its first moment."""
    result = dict(process)
    if isinstance(stdio, TerminalIO):
        result["consoleSize"] = {"height": stdio.height, "width": stdio.width}
    return result


def _make_fifos(directory: Path, stdio: dict[str, Any]) -> None:
    if stdio["kind"] != "piped":
        return
    for name in ("stdin", "stdout", "stderr"):
        if stdio.get(name):
            os.mkfifo(directory / name, 0o600)


class LocalProcess:
    """A task's init process or an exec'd process (implements ``Process``)."""

    def __init__(
        self,
        container: LocalContainer,
        driver: RuntimeDriver,
        process_id: str,
        directory: Path,
        io: FifoIO | None,
    ) -> None:
        self._container = container
        self._client = container.client
        self._driver = driver
        self._process_id = process_id
        self._dir = directory
        self._io = io
        self._pid = 0

    # --------------------------------------------------------------- properties

    @property
    def id(self) -> str:
        """The process id (the container id for the init process)."""
        return self._process_id or self._container.id

    @property
    def container_id(self) -> str:
        """The container's id."""
        return self._container.id

    @property
    def _exec_id(self) -> str:
        return self._process_id

    @property
    def _task_dir(self) -> Path:
        return self._client.layout.task_dir(self._container.id)

    @property
    def pid(self) -> int:
        """The host pid (0 before the process was created/started)."""
        if not self._pid:
            with contextlib.suppress(OSError, ValueError):
                self._pid = int((self._dir / "pid").read_text(encoding="ascii").strip())
        return self._pid

    @property
    def io(self) -> FifoIO | None:
        """The live streams (piped or terminal stdio), else ``None``."""
        return self._io

    # ---------------------------------------------------------------- helpers

    def _request(self, message: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        wait = timeout if timeout is not None else self._client.timeout
        try:
            reply, _ = _monitor.request(str(self._task_dir), message, timeout=wait)
        except TimeoutError as exc:
            raise DeadlineExceeded(
                f"the monitor of container {self.container_id} did not answer "
                f"{message.get('op')} within {wait}s"
            ) from exc
        except OSError as exc:
            raise Unavailable(
                f"the monitor of container {self.container_id} is gone (the task has exited); "
                f"cannot {message.get('op')}: {exc}"
            ) from exc
        if "error" in reply:
            raise runtime_error(
                f"{message.get('op')} of {self.id}",
                reply.get("command") or [],
                reply.get("exit_code"),
                str(reply.get("stderr", "")),
            )
        return reply

    def _exit_record(self) -> dict[str, Any] | None:
        return _monitor.read_exit(str(self._dir))

    # ------------------------------------------------------------------ process

    def start(self) -> None:
        """Start the process; its exit is recorded by the monitor whoever waits."""
        if self._exec_id:
            reply = self._request(
                {
                    "op": "exec-start",
                    "exec_id": self._exec_id,
                    "process_file": str(self._dir / "process.json"),
                }
            )
        else:
            reply = self._request({"op": "start"})
        if reply.get("pid"):
            self._pid = int(reply["pid"])
        if self._io is not None and self._exec_id and self._io.master == -2:
            self._attach_console()

    def _attach_console(self) -> None:
        assert self._io is not None
        reply, fds = _monitor.request(
            str(self._task_dir),
            {"op": "console", "exec_id": self._exec_id},
            timeout=self._client.timeout,
            fds=1,
        )
        if "error" in reply or not fds:
            raise Unavailable(f"could not get the terminal of {self.id}: {reply.get('stderr')}")
        self._io.set_terminal(fds[0], stdin=True)

    def kill(self, signal: int, *, all: bool = False) -> None:
        """Send ``signal`` (to every process of the container with ``all``)."""
        signal = check_signal(signal)
        if self._exit_record() is not None:
            raise NotFound(f"process {self.id} has already exited; nothing to signal")
        if self._exec_id:
            if not self.pid:
                raise FailedPrecondition(f"process {self.id} was never started; start it first")
            os.kill(self.pid, signal)
            return
        self._driver.kill(self.container_id, int(signal), all=all)

    def wait(self, timeout: float | None = None) -> ExitStatus:
        """Block until the process exits (reads the durable exit record)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self._exit_record()
            if record is not None:
                return _exit_status(record)
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if left is not None and left <= 0:
                raise DeadlineExceeded(f"process {self.id} did not exit within {timeout}s")
            try:
                reply, _ = _monitor.request(
                    str(self._task_dir),
                    {"op": "wait", "exec_id": self._exec_id, "timeout": left},
                    timeout=None if left is None else left + 1.0,
                )
            except TimeoutError:
                continue
            except OSError:
                if _monitor.monitor_alive(str(self._task_dir)):
                    continue  # a transient connection failure, not a lost monitor
                return self._wait_without_monitor(timeout, deadline)
            if reply.get("exit"):
                return _exit_status(reply["exit"])
            if reply.get("error") not in (None, "timeout"):
                record = self._exit_record()
                if record is not None:
                    return _exit_status(record)
                raise runtime_error(
                    f"wait for {self.id}",
                    reply.get("command") or [],
                    reply.get("exit_code"),
                    str(reply.get("stderr", "")),
                )

    def _wait_without_monitor(self, timeout: float | None, deadline: float | None) -> ExitStatus:
        """The monitor is gone: wait for the process itself, then record a lost exit.

        Only a process's parent (the monitor, as subreaper) can learn its exit code, and
        the runtime's state keeps none, so once the monitor was killed the code cannot be
        recovered. The exit itself can still be awaited, through a pidfd (no polling),
        and is recorded once as code 255 with an ``error`` saying why, so every later
        call and every client agree and subscribers get their ``/tasks/exit``.
        """
        record = self._exit_record()
        if record is not None:
            return _exit_status(record)
        if not self._task_dir.exists():
            raise NotFound(f"task {self.container_id} was deleted") from None
        pidfd = self._live_pidfd()
        if pidfd >= 0:
            try:
                if not _wait_pidfd(pidfd, deadline):
                    raise DeadlineExceeded(f"process {self.id} did not exit within {timeout}s")
            finally:
                os.close(pidfd)
        return self._record_lost_exit()

    def _live_pidfd(self) -> int:
        """A pidfd on this process while it still runs in the container, else -1."""
        pid = self.pid
        if not pid:
            return -1
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return -1
        # The pid may have been reused since: trust the pidfd only if the runtime (asked
        # after it was opened) still places this pid in the container.
        try:
            if self._exec_id:
                alive = pid in self._driver.ps(self.container_id)
            else:
                state = self._driver.state(self.container_id)
                alive = state.get("pid") == pid and Status.parse(
                    str(state.get("status", "unknown"))
                ) in (*_ALIVE, Status.CREATED)
        except Error:
            alive = False
        if not alive:
            os.close(pidfd)
            return -1
        return pidfd

    def _record_lost_exit(self) -> ExitStatus:
        """Store (once, whichever client comes first) the exit of an unmonitored process."""
        record = {
            "code": ExitStatus.UNKNOWN_CODE,
            "exited_at": _monitor.now_iso(),
            "pid": self.pid,
            "error": (
                f"the monitor of container {self.container_id} was killed before process "
                f"{self.id} exited, so its exit code is lost (reported as "
                f"{ExitStatus.UNKNOWN_CODE}); only the monitor, as the process's parent, can "
                f"learn it; do not kill the process whose pid is in {self._task_dir}/monitor.pid"
            ),
        }
        if _monitor.create_exit(str(self._dir), record):
            self._client.events_log.publish(
                "/tasks/exit",
                container_id=self.container_id,
                process_id=self._exec_id,
                pid=record["pid"],
                exit_code=record["code"],
                exited_at=record["exited_at"],
            )
        return _exit_status(self._exit_record() or record)

    def status(self) -> Status:
        """The current status."""
        if self._exit_record() is not None:
            return Status.STOPPED
        if self._exec_id:
            return Status.RUNNING if self.pid else Status.CREATED
        status = self._runtime_status()
        if status is Status.STOPPED and _monitor.monitor_alive(str(self._task_dir)):
            # The monitor records the exit a moment after the runtime sees it.
            for _ in range(50):
                if self._exit_record() is not None:
                    break
                time.sleep(0.01)
        return status

    def _runtime_status(self) -> Status:
        try:
            state = self._driver.state(self.container_id)
        except NotFound:
            return Status.UNKNOWN
        return Status.parse(str(state.get("status", "unknown")))

    def resize(self, width: int, height: int) -> None:
        """Resize the terminal."""
        check_terminal_size(width, height)
        if self._io is None or self._io.master < 0:
            raise no_terminal(self.id)
        self._io.resize(width, height)

    def close_stdin(self) -> None:
        """Close stdin so the process reads EOF."""
        if self._io is not None and self._io.master >= 0:
            if self._io.stdin is not None:
                self._io.stdin.write(b"\x04")
            return
        if self._io is not None:
            self._io.close_stdin()
        with contextlib.suppress(Unavailable):
            self._request({"op": "close-stdin", "exec_id": self._exec_id})

    def delete(self) -> ExitStatus:
        """Remove the exited exec'd process and its stdio; return its exit status."""
        record = self._exit_record()
        if record is None:
            if self.pid:
                raise FailedPrecondition(
                    f"process {self.id} is still running; kill and wait for it first"
                )
            exit_status = ExitStatus.unknown("the process was never started")
        else:
            exit_status = _exit_status(record)
        if self._io is not None:
            self._io.close()
        shutil.rmtree(self._dir, ignore_errors=True)
        self._client.events_log.publish(
            "/tasks/delete",
            container_id=self.container_id,
            process_id=self._exec_id,
            pid=self.pid,
            exit_code=exit_status.code,
            exited_at=exit_status.exited_at.isoformat(),
        )
        return exit_status


class LocalTask(LocalProcess):
    """The container's task: its init process plus container-wide operations."""

    def pause(self) -> None:
        """Freeze the container."""
        self._driver.pause(self.container_id)
        self._client.events_log.publish("/tasks/paused", container_id=self.container_id)

    def resume(self) -> None:
        """Thaw the container."""
        self._driver.resume(self.container_id)
        self._client.events_log.publish("/tasks/resumed", container_id=self.container_id)

    def exec(
        self, process_id: str, process: ProcessSpec, *, stdio: Stdio | None = None
    ) -> LocalProcess:
        """Create (not start) an extra process described by the OCI ``process`` object."""
        directory = self._client.layout.exec_dir(self.container_id, process_id)
        process = validate_process(process)
        stdio = stdio or NullIO()
        check_terminal(process, stdio, f"exec process {process_id!r}")
        stdio_rec = _stdio_record(stdio)
        if self._exit_record() is not None:
            raise FailedPrecondition(f"task {self.container_id} has exited; cannot exec")
        directory.parent.mkdir(exist_ok=True)
        try:
            directory.mkdir()
        except FileExistsError:
            raise exec_exists(process_id, self.container_id) from None
        try:
            _monitor.write_json_atomic(
                str(directory / "process.json"), _with_console_size(process, stdio), durable=False
            )
            # Kept so load_process(stdio=) can re-attach the way the process was made.
            _monitor.write_json_atomic(str(directory / "stdio.json"), stdio_rec, durable=False)
            _make_fifos(directory, stdio_rec)
            self._request(
                {
                    "op": "exec-prepare",
                    "exec_id": process_id,
                    "dir": str(directory),
                    "stdio": stdio_rec,
                }
            )
            io = _open_io(directory, stdio_rec, None)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        if io is not None and stdio_rec["kind"] == "tty":
            io.master = -2  # fetched from the monitor after start
        self._client.events_log.publish(
            "/tasks/exec-added", container_id=self.container_id, process_id=process_id
        )
        return LocalProcess(self._container, self._driver, process_id, directory, io)

    def load_process(self, process_id: str, *, stdio: Stdio | None = None) -> LocalProcess:
        """A handle on an exec'd process; with piped or terminal ``stdio``, re-attached to
        the streams it was created with."""
        directory = self._client.layout.exec_dir(self.container_id, process_id)
        if not (directory / "process.json").exists():
            raise process_not_found(process_id, self.container_id)
        process = LocalProcess(self._container, self._driver, process_id, directory, None)
        if stdio is None or isinstance(stdio, (NullIO, FileIO)):
            return process
        try:
            stored = json.loads((directory / "stdio.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise FailedPrecondition(
                f"process {process_id!r} has no stdio record to attach to; it was made by an "
                "older client or its files were removed"
            ) from None
        if _stdio_record(stdio)["kind"] != stored["kind"]:
            raise InvalidArgument(
                f"process {process_id!r} was created with {stored['kind']} stdio; "
                "attach with the same kind"
            )
        process._io = _open_io(directory, stored, None if stored["kind"] == "tty" else -1)
        if stored["kind"] == "tty":
            process._attach_console()
        return process

    def pids(self) -> list[ProcessInfo]:
        """The host pids of the container's processes (exec'd ones carry their exec id)."""
        exec_pids: dict[int, str] = {}
        exec_root = self._dir / "exec"
        if exec_root.is_dir():
            for entry in exec_root.iterdir():
                with contextlib.suppress(OSError, ValueError):
                    exec_pids[int((entry / "pid").read_text(encoding="ascii"))] = entry.name
        return [
            ProcessInfo(pid, {"exec_id": exec_pids[pid]} if pid in exec_pids else None)
            for pid in self._driver.ps(self.container_id)
        ]

    def summary(self) -> Mapping[str, Any]:
        """id, pid, status, runtime and (when exited) exit code and time."""
        result: dict[str, Any] = {
            "id": self.container_id,
            "pid": self.pid,
            "status": self.status().value,
            "runtime": self._driver.name,
        }
        record = self._exit_record()
        if record is not None:
            result["exit_status"] = record["code"]
            result["exited_at"] = record["exited_at"]
        return result

    def stats(self) -> Stats:
        """Resource usage read from the container's cgroups."""
        if self._exit_record() is not None or not self.pid:
            raise FailedPrecondition(f"task {self.container_id} is not running; no stats")
        return read_cgroup_stats(self.pid)

    def update_resources(self, resources: Resources) -> None:
        """Apply new resource limits to the running container."""
        if not isinstance(resources, Resources):
            raise InvalidArgument(f"resources must be a Resources, not {type(resources).__name__}")
        try:
            self._driver.update(self.container_id, resources.to_oci())
        except RuntimeCommandError as exc:
            raise runtime_refused(f"update the resources of {self.container_id!r}", exc) from exc

    def create_checkpoint(self, checkpoint_dir: Path, *, exit: bool = False) -> None:
        """Checkpoint with CRIU; on failure the container keeps running."""
        checkpoint_dir = Path(checkpoint_dir).absolute()
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        work = self._dir / "criu-work"
        work.mkdir(exist_ok=True)
        try:
            self._driver.checkpoint(self.container_id, checkpoint_dir, work, leave_running=not exit)
        except Error as exc:
            log = work / "dump.log"
            detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeCommandError(
                f"checkpoint of {self.container_id} with {self._driver.name} failed; "
                f"the container keeps running. Is CRIU installed and supported by this kernel? "
                f"{exc}{' CRIU log tail: ' + detail if detail else ''}",
                command=getattr(exc, "command", ()),
                exit_code=getattr(exc, "exit_code", None),
                stderr=getattr(exc, "stderr", str(exc)),
            ) from exc
        self._client.events_log.publish(
            "/tasks/checkpointed",
            container_id=self.container_id,
            checkpoint=str(checkpoint_dir),
        )

    def delete(self) -> ExitStatus:
        """Delete the stopped task (a created, never started one is killed first)."""
        record = self._exit_record()
        if record is None:
            status = self.status()
            record = self._exit_record()
        if record is None:
            if status in _ALIVE:
                raise FailedPrecondition(
                    f"task {self.container_id} is {status.value}; kill it and wait for "
                    "its exit first, or use force_delete()"
                )
            if status is Status.CREATED:
                # Never started: deleting kills the waiting init; the monitor records it.
                self._driver.delete(self.container_id, force=True)
                exit_status = self.wait(self._client.timeout)
            else:
                exit_status = ExitStatus.unknown(
                    f"the monitor of task {self.container_id} is gone and left no exit record"
                )
        else:
            exit_status = _exit_status(record)
        try:
            self._driver.delete(self.container_id)
        except FailedPrecondition:
            self._driver.delete(self.container_id, force=True)
        if self._io is not None:
            self._io.close()
        shutil.rmtree(self._dir, ignore_errors=True)
        self._client.events_log.publish(
            "/tasks/delete",
            container_id=self.container_id,
            pid=self.pid,
            exit_code=exit_status.code,
            exited_at=exit_status.exited_at.isoformat(),
        )
        return exit_status

    def force_delete(self) -> ExitStatus:
        """Kill every process, wait for the init's exit and delete the task."""
        if self._exit_record() is None:
            with contextlib.suppress(Error):
                if self._runtime_status() in (Status.PAUSED, Status.PAUSING):
                    # Frozen processes would not die until thawed.
                    self._driver.resume(self.container_id)
            with contextlib.suppress(Error):
                self._driver.kill(self.container_id, int(_signal.SIGKILL), all=True)
            with contextlib.suppress(Error):
                if self.status() is Status.CREATED:
                    self._driver.delete(self.container_id, force=True)
            with contextlib.suppress(DeadlineExceeded):
                self.wait(self._client.timeout)
        return self.delete()


def _open_io(directory: Path, stdio: dict[str, Any], master: int | None) -> FifoIO | None:
    kind = stdio["kind"]
    if kind == "piped":
        stdin = open_fifo_writer(directory / "stdin") if stdio.get("stdin") else None
        stdout = open_fifo_reader(directory / "stdout") if stdio.get("stdout") else None
        stderr = open_fifo_reader(directory / "stderr") if stdio.get("stderr") else None
        return FifoIO(stdin, stdout, stderr)
    if kind == "tty":
        if master is None or master < 0:
            return FifoIO(None, None, None, master=-1)
        io = FifoIO(None, None, None)
        io.set_terminal(master, stdin=bool(stdio.get("stdin")))
        return io
    return None


def _log_tail(task_dir: Path) -> str:
    try:
        return (task_dir / "monitor.log").read_text(errors="replace")[-2000:] or "(empty)"
    except OSError:
        return "(no log)"


def _kill_monitor(task_dir: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        os.kill(int((task_dir / "monitor.pid").read_text(encoding="ascii")), _signal.SIGKILL)


class LocalContainer:
    """A stored container (implements ``Container``)."""

    def __init__(self, client: LocalClient, container_id: str) -> None:
        self.client = client
        self._id = container_id

    @property
    def id(self) -> str:
        """The container id."""
        return self._id

    def info(self) -> ContainerInfo:
        """The stored record."""
        return record_to_info(self.client.store.get(self._id))

    def spec(self) -> Spec:
        """The OCI runtime spec."""
        return dict(self.client.store.get(self._id)["spec"])

    def labels(self) -> dict[str, str]:
        """The labels."""
        return dict(self.client.store.get(self._id).get("labels") or {})

    def set_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """Merge ``labels`` (an empty value removes a label); return the result."""
        labels = check_labels(labels)

        def change(record: dict[str, Any]) -> None:
            current = dict(record.get("labels") or {})
            for key, value in labels.items():
                if value:
                    current[key] = value
                else:
                    current.pop(key, None)
            record["labels"] = current

        record = self.client.store.update(self._id, change)
        self.client.events_log.publish("/containers/update", container_id=self._id)
        return dict(record["labels"])

    def new_task(
        self, *, stdio: Stdio | None = None, checkpoint_dir: Path | None = None
    ) -> LocalTask:
        """Create the task (created, not started) with its monitor; with ``checkpoint_dir``
        the runtime restores it from that checkpoint."""
        if checkpoint_dir is not None:
            checkpoint_dir = restore_dir(checkpoint_dir)
        client = self.client
        record = client.store.get(self._id)
        spec = record["spec"]
        stdio = stdio or NullIO()
        check_terminal(spec.get("process") or {}, stdio, f"container {self._id}'s spec")
        stdio_rec = _stdio_record(stdio)
        options = dict(record["runtime"].get("options") or {})
        driver = client.driver_for(str(record["runtime"]["name"]), options)
        bundle = client.layout.container_dir(self._id)
        task_dir = client.layout.task_dir(self._id)
        # Under the namespace lock, so a concurrent delete() of the container either sees
        # this task or has removed the record first (then this is NotFound).
        with client.layout.locked():
            client.store.get(self._id)
            try:
                task_dir.mkdir()
            except FileExistsError:
                raise task_exists(self._id) from None
        try:
            config = dict(spec)
            config["process"] = _with_console_size(spec["process"], stdio)
            _monitor.write_json_atomic(str(bundle / "config.json"), config, durable=False)
            _monitor.write_json_atomic(
                str(task_dir / "task.json"),
                {"runtime": driver.name, "runtime_options": options, "stdio": stdio_rec},
                durable=False,
            )
            _make_fifos(task_dir, stdio_rec)
            pid = self._spawn_monitor(driver, bundle, task_dir, stdio_rec, checkpoint_dir)
            master = -1
            if stdio_rec["kind"] == "tty":
                reply, fds = _monitor.request(
                    str(task_dir), {"op": "console"}, timeout=client.timeout, fds=1
                )
                if not fds:
                    raise Unavailable(f"the monitor did not pass the terminal: {reply}")
                master = fds[0]
            io = _open_io(task_dir, stdio_rec, master)
        except BaseException as exc:
            with contextlib.suppress(Error):
                driver.delete(self._id, force=True)
            shutil.rmtree(task_dir, ignore_errors=True)
            if isinstance(exc, RuntimeCommandError):
                raise runtime_refused(f"create the task of container {self._id!r}", exc) from exc
            raise
        task = LocalTask(self, driver, "", task_dir, io)
        task._pid = pid
        return task

    def _spawn_monitor(
        self,
        driver: RuntimeDriver,
        bundle: Path,
        task_dir: Path,
        stdio: dict[str, Any],
        checkpoint_dir: Path | None,
    ) -> int:
        client = self.client
        args = {
            "runtime": driver.base,
            "id": self._id,
            "bundle": str(bundle),
            "task_dir": str(task_dir),
            "events": str(client.layout.events_file),
            "events_max_bytes": client.events_max_bytes,
            "namespace": client.namespace,
            "timeout": client.timeout,
            "stdio": stdio,
            "restore": str(Path(checkpoint_dir).absolute()) if checkpoint_dir else None,
        }
        driver.state_root.mkdir(parents=True, exist_ok=True)
        args["log"] = str(task_dir / "monitor.log")
        read_fd, write_fd = os.pipe()
        try:
            client.zygote.launch(args, write_fd)
            os.close(write_fd)
            write_fd = -1
            data = b""
            deadline = time.monotonic() + client.timeout * 2
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    _kill_monitor(task_dir)
                    raise DeadlineExceeded(
                        f"creating container {self._id} with {driver.name} took more than "
                        f"{client.timeout * 2}s; monitor log: {_log_tail(task_dir)}"
                    )
                ready, _, _ = select.select([read_fd], [], [], left)
                if not ready:
                    continue
                chunk = os.read(read_fd, 65536)
                data += chunk
                if not chunk or data.endswith(b"\n"):
                    break
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
        try:
            result = json.loads(data)
        except ValueError:
            raise RuntimeCommandError(
                f"the monitor of container {self._id} failed to start: {_log_tail(task_dir)}"
            ) from None
        if "error" in result:
            raise runtime_error(
                f"{driver.name} create of {self._id}",
                result.get("command") or [],
                result.get("exit_code"),
                str(result.get("stderr", "")),
            )
        return int(result["pid"])

    def _existing(self, stdio: Stdio | None, *, attach: bool) -> LocalTask:
        client = self.client
        task_dir = client.layout.task_dir(self._id)
        try:
            task_rec = json.loads((task_dir / "task.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise task_not_found(self._id) from None
        driver = client.driver_for(str(task_rec["runtime"]), task_rec.get("runtime_options"))
        io = None
        if attach:
            stored = task_rec["stdio"]
            if stdio is not None and _stdio_record(stdio)["kind"] != stored["kind"]:
                raise InvalidArgument(
                    f"the task of {self._id} was created with {stored['kind']} stdio; "
                    "attach with the same kind"
                )
            master = -1
            if stored["kind"] == "tty":
                with contextlib.suppress(OSError):
                    _reply, fds = _monitor.request(
                        str(task_dir), {"op": "console"}, timeout=client.timeout, fds=1
                    )
                    master = fds[0] if fds else -1
            io = _open_io(task_dir, stored, master)
        return LocalTask(self, driver, "", task_dir, io)

    def task(self) -> LocalTask:
        """The existing task (no live streams; see ``attach_task``)."""
        self.client.store.get(self._id)
        return self._existing(None, attach=False)

    def attach_task(self, *, stdio: Stdio | None = None) -> LocalTask:
        """The existing task with its stdio streams re-opened."""
        self.client.store.get(self._id)
        return self._existing(stdio, attach=True)

    def delete(self, *, cleanup_snapshot: bool = True) -> None:
        """Delete the container; ``FailedPrecondition`` while a task exists."""
        task_dir = self.client.layout.task_dir(self._id)

        def check() -> None:
            if task_dir.exists():
                raise FailedPrecondition(
                    f"container {self._id} still has a task; delete the task first "
                    "(task().delete() or force_delete())"
                )

        def check_and_release() -> None:
            # Under the namespace lock: a task created by another client between a first
            # check and the release would otherwise lose its root filesystem.
            check()
            if self.client.store.get(self._id).get("image"):
                self.client.images.release_image_rootfs(self.client.layout.container_dir(self._id))

        check()
        self.client.store.delete(self._id, check=check_and_release)
        self.client.events_log.publish("/containers/delete", container_id=self._id)


class _Zygote:
    """A small stdlib-only process that forks monitors on request (see ``_monitor.zygote``).

    Started on first use; it exits when the client closes it or dies.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", _MONITOR_SCRIPT, "--zygote", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            ours.close()
            raise Unavailable(f"could not start the local backend's monitor: {exc}") from exc
        finally:
            theirs.close()
        self._sock = ours
        return ours

    def launch(self, args: Mapping[str, Any], ready_fd: int) -> None:
        """Ask for a monitor with ``args``; it reports on ``ready_fd``."""
        payload = json.dumps(args).encode()
        fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [ready_fd]))]
        with self._lock:
            for attempt in (1, 2):
                sock = self._sock if self._sock is not None else self._start()
                try:
                    sock.sendmsg([payload], fds)
                    return
                except OSError:
                    # The zygote died (killed from outside); start a new one once.
                    self.close()
                    if attempt == 2:
                        raise

    def close(self) -> None:
        """Stop the zygote (running monitors are unaffected)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
            self._proc = None


class LocalClient:
    """The local backend's client (implements ``Client``)."""

    def __init__(self, config: ClientConfig) -> None:
        unknown = sorted(set(config.options) - _KNOWN_OPTIONS)
        if unknown:
            raise InvalidArgument(
                f"unknown option(s) for the local backend: {', '.join(unknown)}; "
                "the local backend accepts root=, state=, runtime=, namespace=, timeout=, "
                "on_event= and events_max_bytes="
            )
        events_max = config.options.get("events_max_bytes", _monitor.EVENTS_MAX_BYTES)
        if (
            not isinstance(events_max, int)
            or isinstance(events_max, bool)
            or events_max < _MIN_EVENTS_BYTES
        ):
            raise InvalidArgument(
                f"events_max_bytes must be an int of at least {_MIN_EVENTS_BYTES} (the size "
                f"at which the events file is rotated), got {events_max!r}"
            )
        self.events_max_bytes = events_max
        self.timeout = config.timeout or DEFAULT_TIMEOUT
        self.runtime = config.runtime or DEFAULT_RUNTIME
        self.layout = Layout(
            config.root or default_root(), config.state or default_state(), config.namespace
        )
        self.store = ContainerStore(self.layout)
        self.events_log = EventLog(
            str(self.layout.events_file), self.layout.namespace, max_bytes=events_max
        )
        self._drivers: dict[tuple[str, str, str], RuntimeDriver] = {}
        self._lock = threading.Lock()
        self.driver_for(self.runtime)  # fail now when the runtime is missing
        self._images: LocalImageService | None = None
        self.zygote = _Zygote()
        self._closed = False
        self._callback_pump: EventCallbackPump | None = None
        if config.on_event is not None:
            self._callback_pump = EventCallbackPump(
                LocalEventStream(str(self.layout.events_file)),
                config.on_event,
                name="libcontainerd-local-events",
            )

    def driver_for(
        self, runtime: str, runtime_options: Mapping[str, Any] | None = None
    ) -> RuntimeDriver:
        """The (cached) driver of ``runtime`` with ``runtime_options`` (see RUNTIME_OPTIONS).

        Without a ``root`` option the runtime's state lives under ``state``, keyed by the
        binary actually run, so two binaries never share a state directory.
        """
        options = validate_runtime_options(runtime_options)
        binary_name = options.get("binary_name")
        if "root" in options:
            state_root = Path(options["root"]) / self.layout.namespace
        else:
            state_root = self.layout.runtime_root(binary_name or runtime)
        key = (runtime, binary_name or "", str(state_root))
        with self._lock:
            driver = self._drivers.get(key)
            if driver is None:
                driver = RuntimeDriver(
                    runtime, state_root, timeout=self.timeout, binary_name=binary_name
                )
                self._drivers[key] = driver
            return driver

    @property
    def backend(self) -> Literal["local"]:
        """Always ``"local"``."""
        return "local"

    @property
    def namespace(self) -> str:
        """The namespace every call acts in."""
        return self.layout.namespace

    @property
    def images(self) -> LocalImageService:
        """The image service: the coalesced image store under ``root``."""
        with self._lock:
            if self._images is None:
                # Imported on first use: the registry client is not needed to run containers.
                from libcontainerd.local._images import LocalImageService

                self._images = LocalImageService(self.layout.base_root, self.namespace)
            return self._images

    def version(self) -> Version:
        """The OCI runtime's version."""
        driver = self.driver_for(self.runtime)
        version, revision, full = driver.version()
        return Version(
            version=version,
            revision=revision,
            backend="local",
            runtime=driver.name,
            runtime_version=full,
        )

    def new_container(
        self,
        container_id: str,
        spec: Spec | None = None,
        *,
        image: str | None = None,
        runtime: str | None = None,
        runtime_options: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> LocalContainer:
        """Store a new container with ``spec`` (its root must point at a root filesystem).

        ``image`` prepares the root filesystem from the image store (and, without ``spec``,
        the spec from the image's config); ``extensions`` are opaque JSON values kept in
        the record.
        """
        validate_identifier(container_id, kind="container id")
        if spec is None and image is None:
            raise InvalidArgument(
                "new_container needs a spec (see libcontainerd.oci.generate_spec), an image, "
                "or both"
            )
        if spec is not None:
            spec = validate_spec(spec)
        labels = check_labels(labels)
        runtime_name = check_runtime_name(runtime) or self.runtime
        options = validate_runtime_options(runtime_options)
        self.driver_for(runtime_name, options)
        if self.store.exists(container_id):
            raise container_exists(container_id, self.namespace)
        container_dir = self.layout.container_dir(container_id)
        if image is not None:
            rootfs, config = self.images.prepare_image_rootfs(image, container_dir)
        try:
            if image is not None:
                # The one rule of both backends: the image fills what the spec leaves at
                # its defaults (see libcontainerd.oci.image).
                base = spec or generate_spec(container_id=container_id, namespace=self.namespace)
                spec = spec_with_image(base, config, root_path=rootfs)
            assert spec is not None
            self.store.create(
                container_id,
                spec,
                runtime=runtime_name,
                runtime_options=options,
                labels=labels or {},
                image=image or "",
                extensions=extensions or {},
            )
        except BaseException:
            if image is not None:
                with contextlib.suppress(Error, OSError):
                    self.images.release_image_rootfs(container_dir)
                with contextlib.suppress(OSError):
                    container_dir.rmdir()
            raise
        self.events_log.publish("/containers/create", container_id=container_id)
        return LocalContainer(self, container_id)

    def load_container(self, container_id: str) -> LocalContainer:
        """A handle on a stored container; ``NotFound`` when absent."""
        self.store.get(container_id)
        return LocalContainer(self, container_id)

    def containers(self, filters: Sequence[str] = ()) -> list[Container]:
        """Every container, optionally filtered (``id==x``, ``labels."k"==v``, ``runtime==``)."""
        filters = check_filters(filters)
        result: list[Container] = []
        for container_id in self.store.ids():
            try:
                record = self.store.get(container_id)
            except NotFound:
                continue

            def lookup(key: str, record: dict[str, Any] = record) -> str | None:
                if key == "id":
                    return str(record["id"])
                if key == "image":
                    return str(record.get("image", ""))
                if key in ("runtime", "runtime.name"):
                    return str(record["runtime"]["name"])
                if key.startswith("labels."):
                    value = (record.get("labels") or {}).get(key[len("labels.") :])
                    return None if value is None else str(value)
                return None

            if matches_filters(filters, lookup):
                result.append(LocalContainer(self, container_id))
        return result

    def events(self, filters: Sequence[str] = ()) -> LocalEventStream:
        """Events from now on (``topic==...``, ``container_id==...`` filters)."""
        return LocalEventStream(str(self.layout.events_file), check_filters(filters))

    def close(self) -> None:
        """Stop the ``on_event`` pump. Containers keep running."""
        self._closed = True
        self.zygote.close()
        if self._callback_pump is not None:
            self._callback_pump.close()

    def __enter__(self) -> LocalClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
