"""``RegistryClient`` and ``AsyncRegistryClient``: thin drivers over one set of flows."""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, TypeVar

import httpx

from libcontainerd.errors import (
    DeadlineExceeded,
    InvalidArgument,
    RegistryError,
    Unavailable,
)
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.reference import Reference

from ._core import (
    CredentialSource,
    Manifest,
    PlatformSpec,
    ProgressCallback,
    PullResult,
    RegistryCore,
    RetryPolicy,
)
from ._flow import Flow, run_async, run_sync
from .docker_config import DockerConfig, load_docker_config
from .store import BlobSink, BlobSource

__all__ = ["AsyncRegistryClient", "RegistryClient"]

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0
USER_AGENT = "libcontainerd-distribution/0.1"


def _reference(ref: str | Reference) -> Reference:
    if isinstance(ref, Reference):
        return ref
    if isinstance(ref, str):
        return Reference.parse(ref)
    raise InvalidArgument(f"image reference must be a str or Reference, not {type(ref).__name__}")


def _ssl_context(
    ca_file: str | Path | None, client_cert: tuple[str | Path, str | Path] | None
) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as error:
            raise InvalidArgument(f"cannot load CA certificates from {ca_file}: {error}") from None
    if client_cert is not None:
        cert, key = client_cert
        try:
            context.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as error:
            raise InvalidArgument(
                f"cannot load client certificate {cert} with key {key}: {error}"
            ) from None
    return context


def _translate(error: Exception) -> Exception:
    """The typed error for an httpx error the flows did not handle themselves."""
    if isinstance(error, httpx.TimeoutException):
        return DeadlineExceeded(f"registry request timed out: {error}")
    if isinstance(error, httpx.TransportError):
        return Unavailable(f"registry connection failed: {type(error).__name__}: {error}")
    return RegistryError(f"registry request failed: {type(error).__name__}: {error}")


