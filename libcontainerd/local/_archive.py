"""Reading and writing image archives for the local image store.

Two formats are read: the OCI image layout as a tarball (``oci-layout``, ``index.json``,
``blobs/<alg>/<hex>``) and ``docker save`` archives (``manifest.json`` naming a config and
layer tars). Only the OCI layout is written. Archive member names are looked up, never
extracted to disk, so hostile names cannot write anywhere; every blob is verified against
its digest as it enters the content store.
"""

from __future__ import annotations

import contextlib
import io
import json
import secrets
import tarfile
from collections.abc import Iterator, Sequence
from typing import IO, Any

from libcontainerd.content import ContentStore
from libcontainerd.distribution import select_platforms
from libcontainerd.errors import InvalidArgument, NotFound
from libcontainerd.types import descriptor as media
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.digest import split_digest
from libcontainerd.types.image import Image
from libcontainerd.types.platform import Matcher, Platform
from libcontainerd.types.reference import Reference

__all__ = ["IMAGE_NAME_ANNOTATION", "REF_NAME_ANNOTATION", "read_archive", "write_layout_tar"]

IMAGE_NAME_ANNOTATION = "io.containerd.image.name"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
_MAX_JSON = 4 * 1024 * 1024
_CHUNK = 1024 * 1024
_MAX_DEPTH = 8

PlatformRequest = Platform | str | Matcher | Sequence[Platform | str] | None
ArchiveEntry = tuple[str, Descriptor, list[Descriptor]]
"""(image name, root descriptor, the platform manifests imported under it)."""


def _member_name(name: str) -> str | None:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or name.startswith("/") or ".." in parts:
        return None
    return "/".join(parts)


class _Archive:
    """Regular-file members of a tar by normalised name."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.members: dict[str, tarfile.TarInfo] = {}
        try:
            for member in tar.getmembers():
                name = _member_name(member.name)
                if name is not None and member.isfile():
                    self.members[name] = member
        except tarfile.TarError as exc:
            raise InvalidArgument(f"the archive is not a readable tar ({exc})") from None

    def has(self, name: str) -> bool:
        return name in self.members

    def open(self, name: str) -> IO[bytes]:
        member = self.members.get(name)
        handle = self.tar.extractfile(member) if member is not None else None
        if handle is None:
            raise InvalidArgument(f"the archive has no file {name!r}; it is incomplete")
        return handle

    def json(self, name: str) -> Any:
        member = self.members.get(name)
        if member is not None and member.size > _MAX_JSON:
            raise InvalidArgument(f"{name} in the archive is too large for a JSON document")
        with self.open(name) as f:
            try:
                return json.loads(f.read())
            except ValueError as exc:
                raise InvalidArgument(f"{name} in the archive is not JSON ({exc})") from None


def _blob_name(digest: str) -> str:
    algorithm, encoded = split_digest(digest)
    return f"blobs/{algorithm}/{encoded}"


def _image_name(desc: Descriptor, base_name: str | None) -> str:
    annotations = desc.annotations
    if annotations.get(IMAGE_NAME_ANNOTATION):
        return annotations[IMAGE_NAME_ANNOTATION]
    ref_name = annotations.get(REF_NAME_ANNOTATION, "")
    if ref_name and ("/" in ref_name or "." in ref_name.split(":", 1)[0]):
        with contextlib.suppress(InvalidArgument):
            return str(Reference.parse(ref_name))
    if ref_name and base_name:
        return str(Reference.parse(f"{base_name}:{ref_name}"))
    return desc.digest


def _config_platform(config: Any) -> Platform:
    if not isinstance(config, dict):
        raise InvalidArgument("an image config in the archive is not a JSON object")
    return Platform.of(
        str(config.get("os") or "linux"),
        str(config.get("architecture") or "unknown"),
        str(config.get("variant") or ""),
    )


def _with_platform(desc: Descriptor, platform: Platform) -> Descriptor:
    return Descriptor(
        media_type=desc.media_type,
        digest=desc.digest,
        size=desc.size,
        annotations=desc.annotations,
        platform=platform,
    )


class _Importer:
    def __init__(self, archive: _Archive, content: ContentStore) -> None:
        self.archive = archive
        self.content = content
        self.needed: dict[str, Descriptor] = {}
        self.written: list[str] = []

    def walk(self, desc: Descriptor, platform: PlatformRequest, depth: int = 0) -> list[Descriptor]:
        """Mark ``desc``'s graph for import; returns the platform manifests chosen."""
        if depth > _MAX_DEPTH:
            raise InvalidArgument("the archive nests image indexes too deeply")
        name = _blob_name(desc.digest)
        if not self.archive.has(name):
            raise InvalidArgument(f"the archive lacks blob {desc.digest}; it is incomplete")
        doc = self.archive.json(name)
        if not isinstance(doc, dict):
            raise InvalidArgument(f"blob {desc.digest} in the archive is not a JSON object")
        self.needed[desc.digest] = desc
        if media.is_index(desc.media_type):
            children = [Descriptor.from_dict(m) for m in doc.get("manifests") or []]
            present = [c for c in children if self.archive.has(_blob_name(c.digest))]
            nested = [c for c in present if media.is_index(c.media_type)]
            flat = [c for c in present if not media.is_index(c.media_type)]
            if platform is not None and flat:
                flat = select_platforms(flat, platform)
            chosen: list[Descriptor] = []
            for child in nested + flat:
                chosen += self.walk(child, platform, depth + 1)
            return chosen
        if not media.is_manifest(desc.media_type):
            raise InvalidArgument(f"{desc.digest} is a {desc.media_type}, not an image")
        config = Descriptor.from_dict(doc["config"])
        layers = [Descriptor.from_dict(layer) for layer in doc.get("layers") or []]
        for child in [config, *layers]:
            if not self.archive.has(_blob_name(child.digest)):
                raise InvalidArgument(f"the archive lacks blob {child.digest}; it is incomplete")
            self.needed[child.digest] = child
        found = desc.platform or _config_platform(self.archive.json(_blob_name(config.digest)))
        if platform is not None and depth == 0:
            select_platforms([_with_platform(desc, found)], platform)
        return [_with_platform(desc, found)]

    def store(self, data: IO[bytes], expected: str | None, size: int | None) -> str:
        ref = f"import-{secrets.token_hex(8)}"
        with self.content.writer(ref, expected, size) as writer:
            while chunk := data.read(_CHUNK):
                writer.write(chunk)
            writer.commit()
            digest = writer.digest
        self.written.append(digest)
        return digest

    def copy_needed(self) -> None:
        for digest, desc in self.needed.items():
            if self.content.exists(digest):
                continue
            with self.archive.open(_blob_name(digest)) as f:
                self.store(f, digest, desc.size)

    def rollback(self) -> None:
        for digest in self.written:
            with contextlib.suppress(NotFound):
                self.content.delete(digest)


