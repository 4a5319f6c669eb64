"""Registry mirrors and per-host TLS from containerd's ``certs.d/<host>/hosts.toml`` files.

A hosts directory holds one sub-directory per registry host (``docker.io``,
``registry.example.com``, ``localhost:5000`` or its file-name-safe form ``localhost_5000_``,
or ``_default`` for every registry without its own) with a ``hosts.toml`` like::

    server = "https://registry.example.com"      # the registry itself, tried last

    [host."https://mirror.example.com"]          # mirrors, tried first, in file order
      capabilities = ["pull", "resolve"]          # pull | resolve | push (default: all)
      ca = "mirror-ca.pem"                        # str or list; relative to the file
      skip_verify = false                         # true turns TLS verification off
      override_path = false                       # true: the URL path is the API root

The top-level keys other than ``server`` configure the server the same way. Parsing is
strict: a malformed file, an unknown key or a value of the wrong type raises
:class:`~libcontainerd.errors.InvalidArgument` naming the file and the key, never anything
else. Reading TOML needs :mod:`tomllib` (Python 3.11+) or the ``tomli`` package on 3.10.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import httpx

from libcontainerd._toml import loads as toml_loads
from libcontainerd.errors import FailedPrecondition, InvalidArgument
from libcontainerd.types.identifiers import safe_repr

__all__ = [
    "CAPABILITIES",
    "HostsConfig",
    "RegistryHost",
    "load_hosts_dir",
    "parse_hosts_toml",
]

CAPABILITIES = frozenset({"pull", "resolve", "push"})
MAX_HOSTS_FILE = 1024 * 1024
MAX_HOSTS = 64
DEFAULT_DIRECTORY = "_default"
_UNNAMED = "registry.invalid"

_KEYS = frozenset({"capabilities", "ca", "skip_verify", "override_path"})
_UNSUPPORTED = frozenset({"client", "header"})


@attrs.frozen
class RegistryHost:
    """One place to talk to for a registry: a mirror or the registry server itself.

    ``scheme`` is ``"https"``, ``"http"`` or None (HTTPS, falling back to plain HTTP only
    for loopback hosts and ``insecure_hosts``); ``host`` is ``name[:port]``; ``path`` is
    the API root (``/v2`` unless the file overrides it); ``ca`` are absolute CA file paths.
    """

    host: str
    scheme: str | None = None
    path: str = "/v2"
    capabilities: frozenset[str] = CAPABILITIES
    ca: tuple[str, ...] = ()
    skip_verify: bool = False

    def __attrs_post_init__(self) -> None:
        if self.scheme not in (None, "http", "https"):
            raise InvalidArgument(f"registry host scheme must be http or https, not {self.scheme}")
        if not self.host or any(c in self.host for c in "/?#@ \t\r\n\0"):
            raise InvalidArgument(f"registry host {safe_repr(self.host)} is not host[:port]")
        if not self.path.startswith("/"):
            raise InvalidArgument(f"registry API path {safe_repr(self.path)} must start with /")
        unknown = self.capabilities - CAPABILITIES
        if unknown:
            raise InvalidArgument(f"unknown registry host capabilities {sorted(unknown)}")

    @property
    def needs_tls_config(self) -> bool:
        """Whether this host needs its own TLS settings (extra CAs or no verification)."""
        return bool(self.ca) or self.skip_verify


@attrs.frozen
class HostsConfig:
    """The parsed ``hosts.toml`` of one registry: mirrors in order, then the server.

    When the file names no ``server`` (``server_named`` False), ``server`` carries only the
    top-level settings and the registry's own host is used.
    """

    mirrors: tuple[RegistryHost, ...] = ()
    server: RegistryHost = attrs.field(factory=lambda: RegistryHost(_UNNAMED))
    server_named: bool = False
    source: str = ""


def _where(source: str, key: str) -> str:
    return f"{source}: {key}" if source else key


def _host_entry(
    url_text: str, table: Mapping[str, Any], *, source: str, key: str, base_dir: Path | None
) -> RegistryHost:
    """Build the host described by ``url_text`` and the settings in ``table``."""
    for name in table:
        if name in _UNSUPPORTED:
            raise InvalidArgument(
                f"{_where(source, f'{key}{name}')} is not supported by this client; remove it "
                "(client certificates go in client_cert=, headers are not sent)"
            )
        if name not in _KEYS:
            raise InvalidArgument(
                f"{_where(source, f'{key}{name}')} is not a hosts.toml key; expected one of "
                f"server, host, {', '.join(sorted(_KEYS))}"
            )
    capabilities = CAPABILITIES
    raw_caps = table.get("capabilities")
    if raw_caps is not None:
        if not isinstance(raw_caps, list) or not all(isinstance(c, str) for c in raw_caps):
            raise InvalidArgument(
                f"{_where(source, key + 'capabilities')} must be a list of strings "
                '(e.g. ["pull", "resolve"])'
            )
        lowered = frozenset(c.lower() for c in raw_caps)
        unknown = lowered - CAPABILITIES
        if unknown:
            raise InvalidArgument(
                f"{_where(source, key + 'capabilities')} has unknown capability "
                f"{safe_repr(sorted(unknown)[0])}; allowed: pull, resolve, push"
            )
        if raw_caps:
            capabilities = lowered
    ca_value = table.get("ca")
    cas: list[str] = []
    if ca_value is not None:
        items = [ca_value] if isinstance(ca_value, str) else ca_value
        if not isinstance(items, list) or not all(isinstance(c, str) and c for c in items):
            raise InvalidArgument(
                f"{_where(source, key + 'ca')} must be a file path or a list of file paths"
            )
        for item in items:
            if "\0" in item:
                raise InvalidArgument(f"{_where(source, key + 'ca')} has a NUL byte")
            path = Path(item)
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            cas.append(str(path))
    flags: dict[str, bool] = {}
    for flag in ("skip_verify", "override_path"):
        value = table.get(flag, False)
        if not isinstance(value, bool):
            raise InvalidArgument(f"{_where(source, key + flag)} must be true or false")
        flags[flag] = value
    host = _parse_url(url_text, flags["override_path"], source=source, key=key)
    return attrs.evolve(
        host, capabilities=capabilities, ca=tuple(cas), skip_verify=flags["skip_verify"]
    )


def _parse_url(text: str, override_path: bool, *, source: str, key: str) -> RegistryHost:
    what = _where(source, key.rstrip(".") or "server")
    if not text or any(c in text for c in " \t\r\n\0"):
        raise InvalidArgument(f"{what}: {safe_repr(text)} is not a registry URL")
    scheme: str | None = None
    rest = text
    if "://" in text:
        scheme, rest = text.split("://", 1)
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise InvalidArgument(
                f"{what}: {safe_repr(text)} must be an http:// or https:// URL or a bare host"
            )
    try:
        url = httpx.URL(f"{scheme or 'https'}://{rest}")
        netloc = url.netloc.decode("ascii")
    except (httpx.InvalidURL, UnicodeError, ValueError, TypeError):
        raise InvalidArgument(f"{what}: {safe_repr(text)} is not a valid URL") from None
    if not url.host or url.userinfo or url.query or url.fragment:
        raise InvalidArgument(
            f"{what}: {safe_repr(text)} must be scheme://host[:port][/path] "
            "(no user, query or fragment)"
        )
    path = url.path
    if path and path != "/":
        path = posixpath.normpath(path)
        if not override_path and not path.endswith("/v2"):
            path = path.rstrip("/") + "/v2"
    elif override_path:
        path = "/"
    else:
        path = "/v2"
    try:
        return RegistryHost(host=netloc, scheme=scheme, path=path)
    except InvalidArgument as error:
        raise InvalidArgument(f"{what}: {error}") from None


def parse_hosts_toml(
    data: str | bytes, *, path: Path | str | None = None, base_dir: Path | str | None = None
) -> HostsConfig:
    """Parse the text of a ``hosts.toml`` (see the module documentation).

    ``path`` names the file in error messages; relative ``ca`` paths are resolved against
    ``base_dir`` (default: the file's directory). Raises :class:`InvalidArgument` for
    anything malformed, and :class:`Unimplemented` when no TOML parser is available.
    """
    source = str(path) if path is not None else "hosts.toml"
    base = Path(base_dir) if base_dir is not None else (Path(path).parent if path else None)
    if isinstance(data, bytes):
        if len(data) > MAX_HOSTS_FILE:
            raise InvalidArgument(f"{source} is {len(data)} bytes, more than the 1 MiB cap")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument(f"{source} is not UTF-8 text") from None
    elif isinstance(data, str):
        text = data
        if len(text) > MAX_HOSTS_FILE:
            raise InvalidArgument(f"{source} is more than the 1 MiB cap")
    else:
        raise InvalidArgument(f"hosts.toml data must be str or bytes, not {type(data).__name__}")
    document = toml_loads(text, what=source)
    server_text = document.get("server")
    hosts_table = document.get("host", {})
    top = {k: v for k, v in document.items() if k not in ("server", "host")}
    if server_text is not None and (not isinstance(server_text, str) or not server_text):
        raise InvalidArgument(f"{_where(source, 'server')} must be a non-empty URL string")
    if not isinstance(hosts_table, dict):
        raise InvalidArgument(
            f'{_where(source, "host")} must be tables like [host."https://mirror"]'
        )
    if len(hosts_table) > MAX_HOSTS:
        raise InvalidArgument(f"{source} lists more than {MAX_HOSTS} hosts")
    mirrors: list[RegistryHost] = []
    # TOML tables keep their file order in the parsed dict: mirrors are tried in that order.
    for name, table in hosts_table.items():
        key = f"host.{safe_repr(name)}."
        if not isinstance(table, dict):
            raise InvalidArgument(f"{_where(source, key.rstrip('.'))} must be a table")
        mirror = _host_entry(name, table, source=source, key=key, base_dir=base)
        mirrors.append(mirror)
    server = _host_entry(
        server_text if server_text is not None else _UNNAMED,
        top,
        source=source,
        key="",
        base_dir=base,
    )
    return HostsConfig(
        mirrors=tuple(mirrors),
        server=server,
        server_named=server_text is not None,
        source=source,
    )


def _directory_key(name: str) -> str:
    # containerd writes host:port as host_port_ in directory names (':' is awkward there).
    if name.endswith("_") and "_" in name[:-1]:
        head, _, port = name[:-1].rpartition("_")
        if head and port.isdigit():
            return f"{head}:{port}"
    return name


def load_hosts_dir(directory: Path | str) -> dict[str, HostsConfig]:
    """Every ``<directory>/<host>/hosts.toml``, keyed by registry host (``_default`` too).

    Host directories without a ``hosts.toml`` are skipped. A missing ``directory`` raises
    :class:`FailedPrecondition`; a malformed file :class:`InvalidArgument` naming it.
    """
    root = Path(directory)
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        raise FailedPrecondition(
            f"hosts directory {root} does not exist; create it or pass hosts_dir=None"
        ) from None
    except OSError as error:
        raise FailedPrecondition(f"cannot read hosts directory {root}: {error}") from None
    found: dict[str, HostsConfig] = {}
    for name in names:
        file = root / name / "hosts.toml"
        try:
            with open(file, "rb") as handle:
                data = handle.read(MAX_HOSTS_FILE + 1)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as error:
            raise FailedPrecondition(f"cannot read {file}: {error}") from None
        config = parse_hosts_toml(data, path=file)
        key = name if name == DEFAULT_DIRECTORY else _directory_key(name).lower()
        if key in found:
            raise InvalidArgument(
                f"{file}: registry {key} is configured twice in {root} "
                "(as host:port and host_port_); keep one directory"
            )
        found[key] = config
    return found
