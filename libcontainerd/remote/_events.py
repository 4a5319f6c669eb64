"""containerd events: decode an ``Envelope`` into :class:`~libcontainerd.types.events.Event`.

containerd packs each event into a ``google.protobuf.Any`` whose type URL names the
message (``containerd.events.TaskExit``). The event modules below register those
messages in protobuf's default pool, so decoding is a lookup by that name.
"""

from __future__ import annotations

import datetime as _dt
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any

from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory, timestamp_pb2
from google.protobuf.message import Message

from ..errors import Unavailable
from ..types.events import Event, EventType
from ._convert import to_datetime
from ._pb.containerd.events import (  # noqa: F401  (imported to register the messages)
    container_pb2,
    content_pb2,
    image_pb2,
    namespace_pb2,
    snapshot_pb2,
    task_pb2,
)
from ._pb.containerd.services.events.v1 import events_pb2
from ._transport import Backoff, ResponseStream, Transport

__all__ = [
    "RemoteEventStream",
    "decode_any",
    "decode_envelope",
    "subscribe",
]

_log = logging.getLogger(__name__)


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


class RemoteEventStream:
    """A blocking iterator over containerd events; ``close()`` unsubscribes from any thread.

    When containerd becomes unreachable (it restarted) the stream subscribes again, for up
    to :data:`~libcontainerd.remote._transport.RECONNECT_WINDOW` seconds, and carries on;
    events published while it was down are lost (containerd keeps no backlog).
    """

    def __init__(
        self,
        stream: ResponseStream[events_pb2.Envelope],
        resubscribe: Callable[[], ResponseStream[events_pb2.Envelope]] | None = None,
    ) -> None:
        self._stream = stream
        self._resubscribe = resubscribe
        self._closed = threading.Event()
        self._finished = False
        self._lock = threading.Lock()
        # Started by the first poll(): a gRPC stream cannot wait with a timeout, so a
        # reader thread owned by the stream feeds a queue that poll() can wait on.
        self._reader: threading.Thread | None = None
        self._queue: queue.SimpleQueue[Event | BaseException | None] = queue.SimpleQueue()

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        if self._reader is None:
            return self._read()
        event = self.poll(None)
        if event is None:
            raise StopIteration
        return event

    @property
    def closed(self) -> bool:
        """Whether the stream was closed or has ended."""
        return self._closed.is_set() or self._finished

    def poll(self, timeout: float | None) -> Event | None:
        """The next event, or ``None`` when none came within ``timeout`` or the stream ended."""
        with self._lock:
            if self._reader is None and not self._closed.is_set():
                self._reader = threading.Thread(
                    target=self._pump, name="libcontainerd-remote-events", daemon=True
                )
                self._reader.start()
        if self._finished or self._closed.is_set():
            return None
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if self._closed.is_set():
            return None  # events still queued at close() are dropped, as iteration ends
        if item is None or isinstance(item, BaseException):
            self._finished = True
            if isinstance(item, BaseException):
                raise item
            return None
        return item

    def _pump(self) -> None:
        try:
            while True:
                self._queue.put(self._read())
        except StopIteration:
            self._queue.put(None)
        except BaseException as error:  # handed to the reader, who raises it
            self._queue.put(None if self._closed.is_set() else error)

    def _read(self) -> Event:
        backoff: Backoff | None = None
        while True:
            if self._closed.is_set():
                raise StopIteration
            try:
                envelope = next(self._stream)
            except Unavailable:
                if self._resubscribe is None:
                    raise
                backoff = backoff or Backoff()
                delay = backoff.next_delay()
                if delay is None:
                    raise
                _log.debug("event stream lost; subscribing again in %.2f s", delay)
                if self._closed.wait(delay):
                    raise StopIteration from None
                self._swap(self._resubscribe())
                continue
            return decode_envelope(envelope)

    def _swap(self, stream: ResponseStream[events_pb2.Envelope]) -> None:
        with self._lock:
            if not self._closed.is_set():
                self._stream = stream
                return
        stream.cancel()

    def close(self) -> None:
        """Stop the subscription; iteration ends."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            stream = self._stream
        stream.cancel()
        self._queue.put(None)  # wakes a poll() waiting on the queue

    def __enter__(self) -> RemoteEventStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def subscribe(
    transport: Transport, filters: Sequence[str], *, all_namespaces: bool = False
) -> RemoteEventStream:
    """Subscribe to events matching ``filters`` (containerd filter syntax).

    Events of the client's namespace only, unless ``all_namespaces``.
    """
    if isinstance(filters, str):
        filters = [filters]
    wanted = list(filters)
    if not all_namespaces:
        scope = f'namespace=="{transport.namespace}"'
        wanted = [f"{scope},{f}" for f in wanted] if wanted else [scope]
    request = events_pb2.SubscribeRequest(filters=wanted)

    def open_stream() -> ResponseStream[events_pb2.Envelope]:
        return transport.stream(transport.events.Subscribe, request)

    return RemoteEventStream(open_stream(), open_stream)
