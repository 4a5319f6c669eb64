"""``client.networks``: the CNI networks a client can attach containers to.

Networks are the conflists in the configuration directory. Those the SDK creates (the
default ``bridge`` network on first use, and every ``create``) are written there as
``libcontainerd-<name>.conflist`` with an owner mark, so a restarted caller finds them
and ``remove`` never deletes a network someone else configured.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
from pathlib import Path

import attrs

from libcontainerd.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from libcontainerd.network.conflist import NetworkConfigList, bridge_conflist, load_conflists
from libcontainerd.network.settings import NetworkSettings

__all__ = ["MODES", "Network", "NetworkStore"]

MODES = ("none", "host")
"""Network modes that are not CNI networks: loopback only, and the host's namespace."""

_FILE_PREFIX = "libcontainerd-"
_AUTO_SUBNETS = tuple(f"10.213.{n}.0/24" for n in range(1, 255))


@attrs.frozen
class Network:
    """A CNI network as ``client.networks`` lists it."""

    name: str
    plugins: tuple[str, ...]
    bridge: str | None
    subnets: tuple[str, ...]
    owned: bool
    """Whether the SDK created it (only those can be removed through the SDK)."""
    path: Path | None

    @classmethod
    def of(cls, config: NetworkConfigList) -> Network:
        """Describe a parsed conflist."""
        return cls(
            config.name, config.types, config.bridge, config.subnets, config.owned, config.path
        )


def _host_routes() -> list[ipaddress.IPv4Network]:
    """The host's IPv4 routes (from /proc/net/route), to keep new subnets clear of them."""
    routes: list[ipaddress.IPv4Network] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) < 8:
                continue
            destination = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
            mask = ipaddress.IPv4Address(int(fields[7], 16).to_bytes(4, "little"))
            if int(mask) == 0:
                continue  # the default route overlaps everything
            routes.append(ipaddress.IPv4Network(f"{destination}/{mask}", strict=False))
    return routes


def _bridge_name(name: str) -> str:
    candidate = f"lcd-{name}"
    if len(candidate) <= 15 and all(c.isalnum() or c in "_-" for c in candidate):
        return candidate
    return "lcd-" + hashlib.sha256(name.encode()).hexdigest()[:10]


class NetworkStore:
    """Create, list, look up and remove CNI networks in one configuration directory."""

    def __init__(self, settings: NetworkSettings) -> None:
        self.settings = settings

    def _configs(self) -> dict[str, NetworkConfigList]:
        return load_conflists(self.settings.config_dir)

    def list(self) -> list[Network]:
        """Every network in the configuration directory, by name."""
        return [Network.of(config) for _, config in sorted(self._configs().items())]

    def get(self, name: str) -> Network:
        """One network; ``NotFound`` when no conflist of that name exists."""
        return Network.of(self.config(name))

    def config(self, name: str) -> NetworkConfigList:
        """The parsed conflist of network ``name`` (the default one is created on first use)."""
        if name in MODES:
            raise InvalidArgument(f"{name!r} is a network mode, not a CNI network")
        configs = self._configs()
        if name in configs:
            return configs[name]
        if name == self.settings.default_name:
            return self._write(
                bridge_conflist(
                    name,
                    bridge=self.settings.default_bridge,
                    subnet=self.settings.default_subnet,
                    ipam_dir=self.settings.ipam_dir,
                ),
                exclusive=False,
            )
        raise NotFound(
            f"network {name!r} is not configured in {self.settings.config_dir}; create it with "
            f"client.networks.create({name!r}) or use one of: "
            f"{', '.join([*MODES, self.settings.default_name, *sorted(configs)])}"
        )

    def create(
        self,
        name: str,
        *,
        subnet: str | None = None,
        gateway: str | None = None,
        bridge: str | None = None,
    ) -> Network:
        """Create a bridge network (bridge + host-local IPAM + portmap + firewall + loopback).

        Without ``subnet`` a free ``10.213.N.0/24`` is picked (one no other network and no
        host route uses); without ``bridge`` the device is named ``lcd-<name>``.
        """
        if name in MODES:
            raise InvalidArgument(f"{name!r} is a network mode; pick another network name")
        configs = self._configs()
        if name in configs:
            raise AlreadyExists(
                f"network {name!r} exists already ({configs[name].path}); remove it first"
            )
        taken = [ipaddress.ip_network(s, strict=False) for c in configs.values() for s in c.subnets]
        if subnet is None:
            taken += _host_routes()
            subnet = next(
                (
                    s
                    for s in _AUTO_SUBNETS
                    if not any(ipaddress.ip_network(s).overlaps(t) for t in taken)
                ),
                None,
            )
            if subnet is None:
                raise FailedPrecondition("no free 10.213.N.0/24 subnet is left; pass subnet=")
        else:
            try:
                wanted = ipaddress.ip_network(subnet)
            except ValueError as error:
                raise InvalidArgument(f"subnet {subnet!r}: {error}") from None
            clash = [str(t) for t in taken if t.version == wanted.version and t.overlaps(wanted)]
            if clash:
                raise AlreadyExists(f"subnet {subnet} overlaps a configured network's {clash[0]}")
        bridges = {c.bridge for c in configs.values()}
        device = bridge or _bridge_name(name)
        if device in bridges:
            raise AlreadyExists(
                f"bridge device {device!r} is used by another network; pass bridge="
            )
        config = bridge_conflist(
            name, bridge=device, subnet=subnet, gateway=gateway, ipam_dir=self.settings.ipam_dir
        )
        return Network.of(self._write(config, exclusive=True))

    def _write(self, config: NetworkConfigList, *, exclusive: bool) -> NetworkConfigList:
        directory = self.settings.config_dir
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{_FILE_PREFIX}{config.name}.conflist"
        temporary = directory / f".{path.name}.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(config.to_json(), indent=2) + "\n", encoding="utf-8")
        if exclusive:
            try:
                os.link(temporary, path)
            except FileExistsError:
                raise AlreadyExists(f"network configuration {path} exists already") from None
            finally:
                temporary.unlink()
        else:
            os.replace(temporary, path)
        return NetworkConfigList.load(path)

    def remove(self, name: str, *, in_use: bool = False) -> None:
        """Remove a network the SDK created, with its bridge device and IPAM leases.

        ``in_use`` (the caller's check that containers are attached) refuses the removal.
        """
        config = (
            self.config(name) if name != self.settings.default_name else self._configs().get(name)
        )
        if config is None:
            raise NotFound(f"network {name!r} does not exist")
        if not config.owned or config.path is None:
            raise FailedPrecondition(
                f"network {name!r} ({config.path}) was not created by libcontainerd; remove "
                "its configuration file by hand"
            )
        if in_use:
            raise FailedPrecondition(
                f"network {name!r} still has containers attached; delete them first"
            )
        config.path.unlink(missing_ok=True)
        if config.bridge and Path("/sys/class/net", config.bridge).exists():
            subprocess.run(
                ["ip", "link", "delete", config.bridge], capture_output=True, check=False
            )
        shutil.rmtree(self.settings.ipam_dir / name, ignore_errors=True)
