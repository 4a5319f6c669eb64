"""Client-side stdio of local tasks: the stdio record, FIFO and pty streams, cgroup stats.

A task's or exec'd process's stdio is kept as a small JSON record (``stdio_record``) so
a later client re-attaches the way the process was made (``open_io``).
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import struct
import termios
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from libcontainerd._process_streams import ProcessStreams
from libcontainerd.errors import InvalidArgument, NotFound
from libcontainerd.types.stats import Stats
from libcontainerd.types.stdio import FileIO, NullIO, PipedIO, Stdio, TerminalIO

__all__ = [
    "FifoIO",
    "StdinWriter",
    "TtyReader",
    "make_fifos",
    "open_fifo_reader",
    "open_fifo_writer",
    "open_io",
    "read_cgroup_stats",
    "stdio_record",
    "with_console_size",
]


def stdio_record(stdio: Stdio) -> dict[str, Any]:
    """The JSON record of ``stdio`` (what the monitor and a re-attaching client read)."""
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


def with_console_size(process: Mapping[str, Any], stdio: Stdio) -> dict[str, Any]:
    """``process`` with the terminal's size, so the process sees it from its first moment."""
    result = dict(process)
    if isinstance(stdio, TerminalIO):
        result["consoleSize"] = {"height": stdio.height, "width": stdio.width}
    return result


def make_fifos(directory: Path, stdio: Mapping[str, Any]) -> None:
    """Create the FIFOs a piped ``stdio`` record names, in ``directory``."""
    if stdio["kind"] != "piped":
        return
    for name in ("stdin", "stdout", "stderr"):
        if stdio.get(name):
            os.mkfifo(directory / name, 0o600)


def _blocking(fd: int) -> int:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
    return fd


def open_fifo_reader(path: Path) -> IO[bytes]:
    """Open a FIFO for reading without waiting for a writer."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    return os.fdopen(_blocking(fd), "rb", buffering=0)


class StdinWriter(io.FileIO):
    """The write end of a piped process's stdin FIFO.

    The monitor holds the FIFO open for the process's whole life, so closing this end
    alone is not EOF: :meth:`close` also runs the callback the process handle set
    (``set_on_close``), which asks the monitor to let go. A writer that is only
    dropped or garbage collected (or whose client dies) leaves the process's stdin
    open for a later client, as containerd's shim does.
    """

    def __init__(self, fd: int) -> None:
        super().__init__(fd, "wb", closefd=True)
        self._on_close: Callable[[], None] | None = None

    def set_on_close(self, callback: Callable[[], None] | None) -> None:
        """Run ``callback`` once, after an explicit :meth:`close`."""
        self._on_close = callback

    def close(self) -> None:
        """Close this end and deliver EOF to the process."""
        was_open = not self.closed
        super().close()
        callback, self._on_close = self._on_close, None
        if was_open and callback is not None:
            callback()

    def release(self) -> None:
        """Close this end only; the process's stdin stays open."""
        self._on_close = None
        self.close()

    def __del__(self) -> None:
        self.release()


def open_fifo_writer(path: Path) -> StdinWriter | None:
    """Open a FIFO for writing; ``None`` when nobody holds its read end any more."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            return None
        raise
    return StdinWriter(_blocking(fd))


class TtyReader(io.RawIOBase):
    """Reads a pty master, turning the EIO of a hung-up terminal into end of file."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def readinto(self, buffer: Any) -> int:
        try:
            data = os.read(self._fd, len(buffer))
        except OSError as exc:
            if exc.errno == errno.EIO:
                return 0
            raise
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