class _Base:
    """Configuration shared by both clients (no I/O)."""

    def __init__(
        self,
        *,
        credentials: CredentialSource = None,
        docker_config: DockerConfig | str | Path | bool = True,
        ca_file: str | Path | None = None,
        client_cert: tuple[str | Path, str | Path] | None = None,
        insecure_hosts: Iterable[str] = (),
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 4,
        retry: RetryPolicy | None = None,
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
        self._core = RegistryCore(
            credentials=credentials,
            docker_config=config,
            insecure_hosts=insecure_hosts,
            retry=retry or RetryPolicy(max_retries=max_retries),
        )
        self._ssl = _ssl_context(ca_file, client_cert)
        self._timeout = httpx.Timeout(timeout)


class RegistryClient(_Base):
    """A synchronous OCI registry client.

    ``credentials`` is one :class:`~libcontainerd.types.auth.Credentials` for every
    registry, a mapping of registry host to credentials, or a callable ``host ->
    Credentials | None``; registries without explicit credentials use docker's
    ``config.json`` (``docker_config``: True for the default location, False for none,
    or a path). TLS is verified (``ca_file`` adds a CA, ``client_cert`` is a
    ``(cert, key)`` pair); plain HTTP is used only for loopback hosts and
    ``insecure_hosts``, when they do not speak TLS. ``transport`` replaces httpx's
    network transport (tests).
    """

    def __init__(
        self,
        *,
        credentials: CredentialSource = None,
        docker_config: DockerConfig | str | Path | bool = True,
        ca_file: str | Path | None = None,
        client_cert: tuple[str | Path, str | Path] | None = None,
        insecure_hosts: Iterable[str] = (),
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 4,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            credentials=credentials,
            docker_config=docker_config,
            ca_file=ca_file,
            client_cert=client_cert,
            insecure_hosts=insecure_hosts,
            timeout=timeout,
            max_retries=max_retries,
            retry=retry,
        )
        self._http = httpx.Client(
            verify=self._ssl,
            timeout=self._timeout,
            follow_redirects=True,
            transport=transport,
            headers={"User-Agent": USER_AGENT},
        )

    def resolve(self, ref: str | Reference) -> Descriptor:
        """The descriptor of the manifest or index ``ref`` names (digest verified)."""
        descriptor, _ = self._run(self._core.resolve(_reference(ref)))
        return descriptor

    def fetch_manifest(
        self, ref: str | Reference, descriptor: Descriptor | None = None
    ) -> Manifest:
        """Fetch the manifest/index ``descriptor`` of ``ref`` (resolve ``ref`` when None)."""
        return self._run(self._core.fetch_manifest(_reference(ref), descriptor))

    def fetch_blob(
        self,
        ref: str | Reference,
        descriptor: Descriptor,
        sink: BlobSink,
        *,
        progress: ProgressCallback | None = None,
    ) -> Descriptor:
        """Download blob ``descriptor`` from ``ref``'s repository into ``sink``, verified."""
        return self._run(self._core.fetch_blob(_reference(ref), descriptor, sink, progress))

    def blob_exists(self, ref: str | Reference, digest: str) -> bool:
        """Whether ``ref``'s repository has blob ``digest``."""
        return self._run(self._core.blob_exists(_reference(ref), digest))

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
            self._core.push_blob(_reference(ref), descriptor, data, progress, chunk_size),
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
            self._core.mount_blob(_reference(ref), descriptor, from_repository, data, progress),
        )

    def push_manifest(
        self, ref: str | Reference, data: bytes, media_type: str, *, by_digest: bool = False
    ) -> Descriptor:
        """Upload a manifest or index under ``ref``'s tag (or by digest)."""
        return self._run(
            self._core.push_manifest(_reference(ref), data, media_type, by_digest=by_digest),
        )

    def pull_graph(
        self,
        ref: str | Reference,
        store: BlobSink,
        *,
        platform: PlatformSpec = None,
        progress: ProgressCallback | None = None,
        max_concurrent: int = 3,
    ) -> PullResult:
        """Fetch ``ref`` and every blob it needs into ``store``.

        ``platform``: None (this host, best match), ``"os/arch[/variant]"`` or a
        :class:`~libcontainerd.types.platform.Platform` (best match), a list of those
        (best match of each), a ``Matcher`` (its best match) or ``"all"``. ``progress``
        is called (from worker threads) with a ProgressEvent per blob change.
        """
        return self._run(
            self._core.pull_graph(_reference(ref), store, platform, progress, max_concurrent),
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
            self._core.push_graph(_reference(ref), source, descriptor, progress, max_concurrent),
        )

    def _run(self, flow: Flow[T]) -> T:
        try:
            return run_sync(self._http, flow)
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            raise _translate(error) from error

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncRegistryClient(_Base):
    """The asyncio twin of :class:`RegistryClient`: same arguments, same methods, awaited."""

    def __init__(
        self,
        *,
        credentials: CredentialSource = None,
        docker_config: DockerConfig | str | Path | bool = True,
        ca_file: str | Path | None = None,
        client_cert: tuple[str | Path, str | Path] | None = None,
        insecure_hosts: Iterable[str] = (),
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 4,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            credentials=credentials,
            docker_config=docker_config,
            ca_file=ca_file,
            client_cert=client_cert,
            insecure_hosts=insecure_hosts,
            timeout=timeout,
            max_retries=max_retries,
            retry=retry,
        )
        self._http = httpx.AsyncClient(
            verify=self._ssl,
            timeout=self._timeout,
            follow_redirects=True,
            transport=transport,
            headers={"User-Agent": USER_AGENT},
        )

    async def resolve(self, ref: str | Reference) -> Descriptor:
        """See :meth:`RegistryClient.resolve`."""
        descriptor, _ = await self._run(self._core.resolve(_reference(ref)))
        return descriptor

    async def fetch_manifest(
        self, ref: str | Reference, descriptor: Descriptor | None = None
    ) -> Manifest:
        """See :meth:`RegistryClient.fetch_manifest`."""
        return await self._run(self._core.fetch_manifest(_reference(ref), descriptor))

    async def fetch_blob(
        self,
        ref: str | Reference,
        descriptor: Descriptor,
        sink: BlobSink,
        *,
        progress: ProgressCallback | None = None,
    ) -> Descriptor:
        """See :meth:`RegistryClient.fetch_blob`."""
        return await self._run(self._core.fetch_blob(_reference(ref), descriptor, sink, progress))

    async def blob_exists(self, ref: str | Reference, digest: str) -> bool:
        """See :meth:`RegistryClient.blob_exists`."""
        return await self._run(self._core.blob_exists(_reference(ref), digest))

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
            self._core.push_blob(_reference(ref), descriptor, data, progress, chunk_size),
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
            self._core.mount_blob(_reference(ref), descriptor, from_repository, data, progress),
        )

    async def push_manifest(
        self, ref: str | Reference, data: bytes, media_type: str, *, by_digest: bool = False
    ) -> Descriptor:
        """See :meth:`RegistryClient.push_manifest`."""
        return await self._run(
            self._core.push_manifest(_reference(ref), data, media_type, by_digest=by_digest),
        )

    async def pull_graph(
        self,
        ref: str | Reference,
        store: BlobSink,
        *,
        platform: PlatformSpec = None,
        progress: ProgressCallback | None = None,
        max_concurrent: int = 3,
    ) -> PullResult:
        """See :meth:`RegistryClient.pull_graph`."""
        return await self._run(
            self._core.pull_graph(_reference(ref), store, platform, progress, max_concurrent),
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
            self._core.push_graph(_reference(ref), source, descriptor, progress, max_concurrent),
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
