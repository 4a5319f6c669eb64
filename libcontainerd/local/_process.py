"""Handles on a local task and its processes: the init (:class:`LocalTask`) and exec'd ones.

A handle keeps only what it can rebuild: the process's directory under the task's
state, its streams, and a :class:`~libcontainerd.local._monitor_client.MonitorLink` to
the monitor that owns the process and its exit record.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from libcontainerd._backend_rules import (
    check_signal,
    check_terminal,
    check_terminal_size,
    exec_exists,
    no_terminal,
    process_not_found,
    runtime_refused,
)
from libcontainerd.client import ProcessSpec
from libcontainerd.errors import (
    DeadlineExceeded,
    Error,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    RuntimeCommandError,
    Unavailable,
)
from libcontainerd.local._handle_context import ContainerContext
from libcontainerd.local._monitor_client import ALIVE, MonitorLink, exit_status
from libcontainerd.local._monitor_protocol import write_json_atomic
from libcontainerd.local._runtime import RuntimeDriver
from libcontainerd.local._stdio import (
    FifoIO,
    make_fifos,
    open_io,
    read_cgroup_stats,
    stdio_record,
    with_console_size,
)
from libcontainerd.oci.validate import validate_process
from libcontainerd.shortcuts import TaskShortcuts, resolve_log_stdio
from libcontainerd.types.process import ProcessInfo
from libcontainerd.types.stats import Resources, Stats
from libcontainerd.types.status import ExitStatus, Status
from libcontainerd.types.stdio import FileIO, NullIO, Stdio

__all__ = ["LocalProcess", "LocalTask"]


class LocalProcess(TaskShortcuts):
    """A task's init process or an exec'd process (implements ``Process``)."""

    def __init__(
        self,
        container: ContainerContext,
        driver: RuntimeDriver,
        process_id: str,
        directory: Path,
        io: FifoIO | None,
        *,
        pid: int = 0,
    ) -> None:
        self._container = container
        self._client = container.client
        self._driver = driver
        self._process_id = process_id
        self._dir = directory
        self._io = io
        self._pid = pid
        self._link = MonitorLink(
            container_id=container.id,
            exec_id=process_id,
            task_dir=self._client.layout.task_dir(container.id),
            directory=directory,
            driver=driver,
            events=self._client.events_log,
            timeout=self._client.timeout,
        )
        self.attach_io(io)

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
    def pid(self) -> int:
        """The host pid (0 before the process was created/started)."""
        if not self._pid:
            self._pid = self._link.read_pid()
        return self._pid

    @property
    def io(self) -> FifoIO | None:
        """The live streams (piped or terminal stdio), else ``None``."""
        return self._io

    def attach_io(self, io: FifoIO | None) -> None:
        """Use ``io`` as this handle's streams (when re-attaching)."""
        self._io = io
        if io is not None:
            io.set_stdin_closer(self._ask_stdin_eof)
            self._client.track_streams(io)

    def _ask_stdin_eof(self) -> None:
        # The monitor gone means the process is gone: nothing is left to close.
        with contextlib.suppress(Unavailable):
            self._link.request({"op": "close-stdin", "exec_id": self._process_id})

    def _exit_record(self) -> dict[str, Any] | None:
        return self._link.exit_record()

    # ------------------------------------------------------------------ process

    def start(self) -> None:
        """Start the process; its exit is recorded by the monitor whoever waits."""
        if self._process_id:
            reply = self._link.request(
                {
                    "op": "exec-start",
                    "exec_id": self._process_id,
                    "process_file": str(self._dir / "process.json"),
                }
            )
        else:
            reply = self._link.request({"op": "start"})
        if reply.get("pid"):
            self._pid = int(reply["pid"])
        if self._io is not None and self._process_id and self._io.master == -2:
            self._attach_console()

    def _attach_console(self) -> None:
        assert self._io is not None
        self._io.set_terminal(self._link.console(), stdin=True)

    def kill(self, signal: int, *, all: bool = False) -> None:
        """Send ``signal`` (to every process of the container with ``all``)."""
        signal = check_signal(signal)
        if self._exit_record() is not None:
            raise NotFound(f"process {self.id} has already exited; nothing to signal")
        if self._process_id:
            if not self.pid:
                raise FailedPrecondition(f"process {self.id} was never started; start it first")
            os.kill(self.pid, signal)
            return
        self._driver.kill(self.container_id, int(signal), all=all)

    def wait(self, timeout: float | None = None) -> ExitStatus:
        """Block until the process exits (reads the durable exit record)."""
        return self._link.wait(self.pid, timeout)

    def status(self) -> Status:
        """The current status."""
        if self._exit_record() is not None:
            return Status.STOPPED
        if self._process_id:
            return Status.RUNNING if self.pid else Status.CREATED
        status = self._runtime_status()
        if status is Status.STOPPED and self._link.alive():
            # The monitor records the exit a moment after the runtime sees it.
            with contextlib.suppress(DeadlineExceeded):
                self._link.wait(self.pid, 0.5)
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
        if self._io is not None and self._io.stdin_open():
            self._io.close_stdin()  # also asks the monitor
        else:
            self._ask_stdin_eof()

    def delete(self) -> ExitStatus:
        """Remove the exited exec'd process and its stdio; return its exit status."""
        record = self._exit_record()
        if record is None:
            if self.pid:
                raise FailedPrecondition(
                    f"process {self.id} is still running; kill and wait for it first"
                )
            result = ExitStatus.unknown("the process was never started")
        else:
            result = exit_status(record)
        if self._io is not None:
            self._io.release()
        shutil.rmtree(self._dir, ignore_errors=True)
        self._client.events_log.publish(
            "/tasks/delete",
            container_id=self.container_id,
            process_id=self._process_id,
            pid=self.pid,
            exit_code=result.code,
            exited_at=result.exited_at.isoformat(),
        )
        return result


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
        stdio = resolve_log_stdio(stdio, self._container.log_file) or NullIO()
        check_terminal(process, stdio, f"exec process {process_id!r}")
        stdio_rec = stdio_record(stdio)
        if self._exit_record() is not None:
            raise FailedPrecondition(f"task {self.container_id} has exited; cannot exec")
        directory.parent.mkdir(exist_ok=True)
        try:
            directory.mkdir()
        except FileExistsError:
            raise exec_exists(process_id, self.container_id) from None
        try:
            write_json_atomic(
                str(directory / "process.json"), with_console_size(process, stdio), durable=False
            )
            # Kept so load_process(stdio=) can re-attach the way the process was made.
            write_json_atomic(str(directory / "stdio.json"), stdio_rec, durable=False)
            make_fifos(directory, stdio_rec)
            self._link.request(
                {
                    "op": "exec-prepare",
                    "exec_id": process_id,
                    "dir": str(directory),
                    "stdio": stdio_rec,
                }
            )
            io = open_io(directory, stdio_rec, None)
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
        if stdio_record(stdio)["kind"] != stored["kind"]:
            raise InvalidArgument(
                f"process {process_id!r} was created with {stored['kind']} stdio; "
                "attach with the same kind"
            )
        process.attach_io(open_io(directory, stored, None if stored["kind"] == "tty" else -1))
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
            if status in ALIVE:
                raise FailedPrecondition(
                    f"task {self.container_id} is {status.value}; kill it and wait for "
                    "its exit first, or use force_delete()"
                )
            if status is Status.CREATED:
                # Never started: deleting kills the waiting init; the monitor records it.
                self._driver.delete(self.container_id, force=True)
                result = self.wait(self._client.timeout)
            else:
                result = ExitStatus.unknown(
                    f"the monitor of task {self.container_id} is gone and left no exit record"
                )
        else:
            result = exit_status(record)
        if not self._link.runtime_deleted():
            try:
                self._driver.delete(self.container_id)
            except FailedPrecondition:
                self._driver.delete(self.container_id, force=True)
        self._link.wait_monitor_exit()
        if self._io is not None:
            self._io.release()
        shutil.rmtree(self._dir, ignore_errors=True)
        self._client.events_log.publish(
            "/tasks/delete",
            container_id=self.container_id,
            pid=self.pid,
            exit_code=result.code,
            exited_at=result.exited_at.isoformat(),
        )
        self._client.networks.detach(self.container_id)
        return result

    def force_delete(self) -> ExitStatus:
        """Kill every process, wait for the init's exit and delete the task."""
        if self._exit_record() is None:
            with contextlib.suppress(Error):
                if self._runtime_status() in (Status.PAUSED, Status.PAUSING):
                    # Frozen processes would not die until thawed.
                    self._driver.resume(self.container_id)
            with contextlib.suppress(Error):
                self._driver.kill(self.container_id, int(signal.SIGKILL), all=True)
            with contextlib.suppress(Error):
                if self.status() is Status.CREATED:
                    self._driver.delete(self.container_id, force=True)
            with contextlib.suppress(DeadlineExceeded):
                self.wait(self._client.timeout)
        return self.delete()
