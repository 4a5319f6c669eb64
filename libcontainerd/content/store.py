"""A content-addressed blob store on the local filesystem.

Layout under ``root``::

    blobs/<algorithm>/<hex>        committed blobs, read-only (0444), named by their digest
    labels/<algorithm>/<hex>.json  labels of a blob (written to a temp file, then renamed)
    ingest/<key>/                  one in-progress write per ref (``key`` = sha256 of the ref)
        data   ref   lock

A writer appends to ``ingest/<key>/data``; a writer opened again for the same ref resumes
at the bytes already there (its :attr:`ContentWriter.offset`). :meth:`ContentWriter.commit`
verifies size and digest and renames the data into ``blobs/`` in one step, so a reader
never sees a partial or unverified blob. Two writers of one ref are serialised by an
``flock`` on the ref's lock file (which also works between threads of one process, since
each writer opens its own file description).

Digests are validated before they become paths, so hostile digest text
(``sha256:../../x``) is refused with :class:`InvalidArgument`.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import attrs

from libcontainerd.errors import (
    DataLoss,
    DeadlineExceeded,
    DigestMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.digest import split_digest, validate_digest

__all__ = ["BlobInfo", "ContentStore", "ContentWriter", "IngestStatus"]

_CHUNK = 1 << 20
_MAX_REF = 4096
_MAX_LABEL_BYTES = 64 * 1024


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _from_ts(ts: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)


@attrs.frozen
class BlobInfo:
    """What the store knows about one committed blob."""

    digest: str
    size: int
    created_at: datetime.datetime
    updated_at: datetime.datetime
    labels: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class IngestStatus:
    """An in-progress write: its ref, how many bytes it holds and what it expects."""

    ref: str
    offset: int
    expected_digest: str | None
    expected_size: int | None
    updated_at: datetime.datetime


def _check_labels(labels: Mapping[str, str | None]) -> None:
    if not isinstance(labels, Mapping):
        raise InvalidArgument(f"labels must be a mapping of str to str, not {type(labels)}")
    total = 0
    for key, value in labels.items():
        if not isinstance(key, str) or not key or "\0" in key:
            raise InvalidArgument(f"label keys must be non-empty strings without NUL: {key!r}")
        if value is not None and (not isinstance(value, str) or "\0" in value):
            raise InvalidArgument(f"label {key!r} must have a str value (or None to remove it)")
        total += len(key) + len(value or "")
    if total > _MAX_LABEL_BYTES:
        raise InvalidArgument(
            f"labels total {total} characters; a blob's labels may hold at most {_MAX_LABEL_BYTES}"
        )


def _check_ref(ref: object) -> str:
    if not isinstance(ref, str) or not ref or len(ref) > _MAX_REF or "\0" in ref:
        raise InvalidArgument(
            f"ingest ref must be a non-empty string of at most {_MAX_REF} characters "
            f"without NUL, got {ref!r:.80}"
        )
    return ref


def _atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
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


class ContentWriter:
    """Writes one blob into a :class:`ContentStore`; get one from :meth:`ContentStore.writer`.

    Holds the ref's lock from creation until :meth:`commit`, :meth:`abort` or
    :meth:`close`. Used as a context manager it closes on exit; the bytes written stay in
    ``ingest/`` so a later writer of the same ref resumes at :attr:`offset` unless the
    writer was committed or aborted.
    """

    def __init__(
        self,
        store: ContentStore,
        ref: str,
        ingest_dir: Path,
        lock_fd: int,
        expected_digest: str | None,
        expected_size: int | None,
    ) -> None:
        self._store = store
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
        while chunk := self._file.read(_CHUNK):
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
            _check_labels(labels)
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
                while chunk := f.read(_CHUNK):
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
        target = self._store.path(actual)
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
                self._store.update_labels(actual, dict(labels))
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
            updated_at=_now(),
        )

    def __enter__(self) -> ContentWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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


class ContentStore:
    """Blobs addressed by digest under ``root`` (see the module documentation)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        for sub in ("blobs", "ingest", "labels"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"ContentStore({str(self.root)!r})"

    # -- paths -------------------------------------------------------------------------

    def path(self, digest: str) -> Path:
        """Where blob ``digest`` is (or would be) stored; the digest is validated first."""
        algorithm, encoded = split_digest(digest)
        return self.root / "blobs" / algorithm / encoded

    def _labels_path(self, digest: str) -> Path:
        algorithm, encoded = split_digest(digest)
        return self.root / "labels" / algorithm / f"{encoded}.json"

    def _ingest_dir(self, ref: str) -> Path:
        # Refs are free text; hashing them keeps them out of path syntax entirely.
        return (
            self.root / "ingest" / hashlib.sha256(ref.encode("utf-8", "surrogatepass")).hexdigest()
        )

    # -- writing -----------------------------------------------------------------------

    def writer(
        self,
        ref: str | Descriptor,
        expected_digest: str | None = None,
        expected_size: int | None = None,
        *,
        timeout: float | None = None,
    ) -> ContentWriter:
        """Open (or resume) the write of ``ref``.

        ``ref`` names the write (any string, e.g. ``"layer-sha256:..."``). Waits for
        another writer of the same ref to finish, at most ``timeout`` seconds (forever when
        ``None``), then raises :class:`DeadlineExceeded`.

        Passing a :class:`Descriptor` (the registry client's ``BlobSink`` protocol) takes
        digest and size from it and uses a fresh, unique ref: that protocol always writes
        from byte 0 and may run two downloads of one blob at once (in one event loop, where
        waiting on a lock would deadlock); both commits then succeed.
        """
        if isinstance(ref, Descriptor):
            expected_digest = expected_digest or ref.digest
            expected_size = ref.size if expected_size is None else expected_size
            ref = f"blob-{ref.digest}-{secrets.token_hex(8)}"
        _check_ref(ref)
        if expected_digest is not None:
            validate_digest(expected_digest)
        if expected_size is not None and (
            isinstance(expected_size, bool)
            or not isinstance(expected_size, int)
            or expected_size < 0
        ):
            raise InvalidArgument(f"expected_size must be an int >= 0, got {expected_size!r}")
        ingest = self._ingest_dir(ref)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ingest.mkdir(parents=True, exist_ok=True)
            try:
                lock_fd = os.open(
                    ingest / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
                )
            except FileNotFoundError:
                continue  # the directory was removed by a committing writer; retry
            if self._lock(lock_fd, deadline, ref):
                # The holder may have committed and removed the directory meanwhile; then
                # our lock is on an unlinked file and must be taken again on a fresh one.
                try:
                    same = os.fstat(lock_fd).st_ino == os.stat(ingest / "lock").st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    break
            os.close(lock_fd)
        try:
            _atomic_write(ingest / "ref", ref.encode("utf-8", "surrogatepass"), 0o600)
            expected = {"digest": expected_digest, "size": expected_size}
            _atomic_write(ingest / "expected", json.dumps(expected).encode(), 0o600)
            return ContentWriter(self, ref, ingest, lock_fd, expected_digest, expected_size)
        except BaseException:
            os.close(lock_fd)
            raise

    @staticmethod
    def _lock(fd: int, deadline: float | None, ref: str) -> bool:
        if deadline is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return True
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise DeadlineExceeded(
                        f"ref {ref!r} is being written by another writer; it did not finish "
                        "in time (retry later or abort the other write)"
                    ) from None
                time.sleep(0.01)

    def write_blob(
        self,
        data: bytes,
        expected_digest: str | None = None,
        *,
        labels: Mapping[str, str] | None = None,
    ) -> str:
        """Store ``data`` in one call and return its digest (verified if one is given)."""
        from libcontainerd.types.digest import compute_digest

        algorithm = split_digest(expected_digest)[0] if expected_digest else "sha256"
        digest = compute_digest(data, algorithm)
        with self.writer(f"write-{digest}-{secrets.token_hex(4)}", expected_digest) as w:
            w.write(data)
            w.commit(len(data), labels=labels)
            return w.digest

    def abort(self, ref: str) -> None:
        """Delete the in-progress write of ``ref`` (waiting for its writer to let go)."""
        _check_ref(ref)
        if not self._ingest_dir(ref).is_dir():
            raise NotFound(f"no write in progress for ref {ref!r}")
        self.writer(ref).abort()

    def ingests(self) -> list[IngestStatus]:
        """The writes in progress (or interrupted and resumable)."""
        result: list[IngestStatus] = []
        for entry in sorted((self.root / "ingest").iterdir()):
            try:
                ref = (entry / "ref").read_bytes().decode("utf-8", "surrogatepass")
                expected = json.loads((entry / "expected").read_bytes())
                st = os.stat(entry / "data")
            except (OSError, ValueError):
                continue
            result.append(
                IngestStatus(
                    ref=ref,
                    offset=st.st_size,
                    expected_digest=expected.get("digest"),
                    expected_size=expected.get("size"),
                    updated_at=_from_ts(st.st_mtime),
                )
            )
        return result

    def prune_ingests(self, older_than: float = 24 * 3600.0) -> list[str]:
        """Delete interrupted writes not touched for ``older_than`` seconds; returns their refs.

        Writes whose writer is still open (their lock is held) are left alone.
        """
        removed: list[str] = []
        cutoff = time.time() - older_than
        for entry in sorted((self.root / "ingest").iterdir()):
            try:
                newest = max(os.stat(p).st_mtime for p in entry.iterdir())
            except (OSError, ValueError):
                newest = 0.0
            if newest > cutoff:
                continue
            try:
                lock_fd = os.open(entry / "lock", os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
            except FileNotFoundError:
                lock_fd = -1
            try:
                if lock_fd >= 0:
                    try:
                        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue
                try:
                    ref = (entry / "ref").read_bytes().decode("utf-8", "surrogatepass")
                except OSError:
                    ref = entry.name
                for child in entry.iterdir():
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(child)
                with contextlib.suppress(OSError):
                    os.rmdir(entry)
                removed.append(ref)
            finally:
                if lock_fd >= 0:
                    os.close(lock_fd)
        return removed

    # -- reading -----------------------------------------------------------------------

    def exists(self, digest: str) -> bool:
        """Whether blob ``digest`` is stored (invalid digests raise InvalidArgument)."""
        return self.path(digest).is_file()

    def open(self, digest: str) -> BinaryIO:
        """Open blob ``digest`` for reading; :class:`NotFound` if it is not stored."""
        path = self.path(digest)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the content store {self.root}") from None
        return os.fdopen(fd, "rb")

    open_blob = open
    """Alias of :meth:`open` (the registry client's :class:`BlobSource` name)."""

    def read(self, digest: str, *, verify: bool = False) -> bytes:
        """The bytes of blob ``digest``; ``verify`` re-checks them (:class:`DataLoss`)."""
        with self.open(digest) as f:
            data = f.read()
        if verify:
            algorithm = split_digest(digest)[0]
            actual = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
            if actual != digest:
                raise DataLoss(
                    f"stored blob {digest} is corrupt (it hashes to {actual}); delete it and "
                    "fetch it again"
                )
        return data

    def info(self, digest: str) -> BlobInfo:
        """Size, times and labels of blob ``digest``."""
        path = self.path(digest)
        try:
            st = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the content store {self.root}") from None
        labels, updated = self._read_labels(digest)
        return BlobInfo(
            digest=digest,
            size=st.st_size,
            created_at=_from_ts(st.st_mtime),
            updated_at=updated or _from_ts(st.st_mtime),
            labels=labels,
        )

    def _read_labels(self, digest: str) -> tuple[dict[str, str], datetime.datetime | None]:
        path = self._labels_path(digest)
        try:
            raw = path.read_bytes()
            mtime = os.stat(path).st_mtime
        except FileNotFoundError:
            return {}, None
        try:
            labels = json.loads(raw)
            if not isinstance(labels, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            raise DataLoss(f"labels of blob {digest} at {path} are corrupt ({exc})") from None
        return {str(k): str(v) for k, v in labels.items()}, _from_ts(mtime)

    def update_labels(
        self, digest: str, labels: Mapping[str, str | None], *, replace: bool = False
    ) -> BlobInfo:
        """Set labels of blob ``digest`` (``None`` removes one); ``replace`` drops the rest.

        Used for the ``containerd.io/gc.ref.*`` labels that keep an image's graph alive.
        The sidecar file is replaced atomically. Concurrent updates of one blob are
        serialised by a lock on the sidecar's directory.
        """
        _check_labels(labels)
        if not self.exists(digest):
            raise NotFound(f"blob {digest} is not in the content store {self.root}")
        path = self._labels_path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._dir_lock(path.parent):
            current = {} if replace else self._read_labels(digest)[0]
            for key, value in labels.items():
                if value is None:
                    current.pop(key, None)
                else:
                    current[key] = value
            if current:
                _atomic_write(path, json.dumps(current, sort_keys=True).encode())
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        return self.info(digest)

    @contextlib.contextmanager
    def _dir_lock(self, directory: Path) -> Iterator[None]:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def delete(self, digest: str) -> None:
        """Remove blob ``digest`` and its labels; :class:`NotFound` if it is not stored."""
        path = self.path(digest)
        try:
            os.unlink(path)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the content store {self.root}") from None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._labels_path(digest))

    def walk(self, fn: Callable[[BlobInfo], object] | None = None) -> Iterator[BlobInfo]:
        """Yield every stored blob's info (sorted by digest), calling ``fn`` on each if given.

        Files in ``blobs/`` whose names are not valid digests are skipped.
        """
        blobs = self.root / "blobs"
        for algorithm_dir in sorted(blobs.iterdir()):
            if not algorithm_dir.is_dir():
                continue
            for entry in sorted(algorithm_dir.iterdir()):
                digest = f"{algorithm_dir.name}:{entry.name}"
                try:
                    split_digest(digest)
                    info = self.info(digest)
                except (InvalidArgument, NotFound):
                    continue
                if fn is not None:
                    fn(info)
                yield info

    def digests(self) -> list[str]:
        """Every stored blob's digest, sorted."""
        return [info.digest for info in self.walk()]

    def list(self) -> list[BlobInfo]:
        """Every stored blob's info, sorted by digest."""
        return [*self.walk()]
