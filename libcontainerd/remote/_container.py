"""Handles on containerd's container records."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from google.protobuf import any_pb2, field_mask_pb2

import libcontainerd.remote._convert as _convert
from libcontainerd._backend_rules import (
    check_labels,
    check_terminal,
    runtime_failure,
    task_exists,
    task_not_found,
)
from libcontainerd._checkpoint import restore_dir
from libcontainerd._container_handle import ContainerHandle
from libcontainerd.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    Unimplemented,
    Unknown,
)
from libcontainerd.remote._convert import RUNC_OPTIONS_TYPE
from libcontainerd.remote._pb.containerd.runc.v1 import oci_pb2
from libcontainerd.remote._pb.containerd.services.containers.v1 import containers_pb2
from libcontainerd.remote._pb.containerd.services.snapshots.v1 import snapshots_pb2
from libcontainerd.remote._pb.containerd.services.tasks.v1 import tasks_pb2
from libcontainerd.remote._pb.containerd.v1.types import task_pb2
from libcontainerd.remote._process import RemoteTask, Session
from libcontainerd.remote._stdio import log_file, remove_log_file
from libcontainerd.remote._transport import NO_TIMEOUT, Transport
from libcontainerd.types.container import ContainerInfo
from libcontainerd.types.stdio import Stdio

__all__ = ["RemoteContainer", "remove_snapshot"]


def remove_snapshot(transport: Transport, snapshotter: str, key: str) -> None:
    """Remove a container's snapshot; nothing when it is already gone."""
    with contextlib.suppress(NotFound):
        transport.call(
            transport.services.snapshots.Remove,
            snapshots_pb2.RemoveSnapshotRequest(snapshotter=snapshotter, key=key),
        )


