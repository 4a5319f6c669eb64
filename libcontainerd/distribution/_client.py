"""``RegistryClient`` and ``AsyncRegistryClient``: thin drivers over one set of flows."""

from __future__ import annotations

import functools
import logging
import os
import ssl
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Generic, TypeVar

import httpx

from libcontainerd._closing import ClosesOnExit
from libcontainerd.content.protocol import BlobSink, BlobSource
from libcontainerd.distribution._fetch import (
    ProgressCallback,
    blob_exists,
    fetch_blob,
    fetch_manifest,
    resolve,
)
from libcontainerd.distribution._flow import Flow, run_async, run_sync
from libcontainerd.distribution._graph import pull_graph, push_graph
from libcontainerd.distribution._http import RetryPolicy
from libcontainerd.distribution._manifests import Manifest, PullResult
from libcontainerd.distribution._push import mount_blob, push_blob, push_manifest
from libcontainerd.distribution._session import RegistrySession
from libcontainerd.distribution._tokens import CredentialSource
from libcontainerd.distribution.docker_config import DockerConfig, load_docker_config
from libcontainerd.distribution.hosts import RegistryHost, load_hosts_dir
from libcontainerd.errors import (
    DeadlineExceeded,
    InvalidArgument,
    RegistryError,
    Unavailable,
)
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.platform import PlatformRequest, PlatformSelector
from libcontainerd.types.reference import Reference

__all__ = ["AsyncRegistryClient", "RegistryClient"]

T = TypeVar("T")
_H = TypeVar("_H", bound="httpx.Client | httpx.AsyncClient")
_X = TypeVar("_X", bound="httpx.BaseTransport | httpx.AsyncBaseTransport")
_log = logging.getLogger("libcontainerd.distribution")

DEFAULT_TIMEOUT = 30.0
USER_AGENT = "libcontainerd-distribution/0.1"


def _reference(ref: str | Reference) -> Reference:
    if isinstance(ref, Reference):
        return ref
    if isinstance(ref, str):
        return Reference.parse(ref)
    raise InvalidArgument(f"image reference must be a str or Reference, not {type(ref).__name__}")


_FileKey = tuple[str, int, int, int] | tuple[str]


def _file_key(path: str | Path) -> _FileKey:
    """``path`` with its identity on disk, so an edited or replaced file is read again."""
    try:
        status = os.stat(path)
    except OSError:
        return (str(path),)  # loading it fails below, and failures are not cached
    return (str(path), status.st_ino, status.st_mtime_ns, status.st_size)


@functools.lru_cache(maxsize=32)
def _cached_ssl_context(
    ca_files: tuple[_FileKey, ...],
    client_cert: tuple[_FileKey, _FileKey] | None,
    skip_verify: bool,
) -> ssl.SSLContext:
    # Loading the system CA bundle costs tens of milliseconds of CPU; an SSLContext is
    # safe to share between connections and threads, so one is built per TLS setting.
    context = ssl.create_default_context()
    for ca_key in ca_files:
        ca = ca_key[0]
        try:
            context.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as error:
            raise InvalidArgument(f"cannot load CA certificates from {ca}: {error}") from None
    if skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client_cert is not None:
        cert, key = client_cert[0][0], client_cert[1][0]
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as error:
            raise InvalidArgument(
                f"cannot load client certificate {cert} with key {key}: {error}"
            ) from None
    return context


def _ssl_context(
    ca_file: str | Path | None,
    client_cert: tuple[str | Path, str | Path] | None,
    host: RegistryHost | None = None,
) -> ssl.SSLContext:
    cas = tuple(_file_key(ca) for ca in (ca_file, *(host.ca if host else ())) if ca is not None)
    cert = (_file_key(client_cert[0]), _file_key(client_cert[1])) if client_cert else None
    skip_verify = False
    if host is not None and host.skip_verify:
        skip_verify = True
        # Asked for explicitly in hosts.toml; said out loud so it is never silent.
        _log.warning("TLS verification is OFF for registry host %s (hosts.toml)", host.host)
    return _cached_ssl_context(cas, cert, skip_verify)


