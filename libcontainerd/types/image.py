"""Image records: a name pointing at the descriptor of an image's root content."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping

import attrs

from libcontainerd.errors import InvalidArgument
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.identifiers import frozen_str_mapping, optional_utc, safe_repr
from libcontainerd.types.platform import Platform
from libcontainerd.types.reference import Reference

__all__ = ["MAX_LABEL_SIZE", "Image", "validate_labels"]

MAX_LABEL_SIZE = 4096
"""containerd refuses a label whose key and value together exceed this many bytes."""

_MAX_NAME = 4096


def validate_labels(labels: Mapping[str, str] | None) -> Mapping[str, str]:
    """A read-only copy of ``labels`` after containerd's checks (non-empty keys, size limit)."""
    result = frozen_str_mapping(labels)
    for key, value in result.items():
        if not key:
            raise InvalidArgument("label keys must not be empty")
        size = len(key.encode()) + len(value.encode())
        if size > MAX_LABEL_SIZE:
            raise InvalidArgument(
                f"label {safe_repr(key, 40)} is {size} bytes with its value, more than the "
                f"{MAX_LABEL_SIZE} containerd allows"
            )
    return result


def _check_name(instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str):
        raise InvalidArgument(f"image name must be a str, not {type(value).__name__}")
    if not value or "\0" in value or len(value) > _MAX_NAME or value != value.strip():
        raise InvalidArgument(
            f"image name {safe_repr(value)} must be non-empty, without NUL or surrounding "
            f"spaces, at most {_MAX_NAME} characters"
        )


def _check_target(instance: object, attribute: attrs.Attribute[Descriptor], value: object) -> None:
    if not isinstance(value, Descriptor):
        raise InvalidArgument(f"Image.target must be a Descriptor, not {type(value).__name__}")


def _created(value: _dt.datetime | None) -> _dt.datetime | None:
    return optional_utc(value, what="Image.created_at")


def _updated(value: _dt.datetime | None) -> _dt.datetime | None:
    return optional_utc(value, what="Image.updated_at")


def _platforms(value: Iterable[Platform]) -> tuple[Platform, ...]:
    if not isinstance(value, Iterable):
        raise InvalidArgument("Image.platforms must be a sequence of Platform")
    items = tuple(value)
    for item in items:
        if not isinstance(item, Platform):
            raise InvalidArgument(
                f"Image.platforms entries must be Platform, not {type(item).__name__}"
            )
    return items


@attrs.frozen(kw_only=True)
class Image:
    """An image as a store records it.

    ``name`` is usually a normalised reference (``docker.io/library/busybox:latest``)
    but containerd allows any name, so it is not parsed here; see :meth:`reference`.
    ``target`` is the root descriptor (index or manifest). ``platforms`` lists the
    platforms whose content is available locally, when the backend knows.
    """

    name: str = attrs.field(validator=_check_name)
    target: Descriptor = attrs.field(validator=_check_target)
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=validate_labels, hash=False)
    created_at: _dt.datetime | None = attrs.field(default=None, converter=_created)
    updated_at: _dt.datetime | None = attrs.field(default=None, converter=_updated)
    platforms: tuple[Platform, ...] = attrs.field(default=(), converter=_platforms)

    @property
    def digest(self) -> str:
        """The digest of the image's root content (``target.digest``)."""
        return self.target.digest

    def reference(self) -> Reference:
        """The name parsed as an image reference; InvalidArgument when it is not one."""
        return Reference.parse(self.name)
