"""The remote backend's image service: pull, push, list, get, remove, import, export.

Pulls run under a containerd lease: the registry client streams every blob into
containerd's content store (:mod:`libcontainerd.remote._content`), layers are unpacked
into snapshots (:mod:`libcontainerd.remote._unpack`), and only then is the image record
created. Archives go through the shared codec (:mod:`libcontainerd.content.archive`)
under a lease too. The lease is deleted at the end either way, so a failed or cancelled
pull leaves nothing that no image references; a successful one leaves content and
snapshots held by the image record through containerd's ``gc.ref`` labels.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as _dt
import functools
import secrets
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import attrs
from google.protobuf import field_mask_pb2

from libcontainerd.errors import (
    AlreadyExists,
    Error,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from libcontainerd.remote._content import RemoteContentStore, leased_call
from libcontainerd.remote._convert import to_datetime
from libcontainerd.remote._manifest_cache import manifest_cache
from libcontainerd.remote._manifests import ImageManifest, PlatformReader, read_manifests
from libcontainerd.remote._pb.containerd.services.images.v1 import images_pb2
from libcontainerd.remote._pb.containerd.services.leases.v1 import leases_pb2
from libcontainerd.remote._pb.containerd.services.snapshots.v1 import snapshots_pb2
from libcontainerd.remote._pb.containerd.types import descriptor_pb2, mount_pb2
from libcontainerd.remote._transport import Transport
from libcontainerd.remote._unpack import DEFAULT_SNAPSHOTTER, image_chain_id, unpack_image
from libcontainerd.remote._unpack_while_fetching import UnpackWhileFetching
from libcontainerd.shortcuts import ImageShortcuts
from libcontainerd.types import descriptor as media
from libcontainerd.types.auth import Credentials
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.image import Image
from libcontainerd.types.platform import (
    Platform,
    PlatformRequest,
    PlatformSelector,
    default_matcher,
)
from libcontainerd.types.reference import Reference

if TYPE_CHECKING:
    from libcontainerd.distribution import RegistryClient

__all__ = [
    "ImageManifest",
    "PreparedRootfs",
    "RemoteImages",
    "container_rootfs",
    "prepare_image_rootfs",
]

_LEASE_EXPIRE_LABEL = "containerd.io/gc.expire"
_PULL_LEASE_LIFETIME = _dt.timedelta(hours=24)
_CONTAINER_LEASE_LIFETIME = _dt.timedelta(minutes=5)


def _descriptor_from_pb(value: descriptor_pb2.Descriptor) -> Descriptor:
    return Descriptor(
        media_type=value.media_type,
        digest=value.digest,
        size=value.size,
        annotations=dict(value.annotations),
    )


def _descriptor_to_pb(value: Descriptor) -> descriptor_pb2.Descriptor:
    return descriptor_pb2.Descriptor(
        media_type=value.media_type,
        digest=value.digest,
        size=value.size,
        annotations=dict(value.annotations),
    )


def _to_image(record: images_pb2.Image, image_platforms: Sequence[Platform] = ()) -> Image:
    return Image(
        name=record.name,
        target=_descriptor_from_pb(record.target),
        labels=dict(record.labels),
        created_at=(to_datetime(record.created_at) if record.HasField("created_at") else None),
        updated_at=(to_datetime(record.updated_at) if record.HasField("updated_at") else None),
        platforms=tuple(image_platforms),
    )


def _lease_expiry(lifetime: _dt.timedelta) -> str:
    when = _dt.datetime.now(_dt.timezone.utc) + lifetime
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class RemoteImages(ImageShortcuts):
    """Images in one containerd namespace.

    ``registry_options`` are passed to every :class:`~libcontainerd.distribution.RegistryClient`
    the service creates (``ca_file``, ``insecure_hosts``, ``docker_config`` ...).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        registry_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.transport = transport
        self.snapshotter = snapshotter
        self.registry_options = dict(registry_options or {})
        self._images = transport.services.images

    # -- helpers ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def lease(self, lifetime: _dt.timedelta = _PULL_LEASE_LIFETIME) -> Iterator[str]:
        """A fresh lease for the duration of the block (it also expires on its own)."""
        lease_id = f"libcontainerd-{secrets.token_hex(8)}"
        self.transport.call(
            self.transport.leases.Create,
            leases_pb2.CreateRequest(
                id=lease_id, labels={_LEASE_EXPIRE_LABEL: _lease_expiry(lifetime)}
            ),
        )
        failed = True
        try:
            yield lease_id
            failed = False
        finally:
            # After a failure, wait for garbage collection so the partial content is gone
            # when the error reaches the caller; after success the image holds everything.
            delete = functools.partial(
                self.transport.call,
                self.transport.leases.Delete,
                leases_pb2.DeleteRequest(id=lease_id, sync=failed),
            )
            try:
                delete()
            except Unavailable:  # containerd went away mid-pull: delete it when it is back
                self.transport.after_reconnect(delete)
            except Error:
                pass

    def content(self, lease_id: str | None = None) -> RemoteContentStore:
        """The content store of this namespace, optionally under a lease."""
        return RemoteContentStore(self.transport, lease_id=lease_id)

    def _registry(self, auth: Credentials | None) -> RegistryClient:
        # The registry client (httpx and the auth flows) is imported only by the calls
        # that talk to a registry: preparing a container's rootfs never needs it.
        from libcontainerd.distribution import RegistryClient

        options = dict(self.registry_options)
        if auth is not None:
            if not isinstance(auth, Credentials):
                raise InvalidArgument(
                    f"auth must be libcontainerd Credentials, not {type(auth).__name__}"
                )
            options["credentials"] = auth
        return RegistryClient(**options)

    def _lookup(self, ref: str) -> images_pb2.Image:
        if not isinstance(ref, str) or not ref:
            raise InvalidArgument(f"image reference must be a non-empty str, got {ref!r}")
        names = [ref]
        with contextlib.suppress(InvalidArgument):
            normalized = str(Reference.parse(ref))
            if normalized != ref:
                names.append(normalized)
        for name in names:
            try:
                response = self.transport.call(
                    self._images.Get, images_pb2.GetImageRequest(name=name)
                )
            except NotFound:
                continue
            return response.image
        raise NotFound(f"image {ref!r} not found in namespace {self.transport.namespace!r}")

    def put_record(
        self,
        name: str,
        target: Descriptor,
        labels: Mapping[str, str] | None = None,
        *,
        lease_id: str | None = None,
    ) -> images_pb2.Image:
        """Create the image record ``name``, or point an existing one at ``target``."""
        # A pull or import may add manifests of the index: choose the host's one again.
        manifest_cache.forget(self.transport.address, self.transport.namespace, target.digest)
        record = images_pb2.Image(
            name=name, target=_descriptor_to_pb(target), labels=dict(labels or {})
        )
        try:
            response: Any = leased_call(
                self.transport,
                self._images.Create,
                images_pb2.CreateImageRequest(image=record),
                lease_id=lease_id,
            )
        except AlreadyExists:
            paths = ["target"] + [f"labels.{key}" for key in labels or {}]
            response = leased_call(
                self.transport,
                self._images.Update,
                images_pb2.UpdateImageRequest(
                    image=record, update_mask=field_mask_pb2.FieldMask(paths=paths)
                ),
                lease_id=lease_id,
            )
        image: images_pb2.Image = response.image
        return image

    # -- the ImageService contract ---------------------------------------------------------

    def pull(
        self,
        ref: str,
        *,
        platform: PlatformRequest | None = None,
        progress: Any = None,
        auth: Credentials | None = None,
        unpack: bool = True,
    ) -> Image:
        """Pull ``ref`` into containerd for ``platform`` (default: this host) and unpack it."""
        reference = Reference.parse(ref)
        selector = PlatformSelector.of(platform)
        if progress is not None and not callable(progress):
            raise InvalidArgument("progress must be a callable taking a ProgressEvent")
        source_key, source_value = reference.distribution_source_label()
        with self.lease() as lease_id, self._registry(auth) as registry:
            store = RemoteContentStore(
                self.transport, lease_id=lease_id, labels={source_key: source_value}
            )
            # Layers are unpacked as they arrive; what that missed is unpacked after.
            unpacker = UnpackWhileFetching(store, self.snapshotter, progress) if unpack else None
            try:
                result = registry.pull_graph(
                    reference,
                    store,
                    platform=selector,
                    progress=progress if unpacker is None else unpacker.observe,
                    on_manifests=None if unpacker is None else unpacker.start,
                )
                manifests = read_manifests(
                    store,
                    result.target,
                    selector,
                    check_lone=platform is not None,
                    what=f"image {ref}",
                )
                unpacked = {} if unpacker is None else unpacker.finish()
            finally:
                if unpacker is not None:
                    unpacker.abort()  # after a failure; nothing left to stop otherwise
            for item in manifests:
                if unpack and item.descriptor.digest not in unpacked:
                    unpack_image(store, item.manifest, item.config, snapshotter=self.snapshotter)
            record = self.put_record(str(reference), result.target, lease_id=lease_id)
        found = [m.platform for m in manifests if m.platform is not None]
        return _to_image(record, found)

    def push(
        self,
        ref: str,
        *,
        source: str | None = None,
        platform: PlatformRequest | None = None,
        progress: Any = None,
        auth: Credentials | None = None,
    ) -> Descriptor:
        """Push the local image ``source`` (default ``ref``) to ``ref``'s registry."""
        reference = Reference.parse(ref)
        record = self._lookup(source if source is not None else ref)
        target = _descriptor_from_pb(record.target)
        store = self.content()
        if media.is_index(target.media_type):
            if platform is not None:
                selector = PlatformSelector.of(platform)
                chosen = read_manifests(store, target, selector, what=f"image {record.name}")
                if len(chosen) != 1:
                    raise InvalidArgument(
                        f"platform {selector.label} selects {len(chosen)} manifests "
                        "of the index; name exactly one platform, or none to push the index"
                    )
                target = chosen[0].descriptor
            else:
                index = store.read_json(target.digest)
                missing = [
                    item.get("platform") or item.get("digest")
                    for item in index.get("manifests") or []
                    if not store.exists(str(item.get("digest")))
                ]
                if missing:
                    raise NotFound(
                        f"image {record.name} lacks the content of {len(missing)} platform(s) "
                        f"of its index (e.g. {missing[0]}); pull with platform='all' first, "
                        "or push one platform with platform="
                    )
        with self._registry(auth) as registry:
            return registry.push_graph(reference, store, target, progress=progress)

    def list(self, filters: Sequence[str] = ()) -> builtins.list[Image]:
        """Every image record, optionally filtered (containerd filter syntax).

        ``platforms`` of each lists the platforms whose manifest is in the content store.
        """
        if isinstance(filters, str):
            filters = [filters]
        response = self.transport.call(
            self._images.List, images_pb2.ListImagesRequest(filters=list(filters))
        )
        reader = PlatformReader(self.content())
        return [
            _to_image(record, reader.platforms(_descriptor_from_pb(record.target)))
            for record in response.images
        ]

    def get(self, ref: str) -> Image:
        """One image record (exact name, or the normalised reference); ``NotFound`` if absent.

        ``platforms`` lists the platforms whose manifest is in the content store.
        """
        record = self._lookup(ref)
        reader = PlatformReader(self.content())
        return _to_image(record, reader.platforms(_descriptor_from_pb(record.target)))

    def remove(self, ref: str, *, sync: bool = False) -> None:
        """Delete the image record; ``sync`` waits for containerd's garbage collection."""
        record = self._lookup(ref)
        self.transport.call(
            self._images.Delete, images_pb2.DeleteImageRequest(name=record.name, sync=sync)
        )
        manifest_cache.forget(
            self.transport.address, self.transport.namespace, record.target.digest
        )

    def import_archive(
        self,
        source: Path | str | IO[bytes],
        *,
        platform: PlatformRequest | None = None,
        base_name: str | None = None,
    ) -> builtins.list[Image]:
        """Import an OCI image-layout or docker-archive tarball; returns the image records.

        Naming and ``platform`` (default: every platform in the archive) follow
        :mod:`libcontainerd.content.archive`. Everything is written under one lease and
        the records are created before it ends, so a malformed archive leaves nothing.
        Layers of the imported platforms this host can run (or of those asked for) are
        unpacked into snapshots.
        """
        unpack_matcher = default_matcher() if platform is None else None
        result: builtins.list[Image] = []
        from libcontainerd.content.archive import import_images, open_archive

        with open_archive(source) as archive, self.lease() as lease_id:
            store = self.content(lease_id)
            for found in import_images(archive, store, platform, base_name=base_name):
                for desc in found.manifests:
                    if unpack_matcher is not None and not (
                        desc.platform is not None and unpack_matcher.match(desc.platform)
                    ):
                        continue
                    manifest = store.read_json(desc.digest)
                    config = store.read_json(manifest["config"]["digest"])
                    unpack_image(store, manifest, config, snapshotter=self.snapshotter)
                record = self.put_record(found.name, found.target, lease_id=lease_id)
                found_platforms = [m.platform for m in found.manifests if m.platform is not None]
                result.append(_to_image(record, found_platforms))
        return result

    def export_archive(
        self,
        refs: Sequence[str],
        dest: Path | str | IO[bytes],
        *,
        platform: PlatformRequest | PlatformSelector | None = None,
    ) -> None:
        """Write the images ``refs`` (and the content they need) as an OCI layout tarball.

        With ``platform``, indexes keep only that platform's manifests.
        """
        from libcontainerd.content.archive_export import (
            named_entry,
            write_archive_file,
            write_oci_archive,
        )

        if isinstance(refs, str):
            refs = [refs]
        if not refs:
            raise InvalidArgument("export_archive needs at least one image reference")
        store = self.content()
        entries = []
        for ref in refs:
            record = self._lookup(ref)
            entries.append(named_entry(record.name, _descriptor_from_pb(record.target)))
        write_archive_file(
            dest, lambda out: write_oci_archive(out, store, entries, platform=platform)
        )

    def unpack(self, ref: str, *, platform: PlatformRequest | None = None) -> str:
        """Unpack an image already in the content store; returns its top chain id."""
        record = self._lookup(ref)
        target = _descriptor_from_pb(record.target)
        selector = PlatformSelector.of(platform)
        with self.lease() as lease_id:
            store = self.content(lease_id)
            chain = ""
            manifests = read_manifests(
                store,
                target,
                selector,
                check_lone=platform is not None,
                what=f"image {record.name}",
            )
            for item in manifests:
                chain = unpack_image(
                    store, item.manifest, item.config, snapshotter=self.snapshotter
                )
        return chain


