"""HTTP pieces every registry flow shares: retry policy, bodies, errors, loopback rules.

Nothing here performs I/O itself: :func:`read_body` and :func:`error_for` are flows (see
:mod:`libcontainerd.distribution._flow`) that a sync or an async driver runs.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import random
import ssl
import time

import attrs
import httpx

from libcontainerd.distribution._flow import Close, Flow, Read
from libcontainerd.errors import (
    AuthenticationError,
    DeadlineExceeded,
    NotFound,
    RegistryError,
    ResourceExhausted,
    Unavailable,
)

__all__ = [
    "MAX_REDIRECTS",
    "MAX_SMALL_BODY",
    "NON_IDEMPOTENT",
    "NOT_PROCESSED",
    "REDIRECTS",
    "RETRY_STATUSES",
    "RetryPolicy",
    "content_range_start",
    "error_for",
    "is_loopback",
    "read_body",
    "registry_errors",
    "ssl_refused_plain",
    "transport_error",
]

MAX_SMALL_BODY = 1024 * 1024
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Statuses that say the request was not acted on, so even a POST may be sent again.
NOT_PROCESSED = frozenset({429, 503})
NON_IDEMPOTENT = frozenset({"POST", "PATCH"})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10


@attrs.frozen
class RetryPolicy:
    """Bounded retries with capped exponential backoff and jitter.

    Attempt ``n`` (from 0) waits a random time between half and all of
    ``min(backoff_cap, backoff_base * 2**n)``; a ``Retry-After`` header is honoured up
    to ``max_retry_after`` seconds.
    """

    max_retries: int = attrs.field(default=4, validator=attrs.validators.ge(0))
    backoff_base: float = attrs.field(default=0.25, validator=attrs.validators.ge(0))
    backoff_cap: float = attrs.field(default=8.0, validator=attrs.validators.ge(0))
    max_retry_after: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        ceiling = min(self.backoff_cap, self.backoff_base * (2 ** min(attempt, 30)))
        return random.uniform(ceiling / 2, ceiling)

    def retry_after(self, header: str | None, attempt: int) -> float:
        """The wait a ``Retry-After`` header asks for (capped), else :meth:`delay`."""
        if header:
            text = header.strip()
            seconds: float | None = None
            if text.isdigit():
                seconds = float(text)
            else:
                try:
                    when = email.utils.parsedate_to_datetime(text)
                    seconds = when.timestamp() - time.time()
                except (TypeError, ValueError, IndexError, OverflowError):
                    seconds = None
            if seconds is not None:
                return min(max(0.0, seconds), self.max_retry_after)
        return self.delay(attempt)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (``name[:port]`` or ``[v6]:port``) is a loopback address."""
    name = host
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def ssl_refused_plain(error: BaseException) -> bool:
    """Whether ``error`` is a TLS handshake that failed because the peer speaks plain HTTP."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return False
        if isinstance(current, ssl.SSLError):
            return True
        current = current.__cause__ or current.__context__
    text = str(error).lower()
    return "wrong version number" in text or "record layer failure" in text


def registry_errors(data: bytes) -> tuple[list[str], str]:
    """The error codes and joined messages of a registry error body."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return [], ""
    codes: list[str] = []
    messages: list[str] = []
    if isinstance(document, dict) and isinstance(document.get("errors"), list):
        for item in document["errors"][:8]:
            if isinstance(item, dict):
                code, message = item.get("code"), item.get("message")
                if isinstance(code, str):
                    codes.append(code[:64])
                if isinstance(message, str):
                    messages.append(message[:200])
    return codes, "; ".join(messages)


def transport_error(host: str, error: httpx.TransportError, attempts: int) -> Exception:
    """The typed error for a connection failure after ``attempts`` attempts."""
    tried = f" ({attempts} attempts)" if attempts > 1 else ""
    if isinstance(error, httpx.TimeoutException):
        return DeadlineExceeded(f"registry {host} did not answer in time{tried}: {error}")
    return Unavailable(f"cannot reach registry {host}{tried}: {type(error).__name__}: {error}")


def read_body(response: httpx.Response, limit: int, what: str) -> Flow[bytes]:
    """Read all of ``response``'s body (at most ``limit`` bytes) and release it."""
    try:
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ResourceExhausted(
                f"{what} is {int(declared)} bytes, more than the {limit} byte limit"
            )
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk: bytes = yield Read(response)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise ResourceExhausted(f"{what} is larger than the {limit} byte limit")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        yield Close(response)


def error_for(response: httpx.Response, what: str) -> Flow[Exception]:
    """Read an error response and build the typed error for it."""
    status = response.status_code
    try:
        body = yield from read_body(response, 64 * 1024, what)
    except (ResourceExhausted, httpx.TransportError):
        body = b""
    codes, detail = registry_errors(body)
    suffix = f": {detail}" if detail else ""
    if status == 404:
        return NotFound(f"{what} not found{suffix}")
    if status in (401, 403):
        return AuthenticationError(
            f"{what}: access denied (HTTP {status}){suffix}", status=status, errors=codes
        )
    if status == 429:
        return RegistryError(
            f"{what}: the registry is rate limiting requests (HTTP 429); try later{suffix}",
            status=status,
            errors=codes,
        )
    return RegistryError(
        f"{what}: registry answered HTTP {status}{suffix}", status=status, errors=codes
    )


def content_range_start(header: str | None) -> int:
    """The first byte of a ``Content-Range`` header (-1 when unreadable)."""
    # "bytes 100-199/200"
    if not header:
        return -1
    text = header.strip()
    if text.lower().startswith("bytes"):
        text = text[5:].strip()
    start = text.split("-", 1)[0].strip()
    return int(start) if start.isdigit() else -1
