"""The image archive codec, reading side: OCI image layouts and ``docker save`` tarballs.

Both formats are recognised by their contents: an OCI image layout (``oci-layout``,
``index.json``, ``blobs/<alg>/<hex>``) and a docker archive (``manifest.json`` naming
each image's config and layer tars). Member names are looked up, never extracted, so
hostile names cannot write anywhere. Blobs go into any
:class:`~libcontainerd.content.protocol.BlobStore` (the local store, containerd's
content service) through its writers, which check every digest; on failure the blobs
written here are deleted again. What to record (names, targets) is returned to the
backend, which keeps its own image records.

Naming, the same on every backend (like ``ctr images import --base-name``): the
``io.containerd.image.name`` annotation of an index entry; else its
``org.opencontainers.image.ref.name`` when that is a full reference; else
``<base_name>:<ref name>`` when a base name is given; else the entry's digest.
Docker archives use their ``RepoTags`` (else the manifest digest).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import attrs

from libcontainerd.content.protocol import BlobStore
from libcontainerd.errors import DigestMismatch, InvalidArgument, NotFound
from libcontainerd.types import descriptor as media
from libcontainerd.types.descriptor import Descriptor, index_manifests, select_platforms
from libcontainerd.types.digest import split_digest
from libcontainerd.types.platform import Platform, PlatformRequest, PlatformSelector
from libcontainerd.types.reference import Reference

__all__ = [
    "IMAGE_NAME_ANNOTATION",
    "MAX_INDEX_DEPTH",
    "REF_NAME_ANNOTATION",
    "ArchiveImage",
    "ArchiveReader",
    "blob_member",
    "canonical_json",
    "config_platform",
    "image_name",
    "import_images",
    "open_archive",
]

IMAGE_NAME_ANNOTATION = "io.containerd.image.name"
"""Index-entry annotation holding an image's full name."""

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
"""Index-entry annotation holding an image's tag (or a full reference)."""

MAX_INDEX_DEPTH = 8
"""How deep indexes may nest inside an archive."""

_MAX_JSON = 4 * 1024 * 1024
_CHUNK = 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


