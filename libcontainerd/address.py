"""Daemon addresses: parse the forms users write into one typed value.

Accepted forms:

* ``unix:///run/containerd/containerd.sock`` or a bare absolute path;
* ``tcp://host:port`` (``host`` may be a bracketed IPv6 literal);
* ``npipe:////./pipe/containerd-containerd`` or ``\\\\.\\pipe\\name`` (Windows named pipes).
"""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Mapping

import attrs

from libcontainerd.errors import InvalidArgument

__all__ = [
    "ADDRESS_ENV",
    "DEFAULT_UNIX_ADDRESS",
    "DEFAULT_WINDOWS_ADDRESS",
    "NAMESPACE_ENV",
    "Address",
    "AddressKind",
    "default_address",
    "default_namespace",
    "parse_address",
    "resolve_address",
]

ADDRESS_ENV = "CONTAINERD_ADDRESS"
"""The environment variable naming containerd's address when none is passed (as for ``ctr``)."""
NAMESPACE_ENV = "CONTAINERD_NAMESPACE"
"""The environment variable naming the namespace when none is passed (as for ``ctr``)."""

DEFAULT_UNIX_ADDRESS = "/run/containerd/containerd.sock"
DEFAULT_WINDOWS_ADDRESS = r"\\.\pipe\containerd-containerd"
_MAX_UNIX_PATH = 107  # sun_path holds 108 bytes including the terminating NUL


class AddressKind(enum.Enum):
    """The transport an address names."""

    UNIX = "unix"
    TCP = "tcp"
    NPIPE = "npipe"


@attrs.frozen
class Address:
    """A parsed daemon address. ``target`` is what gRPC dials (for npipe: the pipe path)."""

    kind: AddressKind
    path: str = ""
    host: str = ""
    port: int = 0

    @property
    def target(self) -> str:
        """The gRPC target string (``unix:/path`` or ``host:port``); the pipe path for npipe."""
        if self.kind is AddressKind.UNIX:
            return f"unix:{self.path}"
        if self.kind is AddressKind.TCP:
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"{host}:{self.port}"
        return self.path

    def __str__(self) -> str:
        if self.kind is AddressKind.UNIX:
            return f"unix://{self.path}"
        if self.kind is AddressKind.TCP:
            return f"tcp://{self.target}"
        return "npipe://" + self.path.replace("\\", "/")


def default_address(host_os: str | None = None) -> str:
    """containerd's default address on this (or the given) operating system."""
    os_name = host_os or ("windows" if sys.platform == "win32" else "linux")
    return DEFAULT_WINDOWS_ADDRESS if os_name == "windows" else DEFAULT_UNIX_ADDRESS


def resolve_address(
    address: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    host_os: str | None = None,
) -> str:
    """The address to dial: ``address``, else ``$CONTAINERD_ADDRESS``, else the default."""
    if address is not None:
        return address
    env = os.environ if environ is None else environ
    return env.get(ADDRESS_ENV) or default_address(host_os)


def default_namespace(environ: Mapping[str, str] | None = None) -> str:
    """``$CONTAINERD_NAMESPACE`` when set and not empty, else ``"default"``."""
    env = os.environ if environ is None else environ
    return env.get(NAMESPACE_ENV) or "default"


def _unix(path: str, original: str) -> Address:
    if not path.startswith("/"):
        raise InvalidArgument(
            f"unix socket address {original!r} is not absolute; write unix:///absolute/path"
        )
    if "\x00" in path:
        raise InvalidArgument(f"unix socket address {original!r} contains a NUL byte")
    if len(path.encode()) > _MAX_UNIX_PATH:
        raise InvalidArgument(
            f"unix socket path {path!r} is {len(path.encode())} bytes; the kernel allows "
            f"{_MAX_UNIX_PATH}: use a shorter directory"
        )
    return Address(AddressKind.UNIX, path=path)


def _tcp(rest: str, original: str) -> Address:
    if rest.startswith("["):
        host, sep, port_text = rest[1:].partition("]:")
        if not sep:
            raise InvalidArgument(f"tcp address {original!r} needs [ipv6]:port")
    else:
        host, sep, port_text = rest.rpartition(":")
        if not sep:
            raise InvalidArgument(f"tcp address {original!r} has no port; write tcp://host:port")
    if not host or "/" in host:
        raise InvalidArgument(f"tcp address {original!r} has no valid host")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidArgument(f"tcp address {original!r} has an invalid port {port_text!r}")
    return Address(AddressKind.TCP, host=host, port=int(port_text))


def _npipe(path: str, original: str) -> Address:
    normal = path.replace("/", "\\")
    if not normal.lower().startswith("\\\\.\\pipe\\") or len(normal) <= len("\\\\.\\pipe\\"):
        raise InvalidArgument(
            f"named pipe address {original!r} must look like npipe:////./pipe/<name>"
        )
    return Address(AddressKind.NPIPE, path=normal)


def parse_address(text: str) -> Address:
    """Parse a daemon address; ``InvalidArgument`` says which form was expected."""
    if not isinstance(text, str) or not text:
        raise InvalidArgument(
            "daemon address is empty; pass e.g. unix:///run/containerd/containerd.sock"
        )
    scheme, sep, rest = text.partition("://")
    if not sep:
        if text.startswith("\\\\"):
            return _npipe(text, text)
        return _unix(text, text)
    scheme = scheme.lower()
    if scheme == "unix":
        return _unix(rest, text)
    if scheme == "tcp":
        return _tcp(rest, text)
    if scheme == "npipe":
        return _npipe(rest, text)
    raise InvalidArgument(
        f"daemon address {text!r} has unknown scheme {scheme!r}; use unix://, tcp:// or npipe://"
    )
