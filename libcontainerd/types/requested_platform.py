"""The two wire forms in which an HTTP API caller names the platform it wants.

* The ``X-Requested-Platform`` header carries a compact JSON object with the
  OCI image-spec keys ``os``, ``architecture`` and the optional ``variant``,
  ``os.version`` and ``os.features``.
* The ``platform`` query parameter that replaced it carries
  ``os[/arch[/variant]]`` only: it cannot express ``os.version`` or
  ``os.features``.

Both decoders are strict: anything but a well-formed value raises
:class:`~libcontainerd.errors.InvalidArgument` naming what was wrong, never a
silent default and never another exception, whatever text or bytes arrive.
Decoded platforms are normalised (``x86_64`` -> ``amd64`` and so on).
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from libcontainerd.errors import InvalidArgument
from libcontainerd.types.platform import MAX_FIELD_LENGTH, Platform

__all__ = [
    "MAX_HEADER_LENGTH",
    "MAX_PARAMETER_LENGTH",
    "REQUESTED_PLATFORM_HEADER",
    "decode_platform_parameter",
    "decode_requested_platform_header",
    "encode_platform_parameter",
    "encode_requested_platform_header",
]

REQUESTED_PLATFORM_HEADER = "X-Requested-Platform"
"""Name of the HTTP header carrying a JSON-encoded OCI platform."""

MAX_HEADER_LENGTH = 4096
"""Longest header value accepted, in UTF-8 bytes.

The longest valid platform (every field at its limit, 32 features) encodes to
about 2.6 KiB, so every valid value fits, while the JSON parser is never handed
more than a page of hostile input.
"""

MAX_PARAMETER_LENGTH = 3 * MAX_FIELD_LENGTH + 2
"""Longest ``platform`` parameter accepted: three components and two slashes."""

_HEADER_WHAT = f"{REQUESTED_PLATFORM_HEADER} header"


def encode_requested_platform_header(platform: Platform) -> str:
    """The ``X-Requested-Platform`` value for ``platform``: compact JSON, fixed key order.

    Keys come in the order ``os``, ``architecture``, ``variant``,
    ``os.version``, ``os.features``; empty optional fields are left out. The
    platform is sent as given (not normalised).
    """
    if not isinstance(platform, Platform):
        raise InvalidArgument(
            f"cannot encode {type(platform).__name__} as {_HEADER_WHAT}: expected a Platform"
        )
    return json.dumps(platform.to_dict(), separators=(",", ":"), ensure_ascii=True)


def _reject(reason: str) -> NoReturn:
    raise InvalidArgument(
        f"invalid {_HEADER_WHAT}: {reason}; expected a JSON object such as "
        '{"os":"linux","architecture":"amd64"}'
    )


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            _reject(f"field {json.dumps(key)} appears more than once")
        result[key] = value
    return result


def _no_constants(name: str) -> NoReturn:
    _reject(f"{name} is not valid JSON")


def decode_requested_platform_header(value: str | bytes) -> Platform:
    """Decode an ``X-Requested-Platform`` value strictly into a normalised platform.

    Rejected with :class:`InvalidArgument`: values longer than
    :data:`MAX_HEADER_LENGTH` bytes, invalid UTF-8, anything that is not a JSON
    object, duplicate or unknown keys, non-string fields (``os.features`` must be
    a list of strings), missing or empty ``os`` or ``architecture``, and fields
    a :class:`Platform` does not accept.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) > MAX_HEADER_LENGTH:
            _reject(f"{len(raw)} bytes long, at most {MAX_HEADER_LENGTH} allowed")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            _reject(f"not valid UTF-8 (byte {e.start})")
    elif isinstance(value, str):
        if len(value) > MAX_HEADER_LENGTH:
            _reject(f"{len(value)} characters long, at most {MAX_HEADER_LENGTH} bytes allowed")
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError as e:
            _reject(f"contains an unpaired surrogate at position {e.start}")
        if size > MAX_HEADER_LENGTH:
            _reject(f"{size} bytes long, at most {MAX_HEADER_LENGTH} allowed")
        text = value
    else:
        raise InvalidArgument(
            f"invalid {_HEADER_WHAT}: expected str or bytes, got {type(value).__name__}"
        )
    if not text.strip():
        _reject("the value is empty")
    try:
        data = json.loads(
            text,
            object_pairs_hook=_pairs_without_duplicates,
            parse_constant=_no_constants,
        )
    except InvalidArgument:
        raise
    except RecursionError:
        _reject("JSON nested too deeply")
    except ValueError as e:  # JSONDecodeError, and int conversion limits
        _reject(f"not valid JSON ({e})")
    if not isinstance(data, dict):
        _reject(f"the JSON value is {_json_kind(data)}, not an object")
    try:
        return Platform.from_dict(data, normalize=True)
    except InvalidArgument as e:
        raise InvalidArgument(f"invalid {_HEADER_WHAT}: {_detail(e)}") from None


def _detail(error: InvalidArgument) -> str:
    """The platform error's message without its own "invalid platform" lead-in."""
    message = error.message
    for lead in ("invalid platform: ", "invalid platform "):
        if message.startswith(lead):
            return message[len(lead) :]
    return message


def _json_kind(data: object) -> str:
    if data is None:
        return "null"
    if isinstance(data, bool):
        return "a boolean"
    if isinstance(data, (int, float)):
        return "a number"
    if isinstance(data, str):
        return "a string"
    return "an array"


def encode_platform_parameter(platform: Platform, *, lossy: bool = False) -> str:
    """The ``platform`` query value for ``platform``: ``os/arch[/variant]``.

    The parameter cannot carry ``os.version`` or ``os.features``; a platform
    that has them raises :class:`InvalidArgument` (send the
    ``X-Requested-Platform`` header instead) unless ``lossy=True`` drops them.
    """
    if not isinstance(platform, Platform):
        raise InvalidArgument(
            f"cannot encode {type(platform).__name__} as a platform parameter: expected a Platform"
        )
    if (platform.os_version or platform.os_features) and not lossy:
        raise InvalidArgument(
            f"platform {platform.format()} has os.version or os.features, which the platform "
            f"parameter cannot carry; use the {_HEADER_WHAT} or pass lossy=True to drop them"
        )
    return platform.format()


def decode_platform_parameter(value: str) -> Platform:
    """Decode a ``platform`` query value strictly into a normalised platform.

    Accepts what :meth:`Platform.parse` accepts (``linux/arm64/v8``,
    ``Linux/x86_64``, a lone os or architecture completed from this host).
    An empty value is an error: callers treat an absent parameter as "no
    platform requested" before calling this.
    """
    if not isinstance(value, str):
        raise InvalidArgument(
            f"invalid platform parameter: expected str, got {type(value).__name__}"
        )
    if not value:
        raise InvalidArgument(
            "invalid platform parameter: the value is empty; omit the parameter to use the "
            "default platform, or give os[/arch[/variant]] such as linux/amd64"
        )
    if len(value) > MAX_PARAMETER_LENGTH:
        raise InvalidArgument(
            f"invalid platform parameter: {len(value)} characters long, at most "
            f"{MAX_PARAMETER_LENGTH} allowed"
        )
    try:
        return Platform.parse(value)
    except InvalidArgument as e:
        raise InvalidArgument(f"invalid platform parameter {_detail(e)}") from None
