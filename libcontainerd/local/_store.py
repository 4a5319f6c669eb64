"""On-disk state of the local backend: directory layout, locks and container records.

``root`` holds what must outlive a reboot (``containers/<namespace>/<id>/``: record and
bundle) and ``state`` what belongs to running containers (``tasks/<namespace>/<id>/``:
FIFOs, pid, exit records; ``runtime/<runtime>/<namespace>/``: the runtime's ``--root``;
``events/<namespace>.jsonl``). Both are split by namespace. Records are written crash-safely
(temp file, fsync, rename) under an ``flock`` on the namespace's lock file, so several
clients (threads or processes) may share one root.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from libcontainerd._backend_rules import container_not_found
from libcontainerd.errors import AlreadyExists, DataLoss, InvalidArgument
from libcontainerd.filters import matches_filters
from libcontainerd.local._monitor_protocol import write_json_atomic
from libcontainerd.local._runtime import runtime_key
from libcontainerd.types.container import ContainerInfo, RuntimeInfo
from libcontainerd.types.identifiers import validate_identifier

__all__ = [
    "ContainerStore",
    "Layout",
    "default_root",
    "default_state",
    "matches_filters",
    "private_dir",
]


def default_root() -> Path:
    """``/var/lib/libcontainerd`` for root, else ``$XDG_DATA_HOME/libcontainerd``."""
    if os.geteuid() == 0:
        return Path("/var/lib/libcontainerd")
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(data) / "libcontainerd"


def default_state() -> Path:
    """``/run/libcontainerd`` for root, else ``$XDG_RUNTIME_DIR/libcontainerd``."""
    if os.geteuid() == 0:
        return Path("/run/libcontainerd")
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/libcontainerd-{os.geteuid()}"
    return Path(runtime_dir) / "libcontainerd"


def private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) and make it ``0700`` when it is ours.

    The root holds image layers and container root filesystems, which may carry setuid
    files and device nodes; like containerd's own directories, nothing below may be
    reachable by other host users (the class of CVE-2021-41091). The runtime runs as
    the caller, so no other user ever needs to traverse it.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    if info.st_uid == os.geteuid() and info.st_mode & 0o077:
        path.chmod(0o700)


class Layout:
    """Where everything of one namespace lives."""

    def __init__(self, root: Path, state: Path, namespace: str) -> None:
        self.namespace = validate_identifier(namespace, kind="namespace")
        self.base_root = root.absolute()
        self.base_state = state.absolute()
        # Kinds first, then namespaces: no namespace name can collide with a sibling
        # of another kind (the image store shares ``root``).
        self.containers = self.base_root / "containers" / self.namespace
        self.tasks = self.base_state / "tasks" / self.namespace
        self.events_file = self.base_state / "events" / f"{self.namespace}.jsonl"
        self.lock_file = self.containers / ".lock"
        for base in (self.base_root, self.base_state):
            private_dir(base)
        for path in (self.containers, self.tasks, self.events_file.parent):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)

    def container_dir(self, container_id: str) -> Path:
        """The container's record and bundle directory."""
        return self.containers / validate_identifier(container_id, kind="container id")

    def task_dir(self, container_id: str) -> Path:
        """The container's task state (FIFOs, pid, exit record)."""
        return self.tasks / validate_identifier(container_id, kind="container id")

    def exec_dir(self, container_id: str, exec_id: str) -> Path:
        """The state of one exec'd process."""
        return self.task_dir(container_id) / "exec" / validate_identifier(exec_id, kind="exec id")

    def runtime_root(self, runtime: str) -> Path:
        """The ``--root`` passed to ``runtime`` for this namespace."""
        return self.base_state / "runtime" / runtime_key(runtime) / self.namespace

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the namespace's exclusive lock (across threads and processes)."""
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


def record_to_info(record: Mapping[str, Any]) -> ContainerInfo:
    """The :class:`ContainerInfo` for a stored record."""
    runtime = record.get("runtime") or {}

    def when(key: str) -> _dt.datetime | None:
        value = record.get(key)
        return _dt.datetime.fromisoformat(value) if isinstance(value, str) else None

    return ContainerInfo(
        id=str(record["id"]),
        labels=dict(record.get("labels") or {}),
        image=str(record.get("image") or ""),
        runtime=RuntimeInfo(str(runtime.get("name", "")), dict(runtime.get("options") or {})),
        spec=dict(record.get("spec") or {}),
        created_at=when("created_at"),
        updated_at=when("updated_at"),
        extensions=dict(record.get("extensions") or {}),
    )


class ContainerStore:
    """Container records as ``<root>/<namespace>/containers/<id>/record.json``."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def _path(self, container_id: str) -> Path:
        return self.layout.container_dir(container_id) / "record.json"

    def create(
        self,
        container_id: str,
        spec: Mapping[str, Any],
        *,
        runtime: str,
        runtime_options: Mapping[str, Any],
        labels: Mapping[str, str],
        image: str,
        extensions: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store a new record; ``AlreadyExists`` when the id is taken."""
        directory = self.layout.container_dir(container_id)
        now = _now()
        record = {
            "id": container_id,
            "spec": dict(spec),
            "labels": dict(labels),
            "runtime": {"name": runtime, "options": dict(runtime_options)},
            "image": image,
            "created_at": now,
            "updated_at": now,
            "extensions": dict(extensions or {}),
        }
        try:
            encoded = json.loads(json.dumps(record))
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(
                f"container {container_id}: spec, labels and extensions must be JSON-able: {exc}"
            ) from exc
        with self.layout.locked():
            if (directory / "record.json").exists():
                raise AlreadyExists(
                    f"container {container_id!r} already exists in namespace "
                    f"{self.layout.namespace!r}; load it or pick another id"
                )
            directory.mkdir(parents=True, exist_ok=True)
            write_json_atomic(str(directory / "record.json"), encoded)
        return dict(encoded)

    def exists(self, container_id: str) -> bool:
        """Whether a record for ``container_id`` exists."""
        return self._path(container_id).exists()

    def get(self, container_id: str) -> dict[str, Any]:
        """The stored record; ``NotFound`` when absent."""
        path = self._path(container_id)
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise container_not_found(container_id, self.layout.namespace) from None
        except ValueError as exc:
            raise DataLoss(f"container record {path} is corrupt: {exc}") from exc
        if not isinstance(value, dict):
            raise DataLoss(f"container record {path} is not a JSON object")
        return value

    def update(self, container_id: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Apply ``change`` to the record under the lock and store it."""
        with self.layout.locked():
            record = self.get(container_id)
            change(record)
            record["updated_at"] = _now()
            write_json_atomic(str(self._path(container_id)), record)
        return record

    def delete(self, container_id: str, *, check: Callable[[], None]) -> None:
        """Remove the record after ``check()`` passed (under the lock)."""
        with self.layout.locked():
            self.get(container_id)
            check()
            directory = self.layout.container_dir(container_id)
            # Remove the record first so a crash never leaves a half-deleted container.
            os.unlink(directory / "record.json")
            shutil.rmtree(directory, ignore_errors=True)

    def ids(self) -> list[str]:
        """The ids of every stored container, sorted."""
        return sorted(
            entry.name
            for entry in self.layout.containers.iterdir()
            if (entry / "record.json").exists()
        )
