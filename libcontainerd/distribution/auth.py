"""Registry authentication: ``WWW-Authenticate`` challenges and a bearer-token cache.

The parser follows RFC 7235's grammar (``scheme [token68 | param=value, ...]``, several
challenges separated by commas, quoted strings with backslash escapes) and refuses
anything else with :class:`~libcontainerd.errors.InvalidArgument`, so a hostile
registry cannot make the client fail in an unexpected way.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping

import attrs

from libcontainerd.errors import InvalidArgument
from libcontainerd.types.identifiers import frozen_str_mapping, safe_repr

__all__ = [
    "DEFAULT_TOKEN_LIFETIME",
    "Challenge",
    "TokenCache",
    "parse_www_authenticate",
]

DEFAULT_TOKEN_LIFETIME = 60.0
"""Seconds a token lives when the token server does not say (the distribution spec's default)."""

MAX_HEADER_LENGTH = 16 * 1024

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(?:,|$))")
_WS = " \t"


@attrs.frozen
class Challenge:
    """One authentication challenge: ``scheme`` (lowercase) and its parameters.

    Parameter names are lowercase; ``token68`` holds a bare token when the challenge
    carries one instead of parameters.
    """

    scheme: str
    params: Mapping[str, str] = attrs.field(factory=dict, converter=frozen_str_mapping)
    token68: str = ""

    @property
    def realm(self) -> str:
        """The ``realm`` parameter (the token endpoint URL for bearer challenges)."""
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        """The ``service`` parameter."""
        return self.params.get("service", "")

    @property
    def scope(self) -> str:
        """The ``scope`` parameter (space separated scopes), if the registry named one."""
        return self.params.get("scope", "")


def _refuse(header: str, reason: str) -> InvalidArgument:
    return InvalidArgument(
        f"malformed WWW-Authenticate header {safe_repr(header)}: {reason}; expected "
        '\'Bearer realm="https://...",service="..."\' or \'Basic realm="..."\''
    )


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    return pos


def _quoted(header: str, pos: int) -> tuple[str, int]:
    """Read the quoted string starting at ``header[pos] == '"'``."""
    out: list[str] = []
    pos += 1
    while pos < len(header):
        char = header[pos]
        if char == "\\":
            if pos + 1 >= len(header):
                break
            out.append(header[pos + 1])
            pos += 2
            continue
        if char == '"':
            return "".join(out), pos + 1
        out.append(char)
        pos += 1
    raise _refuse(header, "a quoted string is not terminated")


def parse_www_authenticate(header: str) -> tuple[Challenge, ...]:
    """Parse a ``WWW-Authenticate`` header value into its challenges, in order.

    Raises :class:`InvalidArgument` for input that does not follow the grammar.
    """
    if not isinstance(header, str):
        raise InvalidArgument(f"WWW-Authenticate must be a str, not {type(header).__name__}")
    if len(header) > MAX_HEADER_LENGTH:
        raise _refuse(header[:64], f"it is {len(header)} characters long")
    challenges: list[Challenge] = []
    pos = 0
    while True:
        while pos < len(header) and header[pos] in _WS + ",":
            pos += 1
        if pos >= len(header):
            break
        scheme_match = _TOKEN_RE.match(header, pos)
        if scheme_match is None:
            raise _refuse(header, f"expected an auth scheme at offset {pos}")
        scheme = scheme_match.group().lower()
        pos = scheme_match.end()
        if pos < len(header) and header[pos] not in _WS + ",":
            raise _refuse(header, f"unexpected {header[pos]!r} after scheme {scheme!r}")
        pos = _skip_ws(header, pos)
        params: dict[str, str] = {}
        token68 = ""
        token68_match = _TOKEN68_RE.match(header, pos)
        if token68_match is not None and not _TOKEN_RE.fullmatch(token68_match.group()):
            # Only a value with '=' padding or '/' is unambiguously a token68 (a lone
            # token there is the next challenge's scheme).
            token68 = token68_match.group()
            pos = token68_match.end()
        else:
            while pos < len(header):
                start = pos
                name_match = _TOKEN_RE.match(header, pos)
                if name_match is None:
                    break
                after = _skip_ws(header, name_match.end())
                if after >= len(header) or header[after] != "=":
                    pos = start  # a new challenge's scheme, not a parameter
                    break
                pos = _skip_ws(header, after + 1)
                if pos < len(header) and header[pos] == '"':
                    value, pos = _quoted(header, pos)
                else:
                    value_match = _TOKEN_RE.match(header, pos)
                    if value_match is None:
                        raise _refuse(header, f"parameter {name_match.group()!r} has no value")
                    value, pos = value_match.group(), value_match.end()
                params.setdefault(name_match.group().lower(), value)
                pos = _skip_ws(header, pos)
                if pos >= len(header):
                    break
                if header[pos] != ",":
                    raise _refuse(header, f"expected ',' at offset {pos}")
                pos = _skip_ws(header, pos + 1)
                while pos < len(header) and header[pos] in _WS + ",":
                    pos += 1
        challenges.append(Challenge(scheme, params, token68))
    return tuple(challenges)


@attrs.define
class _Entry:
    token: str
    expires_at: float


class TokenCache:
    """Bearer tokens keyed by ``(realm, service, scope)``, each dropped when it expires.

    Thread-safe. A token is considered expired a little before its announced end so a
    request never carries one that runs out on the way.
    """

    _MARGIN = 5.0

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str], _Entry] = {}
        self._lock = threading.Lock()

    def get(self, realm: str, service: str, scope: str) -> str | None:
        """The cached token for this key, or None when absent or expired."""
        key = (realm, service, scope)
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires_at <= now:
                del self._entries[key]
                return None
            return entry.token

    def put(self, realm: str, service: str, scope: str, token: str, expires_in: float) -> None:
        """Remember ``token`` for ``expires_in`` seconds (minus a safety margin)."""
        lifetime = max(0.0, expires_in - min(self._MARGIN, expires_in / 2))
        with self._lock:
            self._entries[(realm, service, scope)] = _Entry(token, time.monotonic() + lifetime)

    def clear(self) -> None:
        """Forget every token."""
        with self._lock:
            self._entries.clear()