def _read_oci(
    importer: _Importer, platform: PlatformRequest, base_name: str | None
) -> list[ArchiveEntry]:
    index = importer.archive.json("index.json")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise InvalidArgument("index.json in the archive has no 'manifests' list")
    entries: list[ArchiveEntry] = []
    for item in index["manifests"]:
        desc = Descriptor.from_dict(item)
        try:
            manifests = importer.walk(desc, platform)
        except NotFound:
            continue  # this image lacks the platform; another entry may have it
        target = Descriptor(media_type=desc.media_type, digest=desc.digest, size=desc.size)
        entries.append((_image_name(desc, base_name), target, manifests))
    return entries


def _read_docker(importer: _Importer, platform: PlatformRequest) -> list[ArchiveEntry]:
    archive = importer.archive
    listing = archive.json("manifest.json")
    if not isinstance(listing, list):
        raise InvalidArgument("manifest.json in the docker archive is not a JSON list")
    plans: list[tuple[list[str], str, list[str], Platform]] = []
    for item in listing:
        if not isinstance(item, dict) or not isinstance(item.get("Config"), str):
            raise InvalidArgument("a manifest.json entry has no 'Config' file name")
        layers = item.get("Layers") or []
        tags = item.get("RepoTags") or []
        if not all(isinstance(x, str) for x in [*layers, *tags]):
            raise InvalidArgument("manifest.json 'Layers' and 'RepoTags' must list strings")
        config_name = _member_name(item["Config"]) or ""
        layer_names = [_member_name(x) or "" for x in layers]
        for name in [config_name, *layer_names]:
            if not archive.has(name):
                raise InvalidArgument(f"the docker archive lacks {name!r}; it is incomplete")
        found = _config_platform(archive.json(config_name))
        if platform is not None:
            probe = Descriptor(
                media_type=media.MEDIA_TYPE_DOCKER_MANIFEST,
                digest="sha256:" + "0" * 64,
                size=0,
                platform=found,
            )
            try:
                select_platforms([probe], platform)
            except NotFound:
                continue
        plans.append(([str(t) for t in tags], config_name, layer_names, found))
    entries: list[ArchiveEntry] = []
    for tags, config_name, layer_names, found in plans:
        with archive.open(config_name) as f:
            config_digest = importer.store(f, None, None)
        layer_descs = []
        for name in layer_names:
            with archive.open(name) as f:
                gzipped = f.read(2) == b"\x1f\x8b"
            with archive.open(name) as f:
                digest = importer.store(f, None, None)
            layer_descs.append(
                {
                    "mediaType": media.MEDIA_TYPE_DOCKER_LAYER_GZIP
                    if gzipped
                    else media.MEDIA_TYPE_DOCKER_LAYER,
                    "digest": digest,
                    "size": archive.members[name].size,
                }
            )
        manifest = {
            "schemaVersion": 2,
            "mediaType": media.MEDIA_TYPE_DOCKER_MANIFEST,
            "config": {
                "mediaType": media.MEDIA_TYPE_DOCKER_CONFIG,
                "digest": config_digest,
                "size": archive.members[config_name].size,
            },
            "layers": layer_descs,
        }
        data = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        digest = importer.store(io.BytesIO(data), None, None)
        target = Descriptor(
            media_type=media.MEDIA_TYPE_DOCKER_MANIFEST, digest=digest, size=len(data)
        )
        names = [str(Reference.parse(t)) for t in tags] or [digest]
        for name in names:
            entries.append((name, target, [_with_platform(target, found)]))
    return entries