@attrs.frozen
class PreparedRootfs:
    """A container snapshot prepared from an image, still held by a short lease."""

    transport: Transport = attrs.field(repr=False)
    image_name: str
    snapshotter: str
    key: str
    lease_id: str
    spec: Mapping[str, Any] = attrs.field(repr=False)

    def _delete_lease(self) -> None:
        with contextlib.suppress(Error):
            self.transport.call(
                self.transport.leases.Delete, leases_pb2.DeleteRequest(id=self.lease_id)
            )

    def release(self) -> None:
        """The container record now references the snapshot: drop the lease."""
        self._delete_lease()

    def discard(self) -> None:
        """The container was not created: remove the snapshot and the lease."""
        stub = self.transport.services.snapshots
        with contextlib.suppress(Error):
            self.transport.call(
                stub.Remove,
                snapshots_pb2.RemoveSnapshotRequest(snapshotter=self.snapshotter, key=self.key),
            )
        self._delete_lease()


def _image_spec(
    spec: Mapping[str, Any] | None, config: Mapping[str, Any], container_id: str, namespace: str
) -> dict[str, Any]:
    from libcontainerd.oci import generate_spec, spec_with_image

    base = (
        spec if spec is not None else generate_spec(container_id=container_id, namespace=namespace)
    )
    return spec_with_image(base, config, root_path="rootfs")


