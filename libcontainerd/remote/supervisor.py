"""A supervised private containerd: config, start, health checks, restart, adopt, stop.

:class:`Supervisor` is what a daemon embedding libcontainerd uses to run its own
containerd, the way dockerd manages one: it writes a TOML config (root, state, socket,
the CRI plugin off unless asked for, log level), starts ``containerd`` with its output
in a log file, waits until the gRPC health service answers, and then watches it from a
background thread, restarting it with capped backoff when it dies or stops answering
health checks. A pid file lets a later process adopt a containerd that is still
running instead of starting a second one. :meth:`Supervisor.stop` sends SIGTERM, then
SIGKILL after a timeout, and removes the socket and the pid file. Shims and the
containers they run are separate processes and survive restarts and stops.

``new_client(backend="remote", managed=True, root=..., state=...)`` builds one and
closes it with the client; ``managed`` may also be a dict of :class:`Supervisor`
keyword arguments.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import grpc

from libcontainerd._health import HealthStatus, check_health
from libcontainerd.errors import FailedPrecondition, InvalidArgument, Unavailable

__all__ = [
    "CRI_PLUGIN",
    "LOG_LEVELS",
    "Supervisor",
    "render_config",
    "start_managed",
    "toml_list",
    "toml_str",
]

_log = logging.getLogger(__name__)

CRI_PLUGIN = "io.containerd.grpc.v1.cri"
"""The Kubernetes CRI plugin, disabled unless ``cri=True``."""
LOG_LEVELS = ("trace", "debug", "info", "warn", "error", "fatal", "panic")
"""The levels containerd's ``[debug] level`` accepts."""

# containerd refuses socket paths over 104 bytes, below the kernel's 107.
_MAX_SOCKET_PATH = 104
_TTRPC_SUFFIX = ".ttrpc"
_FIRST_BACKOFF = 0.5


def toml_str(value: str) -> str:
    """``value`` as a TOML basic string."""
    # JSON escapes are a subset of TOML basic-string escapes; JSON leaves DEL raw.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_list(values: Sequence[str]) -> str:
    """``values`` as a TOML array of strings."""
    return "[" + ", ".join(toml_str(v) for v in values) + "]"


def render_config(
    *,
    root: Path,
    state: Path,
    socket_path: Path,
    log_level: str = "info",
    disabled_plugins: Sequence[str] = (CRI_PLUGIN,),
    extra_lines: Sequence[str] = (),
) -> str:
    """containerd's TOML config (version 2) for a private daemon."""
    return "\n".join(
        [
            "# Written by libcontainerd.remote.supervisor.",
            "version = 2",
            f"root = {toml_str(str(root))}",
            f"state = {toml_str(str(state))}",
            f"disabled_plugins = {toml_list(disabled_plugins)}",
            *extra_lines,
            "",
            "[grpc]",
            f"  address = {toml_str(str(socket_path))}",
            "",
            "[ttrpc]",
            f"  address = {toml_str(str(socket_path) + _TTRPC_SUFFIX)}",
            "",
            "[debug]",
            '  address = ""',
            f"  level = {toml_str(log_level)}",
            "",
        ]
    )


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    # The state letter follows the command name, which is in parentheses.
    return stat.rpartition(")")[2].split()[:1] not in (["Z"], ["X"])


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


