"""A private containerd daemon for tests: its own config, root, state and sockets.

:func:`start_containerd` runs the real ``containerd`` binary (Debian package ``containerd``)
as a child process with a generated config, waits until its gRPC health service answers
SERVING, and returns a :class:`ContainerdDaemon`. Stopping it kills the daemon, then the
shims and containers it left behind, lazily unmounts anything still mounted under its
directories and removes them.

What stays private and what cannot (containerd 1.6):

* The daemon's ``root``, ``state``, ``temp`` directories and its gRPC and ttrpc sockets
  are all inside ``base_dir`` (or, when ``base_dir`` is too long for a unix socket path,
  in a short ``/tmp/lcd-*`` directory that :meth:`ContainerdDaemon.stop` removes). The
  daemon itself never creates or reads ``/run/containerd`` or ``/var/lib/containerd``,
  and the ``opt`` plugin (which would create ``/opt/containerd``) is disabled.
* Shims are a different matter: containerd 1.6 has no setting for where a v2 shim puts
  its ttrpc socket; it is always ``/run/containerd/s/<sha256>``, the hash being taken over
  *our* gRPC socket path, namespace and container id, so it never collides with a system
  daemon's shims. :meth:`ContainerdDaemon.stop` deletes the sockets of the shims it
  kills. Only tests that create tasks make such sockets.
* The runc shim keeps runc's own state in ``/run/containerd/runc/<namespace>`` unless the
  client passes runc options with ``Root`` set when it creates the task; clients that
  want full isolation should pass :attr:`ContainerdDaemon.runc_root`.
* ``ctr`` keeps its stdio FIFOs in ``/run/containerd/fifo`` unless given ``--fifo-dir`` or
  ``--null-io``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc

from libcontainerd._health import HealthStatus, check_health
from libcontainerd._toml import loads as toml_loads
from libcontainerd.errors import FailedPrecondition, InvalidArgument, Unavailable
from libcontainerd.remote.supervisor import toml_list, toml_str
from libcontainerd.testing._service import ServiceProcess

__all__ = [
    "DEFAULT_DISABLED_PLUGINS",
    "DEFAULT_REQUIRED_PLUGINS",
    "ContainerdDaemon",
    "start_containerd",
]

# containerd refuses socket paths over 104 bytes ("unix socket path too long (> 104)"),
# below the kernel's 107 (sun_path holds 108 bytes including the terminating NUL).
_MAX_SOCKET_PATH = 104
# containerd creates "<grpc socket>.ttrpc" next to the gRPC socket.
_TTRPC_SUFFIX = ".ttrpc"
_SHIM_SOCKET_DIR = Path("/run/containerd/s")
_DEFAULT_RUNC_ROOT = Path("/run/containerd/runc")
_V2_TASKS_DIR = "io.containerd.runtime.v2.task"
_MNT_DETACH = 2

DEFAULT_DISABLED_PLUGINS: tuple[str, ...] = (
    # The Kubernetes CRI wants CNI, a sandbox image and a stream server: none is wanted here.
    "io.containerd.grpc.v1.cri",
    # Would create /opt/containerd outside the private directories.
    "io.containerd.internal.v1.opt",
    # Snapshotters that only log errors on an ordinary filesystem.
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.snapshotter.v1.devmapper",
)
"""Plugins the generated config disables."""

DEFAULT_REQUIRED_PLUGINS: tuple[str, ...] = (
    "io.containerd.grpc.v1.containers",
    "io.containerd.grpc.v1.content",
    "io.containerd.grpc.v1.diff",
    "io.containerd.grpc.v1.events",
    "io.containerd.grpc.v1.healthcheck",
    "io.containerd.grpc.v1.images",
    "io.containerd.grpc.v1.introspection",
    "io.containerd.grpc.v1.leases",
    "io.containerd.grpc.v1.namespaces",
    "io.containerd.grpc.v1.snapshots",
    "io.containerd.grpc.v1.tasks",
    "io.containerd.grpc.v1.version",
)
"""Plugins the daemon must load, or refuse to start (a loud failure beats a missing service)."""


def _validate_toml(text: str) -> None:
    toml_loads(text, what="extra_config")


def _health_status(socket_path: Path, timeout: float) -> HealthStatus | None:
    with grpc.insecure_channel(f"unix://{socket_path}") as channel:
        return check_health(channel, timeout)


def _decode_mount_path(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    out: list[str] = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _mounts_under(dirs: Sequence[Path]) -> list[Path]:
    """Mount points at or below any of ``dirs``, deepest first."""
    try:
        lines = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    found: list[Path] = []
    for line in lines.splitlines():
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        mount_point = Path(_decode_mount_path(fields[4]))
        if any(mount_point == d or d in mount_point.parents for d in dirs):
            found.append(mount_point)
    found.sort(key=lambda p: len(p.parts), reverse=True)
    return found


def _lazy_unmount(path: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(os.fsencode(path), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):  # not (or no longer) a mount point
            raise OSError(err, os.strerror(err), str(path))


def _process_alive(pid: int) -> bool:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    # The state letter follows the command name, which is in parentheses and may hold spaces.
    state = raw[raw.rfind(")") + 2 : raw.rfind(")") + 3]
    return state not in ("Z", "X", "")


def _wait_gone(pids: Sequence[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` runs; return those still running at the deadline."""
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if _process_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if _process_alive(p)]
    return alive


