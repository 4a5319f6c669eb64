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
from typing import BinaryIO

from libcontainerd.content.ingest import (
    ContentWriter,
    IngestStatus,
    atomic_write,
    check_labels,
    check_ref,
    from_timestamp,
)
from libcontainerd.content.protocol import BlobInfo
from libcontainerd.errors import (
    DataLoss,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
)
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.digest import split_digest, validate_digest

__all__ = ["BlobInfo", "ContentStore", "ContentWriter", "IngestStatus"]


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
        check_ref(ref)
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
            atomic_write(ingest / "ref", ref.encode("utf-8", "surrogatepass"), 0o600)
            expected = {"digest": expected_digest, "size": expected_size}
            atomic_write(ingest / "expected", json.dumps(expected).encode(), 0o600)
            return ContentWriter(
                self.path, self.update_labels, ref, ingest, lock_fd, expected_digest, expected_size
            )
        except BaseException:
            os.close(lock_fd)
            raise

    def resume(self, ref: str, descriptor: Descriptor) -> ContentWriter:
        """Continue (or start) the write ``ref`` of ``descriptor``'s blob.

        The writer's :attr:`~ContentWriter.offset` is where an interrupted earlier
        attempt stopped; the caller continues from there.
        """
        return self.writer(ref, descriptor.digest, descriptor.size)

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
        check_ref(ref)
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
                    updated_at=from_timestamp(st.st_mtime),
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

    def read_blob(self, digest: str) -> bytes:
        """The bytes of blob ``digest`` (the content protocol's name for :meth:`read`)."""
        return self.read(digest)

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
            created_at=from_timestamp(st.st_mtime),
            updated_at=updated or from_timestamp(st.st_mtime),
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
        return {str(k): str(v) for k, v in labels.items()}, from_timestamp(mtime)

    def update_labels(
        self, digest: str, labels: Mapping[str, str | None], *, replace: bool = False
    ) -> BlobInfo:
        """Set labels of blob ``digest`` (``None`` removes one); ``replace`` drops the rest.

        Used for the ``containerd.io/gc.ref.*`` labels that keep an image's graph alive.
        The sidecar file is replaced atomically. Concurrent updates of one blob are
        serialised by a lock on the sidecar's directory.
        """
        check_labels(labels)
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
                atomic_write(path, json.dumps(current, sort_keys=True).encode())
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
