"""libcontainerd: run containers from Python through one Client interface.

``new_client()`` picks the backend at runtime: ``remote`` talks gRPC to a
containerd daemon, ``local`` drives an OCI runtime (runc, crun) with no daemon.
Both implement :class:`Client` (blocking) and :class:`AsyncClient` (asyncio).

Names are loaded on first use (PEP 562), so ``import libcontainerd`` costs only
what a caller touches.
"""

from __future__ import annotations

import importlib

from libcontainerd._lazy_names import LazyNames

# typing itself costs milliseconds at import; mypy reads this flag as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from libcontainerd import errors, system, types
    from libcontainerd._factory import new_async_client, new_client
    from libcontainerd.client import (
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
    from libcontainerd.config import ClientConfig

    __version__: str

#: Where each exported name lives; the module is imported when the name is first read.
_LAZY: dict[str, str] = {
    "AsyncClient": "libcontainerd.client",
    "AsyncContainer": "libcontainerd.client",
    "AsyncImageService": "libcontainerd.client",
    "AsyncProcess": "libcontainerd.client",
    "AsyncTask": "libcontainerd.client",
    "Client": "libcontainerd.client",
    "Container": "libcontainerd.client",
    "ImageService": "libcontainerd.client",
    "Process": "libcontainerd.client",
    "Task": "libcontainerd.client",
    "ClientConfig": "libcontainerd.config",
    "new_async_client": "libcontainerd._factory",
    "new_client": "libcontainerd._factory",
}
_SUBMODULES = frozenset({"errors", "system", "types"})

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


def _installed_version() -> str:
    # importlib.metadata costs tens of milliseconds: paid only by who asks for the version.
    from importlib import metadata

    try:
        return metadata.version("libcontainerd")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0.0.0+unknown"


_NAMES = LazyNames(__name__, _LAZY, __all__)


def __getattr__(name: str) -> Any:
    """Load an exported name (or the version, or a submodule) on first use."""
    if name == "__version__":
        return _NAMES.keep(name, _installed_version())
    if name in _SUBMODULES:
        return _NAMES.keep(name, importlib.import_module(f"libcontainerd.{name}"))
    return _NAMES.load(name)


def __dir__() -> list[str]:
    """The package's names, the ones not loaded yet included."""
    return _NAMES.names()
