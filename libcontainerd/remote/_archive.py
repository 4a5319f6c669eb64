"""Importing and exporting image tarballs through containerd's content store.

Two input formats are recognised by their contents: an OCI image layout (``oci-layout``,
``index.json``, ``blobs/<alg>/<hex>``) and a ``docker save`` archive (``manifest.json``
naming each image's config and uncompressed layer tars). Exports are always OCI image
layouts, with each image's name in the ``io.containerd.image.name`` annotation and its tag
in ``org.opencontainers.image.ref.name``, which is what the import reads back.

Everything is written under one lease and the image records are created before it is
deleted, so a malformed archive leaves no unreferenced content behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import attrs

from ..distribution import select_platforms
from ..errors import DigestMismatch, Error, InvalidArgument, NotFound
from ..types import descriptor as media
from ..types.descriptor import Descriptor
from ..types.image import Image
from ..types.reference import Reference
from ._content import RemoteContentStore
from ._unpack import unpack_image

if TYPE_CHECKING:
    from ._images import PlatformArg, RemoteImages

__all__ = ["IMAGE_NAME_ANNOTATION", "REF_NAME_ANNOTATION", "export_archive", "import_archive"]

IMAGE_NAME_ANNOTATION = "io.containerd.image.name"
"""Index-entry annotation holding an image's full name."""

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
"""Index-entry annotation holding an image's tag (or a full reference)."""

_CHUNK = 1024 * 1024
_MAX_JSON = 16 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


