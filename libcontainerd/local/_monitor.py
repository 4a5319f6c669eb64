"""The per-container monitor of the local backend (standard library only).

A per-client zygote (``--zygote``, see :func:`zygote`) forks one monitor per task. The
monitor detaches from the client (own session, double fork), becomes a child subreaper,
creates the container with the OCI runtime, then owns it: the container's stdio, the
reaping of its init and of every exec'd process, and the durable record of each exit
(``exit.json``, written then renamed).

Clients talk to it over an abstract unix socket (one JSON request per connection, see
:mod:`libcontainerd.local._monitor_protocol`): ``start``, ``exec-prepare``,
``exec-start``, ``wait``, ``console`` (the pty master, sent with SCM_RIGHTS) and
``close-stdin``. Task events (create, start, exec-started, exit) are appended by the
monitor to the namespace's events file so they are ordered per container. The monitor
exits once the init and every other child have been reaped.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import fcntl
import json
import os
import signal
import socket
import struct
import sys
import termios
import threading
import time

from libcontainerd.local._monitor_exec_hold import ExecHold
from libcontainerd.local._monitor_oom import OomWatcher
from libcontainerd.local._monitor_protocol import (
    EVENTS_MAX_BYTES,
    EXIT_FILE,
    RUNTIME_DELETED_FILE,
    append_event,
    control_address,
    now_iso,
    write_json_atomic,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds of start-up on the hot path
    from typing import Any

_PR_SET_CHILD_SUBREAPER = 36
# Resolved once in the zygote; every forked monitor shares it.
_LIBC = ctypes.CDLL(None, use_errno=True)


# ------------------------------------------------------------------- the monitor


class _Proc:
    """What the monitor knows of one process (init is ``""``)."""

    def __init__(self, proc_id: str, directory: str, stdio: dict[str, Any]) -> None:
        self.id = proc_id
        self.dir = directory
        self.stdio = stdio
        self.pid = 0
        self.keepers: dict[str, int] = {}
        self.stdin_close_asked = False  # released once the process holds its read end
        self.master = -1
        self.exit: dict[str, Any] | None = None
        self.started = False


class Monitor:
    """Creates one container and supervises its processes until they are all gone."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.args = args
        self.runtime: list[str] = list(args["runtime"])
        self.container_id: str = args["id"]
        self.task_dir: str = args["task_dir"]
        self.events: str = args["events"]
        self.events_max: int = int(args.get("events_max_bytes") or EVENTS_MAX_BYTES)
        self.namespace: str = args["namespace"]
        self.timeout: float = float(args["timeout"])
        self.cv = threading.Condition()
        self.statuses: dict[int, int] = {}
        self.procs: dict[str, _Proc] = {"": _Proc("", self.task_dir, args["stdio"])}
        self.events_lock = threading.Lock()
        self.init_done = threading.Event()
        self.handlers: list[threading.Thread] = []
        self.oom = OomWatcher(lambda: self.event("/tasks/oom"))
        self.spawned = threading.Event()
        self.cleanup_done = threading.Event()
        self.runtime_deleted = False

    # ------------------------------------------------------------------ utilities

    def event(self, topic: str, **fields: Any) -> None:
        record = {
            "topic": topic,
            "namespace": self.namespace,
            "timestamp": now_iso(),
            "container_id": self.container_id,
        }
        record.update(fields)
        append_event(self.events, record, max_bytes=self.events_max)

    def spawn(self, argv: list[str], fds: dict[int, int]) -> int:
        """Start ``argv`` with ``fds`` mapped (target -> source) as its stdio.

        Raises ``OSError`` when the program cannot be executed.
        """
        # posix_spawn shares the address space until exec (vfork), where a fork copies
        # the page tables of this whole threaded interpreter: ~1-2 ms per runtime call.
        actions = [(os.POSIX_SPAWN_DUP2, source, target) for target, source in fds.items()]
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)
        self.spawned.set()
        return pid

    def wait_pid(self, pid: int, timeout: float) -> int | None:
        """The wait status of child ``pid`` once the reaper collected it (None on timeout)."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while pid not in self.statuses:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cv.wait(left)
            return self.statuses.pop(pid)

    def run(self, argv: list[str], stdio: tuple[int, int, int], timeout: float) -> dict[str, Any]:
        """Run a runtime command to completion; return ``{"ok"}`` or an error description."""
        log = os.path.join(self.task_dir, f"runtime-{os.urandom(4).hex()}.log")
        full = [self.runtime[0], "--log", log, "--log-format", "json", *self.runtime[1:], *argv]
        try:
            pid = self.spawn(full, {0: stdio[0], 1: stdio[1], 2: stdio[2]})
        except OSError as exc:
            return {"error": "exec", "exit_code": None, "command": full, "stderr": str(exc)}
        status = self.wait_pid(pid, timeout)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            self.wait_pid(pid, 5.0)
            result: dict[str, Any] = {"error": "timeout", "command": full, "exit_code": None}
        else:
            code = os.waitstatus_to_exitcode(status)
            result = {"ok": True} if code == 0 else {"error": "failed", "exit_code": code}
            result["command"] = full
        if "error" in result:
            result["stderr"] = _log_errors(log)
        with contextlib.suppress(OSError):
            os.unlink(log)
        return result

    # ---------------------------------------------------------------------- stdio

    def open_stdio(self, proc: _Proc) -> tuple[int, int, int]:
        """The stdin/stdout/stderr descriptors for ``proc`` (caller closes them)."""
        stdio = proc.stdio
        kind = stdio.get("kind", "null")
        null_r = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        null_w = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        if kind == "file":
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
            out = os.open(stdio["stdout"], flags, 0o644)
            err = os.open(stdio.get("stderr") or stdio["stdout"], flags, 0o644)
            os.close(null_w)
            return null_r, out, err
        if kind == "piped":
            fds = []
            for name in ("stdin", "stdout", "stderr"):
                if not stdio.get(name):
                    fds.append(null_r if name == "stdin" else os.dup(null_w))
                    continue
                path = os.path.join(proc.dir, name)
                # The keeper (read-write) keeps the FIFO alive whoever reads it, so the
                # process never gets SIGPIPE when its client dies; it is closed on exit.
                if name not in proc.keepers:
                    proc.keepers[name] = os.open(path, os.O_RDWR | os.O_CLOEXEC)
                if name == "stdin":
                    fds.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
                    os.close(null_r)
                else:
                    fds.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
            os.close(null_w)
            return fds[0], fds[1], fds[2]
        return null_r, null_w, os.dup(null_w)

    def receive_console(self, listener: socket.socket, proc: _Proc, hold: ExecHold | None) -> None:
        listener.settimeout(self.timeout)
        conn, _ = listener.accept()
        with conn:
            _msg, ancdata, _f, _a = conn.recvmsg(4096, socket.CMSG_SPACE(4))
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                proc.master = struct.unpack("i", payload[:4])[0]
                os.set_inheritable(proc.master, False)
        if proc.master >= 0:
            size = struct.pack(
                "HHHH", int(proc.stdio.get("height", 24)), int(proc.stdio.get("width", 80)), 0, 0
            )
            fcntl.ioctl(proc.master, termios.TIOCSWINSZ, size)
        if hold is not None:
            hold.release()  # sized: the process may start now

    def launch(self, proc: _Proc, argv: list[str]) -> dict[str, Any]:
        """Run a create/restore/exec command for ``proc`` with its stdio; read its pid."""
        tty = proc.stdio.get("kind") == "tty"
        listener = None
        console = ""
        hold = None
        if tty:
            console = os.path.join("/tmp", f"lcd-console-{os.urandom(16).hex()}.sock")
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            listener.bind(console)
            listener.listen(1)
            argv = [argv[0], "--console-socket", console, *argv[1:]]
            fds = self.open_stdio(_Proc(proc.id, proc.dir, {"kind": "null"}))
            if proc.id:
                # An exec'd process must not start before its pty is sized (crun sizes it
                # only after letting the process go); an init waits for "start" anyway.
                hold = ExecHold(self.procs[""].pid)
        else:
            fds = self.open_stdio(proc)
        receiver = None
        try:
            if listener is not None:
                receiver = threading.Thread(
                    target=self.receive_console, args=(listener, proc, hold)
                )
                receiver.start()
            result = self.run(argv, fds, self.timeout)
            if receiver is not None:
                if "error" in result:
                    # Unblock accept() so the thread ends.
                    try:
                        with socket.socket(socket.AF_UNIX) as poke:
                            poke.connect(console)
                    except OSError:
                        pass
                receiver.join(self.timeout)
        finally:
            if hold is not None:
                hold.release()
            for fd in fds:
                os.close(fd)
            if listener is not None:
                listener.close()
                with contextlib.suppress(OSError):
                    os.unlink(console)
        if "error" in result:
            return result
        with open(os.path.join(proc.dir, "pid"), encoding="ascii") as f:
            proc.pid = int(f.read().strip())
        return {"ok": True, "pid": proc.pid}

    # ---------------------------------------------------------------------- exits

    def reap(self) -> None:
        """Reap every child until the init and everything else is gone."""
        while True:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                if self.init_done.is_set():
                    return
                # No child yet: sleep until the next spawn instead of polling.
                self.spawned.wait()
                self.spawned.clear()
                continue
            except InterruptedError:
                continue
            with self.cv:
                watched = [p for p in self.procs.values() if p.pid == pid and p.exit is None]
                if watched:
                    handler = threading.Thread(target=self.on_exit, args=(watched[0], status))
                    self.handlers.append(handler)
                    handler.start()
                else:
                    self.statuses[pid] = status
                    self.cv.notify_all()

    def claim(self, proc: _Proc) -> None:
        """After learning ``proc.pid``: handle an exit the reaper saw before we knew it."""
        with self.cv:
            status = self.statuses.pop(proc.pid, None)
        if status is not None:
            self.on_exit(proc, status)

    def on_exit(self, proc: _Proc, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        if code < 0:
            code = 128 - code
        record = {"code": code, "exited_at": now_iso(), "pid": proc.pid}
        if proc.id == "":
            self.oom.check()  # an OOM kill is reported before the exit it caused
        with self.events_lock:
            # Not fsynced: the state directory lives for one boot, like the processes.
            write_json_atomic(os.path.join(proc.dir, EXIT_FILE), record, durable=False)
            for fd in proc.keepers.values():
                os.close(fd)
            proc.keepers.clear()
            with self.cv:
                proc.exit = record
                self.cv.notify_all()
            self.event(
                "/tasks/exit",
                process_id=proc.id,
                pid=proc.pid,
                exit_code=code,
                exited_at=record["exited_at"],
            )
        if proc.id == "":
            self.delete_from_runtime()
            self.init_done.set()
            self.spawned.set()  # wake a reaper that found no child, so it can end

    def delete_from_runtime(self) -> None:
        """Once the init exited, remove the container from the runtime off the caller's path.

        Skipped while an exec'd process still runs (a container sharing the host's pid
        namespace), where ``task.delete()`` keeps deciding when it goes. The reaper is
        still running here (``init_done`` is not set yet), so it collects the command.
        """
        try:
            with self.cv:
                running = [p for p in self.procs.values() if p.id and p.pid and p.exit is None]
            if running:
                return
            null = _null_stdio()
            try:
                result = self.run(["delete", self.container_id], null, self.timeout)
            finally:
                for fd in null:
                    os.close(fd)
            if "ok" in result:
                with open(os.path.join(self.task_dir, RUNTIME_DELETED_FILE), "w"):
                    pass
                self.runtime_deleted = True
        finally:
            self.cleanup_done.set()

    # -------------------------------------------------------------------- control

    def serve(self, listener: socket.socket) -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        with conn:
            buf = b""
            while not buf.endswith(b"\n"):
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            try:
                message = json.loads(buf)
                reply, fds = self.dispatch(message)
            except Exception as exc:
                reply, fds = {"error": "monitor", "stderr": repr(exc)}, []
            payload = json.dumps(reply).encode() + b"\n"
            try:
                if fds:
                    conn.sendmsg(
                        [payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
                    )
                else:
                    conn.sendall(payload)
            except OSError:
                pass

    def dispatch(self, message: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        op = message.get("op")
        proc_id = str(message.get("exec_id", ""))
        if op == "exec-prepare":
            new = _Proc(proc_id, message["dir"], message["stdio"])
            with self.cv:
                self.procs[proc_id] = new
            if new.stdio.get("kind") == "piped":
                for name in ("stdin", "stdout", "stderr"):
                    if new.stdio.get(name):
                        new.keepers[name] = os.open(
                            os.path.join(new.dir, name), os.O_RDWR | os.O_CLOEXEC
                        )
            return {"ok": True}, []
        proc = self.procs.get(proc_id)
        if proc is None:
            return {"error": "not-found", "stderr": f"no process {proc_id!r}"}, []
        if op == "start":
            with self.events_lock:
                null = _null_stdio()
                try:
                    result = self.run(["start", self.container_id], null, self.timeout)
                finally:
                    for fd in null:
                        os.close(fd)
                if "ok" in result:
                    self.event("/tasks/start", process_id="", pid=proc.pid)
                    proc.started = True
                    if proc.stdin_close_asked:
                        release_stdin(proc)
            return result, []
        if op == "exec-start":
            with self.events_lock:
                argv = ["exec", "--detach", "--process", message["process_file"]]
                argv += ["--pid-file", os.path.join(proc.dir, "pid"), self.container_id]
                result = self.launch(proc, argv)
                if "ok" in result:
                    self.event("/tasks/exec-started", process_id=proc.id, pid=proc.pid)
                    proc.started = True
                    if proc.stdin_close_asked:
                        release_stdin(proc)
            if "ok" in result:
                self.claim(proc)
            return result, []
        if op == "wait":
            with self.cv:
                deadline = time.monotonic() + float(message.get("timeout") or 1e9)
                while proc.exit is None and time.monotonic() < deadline:
                    self.cv.wait(deadline - time.monotonic())
                return ({"ok": True, "exit": proc.exit} if proc.exit else {"error": "timeout"}), []
        if op == "cleanup":
            self.cleanup_done.wait(float(message.get("timeout") or self.timeout))
            return {"ok": True, "deleted": self.runtime_deleted}, []
        if op == "console":
            if proc.master < 0:
                return {"error": "no-console", "stderr": "the process has no terminal"}, []
            return {"ok": True}, [proc.master]
        if op == "close-stdin":
            with self.events_lock:  # ordered with start/exec-start
                proc.stdin_close_asked = True
                if proc.started:
                    release_stdin(proc)
            return {"ok": True}, []
        return {"error": "bad-request", "stderr": f"unknown operation {op!r}"}, []

    # ------------------------------------------------------------------------ main

    def main(self, ready_fd: int) -> None:
        _LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        init = self.procs[""]
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        listener.bind(control_address(self.task_dir))
        listener.listen(64)
        restore = self.args.get("restore")
        pid_file = os.path.join(self.task_dir, "pid")
        bundle = self.args["bundle"]
        if restore:
            argv = ["restore", "--detach", "--image-path", restore, "--bundle", bundle]
        else:
            argv = ["create", "--bundle", bundle]
        argv += ["--pid-file", pid_file, self.container_id]
        # The reaper runs from the start so runtime commands are collected by one waiter.
        reaper = threading.Thread(target=self.reap, daemon=True)
        reaper.start()
        with self.events_lock:
            result = self.launch(init, argv)
            if "ok" in result:
                self.event("/tasks/create", process_id="", pid=init.pid)
                if restore:
                    init.started = True
                    self.event("/tasks/start", process_id="", pid=init.pid)
        if "error" in result:
            # Free the control address before the client hears of the failure: it may
            # create the next task of this container (same address) at once.
            listener.close()
        os.write(ready_fd, json.dumps(result).encode() + b"\n")
        os.close(ready_fd)
        if "error" in result:
            os._exit(1)
        threading.Thread(
            target=self.oom.watch, args=(init.pid, self.init_done), daemon=True
        ).start()
        self.claim(init)
        threading.Thread(target=self.serve, args=(listener,), daemon=True).start()
        reaper.join()
        for handler in self.handlers:
            handler.join()
        os._exit(0)


def release_stdin(proc: _Proc) -> None:
    """Drop the monitor's own end of ``proc``'s stdin FIFO: the process reads EOF.

    The monitor holds that end for the process's whole life, so a client that dies
    (or closes without closing stdin) does not end the process's input and a later
    client can attach and write; only an explicit close-stdin request lets go, and
    only once the process runs (before that, the end keeps the FIFO and what the
    client already wrote alive, and an exec'd process would block opening it).
    """
    if "stdin" in proc.keepers:
        os.close(proc.keepers.pop("stdin"))


def _null_stdio() -> tuple[int, int, int]:
    return (
        os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC),
        os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC),
        os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC),
    )


def _log_errors(path: str) -> str:
    """The error messages of a runtime's JSON log (or its raw text)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return ""
    messages = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            messages.append(line)
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal", "warning"):
            messages.append(str(entry.get("msg", "")))
    return "\n".join(m for m in messages if m)


def _run_monitor(args: dict[str, Any], ready_fd: int) -> None:
    """In a fresh child of the zygote: detach (own session) and become the monitor.

    The zygote reaps its children automatically (SIGCHLD ignored) and the monitor is
    adopted by init when the zygote ends, so one fork is enough to outlive the client.
    """
    # Inherited from the zygote; the monitor must see its own children's exits.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()
    with open(os.path.join(args["task_dir"], "monitor.pid"), "w", encoding="ascii") as f:
        f.write(str(os.getpid()))
    log = os.open(args["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.dup2(log, 2)
    os.close(log)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    Monitor(args).main(ready_fd)


def zygote(sock_fd: int) -> None:
    """Fork a monitor for every request on the SOCK_SEQPACKET socket ``sock_fd``.

    A request is the JSON arguments plus, as SCM_RIGHTS, the write end of the client's
    ready pipe. Forking this small single-threaded process costs far less than starting
    an interpreter per container. The zygote exits when the client closes its end.
    """
    os.set_inheritable(sock_fd, False)
    sock = socket.socket(fileno=sock_fd)
    # Monitors are reaped by the kernel as they end: no waitpid, no zombie.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        try:
            data, ancdata, _flags, _addr = sock.recvmsg(1 << 20, socket.CMSG_SPACE(4))
        except InterruptedError:
            continue
        if not data:
            return
        fds = array.array("i")
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % 4])
        if not fds:
            continue
        ready_fd = fds[0]
        for extra in fds[1:]:
            os.close(extra)
        # Descriptors from SCM_RIGHTS are inheritable: the runtime and the container
        # must never hold the ready pipe.
        os.set_inheritable(ready_fd, False)
        pid = os.fork()
        if pid == 0:
            try:
                sock.close()
                _run_monitor(json.loads(data), ready_fd)
            except BaseException:
                # stderr is the task's monitor.log by now: the client quotes it.
                import traceback

                traceback.print_exc()
            finally:
                os._exit(1)
        os.close(ready_fd)


def main(argv: list[str]) -> None:
    """Entry point: ``[<name>, "--zygote", <socket fd>]`` (started by the client's Zygote)."""
    if len(argv) == 3 and argv[1] == "--zygote":
        zygote(int(argv[2]))
        return
    sys.stderr.write("usage: --zygote <fd> (the local backend starts this itself)\n")
    sys.exit(2)
