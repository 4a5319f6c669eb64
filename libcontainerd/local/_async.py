"""The asyncio facade of the local backend.

The behaviour lives once, in the blocking classes of :mod:`._client`; the shared
:mod:`libcontainerd._async_facade` runs each of their calls on a pool this client owns.
"""

from __future__ import annotations

from typing import Literal

from libcontainerd._async_facade import AsyncClientFacade, Runner
from libcontainerd.local._client import LocalClient

__all__ = ["AsyncLocalClient"]


class AsyncLocalClient(AsyncClientFacade[LocalClient]):
    """The asyncio twin of :class:`LocalClient`."""

    def __init__(self, sync: LocalClient) -> None:
        super().__init__(sync, Runner("libcontainerd-local"))

    @property
    def backend(self) -> Literal["local"]:
        """Always ``"local"``."""
        return "local"
