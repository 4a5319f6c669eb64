"""Credentials from docker's ``config.json`` and ``docker-credential-*`` helpers.

The file lives at ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``. Three
sources are read, in docker's order of precedence for a registry host: a per-host
``credHelpers`` entry, the global ``credsStore``, then the ``auths`` map (base64
``auth`` = ``user:password``, or ``username``/``password``, plus ``identitytoken``).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from libcontainerd.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    RuntimeCommandError,
)
from libcontainerd.types.auth import Credentials
from libcontainerd.types.identifiers import safe_repr

__all__ = [
    "DockerConfig",
    "default_config_path",
    "load_docker_config",
    "normalize_registry_host",
    "parse_docker_config",
    "run_credential_helper",
]

MAX_CONFIG_SIZE = 4 * 1024 * 1024
DOCKER_HUB_SERVER = "https://index.docker.io/v1/"
_HELPER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def normalize_registry_host(key: str) -> str:
    """The host[:port] a config key or server URL names (``https://index.docker.io/v1/`` ->
    ``docker.io``)."""
    text = key.strip()
    lowered = text.lower()
    for prefix in ("https://", "http://"):
        if lowered.startswith(prefix):
            text = text[len(prefix) :]
            break
    host = text.split("/", 1)[0].lower()
    return "docker.io" if host in _HUB_ALIASES else host


def _server_url(host: str) -> str:
    """What docker passes to credential helpers for ``host``."""
    return DOCKER_HUB_SERVER if normalize_registry_host(host) == "docker.io" else host


def _string(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(
            f"docker config: {where}.{key} must be a string, not {type(value).__name__}"
        )
    return value


def _entry_credentials(key: str, entry: object) -> Credentials | None:
    where = f"auths[{safe_repr(key)}]"
    if not isinstance(entry, Mapping):
        raise InvalidArgument(f"docker config: {where} must be a JSON object")
    username = _string(entry, "username", where)
    password = _string(entry, "password", where)
    encoded = _string(entry, "auth", where)
    if encoded:
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidArgument(
                f"docker config: {where}.auth is not base64 of 'user:password'; "
                "run `docker login` again or fix the file"
            ) from None
        user, colon, secret = decoded.partition(":")
        if not colon:
            raise InvalidArgument(
                f"docker config: {where}.auth decodes to text without ':'; expected user:password"
            )
        username, password = user, secret
    identity = _string(entry, "identitytoken", where)
    registry_token = _string(entry, "registrytoken", where)
    if not (password or identity or registry_token):
        return None
    if password and not username:
        raise InvalidArgument(f"docker config: {where} has a password but no username")
    return Credentials(
        username=username,
        password=password,
        identity_token=identity,
        registry_token=registry_token,
    )


@attrs.frozen
class DockerConfig:
    """The credential parts of a docker ``config.json``.

    ``auths`` is keyed by normalised registry host; ``cred_helpers`` maps hosts to helper
    names (``docker-credential-<name>``); ``creds_store`` is the default helper.
    """

    auths: Mapping[str, Credentials] = attrs.field(factory=dict)
    cred_helpers: Mapping[str, str] = attrs.field(factory=dict)
    creds_store: str = ""
    path: Path | None = None

    def helper_for(self, host: str) -> str:
        """The helper name that serves ``host``, or ``""`` when none does."""
        key = normalize_registry_host(host)
        return self.cred_helpers.get(key, "") or self.creds_store

    def static_credentials(self, host: str) -> Credentials | None:
        """Credentials stored in ``auths`` for ``host`` (no helper is run)."""
        return self.auths.get(normalize_registry_host(host))

    def credentials(self, host: str, *, timeout: float = 10.0) -> Credentials | None:
        """Credentials for ``host``: from its helper if it has one, else from ``auths``.

        Runs a ``docker-credential-*`` program when configured (blocking, bounded by
        ``timeout`` seconds).
        """
        helper = self.helper_for(host)
        if helper:
            found = run_credential_helper(helper, _server_url(host), timeout=timeout)
            if found is not None:
                return found
        return self.static_credentials(host)


def parse_docker_config(data: str | bytes, *, path: Path | None = None) -> DockerConfig:
    """Parse the text of a docker ``config.json``.

    Raises :class:`InvalidArgument` naming the member that is wrong.
    """
    if isinstance(data, bytes):
        if len(data) > MAX_CONFIG_SIZE:
            raise InvalidArgument(f"docker config is {len(data)} bytes, more than the 4 MiB cap")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument("docker config is not UTF-8 text") from None
    if not isinstance(data, str):
        raise InvalidArgument(f"docker config must be str or bytes, not {type(data).__name__}")
    if len(data) > MAX_CONFIG_SIZE:
        raise InvalidArgument(f"docker config is {len(data)} characters, more than the cap")
    where = f" ({path})" if path else ""
    try:
        document = json.loads(data) if data.strip() else {}
    except (ValueError, RecursionError) as error:
        raise InvalidArgument(f"docker config{where} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise InvalidArgument(f"docker config{where} must be a JSON object")
    raw_auths = document.get("auths")
    raw_auths = {} if raw_auths is None else raw_auths
    if not isinstance(raw_auths, dict):
        raise InvalidArgument(f"docker config{where}: 'auths' must be a JSON object")
    auths: dict[str, Credentials] = {}
    for key, entry in raw_auths.items():
        found = _entry_credentials(key, entry)
        host = normalize_registry_host(key)
        if found is not None and host and host not in auths:
            auths[host] = found
    raw_helpers = document.get("credHelpers")
    raw_helpers = {} if raw_helpers is None else raw_helpers
    if not isinstance(raw_helpers, dict):
        raise InvalidArgument(f"docker config{where}: 'credHelpers' must be a JSON object")
    helpers: dict[str, str] = {}
    for key, name in raw_helpers.items():
        helpers[normalize_registry_host(key)] = _helper_name(name, f"credHelpers[{key!r}]")
    raw_store = document.get("credsStore")
    store = "" if raw_store in (None, "") else _helper_name(raw_store, "credsStore")
    return DockerConfig(auths=auths, cred_helpers=helpers, creds_store=store, path=path)


def _helper_name(name: object, where: str) -> str:
    if not isinstance(name, str) or _HELPER_NAME_RE.fullmatch(name) is None:
        raise InvalidArgument(
            f"docker config: {where} = {safe_repr(name)} is not a credential helper name "
            "(letters, digits, '_', '.', '-'; the program is docker-credential-<name>)"
        )
    return name


def default_config_path() -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    directory = os.environ.get("DOCKER_CONFIG")
    if directory:
        return Path(directory) / "config.json"
    return Path.home() / ".docker" / "config.json"


def load_docker_config(path: Path | str | None = None) -> DockerConfig:
    """Read the docker config at ``path`` (default: :func:`default_config_path`).

    A missing file is an empty config; a malformed one an :class:`InvalidArgument`.
    """
    target = Path(path) if path is not None else default_config_path()
    try:
        with open(target, "rb") as handle:
            data = handle.read(MAX_CONFIG_SIZE + 1)
    except FileNotFoundError:
        return DockerConfig(path=target)
    except OSError as error:
        raise FailedPrecondition(f"cannot read docker config {target}: {error}") from None
    return parse_docker_config(data, path=target)


def run_credential_helper(
    name: str, server_url: str, *, timeout: float = 10.0
) -> Credentials | None:
    """Ask ``docker-credential-<name> get`` for ``server_url``'s credentials.

    Returns None when the helper has none for that server. A helper that is missing,
    fails, times out or answers garbage raises a typed error naming it.
    """
    program = f"docker-credential-{_helper_name(name, 'helper')}"
    try:
        done = subprocess.run(
            [program, "get"],
            input=server_url.encode(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise FailedPrecondition(
            f"docker config names credential helper {name!r} but {program} is not on PATH; "
            "install it or remove it from config.json"
        ) from None
    except subprocess.TimeoutExpired:
        raise DeadlineExceeded(
            f"{program} did not answer within {timeout} s for {server_url}"
        ) from None
    output = done.stdout.decode("utf-8", "replace").strip()
    if done.returncode != 0:
        if "credentials not found" in output.lower():
            return None
        raise RuntimeCommandError(
            f"{program} get failed for {server_url}: {output or 'no output'}",
            command=[program, "get"],
            exit_code=done.returncode,
            stderr=done.stderr.decode("utf-8", "replace"),
        )
    try:
        answer = json.loads(output)
    except ValueError:
        raise InvalidArgument(f"{program} answered with invalid JSON for {server_url}") from None
    if not isinstance(answer, dict):
        raise InvalidArgument(f"{program} answered with JSON that is not an object")
    username = _string(answer, "Username", program)
    secret = _string(answer, "Secret", program)
    if not secret:
        return None
    if username == "<token>":
        return Credentials(identity_token=secret)
    if not username:
        return Credentials(registry_token=secret)
    return Credentials(username=username, password=secret)
