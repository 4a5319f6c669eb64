"""Dialing ``npipe://`` addresses: one loopback relay per client, in front of the pipe.

The transport asks :func:`open_pipe_relay` for a relay, dials its ``target`` instead of
the pipe with :func:`relay_channel_options`, and closes the relay when it closes the
channel. Only Windows has named pipes: elsewhere the answer is a ``FailedPrecondition``
that names the platform.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import libcontainerd.remote._npipe_win32 as win32
from libcontainerd.errors import FailedPrecondition
from libcontainerd.remote._relay import Dialer, PeerCheck, Relay, peer_is_this_process

__all__ = [
    "HOST_PLATFORM",
    "RELAY_CONNECT_TIMEOUT_MS",
    "open_pipe_relay",
    "pipe_dialer",
    "relay_channel_options",
    "relay_peer_check",
]

HOST_PLATFORM = sys.platform
"""Whether named pipes exist here (tests simulate Windows through it and :func:`pipe_dialer`)."""

RELAY_CONNECT_TIMEOUT_MS = 5000
"""The shortest time gRPC grants one connection attempt through the relay."""

_MIN_CONNECT_OPTION = "grpc.min_reconnect_backoff_ms"


def pipe_dialer(pipe_path: str) -> Dialer:
    """A dialer that opens a fresh client end of ``pipe_path`` for every connection."""
    return lambda: win32.connect_pipe(pipe_path)


def relay_peer_check() -> PeerCheck:
    """How the relay vets who connects to it on this system."""
    if sys.platform == "win32":
        return win32.own_tcp_peer
    if os.path.isdir("/proc/self/fd"):
        return peer_is_this_process
    raise FailedPrecondition(
        f"the named-pipe relay cannot tell who connects to it on {sys.platform}; "
        "dial containerd over unix:// or tcp:// instead"
    )


def relay_channel_options(options: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """``options`` adjusted for a channel that dials a relay.

    gRPC also uses ``grpc.min_reconnect_backoff_ms`` as the least time it gives a
    connection attempt, and the relay's extra hop (accept, peer check, pipe dial) must
    fit in it even on a loaded host; a short backoff between attempts stays as it is.
    """
    kept = [(key, value) for key, value in options if key != _MIN_CONNECT_OPTION]
    return [*kept, (_MIN_CONNECT_OPTION, RELAY_CONNECT_TIMEOUT_MS)]


def open_pipe_relay(pipe_path: str) -> Relay:
    """A running relay to named pipe ``pipe_path`` (``\\\\.\\pipe\\name``); Windows only."""
    if HOST_PLATFORM != "win32":
        raise FailedPrecondition(
            f"named pipe address {pipe_path!r} can only be dialed on Windows, and this is "
            f"{HOST_PLATFORM}; use a unix:// or tcp:// address here"
        )
    return Relay(pipe_dialer(pipe_path), name=pipe_path, peer_check=relay_peer_check())
