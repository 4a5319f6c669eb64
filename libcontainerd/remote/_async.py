"""The asyncio face of the remote backend.

The behaviour lives once, in the blocking classes of :mod:`libcontainerd.remote._client`;
the shared :mod:`libcontainerd._async_facade` runs each call on a client-owned thread pool
(see ``benchmarks/remote_call_overhead.py`` for why this direction was chosen). Only what
exists for remote alone is here: the namespaces, introspection and leases helpers and the
image service's extra operations. ``RemoteProcess.wait`` takes ``cancel=``, which the
facade uses so a cancelled async wait frees its thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from libcontainerd._async_facade import (
    AsyncClientFacade,
    AsyncContainerFacade,
    AsyncEventStreamFacade,
    AsyncImageServiceFacade,
    AsyncProcessFacade,
    AsyncProcessIOFacade,
    AsyncTaskFacade,
    Runner,
)
from libcontainerd.client import PlatformRequest
from libcontainerd.config import ClientConfig
from libcontainerd.remote._client import RemoteClient

__all__ = [
    "AsyncRemoteClient",
    "AsyncRemoteContainer",
    "AsyncRemoteEventStream",
    "AsyncRemoteImages",
    "AsyncRemoteProcess",
    "AsyncRemoteProcessIO",
    "AsyncRemoteTask",
]

# The handles below the client are the shared ones; these names predate the facade.
AsyncRemoteContainer = AsyncContainerFacade
AsyncRemoteEventStream = AsyncEventStreamFacade
AsyncRemoteProcess = AsyncProcessFacade
AsyncRemoteProcessIO = AsyncProcessIOFacade
AsyncRemoteTask = AsyncTaskFacade


class _AsyncExtra:
    """Async view of a remote-only helper: each method of ``sync`` is awaited on the pool."""

    def __init__(self, sync: object, run: Runner) -> None:
        self._sync = sync
        self._run = run

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._sync, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._run(method, *args, **kwargs)

        return call


class AsyncRemoteImages(AsyncImageServiceFacade):
    """The image service of containerd, for asyncio callers.

    Besides the contract, every other public method of the blocking
    :class:`~libcontainerd.remote._images.RemoteImages` can be awaited under its own name.
    """

    def __init__(self, client: RemoteClient, run: Runner) -> None:
        super().__init__(lambda: client.images, run)
        self._client = client

    async def unpack(self, ref: str, *, platform: PlatformRequest | None = None) -> str:
        """Unpack an image already in the content store; returns its top chain id."""
        return await self._run(lambda: self._client.images.unpack(ref, platform=platform))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return _AsyncExtra(self._client.images, self._run).__getattr__(name)


class AsyncRemoteClient(AsyncClientFacade[RemoteClient]):
    """The asyncio client for one containerd namespace."""

    def __init__(self, config: ClientConfig) -> None:
        super().__init__(RemoteClient(config), Runner("libcontainerd-remote"))
        self.namespaces: Any = _AsyncExtra(self.sync.namespaces, self._run)
        """Async namespaces helper (same methods as the blocking one, awaited)."""
        self.introspection: Any = _AsyncExtra(self.sync.introspection, self._run)
        """Async introspection helper."""
        self.leases: Any = _AsyncExtra(self.sync.leases, self._run)
        """Async leases helper."""

    @property
    def backend(self) -> Literal["remote"]:
        """Always ``"remote"``."""
        return "remote"

    @property
    def images(self) -> AsyncRemoteImages:
        """The image service: pull, push, list, get, remove, import, export and unpack."""
        return AsyncRemoteImages(self.sync, self._run)

    @property
    def supervisor(self) -> Any:
        """The private containerd this client started (``managed=``), else None."""
        return self.sync.supervisor

    async def wait_ready(self, timeout: float) -> None:
        """Wait until containerd answers; ``Unavailable`` when it has not within ``timeout``."""
        await self._run(self.sync.wait_ready, timeout)

    async def healthy(self, timeout: float = 2.0) -> bool:
        """Whether containerd answers gRPC health checks as SERVING within ``timeout``."""
        return await self._run(self.sync.healthy, timeout)
