"""The type aliases the blocking and asyncio interfaces share.

They live below both :mod:`libcontainerd.client` and :mod:`libcontainerd.async_client`
so that neither has to import the other for its annotations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from libcontainerd.types.events import Event
from libcontainerd.types.progress import ProgressEvent

__all__ = ["BackendName", "EventCallback", "ProcessSpec", "ProgressCallback", "Spec"]

BackendName = Literal["local", "remote"]
"""The two backends ``new_client`` can return."""

Spec = dict[str, Any]
"""An OCI runtime spec in its JSON form (see :mod:`libcontainerd.oci`)."""

ProcessSpec = dict[str, Any]
"""The ``process`` object of an OCI runtime spec, used for ``exec``."""

EventCallback = Callable[[Event], None]
"""Receives each event when passed as ``on_event=`` to the factory."""

ProgressCallback = Callable[[ProgressEvent], None]
"""Receives transfer progress of image pulls and pushes."""
