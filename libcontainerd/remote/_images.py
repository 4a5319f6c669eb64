"""The remote backend's image service: pull, push, list, get, remove, import, export.

Pulls run under a containerd lease: the registry client streams every blob into
containerd's content store (:mod:`._content`), layers are unpacked into snapshots
(:mod:`._unpack`), and only then is the image record created. The lease is deleted at
the end either way, so a failed or cancelled pull leaves nothing that no image
references; a successful one leaves content and snapshots held by the image record
through containerd's ``gc.ref`` labels.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as _dt
import secrets
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import attrs
from google.protobuf import field_mask_pb2

from ..distribution import RegistryClient, select_platforms
from ..errors import (
    AlreadyExists,
    DigestMismatch,
    Error,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from ..types import descriptor as media
from ..types import platform as platforms
from ..types.auth import Credentials
from ..types.descriptor import Descriptor
from ..types.image import Image
from ..types.platform import Matcher, Platform
from ..types.reference import Reference
from . import _convert
from ._content import RemoteContentStore, leased_call
from ._pb.containerd.services.images.v1 import images_pb2, images_pb2_grpc
from ._pb.containerd.services.leases.v1 import leases_pb2
from ._pb.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from ._pb.containerd.types import descriptor_pb2, mount_pb2
from ._transport import Transport
from ._unpack import DEFAULT_SNAPSHOTTER, image_chain_id, unpack_image

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

PlatformArg = Platform | str | Matcher | Sequence[Platform | str] | None


@attrs.frozen
class ImageManifest:
    """One platform's manifest of an image, as read from containerd's content store."""

    descriptor: Descriptor
    manifest: Mapping[str, Any] = attrs.field(repr=False)
    config: Mapping[str, Any] = attrs.field(repr=False)

    @property
    def platform(self) -> Platform | None:
        """The platform the config declares."""
        return _config_platform(self.config)


def _config_platform(config: Mapping[str, Any]) -> Platform | None:
    os_name = config.get("os")
    arch = config.get("architecture")
    if not isinstance(os_name, str) or not isinstance(arch, str):
        return None
    try:
        return Platform.of(os_name, arch, str(config.get("variant") or ""))
    except InvalidArgument:
        return None


def _platform_label(platform: PlatformArg) -> str:
    if platform is None:
        return platforms.default().format()
    if isinstance(platform, Platform):
        return platform.format()
    if isinstance(platform, str):
        return platform
    if isinstance(platform, Sequence):
        return ", ".join(p.format() if isinstance(p, Platform) else str(p) for p in platform)
    return repr(platform)


def _config_matches(config: Mapping[str, Any], platform: PlatformArg) -> bool:
    if platform is None or platform == "all":
        return True
    os_name, arch = config.get("os"), config.get("architecture")
    if not isinstance(os_name, str) or not isinstance(arch, str):
        return True  # nothing to compare against: accept, as containerd does
    probe = Descriptor(
        media_type=media.MEDIA_TYPE_OCI_MANIFEST,
        digest="sha256:" + "0" * 64,
        size=0,
        platform=Platform.of(os_name, arch, str(config.get("variant") or "")),
    )
    try:
        select_platforms([probe], platform)
    except NotFound:
        return False
    return True


def read_manifests(
    store: RemoteContentStore,
    target: Descriptor,
    platform: PlatformArg | str = None,
    *,
    what: str = "image",
) -> list[ImageManifest]:
    """The manifests of ``target`` for ``platform`` ('all' for every locally stored one).

    Only manifests whose content is in the store are candidates. ``NotFound`` names the
    platform when none matches.
    """
    if media.is_manifest(target.media_type):
        manifest = store.read_json(target.digest)
        config = store.read_json(manifest["config"]["digest"])
        if not _config_matches(config, platform):
            raise NotFound(
                f"{what} is for {config.get('os')}/{config.get('architecture')}, not for "
                f"platform {_platform_label(platform)}; pass a matching platform="
            )
        return [ImageManifest(target, manifest, config)]
    if not media.is_index(target.media_type):
        raise FailedPrecondition(
            f"{what} points at {target.media_type}, which is neither a manifest nor an index"
        )
    index = store.read_json(target.digest)
    children = [Descriptor.from_dict(item) for item in index.get("manifests") or []]
    result: list[ImageManifest] = []
    entries: list[Descriptor] = []
    for child in children:
        if media.is_index(child.media_type):
            with contextlib.suppress(NotFound):
                result.extend(read_manifests(store, child, platform, what=what))
        elif store.exists(child.digest):
            entries.append(child)
    if entries:
        try:
            chosen = select_platforms(entries, platform)
        except NotFound as error:
            if not result:
                raise NotFound(f"{what}: {error}") from None
            chosen = []
        for child in chosen:
            manifest = store.read_json(child.digest)
            config = store.read_json(manifest["config"]["digest"])
            result.append(ImageManifest(child, manifest, config))
    if not result:
        offered = sorted({c.platform.format() for c in children if c.platform is not None})
        raise NotFound(
            f"{what} has no locally stored manifest for platform {_platform_label(platform)} "
            f"(the index offers {', '.join(offered) or 'no platforms'}); pull it with that "
            "platform="
        )
    return result


_MAX_INDEX_DEPTH = 4


class _PlatformReader:
    """The locally present platforms of image targets, for ``list`` and ``get``.

    An index names each manifest's platform, so only the index is read, plus one
    content listing for which of its manifests are stored; a lone manifest needs its
    config. Blobs shared between images are read once per reader.
    """

    def __init__(self, store: RemoteContentStore) -> None:
        self._store = store
        self._json: dict[str, Any] = {}

    def _read(self, digest: str) -> Any:
        if digest not in self._json:
            self._json[digest] = self._store.read_json(digest)
        return self._json[digest]

    def _manifest_platform(self, digest: str) -> Platform | None:
        manifest = self._read(digest)
        config_ref = manifest.get("config") if isinstance(manifest, Mapping) else None
        config_digest = config_ref.get("digest") if isinstance(config_ref, Mapping) else None
        if not isinstance(config_digest, str):
            return None
        config = self._read(config_digest)
        if not isinstance(config, Mapping):
            return None
        return _config_platform(config)

    def _walk(self, target: Descriptor, depth: int) -> builtins.list[Platform]:
        if media.is_manifest(target.media_type):
            found = self._manifest_platform(target.digest)
            return [] if found is None else [found]
        if not media.is_index(target.media_type) or depth >= _MAX_INDEX_DEPTH:
            return []
        index = self._read(target.digest)
        items = index.get("manifests") if isinstance(index, Mapping) else None
        children: builtins.list[Descriptor] = []
        for item in items if isinstance(items, builtins.list) else []:
            with contextlib.suppress(InvalidArgument, TypeError, KeyError):
                children.append(Descriptor.from_dict(item))
        stored = self._store.present([child.digest for child in children])
        result: builtins.list[Platform] = []
        for child in children:
            if child.digest not in stored:
                continue
            if media.is_index(child.media_type):
                result.extend(self._walk(child, depth + 1))
            elif child.platform is not None:
                result.append(child.platform)
            elif media.is_manifest(child.media_type):
                found = self._manifest_platform(child.digest)
                if found is not None:
                    result.append(found)
        return result

    def platforms(self, target: Descriptor) -> tuple[Platform, ...]:
        """The platforms of ``target`` whose manifest is stored (empty when unreadable)."""
        try:
            found = self._walk(target, 0)
        except (NotFound, FailedPrecondition, InvalidArgument, DigestMismatch):
            return ()
        unique: dict[str, Platform] = {}
        for item in found:
            unique.setdefault(item.format(), item)
        return tuple(unique.values())


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
        created_at=(
            _convert.to_datetime(record.created_at) if record.HasField("created_at") else None
        ),
        updated_at=(
            _convert.to_datetime(record.updated_at) if record.HasField("updated_at") else None
        ),
        platforms=tuple(image_platforms),
    )


def _lease_expiry(lifetime: _dt.timedelta) -> str:
    when = _dt.datetime.now(_dt.timezone.utc) + lifetime
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class RemoteImages:
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
        self._images = images_pb2_grpc.ImagesStub(transport.channel)

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
            with contextlib.suppress(Error):
                self.transport.call(
                    self.transport.leases.Delete,
                    leases_pb2.DeleteRequest(id=lease_id, sync=failed),
                )

    def content(self, lease_id: str | None = None) -> RemoteContentStore:
        """The content store of this namespace, optionally under a lease."""
        return RemoteContentStore(self.transport, lease_id=lease_id)

    def _registry(self, auth: Credentials | None) -> RegistryClient:
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
        platform: PlatformArg = None,
        progress: Any = None,
        auth: Credentials | None = None,
        unpack: bool = True,
    ) -> Image:
        """Pull ``ref`` into containerd for ``platform`` (default: this host) and unpack it."""
        reference = Reference.parse(ref)
        if progress is not None and not callable(progress):
            raise InvalidArgument("progress must be a callable taking a ProgressEvent")
        source_key, source_value = reference.distribution_source_label()
        with self.lease() as lease_id, self._registry(auth) as registry:
            store = RemoteContentStore(
                self.transport, lease_id=lease_id, labels={source_key: source_value}
            )
            result = registry.pull_graph(
                reference,
                store,
                platform=platform,
                progress=progress,
            )
            manifests = read_manifests(store, result.target, platform, what=f"image {ref}")
            if unpack:
                for item in manifests:
                    unpack_image(store, item.manifest, item.config, snapshotter=self.snapshotter)
            record = self.put_record(str(reference), result.target, lease_id=lease_id)
        found = [m.platform for m in manifests if m.platform is not None]
        return _to_image(record, found)

    def push(
        self,
        ref: str,
        *,
        source: str | None = None,
        platform: PlatformArg = None,
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
                chosen = read_manifests(store, target, platform, what=f"image {record.name}")
                if len(chosen) != 1:
                    raise InvalidArgument(
                        f"platform {_platform_label(platform)} selects {len(chosen)} manifests "
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
        reader = _PlatformReader(self.content())
        return [
            _to_image(record, reader.platforms(_descriptor_from_pb(record.target)))
            for record in response.images
        ]

    def get(self, ref: str) -> Image:
        """One image record (exact name, or the normalised reference); ``NotFound`` if absent.

        ``platforms`` lists the platforms whose manifest is in the content store.
        """
        record = self._lookup(ref)
        reader = _PlatformReader(self.content())
        return _to_image(record, reader.platforms(_descriptor_from_pb(record.target)))

    def remove(self, ref: str, *, sync: bool = False) -> None:
        """Delete the image record; ``sync`` waits for containerd's garbage collection."""
        record = self._lookup(ref)
        self.transport.call(
            self._images.Delete, images_pb2.DeleteImageRequest(name=record.name, sync=sync)
        )

    def import_archive(
        self, source: Path | str | IO[bytes], *, platform: PlatformArg = None
    ) -> builtins.list[Image]:
        """Import an OCI image-layout or docker-archive tarball (see :mod:`._archive`)."""
        from ._archive import import_archive

        return import_archive(self, source, platform=platform)

    def export_archive(
        self,
        refs: Sequence[str],
        dest: Path | str | IO[bytes],
        *,
        platform: PlatformArg = None,
    ) -> None:
        """Write the images ``refs`` into an OCI image-layout tarball."""
        from ._archive import export_archive

        export_archive(self, refs, dest, platform=platform)

    def unpack(self, ref: str, *, platform: PlatformArg = None) -> str:
        """Unpack an image already in the content store; returns its top chain id."""
        record = self._lookup(ref)
        target = _descriptor_from_pb(record.target)
        with self.lease() as lease_id:
            store = self.content(lease_id)
            chain = ""
            for item in read_manifests(store, target, platform, what=f"image {record.name}"):
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
        stub = snapshots_pb2_grpc.SnapshotsStub(self.transport.channel)
        with contextlib.suppress(Error):
            self.transport.call(
                stub.Remove,
                snapshots_pb2.RemoveSnapshotRequest(snapshotter=self.snapshotter, key=self.key),
            )
        self._delete_lease()


