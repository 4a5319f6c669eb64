"""Tests of libcontainerd.content.store: resumable, verified writes, labels, hostile digests."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcontainerd.content.protocol import BlobSink, BlobSource, BlobStore
from libcontainerd.content.protocol import BlobWriter as SinkWriter
from libcontainerd.content.store import ContentStore
from libcontainerd.errors import (
    DataLoss,
    DeadlineExceeded,
    DigestMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from libcontainerd.types.descriptor import MEDIA_TYPE_OCI_LAYER, Descriptor
from libcontainerd.types.digest import sha256_digest, sha512_digest

DATA = b"hello content store\n" * 100
DIGEST = sha256_digest(DATA)


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "content")


def ingest_dirs(store: ContentStore) -> list[str]:
    return sorted(os.listdir(store.root / "ingest"))


def test_write_commit_read(store: ContentStore) -> None:
    with store.writer("ref-1", DIGEST, len(DATA)) as w:
        assert w.offset == 0
        w.write(DATA[:10])
        w.write(DATA[10:])
        assert w.digest == DIGEST
        w.commit()
    assert store.exists(DIGEST)
    assert store.read(DIGEST, verify=True) == DATA
    with store.open(DIGEST) as f:
        assert f.read(5) == DATA[:5]
    info = store.info(DIGEST)
    assert (info.digest, info.size, dict(info.labels)) == (DIGEST, len(DATA), {})
    assert store.path(DIGEST) == store.root / "blobs" / "sha256" / DIGEST.partition(":")[2]
    assert [i.digest for i in store.list()] == [DIGEST]
    assert ingest_dirs(store) == []
    with pytest.raises(FailedPrecondition):
        w.write(b"more")


def test_resume_from_partial(store: ContentStore) -> None:
    w = store.writer("ref-resume", DIGEST, len(DATA))
    w.write(DATA[:777])
    w.close()
    assert [(s.ref, s.offset, s.expected_digest) for s in store.ingests()] == [
        ("ref-resume", 777, DIGEST)
    ]
    assert not store.exists(DIGEST)
    w2 = store.writer("ref-resume", DIGEST, len(DATA))
    assert w2.offset == 777
    w2.write(DATA[777:])
    w2.commit()
    assert w2.digest == DIGEST
    assert store.read(DIGEST) == DATA
    assert store.ingests() == []


def test_truncate_restarts(store: ContentStore) -> None:
    w = store.writer("ref-t", DIGEST)
    w.write(b"garbage")
    w.truncate()
    assert w.offset == 0
    w.write(DATA)
    w.commit()
    assert w.digest == DIGEST


def test_digest_mismatch_leaves_nothing(store: ContentStore) -> None:
    wrong = sha256_digest(b"something else")
    w = store.writer("ref-bad", wrong)
    w.write(DATA)
    with pytest.raises(DigestMismatch) as info:
        w.commit()
    assert (info.value.expected, info.value.actual) == (wrong, DIGEST)
    assert not store.exists(DIGEST) and not store.exists(wrong)
    assert ingest_dirs(store) == []
    assert store.list() == []


def test_size_mismatch_and_overflow(store: ContentStore) -> None:
    w = store.writer("ref-short", DIGEST, len(DATA))
    w.write(DATA[:-1])
    with pytest.raises(DigestMismatch, match="expected"):
        w.commit()
    w = store.writer("ref-long", None, 4)
    with pytest.raises(DigestMismatch, match="more than the expected 4"):
        w.write(b"12345")
    assert ingest_dirs(store) == []
    assert store.list() == []


def test_abort(store: ContentStore) -> None:
    w = store.writer("ref-a")
    w.write(b"partial")
    w.abort()
    w.abort()
    assert ingest_dirs(store) == []
    w = store.writer("ref-b")
    w.write(b"partial")
    w.close()
    store.abort("ref-b")
    assert ingest_dirs(store) == []
    with pytest.raises(NotFound):
        store.abort("ref-b")


def test_existing_blob_commit_is_success(store: ContentStore) -> None:
    assert store.write_blob(DATA) == DIGEST
    w = store.writer("again", DIGEST)
    w.write(DATA)
    w.commit(labels={"k": "v"})
    assert store.read(DIGEST) == DATA
    assert store.info(DIGEST).labels == {"k": "v"}


def test_sha512(store: ContentStore) -> None:
    digest = sha512_digest(DATA)
    assert store.write_blob(DATA, digest) == digest
    assert store.read(digest, verify=True) == DATA


HOSTILE = [
    "sha256:../../x",
    "sha256:../../../etc/passwd",
    "../x",
    "sha256:" + "A" * 64,
    "sha256:" + "0" * 63 + "/",
    "sha256/" + "0" * 64,
    "sha256:" + "0" * 64 + "/../x",
    "md5:" + "0" * 32,
    "",
]


@pytest.mark.parametrize("digest", HOSTILE)
def test_hostile_digests_refused(store: ContentStore, digest: str) -> None:
    for call in (store.exists, store.info, store.read, store.open, store.delete, store.path):
        with pytest.raises(InvalidArgument):
            call(digest)
    with pytest.raises(InvalidArgument):
        store.writer("r", digest)
    with pytest.raises(InvalidArgument):
        store.update_labels(digest, {"a": "b"})
    assert ingest_dirs(store) == []


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=80))
def test_arbitrary_digest_text_is_refused_or_valid(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    store = ContentStore(tmp_path_factory.getbasetemp() / "cs-prop")
    try:
        path = store.path(text)
    except InvalidArgument:
        return
    assert path.parent.parent == store.root / "blobs"


def test_refs_are_free_text(store: ContentStore) -> None:
    for ref in ("../../etc/x", "/abs", "a/b/c", "ünïcode", "x" * 1000):
        w = store.writer(ref)
        w.write(ref.encode())
        w.commit()
    assert ingest_dirs(store) == []
    assert len(store.list()) == 5
    for bad in ("", "a\0b", "x" * 5000):
        with pytest.raises(InvalidArgument):
            store.writer(bad)


def test_labels(store: ContentStore, tmp_path: Path) -> None:
    store.write_blob(DATA)
    info = store.update_labels(DIGEST, {"containerd.io/gc.ref.content.l.0": "sha256:abc"})
    assert info.labels == {"containerd.io/gc.ref.content.l.0": "sha256:abc"}
    store.update_labels(DIGEST, {"b": "2"})
    store.update_labels(DIGEST, {"containerd.io/gc.ref.content.l.0": None})
    assert ContentStore(store.root).info(DIGEST).labels == {"b": "2"}
    assert store.update_labels(DIGEST, {"c": "3"}, replace=True).labels == {"c": "3"}
    with pytest.raises(InvalidArgument):
        store.update_labels(DIGEST, {"": "x"})
    with pytest.raises(NotFound):
        store.update_labels(sha256_digest(b"absent"), {"a": "b"})
    store.delete(DIGEST)
    assert not store.exists(DIGEST)
    assert not list((store.root / "labels").rglob("*.json"))
    with pytest.raises(NotFound):
        store.delete(DIGEST)
    with pytest.raises(NotFound):
        store.info(DIGEST)


def test_corruption_detected_on_verify(store: ContentStore) -> None:
    store.write_blob(DATA)
    path = store.path(DIGEST)
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered")
    with pytest.raises(DataLoss, match="corrupt"):
        store.read(DIGEST, verify=True)


def test_concurrent_writers_same_ref(store: ContentStore) -> None:
    errors: list[BaseException] = []
    results: list[str] = []
    start = threading.Barrier(8)

    def work() -> None:
        try:
            start.wait()
            with store.writer("shared-ref", DIGEST, len(DATA)) as w:
                if w.offset:
                    w.truncate()
                for i in range(0, len(DATA), 100):
                    w.write(DATA[i : i + 100])
                w.commit()
                results.append(w.digest)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == [DIGEST] * 8
    assert store.read(DIGEST, verify=True) == DATA
    assert ingest_dirs(store) == []


def test_concurrent_writers_different_refs(store: ContentStore) -> None:
    blobs = [os.urandom(10_000) for _ in range(6)]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            store.write_blob(blobs[i % 3])  # pairs of threads write identical content
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(store.digests()) == sorted({sha256_digest(b) for b in blobs[:3]})


def test_locked_ref_times_out(store: ContentStore) -> None:
    holder = store.writer("busy")
    with pytest.raises(DeadlineExceeded, match="another writer"):
        store.writer("busy", timeout=0.1)
    holder.close()
    store.writer("busy", timeout=0.1).abort()


def test_walk_skips_foreign_files(store: ContentStore) -> None:
    store.write_blob(DATA)
    (store.root / "blobs" / "sha256" / "not-a-digest").write_bytes(b"x")
    seen: list[str] = []
    assert [i.digest for i in store.walk(lambda i: seen.append(i.digest))] == [DIGEST]
    assert seen == [DIGEST]


def test_satisfies_registry_sink_protocols(store: ContentStore) -> None:
    assert isinstance(store, BlobSink)
    assert isinstance(store, BlobSource)
    desc = Descriptor(media_type=MEDIA_TYPE_OCI_LAYER, digest=DIGEST, size=len(DATA))
    w = store.writer(desc)
    assert isinstance(w, SinkWriter)
    w.write(DATA)
    w.commit()
    w.abort()  # after commit: harmless
    with store.open_blob(DIGEST) as f:
        assert f.read() == DATA


def test_is_a_full_content_protocol_store(store: ContentStore) -> None:
    """The local store offers the whole content protocol, resumable writes included."""
    assert isinstance(store, BlobStore)
    desc = Descriptor(media_type=MEDIA_TYPE_OCI_LAYER, digest=DIGEST, size=len(DATA))
    first = store.resume("resume-me", desc)
    first.write(DATA[:5])
    first.close()  # interrupted: the bytes stay for the next attempt
    again = store.resume("resume-me", desc)
    assert again.offset == 5
    again.write(DATA[5:])
    again.commit()
    assert store.read_blob(DIGEST) == DATA
    assert store.info(DIGEST).size == len(DATA)
    store.delete(DIGEST)
    assert not store.exists(DIGEST)
    bad = Descriptor(media_type=MEDIA_TYPE_OCI_LAYER, digest=DIGEST, size=len(DATA) + 1)
    w = store.writer(bad)
    w.write(DATA)
    with pytest.raises(DigestMismatch):
        w.commit()


def test_sink_writers_of_one_blob_do_not_block_each_other(store: ContentStore) -> None:
    desc = Descriptor(media_type=MEDIA_TYPE_OCI_LAYER, digest=DIGEST, size=len(DATA))
    first, second = store.writer(desc), store.writer(desc)  # would deadlock if they shared
    first.write(DATA)
    second.write(DATA)
    first.commit()
    second.commit()
    assert store.read(DIGEST) == DATA
    assert ingest_dirs(store) == []


def test_prune_ingests(store: ContentStore) -> None:
    old = store.writer("old")
    old.write(b"x")
    old.close()
    live = store.writer("live")
    live.write(b"y")
    assert store.prune_ingests(older_than=3600) == []
    assert sorted(store.prune_ingests(older_than=-1)) == ["old"]
    assert [s.ref for s in store.ingests()] == ["live"]
    live.abort()
