"""Process stdio for containerd: FIFOs in a private directory, log files, or nothing.

containerd's shim opens the paths a client passes at task create (or exec start):
FIFOs are copied to and from the process, a regular file is appended to. The FIFOs
of a process live in a directory derived from namespace, container id and exec id
(:func:`fifo_dir`), so a caller that restarted finds them again (``attach_task``).

Opening FIFOs without deadlocks: the shim opens its write end of ``stdout`` with a
*blocking* open, so the client must hold a read end before the shim is asked to
create or start the process. We open the read end non-blocking (which never waits)
plus a temporary write end that keeps reads from seeing a premature EOF; it is
dropped once the process started, after which EOF means the shim closed the stream.
``stdin`` is opened read-write, which never blocks either.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import select
import shutil
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, cast

from libcontainerd._process_streams import ProcessStreams
from libcontainerd.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from libcontainerd.types.stdio import FileIO, NullIO, PipedIO, Stdio, TerminalIO

__all__ = ["FIFO_ROOT", "PipedStreams", "ProcessStdio", "fifo_dir", "prepare_stdio"]

_STDIN_GONE = (
    "cannot write to stdin: the process has exited, so nothing reads it any more "
    "(check the process's status before writing)"
)
_STDIN_POLL_MS = 500

FIFO_ROOT = Path(f"/tmp/libcontainerd-fifo-{os.getuid()}")
"""Where this user's clients keep process FIFOs."""

LOG_ROOT = (
    Path("/var/log/libcontainerd")
    if os.getuid() == 0
    else Path.home() / ".local" / "state" / "libcontainerd" / "logs"
)
"""Where ``LogIO`` output of containers of a containerd on this host is kept."""


def log_file(address: str, namespace: str, container_id: str) -> Path:
    """The ``LogIO`` file of a container; one directory per containerd address."""
    daemon = hashlib.sha256(address.encode()).hexdigest()[:16]
    return LOG_ROOT / daemon / namespace / f"{container_id}.log"


def remove_log_file(path: Path) -> None:
    """Remove a container's log file and the directories it leaves empty."""
    path.unlink(missing_ok=True)
    for parent in (path.parent, path.parent.parent):
        with contextlib.suppress(OSError):
            parent.rmdir()


def _private_dir(path: Path) -> None:
    """Create ``path`` mode 0700 (parents too) and refuse one that others could tamper with."""
    # Another client may remove an empty namespace or container directory between our
    # mkdir of a parent and of its child (remove_fifo_dir); starting over is enough.
    for _ in range(_MKDIR_ATTEMPTS - 1):
        try:
            _private_dir_once(path)
        except FileNotFoundError:
            continue
        return
    _private_dir_once(path)


_MKDIR_ATTEMPTS = 5


def _private_dir_once(path: Path) -> None:
    chain: list[Path] = [FIFO_ROOT]
    for name in path.relative_to(FIFO_ROOT).parts:
        chain.append(chain[-1] / name)
    for part in chain:
        with contextlib.suppress(FileExistsError):
            part.mkdir(mode=0o700)
        info = part.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise PermissionDenied(
                f"{part} is not a directory owned by uid {os.getuid()}; remove it so "
                "libcontainerd can create its private FIFO directory"
            )
        if info.st_mode & 0o077:
            os.chmod(part, 0o700)


def fifo_dir(namespace: str, container_id: str, exec_id: str = "") -> Path:
    """The FIFO directory of a task's init process (``exec_id=""``) or of an exec."""
    leaf = f"exec-{exec_id}" if exec_id else "task"
    return FIFO_ROOT / namespace / container_id / leaf


