"""A plain directory of blobs (``blobs/<alg>/<hex>``, the OCI image-layout shape).

:class:`DirectoryContentStore` is a :class:`~libcontainerd.content.protocol.BlobSink` and
:class:`~libcontainerd.content.protocol.BlobSource`: the registry client can pull into
it and push from it, and the archive codec can export from it. Used by tests, the image
builder and simple tools; the backends keep their content in their own stores.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO

from libcontainerd.content.protocol import BlobWriter
from libcontainerd.errors import DigestMismatch, InvalidArgument, NotFound
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.digest import split_digest

__all__ = ["DirectoryContentStore"]


class _FileWriter:
    def __init__(self, descriptor: Descriptor, final: Path, temp: Path) -> None:
        self._descriptor = descriptor
        self._final = final
        self._temp = temp
        self._file: BinaryIO | None = open(temp, "xb")  # noqa: SIM115 - closed in commit/abort
        self._algorithm = split_digest(descriptor.digest)[0]
        self._hash = hashlib.new(self._algorithm)
        self.offset = 0

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise InvalidArgument("write after commit or abort")
        self._file.write(data)
        self._hash.update(data)
        self.offset += len(data)

    def truncate(self) -> None:
        if self._file is None:
            raise InvalidArgument("truncate after commit or abort")
        self._file.seek(0)
        self._file.truncate()
        self._hash = hashlib.new(self._algorithm)
        self.offset = 0

    def commit(self) -> None:
        if self._file is None:
            raise InvalidArgument("commit after commit or abort")
        want = self._descriptor
        actual = f"{self._algorithm}:{self._hash.hexdigest()}"
        if self.offset != want.size or actual != want.digest:
            self.abort()
            raise DigestMismatch(
                f"blob {want.digest} is {self.offset} bytes hashing to {actual}; its descriptor "
                f"says {want.size} bytes; nothing was stored",
                expected=want.digest,
                actual=actual,
            )
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

    def path(self, digest: str) -> Path:
        """Where the blob ``digest`` is (or would be) stored."""
        algorithm, encoded = split_digest(digest)
        return self.root / "blobs" / algorithm / encoded

    def exists(self, digest: str) -> bool:
        """Whether the blob ``digest`` is stored."""
        return self.path(digest).is_file()

    def writer(self, descriptor: Descriptor) -> BlobWriter:
        """A writer staging ``descriptor``'s blob in ``ingest/``."""
        final = self.path(descriptor.digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        # Made on first write, so that reading a layout never changes it.
        (self.root / "ingest").mkdir(parents=True, exist_ok=True)
        temp = self.root / "ingest" / f"{final.name}.{secrets.token_hex(8)}"
        return _FileWriter(descriptor, final, temp)

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
        """Store ``data`` as ``descriptor``'s blob (its size and digest are checked)."""
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
        ingest = self.root / "ingest"
        return sorted(ingest.iterdir()) if ingest.is_dir() else []

    def __repr__(self) -> str:
        return f"DirectoryContentStore({str(self.root)!r})"