def _canonical(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


class _Archive:
    """Random access to a tarball's regular files by normalised name."""

    def __init__(self, tar: tarfile.TarFile, label: str) -> None:
        self._tar = tar
        self.label = label
        self.members: dict[str, tarfile.TarInfo] = {}
        for member in tar.getmembers():
            name = os.path.normpath(member.name.lstrip("/"))
            if member.isfile() and not name.startswith(".."):
                self.members[name] = member

    def member(self, name: str) -> tarfile.TarInfo:
        found = self.members.get(os.path.normpath(name.lstrip("/")))
        if found is None:
            raise NotFound(f"{self.label} has no file {name!r}; the archive is incomplete")
        return found

    def open(self, name: str) -> IO[bytes]:
        handle = self._tar.extractfile(self.member(name))
        if handle is None:  # pragma: no cover - member() only returns regular files
            raise NotFound(f"{self.label}: {name!r} is not a regular file")
        return handle

    def read_json(self, name: str) -> Any:
        member = self.member(name)
        if member.size > _MAX_JSON:
            raise InvalidArgument(f"{self.label}: {name} is too large to be image metadata")
        with self.open(name) as handle:
            data = handle.read()
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            raise InvalidArgument(f"{self.label}: {name} is not valid JSON") from None

    def blob_name(self, digest: str) -> str:
        algorithm, _, encoded = digest.partition(":")
        return f"blobs/{algorithm}/{encoded}"


@contextlib.contextmanager
def _open_tar(source: Path | str | IO[bytes]) -> Iterator[_Archive]:
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            raise NotFound(f"archive {str(path)!r} does not exist") from None
        except tarfile.TarError as error:
            raise InvalidArgument(f"{path} is not a tar archive: {error}") from None
        with tar:
            yield _Archive(tar, str(path))
        return
    if not hasattr(source, "read"):
        raise InvalidArgument(
            f"source must be a path or a binary file object, not {type(source).__name__}"
        )
    seekable = getattr(source, "seekable", lambda: False)()
    with contextlib.ExitStack() as stack:
        fileobj: IO[bytes] = source
        if not seekable:
            spool = stack.enter_context(tempfile.TemporaryFile())
            while chunk := source.read(_CHUNK):
                spool.write(chunk)
            spool.seek(0)
            fileobj = spool
        try:
            tar = stack.enter_context(tarfile.open(fileobj=fileobj, mode="r:*"))
        except tarfile.TarError as error:
            raise InvalidArgument(f"source is not a tar archive: {error}") from None
        yield _Archive(tar, "the archive")


def _copy_blob(
    archive: _Archive, name: str, store: RemoteContentStore, descriptor: Descriptor
) -> None:
    if store.exists(descriptor.digest):
        if media.is_index(descriptor.media_type) or media.is_manifest(descriptor.media_type):
            with archive.open(name) as handle:
                store.write_blob(descriptor, handle.read())
        return
    member = archive.member(name)
    if member.size != descriptor.size:
        raise DigestMismatch(
            f"{archive.label}: {name} is {member.size} bytes but its descriptor says "
            f"{descriptor.size}",
            expected=descriptor.digest,
        )
    writer = store.writer(descriptor)
    try:
        with archive.open(name) as handle:
            while chunk := handle.read(_CHUNK):
                writer.write(chunk)
        writer.commit()
    finally:
        writer.abort()


def _entry_name(annotations: Mapping[str, str]) -> str | None:
    """The image name an index entry carries: containerd's annotation, else the ref name.

    A ref name that is a full reference (with a repository) is normalised; a bare tag
    is used as it is, since the archive gives no repository to attach it to.
    """
    name = annotations.get(IMAGE_NAME_ANNOTATION)
    if name:
        return name
    ref_name = annotations.get(REF_NAME_ANNOTATION)
    if ref_name and "/" in ref_name:
        with contextlib.suppress(InvalidArgument):
            return str(Reference.parse(ref_name))
    return ref_name or None


def _import_oci(
    images: RemoteImages,
    archive: _Archive,
    store: RemoteContentStore,
    platform: PlatformArg,
    lease_id: str,
) -> list[Image]:
    from ._images import read_manifests

    index = archive.read_json("index.json")
    entries = index.get("manifests") if isinstance(index, Mapping) else None
    if not isinstance(entries, list):
        raise InvalidArgument(f"{archive.label}: index.json has no 'manifests' list")

    def load(descriptor: Descriptor, depth: int) -> None:
        if depth > 8:
            raise InvalidArgument(f"{archive.label}: indexes nest more than 8 deep")
        name = archive.blob_name(descriptor.digest)
        if media.is_index(descriptor.media_type):
            document = archive.read_json(name)
            children = [Descriptor.from_dict(c) for c in document.get("manifests") or []]
            nested = [c for c in children if media.is_index(c.media_type)]
            platform_entries = [c for c in children if not media.is_index(c.media_type)]
            wanted = list(nested)
            if platform_entries:
                wanted += select_platforms(platform_entries, platform)
            for child in wanted:
                load(child, depth + 1)
        elif media.is_manifest(descriptor.media_type):
            document = archive.read_json(name)
            config = Descriptor.from_dict(document["config"])
            _copy_blob(archive, archive.blob_name(config.digest), store, config)
            for layer in document.get("layers") or []:
                blob = Descriptor.from_dict(layer)
                _copy_blob(archive, archive.blob_name(blob.digest), store, blob)
        _copy_blob(archive, name, store, descriptor)

    result: list[Image] = []
    for entry in entries:
        target = Descriptor.from_dict(entry)
        try:
            load(target, 0)
        except NotFound as error:
            if "platform" in str(error):
                raise NotFound(f"{archive.label}: {error}") from None
            raise
        manifests = read_manifests(store, target, platform, what=f"{archive.label} entry")
        for item in manifests:
            unpack_image(store, item.manifest, item.config, snapshotter=images.snapshotter)
        name = _entry_name(target.annotations)
        # The naming annotations belong to the archive's index, not to the image.
        kept = {
            key: value
            for key, value in target.annotations.items()
            if key not in (IMAGE_NAME_ANNOTATION, REF_NAME_ANNOTATION)
        }
        record = images.put_record(
            name or target.digest, attrs.evolve(target, annotations=kept), lease_id=lease_id
        )
        from ._images import _to_image

        result.append(_to_image(record, [m.platform for m in manifests if m.platform]))
    return result


def _import_docker(
    images: RemoteImages,
    archive: _Archive,
    store: RemoteContentStore,
    platform: PlatformArg,
    lease_id: str,
) -> list[Image]:
    from ._images import _config_matches, _platform_label, _to_image

    entries = archive.read_json("manifest.json")
    if not isinstance(entries, list):
        raise InvalidArgument(f"{archive.label}: manifest.json is not a list of images")
    result: list[Image] = []
    skipped: list[str] = []
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("Config"), str):
            raise InvalidArgument(f"{archive.label}: a manifest.json entry has no Config")
        with archive.open(entry["Config"]) as handle:
            config_bytes = handle.read()
        config = json.loads(config_bytes)
        if platform is not None and not _config_matches(config, platform):
            skipped.append(f"{config.get('os')}/{config.get('architecture')}")
            continue
        config_desc = Descriptor(
            media_type=media.MEDIA_TYPE_DOCKER_CONFIG,
            digest="sha256:" + hashlib.sha256(config_bytes).hexdigest(),
            size=len(config_bytes),
        )
        store.write_blob(config_desc, config_bytes)
        layers: list[dict[str, Any]] = []
        for layer_name in entry.get("Layers") or []:
            hasher = hashlib.sha256()
            size = 0
            head = b""
            with archive.open(layer_name) as handle:
                while chunk := handle.read(_CHUNK):
                    if not head:
                        head = chunk[:2]
                    hasher.update(chunk)
                    size += len(chunk)
            media_type = (
                media.MEDIA_TYPE_DOCKER_LAYER_GZIP
                if head == _GZIP_MAGIC
                else media.MEDIA_TYPE_DOCKER_LAYER
            )
            layer = Descriptor(
                media_type=media_type, digest=f"sha256:{hasher.hexdigest()}", size=size
            )
            _copy_blob(archive, layer_name, store, layer)
            layers.append(layer.to_dict())
        manifest = {
            "schemaVersion": 2,
            "mediaType": media.MEDIA_TYPE_DOCKER_MANIFEST,
            "config": config_desc.to_dict(),
            "layers": layers,
        }
        manifest_bytes = _canonical(manifest)
        target = Descriptor(
            media_type=media.MEDIA_TYPE_DOCKER_MANIFEST,
            digest="sha256:" + hashlib.sha256(manifest_bytes).hexdigest(),
            size=len(manifest_bytes),
        )
        store.write_blob(target, manifest_bytes)
        unpack_image(store, manifest, config, snapshotter=images.snapshotter)
        names = [str(Reference.parse(tag)) for tag in entry.get("RepoTags") or []]
        found = []
        with contextlib.suppress(Error):
            from ._images import ImageManifest

            image_platform = ImageManifest(target, manifest, config).platform
            found = [image_platform] if image_platform is not None else []
        for name in names or [target.digest]:
            record = images.put_record(name, target, lease_id=lease_id)
            result.append(_to_image(record, found))
    if not result and skipped:
        raise NotFound(
            f"{archive.label} has no image for platform {_platform_label(platform)}; it holds "
            f"{', '.join(sorted(set(skipped)))}"
        )
    return result