class RemoteContainer(ContainerHandle):
    """A container record in containerd.

    The handle keeps the last record it read or created: ``new_task`` and ``delete`` use
    it instead of asking containerd again (snapshotter and snapshot key never change;
    the spec is the one this handle last saw). ``info``, ``spec`` and ``labels`` always
    read the record afresh.
    """

    def __init__(
        self,
        session: Session,
        container_id: str,
        record: containers_pb2.Container | None = None,
    ) -> None:
        super().__init__(container_id)
        self._session = session
        self._known = record

    @property
    def _t(self) -> Transport:
        return self._session.transport

    def _record(self, wait_ready: float | None = None) -> containers_pb2.Container:
        response = self._t.call(
            self._t.containers.Get,
            containers_pb2.GetContainerRequest(id=self._id),
            idempotent=True,
            wait_ready=wait_ready,
        )
        self._known = response.container
        return response.container

    def refresh(self, *, wait_ready: float | None = None) -> None:
        """Read the record again; ``NotFound`` when the container is gone."""
        self._record(wait_ready)

    def _last_record(self) -> containers_pb2.Container:
        return self._known if self._known is not None else self._record()

    def info(self) -> ContainerInfo:
        """The container's stored record, freshly read."""
        return _convert.container_info(self._record())

    def spec(self) -> dict[str, Any]:
        """The container's OCI runtime spec."""
        return dict(self.info().spec)

    def labels(self) -> dict[str, str]:
        """The container's labels."""
        return dict(self._record().labels)

    def set_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """Merge ``labels`` into the container's labels (an empty value removes one)."""
        labels = check_labels(labels)
        if not labels:
            return self.labels()
        record = containers_pb2.Container(id=self._id, labels=dict(labels))
        mask = field_mask_pb2.FieldMask(paths=[f"labels.{key}" for key in labels])
        response = self._t.call(
            self._t.containers.Update,
            containers_pb2.UpdateContainerRequest(container=record, update_mask=mask),
        )
        return dict(response.container.labels)

    def new_task(
        self, *, stdio: Stdio | None = None, checkpoint_dir: Path | None = None
    ) -> RemoteTask:
        """Create the container's task (created, not started). ``stdio`` defaults to NullIO.

        With ``checkpoint_dir`` (a directory ``create_checkpoint`` wrote) the task is
        restored from it by CRIU through the runc shim.
        """
        record = self._last_record()
        task_options = _restore_options(record.runtime.name, checkpoint_dir)
        spec = _convert.unpack_json(record.spec) if record.HasField("spec") else {}
        process = (spec.get("process") if isinstance(spec, dict) else None) or {}
        check_terminal(process, stdio, f"container {self._id}'s spec")
        from libcontainerd.remote._images import container_rootfs

        rootfs = container_rootfs(self._t, record.snapshotter, record.snapshot_key)
        process_stdio = self._session.prepare(stdio, self._id, "")
        networks = self._session.networks
        try:
            if networks is not None:
                networks.attach(self, self._id)
            response = self._t.call(
                self._t.tasks.Create,
                tasks_pb2.CreateTaskRequest(
                    container_id=self._id,
                    rootfs=rootfs,
                    stdin=process_stdio.stdin,
                    stdout=process_stdio.stdout,
                    stderr=process_stdio.stderr,
                    terminal=process_stdio.terminal,
                    options=task_options,
                ),
                timeout=NO_TIMEOUT if task_options is not None else None,
            )
        except BaseException as error:
            self._session.forget(process_stdio)
            process_stdio.close()
            if networks is not None:
                networks.detach(self._id)
            if isinstance(error, AlreadyExists):
                raise task_exists(self._id, error) from error
            if isinstance(error, Unknown):
                raise runtime_failure(
                    f"create the task of container {self._id!r}", record.runtime.name, error
                ) from error
            raise
        return RemoteTask(self._session, self._id, pid=response.pid, stdio=process_stdio)

    def _task_process(self) -> task_pb2.Process:
        try:
            response = self._t.call(
                self._t.tasks.Get, tasks_pb2.GetRequest(container_id=self._id), idempotent=True
            )
        except NotFound as error:
            raise task_not_found(self._id, error) from error
        return response.process

    def task(self) -> RemoteTask:
        """The container's existing task; ``NotFound`` when it has none."""
        process = self._task_process()
        return RemoteTask(self._session, self._id, pid=process.pid)

    def attach_task(self, *, stdio: Stdio | None = None) -> RemoteTask:
        """Re-open the existing task's FIFOs (after the caller restarted)."""
        return RemoteTask.attach(self._session, self._id, self._task_process(), stdio)

    @property
    def log_file(self) -> Path:
        """Where ``LogIO`` output goes (on this host); removed with the container."""
        return log_file(self._session.transport.address, self._session.namespace, self._id)

    def delete(self, *, cleanup_snapshot: bool = True) -> None:
        """Delete the container; ``FailedPrecondition`` while its task exists."""
        try:
            self._task_process()
        except NotFound:
            pass
        else:
            raise FailedPrecondition(
                f"container {self._id!r} still has a task; delete the task first "
                "(task.delete() or task.force_delete())"
            )
        record = self._last_record()
        self._t.call(self._t.containers.Delete, containers_pb2.DeleteContainerRequest(id=self._id))
        self._known = None
        remove_log_file(self.log_file)
        if self._session.networks is not None:
            self._session.networks.forget(self._id)
        if cleanup_snapshot and record.snapshot_key and record.snapshotter:
            remove_snapshot(self._session.transport, record.snapshotter, record.snapshot_key)

    def __repr__(self) -> str:
        return f"<RemoteContainer {self._id}>"


def _restore_options(runtime: str, checkpoint_dir: Path | None) -> any_pb2.Any | None:
    """Task options that make the runc shim restore from ``checkpoint_dir`` (None: no restore)."""
    if checkpoint_dir is None:
        return None
    path = restore_dir(checkpoint_dir)
    if not runtime.startswith("io.containerd.runc."):
        raise Unimplemented(
            f"restoring from a checkpoint directory needs a runc shim runtime, not {runtime!r}"
        )
    options = oci_pb2.Options(criu_image_path=str(path))
    return any_pb2.Any(type_url=RUNC_OPTIONS_TYPE, value=options.SerializeToString())
