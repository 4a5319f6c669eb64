"""Remote backend: drives a containerd daemon over its gRPC API v1.

The factory (:func:`libcontainerd.new_client`) calls :func:`create_client` or
:func:`create_async_client`. Backend options (keyword arguments of ``new_client``):
``tls_ca``, ``tls_cert``, ``tls_key`` (paths or PEM bytes) for ``tcp://`` addresses, and
``registry`` (a dict passed to every registry client the image service uses: ``ca_file``,
``insecure_hosts``, ``docker_config``, ``credentials``, ``client_cert``, ``timeout``,
``max_retries``, ``retry``), e.g. ``new_client("remote", registry={"ca_file": "/etc/ca.pem"})``;
``wait_ready`` (seconds every call waits for an unreachable containerd; by default calls fail
fast with ``Unavailable``); ``managed`` (``True`` or a dict of
:class:`~libcontainerd.remote.supervisor.Supervisor` settings, with ``root=`` and ``state=``:
start and supervise a private containerd).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from libcontainerd._lazy_names import LazyNames

if TYPE_CHECKING:
    from libcontainerd.client import AsyncClient, Client
    from libcontainerd.config import ClientConfig
    from libcontainerd.remote._async import (
        AsyncRemoteClient,
        AsyncRemoteContainer,
        AsyncRemoteEventStream,
        AsyncRemoteImages,
        AsyncRemoteProcess,
        AsyncRemoteProcessIO,
        AsyncRemoteTask,
    )
    from libcontainerd.remote._client import (
        RemoteClient,
        RemoteContainer,
        RemoteProcess,
        RemoteTask,
    )
    from libcontainerd.remote._events import RemoteEventStream
    from libcontainerd.remote._extras import (
        Introspection,
        Lease,
        Leases,
        NamespaceInfo,
        Namespaces,
        Plugin,
    )
    from libcontainerd.remote._stdio import FIFO_ROOT, PipedStreams

#: Where each exported name lives. A blocking client never loads the asyncio side, so
#: a short-lived process pays only for what it uses (PEP 562).
_LAZY: dict[str, str] = {
    "AsyncRemoteClient": "libcontainerd.remote._async",
    "AsyncRemoteContainer": "libcontainerd.remote._async",
    "AsyncRemoteEventStream": "libcontainerd.remote._async",
    "AsyncRemoteImages": "libcontainerd.remote._async",
    "AsyncRemoteProcess": "libcontainerd.remote._async",
    "AsyncRemoteProcessIO": "libcontainerd.remote._async",
    "AsyncRemoteTask": "libcontainerd.remote._async",
    "RemoteClient": "libcontainerd.remote._client",
    "RemoteContainer": "libcontainerd.remote._client",
    "RemoteProcess": "libcontainerd.remote._client",
    "RemoteTask": "libcontainerd.remote._client",
    "RemoteEventStream": "libcontainerd.remote._events",
    "Introspection": "libcontainerd.remote._extras",
    "Lease": "libcontainerd.remote._extras",
    "Leases": "libcontainerd.remote._extras",
    "NamespaceInfo": "libcontainerd.remote._extras",
    "Namespaces": "libcontainerd.remote._extras",
    "Plugin": "libcontainerd.remote._extras",
    "FIFO_ROOT": "libcontainerd.remote._stdio",
    "PipedStreams": "libcontainerd.remote._stdio",
}

__all__ = [
    "FIFO_ROOT",
    "AsyncRemoteClient",
    "AsyncRemoteContainer",
    "AsyncRemoteEventStream",
    "AsyncRemoteImages",
    "AsyncRemoteProcess",
    "AsyncRemoteProcessIO",
    "AsyncRemoteTask",
    "Introspection",
    "Lease",
    "Leases",
    "NamespaceInfo",
    "Namespaces",
    "PipedStreams",
    "Plugin",
    "RemoteClient",
    "RemoteContainer",
    "RemoteEventStream",
    "RemoteProcess",
    "RemoteTask",
    "create_async_client",
    "create_client",
]


_NAMES = LazyNames(__name__, _LAZY, __all__)


def __getattr__(name: str) -> Any:
    """Load an exported name's module on first use."""
    return _NAMES.load(name)


def __dir__() -> list[str]:
    """The package's names, the ones not loaded yet included."""
    return _NAMES.names()


def create_client(config: ClientConfig) -> Client:
    """A blocking client for the containerd at ``config.address`` (default socket if None)."""
    from libcontainerd.remote._client import RemoteClient

    return cast("Client", RemoteClient(config))


def create_async_client(config: ClientConfig) -> AsyncClient:
    """An asyncio client for the containerd at ``config.address``."""
    from libcontainerd.remote._async import AsyncRemoteClient

    return AsyncRemoteClient(config)
