"""Published ports: the ``[host_ip:]host_port:container_port[/protocol]`` notation.

A :class:`PortMapping` is what the ``portmap`` CNI plugin receives (as one entry of the
``portMappings`` capability) and what ``new_container(..., ports=[...])`` accepts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from libcontainerd.errors import InvalidArgument

__all__ = ["PROTOCOLS", "PortMapping", "parse_ports"]

PROTOCOLS = ("tcp", "udp", "sctp")
"""The protocols the portmap plugin forwards."""

_FORMAT_HELP = (
    "write a published port as [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTOCOL], e.g. "
    "'127.0.0.1:8080:80/tcp' or '9000:9000/udp' (an IPv6 host address in brackets: "
    "'[::1]:8080:80')"
)


def _check_port(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidArgument(f"{attribute.name} {value!r} must be a port number from 1 to 65535")


def _check_protocol(_: object, __: attrs.Attribute[str], value: str) -> None:
    if value not in PROTOCOLS:
        raise InvalidArgument(f"protocol {value!r} must be one of {', '.join(PROTOCOLS)}")


def _check_host_ip(_: object, __: attrs.Attribute[str], value: str) -> None:
    if value == "":
        return
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise InvalidArgument(
            f"host address {value!r} is not an IP address; {_FORMAT_HELP}"
        ) from None


@attrs.frozen
class PortMapping:
    """One published port: traffic to ``host_ip:host_port`` reaches ``container_port``.

    An empty ``host_ip`` publishes on every host address.
    """

    host_port: int = attrs.field(validator=_check_port)
    container_port: int = attrs.field(validator=_check_port)
    protocol: str = attrs.field(default="tcp", validator=_check_protocol)
    host_ip: str = attrs.field(default="", validator=_check_host_ip)

    @classmethod
    def parse(cls, text: str) -> PortMapping:
        """Parse ``[host_ip:]host_port:container_port[/protocol]``."""
        if not isinstance(text, str) or not text:
            raise InvalidArgument(f"published port {text!r} is empty or not a str; {_FORMAT_HELP}")
        body, slash, protocol = text.partition("/")
        if slash and not protocol:
            raise InvalidArgument(f"published port {text!r} ends in '/'; {_FORMAT_HELP}")
        host_ip = ""
        if body.startswith("["):
            address, bracket, rest = body[1:].partition("]")
            if not bracket or not rest.startswith(":"):
                raise InvalidArgument(f"published port {text!r}: unclosed '['; {_FORMAT_HELP}")
            host_ip, body = address, rest[1:]
            if ":" not in address:
                raise InvalidArgument(
                    f"published port {text!r}: brackets are for IPv6 addresses; {_FORMAT_HELP}"
                )
        parts = body.split(":")
        if len(parts) == 3 and not host_ip:
            host_ip, *parts = parts
            if not host_ip:
                raise InvalidArgument(
                    f"published port {text!r}: empty host address; {_FORMAT_HELP}"
                )
        if len(parts) != 2:
            raise InvalidArgument(f"published port {text!r} is malformed; {_FORMAT_HELP}")
        ports = []
        for part in parts:
            if not part.isascii() or not part.isdigit() or len(part) > 5:
                raise InvalidArgument(
                    f"published port {text!r}: {part!r} is not a port number; {_FORMAT_HELP}"
                )
            ports.append(int(part))
        return cls(ports[0], ports[1], protocol or "tcp", host_ip)

    def __str__(self) -> str:
        host = ""
        if self.host_ip:
            host = f"[{self.host_ip}]:" if ":" in self.host_ip else f"{self.host_ip}:"
        return f"{host}{self.host_port}:{self.container_port}/{self.protocol}"

    def to_cni(self) -> dict[str, Any]:
        """The entry of the ``portMappings`` runtime capability for this port."""
        entry: dict[str, Any] = {
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol,
        }
        if self.host_ip:
            entry["hostIP"] = self.host_ip
        return entry

    @classmethod
    def from_cni(cls, entry: Mapping[str, Any]) -> PortMapping:
        """The inverse of :meth:`to_cni`."""
        try:
            return cls(
                int(entry["hostPort"]),
                int(entry["containerPort"]),
                str(entry.get("protocol", "tcp")),
                str(entry.get("hostIP", "")),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidArgument(f"port mapping {entry!r} is malformed: {error}") from None


def parse_ports(ports: Iterable[str | PortMapping] | None) -> tuple[PortMapping, ...]:
    """Normalise ``ports=`` (strings or :class:`PortMapping` values); duplicates are refused."""
    if ports is None:
        return ()
    if isinstance(ports, str):
        raise InvalidArgument(f"ports must be a list of strings, not the str {ports!r}")
    result: list[PortMapping] = []
    seen: set[tuple[str, int, str]] = set()
    for port in ports:
        mapping = port if isinstance(port, PortMapping) else PortMapping.parse(port)
        key = (mapping.host_ip, mapping.host_port, mapping.protocol)
        if key in seen:
            raise InvalidArgument(f"host port {mapping} is published twice")
        seen.add(key)
        result.append(mapping)
    return tuple(result)