def canonical_json(value: Any) -> bytes:
    """``value`` as compact JSON with sorted keys (stable bytes, so a stable digest)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def blob_member(digest: str) -> str:
    """The archive member name of blob ``digest`` in an OCI layout (``blobs/<alg>/<hex>``)."""
    algorithm, encoded = split_digest(digest)
    return f"blobs/{algorithm}/{encoded}"


def _member_name(name: str) -> str | None:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or name.startswith("/") or ".." in parts:
        return None
    return "/".join(parts)


class ArchiveReader:
    """The regular-file members of a tar, by normalised name (never extracted to disk)."""

    def __init__(self, tar: tarfile.TarFile, label: str) -> None:
        self._tar = tar
        self.label = label
        self.members: dict[str, tarfile.TarInfo] = {}
        try:
            for member in tar.getmembers():
                name = _member_name(member.name)
                if name is not None and member.isfile():
                    self.members[name] = member
        except tarfile.TarError as error:
            raise InvalidArgument(f"{label} is not a readable tar ({error})") from None

    def has(self, name: str) -> bool:
        """Whether the archive holds the regular file ``name``."""
        return name in self.members

    def size(self, name: str) -> int:
        """The size of member ``name``."""
        return self._member(name).size

    def _member(self, name: str) -> tarfile.TarInfo:
        member = self.members.get(_member_name(name) or "")
        if member is None:
            raise InvalidArgument(f"{self.label} has no file {name!r}; the archive is incomplete")
        return member

    def open(self, name: str) -> IO[bytes]:
        """Open member ``name`` for reading; :class:`InvalidArgument` when it is missing."""
        handle = self._tar.extractfile(self._member(name))
        if handle is None:  # pragma: no cover - only regular files are listed
            raise InvalidArgument(f"{self.label}: {name!r} is not a regular file")
        return handle

    def read_json(self, name: str) -> Any:
        """Parse member ``name`` as JSON (at most a few MiB, as image metadata is)."""
        if self._member(name).size > _MAX_JSON:
            raise InvalidArgument(f"{self.label}: {name} is too large to be image metadata")
        with self.open(name) as handle:
            data = handle.read()
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            raise InvalidArgument(f"{self.label}: {name} is not valid JSON") from None


@contextlib.contextmanager
def open_archive(
    source: Path | str | IO[bytes], *, spool_dir: Path | None = None
) -> Iterator[ArchiveReader]:
    """Open a tarball (plain or compressed) from a path or a binary file object.

    A file object that cannot seek is first copied to a temporary file in ``spool_dir``.
    A missing path is :class:`NotFound`; anything that is not a tar, :class:`InvalidArgument`.
    """
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by the with below
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(f"archive {str(path)!r} does not exist") from None
        except tarfile.TarError as error:
            raise InvalidArgument(f"{path} is not a tar archive ({error})") from None
        with tar:
            yield ArchiveReader(tar, str(path))
        return
    if not hasattr(source, "read"):
        raise InvalidArgument(
            f"source must be a path or a binary file object, not {type(source).__name__}"
        )
    seekable = getattr(source, "seekable", lambda: False)()
    with contextlib.ExitStack() as stack:
        fileobj: IO[bytes] = source
        if not seekable:
            spool = stack.enter_context(tempfile.TemporaryFile(dir=spool_dir))
            while chunk := source.read(_CHUNK):
                spool.write(chunk)
            spool.seek(0)
            fileobj = spool
        try:
            tar = stack.enter_context(tarfile.open(fileobj=fileobj, mode="r:*"))
        except tarfile.TarError as error:
            raise InvalidArgument(f"the archive is not a tar archive ({error})") from None
        yield ArchiveReader(tar, "the archive")


def image_name(annotations: Mapping[str, str], base_name: str | None = None) -> str | None:
    """The name an index entry gives its image (see the module documentation), or None."""
    name = annotations.get(IMAGE_NAME_ANNOTATION)
    if name:
        return name
    ref_name = annotations.get(REF_NAME_ANNOTATION, "")
    if "/" in ref_name:  # a full reference; a tag alone ("1.0", "latest") has no "/"
        with contextlib.suppress(InvalidArgument):
            return str(Reference.parse(ref_name))
    if ref_name and base_name:
        return str(Reference.parse(f"{base_name}:{ref_name}"))
    return None


def config_platform(config: Any) -> Platform:
    """The platform an image config declares (``linux``/``unknown`` where it is silent)."""
    if not isinstance(config, Mapping):
        raise InvalidArgument("an image config is not a JSON object")
    return Platform.of(
        str(config.get("os") or "linux"),
        str(config.get("architecture") or "unknown"),
        str(config.get("variant") or ""),
    )


@attrs.frozen
class ArchiveImage:
    """One image an import stored: the name to record, its root and its platform manifests."""

    name: str
    target: Descriptor
    manifests: tuple[Descriptor, ...]


class _Importer:
    def __init__(self, archive: ArchiveReader, store: BlobStore, selector: PlatformSelector):
        self.archive = archive
        self.store = store
        self.selector = selector
        self.needed: dict[str, Descriptor] = {}
        self.written: list[str] = []

    def walk(self, desc: Descriptor, depth: int = 0) -> list[Descriptor]:
        """Mark ``desc``'s graph for import; returns the platform manifests chosen."""
        if depth > MAX_INDEX_DEPTH:
            raise InvalidArgument(f"{self.archive.label} nests image indexes too deeply")
        name = blob_member(desc.digest)
        if not self.archive.has(name):
            raise InvalidArgument(f"{self.archive.label} lacks blob {desc.digest}; incomplete")
        doc = self.archive.read_json(name)
        if not isinstance(doc, dict):
            raise InvalidArgument(f"blob {desc.digest} in {self.archive.label} is not an object")
        self.needed[desc.digest] = desc
        if media.is_index(desc.media_type):
            children = index_manifests(doc)
            present = [c for c in children if self.archive.has(blob_member(c.digest))]
            nested = [c for c in present if media.is_index(c.media_type)]
            flat = [c for c in present if not media.is_index(c.media_type)]
            if flat:
                flat = select_platforms(flat, self.selector)
            chosen: list[Descriptor] = []
            for child in nested + flat:
                chosen += self.walk(child, depth + 1)
            return chosen
        if not media.is_manifest(desc.media_type):
            raise InvalidArgument(f"{desc.digest} is a {desc.media_type}, not an image")
        if not isinstance(doc.get("config"), Mapping):
            raise InvalidArgument(f"manifest {desc.digest} in {self.archive.label} has no config")
        config = Descriptor.from_dict(doc["config"])
        layers = [Descriptor.from_dict(layer) for layer in doc.get("layers") or []]
        for child in [config, *layers]:
            if not self.archive.has(blob_member(child.digest)):
                raise InvalidArgument(
                    f"{self.archive.label} lacks blob {child.digest}; the archive is incomplete"
                )
            self.needed[child.digest] = child
        found = desc.platform or config_platform(self.archive.read_json(blob_member(config.digest)))
        if depth == 0 and not self.selector.match(found):
            raise NotFound(f"image {desc.digest} is for {found.format()}")
        return [attrs.evolve(desc, platform=found)]

    def store_member(self, name: str, desc: Descriptor) -> None:
        """Copy member ``name`` into the store as ``desc`` (size and digest checked)."""
        graph = media.is_index(desc.media_type) or media.is_manifest(desc.media_type)
        existed = self.store.exists(desc.digest)
        # Manifests and indexes go through a writer even when stored: that is where a
        # store attaches what keeps their children alive (containerd's gc labels).
        if existed and not graph:
            return
        if self.archive.size(name) != desc.size:
            raise DigestMismatch(
                f"{self.archive.label}: {name} is {self.archive.size(name)} bytes but its "
                f"descriptor says {desc.size}",
                expected=desc.digest,
            )
        with self.archive.open(name) as handle:
            self._write(desc, iter(lambda: handle.read(_CHUNK), b""), existed)

    def store_bytes(self, media_type: str, data: bytes) -> Descriptor:
        """Store ``data`` (a config or a manifest made here); returns its descriptor."""
        desc = Descriptor(
            media_type=media_type,
            digest="sha256:" + hashlib.sha256(data).hexdigest(),
            size=len(data),
        )
        self._write(desc, [data], self.store.exists(desc.digest))
        return desc

    def _write(self, desc: Descriptor, chunks: Iterable[bytes], existed: bool) -> None:
        writer = self.store.writer(desc)
        try:
            for chunk in chunks:
                writer.write(chunk)
            writer.commit()  # the store checks size and digest here
        finally:
            writer.abort()
        if not existed:
            self.written.append(desc.digest)

    def store_layer(self, name: str) -> Descriptor:
        """Store the layer tar ``name`` of a docker archive; returns its descriptor."""
        hasher = hashlib.sha256()
        size = 0
        with self.archive.open(name) as handle:
            head = handle.read(2)
            hasher.update(head)
            size += len(head)
            while chunk := handle.read(_CHUNK):
                hasher.update(chunk)
                size += len(chunk)
        gzipped = head == _GZIP_MAGIC
        desc = Descriptor(
            media_type=media.MEDIA_TYPE_DOCKER_LAYER_GZIP
            if gzipped
            else media.MEDIA_TYPE_DOCKER_LAYER,
            digest=f"sha256:{hasher.hexdigest()}",
            size=size,
        )
        self.store_member(name, desc)
        return desc

    def rollback(self) -> None:
        for digest in reversed(self.written):
            with contextlib.suppress(NotFound):
                self.store.delete(digest)


