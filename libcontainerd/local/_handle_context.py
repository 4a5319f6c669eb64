"""What the local handles need from the objects that made them.

A container handle needs its client's layout, store, event log and runtime drivers; a
process handle needs its container's id and log file. The handles are typed against these
protocols instead of the concrete classes, so the modules form a line
(``_client`` -> ``_container`` -> ``_process``) with no edge back up.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from libcontainerd.local._events import EventLog
from libcontainerd.local._monitor_client import Zygote
from libcontainerd.local._runtime import RuntimeDriver
from libcontainerd.local._stdio import FifoIO
from libcontainerd.local._store import ContainerStore, Layout
from libcontainerd.network import Networks

if TYPE_CHECKING:
    from libcontainerd.local._images import LocalImageService

__all__ = ["ClientContext", "ContainerContext"]


class ClientContext(Protocol):
    """The part of the local client its container and process handles use."""

    layout: Layout
    store: ContainerStore
    events_log: EventLog
    networks: Networks
    zygote: Zygote
    timeout: float
    events_max_bytes: int

    @property
    def namespace(self) -> str:
        """The namespace every call acts in."""
        ...

    @property
    def images(self) -> LocalImageService:
        """The image service (container rootfs snapshots are released through it)."""
        ...

    def driver_for(
        self, runtime: str, runtime_options: Mapping[str, Any] | None = None
    ) -> RuntimeDriver:
        """The driver of ``runtime`` with ``runtime_options``."""
        ...

    def track_streams(self, streams: FifoIO) -> None:
        """Release ``streams`` when the client closes."""
        ...


class ContainerContext(Protocol):
    """The part of a container handle its task and process handles use."""

    @property
    def id(self) -> str:
        """The container id."""
        ...

    @property
    def client(self) -> ClientContext:
        """The client that made the container handle."""
        ...

    @property
    def log_file(self) -> Path:
        """Where ``LogIO`` output goes."""
        ...
