"""The record a backend keeps for a container (not its running task)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

import attrs

__all__ = ["ContainerInfo", "RuntimeInfo"]


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


@attrs.frozen
class RuntimeInfo:
    """The runtime a container runs under: a name (``io.containerd.runc.v2``, ``runc``, ``crun``)
    and its options (for remote, the decoded runc options message as a dict)."""

    name: str
    options: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)


@attrs.frozen
class ContainerInfo:
    """Metadata of a container as its backend stores it.

    ``spec`` is the OCI runtime spec (JSON form); ``image`` the reference it was
    made from, or ``""``; ``extensions`` holds opaque values other tools attached.
    """

    id: str
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_mapping)
    image: str = ""
    runtime: RuntimeInfo = RuntimeInfo("")
    spec: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)
    snapshotter: str = ""
    snapshot_key: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    extensions: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)
    sandbox_id: str = ""