def prepare_image_rootfs(
    transport: Transport,
    container_id: str,
    ref: str,
    spec: Mapping[str, Any] | None,
    *,
    snapshotter: str = DEFAULT_SNAPSHOTTER,
) -> PreparedRootfs:
    """Prepare snapshot ``container_id`` on top of the unpacked image ``ref``.

    The spec gets the image config (entrypoint/cmd unless the spec has args, env,
    working directory, user) and ``root.path = "rootfs"``, where the shim mounts the
    snapshot. ``FailedPrecondition`` when the image was pulled without unpacking.
    """
    images = RemoteImages(transport, snapshotter=snapshotter)
    record = images._lookup(ref)
    target = _descriptor_from_pb(record.target)
    address, namespace = transport.address, transport.namespace
    manifest = manifest_cache.get(address, namespace, target.digest)
    if manifest is None:
        manifest = read_manifests(
            images.content(),
            target,
            PlatformSelector.of(None),
            check_lone=False,
            what=f"image {record.name}",
        )[0]
        manifest_cache.put(address, namespace, target.digest, manifest)
    chain = image_chain_id(manifest.config)
    new_spec = _image_spec(spec, manifest.config, container_id, transport.namespace)
    stub = transport.services.snapshots
    lease_id = f"libcontainerd-{secrets.token_hex(8)}"
    transport.call(
        transport.leases.Create,
        leases_pb2.CreateRequest(
            id=lease_id, labels={_LEASE_EXPIRE_LABEL: _lease_expiry(_CONTAINER_LEASE_LIFETIME)}
        ),
    )
    prepared = PreparedRootfs(transport, record.name, snapshotter, container_id, lease_id, new_spec)
    try:
        leased_call(
            transport,
            stub.Prepare,
            snapshots_pb2.PrepareSnapshotRequest(
                snapshotter=snapshotter, key=container_id, parent=chain
            ),
            lease_id=lease_id,
        )
    except AlreadyExists:
        prepared._delete_lease()
        raise AlreadyExists(
            f"snapshot {container_id!r} already exists in {snapshotter}; a container with "
            "this id (or its leftover snapshot) is in the way: delete it or pick another id"
        ) from None
    except NotFound:
        # The parent (the image's top layer) is missing: no separate Stat round trip.
        prepared._delete_lease()
        raise FailedPrecondition(
            f"image {record.name} is not unpacked into the {snapshotter} snapshotter; "
            "pull it with unpack=True (or call images.unpack) first"
        ) from None
    except BaseException:
        prepared._delete_lease()
        raise
    return prepared


def container_rootfs(transport: Transport, snapshotter: str, key: str) -> list[mount_pb2.Mount]:
    """The mounts of a container's snapshot (empty when it has none)."""
    if not snapshotter or not key:
        return []
    stub = transport.services.snapshots
    response = transport.call(
        stub.Mounts, snapshots_pb2.MountsRequest(snapshotter=snapshotter, key=key)
    )
    return list(response.mounts)
