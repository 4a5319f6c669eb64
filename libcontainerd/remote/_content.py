"""containerd's content service as a blob store for the registry client and archives.

:class:`RemoteContentStore` implements the content protocol
(:class:`~libcontainerd.content.protocol.BlobStore`), so
:meth:`~libcontainerd.distribution.RegistryClient.pull_graph` writes straight into
containerd, ``push_graph`` reads from it, and the archive codec imports into it. Every
call carries the store's lease (if any), so partial and freshly committed content is
protected from garbage collection until the caller has created the image record that
references it.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime
import io
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, BinaryIO, TypeVar

import grpc
from google.protobuf import field_mask_pb2

from libcontainerd.content.protocol import BlobInfo
from libcontainerd.errors import (
    AlreadyExists,
    DigestMismatch,
    Error,
    FailedPrecondition,
    NotFound,
    Unavailable,
)
from libcontainerd.remote._gc_labels import child_gc_labels
from libcontainerd.remote._pb.containerd.services.content.v1 import content_pb2
from libcontainerd.remote._transport import (
    NAMESPACE_HEADER,
    Transport,
    is_locked_message,
    translate_rpc_error,
)
from libcontainerd.remote._write_stream import RequestQueue, encode_write, serialize_request
from libcontainerd.types import descriptor as media
from libcontainerd.types.descriptor import Descriptor

__all__ = [
    "LEASE_HEADER",
    "LOCK_STALL_LIMIT",
    "MAX_WRITE_CHUNK",
    "RemoteContentStore",
    "RemoteContentWriter",
]

LEASE_HEADER = "containerd-lease"
"""The gRPC metadata key containerd reads the lease of a call from."""

MAX_WRITE_CHUNK = 8 * 1024 * 1024
"""The largest data message sent on a Write stream (below the 16 MiB message limit)."""

_SEND_THRESHOLD = 4 * 1024 * 1024
# Data messages sent before waiting for containerd's answers: the stream carries the
# next chunks while containerd writes the previous ones (one answer per message).
_MAX_IN_FLIGHT = 4
_READ_CHUNK = 1024 * 1024
_MAX_MANIFEST_BYTES = 4 * 1024 * 1024

_WRITE_METHOD = "/containerd.services.content.v1.Content/Write"

Req = TypeVar("Req")
Resp = TypeVar("Resp")


LOCK_STALL_LIMIT = 30.0
"""How long a writer waits for another writer of the same ingest that makes no progress."""

_LOCK_FIRST_DELAY = 0.05
_LOCK_MAX_DELAY = 1.0


class _Stall:
    """Backoff for a locked ingest: bounded by time without progress, not total time."""

    def __init__(self, store: RemoteContentStore, ref: str) -> None:
        self._store = store
        self._ref = ref
        self._delay = _LOCK_FIRST_DELAY
        self._offset = -1
        self._since = time.monotonic()

    def next_delay(self) -> float | None:
        offset = self._store.ingest_offset(self._ref)
        now = time.monotonic()
        if offset != self._offset:
            self._offset = offset
            self._since = now
        elif now - self._since >= LOCK_STALL_LIMIT:
            return None
        delay = self._delay
        self._delay = min(self._delay * 2, _LOCK_MAX_DELAY)
        return delay


class RemoteContentWriter:
    """One blob's Write stream; nothing is visible in the content store before :meth:`commit`.

    On open it asks containerd how much of the ingest ``ref`` already holds (left by an
    interrupted earlier attempt; :attr:`offset`). By default the caller still writes the
    blob from byte 0 and bytes below that offset are not sent again; with ``resume`` the
    caller continues at :attr:`offset` instead. containerd checks the whole blob's
    digest at commit.
    """

    def __init__(
        self,
        store: RemoteContentStore,
        descriptor: Descriptor,
        *,
        ref: str | None = None,
        labels: Mapping[str, str] | None = None,
        resume: bool = False,
    ) -> None:
        self._store = store
        self._descriptor = descriptor
        self._ref = ref or f"libcontainerd-{descriptor.digest}"
        self._labels = dict(labels or {})
        self._done = False
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._position = 0  # bytes the caller has handed us
        self._keep = bytearray() if self._wants_body() else None
        self._exists = False
        self._server_offset = 0
        self._sent = 0  # end of the bytes sent on the stream (or held by the ingest)
        self._in_flight = 0  # data messages whose answer has not been read yet
        self._requests = RequestQueue()
        self._responses: Any = None
        stalled = _Stall(self._store, self._ref)
        while True:
            try:
                self._open()
            except Unavailable as error:
                # Another pull of the same blob holds the ingest ref. Wait while it makes
                # progress: once it commits, the next attempt finds the blob stored.
                if not is_locked_message(str(error)):
                    raise
                delay = stalled.next_delay()
                if delay is None:
                    raise Unavailable(
                        f"blob {descriptor.digest} is being written by another client "
                        f"(ingest {self._ref}), which made no progress for "
                        f"{LOCK_STALL_LIMIT:g} s; retry later, or abort that ingest if its "
                        f"writer is gone ({error})"
                    ) from None
                time.sleep(delay)
                continue
            if resume:
                self._position = self._server_offset
            return

    def _open(self) -> None:
        self._requests = RequestQueue()
        self._responses = self._store._write(iter(self._requests), metadata=self._store._metadata())
        try:
            status = self._exchange(
                content_pb2.WriteContentRequest(
                    action=content_pb2.STAT,
                    ref=self._ref,
                    total=self._descriptor.size,
                    expected=self._descriptor.digest,
                )
            )
        except AlreadyExists:
            # Committed by someone else since the caller looked: only labels are left to do.
            self._exists = True
            self._close_stream()
            return
        except BaseException:
            self._close_stream()
            raise
        self._server_offset = self._sent = status.offset
        self._in_flight = 0

    def _wants_body(self) -> bool:
        media_type = self._descriptor.media_type
        return (
            media.is_index(media_type) or media.is_manifest(media_type)
        ) and self._descriptor.size <= _MAX_MANIFEST_BYTES

    @property
    def ref(self) -> str:
        """The ingest reference this writer uses."""
        return self._ref

    @property
    def offset(self) -> int:
        """How many bytes containerd holds for this ingest (see the class documentation)."""
        return self._server_offset

    def _answer(self) -> Any:
        try:
            return next(self._responses)
        except grpc.RpcError as error:
            raise translate_rpc_error(error, address=self._store.transport.address) from None
        except StopIteration:
            raise Error(f"containerd closed the write stream of {self._ref}") from None

    def _drain(self, keep: int = 0) -> None:
        """Read answers until at most ``keep`` data messages are unanswered."""
        while self._in_flight > keep:
            response = self._answer()
            self._in_flight -= 1
            self._server_offset = response.offset

    def _exchange(self, request: content_pb2.WriteContentRequest) -> Any:
        self._drain()
        self._requests.put(request)
        return self._answer()

    def _flush(self) -> None:
        """Send what is pending and wait until containerd has written all of it."""
        self._send_pending()
        self._drain()

    def _send_pending(self) -> None:
        if not self._pending:
            return
        chunks, size = self._pending, self._pending_size
        self._pending, self._pending_size = [], 0
        start = self._position - size
        # Bytes below the ingest's offset at open (or already sent) are not sent again.
        skip = max(0, self._sent - start)
        groups: list[list[bytes | memoryview]] = [list(chunks)]
        if skip or size > MAX_WRITE_CHUNK:
            data = memoryview(b"".join(chunks))
            groups = [
                [data[at : at + MAX_WRITE_CHUNK]] for at in range(skip, size, MAX_WRITE_CHUNK)
            ]
        offset = start + skip
        for group in groups:
            # Pipelined: containerd answers every data message; the answers are read
            # once more than _MAX_IN_FLIGHT wait, and all of them before commit.
            self._requests.put(encode_write(self._ref, offset, group))
            self._in_flight += 1
            offset += sum(len(chunk) for chunk in group)
            self._sent = offset
            self._drain(_MAX_IN_FLIGHT)

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        if self._done:
            raise FailedPrecondition(f"write to {self._ref} after commit or abort")
        if not data:
            return
        if self._keep is not None:
            self._keep.extend(data)
        self._pending.append(bytes(data))
        self._pending_size += len(data)
        self._position += len(data)
        if self._exists:
            self._pending.clear()
            self._pending_size = 0
        elif self._pending_size >= _SEND_THRESHOLD:
            self._send_pending()

    def truncate(self) -> None:
        """Drop everything written so far (the download restarts from byte 0)."""
        if self._done:
            raise FailedPrecondition(f"truncate of {self._ref} after commit or abort")
        self._pending.clear()
        self._pending_size = 0
        self._position = 0
        if self._keep is not None:
            self._keep.clear()
        if self._exists:
            return
        # A write at offset 0 makes containerd truncate the ingest.
        response = self._exchange(
            content_pb2.WriteContentRequest(action=content_pb2.WRITE, ref=self._ref, offset=0)
        )
        self._server_offset = self._sent = response.offset

    def commit(self) -> None:
        """Commit with the expected digest and size, plus the child and source labels."""
        if self._done:
            raise FailedPrecondition(f"commit of {self._ref} after commit or abort")
        labels = dict(self._store.labels)
        if self._keep is not None:
            labels.update(child_gc_labels(self._descriptor.media_type, bytes(self._keep)))
        labels.update(self._labels)
        if self._exists:
            self._done = True
            self._store.update_labels(self._descriptor.digest, labels)
            return
        try:
            self._flush()
            self._exchange(
                content_pb2.WriteContentRequest(
                    action=content_pb2.COMMIT,
                    ref=self._ref,
                    total=self._descriptor.size,
                    expected=self._descriptor.digest,
                    # offset 0 would ask containerd to truncate the ingest
                    offset=self._server_offset,
                    labels=labels,
                )
            )
        except AlreadyExists:
            # Stored meanwhile (another pull): make sure our labels are on it.
            self._close_stream()
            self._done = True
            self._store.update_labels(self._descriptor.digest, labels)
            return
        except FailedPrecondition as error:
            self.abort()
            if "digest" in str(error) or "size" in str(error):
                raise DigestMismatch(
                    f"containerd refused blob {self._descriptor.digest}: {error}",
                    expected=self._descriptor.digest,
                ) from None
            raise
        except BaseException:
            self.abort()
            raise
        self._done = True
        self._close_stream()

    def _close_stream(self) -> None:
        self._requests.end()
        with contextlib.suppress(Exception):
            self._responses.cancel()

    def abort(self) -> None:
        """Throw the partial blob away. Safe to call more than once, or after commit."""
        if self._done:
            return
        self._done = True
        self._close_stream()
        if self._exists:
            return
        with contextlib.suppress(Error):
            self._store._call(self._store._content.Abort, content_pb2.AbortRequest(ref=self._ref))


class _ReadStream(io.RawIOBase):
    """A blob read through the content service's Read stream."""

    def __init__(self, responses: Any, close: Callable[[], None], address: str) -> None:
        self._responses = responses
        self._cancel = close
        self._address = address
        self._buffer = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._buffer and not self._eof:
            try:
                self._buffer = next(self._responses).data
            except StopIteration:
                self._eof = True
            except grpc.RpcError as error:
                raise translate_rpc_error(error, address=self._address) from None
        size = min(len(buffer), len(self._buffer))
        buffer[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._cancel()
        super().close()


class RemoteContentStore:
    """Blobs in containerd's content store, all calls under ``lease_id`` when given.

    ``labels`` go on every blob this store commits (e.g. the distribution source).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        lease_id: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.transport = transport
        self.lease_id = lease_id
        self.labels: dict[str, str] = dict(labels or {})
        # Every call below names the namespace (_metadata): no interceptor needed.
        self._content = transport.direct_services.content
        self._write = transport.direct_channel.stream_stream(
            _WRITE_METHOD,
            request_serializer=serialize_request,
            response_deserializer=content_pb2.WriteContentResponse.FromString,
        )
        self._lock = threading.Lock()

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        items = [(NAMESPACE_HEADER, self.transport.namespace)]
        if self.lease_id:
            items.append((LEASE_HEADER, self.lease_id))
        return tuple(items)

    def _call(self, method: grpc.UnaryUnaryMultiCallable[Req, Resp], request: Req) -> Resp:
        try:
            return method(request, timeout=self.transport.timeout, metadata=self._metadata())
        except grpc.RpcError as error:
            raise translate_rpc_error(error, address=self.transport.address) from None

    def _info(self, digest: str) -> content_pb2.Info:
        return self._call(self._content.Info, content_pb2.InfoRequest(digest=digest)).info

    def info(self, digest: str) -> BlobInfo:
        """The stored blob's size, times and labels; ``NotFound`` when absent."""
        found = self._info(digest)
        utc = datetime.timezone.utc
        return BlobInfo(
            digest=found.digest,
            size=found.size,
            created_at=found.created_at.ToDatetime(tzinfo=utc),
            updated_at=found.updated_at.ToDatetime(tzinfo=utc),
            labels=dict(found.labels),
        )

    def exists(self, digest: str) -> bool:
        """Whether blob ``digest`` is committed in containerd."""
        try:
            self._info(digest)
        except NotFound:
            return False
        return True

    def list(self, filters: Sequence[str] = ()) -> list[content_pb2.Info]:
        """Every committed blob (containerd filter syntax)."""
        try:
            stream = self._content.List(
                content_pb2.ListContentRequest(filters=list(filters)), metadata=self._metadata()
            )
            return [info for response in stream for info in response.info]
        except grpc.RpcError as error:
            raise translate_rpc_error(error, address=self.transport.address) from None

    def writer(
        self, descriptor: Descriptor, *, labels: Mapping[str, str] | None = None
    ) -> RemoteContentWriter:
        """A new writer for ``descriptor``; the caller writes the blob from byte 0.

        Its ingest is named after the digest, so the bytes an interrupted earlier write
        left in containerd are not sent again.
        """
        return RemoteContentWriter(self, descriptor, labels=labels)

    def resume(self, ref: str, descriptor: Descriptor) -> RemoteContentWriter:
        """Continue the ingest ``ref`` of ``descriptor``: the caller writes from ``offset``."""
        return RemoteContentWriter(self, descriptor, ref=ref, resume=True)

    def write_blob(
        self, descriptor: Descriptor, data: bytes, *, labels: Mapping[str, str] | None = None
    ) -> None:
        """Store ``data`` as ``descriptor``'s blob (containerd verifies the digest)."""
        if self.exists(descriptor.digest):
            merged = dict(self.labels)
            merged.update(child_gc_labels(descriptor.media_type, data))
            merged.update(labels or {})
            self.update_labels(descriptor.digest, merged)
            return
        writer = RemoteContentWriter(
            self, descriptor, ref=f"libcontainerd-{secrets.token_hex(8)}", labels=labels
        )
        try:
            writer.write(data)
            writer.commit()
        finally:
            writer.abort()

    def update_labels(self, digest: str, labels: Mapping[str, str]) -> None:
        """Set ``labels`` on a committed blob, leaving its other labels alone."""
        if not labels:
            return
        mask = field_mask_pb2.FieldMask(paths=[f"labels.{key}" for key in labels])
        self._call(
            self._content.Update,
            content_pb2.UpdateRequest(
                info=content_pb2.Info(digest=digest, labels=dict(labels)), update_mask=mask
            ),
        )

    def open_blob(self, digest: str) -> BinaryIO:
        """Open blob ``digest`` for reading; ``NotFound`` when absent."""
        self._info(digest)  # a missing blob fails here, not on the first read
        call = self._content.Read(
            content_pb2.ReadContentRequest(digest=digest), metadata=self._metadata()
        )
        raw = _ReadStream(call, call.cancel, self.transport.address)
        return io.BufferedReader(raw, _READ_CHUNK)

    def read_blob(self, digest: str, *, limit: int | None = None) -> bytes:
        """The bytes of blob ``digest`` (``ResourceExhausted`` is not checked: pass ``limit``)."""
        with self.open_blob(digest) as handle:
            data = handle.read() if limit is None else handle.read(limit + 1)
        if limit is not None and len(data) > limit:
            raise FailedPrecondition(f"blob {digest} is larger than {limit} bytes")
        return data

    def present(self, digests: Sequence[str]) -> set[str]:
        """Which of ``digests`` are committed, asked in one call."""
        wanted = sorted({d for d in digests if d})
        if not wanted:
            return set()
        # containerd ORs the filters of a list: one round trip for all of them.
        found = self.list([f'digest=="{digest}"' for digest in wanted])
        return {info.digest for info in found} & set(wanted)

    def read_json(self, digest: str) -> Any:
        """Parse a small JSON blob (manifest, index, config); ``NotFound`` when absent."""
        limit = _MAX_MANIFEST_BYTES * 4
        # Straight to the Read stream (a missing blob fails on the first read): no Info
        # round trip for every manifest, index and config on the pull and create paths.
        call = self._content.Read(
            content_pb2.ReadContentRequest(digest=digest), metadata=self._metadata()
        )
        with io.BufferedReader(_ReadStream(call, call.cancel, self.transport.address)) as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise FailedPrecondition(f"blob {digest} is larger than {limit} bytes")
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            raise DigestMismatch(f"blob {digest} is not valid JSON", expected=digest) from None

    def delete(self, digest: str) -> None:
        """Delete blob ``digest`` (``NotFound`` when absent)."""
        self._call(self._content.Delete, content_pb2.DeleteContentRequest(digest=digest))

    def ingest_offset(self, ref: str) -> int:
        """How many bytes the active ingest ``ref`` holds (-1 when there is none)."""
        try:
            response = self._call(self._content.Status, content_pb2.StatusRequest(ref=ref))
        except NotFound:
            return -1
        return int(response.status.offset)

    def ingests(self) -> builtins.list[str]:
        """The refs of active (uncommitted) ingests."""
        response = self._call(self._content.ListStatuses, content_pb2.ListStatusesRequest())
        return [status.ref for status in response.statuses]


def leased_call(
    transport: Transport,
    method: grpc.UnaryUnaryMultiCallable[Req, Resp],
    request: Req,
    *,
    lease_id: str | None = None,
    timeout: float | None = -1.0,
) -> Resp:
    """A unary call in the transport's namespace and, when given, under ``lease_id``.

    ``timeout=-1`` means the client's default deadline, ``None`` no deadline.
    """
    metadata = [(NAMESPACE_HEADER, transport.namespace)]
    if lease_id:
        metadata.append((LEASE_HEADER, lease_id))
    deadline = transport.timeout if timeout == -1.0 else timeout
    try:
        response: Resp = transport.direct(method)(
            request, timeout=deadline, metadata=tuple(metadata)
        )
        return response
    except grpc.RpcError as error:
        raise translate_rpc_error(error, address=transport.address) from None