def read_archive(
    tar: tarfile.TarFile,
    content: ContentStore,
    platform: PlatformRequest,
    base_name: str | None,
) -> list[ArchiveEntry]:
    """Copy the images of ``tar`` into ``content``; returns what to record.

    On any failure the blobs written here are deleted again and nothing is returned.
    """
    archive = _Archive(tar)
    importer = _Importer(archive, content)
    try:
        if archive.has("index.json"):
            entries = _read_oci(importer, platform, base_name)
            if entries:
                importer.copy_needed()
        elif archive.has("manifest.json"):
            entries = _read_docker(importer, platform)
        else:
            raise InvalidArgument(
                "the archive is neither an OCI image layout (index.json) nor a docker "
                "archive (manifest.json)"
            )
    except BaseException:
        importer.rollback()
        raise
    if not entries:
        wanted = "any platform" if platform is None else f"platform {platform!r}"
        raise NotFound(f"the archive holds no image for {wanted}")
    return entries


def _graph(content: ContentStore, desc: Descriptor, depth: int = 0) -> Iterator[Descriptor]:
    if not content.exists(desc.digest) or depth > _MAX_DEPTH:
        return
    yield desc
    if media.is_index(desc.media_type) or media.is_manifest(desc.media_type):
        doc = json.loads(content.read(desc.digest))
        if media.is_index(desc.media_type):
            children = [Descriptor.from_dict(m) for m in doc.get("manifests") or []]
        else:
            children = [Descriptor.from_dict(doc["config"])]
            children += [Descriptor.from_dict(x) for x in doc.get("layers") or []]
        for child in children:
            if media.is_manifest(child.media_type) or media.is_index(child.media_type):
                yield from _graph(content, child, depth + 1)
            elif content.exists(child.digest):
                yield child
            else:
                raise NotFound(
                    f"blob {child.digest} of {desc.digest} is not in the content store; "
                    "pull the image again"
                )


def _tar_add(tar: tarfile.TarFile, name: str, size: int, data: IO[bytes] | None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.mode = 0o644 if data is not None else 0o755
    if data is None:
        info.type = tarfile.DIRTYPE
    else:
        info.size = size
    tar.addfile(info, data)


def write_layout_tar(
    out: IO[bytes], content: ContentStore, entries: Sequence[tuple[Image, Descriptor]]
) -> None:
    """Write ``entries`` (image, descriptor to export) as an OCI image-layout tar to ``out``."""
    blobs: dict[str, int] = {}
    index_entries: list[dict[str, Any]] = []
    for image, desc in entries:
        for item in _graph(content, desc):
            blobs[item.digest] = content.path(item.digest).stat().st_size
        annotations = {IMAGE_NAME_ANNOTATION: image.name}
        with contextlib.suppress(InvalidArgument):
            tag = Reference.parse(image.name).tag
            if tag:
                annotations[REF_NAME_ANNOTATION] = tag
        record = Descriptor(
            media_type=desc.media_type,
            digest=desc.digest,
            size=desc.size,
            annotations=annotations,
            platform=desc.platform,
        )
        index_entries.append(record.to_dict())
    index = {"schemaVersion": 2, "mediaType": media.MEDIA_TYPE_OCI_INDEX}
    index_bytes = json.dumps({**index, "manifests": index_entries}, sort_keys=True).encode()
    layout = json.dumps({"imageLayoutVersion": "1.0.0"}).encode()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _tar_add(tar, "oci-layout", len(layout), io.BytesIO(layout))
        _tar_add(tar, "index.json", len(index_bytes), io.BytesIO(index_bytes))
        _tar_add(tar, "blobs", 0, None)
        algorithms = sorted({split_digest(d)[0] for d in blobs})
        for algorithm in algorithms:
            _tar_add(tar, f"blobs/{algorithm}", 0, None)
        for digest in sorted(blobs):
            with content.open(digest) as f:
                _tar_add(tar, _blob_name(digest), blobs[digest], f)
