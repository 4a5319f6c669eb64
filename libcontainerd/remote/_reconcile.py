"""Exits exactly once across containerd restarts: a ledger of what a subscription delivered.

containerd keeps no event backlog: what it publishes while a subscriber is away is
gone, and a shim re-sends an exit it could not publish a few times after containerd
comes back. :class:`ExitLedger` remembers which exits (and deletes) a subscription
delivered and which processes it saw start, so that after resubscribing it can ask
containerd for the state of every task and deliver, once, the exits that happened in
between (marked ``reconstructed``), and drop a shim's late re-send of one it already
delivered.

containerd's task state tells an exit (status stopped, exit code and time) and a delete
(the task is gone); it keeps no trace of an OOM kill, so OOM events published during an
outage cannot be rebuilt.
"""

from __future__ import annotations

import datetime as _dt
import threading
from collections import OrderedDict
from collections.abc import Callable

from libcontainerd.errors import NotFound
from libcontainerd.remote._convert import to_datetime
from libcontainerd.remote._pb.containerd.services.tasks.v1 import tasks_pb2
from libcontainerd.remote._pb.containerd.v1.types import task_pb2
from libcontainerd.remote._transport import Transport
from libcontainerd.types.events import Event, EventType

__all__ = ["ExitLedger", "event_lookup"]

_MAX_REMEMBERED = 65536
"""Delivered exits remembered for de-duplication (oldest forgotten first)."""

_Key = tuple[str, str, str, int]


def event_lookup(event: Event) -> Callable[[str], str | None]:
    """Field lookup for :func:`libcontainerd.filters.matches_filters` over an event.

    Knows containerd's envelope fields (``topic``, ``namespace``) and the task event
    fields (``event.container_id``, ``event.id``, ``event.exec_id``, ``event.pid``,
    ``event.exit_status``), with or without the ``event.`` prefix.
    """

    def lookup(key: str) -> str | None:
        name = key[len("event.") :] if key.startswith("event.") else key
        if name == "topic":
            return event.topic
        if name == "namespace":
            return event.namespace
        if name == "container_id":
            return event.container_id
        if name == "id":
            return event.process_id or event.container_id
        if name in ("exec_id", "process_id"):
            return event.process_id
        if name == "pid" and event.pid is not None:
            return str(event.pid)
        if name == "exit_status" and event.exit_code is not None:
            return str(event.exit_code)
        return None

    return lookup


def _key(kind: str, event: Event) -> _Key:
    return (kind, event.container_id, event.process_id, event.pid or 0)


class ExitLedger:
    """What one subscription delivered, and the tasks it knows to be running.

    Thread-safe; :meth:`admit` is called for every live event, :meth:`reconcile`
    after each resubscription.
    """

    def __init__(self, namespace: str, since: _dt.datetime) -> None:
        self._namespace = namespace
        self._since = since
        self._lock = threading.Lock()
        self._delivered: OrderedDict[_Key, None] = OrderedDict()
        self._running: dict[tuple[str, str], int] = {}

    def _remember(self, key: _Key) -> bool:
        """Record ``key``; False when it was delivered before."""
        if key in self._delivered:
            self._delivered.move_to_end(key)
            return False
        self._delivered[key] = None
        if len(self._delivered) > _MAX_REMEMBERED:
            self._delivered.popitem(last=False)
        return True

    def admit(self, event: Event) -> bool:
        """Whether a live event is new (False: an exit or delete delivered before)."""
        with self._lock:
            process = (event.container_id, event.process_id)
            if (
                event.type in (EventType.TASK_CREATE, EventType.TASK_START)
                or event.type is EventType.TASK_EXEC_STARTED
            ):
                if event.pid:
                    self._running[process] = event.pid
            elif event.type is EventType.TASK_EXIT:
                self._running.pop(process, None)
                return self._remember(_key("exit", event))
            elif event.type is EventType.TASK_DELETE:
                self._running.pop(process, None)
                if not event.process_id:
                    for known in [k for k in self._running if k[0] == event.container_id]:
                        del self._running[known]
                return self._remember(_key("delete", event))
            return True

    def _event(
        self,
        kind: EventType,
        container_id: str,
        exec_id: str,
        pid: int,
        process: task_pb2.Process | None = None,
    ) -> Event:
        """A reconstructed task event; ``process`` (an exited one) gives code and time."""
        raw: dict[str, object] = {
            "container_id": container_id,
            "id": exec_id or container_id,
            "pid": pid,
            "reconstructed": True,
        }
        fields: dict[str, object] = {}
        if process is not None:
            exited_at = to_datetime(process.exited_at)
            raw.update(exit_status=process.exit_status, exited_at=exited_at.isoformat())
            fields = {"timestamp": exited_at, "exit_code": process.exit_status}
            fields["exited_at"] = exited_at
        return Event(
            type=kind,
            namespace=self._namespace,
            container_id=container_id,
            process_id=exec_id,
            pid=pid,
            reconstructed=True,
            raw=raw,
            **fields,  # type: ignore[arg-type]
        )

    def _exited(self, process: task_pb2.Process) -> bool:
        return (
            process.status == task_pb2.Status.STOPPED
            and process.HasField("exited_at")
            and to_datetime(process.exited_at) >= self._since
        )

    def reconcile(self, transport: Transport) -> list[Event]:
        """Ask containerd for every task's state; the exits and deletes not yet delivered."""
        listed = transport.call(transport.tasks.List, tasks_pb2.ListTasksRequest())
        # containerd names a listed task by its id (the container's), not container_id.
        found = [(task.container_id or task.id, "", task) for task in listed.tasks]
        with self._lock:
            execs = [key for key in self._running if key[1]]
        for container_id, exec_id in execs:
            request = tasks_pb2.GetRequest(container_id=container_id, exec_id=exec_id)
            try:
                process = transport.call(transport.tasks.Get, request).process
            except NotFound:
                continue
            found.append((container_id, exec_id, process))
        present = {(container_id, exec_id) for container_id, exec_id, _ in found}
        events: list[Event] = []
        with self._lock:
            for container_id, exec_id, process in found:
                if not self._exited(process):
                    if process.status != task_pb2.Status.STOPPED and process.pid:
                        self._running[(container_id, exec_id)] = process.pid
                    continue
                event = self._event(
                    EventType.TASK_EXIT, container_id, exec_id, process.pid, process
                )
                self._running.pop((container_id, exec_id), None)
                if self._remember(_key("exit", event)):
                    events.append(event)
            for (container_id, exec_id), pid in list(self._running.items()):
                if (container_id, exec_id) in present:
                    continue
                # Gone while we were away: deleted, so it also exited (code unknown).
                del self._running[(container_id, exec_id)]
                event = self._event(EventType.TASK_DELETE, container_id, exec_id, pid)
                if self._remember(_key("delete", event)):
                    events.append(event)
        return events
