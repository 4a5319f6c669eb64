"""Manifests and indexes as the registry protocol sees them: media types, children, digests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import attrs

from libcontainerd.errors import DigestMismatch, InvalidArgument, RegistryError, Unimplemented
from libcontainerd.types import descriptor as media
from libcontainerd.types.descriptor import Descriptor, index_manifests

__all__ = [
    "GENERIC_TYPES",
    "MANIFEST_ACCEPT",
    "MAX_GRAPH_DEPTH",
    "MAX_MANIFEST_SIZE",
    "NON_DISTRIBUTABLE",
    "SCHEMA1",
    "Manifest",
    "PullResult",
    "base_type",
    "children_of",
    "digest_of",
    "json_object",
    "manifest_media_type",
    "verify",
]

MANIFEST_ACCEPT = ", ".join(
    (
        media.MEDIA_TYPE_OCI_INDEX,
        media.MEDIA_TYPE_OCI_MANIFEST,
        media.MEDIA_TYPE_DOCKER_MANIFEST_LIST,
        media.MEDIA_TYPE_DOCKER_MANIFEST,
    )
)
"""The ``Accept`` header of manifest requests: every manifest and index type supported."""

MAX_MANIFEST_SIZE = 4 * 1024 * 1024
MAX_GRAPH_DEPTH = 8
SCHEMA1 = frozenset(
    {media.MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST, media.MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED_MANIFEST}
)
GENERIC_TYPES = frozenset({"", "application/json", "text/plain", "application/octet-stream"})
NON_DISTRIBUTABLE = frozenset(
    {
        media.MEDIA_TYPE_DOCKER_FOREIGN_LAYER,
        media.MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP,
        media.MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER,
        media.MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER_GZIP,
        media.MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER_ZSTD,
    }
)


@attrs.frozen
class Manifest:
    """A fetched manifest or index: its descriptor, verified bytes and parsed JSON."""

    descriptor: Descriptor
    data: bytes = attrs.field(repr=False)
    content: Mapping[str, Any] = attrs.field(repr=False, hash=False)

    def children(self) -> tuple[Descriptor, ...]:
        """The descriptors this manifest points at (manifests of an index; config + layers)."""
        return children_of(self.descriptor.media_type, self.content)


@attrs.frozen
class PullResult:
    """What :meth:`pull_graph` stored: the root, every manifest/index and every blob."""

    reference: str
    target: Descriptor
    manifests: tuple[Descriptor, ...]
    blobs: tuple[Descriptor, ...]


def base_type(value: str | None) -> str:
    """The media type without parameters, lower-cased (``""`` for None)."""
    return (value or "").split(";", 1)[0].strip().lower()


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """``data`` parsed as a JSON object; :class:`RegistryError` naming ``what`` if it is not one."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        raise RegistryError(f"{what} is not valid JSON") from None
    if not isinstance(document, dict):
        raise RegistryError(f"{what} is JSON but not an object")
    return document


def children_of(media_type: str, content: Mapping[str, Any]) -> tuple[Descriptor, ...]:
    """What a manifest (config and layers) or an index (manifests) points at."""
    try:
        if media.is_index(media_type):
            return tuple(index_manifests(content))
        if media.is_manifest(media_type) and base_type(media_type) not in SCHEMA1:
            config = content.get("config")
            layers = content.get("layers") or []
            if not isinstance(layers, list):
                raise InvalidArgument("'layers' is not a list")
            found = [Descriptor.from_dict(config)] if config is not None else []
            found.extend(Descriptor.from_dict(item) for item in layers)
            return tuple(found)
    except InvalidArgument as error:
        raise RegistryError(f"manifest of type {media_type} is malformed: {error}") from None
    return ()


def manifest_media_type(content_type: str | None, data: bytes, what: str) -> str:
    """The media type of a fetched manifest: declared, else the header, else guessed."""
    document = json_object(data, what)
    declared = document.get("mediaType")
    header = base_type(content_type)
    if document.get("schemaVersion") == 1 or header in SCHEMA1 or declared in SCHEMA1:
        kind = declared if isinstance(declared, str) and declared else header
        raise Unimplemented(
            f"{what} is a Docker schema 1 manifest ({kind or 'schemaVersion 1'}), which is "
            "deprecated and not supported; push the image again with a current tool "
            "(schema 2 or OCI)"
        )
    if isinstance(declared, str) and declared:
        return declared
    if header not in GENERIC_TYPES:
        return header
    if "manifests" in document:
        return media.MEDIA_TYPE_OCI_INDEX
    if "config" in document and "layers" in document:
        return media.MEDIA_TYPE_OCI_MANIFEST
    raise RegistryError(f"{what} has no media type and is neither a manifest nor an index")


def digest_of(data: bytes, like: str = "sha256:") -> str:
    """The digest of ``data`` in the algorithm of ``like`` (sha256 unless sha512)."""
    algorithm = like.split(":", 1)[0] or "sha256"
    if algorithm not in ("sha256", "sha512"):
        algorithm = "sha256"
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def verify(data: bytes, descriptor: Descriptor, what: str) -> None:
    """Check ``data`` against ``descriptor``'s size and digest (:class:`DigestMismatch`)."""
    if len(data) != descriptor.size:
        raise DigestMismatch(
            f"{what} is {len(data)} bytes, its descriptor says {descriptor.size}",
            expected=descriptor.digest,
        )
    actual = digest_of(data, descriptor.digest)
    if actual != descriptor.digest:
        raise DigestMismatch(
            f"{what} does not match its digest (got {actual})",
            expected=descriptor.digest,
            actual=actual,
        )
