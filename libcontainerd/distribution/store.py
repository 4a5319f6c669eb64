"""Where fetched blobs go and where pushed blobs come from.

:class:`BlobSink` / :class:`ContentWriter` are the small protocol the registry client
writes through: a writer receives the bytes while they stream in, and is committed only
after the client has verified size and digest (or aborted, leaving nothing behind).
The remote backend can implement it over containerd's content service and the local
backend over its own store; :class:`DirectoryContentStore` is a plain directory
(``blobs/sha256/<hex>``) used by tests and simple tools.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from libcontainerd.errors import InvalidArgument, NotFound
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.digest import split_digest

__all__ = [
    "BlobSink",
    "BlobSource",
    "ContentWriter",
    "DirectoryContentStore",
]


@runtime_checkable
class ContentWriter(Protocol):
    """Receives one blob's bytes; nothing is visible in the store before :meth:`commit`."""

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        ...

    def truncate(self) -> None:
        """Drop everything written so far (the download restarts from byte 0)."""
        ...

    def commit(self) -> None:
        """Make the blob visible; called only after its size and digest were verified."""
        ...

    def abort(self) -> None:
        """Throw the partial blob away. Safe to call more than once, or after commit."""
        ...


@runtime_checkable
class BlobSink(Protocol):
    """A content store the client can write blobs into."""

    def exists(self, digest: str) -> bool:
        """Whether the blob ``digest`` is already stored (then it is not downloaded)."""
        ...

    def writer(self, descriptor: Descriptor) -> ContentWriter:
        """A new writer for the blob ``descriptor``."""
        ...


@runtime_checkable
class BlobSource(Protocol):
    """A content store the client can read blobs from when pushing."""

    def exists(self, digest: str) -> bool:
        """Whether the blob ``digest`` is stored."""
        ...

    def open_blob(self, digest: str) -> BinaryIO:
        """Open the blob ``digest`` for reading; :class:`NotFound` if it is not stored."""
        ...


class _FileWriter:
    def __init__(self, final: Path, temp: Path) -> None:
        self._final = final
        self._temp = temp
        self._file: BinaryIO | None = open(temp, "xb")  # noqa: SIM115 - closed in commit/abort

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise InvalidArgument("write after commit or abort")
        self._file.write(data)

    def truncate(self) -> None:
        if self._file is None:
            raise InvalidArgument("truncate after commit or abort")
        self._file.seek(0)
        self._file.truncate()

    def commit(self) -> None:
        if self._file is None:
            raise InvalidArgument("commit after commit or abort")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.replace(self._temp, self._final)

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            self._temp.unlink()


class DirectoryContentStore:
    """Blobs as files ``<root>/blobs/<algorithm>/<hex>`` (the OCI image-layout shape).

    Writers stage in ``<root>/ingest/`` (same filesystem) and rename into place on
    commit, so a reader never sees a partial or unverified blob.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        (self.root / "ingest").mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Where the blob ``digest`` is (or would be) stored."""
        algorithm, encoded = split_digest(digest)
        return self.root / "blobs" / algorithm / encoded

    def exists(self, digest: str) -> bool:
        """Whether the blob ``digest`` is stored."""
        return self.path(digest).is_file()

    def writer(self, descriptor: Descriptor) -> ContentWriter:
        """A writer staging ``descriptor``'s blob in ``ingest/``."""
        final = self.path(descriptor.digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = self.root / "ingest" / f"{final.name}.{secrets.token_hex(8)}"
        return _FileWriter(final, temp)

    def open_blob(self, digest: str) -> BinaryIO:
        """Open the blob ``digest`` for reading."""
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the store at {self.root}") from None

    def read_blob(self, digest: str) -> bytes:
        """The bytes of blob ``digest``."""
        with self.open_blob(digest) as handle:
            return handle.read()

    def write_blob(self, descriptor: Descriptor, data: bytes) -> None:
        """Store ``data`` as ``descriptor``'s blob (no verification; for tests and tools)."""
        writer = self.writer(descriptor)
        try:
            writer.write(data)
            writer.commit()
        finally:
            writer.abort()

    def digests(self) -> list[str]:
        """Every stored blob's digest, sorted."""
        found: list[str] = []
        blobs = self.root / "blobs"
        if blobs.is_dir():
            for algorithm in sorted(p for p in blobs.iterdir() if p.is_dir()):
                found.extend(f"{algorithm.name}:{f.name}" for f in sorted(algorithm.iterdir()))
        return found

    def ingests(self) -> list[Path]:
        """Staged, uncommitted files (empty unless a transfer is in progress)."""
        return sorted((self.root / "ingest").iterdir())

    def __repr__(self) -> str:
        return f"DirectoryContentStore({str(self.root)!r})"
