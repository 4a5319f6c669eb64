"""The content Write stream's hand-laid data messages are the protobuf messages."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from libcontainerd.remote._pb.containerd.services.content.v1 import content_pb2
from libcontainerd.remote._write_stream import RequestQueue, encode_write, serialize_request

refs = st.text(max_size=80)
offsets = st.integers(min_value=0, max_value=2**63 - 1)
chunk_lists = st.lists(st.binary(max_size=300), max_size=6)


@given(refs, offsets, chunk_lists)
def test_encode_write_is_the_serialized_message(ref: str, offset: int, chunks: list[bytes]) -> None:
    message = content_pb2.WriteContentRequest(
        action=content_pb2.WRITE, ref=ref, offset=offset, data=b"".join(chunks)
    )
    encoded = encode_write(ref, offset, chunks)
    assert encoded == message.SerializeToString(deterministic=True)
    assert content_pb2.WriteContentRequest.FromString(encoded) == message


@given(refs, offsets, st.binary(max_size=2000), st.integers(min_value=1, max_value=700))
def test_memoryview_slices_encode_like_bytes(ref: str, offset: int, data: bytes, step: int) -> None:
    view = memoryview(data)
    pieces = [view[at : at + step] for at in range(0, len(data), step)]
    assert encode_write(ref, offset, pieces) == encode_write(ref, offset, [data])


def test_large_data_length_is_a_multi_byte_varint() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    decoded = content_pb2.WriteContentRequest.FromString(encode_write("r", 5 << 40, [data]))
    assert decoded.data == data and decoded.offset == 5 << 40 and decoded.ref == "r"


def test_serializer_passes_bytes_and_serializes_messages() -> None:
    stat = content_pb2.WriteContentRequest(action=content_pb2.STAT, ref="x", total=3)
    assert serialize_request(stat) == stat.SerializeToString()
    assert serialize_request(b"\x08\x01") == b"\x08\x01"


def test_request_queue_yields_until_end() -> None:
    requests = RequestQueue()
    stat = content_pb2.WriteContentRequest(action=content_pb2.STAT, ref="x")
    requests.put(stat)
    requests.put(b"\x08\x01")
    requests.end()
    requests.put(b"after the end")
    assert list(requests) == [stat, b"\x08\x01"]
