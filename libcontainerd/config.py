"""The settings a backend receives from the factory, checked once, in one place."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs

from libcontainerd.client import EventCallback
from libcontainerd.errors import InvalidArgument
from libcontainerd.types.identifiers import validate_identifier

__all__ = ["ClientConfig"]


def _check_namespace(_: object, __: attrs.Attribute[str], value: str) -> None:
    validate_identifier(value, kind="namespace")


def _check_timeout(_: object, __: attrs.Attribute[float | None], value: float | None) -> None:
    if value is not None and not value > 0:
        raise InvalidArgument(f"timeout {value!r} must be a positive number of seconds or None")


def _optional_path(value: Path | str | None) -> Path | None:
    return None if value is None else Path(value)


def _frozen_options(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


@attrs.frozen
class ClientConfig:
    """Everything ``new_client`` was told, after validation.

    ``address`` only means something to remote; ``root``, ``state`` and ``runtime``
    only to local. ``options`` are the extra keyword arguments the chosen backend
    understands (each backend rejects names it does not know).
    """

    namespace: str = attrs.field(default="default", validator=_check_namespace)
    address: str | None = None
    root: Path | None = attrs.field(default=None, converter=_optional_path)
    state: Path | None = attrs.field(default=None, converter=_optional_path)
    runtime: str | None = None
    timeout: float | None = attrs.field(default=None, validator=_check_timeout)
    on_event: EventCallback | None = None
    experimental: bool = False
    options: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_options)