class Supervisor:
    """Runs and watches one private containerd. Use it as a context manager or call
    :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        root: Path | str,
        state: Path | str,
        *,
        address: str | None = None,
        binary: str = "containerd",
        log_level: str = "info",
        log_file: Path | str | None = None,
        cri: bool = False,
        health_interval: float = 1.0,
        health_timeout: float = 2.0,
        health_failures: int = 3,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        max_backoff: float = 10.0,
    ) -> None:
        """Check the settings; nothing runs before :meth:`start`."""
        if log_level not in LOG_LEVELS:
            raise InvalidArgument(f"log_level {log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        for name, value in (
            ("health_interval", health_interval),
            ("health_timeout", health_timeout),
            ("start_timeout", start_timeout),
            ("stop_timeout", stop_timeout),
            ("max_backoff", max_backoff),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise InvalidArgument(f"{name}={value!r} must be a positive number of seconds")
        if isinstance(health_failures, bool) or not isinstance(health_failures, int):
            raise InvalidArgument(f"health_failures={health_failures!r} must be an int >= 1")
        if health_failures < 1:
            raise InvalidArgument(f"health_failures={health_failures!r} must be an int >= 1")
        self.root = Path(root).absolute()
        self.state = Path(state).absolute()
        self.socket_path = self._socket(address)
        self.log_file = Path(log_file).absolute() if log_file else self.state / "containerd.log"
        self.config_path = self.state / "containerd.toml"
        self.pid_file = self.state / "containerd.pid"
        self._binary = binary
        self._log_level = log_level
        self._cri = cri
        self._health_interval = float(health_interval)
        self._health_timeout = float(health_timeout)
        self._health_failures = health_failures
        self._start_timeout = float(start_timeout)
        self._stop_timeout = float(stop_timeout)
        self._max_backoff = float(max_backoff)
        self._lock = threading.RLock()
        self._process: subprocess.Popen[bytes] | None = None
        self._pid = 0
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self.restarts = 0
        """How many times the supervisor restarted containerd."""

    def _socket(self, address: str | None) -> Path:
        text = address or str(self.state / "containerd.sock")
        if text.startswith("unix://"):
            text = text[len("unix://") :]
        path = Path(text)
        if not path.is_absolute():
            raise InvalidArgument(f"address {address!r} must be an absolute unix socket path")
        if len(os.fsencode(str(path) + _TTRPC_SUFFIX)) > _MAX_SOCKET_PATH:
            raise InvalidArgument(
                f"socket path {path} is too long for a unix socket (with {_TTRPC_SUFFIX}); "
                "pass a shorter state directory or address="
            )
        return path

    @property
    def address(self) -> str:
        """The address clients dial: ``unix:///.../containerd.sock``."""
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int:
        """The pid of the containerd being supervised (0 when none runs)."""
        return self._pid

    @property
    def running(self) -> bool:
        """Whether the supervised containerd process is alive."""
        with self._lock:
            if self._process is not None:
                return self._process.poll() is None
            return bool(self._pid) and _alive(self._pid)

    def healthy(self, timeout: float | None = None) -> bool:
        """Whether containerd answers its gRPC health check as SERVING."""
        if not self.socket_path.exists():
            return False
        wait = self._health_timeout if timeout is None else timeout
        with grpc.insecure_channel(f"unix:{self.socket_path}") as channel:
            return check_health(channel, wait) is HealthStatus.SERVING

    # -- start ---------------------------------------------------------------------------

    def start(self) -> Supervisor:
        """Adopt the containerd named by the pid file if it lives, else start one; then
        wait until it is healthy and begin watching it. Returns ``self``."""
        binary = shutil.which(self._binary)
        if binary is None:
            raise FailedPrecondition(
                f"containerd binary {self._binary!r} not found: install it (Debian package "
                "'containerd') or pass binary="
            )
        self._binary = binary
        for directory in (self.root, self.state, self.socket_path.parent):
            directory.mkdir(mode=0o711, parents=True, exist_ok=True)
        self.config_path.write_text(self._config(), encoding="utf-8")
        self._stopping.clear()
        with self._lock:
            if not self._adopt():
                self._launch()
        self._watcher = threading.Thread(
            target=self._watch, name="libcontainerd-supervisor", daemon=True
        )
        self._watcher.start()
        return self

    def _config(self) -> str:
        disabled = () if self._cri else (CRI_PLUGIN,)
        return render_config(
            root=self.root,
            state=self.state,
            socket_path=self.socket_path,
            log_level=self._log_level,
            disabled_plugins=disabled,
        )

    def _adopt(self) -> bool:
        """Take over a live containerd from the pid file (started with our config)."""
        try:
            pid = int(self.pid_file.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return False
        if not _alive(pid) or str(self.config_path) not in _cmdline(pid):
            return False
        if not self._wait_healthy(lambda: _alive(pid), self._start_timeout):
            return False
        self._pid = pid
        _log.info("adopted containerd pid %d at %s", pid, self.address)
        return True

    def _launch(self) -> None:
        """Start containerd and wait for it to answer; ``Unavailable`` when it does not."""
        for leftover in (self.socket_path, Path(str(self.socket_path) + _TTRPC_SUFFIX)):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                [self._binary, "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C meant for the caller must not stop it first.
                start_new_session=True,
                cwd=self.state,
            )
        self._process = process
        self._pid = process.pid
        self.pid_file.write_text(f"{process.pid}\n", encoding="utf-8")
        if not self._wait_healthy(lambda: process.poll() is None, self._start_timeout):
            code = process.poll()
            self._terminate()
            raise Unavailable(
                f"containerd (config {self.config_path}) "
                + (f"exited with code {code}" if code is not None else "did not become healthy")
                + f" within {self._start_timeout} s; see its log {self.log_file}"
            )
        _log.info("containerd pid %d serving at %s", process.pid, self.address)

    def _wait_healthy(self, alive: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.02
        while time.monotonic() < deadline and not self._stopping.is_set():
            if not alive():
                return False
            if self.healthy(min(1.0, max(0.1, deadline - time.monotonic()))):
                return True
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        return False

    # -- watch ---------------------------------------------------------------------------

    def _watch(self) -> None:
        failures = 0
        backoff = _FIRST_BACKOFF
        while not self._stopping.wait(self._health_interval):
            if self.running and self.healthy():
                failures = 0
                backoff = _FIRST_BACKOFF
                continue
            failures += 1
            if self.running and failures < self._health_failures:
                continue
            reason = "died" if not self.running else f"failed {failures} health checks"
            _log.warning("containerd pid %d %s; restarting it", self._pid, reason)
            failures = 0
            with self._lock:
                if self._stopping.is_set():
                    return
                self._terminate()
                try:
                    self._launch()
                except Unavailable as error:
                    _log.error(
                        "restarting containerd failed: %s; retrying in %.1f s", error, backoff
                    )
                    if self._stopping.wait(backoff):
                        return
                    backoff = min(backoff * 2, self._max_backoff)
                    continue
                self.restarts += 1

    # -- stop ----------------------------------------------------------------------------

    def _terminate(self) -> None:
        """SIGTERM, SIGKILL after ``stop_timeout``; reap our own child."""
        pid, process = self._pid, self._process
        if not pid:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self._stop_timeout
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                break
            if process is None and not _alive(pid):
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=self._stop_timeout)
        self._process = None
        self._pid = 0

    def _stop_watching(self) -> None:
        self._stopping.set()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout=self._stop_timeout + self._start_timeout)
        self._watcher = None

    def detach(self) -> None:
        """Stop watching but leave containerd running, its pid file in place, for a later
        supervisor (say, of the next run of this program) to adopt."""
        self._stop_watching()
        with self._lock:
            self._process = None
            self._pid = 0

    def stop(self) -> None:
        """Stop watching, stop containerd (TERM, then KILL) and remove socket and pid file.

        Containers keep running in their shims; a new supervisor on the same root and
        state finds them again. Calling it again does nothing.
        """
        self._stop_watching()
        with self._lock:
            self._terminate()
            for path in (
                self.socket_path,
                Path(str(self.socket_path) + _TTRPC_SUFFIX),
                self.pid_file,
            ):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def __enter__(self) -> Supervisor:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Supervisor {self.address} pid={self._pid}>"


def start_managed(
    root: Path | None, state: Path | None, address: str | None, managed: object
) -> Supervisor:
    """The running supervisor for ``new_client(..., managed=...)``.

    ``managed`` is ``True`` or a dict of :class:`Supervisor` keyword arguments; ``root``
    and ``state`` are required.
    """
    if root is None or state is None:
        raise InvalidArgument(
            "managed=True needs root= and state= directories for the private containerd"
        )
    if managed is True:
        settings: dict[str, object] = {}
    elif isinstance(managed, dict):
        settings = dict(managed)
    else:
        raise InvalidArgument(
            f"managed must be True or a dict of Supervisor settings, not {type(managed).__name__}"
        )
    try:
        supervisor = Supervisor(root, state, address=address, **settings)  # type: ignore[arg-type]
    except TypeError as error:
        raise InvalidArgument(f"managed: {error}") from None
    return supervisor.start()
