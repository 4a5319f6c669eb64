"""OOM-kill notifications of a task's memory cgroup, for the monitor (standard library only).

cgroup v1 signals an eventfd registered on ``memory.oom_control``; cgroup v2 raises a
priority event on ``memory.events``. Either way the ``oom_kill`` counter tells whether
a notification was a kill. Best effort: without a memory controller nothing is reported.
"""

from __future__ import annotations

import os
import select
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds of start-up on the hot path
    from collections.abc import Callable


class OomWatcher:
    """Calls ``on_oom`` once per increase of the cgroup's OOM-kill counter."""

    def __init__(self, on_oom: Callable[[], None]) -> None:
        self.on_oom = on_oom
        self.file = ""
        self.seen = 0
        self.lock = threading.Lock()

    def check(self) -> None:
        """Report an OOM kill when the counter went up since the last look."""
        if not self.file:
            return
        with self.lock:
            count = oom_kills(self.file)
            if count > self.seen:
                self.seen = count
                self.on_oom()

    def watch(self, pid: int, done: threading.Event) -> None:
        """Wait for notifications of ``pid``'s memory cgroup until ``done`` is set.

        Best effort: any failure (no memory controller, old kernel) disables OOM events.
        """
        try:
            with open(f"/proc/{pid}/cgroup", encoding="ascii") as f:
                lines = f.read().splitlines()
            v1 = v2 = None
            for line in lines:
                _num, controllers, path = line.split(":", 2)
                if "memory" in controllers.split(","):
                    v1 = path
                elif controllers == "":
                    v2 = path
            if v1 is not None:
                base = "/sys/fs/cgroup/memory" + v1
                self.file = base + "/memory.oom_control"
                self.seen = oom_kills(self.file)
                efd = os.eventfd(0, os.EFD_CLOEXEC)
                ofd = os.open(self.file, os.O_RDONLY | os.O_CLOEXEC)
                with open(base + "/cgroup.event_control", "w", encoding="ascii") as f:
                    f.write(f"{efd} {ofd}")
                while not done.is_set():
                    os.eventfd_read(efd)  # also fires when the cgroup is removed
                    self.check()
            elif v2 is not None:
                self.file = "/sys/fs/cgroup" + v2 + "/memory.events"
                self.seen = oom_kills(self.file)
                fd = os.open(self.file, os.O_RDONLY | os.O_CLOEXEC)
                poller = select.poll()
                poller.register(fd, select.POLLPRI | select.POLLERR)
                while not done.is_set():
                    poller.poll()
                    os.lseek(fd, 0, os.SEEK_SET)
                    os.read(fd, 4096)
                    self.check()
        except (OSError, ValueError):
            return


def oom_kills(path: str) -> int:
    """The ``oom_kill`` counter of a v1 ``memory.oom_control`` or v2 ``memory.events``."""
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0
