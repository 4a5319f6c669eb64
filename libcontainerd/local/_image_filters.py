"""The image filters of the local backend's ``list``: ``field==value``, ``!=``, ``~=``, presence.

Fields: ``name``, ``target.digest``, ``target.mediatype``, ``labels.<key>`` and
``platform`` (``platform==linux/arm64`` matches images with content for that platform).
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable

from libcontainerd.errors import InvalidArgument
from libcontainerd.types.image import Image
from libcontainerd.types.platform import Platform, PlatformSelector

__all__ = ["has_platform", "parse_filter"]

_FILTER_RE = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(==|!=|~=)?\s*(.*?)\s*$")


def has_platform(image: Image, selector: PlatformSelector) -> bool:
    """Whether ``image`` has content for a platform ``selector`` accepts."""
    return bool(image.platforms) and any(selector.match(p) for p in image.platforms)


def parse_filter(text: str) -> Callable[[Image], bool]:
    """The predicate of one filter: comma-separated clauses that must all match."""
    clauses: builtins.list[Callable[[Image], bool]] = []
    for part in text.split(","):
        m = _FILTER_RE.match(part)
        if m is None or not m.group(1) or (m.group(2) is None and m.group(3)):
            raise InvalidArgument(
                f"filter {text!r} is not field==value, field!=value, field~=regex or field"
            )
        field, op, value = m.group(1), m.group(2), m.group(3)
        if field not in ("name", "target.digest", "target.mediatype", "platform") and (
            not field.startswith("labels.")
        ):
            raise InvalidArgument(
                f"filter field {field!r} is unknown; use name, target.digest, "
                "target.mediatype, platform or labels.<key>"
            )
        clauses.append(_clause(field, op, value))
    return lambda image: all(c(image) for c in clauses)


def _clause(field: str, op: str | None, value: str) -> Callable[[Image], bool]:
    if op == "~=":
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise InvalidArgument(f"filter regex {value!r} is invalid ({exc})") from None
    if field == "platform" and op in ("==", "!="):
        wanted = PlatformSelector.of(Platform.parse(value))

    def get(image: Image) -> builtins.list[str]:
        if field == "name":
            return [image.name]
        if field == "target.digest":
            return [image.target.digest]
        if field == "target.mediatype":
            return [image.target.media_type]
        if field == "platform":
            return [p.format() for p in image.platforms]
        key = field[len("labels.") :]
        return [image.labels[key]] if key in image.labels else []

    def check(image: Image) -> bool:
        values = get(image)
        if op is None:
            return bool(values)
        if field == "platform" and op in ("==", "!="):
            hit = has_platform(image, wanted)
            return hit if op == "==" else not hit
        if op == "==":
            return value in values
        if op == "!=":
            return value not in values
        return any(pattern.search(v) for v in values)

    return check
