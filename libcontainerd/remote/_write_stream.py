"""The request side of containerd's content ``Write`` stream.

Data messages carry most of a pull's bytes. Building a ``WriteContentRequest`` and
serializing it copies the data twice more after the chunks were joined;
:func:`encode_write` lays out the same protobuf wire bytes around the received chunks
with a single join, and :func:`serialize_request` lets those bytes through the stream's
serializer unchanged (every other request is a message, serialized as usual).
"""

from __future__ import annotations

import queue
from collections.abc import Iterator, Sequence

from libcontainerd.remote._pb.containerd.services.content.v1 import content_pb2

__all__ = ["RequestQueue", "encode_write", "serialize_request"]

# Field keys of WriteContentRequest (field number << 3 | wire type).
_ACTION = 0x08  # 1: varint
_REF = 0x12  # 2: length-delimited
_OFFSET = 0x28  # 5: varint
_DATA = 0x32  # 6: length-delimited

Request = content_pb2.WriteContentRequest | bytes


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_write(ref: str, offset: int, chunks: Sequence[bytes | memoryview]) -> bytes:
    """The wire bytes of ``WriteContentRequest(action=WRITE, ref, offset, data=chunks)``.

    Fields in number order and zero values left out, as protobuf serializes them.
    """
    encoded_ref = ref.encode()
    size = sum(len(chunk) for chunk in chunks)
    head = [bytes((_ACTION, content_pb2.WRITE))]
    if encoded_ref:
        head += [bytes((_REF,)), _varint(len(encoded_ref)), encoded_ref]
    if offset:
        head += [bytes((_OFFSET,)), _varint(offset)]
    if size:
        head += [bytes((_DATA,)), _varint(size)]
    return b"".join([*head, *chunks])


def serialize_request(request: Request) -> bytes:
    """The Write stream's request serializer: encoded bytes as they are, else the message's."""
    if isinstance(request, bytes):
        return request
    return request.SerializeToString()


class RequestQueue:
    """A blocking request iterator feeding one client stream from the writer's thread."""

    _END = object()

    def __init__(self) -> None:
        self._queue: queue.Queue[object] = queue.Queue()

    def put(self, request: Request) -> None:
        """Send ``request`` next."""
        self._queue.put(request)

    def end(self) -> None:
        """End the stream after the requests already put."""
        self._queue.put(self._END)

    def __iter__(self) -> Iterator[Request]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            assert isinstance(item, (bytes, content_pb2.WriteContentRequest))
            yield item