def import_archive(
    images: RemoteImages, source: Path | str | IO[bytes], *, platform: PlatformArg = None
) -> list[Image]:
    """Import every image of an OCI layout or docker-archive tarball; returns the records."""
    with _open_tar(source) as archive, images.lease() as lease_id:
        store = images.content(lease_id)
        if "index.json" in archive.members:
            return _import_oci(images, archive, store, platform, lease_id)
        if "manifest.json" in archive.members:
            return _import_docker(images, archive, store, platform, lease_id)
        raise InvalidArgument(
            f"{archive.label} is neither an OCI image layout (index.json) nor a docker "
            "archive (manifest.json)"
        )


def _graph(
    store: RemoteContentStore, descriptor: Descriptor, platform: PlatformArg, what: str
) -> Iterator[Descriptor]:
    yield descriptor
    if media.is_index(descriptor.media_type):
        document = store.read_json(descriptor.digest)
        children = [Descriptor.from_dict(c) for c in document.get("manifests") or []]
        present = [c for c in children if store.exists(c.digest)]
        nested = [c for c in present if media.is_index(c.media_type)]
        entries = [c for c in present if not media.is_index(c.media_type)]
        if platform is not None and entries:
            try:
                entries = select_platforms(entries, platform)
            except NotFound as error:
                raise NotFound(f"{what}: {error}") from None
        if not nested and not entries:
            raise NotFound(f"{what} has none of its manifests stored locally; pull it first")
        for child in nested + entries:
            yield from _graph(store, child, platform, what)
    elif media.is_manifest(descriptor.media_type):
        document = store.read_json(descriptor.digest)
        yield Descriptor.from_dict(document["config"])
        for layer in document.get("layers") or []:
            yield Descriptor.from_dict(layer)


