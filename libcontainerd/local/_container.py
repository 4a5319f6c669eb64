"""A stored container of the local backend and the creation of its task."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from libcontainerd._backend_rules import (
    check_labels,
    check_terminal,
    runtime_refused,
    task_exists,
    task_not_found,
)
from libcontainerd._checkpoint import restore_dir
from libcontainerd._container_handle import ContainerHandle
from libcontainerd.client import Spec
from libcontainerd.errors import (
    Error,
    FailedPrecondition,
    InvalidArgument,
    RuntimeCommandError,
    Unavailable,
)
from libcontainerd.local._handle_context import ClientContext
from libcontainerd.local._monitor_client import spawn_monitor
from libcontainerd.local._monitor_protocol import request, write_json_atomic
from libcontainerd.local._process import LocalTask
from libcontainerd.local._runtime import RuntimeDriver
from libcontainerd.local._stdio import (
    make_fifos,
    open_io,
    stdio_record,
    with_console_size,
)
from libcontainerd.local._store import record_to_info
from libcontainerd.shortcuts import resolve_log_stdio
from libcontainerd.types.container import ContainerInfo
from libcontainerd.types.stdio import NullIO, Stdio

__all__ = ["LocalContainer"]


class LocalContainer(ContainerHandle):
    """A stored container (implements ``Container``)."""

    def __init__(self, client: ClientContext, container_id: str) -> None:
        super().__init__(container_id)
        self.client = client

    @property
    def log_file(self) -> Path:
        """Where ``LogIO`` output goes: beside the record, removed with the container."""
        return self.client.layout.container_dir(self._id) / "output.log"

    def info(self) -> ContainerInfo:
        """The stored record."""
        return record_to_info(self.client.store.get(self._id))

    def spec(self) -> Spec:
        """The OCI runtime spec."""
        return dict(self.client.store.get(self._id)["spec"])

    def labels(self) -> dict[str, str]:
        """The labels."""
        return dict(self.client.store.get(self._id).get("labels") or {})

    def set_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """Merge ``labels`` (an empty value removes a label); return the result."""
        labels = check_labels(labels)

        def change(record: dict[str, Any]) -> None:
            current = dict(record.get("labels") or {})
            for key, value in labels.items():
                if value:
                    current[key] = value
                else:
                    current.pop(key, None)
            record["labels"] = current

        record = self.client.store.update(self._id, change)
        self.client.events_log.publish("/containers/update", container_id=self._id)
        return dict(record["labels"])

    def new_task(
        self, *, stdio: Stdio | None = None, checkpoint_dir: Path | None = None
    ) -> LocalTask:
        """Create the task (created, not started) with its monitor; with ``checkpoint_dir``
        the runtime restores it from that checkpoint."""
        if checkpoint_dir is not None:
            checkpoint_dir = restore_dir(checkpoint_dir)
        client = self.client
        record = client.store.get(self._id)
        spec = record["spec"]
        stdio = resolve_log_stdio(stdio, self.log_file) or NullIO()
        check_terminal(spec.get("process") or {}, stdio, f"container {self._id}'s spec")
        stdio_rec = stdio_record(stdio)
        options = dict(record["runtime"].get("options") or {})
        driver = client.driver_for(str(record["runtime"]["name"]), options)
        bundle = client.layout.container_dir(self._id)
        task_dir = client.layout.task_dir(self._id)
        # Under the namespace lock, so a concurrent delete() of the container either sees
        # this task or has removed the record first (then this is NotFound).
        with client.layout.locked():
            client.store.get(self._id)
            try:
                task_dir.mkdir()
            except FileExistsError:
                raise task_exists(self._id) from None
        try:
            config = dict(spec)
            config["process"] = with_console_size(spec["process"], stdio)
            write_json_atomic(str(bundle / "config.json"), config, durable=False)
            write_json_atomic(
                str(task_dir / "task.json"),
                {"runtime": driver.name, "runtime_options": options, "stdio": stdio_rec},
                durable=False,
            )
            make_fifos(task_dir, stdio_rec)
            client.networks.attach(self, self._id)
            pid = self._spawn_monitor(driver, bundle, task_dir, stdio_rec, checkpoint_dir)
            master = -1
            if stdio_rec["kind"] == "tty":
                reply, fds = request(
                    str(task_dir), {"op": "console"}, timeout=client.timeout, fds=1
                )
                if not fds:
                    raise Unavailable(f"the monitor did not pass the terminal: {reply}")
                master = fds[0]
            io = open_io(task_dir, stdio_rec, master)
        except BaseException as exc:
            with contextlib.suppress(Error):
                driver.delete(self._id, force=True)
            client.networks.detach(self._id)
            shutil.rmtree(task_dir, ignore_errors=True)
            if isinstance(exc, RuntimeCommandError):
                raise runtime_refused(f"create the task of container {self._id!r}", exc) from exc
            raise
        return LocalTask(self, driver, "", task_dir, io, pid=pid)

    def _spawn_monitor(
        self,
        driver: RuntimeDriver,
        bundle: Path,
        task_dir: Path,
        stdio: dict[str, Any],
        checkpoint_dir: Path | None,
    ) -> int:
        client = self.client
        args = {
            "runtime": driver.base,
            "id": self._id,
            "bundle": str(bundle),
            "task_dir": str(task_dir),
            "events": str(client.layout.events_file),
            "events_max_bytes": client.events_max_bytes,
            "namespace": client.namespace,
            "timeout": client.timeout,
            "stdio": stdio,
            "restore": str(Path(checkpoint_dir).absolute()) if checkpoint_dir else None,
            "log": str(task_dir / "monitor.log"),
        }
        driver.state_root.mkdir(parents=True, exist_ok=True)
        return spawn_monitor(
            client.zygote, args, timeout=client.timeout, what=f"{driver.name} create of {self._id}"
        )

    def _existing(self, stdio: Stdio | None, *, attach: bool) -> LocalTask:
        client = self.client
        task_dir = client.layout.task_dir(self._id)
        try:
            task_rec = json.loads((task_dir / "task.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise task_not_found(self._id) from None
        driver = client.driver_for(str(task_rec["runtime"]), task_rec.get("runtime_options"))
        io = None
        if attach:
            stored = task_rec["stdio"]
            if stdio is not None and stdio_record(stdio)["kind"] != stored["kind"]:
                raise InvalidArgument(
                    f"the task of {self._id} was created with {stored['kind']} stdio; "
                    "attach with the same kind"
                )
            master = -1
            if stored["kind"] == "tty":
                with contextlib.suppress(OSError):
                    _reply, fds = request(
                        str(task_dir), {"op": "console"}, timeout=client.timeout, fds=1
                    )
                    master = fds[0] if fds else -1
            io = open_io(task_dir, stored, master)
        return LocalTask(self, driver, "", task_dir, io)

    def task(self) -> LocalTask:
        """The existing task (no live streams; see ``attach_task``)."""
        self.client.store.get(self._id)
        return self._existing(None, attach=False)

    def attach_task(self, *, stdio: Stdio | None = None) -> LocalTask:
        """The existing task with its stdio streams re-opened."""
        self.client.store.get(self._id)
        return self._existing(stdio, attach=True)

    def delete(self, *, cleanup_snapshot: bool = True) -> None:
        """Delete the container; ``FailedPrecondition`` while a task exists."""
        task_dir = self.client.layout.task_dir(self._id)

        def check() -> None:
            if task_dir.exists():
                raise FailedPrecondition(
                    f"container {self._id} still has a task; delete the task first "
                    "(task().delete() or force_delete())"
                )

        def check_and_release() -> None:
            # Under the namespace lock: a task created by another client between a first
            # check and the release would otherwise lose its root filesystem.
            check()
            if self.client.store.get(self._id).get("image"):
                self.client.images.release_image_rootfs(self.client.layout.container_dir(self._id))

        check()
        self.client.store.delete(self._id, check=check_and_release)
        self.client.networks.forget(self._id)
        self.client.events_log.publish("/containers/delete", container_id=self._id)