def _shim_pids(socket_path: Path) -> list[int]:
    """Processes started with ``-address <socket_path>``: the shims of our daemon."""
    wanted = os.fsencode(socket_path)
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for i, arg in enumerate(args[:-1]):
            if arg in (b"-address", b"--address") and args[i + 1] == wanted:
                pids.append(int(entry.name))
                break
    return pids


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def _bundles(state: Path) -> Iterator[tuple[str, Path]]:
    """(namespace, bundle dir) of every v2 task bundle under ``state``."""
    tasks = state / _V2_TASKS_DIR
    if not tasks.is_dir():
        return
    for ns_dir in sorted(tasks.iterdir()):
        if ns_dir.is_dir():
            for bundle in sorted(ns_dir.iterdir()):
                if bundle.is_dir():
                    yield ns_dir.name, bundle


class ContainerdDaemon(ServiceProcess):
    """A running private containerd (see the module docstring for what it keeps private).

    Use it as a context manager or call :meth:`stop`. Attributes are read-only; ``pid``
    changes on :meth:`restart`.
    """

    _name = "containerd"
    _log_name = "containerd.log"

    def __init__(
        self,
        *,
        binary: str,
        base_dir: Path,
        socket_path: Path,
        short_socket_dir: Path | None,
        timeout: float,
    ) -> None:
        """Record the layout; :func:`start_containerd` is the way to create a running one."""
        super().__init__(binary=binary, base_dir=base_dir)
        self._socket_path = socket_path
        self._short_socket_dir = short_socket_dir
        self._timeout = timeout
        self._stopped = False
        self._lock = threading.RLock()

    # -- layout -------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The gRPC address for clients: ``unix:///.../containerd.sock``."""
        return f"unix://{self._socket_path}"

    @property
    def socket_path(self) -> Path:
        """Filesystem path of the gRPC unix socket."""
        return self._socket_path

    @property
    def ttrpc_socket_path(self) -> Path:
        """Filesystem path of the daemon's ttrpc socket (what shims publish to)."""
        return Path(str(self._socket_path) + _TTRPC_SUFFIX)

    @property
    def root(self) -> Path:
        """containerd's persistent root (content, snapshots, metadata)."""
        return self._base_dir / "root"

    @property
    def state(self) -> Path:
        """containerd's runtime state (task bundles)."""
        return self._base_dir / "state"

    @property
    def temp(self) -> Path:
        """containerd's temporary directory (``TMPDIR`` of the daemon)."""
        return self._base_dir / "tmp"

    @property
    def runc_root(self) -> Path:
        """A private runc state root a client may pass as the runc ``Root`` option."""
        return self.state / "runc"

    @property
    def config_path(self) -> Path:
        """The generated TOML config."""
        return self._base_dir / "config.toml"

    @property
    def extra_config_path(self) -> Path:
        """The TOML file the config imports (``extra_config``; may be empty)."""
        return self._base_dir / "extra.toml"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ContainerdDaemon {self.address} {state}>"

    # -- lifecycle ------------------------------------------------------------------------

    def health(self, timeout: float = 2.0) -> bool:
        """Whether the daemon's gRPC health service answers SERVING."""
        return _health_status(self._socket_path, timeout) is HealthStatus.SERVING

    def _launch(self) -> None:
        self._spawn([self._binary, "--config", str(self.config_path)])
        start = time.monotonic()
        outcome = self._poll(
            lambda remaining: (
                self._socket_path.exists()
                and _health_status(self._socket_path, remaining) is HealthStatus.SERVING
            ),
            self._timeout,
        )
        if outcome is False:
            code = self._process.poll() if self._process is not None else None
            raise Unavailable(
                f"containerd exited with code {code} before it became healthy; "
                f"its log ({self.log_path}) ends with:\n{self._log_tail()}"
            )
        if outcome is None:
            raise Unavailable(
                f"containerd did not answer its health check on {self.address} within "
                f"{time.monotonic() - start:.1f}s; its log ({self.log_path}) ends with:\n"
                f"{self._log_tail()}"
            )

    def restart(self, timeout: float = 10.0, *, down_for: float = 0.0) -> None:
        """Stop the daemon process only (shims, root and state stay) and start it again.

        ``down_for`` seconds pass between stop and start, so tests can let containers
        exit while no daemon runs. Clients reconnect on the same socket; containerd
        reattaches to running shims.
        """
        if not 0 <= down_for <= 300:
            raise InvalidArgument(f"down_for={down_for} must be between 0 and 300 seconds")
        with self._lock:
            if self._stopped:
                raise FailedPrecondition("this containerd was stopped; start a new one instead")
            self._terminate(timeout)
            time.sleep(down_for)
            self._launch()

    def kill(self) -> int:
        """SIGKILL the daemon process only (shims, root and state stay); its old pid.

        Fault tests use it to crash containerd; :meth:`relaunch` starts it again.
        """
        with self._lock:
            if self._stopped or self._process is None:
                raise FailedPrecondition("this containerd is not running; nothing to kill")
            pid = self._process.pid
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None
            return pid

    def relaunch(self) -> None:
        """Start the daemon again after :meth:`kill`, on the same config and sockets."""
        with self._lock:
            if self._stopped:
                raise FailedPrecondition("this containerd was stopped; start a new one instead")
            if self._process is not None:
                raise FailedPrecondition("this containerd is running; kill() it first")
            self._launch()

    def _cleanup_tasks(self, timeout: float) -> None:
        """Kill containers and shims the daemon left, and remove their shim sockets."""
        for namespace, bundle in _bundles(self.state):
            runtime = _read_text(bundle / "runtime") or "runc"
            root = _DEFAULT_RUNC_ROOT
            with contextlib.suppress(OSError, ValueError, AttributeError):
                options = json.loads((bundle / "options.json").read_text(encoding="utf-8"))
                if options.get("root"):
                    root = Path(options["root"])
            deleted = False
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                done = subprocess.run(
                    [runtime, "--root", str(root / namespace), "delete", "--force", bundle.name],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=timeout,
                    check=False,
                )
                deleted = done.returncode == 0
            if not deleted:
                # The runtime could not do it (missing binary, state gone): kill the init
                # process, which takes its whole pid namespace with it.
                init_pid = _read_text(bundle / "init.pid")
                if init_pid.isdigit() and _process_alive(int(init_pid)):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(init_pid), signal.SIGKILL)
            address = _read_text(bundle / "address")
            if address.startswith("unix://"):
                sock = Path(address[len("unix://") :])
                if sock.parent == _SHIM_SOCKET_DIR or self.state in sock.parents:
                    with contextlib.suppress(OSError):
                        if stat.S_ISSOCK(sock.lstat().st_mode):
                            sock.unlink()
        shims = _shim_pids(self._socket_path)
        for pid in shims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(shims, timeout)

    def _private_dirs(self) -> list[Path]:
        return [self.root, self.state, self.temp]

    def stop(self, timeout: float = 10.0) -> None:
        """Stop everything and remove root, state, temp and sockets; keep config and log.

        SIGTERM, then SIGKILL after ``timeout``; then kill leftover containers and shims,
        lazily unmount anything under the private directories, and delete them.
        Calling it again does nothing.
        """
        with self._lock:
            if self._stopped:
                return
            try:
                self._terminate(timeout)
            finally:
                self._cleanup_tasks(timeout)
                self._remove_dirs()
                self._stopped = True

    def _remove_dirs(self) -> None:
        dirs = self._private_dirs()
        for _ in range(5):  # stacked mounts need one pass per layer
            mounts = _mounts_under(dirs)
            if not mounts:
                break
            for mount_point in mounts:
                _lazy_unmount(mount_point)
        left = _mounts_under(dirs)
        if left:
            # Never rmtree through a mount: it would delete someone else's files.
            raise FailedPrecondition(
                f"could not unmount {', '.join(map(str, left))}; unmount them by hand and "
                "remove the directories"
            )
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
        for sock in (self._socket_path, self.ttrpc_socket_path):
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()
        if self._short_socket_dir is not None:
            shutil.rmtree(self._short_socket_dir, ignore_errors=True)


