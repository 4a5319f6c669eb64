"""Filesystem mounts, as given to a container spec or returned by a snapshotter."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from libcontainerd.errors import InvalidArgument
from libcontainerd.types.identifiers import safe_repr

__all__ = ["Mount"]

_MAX_FIELD = 4096


def _check_text(instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str):
        raise InvalidArgument(f"Mount.{attribute.name} must be a str, not {type(value).__name__}")
    if "\0" in value or len(value) > _MAX_FIELD:
        raise InvalidArgument(
            f"Mount.{attribute.name} {safe_repr(value)} must have no NUL byte and at most "
            f"{_MAX_FIELD} characters"
        )


def _check_target(instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    _check_text(instance, attribute, value)
    assert isinstance(value, str)
    if value and not value.startswith("/"):
        raise InvalidArgument(
            f"Mount.target {safe_repr(value)} must be an absolute path inside the container"
        )


def _options(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InvalidArgument(
            "Mount.options must be a sequence of strings such as ('ro', 'nosuid'), "
            "not a single string"
        )
    items = tuple(value)
    for item in items:
        if not isinstance(item, str) or not item or "\0" in item:
            raise InvalidArgument(
                f"Mount.options entries must be non-empty str, got {safe_repr(item)}"
            )
    return items


@attrs.frozen(kw_only=True)
class Mount:
    """A mount: filesystem ``type``, ``source``, ``target`` path and ``options``.

    ``target`` is the absolute path inside the container; it is ``""`` for the
    rootfs mounts a snapshotter returns, whose place is decided by the runtime.
    """

    type: str = attrs.field(validator=_check_text)
    source: str = attrs.field(validator=_check_text)
    target: str = attrs.field(default="", validator=_check_target)
    options: tuple[str, ...] = attrs.field(default=(), converter=_options)

    def to_oci(self) -> dict[str, Any]:
        """The OCI runtime-spec ``mounts[]`` entry (``destination``, ``type``, ``source``,
        ``options``). A mount without ``target`` cannot be one: InvalidArgument."""
        if not self.target:
            raise InvalidArgument(
                f"mount of {safe_repr(self.source)} has no target; give target= an absolute "
                "path to use it in a container spec"
            )
        result: dict[str, Any] = {"destination": self.target}
        if self.type:
            result["type"] = self.type
        if self.source:
            result["source"] = self.source
        if self.options:
            result["options"] = list(self.options)
        return result

    @classmethod
    def from_oci(cls, data: Mapping[str, Any]) -> Mount:
        """Read an OCI runtime-spec ``mounts[]`` entry."""
        if not isinstance(data, Mapping):
            raise InvalidArgument(f"a mount must be a JSON object, not {type(data).__name__}")
        if "destination" not in data:
            raise InvalidArgument("mount entry has no 'destination' member")
        options = data.get("options")
        if options is None:
            options = ()
        if not isinstance(options, list | tuple):
            raise InvalidArgument("mount 'options' must be a JSON array of strings")
        return cls(
            type=data.get("type", ""),
            source=data.get("source", ""),
            target=data["destination"],
            options=options,
        )
