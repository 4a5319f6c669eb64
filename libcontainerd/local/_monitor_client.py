"""The client side of the per-container monitor: starting it, asking it, waiting on it.

:class:`Zygote` forks monitors (see :func:`libcontainerd.local._monitor.zygote`);
:func:`spawn_monitor` asks it for one and reads the runtime's create result.
:class:`MonitorLink` is one process's line to its monitor: requests with their errors
translated, the pty master, and :meth:`MonitorLink.wait`, which follows the process
through a pidfd and records a lost exit once when the monitor was killed.
"""

from __future__ import annotations

import array
import contextlib
import datetime as dt
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from libcontainerd._backend_rules import runtime_missing
from libcontainerd.errors import (
    DeadlineExceeded,
    Error,
    NotFound,
    RuntimeCommandError,
    Unavailable,
)
from libcontainerd.local._events import EventLog
from libcontainerd.local._monitor_protocol import (
    RUNTIME_DELETED_FILE,
    create_exit,
    monitor_alive,
    now_iso,
    read_exit,
    request,
)
from libcontainerd.local._runtime import RuntimeDriver, runtime_error
from libcontainerd.types.status import ExitStatus, Status

__all__ = ["ALIVE", "MonitorLink", "Zygote", "exit_status", "spawn_monitor"]

#: The statuses of a task whose init still runs.
ALIVE = (Status.RUNNING, Status.PAUSED, Status.PAUSING)

# The zygote runs with the standard library alone (-I -S): it finds this package by path.
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])
_BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from libcontainerd.local._monitor import main; main(sys.argv[1:])"
)


