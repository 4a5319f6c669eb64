"""CNI network configuration lists (``.conflist``): parse, check, write, and the bridge recipe.

A conflist names a network and the chain of plugins that connect a container to it. The
SDK reads the ones in a configuration directory (``/etc/cni/net.d`` by default) and
writes its own there (the default ``bridge`` network and those created through
``client.networks``), marked so that it only ever removes what it made.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from libcontainerd.errors import InvalidArgument, NotFound

__all__ = [
    "CNI_VERSION",
    "OWNER_KEY",
    "NetworkConfigList",
    "bridge_conflist",
    "load_conflists",
]

CNI_VERSION = "1.0.0"
"""The CNI spec version of the configurations the SDK writes."""

OWNER_KEY = "libcontainerd"
"""A top-level key marking a conflist the SDK created (CNI ignores unknown keys)."""

_SUFFIXES = (".conflist", ".conf", ".json")


def _check_name(name: str) -> None:
    if (
        not isinstance(name, str)
        or not name
        or len(name) > 64
        or not all(c.isalnum() or c in "._-" for c in name)
        or not name[0].isalnum()
    ):
        raise InvalidArgument(
            f"network name {name!r} must be 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


@attrs.frozen
class NetworkConfigList:
    """One parsed network configuration: a name, a CNI version and a plugin chain."""

    name: str
    cni_version: str
    plugins: tuple[Mapping[str, Any], ...]
    raw: Mapping[str, Any] = attrs.field(eq=False, repr=False)
    path: Path | None = attrs.field(default=None, eq=False)

    @classmethod
    def from_json(cls, value: Mapping[str, Any], path: Path | None = None) -> NetworkConfigList:
        """Check and wrap a conflist (or a single-plugin ``.conf``, made a one-plugin list)."""
        where = f" in {path}" if path is not None else ""
        if not isinstance(value, Mapping):
            raise InvalidArgument(f"a network configuration{where} must be a JSON object")
        if "plugins" not in value and "type" in value:
            single = {k: v for k, v in value.items() if k not in ("name", "cniVersion")}
            value = {
                "name": value.get("name"),
                "cniVersion": value.get("cniVersion"),
                "plugins": [single],
            }
        name = value.get("name")
        _check_name(name)  # type: ignore[arg-type]
        version = value.get("cniVersion") or "0.2.0"
        if not isinstance(version, str):
            raise InvalidArgument(f"cniVersion{where} must be a string such as {CNI_VERSION!r}")
        plugins = value.get("plugins")
        if not isinstance(plugins, list) or not plugins:
            raise InvalidArgument(f"network {name!r}{where} needs a non-empty 'plugins' list")
        for plugin in plugins:
            kind = plugin.get("type") if isinstance(plugin, Mapping) else None
            if not isinstance(kind, str) or not kind or "/" in kind:
                raise InvalidArgument(
                    f"network {name!r}{where}: every plugin needs a 'type' naming a plugin binary"
                )
        return cls(str(name), version, tuple(dict(p) for p in plugins), dict(value), path)

    @classmethod
    def load(cls, path: Path) -> NetworkConfigList:
        """Read and check one file."""
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFound(f"network configuration {path} does not exist") from None
        except (OSError, ValueError) as error:
            raise InvalidArgument(
                f"network configuration {path} is not valid JSON: {error}"
            ) from None
        return cls.from_json(value, path)

    @property
    def owned(self) -> bool:
        """Whether the SDK created this network (and may remove it)."""
        return bool(self.raw.get(OWNER_KEY))

    @property
    def types(self) -> tuple[str, ...]:
        """The plugin types of the chain, in order."""
        return tuple(str(plugin["type"]) for plugin in self.plugins)

    def supports(self, capability: str) -> bool:
        """Whether a plugin of the chain asks for the runtime ``capability`` (e.g. portMappings)."""
        return any(
            isinstance(plugin.get("capabilities"), Mapping)
            and plugin["capabilities"].get(capability)
            for plugin in self.plugins
        )

    @property
    def bridge(self) -> str | None:
        """The bridge device of a ``bridge`` plugin in the chain, if any."""
        for plugin in self.plugins:
            if plugin.get("type") == "bridge":
                return str(plugin.get("bridge") or "cni0")
        return None

    @property
    def subnets(self) -> tuple[str, ...]:
        """The subnets a ``host-local`` IPAM of the chain hands out."""
        found: list[str] = []
        for plugin in self.plugins:
            ipam = plugin.get("ipam")
            if not isinstance(ipam, Mapping):
                continue
            if isinstance(ipam.get("subnet"), str):
                found.append(ipam["subnet"])
            for rangeset in ipam.get("ranges") or ():
                for entry in rangeset if isinstance(rangeset, list) else ():
                    if isinstance(entry, Mapping) and isinstance(entry.get("subnet"), str):
                        found.append(entry["subnet"])
        return tuple(found)

    def to_json(self) -> dict[str, Any]:
        """The conflist as a JSON object."""
        return dict(self.raw)


def bridge_conflist(
    name: str, *, bridge: str, subnet: str, gateway: str | None = None, ipam_dir: Path
) -> NetworkConfigList:
    """The SDK's bridge recipe: bridge + host-local IPAM, portmap, firewall, loopback.

    Leases go to ``ipam_dir`` (not the system-wide ``/var/lib/cni``) so the SDK can find
    and account for everything it allocated.
    """
    _check_name(name)
    if (
        not isinstance(bridge, str)
        or not 1 <= len(bridge) <= 15
        or not all(c.isalnum() or c in "_-" for c in bridge)
    ):
        raise InvalidArgument(
            f"bridge device name {bridge!r} must be 1-15 letters, digits, '_' or '-'"
        )
    try:
        network = ipaddress.ip_network(subnet)
    except ValueError as error:
        raise InvalidArgument(
            f"subnet {subnet!r} is not a network such as 10.213.0.0/24: {error}"
        ) from None
    if network.num_addresses < 4:
        raise InvalidArgument(f"subnet {subnet!r} is too small for a bridge network")
    address_range: dict[str, Any] = {"subnet": str(network)}
    if gateway is not None:
        try:
            if ipaddress.ip_address(gateway) not in network:
                raise ValueError("not inside the subnet")
        except ValueError as error:
            raise InvalidArgument(f"gateway {gateway!r} of subnet {subnet}: {error}") from None
        address_range["gateway"] = gateway
    default_route = "0.0.0.0/0" if network.version == 4 else "::/0"
    value = {
        "cniVersion": CNI_VERSION,
        "name": name,
        OWNER_KEY: {"bridge": bridge, "subnet": str(network)},
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[address_range]],
                    "routes": [{"dst": default_route}],
                    "dataDir": str(ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall"},
            {"type": "loopback"},
        ],
    }
    return NetworkConfigList.from_json(value)


def load_conflists(directory: Path) -> dict[str, NetworkConfigList]:
    """Every valid network configuration in ``directory`` by name (first file wins, by name).

    Files that do not parse are skipped, as CNI runtimes do.
    """
    found: dict[str, NetworkConfigList] = {}
    try:
        entries = sorted(directory.iterdir())
    except FileNotFoundError:
        return found
    for path in entries:
        if path.suffix not in _SUFFIXES or not path.is_file():
            continue
        try:
            config = NetworkConfigList.load(path)
        except (InvalidArgument, NotFound):
            continue
        found.setdefault(config.name, config)
    return found
