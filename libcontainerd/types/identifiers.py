"""Identifiers (container, process, namespace, snapshot ids) and shared validation helpers.

containerd uses one rule for every object identifier so that each one is safe as
a single filesystem path component: runs of ASCII letters and digits joined by a
single ``.``, ``_`` or ``-``, starting and ending with a letter or digit, at most
:data:`MAX_IDENTIFIER_LENGTH` characters. :func:`validate_identifier` is the one
place this SDK checks it.

The module also holds the few converters the value types of
:mod:`libcontainerd.types` share (safe quoting of bad input in messages,
read-only mappings, UTC timestamps), so they behave the same everywhere.
"""

from __future__ import annotations

import datetime as _dt
import re
import types
from collections.abc import Mapping
from typing import Any

from libcontainerd.errors import InvalidArgument

__all__ = [
    "IDENTIFIER_RULE",
    "MAX_IDENTIFIER_LENGTH",
    "frozen_mapping",
    "frozen_str_mapping",
    "is_valid_identifier",
    "optional_utc",
    "safe_repr",
    "to_utc",
    "validate_identifier",
]

MAX_IDENTIFIER_LENGTH = 76
"""The longest identifier containerd accepts, in characters."""

IDENTIFIER_RULE = (
    f"1 to {MAX_IDENTIFIER_LENGTH} ASCII letters and digits, optionally joined by single "
    "'.', '_' or '-' separators, starting and ending with a letter or digit"
)
"""The identifier rule in words, as quoted by error messages."""

# Every separator must be followed by a run of letters/digits, so matching is linear.
_IDENTIFIER_RE = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")

_REPR_LIMIT = 80


def safe_repr(value: object, limit: int = _REPR_LIMIT) -> str:
    """Quote ``value`` for an error message: escaped, single line and at most ``limit`` chars.

    Control characters (NUL, newlines, escapes) are shown escaped so a hostile
    value cannot forge log lines; long values are cut with a note of their length.
    """
    try:
        text = repr(value)
    except Exception:  # a foreign object's __repr__ may fail; never let that mask the error
        text = f"<{type(value).__name__} object>"
    if len(text) <= limit:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return text[: max(limit - 3, 1)] + "..." + size


def is_valid_identifier(value: object) -> bool:
    """Whether ``value`` is a ``str`` that satisfies the identifier rule (never raises)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_IDENTIFIER_LENGTH
        and _IDENTIFIER_RE.fullmatch(value) is not None
    )


def validate_identifier(value: object, *, kind: str = "identifier") -> str:
    """Return ``value`` if it is a valid identifier, else raise :class:`InvalidArgument`.

    ``kind`` names what the value is for ("container id", "exec id", "namespace" ...)
    so the message tells the caller which argument was wrong.
    """
    if not isinstance(value, str):
        raise InvalidArgument(
            f"{kind} must be a str, not {type(value).__name__}: use {IDENTIFIER_RULE}"
        )
    if not value:
        raise InvalidArgument(f"{kind} must not be empty: use {IDENTIFIER_RULE}")
    if len(value) > MAX_IDENTIFIER_LENGTH:
        raise InvalidArgument(
            f"{kind} {safe_repr(value)} is {len(value)} characters long, more than the "
            f"maximum of {MAX_IDENTIFIER_LENGTH}: use {IDENTIFIER_RULE}"
        )
    if _IDENTIFIER_RE.fullmatch(value) is None:
        raise InvalidArgument(f"{kind} {safe_repr(value)} is not valid: use {IDENTIFIER_RULE}")
    return value


def frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A read-only copy of ``value`` (``None`` gives an empty mapping); keys must be ``str``.

    The copy is shallow: nested containers stay as given.
    """
    if value is None:
        return types.MappingProxyType({})
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"expected a mapping, got {type(value).__name__}")
    copy: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise InvalidArgument(f"mapping keys must be str, got {safe_repr(key)}")
        copy[key] = item
    return types.MappingProxyType(copy)


def frozen_str_mapping(value: Mapping[str, str] | None) -> Mapping[str, str]:
    """A read-only copy of a ``str`` to ``str`` mapping (labels, annotations)."""
    result = frozen_mapping(value)
    for key, item in result.items():
        if not isinstance(item, str):
            raise InvalidArgument(
                f"value of {safe_repr(key)} must be a str, got {type(item).__name__}"
            )
    return result


def to_utc(value: _dt.datetime, *, what: str = "timestamp") -> _dt.datetime:
    """``value`` converted to UTC; naive datetimes are refused because their zone is a guess."""
    if not isinstance(value, _dt.datetime):
        raise InvalidArgument(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise InvalidArgument(
            f"{what} {value.isoformat()} has no time zone: pass an aware datetime, "
            "for example datetime.now(timezone.utc)"
        )
    return value.astimezone(_dt.timezone.utc)


def optional_utc(value: _dt.datetime | None, *, what: str = "timestamp") -> _dt.datetime | None:
    """Like :func:`to_utc` but lets ``None`` through."""
    return None if value is None else to_utc(value, what=what)
