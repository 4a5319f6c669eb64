"""The files a container's network needs: ``/etc/hosts``, ``/etc/hostname``, ``/etc/resolv.conf``.

``resolv.conf`` is derived from the host's: on a network of its own (bridge or a named
CNI network) the container cannot reach the host's loopback, so loopback nameservers are
dropped (as Docker does); with the host's network it is kept as is. ``dns=`` servers and
search domains replace the host's.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path

import attrs

from libcontainerd.errors import InvalidArgument

__all__ = [
    "HOST_RESOLV_CONF",
    "DnsConfig",
    "ResolvConf",
    "host_hostname",
    "hosts_file",
    "read_host_resolv_conf",
    "write_file",
]

HOST_RESOLV_CONF = Path("/etc/resolv.conf")
# Where systemd-resolved keeps the real upstream servers behind its 127.0.0.53 stub.
_RESOLVED_UPSTREAM = Path("/run/systemd/resolve/resolv.conf")
_MAX_SEARCH = 6  # glibc reads at most six search domains


def _check_servers(_: object, __: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]) -> None:
    for server in value:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise InvalidArgument(
                f"DNS server {server!r} is not an IP address (dns= takes addresses such as "
                "'10.0.0.2')"
            ) from None


def _check_names(
    _: object, attribute: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]
) -> None:
    for name in value:
        if not name or any(c.isspace() for c in name) or "#" in name or ";" in name:
            raise InvalidArgument(
                f"{attribute.name} entry {name!r} must be a non-empty word without spaces, "
                "'#' or ';'"
            )


def _strings(value: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise InvalidArgument(f"expected a list of strings, not the str {value!r}")
    return tuple(value)


@attrs.frozen
class DnsConfig:
    """Custom resolver settings for ``new_container(..., dns=)``.

    Empty fields keep the host's value; ``dns=["10.0.0.2"]`` is short for
    ``DnsConfig(servers=["10.0.0.2"])``.
    """

    servers: tuple[str, ...] = attrs.field(default=(), converter=_strings, validator=_check_servers)
    search: tuple[str, ...] = attrs.field(default=(), converter=_strings, validator=_check_names)
    options: tuple[str, ...] = attrs.field(default=(), converter=_strings, validator=_check_names)

    @classmethod
    def of(cls, value: DnsConfig | Sequence[str] | None) -> DnsConfig:
        """Normalise what ``dns=`` accepts: ``None``, a list of servers, or a DnsConfig."""
        if value is None:
            return cls()
        if isinstance(value, DnsConfig):
            return value
        if isinstance(value, str):
            raise InvalidArgument(f"dns must be a list of server addresses, not the str {value!r}")
        return cls(servers=tuple(value))

    def to_json(self) -> dict[str, list[str]]:
        """A JSON-ready form (stored with the container's network plan)."""
        return {
            "servers": list(self.servers),
            "search": list(self.search),
            "options": list(self.options),
        }


@attrs.frozen
class ResolvConf:
    """The parts of a ``resolv.conf`` a container needs."""

    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> ResolvConf:
        """Read ``nameserver``, ``search``/``domain`` and ``options`` lines; ignore the rest.

        As in glibc, the last ``search`` or ``domain`` line wins.
        """
        servers: list[str] = []
        search: list[str] = []
        options: list[str] = []
        for line in text.splitlines():
            words = line.split("#", 1)[0].split(";", 1)[0].split()
            if not words:
                continue
            keyword, args = words[0], words[1:]
            if keyword == "nameserver" and args:
                # An address with a zone (fe80::1%eth0) is kept as written.
                try:
                    ipaddress.ip_address(args[0].split("%", 1)[0])
                except ValueError:
                    continue
                servers.append(args[0])
            elif keyword == "search":
                search = args[:_MAX_SEARCH]
            elif keyword == "domain" and args:
                search = args[:1]
            elif keyword == "options":
                options.extend(args)
        return cls(tuple(servers), tuple(search), tuple(options))

    def render(self) -> str:
        """The file's text."""
        lines = [f"nameserver {server}" for server in self.nameservers]
        if self.search:
            lines.append("search " + " ".join(self.search))
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "".join(line + "\n" for line in lines)

    def without_loopback(self) -> ResolvConf:
        """The same without loopback nameservers (unreachable from a network of its own)."""
        kept = tuple(
            server
            for server in self.nameservers
            if not ipaddress.ip_address(server.split("%", 1)[0]).is_loopback
        )
        return attrs.evolve(self, nameservers=kept)

    def with_custom(self, dns: DnsConfig) -> ResolvConf:
        """Apply ``dns=``: each non-empty field replaces the host's."""
        return ResolvConf(
            dns.servers or self.nameservers,
            dns.search or self.search,
            dns.options or self.options,
        )


def read_host_resolv_conf(path: Path = HOST_RESOLV_CONF) -> ResolvConf:
    """The host's resolver settings (the upstream servers behind systemd-resolved's stub)."""
    try:
        parsed = ResolvConf.parse(path.read_text(errors="replace"))
    except FileNotFoundError:
        return ResolvConf()
    if parsed.nameservers == ("127.0.0.53",) and path == HOST_RESOLV_CONF:
        try:
            upstream = ResolvConf.parse(_RESOLVED_UPSTREAM.read_text(errors="replace"))
        except OSError:
            return parsed
        return attrs.evolve(upstream, search=parsed.search or upstream.search)
    return parsed


def hosts_file(hostname: str, addresses: Sequence[str], *, base: str | None = None) -> str:
    """An ``/etc/hosts`` naming ``hostname`` at each of ``addresses``.

    ``base`` (the host's file, for the host network) replaces the usual localhost lines.
    Without addresses the name points at the loopback address, so it always resolves.
    """
    if base is None:
        lines = [
            "127.0.0.1\tlocalhost",
            "::1\tlocalhost ip6-localhost ip6-loopback",
        ]
    else:
        lines = base.rstrip("\n").splitlines()
    for address in addresses or ["127.0.0.1"]:
        lines.append(f"{address}\t{hostname}")
    return "".join(line + "\n" for line in lines)


def host_hostname() -> str:
    """The host's name (what a container on the host network sees by default)."""
    return socket.gethostname()


def write_file(path: Path, text: str) -> None:
    """Write ``text`` into ``path`` in place of its content (a bind mount keeps the inode)."""
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
