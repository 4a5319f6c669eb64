"""The hook through which another module adds options to ``libcontainerd run``.

An extension is an object with two methods:

``add_arguments(group)``
    adds its options to ``group`` (an ``argparse`` argument group of ``run``);
``apply(args, request)``
    reads the parsed ``args`` and edits the :class:`RunRequest` before the container is
    created: extra spec options, extra ``new_container`` keyword arguments, and
    functions to call once the task started and when it is cleaned up.

Register it once at import time with :func:`register_run_extension`; the network
commands do so for ``--network``, ``-p``, ``--dns`` and ``--hostname``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from libcontainerd.oci import SpecOpt

__all__ = ["RunExtension", "RunRequest", "register_run_extension", "run_extensions"]


@attrs.define
class RunRequest:
    """What ``run`` will do, open to extensions before the container is created."""

    container_id: str
    spec_options: list[SpecOpt] = attrs.field(factory=list)
    """Applied after ``run``'s own options, in order."""
    container_options: dict[str, Any] = attrs.field(factory=dict)
    """Extra keyword arguments for ``client.new_container`` (e.g. ``extensions``)."""
    client_options: dict[str, Any] = attrs.field(factory=dict)
    """Extra keyword arguments for ``new_client`` (e.g. ``network=`` settings)."""
    after_start: list[Callable[[Any, Any], None]] = attrs.field(factory=list)
    """Called as ``f(container, task)`` once the task started."""
    cleanup: list[Callable[[], None]] = attrs.field(factory=list)
    """Called (in reverse order) when ``run`` removes the container, or when it fails."""


class RunExtension(Protocol):
    """A plug-in group of ``run`` options (see the module docs)."""

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        """Add the extension's options to ``run``."""

    def apply(self, args: argparse.Namespace, request: RunRequest) -> None:
        """Turn the parsed options into changes of ``request``."""


_EXTENSIONS: list[RunExtension] = []


def register_run_extension(extension: RunExtension) -> None:
    """Add ``extension`` to ``run`` (registering the same object twice does nothing)."""
    if extension not in _EXTENSIONS:
        _EXTENSIONS.append(extension)


def run_extensions() -> tuple[RunExtension, ...]:
    """The registered extensions, in registration order."""
    return tuple(_EXTENSIONS)
