"""The files and the socket protocol shared by the local backend's monitor and its clients.

Standard library only: the monitor imports this at its start-up. Exit records
(``exit.json``, written whole or not at all), the namespace's events file (JSON lines
under an ``flock``, rotated at a size), and the monitor's control socket (an abstract
unix address derived from the task directory, one JSON request per connection) have
their single definition here.
"""

from __future__ import annotations

import array
import datetime as _dt
import fcntl
import json
import os
import socket

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds of start-up on the hot path
    from typing import Any

#: The name of a process's exit record inside its directory.
EXIT_FILE = "exit.json"

#: Written in the task directory once the monitor removed the container from the runtime.
RUNTIME_DELETED_FILE = "runtime-deleted"

#: Default size at which a namespace's events file is rotated.
EVENTS_MAX_BYTES = 8 << 20


def now_iso() -> str:
    """The current UTC time in ISO 8601 form."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


def write_json_atomic(path: str, value: Any, *, durable: bool = True) -> None:
    """Write ``value`` as JSON to ``path`` crash-safely: temp file, fsync, rename, dir fsync.

    ``durable=False`` skips the fsyncs (still atomic) for files that are rebuilt anyway.
    """
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.urandom(8).hex()}.tmp")
    data = json.dumps(value, sort_keys=True).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    if not durable:
        return
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_exit(directory: str) -> dict[str, Any] | None:
    """The exit record in ``directory`` (``{"code", "exited_at", "pid"}``), or ``None``."""
    try:
        with open(os.path.join(directory, EXIT_FILE), encoding="utf-8") as f:
            value = json.load(f)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return value if isinstance(value, dict) else None


def create_exit(directory: str, record: dict[str, Any]) -> bool:
    """Store ``record`` as the exit record in ``directory`` unless one exists already.

    Returns whether this call created it. Linking a complete temp file into place makes
    the record appear whole and lets exactly one of several racing writers win.
    """
    path = os.path.join(directory, EXIT_FILE)
    tmp = os.path.join(directory, f".{EXIT_FILE}.{os.urandom(8).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(record, sort_keys=True).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    return True


def monitor_alive(task_dir: str) -> bool:
    """Whether the monitor of the task in ``task_dir`` still listens."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(control_address(task_dir))
    except OSError:
        return False
    finally:
        sock.close()
    return True


def append_event(path: str, record: dict[str, Any], *, max_bytes: int = EVENTS_MAX_BYTES) -> None:
    """Append one event as a JSON line to the events file ``path`` (under an exclusive lock).

    Once the file reaches ``max_bytes`` it is renamed to ``<path>.1`` (replacing the
    previous one) under the same lock, so the next event starts a new file. A writer that
    opened the file just before a rotation notices the changed inode once it holds the
    lock and writes to the new file instead: the rotated file never grows again, which is
    what lets readers finish it and move on (see ``LocalEventStream``).
    """
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            mine = os.fstat(fd)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                continue
            if (current.st_ino, current.st_dev) != (mine.st_ino, mine.st_dev):
                continue
            os.write(fd, line)
            if mine.st_size + len(line) >= max_bytes:
                os.rename(path, path + ".1")
            return
        finally:
            os.close(fd)


def control_address(task_dir: str) -> bytes:
    """The abstract socket address of the monitor of the task in ``task_dir``.

    Abstract addresses have no 108-byte path limit and vanish with the monitor.
    """
    return b"\0libcontainerd-monitor-" + _fnv128(os.path.abspath(task_dir).encode())


def _fnv128(data: bytes) -> bytes:
    """A 128-bit FNV-1a digest in hex (hashlib costs milliseconds of start-up here)."""
    value = 0x6C62272E07BB014262B821756295C58D
    for byte in data:
        value = ((value ^ byte) * 0x0000000001000000000000000000013B) & ((1 << 128) - 1)
    return b"%032x" % value


def request(
    task_dir: str, message: dict[str, Any], *, timeout: float | None, fds: int = 0
) -> tuple[dict[str, Any], list[int]]:
    """Send ``message`` to the monitor and return its reply and any file descriptors.

    Raises :class:`ConnectionError` when no monitor listens (it exited) and
    :class:`TimeoutError` after ``timeout`` seconds.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        sock.connect(control_address(task_dir))
        sock.sendall(json.dumps(message).encode() + b"\n")
        buf = b""
        received: list[int] = []
        while not buf.endswith(b"\n"):
            data, ancdata, _flags, _addr = sock.recvmsg(65536, socket.CMSG_SPACE(4 * max(fds, 1)))
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    got = array.array("i")
                    got.frombytes(payload[: len(payload) - len(payload) % 4])
                    received.extend(got)
            if not data:
                raise ConnectionError("the monitor closed the connection without a reply")
            buf += data
        reply = json.loads(buf)
        return (reply if isinstance(reply, dict) else {}), received
    except TimeoutError as exc:
        raise TimeoutError(str(exc)) from exc
    finally:
        sock.close()
