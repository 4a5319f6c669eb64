"""Client-side stdio of local tasks: FIFO and pty streams, plus cgroup statistics."""

from __future__ import annotations

import errno
import fcntl
import io
import os
import struct
import termios
from pathlib import Path
from typing import IO, Any

from libcontainerd.errors import NotFound
from libcontainerd.types.stats import Stats

__all__ = ["FifoIO", "TtyReader", "open_fifo_reader", "open_fifo_writer", "read_cgroup_stats"]


def _blocking(fd: int) -> int:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
    return fd


def open_fifo_reader(path: Path) -> IO[bytes]:
    """Open a FIFO for reading without waiting for a writer."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    return os.fdopen(_blocking(fd), "rb", buffering=0)


def open_fifo_writer(path: Path) -> IO[bytes] | None:
    """Open a FIFO for writing; ``None`` when nobody holds its read end any more."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            return None
        raise
    return os.fdopen(_blocking(fd), "wb", buffering=0)


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


class FifoIO:
    """The live streams of a process (implements ``ProcessIO``)."""

    def __init__(
        self,
        stdin: IO[bytes] | None,
        stdout: IO[bytes] | None,
        stderr: IO[bytes] | None,
        *,
        master: int = -1,
    ) -> None:
        self._stdin = stdin
        self._stdout = stdout
        self._stderr = stderr
        self.master = master

    @property
    def stdin(self) -> IO[bytes] | None:
        """Writes to the process's stdin."""
        return self._stdin

    @property
    def stdout(self) -> IO[bytes] | None:
        """Reads the process's stdout (the terminal output with a pty)."""
        return self._stdout

    @property
    def stderr(self) -> IO[bytes] | None:
        """Reads the process's stderr (``None`` with a pty)."""
        return self._stderr

    def set_terminal(self, master: int, *, stdin: bool) -> None:
        """Use the pty ``master`` (owned from now on) for stdout and, with ``stdin``, stdin."""
        self.master = master
        self._stdout = io.BufferedReader(TtyReader(os.dup(master)))
        self._stdin = os.fdopen(os.dup(master), "wb", buffering=0) if stdin else None

    def resize(self, width: int, height: int) -> None:
        """Set the terminal size (pty only)."""
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def close_stdin(self) -> None:
        """Close the stdin stream."""
        if self._stdin is not None:
            self._stdin.close()

    def close(self) -> None:
        """Close every stream."""
        for stream in (self._stdin, self._stdout, self._stderr):
            if stream is not None:
                stream.close()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


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