class FifoIO(ProcessStreams):
    """The live streams of a process (implements ``ProcessIO``)."""

    def __init__(
        self,
        stdin: IO[bytes] | None,
        stdout: IO[bytes] | None,
        stderr: IO[bytes] | None,
        *,
        master: int = -1,
    ) -> None:
        super().__init__(stdin, stdout, stderr)
        self.master = master

    def set_terminal(self, master: int, *, stdin: bool) -> None:
        """Use the pty ``master`` (owned from now on) for stdout and, with ``stdin``, stdin."""
        self.master = master
        self._stdout = io.BufferedReader(TtyReader(os.dup(master)))
        self._stdin = os.fdopen(os.dup(master), "wb", buffering=0) if stdin else None

    def resize(self, width: int, height: int) -> None:
        """Set the terminal size (pty only)."""
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def set_stdin_closer(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` (asking the monitor for EOF) when piped stdin is closed."""
        if isinstance(self._stdin, StdinWriter):
            self._stdin.set_on_close(callback)

    def stdin_open(self) -> bool:
        """Whether this object holds a piped stdin that was not closed yet."""
        return isinstance(self._stdin, StdinWriter) and not self._stdin.closed

    def close_stdin(self) -> None:
        """Close the stdin stream (piped: the process reads EOF)."""
        if self._stdin is not None:
            self._stdin.close()

    def close(self) -> None:
        """Close every stream; closing piped stdin delivers EOF, as ``stdin.close()`` does."""
        for stream in (self._stdout, self._stderr, self._stdin):
            if stream is not None:
                stream.close()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1

    def release(self) -> None:
        """Close every stream without closing the process's stdin (the process is gone)."""
        if isinstance(self._stdin, StdinWriter):
            self._stdin.release()
        self.close()


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _kv(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def read_cgroup_stats(pid: int, cgroup_root: Path = Path("/sys/fs/cgroup")) -> Stats:
    """Resource usage of the cgroups of process ``pid`` (cgroup v1 or v2).

    Reading the cgroup files directly works for every runtime (crun has no
    ``events --stats``) and costs no process start.
    """
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text(encoding="ascii").splitlines()
    except OSError as exc:
        raise NotFound(f"process {pid} is gone; the task has no cgroup to read") from exc
    v1: dict[str, str] = {}
    v2 = ""
    for line in lines:
        _num, controllers, path = line.split(":", 2)
        if controllers == "":
            v2 = path
        for name in controllers.split(","):
            if name:
                v1[name] = path
    data: dict[str, Any] = {}
    if "memory" in v1 or "cpuacct" in v1 or "pids" in v1:
        version = 1
        mem = cgroup_root / "memory" / v1.get("memory", "/").lstrip("/")
        cpu = cgroup_root / "cpuacct" / v1.get("cpuacct", "/").lstrip("/")
        pids = cgroup_root / "pids" / v1.get("pids", "/").lstrip("/")
        raw = _kv(mem / "memory.stat")
        data["memory"] = {
            "usage": {
                "usage": _read_int(mem / "memory.usage_in_bytes"),
                "limit": _read_int(mem / "memory.limit_in_bytes"),
                "max": _read_int(mem / "memory.max_usage_in_bytes"),
            },
            "cache": raw.get("cache"),
            "raw": raw,
        }
        data["cpu"] = {
            "usage": {
                "total": _read_int(cpu / "cpuacct.usage"),
                "user": _read_int(cpu / "cpuacct.usage_user"),
                "kernel": _read_int(cpu / "cpuacct.usage_sys"),
            }
        }
        data["pids"] = {
            "current": _read_int(pids / "pids.current"),
            "limit": _read_int(pids / "pids.max"),
        }
    else:
        version = 2
        base = cgroup_root / v2.lstrip("/")
        cpu_stat = _kv(base / "cpu.stat")
        data["memory"] = {
            "usage": {
                "usage": _read_int(base / "memory.current"),
                "limit": _read_int(base / "memory.max"),
            },
            "raw": _kv(base / "memory.stat"),
        }
        data["cpu"] = {
            "usage": {
                "total": cpu_stat.get("usage_usec", 0) * 1000,
                "user": cpu_stat.get("user_usec", 0) * 1000,
                "kernel": cpu_stat.get("system_usec", 0) * 1000,
            }
        }
        data["pids"] = {
            "current": _read_int(base / "pids.current"),
            "limit": _read_int(base / "pids.max"),
        }
    _drop_none(data)
    return Stats.from_runc(data, cgroup_version=version)


def _drop_none(value: dict[str, Any]) -> None:
    for key in list(value):
        item = value[key]
        if item is None:
            del value[key]
        elif isinstance(item, dict):
            _drop_none(item)


def open_io(directory: Path, stdio: Mapping[str, Any], master: int | None) -> FifoIO | None:
    """The client's streams for a ``stdio`` record (``None`` for null and file stdio).

    For a terminal, ``master`` is the pty master (owned from now on); ``None`` or a
    negative value leaves the terminal to be attached later.
    """
    kind = stdio["kind"]
    if kind == "piped":
        stdin = open_fifo_writer(directory / "stdin") if stdio.get("stdin") else None
        stdout = open_fifo_reader(directory / "stdout") if stdio.get("stdout") else None
        stderr = open_fifo_reader(directory / "stderr") if stdio.get("stderr") else None
        return FifoIO(stdin, stdout, stderr)
    if kind == "tty":
        if master is None or master < 0:
            return FifoIO(None, None, None, master=-1)
        streams = FifoIO(None, None, None)
        streams.set_terminal(master, stdin=bool(stdio.get("stdin")))
        return streams
    return None
