"""Reading an image's graph back from containerd's content store.

:func:`read_manifests` finds the platform manifests of an image (with their configs)
for unpacking, pushing and root filesystems; :class:`PlatformReader` lists which
platforms of an image are present locally, for ``list`` and ``get``.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Mapping
from typing import Any

import attrs

from libcontainerd.errors import DigestMismatch, FailedPrecondition, InvalidArgument, NotFound
from libcontainerd.remote._content import RemoteContentStore
from libcontainerd.types import descriptor as media
from libcontainerd.types.descriptor import Descriptor, index_manifests, select_platforms
from libcontainerd.types.platform import Platform, PlatformSelector

__all__ = [
    "MAX_INDEX_DEPTH",
    "ImageManifest",
    "PlatformReader",
    "declared_platform",
    "read_manifests",
]


@attrs.frozen
class ImageManifest:
    """One platform's manifest of an image, as read from containerd's content store."""

    descriptor: Descriptor
    manifest: Mapping[str, Any] = attrs.field(repr=False)
    config: Mapping[str, Any] = attrs.field(repr=False)

    @property
    def platform(self) -> Platform | None:
        """The platform the config declares."""
        return declared_platform(self.config)


def declared_platform(config: Mapping[str, Any]) -> Platform | None:
    """The platform an image config declares, or None when it names none usable."""
    os_name = config.get("os")
    arch = config.get("architecture")
    if not isinstance(os_name, str) or not isinstance(arch, str):
        return None
    try:
        return Platform.of(os_name, arch, str(config.get("variant") or ""))
    except InvalidArgument:
        return None


def _config_matches(config: Mapping[str, Any], selector: PlatformSelector) -> bool:
    if selector.take_all:
        return True
    found = declared_platform(config)
    # Nothing to compare against: accept, as containerd does.
    return found is None or selector.match(found)


def read_manifests(
    store: RemoteContentStore,
    target: Descriptor,
    selector: PlatformSelector,
    *,
    check_lone: bool = True,
    what: str = "image",
) -> list[ImageManifest]:
    """The manifests of ``target`` that ``selector`` picks among the locally stored ones.

    A lone manifest (no index) is checked against ``selector`` only with ``check_lone``;
    a caller that asked for no platform takes it whatever its platform. ``NotFound``
    names the platform when none matches.
    """
    if media.is_manifest(target.media_type):
        manifest = store.read_json(target.digest)
        config = store.read_json(manifest["config"]["digest"])
        if check_lone and not _config_matches(config, selector):
            raise NotFound(
                f"{what} is for {config.get('os')}/{config.get('architecture')}, not for "
                f"platform {selector.label}; pass a matching platform="
            )
        return [ImageManifest(target, manifest, config)]
    if not media.is_index(target.media_type):
        raise FailedPrecondition(
            f"{what} points at {target.media_type}, which is neither a manifest nor an index"
        )
    index = store.read_json(target.digest)
    children = index_manifests(index)
    result: list[ImageManifest] = []
    entries: list[Descriptor] = []
    for child in children:
        if media.is_index(child.media_type):
            with contextlib.suppress(NotFound):
                result.extend(
                    read_manifests(store, child, selector, check_lone=check_lone, what=what)
                )
        elif store.exists(child.digest):
            entries.append(child)
    if entries:
        try:
            chosen = select_platforms(entries, selector)
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
            f"{what} has no locally stored manifest for platform {selector.label} "
            f"(the index offers {', '.join(offered) or 'no platforms'}); pull it with that "
            "platform="
        )
    return result


MAX_INDEX_DEPTH = 4


class PlatformReader:
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
        return declared_platform(config)

    def _walk(self, target: Descriptor, depth: int) -> builtins.list[Platform]:
        if media.is_manifest(target.media_type):
            found = self._manifest_platform(target.digest)
            return [] if found is None else [found]
        if not media.is_index(target.media_type) or depth >= MAX_INDEX_DEPTH:
            return []
        index = self._read(target.digest)
        children: builtins.list[Descriptor] = []
        if isinstance(index, Mapping):
            with contextlib.suppress(InvalidArgument):
                children = index_manifests(index)
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
