"""Unpacking an image's layers into snapshots through containerd's diff service.

Each layer becomes a committed snapshot named by its chain id: prepare an active
snapshot on the parent chain, let the diff service apply the layer blob into its
mounts, check the uncompressed digest it reports against the config's diff id, and
commit. A layer whose chain id is already committed is skipped, so unpacking is
idempotent and shares layers between images. Afterwards the layer blobs get the
``containerd.io/uncompressed`` label and the config the
``containerd.io/gc.ref.snapshot.<snapshotter>`` label that keeps the snapshots alive
as long as the image's content is.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from libcontainerd.content.rootfs import chain_ids
from libcontainerd.errors import AlreadyExists, DigestMismatch, Error, FailedPrecondition, NotFound
from libcontainerd.remote._content import RemoteContentStore, leased_call
from libcontainerd.remote._pb.containerd.services.diff.v1 import diff_pb2
from libcontainerd.remote._pb.containerd.services.snapshots.v1 import snapshots_pb2
from libcontainerd.remote._pb.containerd.types import descriptor_pb2, mount_pb2

__all__ = [
    "DEFAULT_SNAPSHOTTER",
    "SNAPSHOT_REF_LABEL",
    "UNCOMPRESSED_LABEL",
    "image_chain_id",
    "snapshot_gc_label",
    "unpack_image",
]

DEFAULT_SNAPSHOTTER = "overlayfs"
"""The snapshotter images are unpacked into unless another is named."""

UNCOMPRESSED_LABEL = "containerd.io/uncompressed"
"""Content label: a layer blob's uncompressed (diff id) digest."""

SNAPSHOT_REF_LABEL = "containerd.io/snapshot.ref"
"""Snapshot label: the chain id a committed layer snapshot stands for."""


def snapshot_gc_label(snapshotter: str) -> str:
    """The config-blob label that references the image's top snapshot in ``snapshotter``."""
    return f"containerd.io/gc.ref.snapshot.{snapshotter}"


def _diff_ids(config: Mapping[str, Any], what: str) -> list[str]:
    rootfs = config.get("rootfs") if isinstance(config, Mapping) else None
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, Mapping) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise FailedPrecondition(f"{what} has no rootfs.diff_ids list; it cannot be unpacked")
    return list(diff_ids)


def image_chain_id(config: Mapping[str, Any], what: str = "image config") -> str:
    """The chain id of the image's whole layer stack ('' for an image without layers)."""
    ids = chain_ids(_diff_ids(config, what))
    return ids[-1] if ids else ""


def _descriptor_pb(layer: Mapping[str, Any]) -> descriptor_pb2.Descriptor:
    return descriptor_pb2.Descriptor(
        media_type=str(layer.get("mediaType") or ""),
        digest=str(layer["digest"]),
        size=int(layer.get("size") or 0),
        annotations={str(k): str(v) for k, v in (layer.get("annotations") or {}).items()},
    )


class _Snapshots:
    def __init__(self, store: RemoteContentStore, snapshotter: str) -> None:
        self._store = store
        self._t = store.transport
        self._stub = self._t.services.snapshots
        self._diff = self._t.services.diff
        self.snapshotter = snapshotter

    def _call(self, method: Any, request: Any, timeout: float | None = -1.0) -> Any:
        return leased_call(self._t, method, request, lease_id=self._store.lease_id, timeout=timeout)

    def prepare(
        self, key: str, parent: str, labels: Mapping[str, str]
    ) -> Sequence[mount_pb2.Mount]:
        response = self._call(
            self._stub.Prepare,
            snapshots_pb2.PrepareSnapshotRequest(
                snapshotter=self.snapshotter, key=key, parent=parent, labels=dict(labels)
            ),
        )
        return list(response.mounts)

    def commit(self, name: str, key: str, labels: Mapping[str, str]) -> None:
        self._call(
            self._stub.Commit,
            snapshots_pb2.CommitSnapshotRequest(
                snapshotter=self.snapshotter, name=name, key=key, labels=dict(labels)
            ),
        )

    def remove(self, key: str) -> None:
        with contextlib.suppress(NotFound):
            self._call(
                self._stub.Remove,
                snapshots_pb2.RemoveSnapshotRequest(snapshotter=self.snapshotter, key=key),
            )

    def apply(
        self, layer: Mapping[str, Any], mounts: Sequence[mount_pb2.Mount]
    ) -> descriptor_pb2.Descriptor:
        response = self._call(
            self._diff.Apply,
            diff_pb2.ApplyRequest(diff=_descriptor_pb(layer), mounts=list(mounts)),
            timeout=None,  # a large layer takes as long as it takes
        )
        applied: descriptor_pb2.Descriptor = response.applied
        return applied


def unpack_image(
    store: RemoteContentStore,
    manifest: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    snapshotter: str = DEFAULT_SNAPSHOTTER,
    ready: Callable[[str], None] | None = None,
) -> str:
    """Unpack the layers of ``manifest`` into ``snapshotter``; returns the top chain id.

    Content and snapshots are touched under ``store``'s lease, so a failure part-way
    leaves only lease-held leftovers that go away with the lease. ``ready(digest)`` is
    called before each layer is applied and returns once that layer blob is stored
    (a pull that is still downloading the later layers).
    """
    layers = manifest.get("layers") or []
    if not isinstance(layers, list) or not all(isinstance(item, Mapping) for item in layers):
        raise FailedPrecondition("the image manifest's 'layers' is not a list of descriptors")
    diff_ids = _diff_ids(config, "the image config")
    if len(diff_ids) != len(layers):
        raise FailedPrecondition(
            f"the image manifest lists {len(layers)} layers but its config has "
            f"{len(diff_ids)} diff ids; the image is malformed"
        )
    snapshots = _Snapshots(store, snapshotter)
    chain = chain_ids(diff_ids)
    parent = ""
    for layer, diff_id, chain_id in zip(layers, diff_ids, chain, strict=True):
        if ready is not None:
            ready(str(layer["digest"]))
        labels = {SNAPSHOT_REF_LABEL: chain_id}
        key = f"extract-{secrets.token_hex(6)}-{chain_id}"
        try:
            mounts = snapshots.prepare(key, parent, labels)
        except AlreadyExists:
            # The ref label names chain_id: containerd refuses the prepare when the layer
            # is already committed (and adds it to our lease). It is there; go on.
            store.update_labels(str(layer["digest"]), {UNCOMPRESSED_LABEL: diff_id})
            parent = chain_id
            continue
        try:
            applied = snapshots.apply(layer, mounts)
            if applied.digest != diff_id:
                raise DigestMismatch(
                    f"layer {layer['digest']} unpacks to {applied.digest}, but the image "
                    f"config says its diff id is {diff_id}; the image is corrupt",
                    expected=diff_id,
                    actual=applied.digest,
                )
            try:
                snapshots.commit(chain_id, key, labels)
            except AlreadyExists:
                snapshots.remove(key)  # another unpack committed the same layer
        except BaseException:
            with contextlib.suppress(Error):
                snapshots.remove(key)
            raise
        store.update_labels(str(layer["digest"]), {UNCOMPRESSED_LABEL: diff_id})
        parent = chain_id
    config_digest = manifest.get("config", {}).get("digest")
    if parent and isinstance(config_digest, str):
        store.update_labels(config_digest, {snapshot_gc_label(snapshotter): parent})
    return parent
