"""Version information reported by ``Client.version()``."""

from __future__ import annotations

import attrs

from libcontainerd.errors import InvalidArgument

__all__ = ["Version"]


def _check_str(instance: Version, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str):
        raise InvalidArgument(f"Version.{attribute.name} must be a str, not {type(value).__name__}")


@attrs.frozen
class Version:
    """What is doing the work behind a client.

    For the remote backend ``version``/``revision`` are containerd's; for the local
    backend they are the OCI runtime's (``runc --version``). ``backend`` is
    ``"local"`` or ``"remote"``, ``runtime`` the OCI runtime name or path when known.
    """

    version: str = attrs.field(validator=_check_str)
    revision: str = attrs.field(default="", validator=_check_str)
    backend: str = attrs.field(default="", validator=_check_str)
    runtime: str = attrs.field(default="", validator=_check_str)
    runtime_version: str = attrs.field(default="", validator=_check_str)
