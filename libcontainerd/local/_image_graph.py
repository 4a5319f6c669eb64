"""Reading an image's graph from the local content store: manifests, platforms, reach.

Functions over :class:`~libcontainerd.content.ContentStore` that the local image service
uses to find which platforms of an image are present, what a pull or an import wrote,
and which blobs and snapshots an image reaches (for garbage collection).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from libcontainerd.content import ContentStore, chain_ids
from libcontainerd.errors import DataLoss, NotFound
from libcontainerd.types import descriptor as media
from libcontainerd.types.descriptor import Descriptor, index_manifests
from libcontainerd.types.digest import validate_digest
from libcontainerd.types.platform import Platform

__all__ = [
    "MAX_JSON",
    "children",
    "diff_ids",
    "local_manifests",
    "manifest_platform",
    "present_platforms",
    "reachable",
    "read_json",
]

MAX_JSON = 4 * 1024 * 1024


def read_json(content: ContentStore, digest: str) -> dict[str, Any]:
    """Blob ``digest`` parsed as a JSON object (a manifest, index or config)."""
    with content.open(digest) as f:
        raw = f.read(MAX_JSON + 1)
    if len(raw) > MAX_JSON:
        raise DataLoss(f"blob {digest} is larger than a manifest or config may be")
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise DataLoss(f"blob {digest} is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise DataLoss(f"blob {digest} is not a JSON object")
    return value


def children(content: ContentStore, desc: Descriptor) -> list[Descriptor]:
    """What ``desc`` points at: an index's manifests, or a manifest's config and layers."""
    doc = read_json(content, desc.digest)
    if media.is_index(desc.media_type):
        return index_manifests(doc)
    children = [Descriptor.from_dict(doc["config"])] if "config" in doc else []
    children += [Descriptor.from_dict(layer) for layer in doc.get("layers") or []]
    return children


def manifest_platform(content: ContentStore, desc: Descriptor) -> Platform:
    """The platform the config of manifest ``desc`` declares."""
    config = read_json(
        content, Descriptor.from_dict(read_json(content, desc.digest)["config"]).digest
    )
    return Platform.of(
        str(config.get("os") or "linux"),
        str(config.get("architecture") or "unknown"),
        str(config.get("variant") or ""),
    )


def local_manifests(content: ContentStore, target: Descriptor) -> list[Descriptor]:
    """The platform manifests under ``target`` whose content is present, with platform."""
    found: list[Descriptor] = []
    pending = [(target, 0)]
    while pending:
        desc, depth = pending.pop(0)
        if not content.exists(desc.digest) or depth > 8:
            continue
        if media.is_index(desc.media_type):
            pending += [(c, depth + 1) for c in children(content, desc)]
        elif media.is_manifest(desc.media_type):
            parts = children(content, desc)
            if all(content.exists(c.digest) for c in parts):
                platform = desc.platform or manifest_platform(content, desc)
                found.append(
                    Descriptor(
                        media_type=desc.media_type,
                        digest=desc.digest,
                        size=desc.size,
                        annotations=desc.annotations,
                        platform=platform,
                    )
                )
    return found


def present_platforms(content: ContentStore, target: Descriptor) -> tuple[Platform, ...]:
    """The platforms under ``target`` whose content is all present, once each."""
    seen: dict[str, Platform] = {}
    for manifest in local_manifests(content, target):
        assert manifest.platform is not None
        seen.setdefault(manifest.platform.format(), manifest.platform)
    return tuple(seen.values())


def reachable(content: ContentStore, target: Descriptor) -> tuple[set[str], set[str]]:
    """Blob digests and snapshot chain ids under ``target`` (present content only)."""
    blobs: set[str] = set()
    chains: set[str] = set()
    pending = [target]
    while pending:
        desc = pending.pop()
        if desc.digest in blobs:
            continue
        blobs.add(desc.digest)
        if not content.exists(desc.digest):
            continue
        if media.is_index(desc.media_type) or media.is_manifest(desc.media_type):
            parts = children(content, desc)
            pending += parts
            if media.is_manifest(desc.media_type):
                with contextlib.suppress(NotFound, DataLoss, KeyError, TypeError):
                    chains.update(chain_ids(diff_ids(content, parts[0])))
    return blobs, chains


def diff_ids(content: ContentStore, config: Descriptor) -> list[str]:
    """The layer diff ids the image config ``config`` lists (validated)."""
    diff_ids = read_json(content, config.digest).get("rootfs", {}).get("diff_ids") or []
    return [validate_digest(d) for d in diff_ids]
