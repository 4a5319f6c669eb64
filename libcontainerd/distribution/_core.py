"""The registry protocol, written once as flows (see :mod:`._flow`).

:class:`RegistryCore` holds the state both clients share (token cache, the scheme and
authentication challenge learnt per host, credentials) and has one method per
operation that returns a flow. Nothing here performs I/O itself.
"""

from __future__ import annotations

import base64
import email.utils
import functools
import hashlib
import io
import ipaddress
import json
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, BinaryIO, Literal, TypeAlias, TypeVar

import attrs
import httpx

from libcontainerd.errors import (
    AuthenticationError,
    DataLoss,
    DeadlineExceeded,
    DigestMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    RegistryError,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
)
from libcontainerd.types import descriptor as media
from libcontainerd.types import platform as platforms
from libcontainerd.types.auth import Credentials
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.digest import split_digest
from libcontainerd.types.platform import Matcher, Platform
from libcontainerd.types.progress import ProgressEvent, ProgressKind
from libcontainerd.types.reference import Reference

from ._flow import Call, Close, Flow, Parallel, Read, Send, Sleep
from .auth import DEFAULT_TOKEN_LIFETIME, Challenge, TokenCache, parse_www_authenticate
from .docker_config import DockerConfig, normalize_registry_host
from .hosts import DEFAULT_DIRECTORY, HostsConfig, RegistryHost
from .store import BlobSink, BlobSource

__all__ = [
    "MANIFEST_ACCEPT",
    "CredentialSource",
    "Manifest",
    "PlatformSpec",
    "ProgressCallback",
    "PullResult",
    "RegistryCore",
    "RetryPolicy",
]