def _translate(error: Exception) -> Exception:
    """The typed error for an httpx error the flows did not handle themselves."""
    if isinstance(error, httpx.TimeoutException):
        return DeadlineExceeded(f"registry request timed out: {error}")
    if isinstance(error, httpx.TransportError):
        return Unavailable(f"registry connection failed: {type(error).__name__}: {error}")
    return RegistryError(f"registry request failed: {type(error).__name__}: {error}")


class _Base(Generic[_H, _X]):
    """Configuration and connection pool shared by both clients; subclasses add the I/O."""

    _transport_type: type[Any]

    def __init__(
        self,
        *,
        credentials: CredentialSource = None,
        docker_config: DockerConfig | str | Path | bool = True,
        ca_file: str | Path | None = None,
        client_cert: tuple[str | Path, str | Path] | None = None,
        insecure_hosts: Iterable[str] = (),
        hosts_dir: str | Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 4,
        retry: RetryPolicy | None = None,
        transport: _X | None = None,
    ) -> None:
        if isinstance(docker_config, DockerConfig):
            config: DockerConfig | None = docker_config
        elif docker_config is True:
            config = load_docker_config()
        elif docker_config is False:
            config = None
        elif isinstance(docker_config, str | Path):
            config = load_docker_config(docker_config)
        else:
            raise InvalidArgument(
                "docker_config must be True (default location), False, a path or a DockerConfig"
            )
        if timeout <= 0:
            raise InvalidArgument(f"timeout must be positive, got {timeout}")
        hosts = load_hosts_dir(hosts_dir) if hosts_dir is not None else {}
        self._core = RegistrySession(
            credentials=credentials,
            docker_config=config,
            insecure_hosts=insecure_hosts,
            retry=retry or RetryPolicy(max_retries=max_retries),
            hosts=hosts,
        )
        self._ssl = _ssl_context(ca_file, client_cert)
        self._timeout = httpx.Timeout(timeout)
        # Hosts with their own CA or skip_verify get their own transport (httpx mounts).
        mounts: dict[str, Any] = {}
        for settings in hosts.values():
            for host in (*settings.mirrors, settings.server):
                if host.needs_tls_config and host.scheme != "http":
                    context = _ssl_context(ca_file, client_cert, host)
                    mounts[f"https://{host.host}"] = self._transport_type(verify=context)
        # Redirects are followed by the flows, which check every hop (see RegistrySession).
        self._http: _H = self._client_type()(
            verify=self._ssl,
            timeout=self._timeout,
            follow_redirects=False,
            transport=transport,
            mounts=mounts or None,
            headers={"User-Agent": USER_AGENT},
        )

    @staticmethod
    def _client_type() -> Callable[..., _H]:
        raise NotImplementedError  # pragma: no cover - each client names its httpx class


