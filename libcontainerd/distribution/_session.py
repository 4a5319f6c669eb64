"""Where registry requests go and how each is sent: endpoints and the request loop.

:class:`RegistrySession` is the state both registry clients share (hosts configuration,
the scheme learnt per host, :class:`~libcontainerd.distribution._tokens.RegistryAuth`)
and the request loop every operation goes through: authentication challenges,
redirects checked hop by hop, HTTPS-to-HTTP fallback for loopback and insecure hosts,
and bounded retries. Nothing here performs I/O itself: :meth:`RegistrySession.request`
is a flow (see :mod:`libcontainerd.distribution._flow`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

import attrs
import httpx

from libcontainerd.distribution._flow import Close, Flow, Send, Sleep
from libcontainerd.distribution._http import (
    MAX_REDIRECTS,
    NON_IDEMPOTENT,
    NOT_PROCESSED,
    REDIRECTS,
    RETRY_STATUSES,
    RetryPolicy,
    is_loopback,
    ssl_refused_plain,
    transport_error,
)
from libcontainerd.distribution._manifests import MAX_MANIFEST_SIZE
from libcontainerd.distribution._tokens import CredentialSource, RegistryAuth
from libcontainerd.distribution.docker_config import DockerConfig, normalize_registry_host
from libcontainerd.distribution.hosts import DEFAULT_DIRECTORY, HostsConfig, RegistryHost
from libcontainerd.errors import (
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    RegistryError,
    Unavailable,
)

__all__ = ["DEFAULT_CHUNK_THRESHOLD", "RegistrySession"]

DEFAULT_CHUNK_THRESHOLD = 64 * 1024 * 1024
_T = TypeVar("_T")


class RegistrySession:
    """Hosts, learnt schemes, authentication and the request loop of one registry client."""

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
        self.insecure_hosts = frozenset(normalize_registry_host(h) for h in insecure_hosts)
        self.retry = retry or RetryPolicy()
        self.max_manifest_size = max_manifest_size
        self.chunk_threshold = chunk_threshold
        self._schemes: dict[str, str] = {}
        self.hosts: Mapping[str, HostsConfig] = dict(hosts or {})
        self.auth = RegistryAuth(
            credentials=credentials,
            docker_config=docker_config,
            helper_timeout=helper_timeout,
            retry=self.retry,
            plain_http_allowed=self.plain_http_allowed,
        )

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
        return is_loopback(host) or normalize_registry_host(host) in self.insecure_hosts

    def base_url(self, domain: str | RegistryHost) -> str:
        """``scheme://host`` for the registry of ``domain`` (or that host) as known now."""
        host = self.server(domain) if isinstance(domain, str) else domain
        return f"{host.scheme or self._schemes.get(host.host, 'https')}://{host.host}"

    def url(self, host: RegistryHost, target: str) -> httpx.URL:
        """The URL of ``target`` (an API path ``/v2/...`` or an absolute URL) on ``host``."""
        if "://" in target:
            return httpx.URL(target)
        if target.startswith("/v2/") or target == "/v2":
            target = host.path.rstrip("/") + target[3:]
        return httpx.URL(self.base_url(host) + target)

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
        idempotent = method.upper() not in NON_IDEMPOTENT
        while True:
            url = self.url(server, target)
            netloc = url.netloc.decode("ascii", "replace")
            if url.scheme != "https" and not self._plain_ok(server, netloc):
                raise RegistryError(
                    f"registry {domain} sent the client to {url.scheme}://{netloc}, which is not "
                    "HTTPS; plain HTTP is only used for loopback hosts and insecure_hosts"
                )
            send_headers = dict(headers or {})
            if netloc == host:
                authorization = yield from self.auth.authorization(
                    domain, host, self.credential_key(domain, server), scopes, extra_scope
                )
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
                    and ssl_refused_plain(error)
                    and self._schemes.get(host) != "http"
                ):
                    self._schemes[host] = "http"
                    continue
                unsent = isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
                if not retry or not (idempotent or unsent) or attempt >= self.retry.max_retries:
                    raise transport_error(host, error, attempt + 1) from error
                yield Sleep(self.retry.delay(attempt))
                attempt += 1
                continue
            if response.status_code in REDIRECTS:
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
                challenge = self.auth.pick_challenge(header)
                if challenge is not None and not auth_attempted and netloc == host:
                    auth_attempted = True
                    self.auth.learn(host, challenge)
                    extra_scope = challenge.scope
                    continue
                raise self.auth.unauthorized(self.credential_key(domain, server), host, method, url)
            if (
                retry
                and response.status_code in RETRY_STATUSES
                and (idempotent or response.status_code in NOT_PROCESSED)
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

    def credential_key(self, domain: str, server: RegistryHost) -> str:
        """Whose credentials a host gets: the registry's own, or a mirror's by its name."""
        return domain if server.host == self.api_host(domain) else server.host
