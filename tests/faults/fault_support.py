"""Helpers of the fault suite: the tally, exit collectors per channel, leak counts."""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from libcontainerd.types.events import Event, EventType

CHANNELS = ("wait", "stream", "filtered", "callback")


@attrs.define
class Tally:
    """What the fault suite ran, injected, expected, delivered and leaked."""

    tests: int = 0
    operations: int = 0
    faults: int = 0
    expected: int = 0
    delivered: dict[str, int] = attrs.field(factory=lambda: dict.fromkeys(CHANNELS, 0))
    leaks: collections.Counter[str] = attrs.field(factory=collections.Counter)

    def to_dict(self) -> dict[str, Any]:
        """The tally as JSON-ready data (for xdist workers)."""
        return {
            "tests": self.tests,
            "operations": self.operations,
            "faults": self.faults,
            "expected": self.expected,
            "delivered": dict(self.delivered),
            "leaks": dict(self.leaks),
        }

    def merge(self, data: dict[str, Any]) -> None:
        """Add another process's :meth:`to_dict`."""
        self.tests += data["tests"]
        self.operations += data["operations"]
        self.faults += data["faults"]
        self.expected += data["expected"]
        for name, count in data["delivered"].items():
            self.delivered[name] = self.delivered.get(name, 0) + count
        self.leaks.update(data["leaks"])

    def line(self) -> str:
        """The suite's one summary line."""
        delivered = " ".join(f"{name}={self.delivered[name]}" for name in CHANNELS)
        leaks = " ".join(
            f"{name}={self.leaks[name]}"
            for name in ("fds", "threads", "fifos", "snapshots", "leases")
        )
        return (
            f"FAULTS SUMMARY: tests={self.tests} operations={self.operations} "
            f"faults={self.faults} exits expected={self.expected} delivered: {delivered} "
            f"leaked: {leaks}"
        )


TALLY = Tally()


class ExitLog:
    """Exits seen through one channel: (container id, exit code) in arrival order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.exits: list[tuple[str, int | None, bool]] = []

    def add(self, container_id: str, code: int | None, reconstructed: bool = False) -> None:
        """Record one exit."""
        with self._lock:
            self.exits.append((container_id, code, reconstructed))

    def add_event(self, event: Event, wanted: set[str]) -> None:
        """Record ``event`` when it is an init-process exit of a wanted container."""
        if event.type is EventType.TASK_EXIT and event.is_init and event.container_id in wanted:
            self.add(event.container_id, event.exit_code, event.reconstructed)

    def codes(self) -> dict[str, list[int | None]]:
        """Every code seen per container."""
        with self._lock:
            result: dict[str, list[int | None]] = collections.defaultdict(list)
            for container_id, code, _ in self.exits:
                result[container_id].append(code)
            return dict(result)

    def reconstructed(self) -> int:
        """How many of the exits were rebuilt after a reconnect."""
        with self._lock:
            return sum(1 for *_, rebuilt in self.exits if rebuilt)


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds passed (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def open_fds() -> set[str]:
    """The targets of this process's open file descriptors."""
    result = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            result.add(f"{fd}:{os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            continue
    return result


def fifo_count(namespace: str) -> int:
    """FIFO files the remote backend left for ``namespace``."""
    from libcontainerd.remote import FIFO_ROOT

    root = Path(FIFO_ROOT) / namespace
    if not root.exists():
        return 0
    return sum(1 for path in root.rglob("*") if path.is_fifo())


def remote_leaks(client: Any) -> dict[str, int]:
    """Snapshots and leases left in the client's namespace, FIFOs on disk."""
    from libcontainerd.remote._pb.containerd.services.snapshots.v1 import snapshots_pb2

    transport = client.transport
    stream = transport.services.snapshots.List(
        snapshots_pb2.ListSnapshotsRequest(snapshotter="overlayfs"), timeout=10
    )
    snapshots = sum(len(reply.info) for reply in stream)
    return {
        "snapshots": snapshots,
        "leases": len(client.leases.list()),
        "fifos": fifo_count(client.namespace),
    }