class RegistryClient(_Base[httpx.Client, httpx.BaseTransport], ClosesOnExit):
    """A synchronous OCI registry client.

    ``credentials`` is one :class:`~libcontainerd.types.auth.Credentials` for every
    registry, a mapping of registry host to credentials, or a callable ``host ->
    Credentials | None``; registries without explicit credentials use docker's
    ``config.json`` (``docker_config``: True for the default location, False for none,
    or a path). TLS is verified (``ca_file`` adds a CA, ``client_cert`` is a
    ``(cert, key)`` pair); plain HTTP is used only for loopback hosts and
    ``insecure_hosts``, when they do not speak TLS. ``hosts_dir`` is a containerd
    ``certs.d`` directory: each ``<host>/hosts.toml`` there names mirrors (tried in
    order for pulls, the registry last), per-host CAs and API paths (see
    :mod:`libcontainerd.distribution.hosts`). ``transport`` replaces httpx's network
    transport (tests).
    """

    _transport_type = httpx.HTTPTransport

    @staticmethod
    def _client_type() -> Callable[..., httpx.Client]:
        return httpx.Client

    def resolve(self, ref: str | Reference) -> Descriptor:
        """The descriptor of the manifest or index ``ref`` names (digest verified)."""
        descriptor, _ = self._run(resolve(self._core, _reference(ref)))
        return descriptor

    def fetch_manifest(
        self, ref: str | Reference, descriptor: Descriptor | None = None
    ) -> Manifest:
        """Fetch the manifest/index ``descriptor`` of ``ref`` (resolve ``ref`` when None)."""
        return self._run(fetch_manifest(self._core, _reference(ref), descriptor))

    def fetch_blob(
        self,
        ref: str | Reference,
        descriptor: Descriptor,
        sink: BlobSink,
        *,
        progress: ProgressCallback | None = None,
    ) -> Descriptor:
        """Download blob ``descriptor`` from ``ref``'s repository into ``sink``, verified."""
        return self._run(fetch_blob(self._core, _reference(ref), descriptor, sink, progress))

    def blob_exists(self, ref: str | Reference, digest: str) -> bool:
        """Whether ``ref``'s repository has blob ``digest``."""
        return self._run(blob_exists(self._core, _reference(ref), digest))

    def push_blob(
        self,
        ref: str | Reference,
        descriptor: Descriptor,
        data: bytes | BinaryIO,
        *,
        progress: ProgressCallback | None = None,
        chunk_size: int | None = None,
    ) -> Descriptor:
        """Upload a blob to ``ref``'s repository (skipped when it is there already)."""
        return self._run(
            push_blob(self._core, _reference(ref), descriptor, data, progress, chunk_size),
        )

    def mount_blob(
        self,
        ref: str | Reference,
        descriptor: Descriptor,
        from_repository: str,
        *,
        data: bytes | BinaryIO | None = None,
        progress: ProgressCallback | None = None,
    ) -> bool:
        """Mount a blob from ``from_repository``; upload ``data`` if the registry declines."""
        return self._run(
            mount_blob(self._core, _reference(ref), descriptor, from_repository, data, progress),
        )

    def push_manifest(
        self, ref: str | Reference, data: bytes, media_type: str, *, by_digest: bool = False
    ) -> Descriptor:
        """Upload a manifest or index under ``ref``'s tag (or by digest)."""
        return self._run(
            push_manifest(self._core, _reference(ref), data, media_type, by_digest=by_digest),
        )

    def pull_graph(
        self,
        ref: str | Reference,
        store: BlobSink,
        *,
        platform: PlatformRequest | PlatformSelector | None = None,
        progress: ProgressCallback | None = None,
        max_concurrent: int = 3,
        on_manifests: Callable[[Sequence[Manifest]], None] | None = None,
    ) -> PullResult:
        """Fetch ``ref`` and every blob it needs into ``store``.

        ``platform``: None (this host, best match), ``"os/arch[/variant]"`` or a
        :class:`~libcontainerd.types.platform.Platform` (best match), a list of those
        (best match of each), a ``Matcher`` (its best match) or ``"all"``. ``progress``
        is called (from worker threads) with a ProgressEvent per blob change.
        ``on_manifests`` is called once with every fetched manifest and index before
        the first blob download (it must not block).
        """
        return self._run(
            pull_graph(
                self._core,
                _reference(ref),
                store,
                platform,
                progress,
                max_concurrent,
                on_manifests,
            ),
        )

    def push_graph(
        self,
        ref: str | Reference,
        source: BlobSource,
        descriptor: Descriptor,
        *,
        progress: ProgressCallback | None = None,
        max_concurrent: int = 3,
    ) -> Descriptor:
        """Push ``descriptor`` and everything below it from ``source`` to ``ref``."""
        return self._run(
            push_graph(self._core, _reference(ref), source, descriptor, progress, max_concurrent),
        )

    def _run(self, flow: Flow[T]) -> T:
        try:
            return run_sync(self._http, flow)
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            raise _translate(error) from error

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


