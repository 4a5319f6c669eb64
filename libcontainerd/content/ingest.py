"""One in-progress write into the local content store, and the files it keeps.

An ingest lives in ``<root>/ingest/<key>/`` (``data``, ``ref``, ``expected``, ``lock``).
:class:`ContentWriter` appends to ``data``, re-hashes what an interrupted attempt left
there when it resumes, and on :meth:`ContentWriter.commit` checks size and digest and
renames ``data`` into ``blobs/`` in one step. It implements
:class:`libcontainerd.content.protocol.BlobWriter`.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

import attrs

from libcontainerd._closing import ClosesOnExit
from libcontainerd.errors import DigestMismatch, FailedPrecondition, InvalidArgument
from libcontainerd.types.digest import split_digest, validate_digest

__all__ = [
    "CHUNK",
    "MAX_LABEL_BYTES",
    "ContentWriter",
    "IngestStatus",
    "atomic_write",
    "check_labels",
    "check_ref",
    "from_timestamp",
    "now",
]

CHUNK = 1 << 20
MAX_REF = 4096
MAX_LABEL_BYTES = 64 * 1024


def now() -> datetime.datetime:
    """The current time, in UTC."""
    return datetime.datetime.now(datetime.timezone.utc)


def from_timestamp(ts: float) -> datetime.datetime:
    """A POSIX timestamp as a UTC datetime."""
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)


@attrs.frozen
class IngestStatus:
    """An in-progress write: its ref, how many bytes it holds and what it expects."""

    ref: str
    offset: int
    expected_digest: str | None
    expected_size: int | None
    updated_at: datetime.datetime


def check_labels(labels: Mapping[str, str | None]) -> None:
    """Refuse labels that are not a str->str mapping or that are too large in total."""
    if not isinstance(labels, Mapping):
        raise InvalidArgument(f"labels must be a mapping of str to str, not {type(labels)}")
    total = 0
    for key, value in labels.items():
        if not isinstance(key, str) or not key or "\0" in key:
            raise InvalidArgument(f"label keys must be non-empty strings without NUL: {key!r}")
        if value is not None and (not isinstance(value, str) or "\0" in value):
            raise InvalidArgument(f"label {key!r} must have a str value (or None to remove it)")
        total += len(key) + len(value or "")
    if total > MAX_LABEL_BYTES:
        raise InvalidArgument(
            f"labels total {total} characters; a blob's labels may hold at most {MAX_LABEL_BYTES}"
        )


def check_ref(ref: object) -> str:
    """``ref`` if it is a usable ingest name, else :class:`InvalidArgument`."""
    if not isinstance(ref, str) or not ref or len(ref) > MAX_REF or "\0" in ref:
        raise InvalidArgument(
            f"ingest ref must be a non-empty string of at most {MAX_REF} characters "
            f"without NUL, got {ref!r:.80}"
        )
    return ref


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a temp file and a rename (readers never see half)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class ContentWriter(ClosesOnExit):
    """Writes one blob into the local content store; get one from its ``writer()``.

    Holds the ref's lock from creation until :meth:`commit`, :meth:`abort` or
    :meth:`close`. Used as a context manager it closes on exit; the bytes written stay in
    ``ingest/`` so a later writer of the same ref resumes at :attr:`offset` unless the
    writer was committed or aborted.
    """

    def __init__(
        self,
        blob_path: Callable[[str], Path],
        set_labels: Callable[[str, Mapping[str, str]], object],
        ref: str,
        ingest_dir: Path,
        lock_fd: int,
        expected_digest: str | None,
        expected_size: int | None,
    ) -> None:
        self._blob_path = blob_path
        self._set_labels = set_labels
        self.ref = ref
        self._dir = ingest_dir
        self._lock_fd: int | None = lock_fd
        self.expected_digest = expected_digest
        self.expected_size = expected_size
        algorithm = split_digest(expected_digest)[0] if expected_digest else "sha256"
        self._algorithm = algorithm
        self._hash = hashlib.new(algorithm)
        data_path = ingest_dir / "data"
        fd = os.open(data_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        self._file: BinaryIO | None = os.fdopen(fd, "r+b")
        # Resuming: the hash state cannot be saved, so re-hash what is already there.
        offset = 0
        while chunk := self._file.read(CHUNK):
            self._hash.update(chunk)
            offset += len(chunk)
        self.offset = offset
        if expected_size is not None and offset > expected_size:
            self._discard()
            raise DigestMismatch(
                f"ingest {ref!r} already holds {offset} bytes, more than the expected "
                f"{expected_size}; it was discarded, write the blob again",
                expected=str(expected_size),
                actual=str(offset),
            )

    # -- protocol ------------------------------------------------------------------

    def _live(self, what: str) -> BinaryIO:
        if self._file is None:
            raise FailedPrecondition(
                f"cannot {what}: the writer for ref {self.ref!r} is already committed, "
                "aborted or closed; open a new writer"
            )
        return self._file

    def write(self, data: bytes) -> None:
        """Append ``data`` to the blob.

        Writing past ``expected_size`` discards the partial blob and raises
        :class:`DigestMismatch` (so a misbehaving source cannot fill the disk).
        """
        f = self._live("write")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidArgument(f"write() takes bytes, not {type(data).__name__}")
        if self.expected_size is not None and self.offset + len(data) > self.expected_size:
            actual = self.offset + len(data)
            self._discard()
            raise DigestMismatch(
                f"blob for ref {self.ref!r} grew to {actual} bytes, more than the expected "
                f"{self.expected_size}; the partial blob was discarded",
                expected=str(self.expected_size),
                actual=str(actual),
            )
        f.write(data)
        self._hash.update(data)
        self.offset += len(data)

    def truncate(self) -> None:
        """Drop everything written so far; the next write starts at byte 0."""
        f = self._live("truncate")
        f.seek(0)
        f.truncate()
        self._hash = hashlib.new(self._algorithm)
        self.offset = 0

    @property
    def digest(self) -> str:
        """The digest of the bytes written so far."""
        return f"{self._algorithm}:{self._hash.hexdigest()}"

    def commit(
        self,
        size: int | None = None,
        expected: str | None = None,
        *,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """Verify and publish the blob (its digest is then :attr:`digest`).

        ``size``/``expected`` add to (and must agree with) the expectations given when the
        writer was opened. A mismatch raises :class:`DigestMismatch` and deletes the
        partial blob. A blob that is already stored counts as success (the content is
        identical, since the digest is); ``labels`` are then merged into its labels.
        """
        f = self._live("commit")
        if labels is not None:
            check_labels(labels)
        want_digest = self.expected_digest
        if expected is not None:
            validate_digest(expected)
            if want_digest is not None and want_digest != expected:
                raise InvalidArgument(
                    f"commit expected {expected} but the writer was opened for {want_digest}"
                )
            if split_digest(expected)[0] != self._algorithm:
                # The running hash uses the opening algorithm; re-hash the data instead.
                self._algorithm = split_digest(expected)[0]
                self._hash = hashlib.new(self._algorithm)
                f.seek(0)
                while chunk := f.read(CHUNK):
                    self._hash.update(chunk)
            want_digest = expected
        want_size = self.expected_size if size is None else size
        if size is not None and self.expected_size is not None and size != self.expected_size:
            raise InvalidArgument(
                f"commit size {size} differs from the expected size {self.expected_size}"
            )
        if want_size is not None and self.offset != want_size:
            self._discard()
            raise DigestMismatch(
                f"blob for ref {self.ref!r} has {self.offset} bytes, expected {want_size}; "
                "the partial blob was discarded, fetch it again",
                expected=str(want_size),
                actual=str(self.offset),
            )
        actual = self.digest
        if want_digest is not None and actual != want_digest:
            self._discard()
            raise DigestMismatch(
                f"blob for ref {self.ref!r} has digest {actual}, expected {want_digest}; "
                "the partial blob was discarded, fetch it again",
                expected=want_digest,
                actual=actual,
            )
        f.flush()
        os.fsync(f.fileno())
        f.close()
        self._file = None
        target = self._blob_path(actual)
        target.parent.mkdir(parents=True, exist_ok=True)
        data_path = self._dir / "data"
        os.chmod(data_path, 0o444)
        try:
            if target.exists():
                # Identical content by definition of the digest: keep the stored copy.
                os.unlink(data_path)
            else:
                os.replace(data_path, target)
            if labels:
                self._set_labels(actual, dict(labels))
        finally:
            self._cleanup()

    def abort(self) -> None:
        """Delete the partial blob and release the ref. Safe to call more than once."""
        if self._lock_fd is not None:
            self._discard()

    def close(self) -> None:
        """Release the ref, keeping the bytes written so a later writer can resume."""
        if self._file is not None:
            self._file.flush()
            self._file.close()
            self._file = None
        self._release()

    def status(self) -> IngestStatus:
        """This write's progress."""
        return IngestStatus(
            ref=self.ref,
            offset=self.offset,
            expected_digest=self.expected_digest,
            expected_size=self.expected_size,
            updated_at=now(),
        )

    # -- internals -----------------------------------------------------------------

    def _discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._cleanup()

    def _cleanup(self) -> None:
        for name in ("data", "ref", "expected"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._dir / name)
        # The lock file stays until the directory goes: removing it while another writer
        # waits on it would let a third writer lock a new inode concurrently.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._dir / "lock")
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)
        self._release()

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
