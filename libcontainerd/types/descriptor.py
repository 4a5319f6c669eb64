"""OCI content descriptors and the media types of image content."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from libcontainerd.errors import InvalidArgument, NotFound
from libcontainerd.types.digest import validate_digest
from libcontainerd.types.identifiers import frozen_str_mapping, safe_repr
from libcontainerd.types.platform import Platform, PlatformRequest, PlatformSelector, default

__all__ = [
    "MEDIA_TYPE_DOCKER_CONFIG",
    "MEDIA_TYPE_DOCKER_FOREIGN_LAYER",
    "MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP",
    "MEDIA_TYPE_DOCKER_LAYER",
    "MEDIA_TYPE_DOCKER_LAYER_GZIP",
    "MEDIA_TYPE_DOCKER_MANIFEST",
    "MEDIA_TYPE_DOCKER_MANIFEST_LIST",
    "MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST",
    "MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED_MANIFEST",
    "MEDIA_TYPE_OCI_CONFIG",
    "MEDIA_TYPE_OCI_INDEX",
    "MEDIA_TYPE_OCI_LAYER",
    "MEDIA_TYPE_OCI_LAYER_GZIP",
    "MEDIA_TYPE_OCI_LAYER_ZSTD",
    "MEDIA_TYPE_OCI_MANIFEST",
    "MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER",
    "MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER_GZIP",
    "MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER_ZSTD",
    "Descriptor",
    "index_manifests",
    "is_config",
    "is_index",
    "is_layer",
    "is_manifest",
    "layer_compression",
    "select_platforms",
    "validate_media_type",
]

MEDIA_TYPE_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar"
MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER_GZIP = MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER + "+gzip"
MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER_ZSTD = MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER + "+zstd"

MEDIA_TYPE_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST = "application/vnd.docker.distribution.manifest.v1+json"
MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED_MANIFEST = (
    "application/vnd.docker.distribution.manifest.v1+prettyjws"
)
MEDIA_TYPE_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_TYPE_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_TYPE_DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar"
MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

_INDEX_TYPES = frozenset({MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_MANIFEST_LIST})
_MANIFEST_TYPES = frozenset(
    {
        MEDIA_TYPE_OCI_MANIFEST,
        MEDIA_TYPE_DOCKER_MANIFEST,
        MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST,
        MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED_MANIFEST,
    }
)
_CONFIG_TYPES = frozenset({MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_DOCKER_CONFIG})
# Layer base types; a "+gzip"/"+zstd" (OCI) or ".gzip" (docker) suffix names compression.
_LAYER_COMPRESSION: dict[str, str] = {
    MEDIA_TYPE_OCI_LAYER: "",
    MEDIA_TYPE_OCI_LAYER_GZIP: "gzip",
    MEDIA_TYPE_OCI_LAYER_ZSTD: "zstd",
    MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER: "",
    MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER_GZIP: "gzip",
    MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER_ZSTD: "zstd",
    MEDIA_TYPE_DOCKER_LAYER: "",
    MEDIA_TYPE_DOCKER_LAYER_GZIP: "gzip",
    MEDIA_TYPE_DOCKER_FOREIGN_LAYER: "",
    MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP: "gzip",
}

_PLATFORM_KEYS = frozenset({"os", "architecture", "variant", "os.version", "os.features"})

# RFC 6838 type/subtype with restricted-name characters, plus optional parameters.
_MEDIA_TYPE_RE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
    r"(?:\s*;\s*[A-Za-z0-9!#$&^_.+-]+=[^;\s]+)*"
)


def validate_media_type(value: object) -> str:
    """Return ``value`` if it looks like a media type (``type/subtype``), else raise."""
    if not isinstance(value, str):
        raise InvalidArgument(f"media type must be a str, not {type(value).__name__}")
    if _MEDIA_TYPE_RE.fullmatch(value) is None:
        raise InvalidArgument(
            f"media type {safe_repr(value)} is not valid: expected type/subtype such as "
            f"{MEDIA_TYPE_OCI_MANIFEST!r}"
        )
    return value


def _base(media_type: str) -> str:
    return media_type.split(";", 1)[0].strip()


def is_index(media_type: str) -> bool:
    """Whether ``media_type`` is an OCI index or a docker manifest list."""
    return _base(media_type) in _INDEX_TYPES


def is_manifest(media_type: str) -> bool:
    """Whether ``media_type`` is an image manifest (OCI, docker schema 2 or schema 1)."""
    return _base(media_type) in _MANIFEST_TYPES


def is_config(media_type: str) -> bool:
    """Whether ``media_type`` is an image configuration (OCI or docker)."""
    return _base(media_type) in _CONFIG_TYPES


def is_layer(media_type: str) -> bool:
    """Whether ``media_type`` is a filesystem layer this SDK knows how to unpack."""
    return _base(media_type) in _LAYER_COMPRESSION


def layer_compression(media_type: str) -> str:
    """``""`` (plain tar), ``"gzip"`` or ``"zstd"`` for a layer media type.

    Raises :class:`InvalidArgument` when ``media_type`` is not a known layer type
    (for example an encrypted layer).
    """
    try:
        return _LAYER_COMPRESSION[_base(media_type)]
    except KeyError:
        raise InvalidArgument(
            f"media type {safe_repr(media_type)} is not a layer type this SDK can unpack"
        ) from None


def _check_media_type(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    validate_media_type(value)


def _check_digest(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    validate_digest(value)


def _check_size(instance: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"descriptor size must be an int, not {type(value).__name__}")
    if value < 0:
        raise InvalidArgument(f"descriptor size must not be negative, got {value}")


def _urls(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidArgument("descriptor urls must be a list of strings, not a single value")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise InvalidArgument(
                f"descriptor urls must be non-empty strings, got {safe_repr(item)}"
            )
    return items


def _check_platform(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, Platform):
        raise InvalidArgument(
            f"descriptor platform must be a Platform or None, not {type(value).__name__}"
        )


@attrs.frozen(kw_only=True)
class Descriptor:
    """A pointer to content: its media type, digest and size, plus optional details.

    ``to_dict``/``from_dict`` use the OCI JSON form (``mediaType``, ``digest``,
    ``size``, ``urls``, ``annotations``, ``platform``); empty optional members are
    left out, as the OCI encoders do.
    """

    media_type: str = attrs.field(validator=_check_media_type)
    digest: str = attrs.field(validator=_check_digest)
    size: int = attrs.field(validator=_check_size)
    urls: tuple[str, ...] = attrs.field(default=(), converter=_urls)
    annotations: Mapping[str, str] = attrs.field(
        factory=dict, converter=frozen_str_mapping, hash=False
    )
    platform: Platform | None = attrs.field(default=None, validator=_check_platform)

    def to_dict(self) -> dict[str, Any]:
        """The OCI JSON object for this descriptor."""
        result: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.urls:
            result["urls"] = list(self.urls)
        if self.annotations:
            result["annotations"] = dict(self.annotations)
        if self.platform is not None:
            result["platform"] = self.platform.to_dict()
        return result

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Descriptor:
        """Read an OCI descriptor JSON object; members this version does not model are ignored.

        Missing or mistyped members are an :class:`InvalidArgument` naming the member.
        """
        if not isinstance(data, Mapping):
            raise InvalidArgument(f"a descriptor must be a JSON object, not {type(data).__name__}")
        for member in ("mediaType", "digest", "size"):
            if member not in data:
                raise InvalidArgument(f"descriptor has no {member!r} member")
        urls = data.get("urls")
        if urls is None:
            urls = ()
        if not isinstance(urls, list | tuple):
            raise InvalidArgument("descriptor 'urls' must be a JSON array of strings")
        annotations = data.get("annotations")
        if annotations is None:
            annotations = {}
        if not isinstance(annotations, Mapping):
            raise InvalidArgument("descriptor 'annotations' must be a JSON object of strings")
        platform_data = data.get("platform")
        platform = None
        if platform_data is not None:
            if not isinstance(platform_data, Mapping):
                raise InvalidArgument("descriptor 'platform' must be a JSON object")
            # Older docker manifest lists carry a "features" member that the OCI form
            # dropped; only the members a Platform models are read.
            known = {k: v for k, v in platform_data.items() if k in _PLATFORM_KEYS}
            platform = Platform.from_dict(known)
        return cls(
            media_type=data["mediaType"],
            digest=data["digest"],
            size=data["size"],
            urls=urls,
            annotations=annotations,
            platform=platform,
        )


def select_platforms(
    children: Sequence[Descriptor], request: PlatformRequest | PlatformSelector | None
) -> list[Descriptor]:
    """The entries of an index that ``request`` asks for (``None``: this host), best first.

    Each matcher of the request contributes its most preferred entry; ``"all"`` keeps
    every entry. Entries without a platform are never chosen by a matcher. Raises
    :class:`NotFound` naming the requested platform when nothing matches.
    """
    selector = PlatformSelector.of(request)
    if selector.take_all:
        return list(children)
    chosen: list[Descriptor] = []
    for matcher in selector.matchers:
        best: Descriptor | None = None
        for child in children:
            if child.platform is None or not matcher.match(child.platform):
                continue
            if best is None or (
                best.platform is not None and matcher.less(child.platform, best.platform)
            ):
                best = child
        if best is not None and best not in chosen:
            chosen.append(best)
    if not chosen:
        offered = sorted({c.platform.format() for c in children if c.platform is not None})
        raise NotFound(
            f"no manifest for platform {selector.label} in the index; it offers "
            f"{', '.join(offered) or 'no platforms'}; pass platform= one of those, or 'all'"
        )
    return chosen


def _entry_platform(data: object) -> Platform | None:
    """An index entry's platform, normalised the way containerd's ``Normalize`` does.

    Case and aliases are resolved, a missing ``os`` is this host's (as in containerd);
    ``os.version`` and ``os.features``, which matching ignores, are dropped when they
    would not be valid. None when the entry's platform cannot be understood.
    """
    if not isinstance(data, Mapping):
        return None
    os_name, arch, variant = (
        data.get("os") or default().os,
        data.get("architecture"),
        data.get("variant") or "",
    )
    if not all(isinstance(v, str) for v in (os_name, arch, variant)) or not arch:
        return None
    try:
        found = Platform.of(str(os_name), str(arch), str(variant))
    except InvalidArgument:
        return None
    version, features = data.get("os.version"), data.get("os.features")
    with contextlib.suppress(InvalidArgument, TypeError):
        if isinstance(version, str) and version:
            found = attrs.evolve(found, os_version=version)
    with contextlib.suppress(InvalidArgument, TypeError):
        if isinstance(features, list) and features:
            found = attrs.evolve(found, os_features=tuple(features))
    return found


def index_manifests(document: Mapping[str, Any]) -> list[Descriptor]:
    """The entries of an image index, read the way containerd reads them.

    One odd entry does not fail the index: a platform containerd would normalise
    (``"os": "Linux"``, no ``os``, an ``os.version`` with a space, too many features) is
    normalised; a platform that cannot be understood leaves the entry without one, so
    no platform request picks it (``"all"`` still does); an entry that is not a
    descriptor at all (no digest, no size ...) is left out. A ``manifests`` member that
    is not a list is :class:`InvalidArgument`.
    """
    entries = document.get("manifests") or []
    if not isinstance(entries, list):
        raise InvalidArgument("the index's 'manifests' member is not a list")
    found: list[Descriptor] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        plain = {key: value for key, value in entry.items() if key != "platform"}
        try:
            descriptor = Descriptor.from_dict(plain)
        except InvalidArgument:
            continue
        if entry.get("platform") is not None:
            try:
                descriptor = Descriptor.from_dict(entry)
            except InvalidArgument:
                descriptor = attrs.evolve(descriptor, platform=_entry_platform(entry["platform"]))
        found.append(descriptor)
    return found