class AsyncRegistryClient(_Base[httpx.AsyncClient, httpx.AsyncBaseTransport]):
    """The asyncio twin of :class:`RegistryClient`: same arguments, same methods, awaited."""

    _transport_type = httpx.AsyncHTTPTransport

    @staticmethod
    def _client_type() -> Callable[..., httpx.AsyncClient]:
        return httpx.AsyncClient

    async def resolve(self, ref: str | Reference) -> Descriptor:
        """See :meth:`RegistryClient.resolve`."""
        descriptor, _ = await self._run(resolve(self._core, _reference(ref)))
        return descriptor

    async def fetch_manifest(
        self, ref: str | Reference, descriptor: Descriptor | None = None
    ) -> Manifest:
        """See :meth:`RegistryClient.fetch_manifest`."""
        return await self._run(fetch_manifest(self._core, _reference(ref), descriptor))

    async def fetch_blob(
        self,
        ref: str | Reference,
        descriptor: Descriptor,
        sink: BlobSink,
        *,
        progress: ProgressCallback | None = None,
    ) -> Descriptor:
        """See :meth:`RegistryClient.fetch_blob`."""
        return await self._run(fetch_blob(self._core, _reference(ref), descriptor, sink, progress))

    async def blob_exists(self, ref: str | Reference, digest: str) -> bool:
        """See :meth:`RegistryClient.blob_exists`."""
        return await self._run(blob_exists(self._core, _reference(ref), digest))

    async def push_blob(
        self,
        ref: str | Reference,
        descriptor: Descriptor,
        data: bytes | BinaryIO,
        *,
        progress: ProgressCallback | None = None,
        chunk_size: int | None = None,
    ) -> Descriptor:
        """See :meth:`RegistryClient.push_blob`."""
        return await self._run(
            push_blob(self._core, _reference(ref), descriptor, data, progress, chunk_size),
        )

    async def mount_blob(
        self,
        ref: str | Reference,
        descriptor: Descriptor,
        from_repository: str,
        *,
        data: bytes | BinaryIO | None = None,
        progress: ProgressCallback | None = None,
    ) -> bool:
        """See :meth:`RegistryClient.mount_blob`."""
        return await self._run(
            mount_blob(self._core, _reference(ref), descriptor, from_repository, data, progress),
        )

    async def push_manifest(
        self, ref: str | Reference, data: bytes, media_type: str, *, by_digest: bool = False
    ) -> Descriptor:
        """See :meth:`RegistryClient.push_manifest`."""
        return await self._run(
            push_manifest(self._core, _reference(ref), data, media_type, by_digest=by_digest),
        )

    async def pull_graph(
        self,
        ref: str | Reference,
        store: BlobSink,
        *,
        platform: PlatformRequest | PlatformSelector | None = None,
        progress: ProgressCallback | None = None,
        max_concurrent: int = 3,
        on_manifests: Callable[[Sequence[Manifest]], None] | None = None,
    ) -> PullResult:
        """See :meth:`RegistryClient.pull_graph`."""
        return await self._run(
            pull_graph(
                self._core,
                _reference(ref),
                store,
                platform,
                progress,
                max_concurrent,
                on_manifests,
            ),
        )

    async def push_graph(
        self,
        ref: str | Reference,
        source: BlobSource,
        descriptor: Descriptor,
        *,
        progress: ProgressCallback | None = None,
        max_concurrent: int = 3,
    ) -> Descriptor:
        """See :meth:`RegistryClient.push_graph`."""
        return await self._run(
            push_graph(self._core, _reference(ref), source, descriptor, progress, max_concurrent),
        )

    async def _run(self, flow: Flow[T]) -> T:
        try:
            return await run_async(self._http, flow)
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            raise _translate(error) from error

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncRegistryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