def _import_oci(importer: _Importer, base_name: str | None) -> list[ArchiveImage]:
    index = importer.archive.read_json("index.json")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise InvalidArgument(f"index.json in {importer.archive.label} has no 'manifests' list")
    planned: list[tuple[Descriptor, list[Descriptor]]] = []
    for item in index["manifests"]:
        desc = Descriptor.from_dict(item)
        try:
            planned.append((desc, importer.walk(desc)))
        except NotFound:
            continue  # this image lacks the platform; another entry may have it
    for digest, desc in importer.needed.items():
        importer.store_member(blob_member(digest), desc)
    result: list[ArchiveImage] = []
    for desc, manifests in planned:
        # The naming annotations belong to the archive's index, not to the image.
        kept = {
            key: value
            for key, value in desc.annotations.items()
            if key not in (IMAGE_NAME_ANNOTATION, REF_NAME_ANNOTATION)
        }
        target = attrs.evolve(desc, annotations=kept, platform=None)
        name = image_name(desc.annotations, base_name) or desc.digest
        result.append(ArchiveImage(name, target, tuple(manifests)))
    return result


def _import_docker(importer: _Importer) -> list[ArchiveImage]:
    archive = importer.archive
    listing = archive.read_json("manifest.json")
    if not isinstance(listing, list):
        raise InvalidArgument(f"manifest.json in {archive.label} is not a JSON list")
    plans: list[tuple[list[str], str, list[str], Platform]] = []
    for item in listing:
        if not isinstance(item, dict) or not isinstance(item.get("Config"), str):
            raise InvalidArgument(f"a manifest.json entry in {archive.label} has no 'Config'")
        layers = item.get("Layers") or []
        tags = item.get("RepoTags") or []
        if not isinstance(layers, list) or not isinstance(tags, list):
            raise InvalidArgument("manifest.json 'Layers' and 'RepoTags' must be lists")
        if not all(isinstance(x, str) for x in [*layers, *tags]):
            raise InvalidArgument("manifest.json 'Layers' and 'RepoTags' must list strings")
        config_name = _member_name(item["Config"]) or ""
        layer_names = [_member_name(x) or "" for x in layers]
        for name in [config_name, *layer_names]:
            if not archive.has(name):
                raise InvalidArgument(f"{archive.label} lacks {name!r}; the archive is incomplete")
        found = config_platform(archive.read_json(config_name))
        if importer.selector.match(found):
            plans.append((tags, config_name, layer_names, found))
    result: list[ArchiveImage] = []
    for tags, config_name, layer_names, found in plans:
        with archive.open(config_name) as handle:
            config = importer.store_bytes(media.MEDIA_TYPE_DOCKER_CONFIG, handle.read())
        layer_descs = [importer.store_layer(name).to_dict() for name in layer_names]
        manifest = {
            "schemaVersion": 2,
            "mediaType": media.MEDIA_TYPE_DOCKER_MANIFEST,
            "config": config.to_dict(),
            "layers": layer_descs,
        }
        target = importer.store_bytes(media.MEDIA_TYPE_DOCKER_MANIFEST, canonical_json(manifest))
        names = [str(Reference.parse(tag)) for tag in tags] or [target.digest]
        platformed = attrs.evolve(target, platform=found)
        result.extend(ArchiveImage(name, target, (platformed,)) for name in names)
    return result


def import_images(
    archive: ArchiveReader,
    store: BlobStore,
    platform: PlatformRequest | PlatformSelector | None = None,
    *,
    base_name: str | None = None,
) -> list[ArchiveImage]:
    """Copy the images of ``archive`` into ``store``; returns what to record.

    ``platform`` (default: every platform) limits what is imported; an archive with
    nothing for it is :class:`NotFound`. On any failure the blobs written here are
    deleted again and nothing is returned.
    """
    selector = PlatformSelector.of(platform, none="all")
    if base_name is not None:
        Reference.parse(f"{base_name}:latest")  # refuse a bad base name before any write
    importer = _Importer(archive, store, selector)
    try:
        if archive.has("index.json"):
            found = _import_oci(importer, base_name)
        elif archive.has("manifest.json"):
            found = _import_docker(importer)
        else:
            raise InvalidArgument(
                f"{archive.label} is neither an OCI image layout (index.json) nor a docker "
                "archive (manifest.json)"
            )
    except BaseException:
        importer.rollback()
        raise
    if not found:
        raise NotFound(f"{archive.label} holds no image for platform {selector.label}")
    return found
