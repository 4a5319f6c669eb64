"""Registry authentication: credentials, challenges, basic auth and the bearer-token flow.

:class:`RegistryAuth` keeps what the clients learn per host (the challenge it answered
with, the tokens it issued) and the credentials found for each registry, and builds the
``Authorization`` header of each request. The token endpoint is spoken to with plain
requests (no registry auth), with their own retries and redirect checks.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TypeAlias

import httpx

from libcontainerd.distribution._flow import Call, Close, Flow, Send, Sleep
from libcontainerd.distribution._http import (
    MAX_REDIRECTS,
    MAX_SMALL_BODY,
    REDIRECTS,
    RETRY_STATUSES,
    RetryPolicy,
    read_body,
    transport_error,
)
from libcontainerd.distribution._manifests import json_object
from libcontainerd.distribution.auth import (
    DEFAULT_TOKEN_LIFETIME,
    Challenge,
    TokenCache,
    parse_www_authenticate,
)
from libcontainerd.distribution.docker_config import DockerConfig, normalize_registry_host
from libcontainerd.errors import AuthenticationError, InvalidArgument, RegistryError
from libcontainerd.types.auth import Credentials

__all__ = ["CredentialSource", "RegistryAuth", "merge_scopes"]

CredentialSource: TypeAlias = (
    Credentials | Mapping[str, Credentials] | Callable[[str], Credentials | None] | None
)


def merge_scopes(scopes: Sequence[str]) -> list[str]:
    """One scope per resource with the union of its actions, sorted: ``repository:x:pull``
    and ``repository:x:push,pull`` become ``repository:x:pull,push``.

    A registry may list a challenge's actions in any order; merging keeps a token request
    from asking twice for one resource and keeps the token cache key stable.
    """
    actions: dict[str, set[str]] = {}
    plain: set[str] = set()
    for scope in scopes:
        resource, sep, listed = scope.rpartition(":")
        if not sep or not resource or ":" not in resource:
            plain.add(scope)  # not ``type:name:actions``: kept as it came
            continue
        actions.setdefault(resource, set()).update(a for a in listed.split(",") if a)
    merged = [f"{resource}:{','.join(sorted(acts))}" for resource, acts in actions.items()]
    return sorted(plain | set(merged))


class RegistryAuth:
    """Credentials, learnt challenges and cached tokens of one registry client."""

    def __init__(
        self,
        *,
        credentials: CredentialSource,
        docker_config: DockerConfig | None,
        helper_timeout: float,
        retry: RetryPolicy,
        plain_http_allowed: Callable[[str], bool],
    ) -> None:
        self.credentials = credentials
        self.docker_config = docker_config
        self.helper_timeout = helper_timeout
        self.retry = retry
        self.plain_http_allowed = plain_http_allowed
        self.tokens = TokenCache()
        self._challenges: dict[str, Challenge] = {}
        self._credential_cache: dict[str, Credentials | None] = {}

    def learn(self, host: str, challenge: Challenge) -> None:
        """Remember ``host``'s challenge; a refused bearer token is not reused."""
        known = self._challenges.get(host)
        self._challenges[host] = challenge
        if known is not None and known.scheme == "bearer":
            self.tokens.clear()

    def unauthorized(
        self, credential_key: str, host: str, method: str, url: httpx.URL
    ) -> AuthenticationError:
        """The error for a request ``host`` refused although it was answered with auth."""
        creds = self._credential_cache.get(credential_key)
        if creds is None or creds.anonymous:
            hint = "no credentials were found for it; pass credentials= or run `docker login`"
        else:
            hint = "the credentials given were refused; check the user name and password"
        return AuthenticationError(
            f"registry {host} refused {method} {url.path}: authentication required ({hint})",
            status=401,
        )

    def credentials_for(self, domain: str) -> Flow[Credentials | None]:
        """The credentials for ``domain`` (from the source given, else the docker config)."""
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

    @staticmethod
    def pick_challenge(header: str) -> Challenge | None:
        """The challenge to answer among a ``WWW-Authenticate`` header's (bearer first)."""
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

    def authorization(
        self,
        domain: str,
        host: str,
        credential_key: str,
        scopes: Sequence[str],
        extra_scope: str,
    ) -> Flow[str | None]:
        """The ``Authorization`` header for a request to ``host`` of registry ``domain``.

        None until ``host`` has answered with a challenge.

        ``credential_key`` names whose credentials to use; ``scopes`` (plus the
        challenge's ``extra_scope``) are what a bearer token must grant.
        """
        challenge = self._challenges.get(host)
        if challenge is None:
            return None
        creds = yield from self.credentials_for(credential_key)
        if challenge.scheme == "basic":
            if creds is None or not creds.username or not creds.password:
                return None
            pair = f"{creds.username}:{creds.password}".encode()
            return "Basic " + base64.b64encode(pair).decode("ascii")
        if creds is not None and creds.registry_token:
            return f"Bearer {creds.registry_token}"
        scope = " ".join(merge_scopes([*scopes, *extra_scope.split()]))
        token = self.tokens.get(challenge.realm, challenge.service, scope)
        if token is None:
            token = yield from self.fetch_token(domain, challenge, scope, creds)
        return f"Bearer {token}"

    def fetch_token(
        self, domain: str, challenge: Challenge, scope: str, creds: Credentials | None
    ) -> Flow[str]:
        """Get a bearer token for ``scope`` from the challenge's realm (and cache it)."""
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
        body = yield from read_body(response, MAX_SMALL_BODY, f"token from {realm}")
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
        document = json_object(body, f"token response from {realm}")
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
                    raise transport_error(host, error, attempt + 1) from error
                yield Sleep(self.retry.delay(attempt))
                attempt += 1
                continue
            if response.status_code in REDIRECTS and redirects < MAX_REDIRECTS:
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