class _StdinWriter(io.RawIOBase):
    """The write end of a stdin FIFO; closing it also tells the shim to close stdin."""

    def __init__(
        self,
        fd: int,
        on_close: Callable[[], None],
        path: Path | None = None,
        is_running: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__()
        self._fd = fd
        self._path = path
        self._is_running = is_running
        self._on_close: Callable[[], None] | None = on_close
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("write to closed stdin")
        view = memoryview(data)
        total = 0
        try:
            while total < len(view):
                try:
                    total += os.write(self._fd, view[total:])
                except BlockingIOError:
                    self._wait_writable()
        except BrokenPipeError:
            raise FailedPrecondition(_STDIN_GONE) from None
        return total

    def _wait_writable(self) -> None:
        # The shim keeps reading the FIFO after the process exited, but stops once the
        # process's own pipe is full, so a full FIFO alone does not tell us the process
        # is gone: ask containerd each time the pipe stays full for a while.
        poller = select.poll()
        poller.register(self._fd, select.POLLOUT)
        while not poller.poll(_STDIN_POLL_MS):
            if self._is_running is not None and not self._is_running():
                raise FailedPrecondition(_STDIN_GONE)

    def drop_read_end(self) -> None:
        """Hold only a write end from now on, so writes fail once the shim stops reading.

        The FIFO was opened read-write so that opening never blocked; while this client
        held a read end too, writes to a process that had exited filled the pipe and then
        blocked forever instead of failing.
        """
        if self._path is None or self.closed:
            return
        try:
            fd = os.open(self._path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return  # no reader at all: writes keep landing in the pipe, as before
        try:
            with self._lock:
                if not self.closed:
                    os.dup2(fd, self._fd, inheritable=False)
        finally:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            try:
                os.close(self._fd)
            finally:
                super().close()
        if self._on_close is not None:
            self._on_close()

    def release(self) -> None:
        """Close without telling the shim (the process is gone or the client is closing)."""
        self._on_close = None
        self.close()


class PipedStreams(ProcessStreams):
    """The client's ends of a process's FIFOs (what ``process.io`` returns)."""

    def close(self) -> None:
        """Close every stream this object holds (stdin last, so pending output is not lost)."""
        for stream in (self._stdout, self._stderr, self._stdin):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def release(self) -> None:
        """Close every stream without asking containerd to close the process's stdin."""
        if isinstance(self._stdin, _StdinWriter):
            self._stdin.release()
        self.close()


class ProcessStdio:
    """What one process's stdio needs: the paths for containerd and the client's ends."""

    def __init__(
        self,
        *,
        stdin: str = "",
        stdout: str = "",
        stderr: str = "",
        terminal: bool = False,
        directory: Path | None = None,
        streams: PipedStreams | None = None,
        keepalive: list[int] | None = None,
        size: tuple[int, int] | None = None,
    ) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.terminal = terminal
        self.directory = directory
        self.streams = streams
        self.size = size
        self._keepalive = keepalive or []
        self._started = False
        self._lock = threading.Lock()

    def started(self) -> None:
        """The shim holds its ends now: drop the temporary writers so EOF can arrive."""
        with self._lock:
            fds, self._keepalive = self._keepalive, []
            first = not self._started
            self._started = True
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        if first and self.streams is not None and isinstance(self.streams.stdin, _StdinWriter):
            self.streams.stdin.drop_read_end()

    def close(self, *, remove: bool = True) -> None:
        """Close the client's ends; with ``remove`` also delete the FIFO directory."""
        self.started()
        if self.streams is not None:
            self.streams.release()
        if remove and self.directory is not None:
            remove_fifo_dir(self.directory)


def remove_fifo_dir(directory: Path) -> None:
    """Delete a process's FIFO directory, then its container and namespace directories
    once they are empty (``rmdir`` refuses a directory another process still uses)."""
    shutil.rmtree(directory, ignore_errors=True)
    parent = directory.parent
    while parent != FIFO_ROOT and FIFO_ROOT in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            return
        parent = parent.parent


def _open_reader(path: Path, keepalive: list[int]) -> IO[bytes]:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        keepalive.append(os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _open_writer(
    path: Path, on_close: Callable[[], None], is_running: Callable[[], bool] | None
) -> IO[bytes]:
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    return cast(IO[bytes], _StdinWriter(fd, on_close, path, is_running))


def _make_fifo(path: Path) -> None:
    try:
        os.mkfifo(path, 0o600)
    except FileExistsError:
        if not stat.S_ISFIFO(path.lstat().st_mode):
            raise FailedPrecondition(f"{path} exists and is not a FIFO; remove it") from None


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    os.close(fd)


def open_fifos(
    directory: Path,
    *,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    on_stdin_close: Callable[[], None],
    create: bool,
    is_running: Callable[[], bool] | None = None,
) -> tuple[PipedStreams, list[int]]:
    """Open the client's ends of the FIFOs in ``directory`` (creating them when ``create``)."""
    keepalive: list[int] = []
    opened: list[IO[bytes]] = []
    try:
        streams: dict[str, IO[bytes] | None] = {"stdin": None, "stdout": None, "stderr": None}
        for name, wanted in (("stdout", stdout), ("stderr", stderr), ("stdin", stdin)):
            if not wanted:
                continue
            path = directory / name
            if create:
                _make_fifo(path)
            elif not path.exists():
                continue
            if name == "stdin":
                stream = _open_writer(path, on_stdin_close, is_running)
            else:
                stream = _open_reader(path, keepalive)
            opened.append(stream)
            streams[name] = stream
    except BaseException:
        for stream in opened:
            with contextlib.suppress(OSError):
                stream.close()
        for fd in keepalive:
            os.close(fd)
        raise
    return PipedStreams(streams["stdin"], streams["stdout"], streams["stderr"]), keepalive


def prepare_stdio(
    stdio: Stdio | None,
    *,
    namespace: str,
    container_id: str,
    exec_id: str,
    on_stdin_close: Callable[[], None],
    is_running: Callable[[], bool] | None = None,
) -> ProcessStdio:
    """Set up stdio for a new process; on failure nothing is left behind."""
    if stdio is None or isinstance(stdio, NullIO):
        return ProcessStdio()
    if isinstance(stdio, FileIO):
        assert stdio.stdout is not None
        out = stdio.stdout
        err = stdio.stderr or stdio.stdout
        try:
            _touch(out)
            _touch(err)
        except OSError as exc:
            raise InvalidArgument(f"cannot create stdio log file: {exc}") from None
        return ProcessStdio(stdout=str(out), stderr=str(err))
    if not isinstance(stdio, (PipedIO, TerminalIO)):
        raise InvalidArgument(
            f"stdio must be NullIO, FileIO, PipedIO or TerminalIO, not {type(stdio).__name__}"
        )
    terminal = isinstance(stdio, TerminalIO)
    want_in = stdio.stdin
    want_out = True if terminal else bool(getattr(stdio, "stdout", True))
    want_err = False if terminal else bool(getattr(stdio, "stderr", True))
    directory = fifo_dir(namespace, container_id, exec_id)
    _private_dir(directory)
    try:
        streams, keepalive = open_fifos(
            directory,
            stdin=want_in,
            stdout=want_out,
            stderr=want_err,
            on_stdin_close=on_stdin_close,
            create=True,
            is_running=is_running,
        )
    except BaseException:
        remove_fifo_dir(directory)
        raise
    size = (stdio.width, stdio.height) if isinstance(stdio, TerminalIO) else None
    return ProcessStdio(
        stdin=str(directory / "stdin") if want_in else "",
        stdout=str(directory / "stdout") if want_out else _unwanted(terminal, want_err),
        stderr=str(directory / "stderr") if want_err else _unwanted(terminal, want_out),
        terminal=terminal,
        directory=directory,
        streams=streams,
        keepalive=keepalive,
        size=size,
    )


def _unwanted(terminal: bool, other_wanted: bool) -> str:
    """The path for an output stream the caller did not ask for.

    The shim opens stdout and stderr together, as FIFOs or plain files, and fails on
    an empty path when the other one is set, so an unwanted stream goes to /dev/null.
    """
    return os.devnull if other_wanted and not terminal else ""


def attach_stdio(
    stdio: Stdio | None,
    *,
    stdin: str,
    stdout: str,
    stderr: str,
    terminal: bool,
    on_stdin_close: Callable[[], None],
    is_running: Callable[[], bool] | None = None,
) -> ProcessStdio:
    """Re-open the FIFOs an existing process was created with (``attach_task``)."""
    if stdio is None or isinstance(stdio, (NullIO, FileIO)):
        return ProcessStdio(stdin=stdin, stdout=stdout, stderr=stderr, terminal=terminal)
    if isinstance(stdio, TerminalIO) != terminal:
        made, asked = ("a terminal", "piped") if terminal else ("pipes", "terminal")
        raise InvalidArgument(
            f"the process was created with {made}; attach with the same kind, not {asked} stdio"
        )
    paths = [Path(p) for p in (stdin, stdout, stderr) if p]
    fifos = [p for p in paths if p.exists() and stat.S_ISFIFO(p.stat().st_mode)]
    if not fifos:
        raise FailedPrecondition(
            "the task was not created with piped or terminal stdio (or its FIFOs were "
            "removed), so there is nothing to attach to; use NullIO or FileIO"
        )
    directory = fifos[0].parent
    want_in = bool(stdin) and getattr(stdio, "stdin", True)
    want_out = stdout not in ("", os.devnull) and getattr(stdio, "stdout", True)
    want_err = stderr not in ("", os.devnull) and getattr(stdio, "stderr", True)
    streams, keepalive = open_fifos(
        directory,
        stdin=want_in,
        stdout=want_out,
        stderr=want_err,
        on_stdin_close=on_stdin_close,
        create=False,
        is_running=is_running,
    )
    result = ProcessStdio(
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        terminal=terminal,
        directory=directory,
        streams=streams,
        keepalive=keepalive,
    )
    # The shim already holds its write ends of a running process.
    result.started()
    return result