def _render_config(
    daemon: ContainerdDaemon,
    *,
    debug: bool,
    disabled_plugins: Sequence[str],
    required_plugins: Sequence[str],
) -> str:
    return "\n".join(
        [
            "# Generated by libcontainerd.testing.containerd_daemon; private to one test run.",
            "version = 2",
            f"root = {toml_str(str(daemon.root))}",
            f"state = {toml_str(str(daemon.state))}",
            f"temp = {toml_str(str(daemon.temp))}",
            f"imports = {toml_list([str(daemon.extra_config_path)])}",
            f"disabled_plugins = {toml_list(disabled_plugins)}",
            f"required_plugins = {toml_list(required_plugins)}",
            "",
            "[grpc]",
            f"  address = {toml_str(str(daemon.socket_path))}",
            "",
            "[ttrpc]",
            f"  address = {toml_str(str(daemon.ttrpc_socket_path))}",
            "",
            "[debug]",
            '  address = ""',
            f"  level = {toml_str('debug' if debug else 'info')}",
            "",
        ]
    )


def start_containerd(
    base_dir: Path | str,
    *,
    binary: str = "containerd",
    timeout: float = 30.0,
    extra_config: str = "",
    debug: bool = False,
    disabled_plugins: Sequence[str] = DEFAULT_DISABLED_PLUGINS,
    required_plugins: Sequence[str] = DEFAULT_REQUIRED_PLUGINS,
) -> ContainerdDaemon:
    """Start a private containerd under ``base_dir`` and wait until it is healthy.

    ``extra_config`` is TOML that the generated config imports, so its values override
    the generated ones (containerd merges imports over the main file). Raises
    :class:`~libcontainerd.errors.Unavailable` with the log's tail if the daemon exits or
    does not become healthy within ``timeout`` seconds; nothing is left running then.
    """
    if timeout <= 0:
        raise InvalidArgument(f"timeout must be positive, got {timeout}")
    _validate_toml(extra_config)
    found = shutil.which(binary)
    if found is None:
        raise FailedPrecondition(
            f"containerd binary {binary!r} not found: install it (Debian package 'containerd')"
        )
    base = Path(base_dir).resolve()
    base.mkdir(parents=True, exist_ok=True)

    short_dir: Path | None = None
    socket_path = base / "containerd.sock"
    if len(os.fsencode(str(socket_path) + _TTRPC_SUFFIX)) > _MAX_SOCKET_PATH:
        short_dir = Path(tempfile.mkdtemp(prefix="lcd-", dir="/tmp"))
        socket_path = short_dir / "c.sock"
    elif socket_path.exists() and _health_status(socket_path, 1.0) is HealthStatus.SERVING:
        raise FailedPrecondition(
            f"a containerd is already serving {socket_path}; stop it or use another base_dir"
        )

    daemon = ContainerdDaemon(
        binary=found,
        base_dir=base,
        socket_path=socket_path,
        short_socket_dir=short_dir,
        timeout=timeout,
    )
    try:
        for d in (daemon.root, daemon.state, daemon.temp):
            d.mkdir(mode=0o711, exist_ok=True)
        daemon.extra_config_path.write_text(extra_config + "\n", encoding="utf-8")
        daemon.config_path.write_text(
            _render_config(
                daemon,
                debug=debug,
                disabled_plugins=disabled_plugins,
                required_plugins=required_plugins,
            ),
            encoding="utf-8",
        )
        daemon._launch()
    except BaseException:
        daemon.stop(timeout=5.0)
        raise
    return daemon
