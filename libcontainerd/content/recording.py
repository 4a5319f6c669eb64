"""A blob sink that remembers what was committed through it."""

from __future__ import annotations

from libcontainerd.content.protocol import BlobSink, BlobWriter
from libcontainerd.types.descriptor import Descriptor

__all__ = ["RecordingSink", "RecordingWriter"]


class RecordingSink:
    """A sink over another, noting every blob committed through it.

    A pull or import that fails can then take back exactly what it wrote.
    """

    def __init__(self, content: BlobSink) -> None:
        self.content = content
        self.committed: set[str] = set()

    def exists(self, digest: str) -> bool:
        """Whether the store holds blob ``digest``."""
        return self.content.exists(digest)

    def writer(self, descriptor: Descriptor) -> BlobWriter:
        """The store's writer for ``descriptor``, noting its digest when it commits."""
        return RecordingWriter(self.content.writer(descriptor), descriptor.digest, self)


class RecordingWriter:
    """A writer that tells its :class:`RecordingSink` when it has committed."""

    def __init__(self, writer: BlobWriter, digest: str, sink: RecordingSink) -> None:
        self._writer = writer
        self._digest = digest
        self._sink = sink

    @property
    def offset(self) -> int:
        """The wrapped writer's offset."""
        return self._writer.offset

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        self._writer.write(data)

    def truncate(self) -> None:
        """Drop everything written so far."""
        self._writer.truncate()

    def commit(self) -> None:
        """Commit, then note the blob as written by this sink."""
        self._writer.commit()
        self._sink.committed.add(self._digest)

    def abort(self) -> None:
        """Throw the partial blob away."""
        self._writer.abort()
