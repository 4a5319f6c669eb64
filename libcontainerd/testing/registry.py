"""A private OCI registry for tests: the real distribution registry on 127.0.0.1.

:func:`start_registry` runs Debian's ``docker-registry`` (package ``docker-registry``,
distribution 2.8) with a generated config: filesystem storage under ``base_dir``, deletes
enabled, listening on 127.0.0.1 only, optionally with TLS (a throwaway CA from
:mod:`libcontainerd.testing.tls`) and htpasswd basic auth (bcrypt hashes made by
``htpasswd`` from Debian's ``apache2-utils``) or bearer-token auth against a token server
the caller runs (:class:`TokenAuth`). It waits until ``GET /v2/`` answers and returns a
:class:`Registry`; :meth:`Registry.stop` ends the process. Files under
``base_dir`` (storage, config, log, certificates) are left for the caller to inspect.

The config is written as JSON, which the registry's YAML parser reads as YAML.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import httpx

from libcontainerd.errors import (
    FailedPrecondition,
    InvalidArgument,
    RuntimeCommandError,
    Unavailable,
)
from libcontainerd.testing._service import ServiceProcess
from libcontainerd.testing.tls import make_ca, make_server_cert

__all__ = ["Registry", "TokenAuth", "start_registry"]

_LOCALHOST = "127.0.0.1"
_PORT_ATTEMPTS = 5
_HTPASSWD_TIMEOUT = 30.0


def _token_text(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value or any(c in value for c in "\r\n\0"):
        raise InvalidArgument(
            f"token auth {attribute.name} must be a non-empty single-line str, got {value!r}"
        )


def _token_realm(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    _token_text(_, attribute, value)
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError, ValueError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise InvalidArgument(
            f"token auth realm {value!r} must be the http(s) URL of the token server"
        )


def _cert_file(_: object, attribute: attrs.Attribute[Path], value: Path) -> None:
    if not value.is_file():
        raise InvalidArgument(
            f"token auth {attribute.name} {value} is not a file: give the PEM certificate "
            "whose key signs the tokens"
        )


def _resolved_path(value: Path | str) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise InvalidArgument(f"token auth root_cert must be a file path, got {value!r}")
    return Path(value).resolve()


@attrs.frozen
class TokenAuth:
    """Bearer-token auth for :func:`start_registry` (the registry's ``auth: token`` section).

    ``realm`` is the token server's URL, which the registry names in its
    ``WWW-Authenticate`` challenges; ``service`` is the audience the tokens must carry
    (``aud``) and ``issuer`` their ``iss``. ``root_cert`` is a PEM file with the
    certificate(s) whose keys sign tokens: the registry trusts a token whose ``kid``
    header is the key id of one of those keys, or whose ``x5c`` chain ends at one.
    """

    realm: str = attrs.field(validator=_token_realm)
    service: str = attrs.field(validator=_token_text)
    issuer: str = attrs.field(validator=_token_text)
    root_cert: Path = attrs.field(converter=_resolved_path, validator=_cert_file)


class Registry(ServiceProcess):
    """A running private registry. Use it as a context manager or call :meth:`stop`."""

    _name = "the registry"
    _log_name = "registry.log"

    def __init__(
        self,
        *,
        binary: str,
        base_dir: Path,
        port: int,
        scheme: str,
        ca_path: Path | None,
        username: str | None,
        password: str | None,
        token_auth: TokenAuth | None = None,
    ) -> None:
        """Record the layout; :func:`start_registry` is the way to create a running one."""
        super().__init__(binary=binary, base_dir=base_dir)
        self._port = port
        self._scheme = scheme
        self._ca_path = ca_path
        self._username = username
        self._password = password
        self._token_auth = token_auth
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``: the registry host as it appears in image references."""
        return f"{_LOCALHOST}:{self._port}"

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1."""
        return self._port

    @property
    def scheme(self) -> str:
        """``http`` or ``https``."""
        return self._scheme

    @property
    def url(self) -> str:
        """Base URL, for example ``http://127.0.0.1:5000``."""
        return f"{self._scheme}://{self.host}"

    @property
    def ca_path(self) -> Path | None:
        """PEM bundle a client must trust for the TLS variant; None for plain HTTP."""
        return self._ca_path

    @property
    def username(self) -> str | None:
        """The htpasswd user, when basic auth is on."""
        return self._username

    @property
    def password(self) -> str | None:
        """The htpasswd password, when basic auth is on."""
        return self._password

    @property
    def token_auth(self) -> TokenAuth | None:
        """The bearer-token settings, when token auth is on."""
        return self._token_auth

    @property
    def storage_dir(self) -> Path:
        """Root directory of the registry's filesystem storage."""
        return self._base_dir / "storage"

    @property
    def config_path(self) -> Path:
        """The generated config file."""
        return self._base_dir / "config.yml"

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSL context that trusts this registry's CA (TLS variant only)."""
        if self._ca_path is None:
            raise FailedPrecondition(f"{self.url} serves plain HTTP: there is no CA to trust")
        return ssl.create_default_context(cafile=str(self._ca_path))

    def http_client(self, **kwargs: Any) -> httpx.Client:
        """An ``httpx.Client`` for this registry: base URL, CA and credentials set."""
        kwargs.setdefault("base_url", self.url)
        if self._ca_path is not None:
            kwargs.setdefault("verify", self.ssl_context())
        if self._username is not None and self._password is not None:
            kwargs.setdefault("auth", (self._username, self._password))
        return httpx.Client(**kwargs)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Registry {self.url} {state}>"

    def _launch(self) -> None:
        self._spawn([self._binary, "serve", str(self.config_path)])

    def _wait_ready(self, timeout: float) -> bool:
        """Wait for ``GET /v2/``; False if the process exited (the caller may retry a port)."""
        start = time.monotonic()
        verify: ssl.SSLContext | bool = self.ssl_context() if self._ca_path else False
        # With any auth on, an anonymous GET /v2/ is answered with a challenge.
        auth_on = self._username is not None or self._token_auth is not None
        expected = 401 if auth_on else 200
        last_error = ""
        with httpx.Client(verify=verify, timeout=2.0, trust_env=False) as client:

            def answers(_: float) -> bool:
                nonlocal last_error
                try:
                    status = client.get(f"{self.url}/v2/").status_code
                except httpx.HTTPError as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                    return False
                last_error = f"GET /v2/ answered {status}, expected {expected}"
                return status == expected

            outcome = self._poll(answers, timeout)
        if outcome is not None:
            return outcome
        raise Unavailable(
            f"the registry at {self.url} was not ready within {time.monotonic() - start:.1f}s "
            f"({last_error}); its log ({self.log_path}) ends with:\n{self._log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the registry: SIGTERM, then SIGKILL after ``timeout``. Idempotent."""
        with self._lock:
            self._terminate(timeout)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_LOCALHOST, 0))
        port: int = s.getsockname()[1]
        return port


