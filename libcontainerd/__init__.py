"""libcontainerd: run containers from Python through one Client interface.

``new_client()`` picks the backend at runtime: ``remote`` talks gRPC to a
containerd daemon, ``local`` drives an OCI runtime (runc, crun) with no daemon.
Both implement :class:`Client` (blocking) and :class:`AsyncClient` (asyncio).
"""

from __future__ import annotations

from importlib import metadata as _metadata

from . import errors, system, types
from ._factory import new_async_client, new_client
from .client import (
    AsyncClient,
    AsyncContainer,
    AsyncImageService,
    AsyncProcess,
    AsyncTask,
    Client,
    Container,
    ImageService,
    Process,
    Task,
)
from .config import ClientConfig

try:
    __version__ = _metadata.version("libcontainerd")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "AsyncClient",
    "AsyncContainer",
    "AsyncImageService",
    "AsyncProcess",
    "AsyncTask",
    "Client",
    "ClientConfig",
    "Container",
    "ImageService",
    "Process",
    "Task",
    "__version__",
    "errors",
    "new_async_client",
    "new_client",
    "system",
    "types",
]