def _write_tar(
    out: IO[bytes], store: RemoteContentStore, index: bytes, blobs: list[Descriptor]
) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:

        def add(
            name: str, data: bytes | None, handle: IO[bytes] | None = None, size: int = 0
        ) -> None:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.mode = 0o644
            if data is None and handle is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
                return
            info.size = len(data) if data is not None else size
            tar.addfile(info, io.BytesIO(data) if data is not None else handle)

        add("oci-layout", _canonical({"imageLayoutVersion": "1.0.0"}))
        add("index.json", index)
        add("blobs", None)
        add("blobs/sha256", None)
        for blob in blobs:
            algorithm, _, encoded = blob.digest.partition(":")
            with store.open_blob(blob.digest) as handle:
                add(f"blobs/{algorithm}/{encoded}", None, handle, blob.size)


def export_archive(
    images: RemoteImages,
    refs: Sequence[str],
    dest: Path | str | IO[bytes],
    *,
    platform: PlatformArg = None,
) -> None:
    """Write the images ``refs`` (and the content they need) as an OCI layout tarball."""
    if isinstance(refs, str):
        refs = [refs]
    if not refs:
        raise InvalidArgument("export_archive needs at least one image reference")
    store = images.content()
    entries: list[dict[str, Any]] = []
    blobs: dict[str, Descriptor] = {}
    for ref in refs:
        record = images._lookup(ref)
        from ._images import _descriptor_from_pb

        target = _descriptor_from_pb(record.target)
        for blob in _graph(store, target, platform, f"image {record.name}"):
            if blob.digest not in blobs:
                if not store.exists(blob.digest):
                    raise NotFound(
                        f"image {record.name} lacks blob {blob.digest} locally; pull it again"
                    )
                blobs[blob.digest] = blob
        entry = target.to_dict()
        annotations = {IMAGE_NAME_ANNOTATION: record.name}
        with contextlib.suppress(InvalidArgument):
            tag = Reference.parse(record.name).tag
            if tag:
                annotations[REF_NAME_ANNOTATION] = tag
        entry["annotations"] = {**entry.get("annotations", {}), **annotations}
        entries.append(entry)
    index = _canonical(
        {"schemaVersion": 2, "mediaType": media.MEDIA_TYPE_OCI_INDEX, "manifests": entries}
    )
    ordered = sorted(blobs.values(), key=lambda d: d.digest)
    if isinstance(dest, str | Path):
        path = Path(dest)
        temp = path.with_name(f".{path.name}.partial")
        try:
            with open(temp, "wb") as out:
                _write_tar(out, store, index, ordered)
            os.replace(temp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        return
    if not hasattr(dest, "write"):
        raise InvalidArgument(
            f"dest must be a path or a binary file object, not {type(dest).__name__}"
        )
    _write_tar(dest, store, index, ordered)