def _htpasswd_line(username: str, password: str) -> str:
    if not username or any(c in username for c in ":\n\r"):
        raise InvalidArgument(
            f"htpasswd user {username!r} must be non-empty without ':' or newline"
        )
    if not password or any(c in password for c in "\n\r"):
        raise InvalidArgument("htpasswd password must be non-empty and hold no newline")
    tool = shutil.which("htpasswd")
    if tool is None:
        raise FailedPrecondition(
            "the htpasswd command was not found: install it (Debian package 'apache2-utils')"
        )
    # -B: bcrypt, the only hash the registry accepts; -i: password on stdin, not in argv.
    command = [tool, "-nBi", username]
    try:
        done = subprocess.run(
            command,
            input=password,
            capture_output=True,
            text=True,
            timeout=_HTPASSWD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeCommandError("htpasswd did not finish", command=command) from exc
    line = done.stdout.strip()
    if done.returncode != 0 or not line.startswith(f"{username}:$2"):
        raise RuntimeCommandError(
            f"htpasswd failed with exit code {done.returncode}: {done.stderr.strip()}",
            command=command,
            exit_code=done.returncode,
            stderr=done.stderr,
        )
    return line


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _config(
    registry: Registry,
    *,
    cert: tuple[Path, Path] | None,
    htpasswd_path: Path | None,
    token_auth: TokenAuth | None,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    http: dict[str, Any] = {
        "addr": registry.host,
        "secret": secrets.token_hex(16),
        "headers": {"X-Content-Type-Options": ["nosniff"]},
    }
    if cert is not None:
        http["tls"] = {"certificate": str(cert[0]), "key": str(cert[1])}
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(registry.storage_dir)},
            "delete": {"enabled": True},
            # Background upload purging is useless for a short-lived test registry.
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http,
    }
    if htpasswd_path is not None:
        config["auth"] = {
            "htpasswd": {"realm": "libcontainerd-test-registry", "path": str(htpasswd_path)}
        }
    if token_auth is not None:
        config["auth"] = {
            "token": {
                "realm": token_auth.realm,
                "service": token_auth.service,
                "issuer": token_auth.issuer,
                "rootcertbundle": str(token_auth.root_cert),
            }
        }
    if extra:
        config = _merge(config, extra)
    return config