MANIFEST_ACCEPT = ", ".join(
    (
        media.MEDIA_TYPE_OCI_INDEX,
        media.MEDIA_TYPE_OCI_MANIFEST,
        media.MEDIA_TYPE_DOCKER_MANIFEST_LIST,
        media.MEDIA_TYPE_DOCKER_MANIFEST,
    )
)
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
MAX_SMALL_BODY = 1024 * 1024
MAX_GRAPH_DEPTH = 8
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Statuses that say the request was not acted on, so even a POST may be sent again.
_NOT_PROCESSED = frozenset({429, 503})
_NON_IDEMPOTENT = frozenset({"POST", "PATCH"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
_SCHEMA1 = frozenset(
    {media.MEDIA_TYPE_DOCKER_SCHEMA1_MANIFEST, media.MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED_MANIFEST}
)
_GENERIC_TYPES = frozenset({"", "application/json", "text/plain", "application/octet-stream"})
_NON_DISTRIBUTABLE = frozenset(
    {
        media.MEDIA_TYPE_DOCKER_FOREIGN_LAYER,
        media.MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP,
        media.MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER,
        media.MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER_GZIP,
        media.MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER_ZSTD,
    }
)
DEFAULT_CHUNK_THRESHOLD = 64 * 1024 * 1024
_T = TypeVar("_T")

ProgressCallback: TypeAlias = Callable[[ProgressEvent], None]
CredentialSource: TypeAlias = (
    Credentials | Mapping[str, Credentials] | Callable[[str], Credentials | None] | None
)
PlatformSpec: TypeAlias = (
    Literal["all"] | str | Platform | Matcher | Sequence[str | Platform] | None
)


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


@attrs.frozen
class Manifest:
    """A fetched manifest or index: its descriptor, verified bytes and parsed JSON."""

    descriptor: Descriptor
    data: bytes = attrs.field(repr=False)
    content: Mapping[str, Any] = attrs.field(repr=False, hash=False)

    def children(self) -> tuple[Descriptor, ...]:
        """The descriptors this manifest points at (manifests of an index; config + layers)."""
        return _children(self.descriptor.media_type, self.content)


@attrs.frozen
class PullResult:
    """What :meth:`pull_graph` stored: the root, every manifest/index and every blob."""

    reference: str
    target: Descriptor
    manifests: tuple[Descriptor, ...]
    blobs: tuple[Descriptor, ...]


def _base_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _is_loopback(host: str) -> bool:
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


def _ssl_refused_plain(error: BaseException) -> bool:
    """Whether ``error`` is a TLS handshake that failed because the peer speaks plain HTTP."""
    import ssl

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


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        raise RegistryError(f"{what} is not valid JSON") from None
    if not isinstance(document, dict):
        raise RegistryError(f"{what} is JSON but not an object")
    return document


def _children(media_type: str, content: Mapping[str, Any]) -> tuple[Descriptor, ...]:
    try:
        if media.is_index(media_type):
            manifests = content.get("manifests") or []
            if not isinstance(manifests, list):
                raise InvalidArgument("'manifests' is not a list")
            return tuple(Descriptor.from_dict(item) for item in manifests)
        if media.is_manifest(media_type) and _base_type(media_type) not in _SCHEMA1:
            config = content.get("config")
            layers = content.get("layers") or []
            if not isinstance(layers, list):
                raise InvalidArgument("'layers' is not a list")
            found = [Descriptor.from_dict(config)] if config is not None else []
            found.extend(Descriptor.from_dict(item) for item in layers)
            return tuple(found)
    except InvalidArgument as error:
        raise RegistryError(f"manifest of type {media_type} is malformed: {error}") from None
    return ()


def _manifest_media_type(content_type: str | None, data: bytes, what: str) -> str:
    document = _json_object(data, what)
    declared = document.get("mediaType")
    header = _base_type(content_type)
    if document.get("schemaVersion") == 1 or header in _SCHEMA1 or declared in _SCHEMA1:
        kind = declared if isinstance(declared, str) and declared else header
        raise Unimplemented(
            f"{what} is a Docker schema 1 manifest ({kind or 'schemaVersion 1'}), which is "
            "deprecated and not supported; push the image again with a current tool "
            "(schema 2 or OCI)"
        )
    if isinstance(declared, str) and declared:
        return declared
    if header not in _GENERIC_TYPES:
        return header
    if "manifests" in document:
        return media.MEDIA_TYPE_OCI_INDEX
    if "config" in document and "layers" in document:
        return media.MEDIA_TYPE_OCI_MANIFEST
    raise RegistryError(f"{what} has no media type and is neither a manifest nor an index")


def _digest_of(data: bytes, like: str = "sha256:") -> str:
    algorithm = like.split(":", 1)[0] or "sha256"
    if algorithm not in ("sha256", "sha512"):
        algorithm = "sha256"
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def _matchers(spec: PlatformSpec) -> tuple[list[Matcher], bool, str]:
    """``(matchers, take_all, description)`` for a platform request."""
    if spec is None:
        host = platforms.default()
        return [platforms.default_matcher()], False, host.format()
    if isinstance(spec, str):
        if spec == "all":
            return [platforms.all_platforms()], True, "all"
        parsed = Platform.parse(spec)
        return [platforms.only(parsed)], False, parsed.format()
    if isinstance(spec, Platform):
        return [platforms.only(spec)], False, spec.format()
    if isinstance(spec, Matcher):
        return [spec], False, repr(spec)
    if isinstance(spec, Sequence):
        result: list[Matcher] = []
        names: list[str] = []
        for item in spec:
            parsed = Platform.parse(item) if isinstance(item, str) else item
            if not isinstance(parsed, Platform):
                raise InvalidArgument(
                    f"platform list entries must be str or Platform, not {type(item).__name__}"
                )
            result.append(platforms.only(parsed))
            names.append(parsed.format())
        if not result:
            raise InvalidArgument("platform list is empty; name at least one or pass 'all'")
        return result, False, ", ".join(names)
    raise InvalidArgument(
        f"platform must be None, 'all', 'os/arch[/variant]', a Platform, a Matcher or a "
        f"list of platforms, not {type(spec).__name__}"
    )


def select_platforms(children: Sequence[Descriptor], spec: PlatformSpec) -> list[Descriptor]:
    """The entries of an index that ``spec`` asks for (see :meth:`RegistryCore.pull_graph`).

    Raises :class:`NotFound` naming the requested platform when nothing matches.
    """
    matchers, take_all, wanted = _matchers(spec)
    if take_all:
        return list(children)
    chosen: list[Descriptor] = []
    for matcher in matchers:
        best: Descriptor | None = None
        for child in children:
            if child.platform is None or not matcher.match(child.platform):
                continue
            if best is None or (
                best.platform is not None and matcher.less(child.platform, best.platform)
            ):
                best = child
        if best is not None and best not in chosen:
            chosen.append(best)
    if not chosen:
        offered = sorted({c.platform.format() for c in children if c.platform is not None})
        raise NotFound(
            f"no manifest for platform {wanted} in the index; it offers "
            f"{', '.join(offered) or 'no platforms'}; pass platform= one of those, or 'all'"
        )
    return chosen


def _registry_errors(data: bytes) -> tuple[list[str], str]:
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


class RegistryCore:
    """Shared, I/O-free state and the protocol flows of the registry clients."""

    def __init__(
        self,
        *,
        credentials: CredentialSource = None,
        docker_config: DockerConfig | None = None,
        insecure_hosts: Iterable[str] = (),
        retry: RetryPolicy | None = None,
        helper_timeout: float = 10.0,
        max_manifest_size: int = MAX_MANIFEST_SIZE,
        chunk_threshold: int = DEFAULT_CHUNK_THRESHOLD,
        hosts: Mapping[str, HostsConfig] | None = None,
    ) -> None:
        if isinstance(insecure_hosts, str):
            raise InvalidArgument("insecure_hosts must be a list of host[:port] strings")
        self.credentials = credentials
        self.docker_config = docker_config
        self.insecure_hosts = frozenset(normalize_registry_host(h) for h in insecure_hosts)
        self.retry = retry or RetryPolicy()
        self.helper_timeout = helper_timeout
        self.max_manifest_size = max_manifest_size
        self.chunk_threshold = chunk_threshold
        self.tokens = TokenCache()
        self._schemes: dict[str, str] = {}
        self._challenges: dict[str, Challenge] = {}
        self._credential_cache: dict[str, Credentials | None] = {}
        self.hosts: Mapping[str, HostsConfig] = dict(hosts or {})

    # --- hosts -----------------------------------------------------------------------

    def hosts_config(self, domain: str) -> HostsConfig | None:
        """The ``hosts.toml`` settings for ``domain`` (its own, else ``_default``), if any."""
        key = normalize_registry_host(domain)
        found = self.hosts.get(key) or self.hosts.get(domain.lower())
        return found if found is not None else self.hosts.get(DEFAULT_DIRECTORY)

    def server(self, domain: str) -> RegistryHost:
        """The registry server of ``domain`` (from ``hosts.toml`` when it names one)."""
        config = self.hosts_config(domain)
        if config is None:
            return RegistryHost(self.api_host(domain))
        if config.server_named:
            return config.server
        return attrs.evolve(config.server, host=self.api_host(domain), scheme=None)

    def endpoints(self, domain: str, capability: str) -> tuple[RegistryHost, ...]:
        """Where to send ``capability`` requests for ``domain``, in the order to try them.

        Mirrors from ``hosts.toml`` come first (those with the capability), the server
        last; :class:`FailedPrecondition` when the file leaves no host for it.
        """
        config = self.hosts_config(domain)
        candidates = (*(config.mirrors if config else ()), self.server(domain))
        chosen = tuple(host for host in candidates if capability in host.capabilities)
        if not chosen:
            raise FailedPrecondition(
                f"no host in {config.source if config else 'the configuration'} may "
                f"{capability} for registry {domain}; add {capability!r} to a host's "
                "capabilities"
            )
        return chosen

    def push_endpoint(self, domain: str) -> RegistryHost:
        """The host pushes to ``domain`` go to: the first one with the push capability."""
        return self.endpoints(domain, "push")[0]

    def on_hosts(
        self,
        domain: str,
        capability: str,
        attempt: Callable[[RegistryHost], Flow[_T]],
    ) -> Flow[_T]:
        """Run ``attempt`` against each host for ``capability`` until one succeeds.

        A host that fails (not found, unreachable, refusing, answering garbage) hands over
        to the next; the last host's error is raised, with the earlier ones named in it.
        """
        hosts = self.endpoints(domain, capability)
        failures: list[str] = []
        for index, host in enumerate(hosts):
            try:
                return (yield from attempt(host))
            except (NotFound, Unavailable, DeadlineExceeded, RegistryError, DataLoss) as error:
                if index == len(hosts) - 1:
                    if failures:
                        error.message = f"{error.message} (also tried: {'; '.join(failures)})"
                        error.args = (error.message,)
                    raise
                failures.append(f"{host.host}: {error.message}")
        raise AssertionError("unreachable: endpoints() never returns an empty tuple")

    @staticmethod
    def api_host(domain: str) -> str:
        """The host that serves the API for a reference's domain."""
        return "registry-1.docker.io" if domain == "docker.io" else domain

    def plain_http_allowed(self, host: str) -> bool:
        """Plain HTTP is allowed for loopback hosts and hosts named in ``insecure_hosts``."""
        return _is_loopback(host) or normalize_registry_host(host) in self.insecure_hosts

    def base_url(self, domain: str | RegistryHost) -> str:
        """``scheme://host`` for the registry of ``domain`` (or that host) as known now."""
        host = self.server(domain) if isinstance(domain, str) else domain
        return f"{host.scheme or self._schemes.get(host.host, 'https')}://{host.host}"

    def _url(self, host: RegistryHost, target: str) -> httpx.URL:
        """The URL of ``target`` (an API path ``/v2/...`` or an absolute URL) on ``host``."""
        if "://" in target:
            return httpx.URL(target)
        if target.startswith("/v2/") or target == "/v2":
            target = host.path.rstrip("/") + target[3:]
        return httpx.URL(self.base_url(host) + target)

    # --- credentials -----------------------------------------------------------------

    def _credentials(self, domain: str) -> Flow[Credentials | None]:
        if domain in self._credential_cache:
            return self._credential_cache[domain]
        source = self.credentials
        found: Credentials | None = None
        if isinstance(source, Credentials):
            found = source
        elif isinstance(source, Mapping):
            wanted = normalize_registry_host(domain)
            for key, value in source.items():
                if normalize_registry_host(key) == wanted:
                    found = value
                    break
        elif callable(source):
            found = yield Call(source, (domain,))
        config = self.docker_config
        if found is None and config is not None:
            # A credential helper is a subprocess: the async driver runs it in a thread.
            found = yield Call(
                functools.partial(config.credentials, timeout=self.helper_timeout), (domain,)
            )
        if found is not None and not isinstance(found, Credentials):
            raise InvalidArgument(
                f"credentials for {domain} must be a Credentials, not {type(found).__name__}"
            )
        self._credential_cache[domain] = found
        return found

    # --- requests --------------------------------------------------------------------

    def request(
        self,
        domain: str,
        method: str,
        target: str,
        *,
        endpoint: RegistryHost | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes = b"",
        scopes: Sequence[str] = (),
        retry: bool = True,
    ) -> Flow[httpx.Response]:
        """Send a request to ``domain``'s registry with auth, scheme fallback and retries.

        ``endpoint`` is the host to talk to (default: :meth:`push_endpoint`, which is the
        registry server unless ``hosts.toml`` says otherwise). ``target`` is
        an API path (``/v2/...``) or an absolute URL the registry gave (a ``Location``).
        Redirects are followed here, not by httpx, so that every hop is checked: plain
        HTTP only to loopback or insecure hosts, and the ``Authorization`` header only to
        the registry host itself. POST and PATCH are retried only when the request cannot
        have been processed (the connection failed, or HTTP 429/503). Returns the
        response with its body unread; the caller must yield :class:`Close` for it.
        """
        server = endpoint or self.push_endpoint(domain)
        host = server.host
        attempt = 0
        redirects = 0
        auth_attempted = False
        extra_scope = ""
        idempotent = method.upper() not in _NON_IDEMPOTENT
        while True:
            url = self._url(server, target)
            netloc = url.netloc.decode("ascii", "replace")
            if url.scheme != "https" and not self._plain_ok(server, netloc):
                raise RegistryError(
                    f"registry {domain} sent the client to {url.scheme}://{netloc}, which is not "
                    "HTTPS; plain HTTP is only used for loopback hosts and insecure_hosts"
                )
            send_headers = dict(headers or {})
            if netloc == host:
                authorization = yield from self._authorization(domain, scopes, extra_scope, server)
                if authorization:
                    send_headers["Authorization"] = authorization
            request = httpx.Request(method, url, headers=send_headers, content=content)
            try:
                response: httpx.Response = yield Send(request)
            except httpx.TransportError as error:
                if (
                    url.scheme == "https"
                    and "://" not in target
                    and server.scheme is None
                    and self.plain_http_allowed(host)
                    and _ssl_refused_plain(error)
                    and self._schemes.get(host) != "http"
                ):
                    self._schemes[host] = "http"
                    continue
                unsent = isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
                if not retry or not (idempotent or unsent) or attempt >= self.retry.max_retries:
                    raise self._transport_error(host, error, attempt + 1) from error
                yield Sleep(self.retry.delay(attempt))
                attempt += 1
                continue
            if response.status_code in _REDIRECTS:
                location = response.headers.get("Location", "")
                yield Close(response)
                redirects += 1
                if not location or redirects > MAX_REDIRECTS:
                    raise RegistryError(
                        f"registry {domain} answered {method} {url.path} with "
                        f"{'too many redirects' if location else 'a redirect without Location'}",
                        status=response.status_code,
                    )
                try:
                    target = str(url.join(location))
                except (httpx.InvalidURL, ValueError, TypeError):
                    raise RegistryError(
                        f"registry {domain} redirected to an invalid URL {location[:200]!r}",
                        status=response.status_code,
                    ) from None
                if response.status_code == 303 or (
                    response.status_code in (301, 302) and method.upper() == "POST"
                ):
                    method, content = "GET", b""
                    headers = {
                        k: v
                        for k, v in (headers or {}).items()
                        if k.lower() not in ("content-type", "content-length")
                    }
                continue
            if response.status_code == 401:
                header = response.headers.get("WWW-Authenticate", "")
                yield Close(response)
                challenge = self._pick_challenge(header)
                known = self._challenges.get(host)
                if challenge is not None and not auth_attempted and netloc == host:
                    auth_attempted = True
                    self._challenges[host] = challenge
                    extra_scope = challenge.scope
                    if known is not None and known.scheme == "bearer":
                        # The token we sent was refused: do not reuse it.
                        self.tokens.clear()
                    continue
                raise self._unauthorized(domain, method, url, server)
            if (
                retry
                and response.status_code in RETRY_STATUSES
                and (idempotent or response.status_code in _NOT_PROCESSED)
                and attempt < self.retry.max_retries
            ):
                wait = self.retry.retry_after(response.headers.get("Retry-After"), attempt)
                yield Close(response)
                yield Sleep(wait)
                attempt += 1
                continue
            return response

    def _plain_ok(self, server: RegistryHost, netloc: str) -> bool:
        # A hosts.toml that names an http:// URL is the operator's explicit choice.
        return self.plain_http_allowed(netloc) or (
            server.scheme == "http" and netloc == server.host
        )

    def _credential_key(self, domain: str, server: RegistryHost) -> str:
        """Whose credentials a host gets: the registry's own, or a mirror's by its name."""
        return domain if server.host == self.api_host(domain) else server.host

    def _unauthorized(
        self, domain: str, method: str, url: httpx.URL, server: RegistryHost
    ) -> AuthenticationError:
        creds = self._credential_cache.get(self._credential_key(domain, server))
        if creds is None or creds.anonymous:
            hint = "no credentials were found for it; pass credentials= or run `docker login`"
        else:
            hint = "the credentials given were refused; check the user name and password"
        return AuthenticationError(
            f"registry {server.host} refused {method} {url.path}: authentication required ({hint})",
            status=401,
        )

    @staticmethod
    def _transport_error(host: str, error: httpx.TransportError, attempts: int) -> Exception:
        tried = f" ({attempts} attempts)" if attempts > 1 else ""
        if isinstance(error, httpx.TimeoutException):
            return DeadlineExceeded(f"registry {host} did not answer in time{tried}: {error}")
        return Unavailable(f"cannot reach registry {host}{tried}: {type(error).__name__}: {error}")

    @staticmethod
    def _pick_challenge(header: str) -> Challenge | None:
        if not header:
            return None
        try:
            challenges = parse_www_authenticate(header)
        except InvalidArgument:
            return None
        for scheme in ("bearer", "basic"):
            for challenge in challenges:
                if challenge.scheme == scheme:
                    return challenge
        return None

    def _authorization(
        self, domain: str, scopes: Sequence[str], extra_scope: str, server: RegistryHost
    ) -> Flow[str | None]:
        challenge = self._challenges.get(server.host)
        if challenge is None:
            return None
        creds = yield from self._credentials(self._credential_key(domain, server))
        if challenge.scheme == "basic":
            if creds is None or not creds.username or not creds.password:
                return None
            pair = f"{creds.username}:{creds.password}".encode()
            return "Basic " + base64.b64encode(pair).decode("ascii")
        if creds is not None and creds.registry_token:
            return f"Bearer {creds.registry_token}"
        scope = " ".join(sorted(set(scopes) | set(extra_scope.split())))
        token = self.tokens.get(challenge.realm, challenge.service, scope)
        if token is None:
            token = yield from self._fetch_token(domain, challenge, scope, creds)
        return f"Bearer {token}"

    def _fetch_token(
        self, domain: str, challenge: Challenge, scope: str, creds: Credentials | None
    ) -> Flow[str]:
        realm = challenge.realm
        try:
            realm_url = httpx.URL(realm)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise AuthenticationError(
                f"registry {domain} sent a bearer challenge with an invalid realm {realm!r}"
            ) from None
        realm_host = realm_url.netloc.decode("ascii", "replace")
        if realm_url.scheme not in ("http", "https") or not realm_host:
            raise AuthenticationError(
                f"registry {domain} sent a bearer realm {realm!r} that is not an http(s) URL"
            )
        if realm_url.scheme == "http" and not self.plain_http_allowed(realm_host):
            raise AuthenticationError(
                f"registry {domain} asks for tokens from {realm} over plain HTTP; that is "
                f"only allowed for loopback hosts or hosts in insecure_hosts"
            )
        scopes = scope.split()
        headers = {"Accept": "application/json"}
        if creds is not None and creds.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token,
                "service": challenge.service,
                "scope": scope,
                "client_id": "libcontainerd",
            }
            response = yield from self._token_post(realm_url, form, headers)
        elif creds is not None and creds.username and creds.password:
            form = {
                "grant_type": "password",
                "username": creds.username,
                "password": creds.password,
                "service": challenge.service,
                "scope": scope,
                "client_id": "libcontainerd",
            }
            response = yield from self._token_post(realm_url, form, headers)
            if response.status_code in (400, 404, 405, 501):
                # No OAuth endpoint there: use the basic-auth GET every token server has.
                yield Close(response)
                pair = f"{creds.username}:{creds.password}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
                params = [("service", challenge.service), ("account", creds.username)]
                response = yield from self._token_get(realm_url, params, scopes, headers)
        else:
            params = [("service", challenge.service)] if challenge.service else []
            response = yield from self._token_get(realm_url, params, scopes, headers)
        status = response.status_code
        body = yield from self.read_body(response, MAX_SMALL_BODY, f"token from {realm}")
        if status in (401, 403):
            raise AuthenticationError(
                f"token server {realm} refused the credentials for registry {domain} "
                f"(HTTP {status}); check the user name and password",
                status=status,
            )
        if status != 200:
            raise RegistryError(
                f"token server {realm} for registry {domain} answered HTTP {status}",
                status=status,
            )
        document = _json_object(body, f"token response from {realm}")
        token = document.get("token") or document.get("access_token")
        if not isinstance(token, str) or not token:
            raise AuthenticationError(
                f"token server {realm} for registry {domain} sent no token", status=status
            )
        expires_in = document.get("expires_in")
        lifetime = (
            float(expires_in)
            if isinstance(expires_in, int | float)
            and not isinstance(expires_in, bool)
            and expires_in > 0
            else DEFAULT_TOKEN_LIFETIME
        )
        self.tokens.put(realm, challenge.service, scope, token, lifetime)
        return token

    def _token_post(
        self, url: httpx.URL, form: Mapping[str, str], headers: Mapping[str, str]
    ) -> Flow[httpx.Response]:
        content = httpx.QueryParams({k: v for k, v in form.items() if v}).__str__().encode()
        send_headers = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
        return (
            yield from self._plain(
                "POST", url, headers=send_headers, content=content, host=str(url.host)
            )
        )

    def _token_get(
        self,
        url: httpx.URL,
        params: Sequence[tuple[str, str]],
        scopes: Sequence[str],
        headers: Mapping[str, str],
    ) -> Flow[httpx.Response]:
        query: list[tuple[str, str | int | float | bool | None]] = [
            *params,
            *(("scope", s) for s in scopes),
        ]
        full = url.copy_merge_params(httpx.QueryParams(query))
        return (yield from self._plain("GET", full, headers=headers, host=str(url.host)))

    def _plain(
        self,
        method: str,
        url: httpx.URL,
        *,
        headers: Mapping[str, str],
        content: bytes = b"",
        host: str,
    ) -> Flow[httpx.Response]:
        """A request without registry auth (token endpoints), with retries and redirects."""
        attempt = 0
        redirects = 0
        origin = (url.scheme, url.netloc)
        while True:
            send_headers = dict(headers)
            if (url.scheme, url.netloc) != origin:
                send_headers.pop("Authorization", None)
            request = httpx.Request(method, url, headers=send_headers, content=content)
            try:
                response: httpx.Response = yield Send(request)
            except httpx.TransportError as error:
                if attempt >= self.retry.max_retries:
                    raise self._transport_error(host, error, attempt + 1) from error
                yield Sleep(self.retry.delay(attempt))
                attempt += 1
                continue
            if response.status_code in _REDIRECTS and redirects < MAX_REDIRECTS:
                location = response.headers.get("Location", "")
                yield Close(response)
                redirects += 1
                try:
                    url = url.join(location)
                except (httpx.InvalidURL, ValueError, TypeError):
                    raise AuthenticationError(
                        f"token server {host} redirected to an invalid URL {location[:200]!r}"
                    ) from None
                netloc = url.netloc.decode("ascii", "replace")
                if url.scheme != "https" and not (
                    url.scheme == "http" and self.plain_http_allowed(netloc)
                ):
                    raise AuthenticationError(
                        f"token server {host} redirected to {url.scheme}://{netloc}, which is "
                        "not HTTPS; plain HTTP is only used for loopback hosts and insecure_hosts"
                    )
                if response.status_code == 303 or (
                    response.status_code in (301, 302) and method == "POST"
                ):
                    method, content = "GET", b""
                    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.retry.max_retries:
                wait = self.retry.retry_after(response.headers.get("Retry-After"), attempt)
                yield Close(response)
                yield Sleep(wait)
                attempt += 1
                continue
            return response

    def read_body(self, response: httpx.Response, limit: int, what: str) -> Flow[bytes]:
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

    def error(self, response: httpx.Response, what: str) -> Flow[Exception]:
        """Read an error response and build the typed error for it."""
        status = response.status_code
        try:
            body = yield from self.read_body(response, 64 * 1024, what)
        except (ResourceExhausted, httpx.TransportError):
            body = b""
        codes, detail = _registry_errors(body)
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

    # --- resolve and manifests -------------------------------------------------------

    def resolve(self, ref: Reference) -> Flow[tuple[Descriptor, bytes | None]]:
        """Resolve ``ref`` to the descriptor of its manifest or index.

        Returns the manifest bytes too when they had to be fetched to verify the digest
        (a tag), so callers do not fetch them twice. With ``hosts.toml`` mirrors, a tag
        is resolved on the hosts with the ``resolve`` capability and a digest on those
        with ``pull``, in order, the server last.
        """
        capability = "pull" if ref.digest else "resolve"
        return (
            yield from self.on_hosts(
                ref.domain, capability, lambda host: self._resolve_at(ref, host)
            )
        )

    def _resolve_at(
        self, ref: Reference, endpoint: RegistryHost
    ) -> Flow[tuple[Descriptor, bytes | None]]:
        target = ref.digest or ref.tag
        path = f"/v2/{ref.path}/manifests/{target}"
        scopes = (f"repository:{ref.path}:pull",)
        headers = {"Accept": MANIFEST_ACCEPT}
        response = yield from self.request(
            ref.domain, "HEAD", path, endpoint=endpoint, headers=headers, scopes=scopes
        )
        status = response.status_code
        yield Close(response)
        if status == 404:
            raise NotFound(f"image {ref} not found in registry {endpoint.host}")
        if status == 200 and ref.digest:
            header_digest = response.headers.get("Docker-Content-Digest", "")
            content_type = _base_type(response.headers.get("Content-Type"))
            length = response.headers.get("Content-Length", "")
            if content_type in _SCHEMA1:
                raise Unimplemented(
                    f"image {ref} is a Docker schema 1 manifest ({content_type}), which is "
                    "not supported; push it again with a current tool"
                )
            if (
                length.isdigit()
                and content_type not in _GENERIC_TYPES
                and header_digest in ("", ref.digest)
                and int(length) <= self.max_manifest_size
            ):
                # The digest is the one asked for: the bytes will be checked on fetch.
                return Descriptor(
                    media_type=content_type, digest=ref.digest, size=int(length)
                ), None
        data, content_type, header_digest = yield from self._get_manifest(ref, target, "", endpoint)
        digest = _digest_of(data, ref.digest or header_digest or "sha256:")
        if ref.digest and digest != ref.digest:
            raise DigestMismatch(
                f"registry {ref.domain} sent a manifest for {ref} whose digest is {digest}",
                expected=ref.digest,
                actual=digest,
            )
        if header_digest and _digest_of(data, header_digest) != header_digest:
            raise DigestMismatch(
                f"registry {ref.domain} announced digest {header_digest} for {ref} but the "
                "bytes it sent do not match it",
                expected=header_digest,
                actual=_digest_of(data, header_digest),
            )
        media_type = _manifest_media_type(content_type, data, f"manifest of {ref}")
        return Descriptor(media_type=media_type, digest=digest, size=len(data)), data

    def _get_manifest(
        self, ref: Reference, target: str, media_type: str, endpoint: RegistryHost
    ) -> Flow[tuple[bytes, str, str]]:
        path = f"/v2/{ref.path}/manifests/{target}"
        accept = MANIFEST_ACCEPT if not media_type else f"{media_type}, {MANIFEST_ACCEPT}"
        response = yield from self.request(
            ref.domain,
            "GET",
            path,
            endpoint=endpoint,
            headers={"Accept": accept},
            scopes=(f"repository:{ref.path}:pull",),
        )
        if response.status_code != 200:
            what = f"manifest {target} of {ref.domain}/{ref.path}"
            if response.status_code == 404:
                yield Close(response)
                raise NotFound(f"image {ref.domain}/{ref.path}@{target} not found")
            raise (yield from self.error(response, what))
        content_type = response.headers.get("Content-Type", "")
        header_digest = response.headers.get("Docker-Content-Digest", "").strip()
        data = yield from self.read_body(
            response, self.max_manifest_size, f"manifest {target} of {ref.domain}/{ref.path}"
        )
        return data, content_type, header_digest

    def fetch_manifest(self, ref: Reference, descriptor: Descriptor | None) -> Flow[Manifest]:
        """Fetch and verify the manifest ``descriptor`` (resolving ``ref`` when None)."""
        data: bytes | None = None
        if descriptor is None:
            descriptor, data = yield from self.resolve(ref)
        if data is None:
            wanted = descriptor

            def attempt(endpoint: RegistryHost) -> Flow[bytes]:
                fetched, _, _ = yield from self._get_manifest(
                    ref, wanted.digest, wanted.media_type, endpoint
                )
                _verify(fetched, wanted, f"manifest {wanted.digest} of {ref.name}")
                return fetched

            data = yield from self.on_hosts(ref.domain, "pull", attempt)
        content = _json_object(data, f"manifest {descriptor.digest} of {ref.name}")
        media_type = _manifest_media_type(
            descriptor.media_type, data, f"manifest {descriptor.digest} of {ref.name}"
        )
        if _base_type(media_type) != _base_type(descriptor.media_type):
            descriptor = attrs.evolve(descriptor, media_type=media_type)
        return Manifest(descriptor=descriptor, data=data, content=content)

    # --- blobs -----------------------------------------------------------------------

    def blob_exists(
        self, ref: Reference, digest: str, endpoint: RegistryHost | None = None
    ) -> Flow[bool]:
        """Whether the repository of ``ref`` has the blob ``digest``.

        Asks ``endpoint``, by default the host pushes go to (mirrors are not asked).
        """
        split_digest(digest)
        response = yield from self.request(
            ref.domain,
            "HEAD",
            f"/v2/{ref.path}/blobs/{digest}",
            endpoint=endpoint or self.push_endpoint(ref.domain),
            scopes=(f"repository:{ref.path}:pull",),
        )
        status = response.status_code
        yield Close(response)
        if status == 200:
            return True
        if status == 404:
            return False
        raise RegistryError(
            f"checking blob {digest} in {ref.name}: registry answered HTTP {status}",
            status=status,
        )

    def fetch_blob(
        self,
        ref: Reference,
        descriptor: Descriptor,
        sink: BlobSink,
        progress: ProgressCallback | None = None,
    ) -> Flow[Descriptor]:
        """Stream blob ``descriptor`` into ``sink``, verifying size and digest on the way.

        A dropped connection resumes with ``Range`` from the bytes already received
        (hashing continues where it stopped). Nothing is committed unless verified.
        """
        emit = progress or (lambda event: None)
        digest = descriptor.digest
        split_digest(digest)  # refuse a malformed digest before any traffic
        if sink.exists(digest):
            emit(
                ProgressEvent(
                    ProgressKind.EXISTS,
                    digest,
                    descriptor.media_type,
                    descriptor.size,
                    descriptor.size,
                    str(ref),
                )
            )
            return descriptor
        return (
            yield from self.on_hosts(
                ref.domain,
                "pull",
                lambda host: self._fetch_blob_at(ref, descriptor, sink, emit, host),
            )
        )

    def _fetch_blob_at(
        self,
        ref: Reference,
        descriptor: Descriptor,
        sink: BlobSink,
        emit: ProgressCallback,
        endpoint: RegistryHost,
    ) -> Flow[Descriptor]:
        digest = descriptor.digest
        algorithm, _ = split_digest(digest)
        writer = sink.writer(descriptor)
        committed = False
        try:
            hasher = hashlib.new(algorithm)
            received = 0
            failures = 0
            path = f"/v2/{ref.path}/blobs/{digest}"
            scopes = (f"repository:{ref.path}:pull",)

            def report(kind: ProgressKind) -> None:
                emit(
                    ProgressEvent(
                        kind, digest, descriptor.media_type, received, descriptor.size, str(ref)
                    )
                )

            report(ProgressKind.DOWNLOADING)
            while True:
                headers = {"Range": f"bytes={received}-"} if received else {}
                response = yield from self.request(
                    ref.domain, "GET", path, endpoint=endpoint, headers=headers, scopes=scopes
                )
                if response.status_code == 404:
                    yield Close(response)
                    raise NotFound(f"blob {digest} not found in {ref.name}")
                if response.status_code not in (200, 206):
                    raise (yield from self.error(response, f"blob {digest} of {ref.name}"))
                interrupted = False
                try:
                    if response.status_code == 200 and received:
                        # The server ignored the Range: start again from byte 0.
                        writer.truncate()
                        hasher = hashlib.new(algorithm)
                        received = 0
                    elif response.status_code == 206:
                        start = _content_range_start(response.headers.get("Content-Range"))
                        if start != received:
                            raise RegistryError(
                                f"registry {ref.domain} answered the range request for blob "
                                f"{digest} from byte {received} with bytes from {start}",
                                status=206,
                            )
                    while True:
                        try:
                            chunk: bytes = yield Read(response)
                        except httpx.TransportError as error:
                            failures += 1
                            if failures > self.retry.max_retries:
                                raise self._transport_error(ref.domain, error, failures) from error
                            interrupted = True
                            break
                        if not chunk:
                            break
                        received += len(chunk)
                        if received > descriptor.size:
                            raise DigestMismatch(
                                f"blob {digest} of {ref.name} is larger than the "
                                f"{descriptor.size} bytes its descriptor announces",
                                expected=digest,
                            )
                        hasher.update(chunk)
                        writer.write(chunk)
                        report(ProgressKind.DOWNLOADING)
                finally:
                    yield Close(response)
                if not interrupted and received < descriptor.size:
                    # The body ended early without an error: treat it as a drop.
                    failures += 1
                    if failures > self.retry.max_retries:
                        raise Unavailable(
                            f"blob {digest} of {ref.name}: the registry keeps ending the "
                            f"download early ({received} of {descriptor.size} bytes)"
                        )
                    interrupted = True
                if interrupted:
                    yield Sleep(self.retry.delay(failures - 1))
                    continue
                break
            report(ProgressKind.VERIFYING)
            actual = f"{algorithm}:{hasher.hexdigest()}"
            if actual != digest:
                raise DigestMismatch(
                    f"blob {digest} of {ref.name} does not match its digest (got {actual}); "
                    "nothing was stored",
                    expected=digest,
                    actual=actual,
                )
            writer.commit()
            committed = True
            report(ProgressKind.DONE)
            return descriptor
        finally:
            if not committed:
                writer.abort()

    def _store_bytes(
        self,
        sink: BlobSink,
        descriptor: Descriptor,
        data: bytes,
        ref: Reference,
        emit: ProgressCallback,
    ) -> None:
        if sink.exists(descriptor.digest):
            emit(
                ProgressEvent(
                    ProgressKind.EXISTS,
                    descriptor.digest,
                    descriptor.media_type,
                    descriptor.size,
                    descriptor.size,
                    str(ref),
                )
            )
            return
        # ``data`` was verified against ``descriptor`` when it was fetched: no second hash.
        writer = sink.writer(descriptor)
        try:
            writer.write(data)
            writer.commit()
        finally:
            writer.abort()
        emit(
            ProgressEvent(
                ProgressKind.DONE,
                descriptor.digest,
                descriptor.media_type,
                descriptor.size,
                descriptor.size,
                str(ref),
            )
        )

    # --- push ------------------------------------------------------------------------

    def _push_scopes(self, ref: Reference) -> tuple[str, ...]:
        return (f"repository:{ref.path}:pull,push",)

    def push_blob(
        self,
        ref: Reference,
        descriptor: Descriptor,
        data: bytes | BinaryIO,
        progress: ProgressCallback | None = None,
        chunk_size: int | None = None,
    ) -> Flow[Descriptor]:
        """Upload a blob unless the repository has it: monolithic, or chunked when large.

        ``chunk_size`` forces a chunked upload in pieces of that size.
        """
        emit = progress or (lambda event: None)
        exists = yield from self.blob_exists(ref, descriptor.digest)
        if exists:
            emit(
                ProgressEvent(
                    ProgressKind.EXISTS,
                    descriptor.digest,
                    descriptor.media_type,
                    descriptor.size,
                    descriptor.size,
                    str(ref),
                )
            )
            return descriptor
        response = yield from self.request(
            ref.domain, "POST", f"/v2/{ref.path}/blobs/uploads/", scopes=self._push_scopes(ref)
        )
        location = yield from self._upload_location(response, ref, descriptor.digest, (202,))
        yield from self._upload(ref, location, descriptor, data, emit, chunk_size)
        return descriptor

    def mount_blob(
        self,
        ref: Reference,
        descriptor: Descriptor,
        from_repository: str,
        data: bytes | BinaryIO | None = None,
        progress: ProgressCallback | None = None,
    ) -> Flow[bool]:
        """Mount a blob from another repository of the same registry.

        ``from_repository`` is a repository path in the same registry (``team/app``).
        Returns True when mounted; when the registry opens an upload instead (HTTP 202)
        the blob is uploaded from ``data`` (required then) and False is returned.
        """
        emit = progress or (lambda event: None)
        path = from_repository
        if path.startswith(f"{ref.domain}/"):
            path = path[len(ref.domain) + 1 :]
        elif "/" in path and ("." in path.split("/", 1)[0] or ":" in path.split("/", 1)[0]):
            raise InvalidArgument(
                f"cannot mount {descriptor.digest} from {from_repository!r} into {ref.name}: "
                "mounts only work within one registry; give the repository path"
            )
        source = Reference(ref.domain, path)
        scopes = (*self._push_scopes(ref), f"repository:{source.path}:pull")
        target = httpx.URL(f"/v2/{ref.path}/blobs/uploads/").copy_merge_params(
            {"mount": descriptor.digest, "from": source.path}
        )
        response = yield from self.request(ref.domain, "POST", str(target), scopes=scopes)
        if response.status_code == 201:
            yield Close(response)
            emit(
                ProgressEvent(
                    ProgressKind.EXISTS,
                    descriptor.digest,
                    descriptor.media_type,
                    descriptor.size,
                    descriptor.size,
                    str(ref),
                )
            )
            return True
        location = yield from self._upload_location(response, ref, descriptor.digest, (202,))
        if data is None:
            raise NotFound(
                f"registry {ref.domain} could not mount {descriptor.digest} from "
                f"{source.path}; give the blob's data to upload it instead"
            )
        yield from self._upload(ref, location, descriptor, data, emit, None)
        return False

    def _upload_location(
        self, response: httpx.Response, ref: Reference, digest: str, ok: Sequence[int]
    ) -> Flow[str]:
        if response.status_code not in ok:
            raise (yield from self.error(response, f"upload of blob {digest} to {ref.name}"))
        location = response.headers.get("Location", "")
        yield Close(response)
        if not location:
            raise RegistryError(
                f"registry {ref.domain} opened an upload for {digest} without a Location",
                status=response.status_code,
            )
        base = self.base_url(self.push_endpoint(ref.domain))
        return str(httpx.URL(base + "/").join(location))

    def _upload(
        self,
        ref: Reference,
        location: str,
        descriptor: Descriptor,
        data: bytes | BinaryIO,
        emit: ProgressCallback,
        chunk_size: int | None,
    ) -> Flow[None]:
        stream: BinaryIO = io.BytesIO(data) if isinstance(data, bytes) else data
        scopes = self._push_scopes(ref)
        digest = descriptor.digest
        size = descriptor.size

        def report(done: int) -> None:
            emit(
                ProgressEvent(
                    ProgressKind.UPLOADING, digest, descriptor.media_type, done, size, str(ref)
                )
            )

        report(0)
        if chunk_size is None and size <= self.chunk_threshold:
            body = stream.read(size + 1)
            if len(body) != size:
                raise DigestMismatch(
                    f"blob {digest} has {len(body)} bytes locally, its descriptor says {size}",
                    expected=digest,
                )
            _verify(body, descriptor, f"local blob {digest}")
            put_url = str(httpx.URL(location).copy_merge_params({"digest": digest}))
            response = yield from self.request(
                ref.domain,
                "PUT",
                put_url,
                headers={"Content-Type": "application/octet-stream"},
                content=body,
                scopes=scopes,
            )
        else:
            piece = chunk_size or 8 * 1024 * 1024
            if piece <= 0:
                raise InvalidArgument(f"chunk_size must be positive, got {piece}")
            offset = 0
            hasher = hashlib.new(split_digest(digest)[0])
            while offset < size:
                chunk = stream.read(min(piece, size - offset))
                if not chunk:
                    raise DigestMismatch(
                        f"local blob {digest} ended after {offset} of {size} bytes",
                        expected=digest,
                    )
                hasher.update(chunk)
                response = yield from self.request(
                    ref.domain,
                    "PATCH",
                    location,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                    },
                    content=chunk,
                    scopes=scopes,
                    retry=False,
                )
                location = yield from self._upload_location(response, ref, digest, (202,))
                offset += len(chunk)
                report(offset)
            actual = f"{split_digest(digest)[0]}:{hasher.hexdigest()}"
            if actual != digest:
                raise DigestMismatch(
                    f"local blob {digest} does not match its digest (it hashes to {actual})",
                    expected=digest,
                    actual=actual,
                )
            put_url = str(httpx.URL(location).copy_merge_params({"digest": digest}))
            response = yield from self.request(
                ref.domain, "PUT", put_url, scopes=scopes, retry=False
            )
        if response.status_code not in (201, 204):
            raise (yield from self.error(response, f"upload of blob {digest} to {ref.name}"))
        yield Close(response)
        report(size)
        emit(ProgressEvent(ProgressKind.DONE, digest, descriptor.media_type, size, size, str(ref)))

    def push_manifest(
        self, ref: Reference, data: bytes, media_type: str, *, by_digest: bool = False
    ) -> Flow[Descriptor]:
        """PUT a manifest or index under ``ref``'s tag (or its digest when ``by_digest``)."""
        media.validate_media_type(media_type)
        if len(data) > self.max_manifest_size:
            raise ResourceExhausted(
                f"manifest is {len(data)} bytes, more than the {self.max_manifest_size} limit"
            )
        digest = _digest_of(data, ref.digest or "sha256:")
        if ref.digest and digest != ref.digest:
            raise DigestMismatch(
                f"manifest hashes to {digest}, not to the digest in {ref}",
                expected=ref.digest,
                actual=digest,
            )
        target = digest if by_digest or not ref.tag else ref.tag
        response = yield from self.request(
            ref.domain,
            "PUT",
            f"/v2/{ref.path}/manifests/{target}",
            headers={"Content-Type": media_type},
            content=data,
            scopes=self._push_scopes(ref),
        )
        if response.status_code not in (200, 201, 202, 204):
            raise (yield from self.error(response, f"push of manifest {target} to {ref.name}"))
        announced = response.headers.get("Docker-Content-Digest", "").strip()
        yield Close(response)
        if (
            announced
            and announced.split(":", 1)[0] == digest.split(":", 1)[0]
            and (announced != digest)
        ):
            raise RegistryError(
                f"registry {ref.domain} stored the manifest under {announced}, expected {digest}",
                status=response.status_code,
            )
        return Descriptor(media_type=media_type, digest=digest, size=len(data))

    # --- graphs ----------------------------------------------------------------------

    def pull_graph(
        self,
        ref: Reference,
        sink: BlobSink,
        platform: PlatformSpec,
        progress: ProgressCallback | None,
        max_concurrent: int,
    ) -> Flow[PullResult]:
        """Resolve ``ref`` and store its whole graph (for the wanted platforms) in ``sink``.

        Blobs are downloaded ``max_concurrent`` at a time; manifests are stored only
        after every blob under them, so the store never holds a manifest whose content
        is missing.
        """
        if max_concurrent < 1:
            raise InvalidArgument(f"max_concurrent must be at least 1, got {max_concurrent}")
        emit = progress or (lambda event: None)
        _matchers(platform)  # refuse a bad platform before any traffic
        root = yield from self.fetch_manifest(ref, None)
        emit(
            ProgressEvent(
                ProgressKind.RESOLVED,
                root.descriptor.digest,
                root.descriptor.media_type,
                0,
                root.descriptor.size,
                str(ref),
            )
        )
        manifests: list[Manifest] = []
        blobs: dict[str, Descriptor] = {}
        pending: list[tuple[Manifest, int]] = [(root, 0)]
        while pending:
            manifest, depth = pending.pop(0)
            manifests.append(manifest)
            media_type = manifest.descriptor.media_type
            children = manifest.children()
            if media.is_index(media_type):
                if depth >= MAX_GRAPH_DEPTH:
                    raise RegistryError(f"image {ref} nests indexes more than 8 deep")
                wanted = [c for c in children if media.is_index(c.media_type)]
                platform_entries = [c for c in children if not media.is_index(c.media_type)]
                if platform_entries:
                    try:
                        wanted += select_platforms(platform_entries, platform)
                    except NotFound as error:
                        raise NotFound(f"image {ref}: {error}") from None
                for child in wanted:
                    fetched = yield from self.fetch_manifest(ref, child)
                    pending.append((fetched, depth + 1))
            else:
                for child in children:
                    if _base_type(child.media_type) in _NON_DISTRIBUTABLE and child.urls:
                        continue  # foreign layers are fetched from their own URLs, if ever
                    blobs.setdefault(child.digest, child)
        for blob in blobs.values():
            emit(
                ProgressEvent(
                    ProgressKind.WAITING, blob.digest, blob.media_type, 0, blob.size, str(ref)
                )
            )
        yield Parallel(
            [self.fetch_blob(ref, blob, sink, progress) for blob in blobs.values()],
            max_concurrent,
        )
        for manifest in reversed(manifests):
            self._store_bytes(sink, manifest.descriptor, manifest.data, ref, emit)
        return PullResult(
            reference=str(ref),
            target=root.descriptor,
            manifests=tuple(m.descriptor for m in manifests),
            blobs=tuple(blobs.values()),
        )

    def push_graph(
        self,
        ref: Reference,
        source: BlobSource,
        descriptor: Descriptor,
        progress: ProgressCallback | None,
        max_concurrent: int,
    ) -> Flow[Descriptor]:
        """Push ``descriptor`` and everything under it from ``source`` to ``ref``.

        Blobs first (those the registry has are skipped), then child manifests by
        digest, then the root under ``ref``'s tag.
        """
        if max_concurrent < 1:
            raise InvalidArgument(f"max_concurrent must be at least 1, got {max_concurrent}")
        emit = progress or (lambda event: None)
        order: list[tuple[Descriptor, bytes]] = []
        blobs: dict[str, Descriptor] = {}
        pending: list[tuple[Descriptor, int]] = [(descriptor, 0)]
        while pending:
            current, depth = pending.pop(0)
            if depth > MAX_GRAPH_DEPTH:
                raise InvalidArgument(f"image graph under {descriptor.digest} is too deep")
            with source.open_blob(current.digest) as handle:
                data = handle.read(self.max_manifest_size + 1)
            if len(data) > self.max_manifest_size:
                raise ResourceExhausted(f"manifest {current.digest} is larger than the limit")
            _verify(data, current, f"local manifest {current.digest}")
            content = _json_object(data, f"local manifest {current.digest}")
            order.append((current, data))
            for child in _children(current.media_type, content):
                if media.is_index(child.media_type) or media.is_manifest(child.media_type):
                    pending.append((child, depth + 1))
                else:
                    blobs.setdefault(child.digest, child)

        def upload(blob: Descriptor) -> Flow[Descriptor]:
            handle = source.open_blob(blob.digest)
            try:
                return (yield from self.push_blob(ref, blob, handle, progress))
            finally:
                handle.close()

        yield Parallel([upload(blob) for blob in blobs.values()], max_concurrent)
        for current, data in reversed(order[1:]):
            yield from self.push_manifest(ref, data, current.media_type, by_digest=True)
            emit(
                ProgressEvent(
                    ProgressKind.DONE,
                    current.digest,
                    current.media_type,
                    current.size,
                    current.size,
                    str(ref),
                )
            )
        root_desc, root_data = order[0]
        pushed = yield from self.push_manifest(ref, root_data, root_desc.media_type)
        emit(
            ProgressEvent(
                ProgressKind.DONE,
                pushed.digest,
                pushed.media_type,
                pushed.size,
                pushed.size,
                str(ref),
            )
        )
        return attrs.evolve(
            root_desc, digest=pushed.digest, size=pushed.size, media_type=pushed.media_type
        )


def _content_range_start(header: str | None) -> int:
    # "bytes 100-199/200"
    if not header:
        return -1
    text = header.strip()
    if text.lower().startswith("bytes"):
        text = text[5:].strip()
    start = text.split("-", 1)[0].strip()
    return int(start) if start.isdigit() else -1


def _verify(data: bytes, descriptor: Descriptor, what: str) -> None:
    if len(data) != descriptor.size:
        raise DigestMismatch(
            f"{what} is {len(data)} bytes, its descriptor says {descriptor.size}",
            expected=descriptor.digest,
        )
    actual = _digest_of(data, descriptor.digest)
    if actual != descriptor.digest:
        raise DigestMismatch(
            f"{what} does not match its digest (got {actual})",
            expected=descriptor.digest,
            actual=actual,
        )