def _image_spec(
    spec: Mapping[str, Any] | None, config: Mapping[str, Any], container_id: str, namespace: str
) -> dict[str, Any]:
    from ..oci import generate_spec, spec_with_image

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
    store = images.content()
    manifest = read_manifests(store, target, None, what=f"image {record.name}")[0]
    chain = image_chain_id(manifest.config)
    new_spec = _image_spec(spec, manifest.config, container_id, transport.namespace)
    stub = snapshots_pb2_grpc.SnapshotsStub(transport.channel)
    if chain:
        try:
            transport.call(
                stub.Stat, snapshots_pb2.StatSnapshotRequest(snapshotter=snapshotter, key=chain)
            )
        except NotFound:
            raise FailedPrecondition(
                f"image {record.name} is not unpacked into the {snapshotter} snapshotter; "
                "pull it with unpack=True (or call images.unpack) first"
            ) from None
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
    except BaseException:
        prepared._delete_lease()
        raise
    return prepared


def container_rootfs(transport: Transport, snapshotter: str, key: str) -> list[mount_pb2.Mount]:
    """The mounts of a container's snapshot (empty when it has none)."""
    if not snapshotter or not key:
        return []
    stub = snapshots_pb2_grpc.SnapshotsStub(transport.channel)
    response = transport.call(
        stub.Mounts, snapshots_pb2.MountsRequest(snapshotter=snapshotter, key=key)
    )
    return list(response.mounts)