def exit_status(record: Mapping[str, Any]) -> ExitStatus:
    """The :class:`ExitStatus` of a stored exit record."""
    error = record.get("error")
    return ExitStatus(
        int(record["code"]),
        dt.datetime.fromisoformat(str(record["exited_at"])),
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


@attrs.define(kw_only=True, eq=False)
class MonitorLink:
    """One process's line to the monitor of its task.

    ``exec_id`` is ``""`` for the task's init; ``directory`` holds the process's pid
    file and exit record.
    """

    container_id: str
    exec_id: str
    task_dir: Path
    directory: Path
    driver: RuntimeDriver
    events: EventLog
    timeout: float

    @property
    def name(self) -> str:
        """The process id as callers see it."""
        return self.exec_id or self.container_id

    def read_pid(self) -> int:
        """The pid the runtime wrote (0 before the process exists)."""
        with contextlib.suppress(OSError, ValueError):
            return int((self.directory / "pid").read_text(encoding="ascii").strip())
        return 0

    def exit_record(self) -> dict[str, Any] | None:
        """The process's exit record, once it exited."""
        return read_exit(str(self.directory))

    def alive(self) -> bool:
        """Whether the monitor still answers."""
        return monitor_alive(str(self.task_dir))

    def request(self, message: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send ``message``; return the reply or raise the typed error it describes."""
        wait = timeout if timeout is not None else self.timeout
        try:
            reply, _ = request(str(self.task_dir), message, timeout=wait)
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
            raise reply_error(f"{message.get('op')} of {self.name}", reply)
        return reply

    def runtime_deleted(self) -> bool:
        """Whether the monitor removed the exited container from the runtime itself.

        The monitor runs ``runtime delete`` as soon as the init exits; this waits for that
        to finish. ``False`` (the caller deletes) when the monitor skipped it, failed, or
        is gone without having done it.
        """
        marker = self.task_dir / RUNTIME_DELETED_FILE
        if marker.exists():
            return True
        try:
            reply = self.request({"op": "cleanup", "timeout": self.timeout}, self.timeout + 1.0)
        except Unavailable:
            return marker.exists()  # it finished and exited in the meantime
        except Error:
            return False
        return bool(reply.get("deleted"))

    def wait_monitor_exit(self) -> None:
        """Block (bounded by the timeout) until the task's monitor has exited.

        A task's directory and control address may be reused by a new task only once
        its old monitor is gone; it exits right after its last process was reaped.
        """
        try:
            pid = int((self.task_dir / "monitor.pid").read_text(encoding="ascii"))
            pidfd = os.pidfd_open(pid)
        except (OSError, ValueError):
            return
        try:
            # The pid may have been reused: trust the pidfd only while the monitor answers.
            if self.alive():
                _wait_pidfd(pidfd, time.monotonic() + self.timeout)
        finally:
            os.close(pidfd)

    def console(self) -> int:
        """The pty master of the process (a new descriptor the caller owns)."""
        reply, fds = request(
            str(self.task_dir),
            {"op": "console", "exec_id": self.exec_id},
            timeout=self.timeout,
            fds=1,
        )
        if "error" in reply or not fds:
            raise Unavailable(f"could not get the terminal of {self.name}: {reply.get('stderr')}")
        return fds[0]

    def wait(self, pid: int, timeout: float | None) -> ExitStatus:
        """Block until the process exits (the durable exit record decides)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.exit_record()
            if record is not None:
                return exit_status(record)
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if left is not None and left <= 0:
                raise DeadlineExceeded(f"process {self.name} did not exit within {timeout}s")
            try:
                reply, _ = request(
                    str(self.task_dir),
                    {"op": "wait", "exec_id": self.exec_id, "timeout": left},
                    timeout=None if left is None else left + 1.0,
                )
            except TimeoutError:
                continue
            except OSError:
                if self.alive():
                    continue  # a transient connection failure, not a lost monitor
                return self._wait_without_monitor(pid, timeout, deadline)
            if reply.get("exit"):
                return exit_status(reply["exit"])
            if reply.get("error") not in (None, "timeout"):
                record = self.exit_record()
                if record is not None:
                    return exit_status(record)
                raise reply_error(f"wait for {self.name}", reply)

    def _wait_without_monitor(
        self, pid: int, timeout: float | None, deadline: float | None
    ) -> ExitStatus:
        """The monitor is gone: wait for the process itself, then record a lost exit.

        Only a process's parent (the monitor, as subreaper) can learn its exit code, and
        the runtime's state keeps none, so once the monitor was killed the code cannot be
        recovered. The exit itself can still be awaited, through a pidfd (no polling),
        and is recorded once as code 255 with an ``error`` saying why, so every later
        call and every client agree and subscribers get their ``/tasks/exit``.
        """
        record = self.exit_record()
        if record is not None:
            return exit_status(record)
        if not self.task_dir.exists():
            raise NotFound(f"task {self.container_id} was deleted") from None
        pidfd = self._live_pidfd(pid)
        if pidfd >= 0:
            try:
                if not _wait_pidfd(pidfd, deadline):
                    raise DeadlineExceeded(f"process {self.name} did not exit within {timeout}s")
            finally:
                os.close(pidfd)
        return self._record_lost_exit(pid)

    def _live_pidfd(self, pid: int) -> int:
        """A pidfd on this process while it still runs in the container, else -1."""
        if not pid:
            return -1
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return -1
        # The pid may have been reused since: trust the pidfd only if the runtime (asked
        # after it was opened) still places this pid in the container.
        try:
            if self.exec_id:
                alive = pid in self.driver.ps(self.container_id)
            else:
                state = self.driver.state(self.container_id)
                alive = state.get("pid") == pid and Status.parse(
                    str(state.get("status", "unknown"))
                ) in (*ALIVE, Status.CREATED)
        except Error:
            alive = False
        if not alive:
            os.close(pidfd)
            return -1
        return pidfd

    def _record_lost_exit(self, pid: int) -> ExitStatus:
        """Store (once, whichever client comes first) the exit of an unmonitored process."""
        record = {
            "code": ExitStatus.UNKNOWN_CODE,
            "exited_at": now_iso(),
            "pid": pid,
            "error": (
                f"the monitor of container {self.container_id} was killed before process "
                f"{self.name} exited, so its exit code is lost (reported as "
                f"{ExitStatus.UNKNOWN_CODE}); only the monitor, as the process's parent, can "
                f"learn it; do not kill the process whose pid is in {self.task_dir}/monitor.pid"
            ),
        }
        if create_exit(str(self.directory), record):
            self.events.publish(
                "/tasks/exit",
                container_id=self.container_id,
                process_id=self.exec_id,
                pid=record["pid"],
                exit_code=record["code"],
                exited_at=record["exited_at"],
            )
        return exit_status(self.exit_record() or record)


class Zygote:
    """A small stdlib-only process that forks monitors on request (see ``_monitor.zygote``).

    Started on first use; it exits when the client closes it or dies.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        command = [sys.executable, "-I", "-S", "-c", _BOOTSTRAP, _PACKAGE_PARENT]
        try:
            self._proc = subprocess.Popen(
                [*command, "--zygote", str(theirs.fileno())],
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

    @property
    def pid(self) -> int:
        """The zygote's pid (0 before its first use)."""
        return self._proc.pid if self._proc is not None else 0

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


def reply_error(what: str, reply: Mapping[str, Any]) -> Error:
    """The typed error for a monitor's error reply about ``what``.

    ``exec`` means the runtime binary could not be started at all (gone, not
    executable): the runtime is missing, whatever the request was.
    """
    command = reply.get("command") or []
    stderr = str(reply.get("stderr", ""))
    if reply.get("error") == "exec":
        binary = command[0] if command else "(the container's runtime)"
        return runtime_missing(
            binary,
            RuntimeCommandError(f"{what} failed: {stderr}", command=command, exit_code=None),
        )
    return runtime_error(what, command, reply.get("exit_code"), stderr)


def _log_tail(task_dir: Path) -> str:
    try:
        return (task_dir / "monitor.log").read_text(errors="replace")[-2000:] or "(empty)"
    except OSError:
        return "(no log)"


def _kill_monitor(task_dir: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        os.kill(int((task_dir / "monitor.pid").read_text(encoding="ascii")), signal.SIGKILL)


def _read_ready(read_fd: int, task_dir: Path, limit: float, what: str) -> bytes:
    """The monitor's one-line create result from the ready pipe (blocking, bounded)."""
    data = b""
    deadline = time.monotonic() + limit
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            _kill_monitor(task_dir)
            raise DeadlineExceeded(
                f"{what} took more than {limit}s; monitor log: {_log_tail(task_dir)}"
            )
        ready, _, _ = select.select([read_fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(read_fd, 65536)
        data += chunk
        if not chunk or data.endswith(b"\n"):
            return data


def spawn_monitor(zygote: Zygote, args: Mapping[str, Any], *, timeout: float, what: str) -> int:
    """Have ``zygote`` fork a monitor with ``args``; return the init's pid once created.

    ``what`` names the operation in errors (``"runc create of c1"``).
    """
    task_dir = Path(args["task_dir"])
    read_fd, write_fd = os.pipe()
    try:
        zygote.launch(args, write_fd)
        os.close(write_fd)
        write_fd = -1
        data = _read_ready(read_fd, task_dir, timeout * 2, what)
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    try:
        result = json.loads(data)
    except ValueError:
        raise RuntimeCommandError(
            f"the monitor for {what} failed to start: {_log_tail(task_dir)}"
        ) from None
    if "error" in result:
        raise reply_error(what, result)
    return int(result["pid"])
