"""The content protocol: what every blob store of the SDK offers, whoever keeps the bytes.

Blobs are addressed by digest. A :class:`BlobWriter` receives one blob's bytes while
they stream in; nothing is visible in the store before :meth:`BlobWriter.commit`,
which checks size and digest against the descriptor the writer was opened for (a
mismatch raises :class:`~libcontainerd.errors.DigestMismatch` and leaves nothing
behind), and :meth:`BlobWriter.abort` throws a partial write away.

Three levels, so that a store offers only what it can:

* :class:`BlobSink` -- a store the registry client and the archive codec write into;
* :class:`BlobSource` -- a store they read from (push, export);
* :class:`BlobStore` -- both, plus :meth:`~BlobStore.info`,
  :meth:`~BlobStore.delete` and resumable writes: the local store
  (:class:`libcontainerd.content.ContentStore`) and containerd's content service
  (the remote backend's store) implement it.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import BinaryIO, Protocol, runtime_checkable

import attrs

from libcontainerd.types.descriptor import Descriptor

__all__ = ["BlobInfo", "BlobSink", "BlobSource", "BlobStore", "BlobWriter"]


@attrs.frozen
class BlobInfo:
    """What a store knows about one committed blob."""

    digest: str
    size: int
    created_at: datetime.datetime
    updated_at: datetime.datetime
    labels: Mapping[str, str] = attrs.field(factory=dict)


@runtime_checkable
class BlobWriter(Protocol):
    """Receives one blob's bytes; nothing is visible in the store before :meth:`commit`."""

    @property
    def offset(self) -> int:
        """How many bytes of the blob the store already holds for this write.

        A writer from :meth:`BlobSink.writer` is still given the blob from byte 0 (a
        store may skip what it holds); one from :meth:`BlobStore.resume` continues here.
        """
        ...

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        ...

    def truncate(self) -> None:
        """Drop everything written so far (the write restarts from byte 0)."""
        ...

    def commit(self) -> None:
        """Check size and digest against the descriptor, then make the blob visible."""
        ...

    def abort(self) -> None:
        """Throw the partial blob away. Safe to call more than once, or after commit."""
        ...


@runtime_checkable
class BlobSink(Protocol):
    """A store blobs can be written into."""

    def exists(self, digest: str, /) -> bool:
        """Whether the blob ``digest`` is already stored (then it need not be written)."""
        ...

    def writer(self, descriptor: Descriptor, /) -> BlobWriter:
        """A new writer for the blob ``descriptor``; the caller writes it from byte 0."""
        ...


@runtime_checkable
class BlobSource(Protocol):
    """A store blobs can be read from."""

    def exists(self, digest: str, /) -> bool:
        """Whether the blob ``digest`` is stored."""
        ...

    def open_blob(self, digest: str, /) -> BinaryIO:
        """Open the blob ``digest`` for reading; :class:`NotFound` if it is not stored."""
        ...


@runtime_checkable
class BlobStore(BlobSink, BlobSource, Protocol):
    """A full content store: read, write with resume, commit with digest check, info, delete."""

    def resume(self, ref: str, descriptor: Descriptor, /) -> BlobWriter:
        """Continue the write named ``ref`` (or start it): :attr:`BlobWriter.offset`
        says how many bytes an earlier, interrupted attempt already stored."""
        ...

    def read_blob(self, digest: str, /) -> bytes:
        """The bytes of the blob ``digest``; :class:`NotFound` if it is not stored."""
        ...

    def info(self, digest: str, /) -> BlobInfo:
        """Size, times and labels of the blob ``digest``; :class:`NotFound` if absent."""
        ...

    def delete(self, digest: str, /) -> None:
        """Remove the blob ``digest``; :class:`NotFound` if it is not stored."""
        ...
