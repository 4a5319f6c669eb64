"""The image archive codec, writing side: OCI image-layout and ``docker save`` tarballs.

Blobs come from any :class:`~libcontainerd.content.protocol.BlobSource` (a backend's
content store, or an OCI layout directory). The output is deterministic: members
sorted, mtimes and owners fixed, so the same images give byte-identical archives.
An OCI layout export names each image in its index entry the way the reading side
(:mod:`libcontainerd.content.archive`) reads it back.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from libcontainerd.content.archive import (
    IMAGE_NAME_ANNOTATION,
    MAX_INDEX_DEPTH,
    REF_NAME_ANNOTATION,
    blob_member,
    canonical_json,
)
from libcontainerd.content.protocol import BlobSource
from libcontainerd.errors import InvalidArgument, NotFound
from libcontainerd.types import descriptor as media
from libcontainerd.types.descriptor import Descriptor, index_manifests, select_platforms
from libcontainerd.types.digest import split_digest
from libcontainerd.types.platform import PlatformRequest, PlatformSelector
from libcontainerd.types.reference import Reference

__all__ = [
    "OCI_LAYOUT",
    "named_entry",
    "oci_index_json",
    "write_archive_file",
    "write_docker_archive",
    "write_oci_archive",
]

OCI_LAYOUT = canonical_json({"imageLayoutVersion": "1.0.0"})
"""The bytes of an OCI layout's ``oci-layout`` file."""

_MAX_JSON = 16 * 1024 * 1024


def named_entry(name: str, descriptor: Descriptor) -> dict[str, Any]:
    """The index entry exporting ``descriptor`` as the image ``name`` (name and tag noted)."""
    entry = descriptor.to_dict()
    annotations = {IMAGE_NAME_ANNOTATION: name}
    with contextlib.suppress(InvalidArgument):
        tag = Reference.parse(name).tag
        if tag:
            annotations[REF_NAME_ANNOTATION] = tag
    entry["annotations"] = {**entry.get("annotations", {}), **annotations}
    return entry


def oci_index_json(manifests: Sequence[Mapping[str, Any]]) -> bytes:
    """The bytes of an OCI image index listing ``manifests`` (index entries)."""
    return canonical_json(
        {"schemaVersion": 2, "mediaType": media.MEDIA_TYPE_OCI_INDEX, "manifests": list(manifests)}
    )


def _read_json(source: BlobSource, digest: str) -> Any:
    with source.open_blob(digest) as handle:
        data = handle.read(_MAX_JSON + 1)
    if len(data) > _MAX_JSON:
        raise InvalidArgument(f"blob {digest} is too large to be image metadata")
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise InvalidArgument(f"blob {digest} is not valid JSON") from None


def _graph(
    source: BlobSource,
    desc: Descriptor,
    selector: PlatformSelector | None,
    what: str,
    depth: int = 0,
) -> Iterator[Descriptor]:
    """``desc`` and what it needs; an index keeps only its locally stored manifests."""
    if depth > MAX_INDEX_DEPTH:
        raise InvalidArgument(f"{what} nests image indexes too deeply")
    yield desc
    document = (
        _read_json(source, desc.digest)
        if media.is_index(desc.media_type) or media.is_manifest(desc.media_type)
        else None
    )
    if not isinstance(document, Mapping):
        return
    if media.is_index(desc.media_type):
        children = index_manifests(document)
        present = [c for c in children if source.exists(c.digest)]
        nested = [c for c in present if media.is_index(c.media_type)]
        entries = [c for c in present if not media.is_index(c.media_type)]
        if selector is not None and entries:
            try:
                entries = select_platforms(entries, selector)
            except NotFound as error:
                raise NotFound(f"{what}: {error}") from None
        if not nested and not entries:
            raise NotFound(f"{what} has none of its manifests stored locally; pull it first")
        for child in nested + entries:
            yield from _graph(source, child, selector, what, depth + 1)
        return
    blobs = [Descriptor.from_dict(document["config"])]
    blobs += [Descriptor.from_dict(layer) for layer in document.get("layers") or []]
    for blob in blobs:
        if not source.exists(blob.digest):
            raise NotFound(f"{what} lacks blob {blob.digest} locally; pull it again")
        yield blob


