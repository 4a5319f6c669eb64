"""containerd events: decode an ``Envelope`` into :class:`~libcontainerd.types.events.Event`.

containerd packs each event into a ``google.protobuf.Any`` whose type URL names the
message (``containerd.events.TaskExit``). The event modules below register those
messages in protobuf's default pool, so decoding is a lookup by that name.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import queue
import threading
from collections.abc import Sequence
from typing import Any

from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory, timestamp_pb2
from google.protobuf.message import Message

from libcontainerd._event_iteration import IteratesByPolling
from libcontainerd.errors import Error
from libcontainerd.filters import matches_filters
from libcontainerd.remote._convert import to_datetime
from libcontainerd.remote._pb.containerd.events import (  # noqa: F401  (imported to register the messages)
    container_pb2,
    content_pb2,
    image_pb2,
    namespace_pb2,
    snapshot_pb2,
    task_pb2,
)
from libcontainerd.remote._pb.containerd.services.events.v1 import events_pb2
from libcontainerd.remote._reconcile import ExitLedger, event_lookup
from libcontainerd.remote._transport import Backoff, ResponseStream, Transport
from libcontainerd.types.events import Event, EventType

__all__ = [
    "RemoteEventStream",
    "decode_any",
    "decode_envelope",
    "subscribe",
]

_log = logging.getLogger(__name__)

_RECONNECT_PROBE = 1.0
"""Seconds one wait for containerd lasts before the backoff pause."""
_SETTLE = 0.5
"""Pause between the two reconcile passes after a resubscription."""
_QUEUE_LIMIT = 10_000
"""Events read from containerd but not yet taken by the reader, at most."""


def decode_any(value: any_pb2.Any) -> Message | None:
    """The event message inside ``value``, or ``None`` when its type is not known here."""
    name = value.type_url.rsplit("/", 1)[-1]
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(name)
    except KeyError:
        return None
    message = message_factory.GetMessageClass(descriptor)()
    message.ParseFromString(value.value)
    return message


def _text(message: Message | None, *names: str) -> str:
    for name in names:
        value = getattr(message, name, None)
        if isinstance(value, str) and value:
            return value
    return ""


def _uint(message: Message | None, name: str) -> int | None:
    value = getattr(message, name, None)
    return value if isinstance(value, int) else None


def _time(message: Message | None, name: str) -> _dt.datetime | None:
    if message is None or name not in message.DESCRIPTOR.fields_by_name:
        return None
    if not message.HasField(name):
        return None
    stamp = getattr(message, name)
    assert isinstance(stamp, timestamp_pb2.Timestamp)
    return to_datetime(stamp)


def decode_envelope(envelope: events_pb2.Envelope) -> Event:
    """Build an :class:`Event` from an envelope (unknown payloads keep topic and type URL)."""
    kind = EventType.from_topic(envelope.topic)
    message = decode_any(envelope.event) if envelope.HasField("event") else None
    raw: dict[str, Any] = (
        json_format.MessageToDict(message, preserving_proto_field_name=True)
        if message is not None
        else {"type_url": envelope.event.type_url}
    )
    timestamp = (
        to_datetime(envelope.timestamp)
        if envelope.HasField("timestamp")
        else _dt.datetime.now(_dt.timezone.utc)
    )
    fields: dict[str, Any] = {}
    if kind.is_task_event:
        fields["container_id"] = _text(message, "container_id")
        fields["process_id"] = _text(message, "exec_id", "id")
        fields["pid"] = _uint(message, "pid")
        if kind in (EventType.TASK_EXIT, EventType.TASK_DELETE):
            fields["exit_code"] = _uint(message, "exit_status")
            fields["exited_at"] = _time(message, "exited_at")
        fields["checkpoint"] = _text(message, "checkpoint")
    elif envelope.topic.startswith("/containers/"):
        fields["container_id"] = _text(message, "id")
        fields["image"] = _text(message, "image")
    elif envelope.topic.startswith("/images/"):
        fields["image"] = _text(message, "name")
    elif envelope.topic.startswith("/snapshot/"):
        fields["key"] = _text(message, "key")
        fields["parent"] = _text(message, "parent", "name")
        fields["snapshotter"] = _text(message, "snapshotter")
    elif envelope.topic.startswith("/content/"):
        fields["digest"] = _text(message, "digest")
    return Event(
        type=kind,
        topic=envelope.topic,
        namespace=envelope.namespace,
        timestamp=timestamp,
        raw=raw,
        **fields,
    )


class RemoteEventStream(IteratesByPolling):
    """A blocking iterator over containerd events; ``close()`` unsubscribes from any thread.

    The subscription never ends by itself while it is open: when containerd becomes
    unreachable (it restarted) the stream logs that it is reconnecting and subscribes
    again with capped backoff for as long as it takes. After each resubscription it
    asks containerd for the state of the namespace's tasks and delivers, exactly once
    and marked ``reconstructed``, the exits (and deletes) published while it was away;
    a shim's late re-send of an exit already delivered is dropped. Events arrive through
    a reader thread owned by the stream, so :meth:`poll` can wait with a timeout.
    """

    def __init__(
        self,
        transport: Transport,
        request: events_pb2.SubscribeRequest,
        filters: Sequence[str],
        *,
        reconcile: bool = True,
    ) -> None:
        self._transport = transport
        self._request = request
        self._filters = list(filters)
        matches_filters(self._filters, lambda _key: None)  # refuse a bad filter now
        self._ledger = (
            ExitLedger(transport.namespace, _dt.datetime.now(_dt.timezone.utc))
            if reconcile
            else None
        )
        self._closed = threading.Event()
        self._finished = False
        self._lock = threading.Lock()
        self._stream: ResponseStream[events_pb2.Envelope] | None = None
        # Bounded: a reader that stops reading holds the stream back (gRPC flow control)
        # instead of letting events pile up in memory.
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize=_QUEUE_LIMIT)
        self._open()  # live once containerd registers it; it sends no acknowledgement
        self._reader = threading.Thread(
            target=self._pump, name="libcontainerd-remote-events", daemon=True
        )
        self._reader.start()

    @property
    def closed(self) -> bool:
        """Whether the stream was closed."""
        return self._closed.is_set() or self._finished

    def poll(self, timeout: float | None) -> Event | None:
        """The next event, or ``None`` when none came within ``timeout`` or it was closed."""
        if self._finished or self._closed.is_set():
            return None
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is None or self._closed.is_set():
            self._finished = True
            return None  # events still queued at close() are dropped, as iteration ends
        return item

    def _open(self) -> ResponseStream[events_pb2.Envelope] | None:
        try:
            stream = self._transport.stream(self._transport.events.Subscribe, self._request)
        except Error:
            return None
        with self._lock:
            if self._closed.is_set():
                stream.cancel()
                return None
            self._stream = stream
        return stream

    def _put(self, item: Event | None) -> None:
        """Queue ``item`` for the reader, waiting while the queue is full (until closed)."""
        while True:
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                if self._closed.is_set():
                    return

    def _deliver(self, event: Event) -> None:
        if self._ledger is None or self._ledger.admit(event):
            self._put(event)

    def _reconcile(self) -> int:
        """Deliver the exits containerd recorded while this stream could not listen."""
        if self._ledger is None:
            return 0
        events = self._ledger.reconcile(self._transport)
        delivered = 0
        for event in events:
            if matches_filters(self._filters, event_lookup(event)):
                self._put(event)
                delivered += 1
        return delivered

    def _read_until_lost(self, stream: ResponseStream[events_pb2.Envelope]) -> str:
        """Deliver the stream's events; the reason it ended (empty when closed)."""
        try:
            for envelope in stream:
                self._deliver(decode_envelope(envelope))
        except Error as error:
            return "" if self._closed.is_set() else str(error)
        return "" if self._closed.is_set() else "containerd ended the subscription"

    def _resubscribe(self, backoff: Backoff) -> ResponseStream[events_pb2.Envelope] | None:
        """Wait for containerd, subscribe again and reconcile; None once closed."""
        while not self._closed.is_set():
            if self._transport.closed:
                return None  # the client was closed under the stream: nothing to wait for
            if self._transport.connected(_RECONNECT_PROBE):
                stream = self._open()
                if stream is not None:
                    try:
                        # Reconcile twice: a subscription takes a moment to be in place
                        # on the daemon, and an exit in that moment reaches neither the
                        # stream nor the first pass. The ledger drops repeats.
                        found = self._reconcile()
                        if self._closed.wait(_SETTLE):
                            return None
                        found += self._reconcile()
                    except Error as error:
                        _log.info("reconciling after resubscribing failed: %s", error)
                        stream.cancel()
                    else:
                        _log.warning(
                            "event subscription to %s restored; %d event(s) reconstructed",
                            self._transport.address,
                            found,
                        )
                        return stream
            if self._closed.wait(backoff.next_delay()):
                return None
        return None

    def _pump(self) -> None:
        backoff = Backoff()
        stream = self._stream
        try:
            while not self._closed.is_set():
                reason = "not subscribed" if stream is None else self._read_until_lost(stream)
                if self._closed.is_set():
                    break
                _log.warning(
                    "event subscription to %s lost (%s); reconnecting",
                    self._transport.address,
                    reason,
                )
                stream = self._resubscribe(backoff)
                if stream is None:
                    break  # the stream or its client was closed
                backoff.reset()
        finally:
            self._put(None)

    def close(self) -> None:
        """Stop the subscription; iteration ends."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            stream = self._stream
        if stream is not None:
            stream.cancel()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)  # wakes a poll() waiting on an empty queue
        if self._reader is not threading.current_thread():
            self._reader.join(timeout=5)


def subscribe(
    transport: Transport, filters: Sequence[str], *, all_namespaces: bool = False
) -> RemoteEventStream:
    """Subscribe to events matching ``filters`` (containerd filter syntax).

    Events of the client's namespace only, unless ``all_namespaces`` (exits are then
    not reconstructed after a reconnect: that needs one namespace's task list).
    """
    if isinstance(filters, str):
        filters = [filters]
    wanted = list(filters)
    if not all_namespaces:
        scope = f'namespace=="{transport.namespace}"'
        wanted = [f"{scope},{f}" for f in wanted] if wanted else [scope]
    request = events_pb2.SubscribeRequest(filters=wanted)
    return RemoteEventStream(transport, request, filters, reconcile=not all_namespaces)
