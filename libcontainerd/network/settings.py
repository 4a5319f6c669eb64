"""Where networking keeps its configuration and state, and the default bridge's shape."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from libcontainerd.errors import InvalidArgument
from libcontainerd.network.cni import DEFAULT_PLUGIN_DIRS

__all__ = ["DEFAULT_CONFIG_DIR", "DEFAULT_STATE_DIR", "NetworkSettings"]

DEFAULT_CONFIG_DIR = Path("/etc/cni/net.d")
"""The CNI configuration directory every CNI runtime reads."""

DEFAULT_STATE_DIR = Path("/run/libcontainerd/network")
"""Namespace pins, cached results, generated files and IPAM leases (gone after a reboot,
like the namespaces and veths they describe)."""


def _paths(value: Any) -> tuple[Path, ...]:
    if isinstance(value, (str, Path)):
        return (Path(value),)
    return tuple(Path(item) for item in value)


@attrs.frozen
class NetworkSettings:
    """How a client does networking; pass as ``new_client(..., network=NetworkSettings(...))``
    (or a dict of the same fields).

    ``default_name``, ``default_bridge`` and ``default_subnet`` shape the network that
    ``network="bridge"`` creates on first use.
    """

    config_dir: Path = attrs.field(default=DEFAULT_CONFIG_DIR, converter=Path)
    state_dir: Path = attrs.field(default=DEFAULT_STATE_DIR, converter=Path)
    plugin_dirs: tuple[Path, ...] = attrs.field(default=DEFAULT_PLUGIN_DIRS, converter=_paths)
    default_name: str = "bridge"
    default_bridge: str = "lcd0"
    default_subnet: str = "10.213.0.0/24"

    @classmethod
    def of(cls, value: NetworkSettings | Mapping[str, Any] | None) -> NetworkSettings:
        """Normalise the ``network=`` client option."""
        if value is None:
            return cls()
        if isinstance(value, NetworkSettings):
            return value
        if isinstance(value, Mapping):
            known = {field.name for field in attrs.fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise InvalidArgument(
                    f"unknown network setting(s) {', '.join(unknown)}; "
                    f"known: {', '.join(sorted(known))}"
                )
            try:
                return cls(**value)
            except TypeError as error:
                raise InvalidArgument(f"network settings {dict(value)!r}: {error}") from None
        raise InvalidArgument(
            f"the network option must be a NetworkSettings or a dict, not {type(value).__name__}"
        )

    @property
    def ipam_dir(self) -> Path:
        """Where host-local IPAM keeps the SDK's networks' leases."""
        return self.state_dir / "ipam"