def start_registry(
    base_dir: Path | str,
    *,
    tls: bool = False,
    htpasswd: tuple[str, str] | None = None,
    token_auth: TokenAuth | None = None,
    binary: str = "docker-registry",
    port: int = 0,
    timeout: float = 20.0,
    extra_config: Mapping[str, Any] | None = None,
) -> Registry:
    """Start a private registry on 127.0.0.1 and wait until ``GET /v2/`` answers.

    ``port=0`` picks a free port (retrying a few times if another process takes it
    first). ``tls=True`` makes a CA and a certificate for 127.0.0.1/localhost/::1 under
    ``base_dir/tls``. ``htpasswd=(user, password)`` turns on basic auth; then ``/v2/``
    answers 401 without credentials. ``token_auth`` turns on bearer-token auth instead: the
    registry sends clients to ``token_auth.realm`` for tokens and accepts those signed by
    the key of ``token_auth.root_cert`` (the caller runs that token server; it need not be
    up before the registry, which never calls it). ``extra_config`` is merged (recursively) over the
    generated config. Raises :class:`~libcontainerd.errors.Unavailable` with the log's
    tail if the registry does not come up; nothing is left running then.
    """
    if timeout <= 0:
        raise InvalidArgument(f"timeout must be positive, got {timeout}")
    if not 0 <= port <= 65535:
        raise InvalidArgument(f"port must be 0 (pick one) or 1..65535, got {port}")
    if token_auth is not None and not isinstance(token_auth, TokenAuth):
        raise InvalidArgument(f"token_auth must be a TokenAuth, not {type(token_auth).__name__}")
    if token_auth is not None and htpasswd is not None:
        raise InvalidArgument(
            "htpasswd and token_auth are exclusive: the registry takes one auth method"
        )
    found = shutil.which(binary)
    if found is None:
        raise FailedPrecondition(
            f"registry binary {binary!r} not found: install it (Debian package 'docker-registry')"
        )
    base = Path(base_dir).resolve()
    base.mkdir(parents=True, exist_ok=True)
    (base / "storage").mkdir(exist_ok=True)

    htpasswd_path: Path | None = None
    if htpasswd is not None:
        line = _htpasswd_line(*htpasswd)
        htpasswd_path = base / "htpasswd"
        htpasswd_path.write_text(line + "\n", encoding="utf-8")

    cert: tuple[Path, Path] | None = None
    ca_path: Path | None = None
    if tls:
        tls_dir = base / "tls"
        if (tls_dir / "ca.pem").exists() and (tls_dir / "server.pem").exists():
            ca_path = tls_dir / "ca.pem"
            cert = (tls_dir / "server.pem", tls_dir / "server-key.pem")
        else:
            ca = make_ca(tls_dir)
            cert = make_server_cert(ca, tls_dir)
            ca_path = ca.cert_path

    attempts = 1 if port else _PORT_ATTEMPTS
    failure = ""
    for _ in range(attempts):
        registry = Registry(
            binary=found,
            base_dir=base,
            port=port or _free_port(),
            scheme="https" if tls else "http",
            ca_path=ca_path,
            username=htpasswd[0] if htpasswd else None,
            password=htpasswd[1] if htpasswd else None,
            token_auth=token_auth,
        )
        registry.config_path.write_text(
            json.dumps(
                _config(
                    registry,
                    cert=cert,
                    htpasswd_path=htpasswd_path,
                    token_auth=token_auth,
                    extra=extra_config,
                ),
                indent=2,
            ),
            encoding="utf-8",
        )
        try:
            registry._launch()
            if registry._wait_ready(timeout):
                return registry
        except BaseException:
            registry.stop(timeout=5.0)
            raise
        code = registry._process.returncode if registry._process else None
        registry.stop(timeout=5.0)
        tail = registry._log_tail()
        failure = (
            f"the registry exited with code {code} before it was ready; its log "
            f"({registry.log_path}) ends with:\n{tail}"
        )
        # Another process may have taken the port between our probe and the bind.
        if "address already in use" not in tail[-400:]:
            break
    raise Unavailable(failure)