class _TarWriter:
    """Deterministic members: fixed mtime, no owner names, 0644 files and 0755 dirs."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self._tar = tar

    def directory(self, name: str) -> None:
        info = tarfile.TarInfo(name)
        info.mtime = 0
        info.uname = info.gname = ""
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        self._tar.addfile(info)

    def file(self, name: str, size: int, data: IO[bytes]) -> None:
        info = tarfile.TarInfo(name)
        info.mtime = 0
        info.uname = info.gname = ""
        info.mode, info.size = 0o644, size
        self._tar.addfile(info, data)

    def data(self, name: str, data: bytes) -> None:
        self.file(name, len(data), io.BytesIO(data))


def write_oci_archive(
    out: IO[bytes],
    source: BlobSource,
    manifests: Sequence[Mapping[str, Any]],
    *,
    platform: PlatformRequest | PlatformSelector | None = None,
) -> None:
    """Write an OCI image-layout tarball whose ``index.json`` lists ``manifests``.

    ``manifests`` are index entries (see :func:`named_entry`); every blob they need is
    read from ``source``. With ``platform``, indexes keep only the matching manifests.
    """
    selector = None if platform is None else PlatformSelector.of(platform)
    blobs: dict[str, Descriptor] = {}
    for entry in manifests:
        root = Descriptor.from_dict(entry)
        what = f"image {entry.get('annotations', {}).get(IMAGE_NAME_ANNOTATION) or root.digest}"
        for blob in _graph(source, root, selector, what):
            blobs.setdefault(blob.digest, blob)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        writer = _TarWriter(tar)
        writer.data("oci-layout", OCI_LAYOUT)
        writer.data("index.json", oci_index_json(manifests))
        writer.directory("blobs")
        for algorithm in sorted({split_digest(d)[0] for d in blobs}):
            writer.directory(f"blobs/{algorithm}")
        for digest in sorted(blobs):
            with source.open_blob(digest) as handle:
                writer.file(blob_member(digest), blobs[digest].size, handle)


def _decompressed(source: BlobSource, layer: Descriptor) -> bytes:
    with source.open_blob(layer.digest) as handle:
        data = handle.read()
    compression = media.layer_compression(layer.media_type)
    if compression == "gzip":
        return gzip.decompress(data)
    if compression:
        raise InvalidArgument(
            f"layer {layer.digest} is {compression}-compressed; docker archives hold plain "
            "or gzip layers only"
        )
    return data


def write_docker_archive(
    out: IO[bytes], source: BlobSource, manifest: Descriptor, repo_tags: Sequence[str]
) -> None:
    """Write the image ``manifest`` as a ``docker save`` tarball tagged ``repo_tags``.

    The tar holds ``manifest.json``, the config as ``<config hex>.json``, each layer
    uncompressed as ``<diff_id hex>/layer.tar`` and a ``repositories`` file.
    """
    document = _read_json(source, manifest.digest)
    config_desc = Descriptor.from_dict(document["config"])
    layers = [Descriptor.from_dict(layer) for layer in document.get("layers") or []]
    with source.open_blob(config_desc.digest) as handle:
        config_bytes = handle.read()
    diff_ids = ((json.loads(config_bytes).get("rootfs") or {}).get("diff_ids")) or []
    if len(diff_ids) != len(layers):
        raise InvalidArgument(
            f"image {manifest.digest} has {len(layers)} layers but {len(diff_ids)} diff ids"
        )
    hex_ids = [split_digest(d)[1] for d in diff_ids]
    config_name = f"{split_digest(config_desc.digest)[1]}.json"
    listing = [
        {
            "Config": config_name,
            "RepoTags": list(repo_tags),
            "Layers": [f"{hex_id}/layer.tar" for hex_id in hex_ids],
        }
    ]
    repositories: dict[str, dict[str, str]] = {}
    for repo_tag in repo_tags:
        repo, _, tag = repo_tag.rpartition(":")
        repositories.setdefault(repo, {})[tag] = hex_ids[-1] if hex_ids else ""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        writer = _TarWriter(tar)
        writer.data(config_name, config_bytes)
        written: set[str] = set()
        for layer, hex_id in zip(layers, hex_ids, strict=True):
            if hex_id not in written:
                written.add(hex_id)
                writer.directory(hex_id)
                writer.data(f"{hex_id}/layer.tar", _decompressed(source, layer))
        writer.data("manifest.json", json.dumps(listing).encode())
        writer.data("repositories", json.dumps(repositories).encode())


def write_archive_file(dest: Path | str | IO[bytes], write: Callable[[IO[bytes]], None]) -> None:
    """Run ``write`` on ``dest``: a binary file object, or a path that appears atomically."""
    if not isinstance(dest, str | Path):
        if not hasattr(dest, "write"):
            raise InvalidArgument(
                f"dest must be a path or a binary file object, not {type(dest).__name__}"
            )
        write(dest)
        return
    path = Path(dest)
    if not path.parent.is_dir():
        raise NotFound(f"directory {path.parent} for the archive does not exist; create it")
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
