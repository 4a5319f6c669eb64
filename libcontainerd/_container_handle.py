"""The part every backend's container handle shares: the id it names, fixed for its life."""

from __future__ import annotations

from libcontainerd.shortcuts import ContainerShortcuts

__all__ = ["ContainerHandle"]


class ContainerHandle(ContainerShortcuts):
    """Base of the backends' container handles: ``id`` plus the container shortcuts."""

    def __init__(self, container_id: str) -> None:
        self._id = container_id

    @property
    def id(self) -> str:
        """The container id."""
        return self._id
