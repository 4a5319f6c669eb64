"""Pieces of the registry client that need no network: platform choice, retry policy,
host rules, the directory store and the flow drivers."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

import httpx
import pytest

import libcontainerd.distribution as distribution
from libcontainerd.content import DirectoryContentStore
from libcontainerd.distribution import RetryPolicy
from libcontainerd.distribution._flow import Call, Parallel, Sleep, run_async, run_sync
from libcontainerd.distribution._http import is_loopback as _is_loopback
from libcontainerd.distribution._manifests import manifest_media_type as _manifest_media_type
from libcontainerd.distribution._session import RegistrySession as RegistryCore
from libcontainerd.errors import Canceled, InvalidArgument, NotFound, Unimplemented
from libcontainerd.types import platform as platforms
from libcontainerd.types.descriptor import Descriptor, select_platforms
from libcontainerd.types.platform import Platform


def _entry(platform: str | None, n: int) -> Descriptor:
    return Descriptor(
        media_type="application/vnd.oci.image.manifest.v1+json",
        digest="sha256:" + f"{n:x}" * 64 if n < 16 else "sha256:" + "f" * 64,
        size=100 + n,
        platform=Platform.parse(platform) if platform else None,
    )


INDEX = [
    _entry("linux/386", 1),
    _entry("linux/amd64", 2),
    _entry("linux/arm/v6", 3),
    _entry("linux/arm/v7", 4),
    _entry("linux/arm64", 5),
    _entry(None, 6),
]


def test_best_match_prefers_exact_platform() -> None:
    assert select_platforms(INDEX, "linux/amd64") == [INDEX[1]]
    assert select_platforms(INDEX, Platform.parse("linux/arm/v7")) == [INDEX[3]]
    # Fallback: arm64 hosts can run arm/v7 when no arm64 entry exists.
    assert select_platforms(INDEX[:4], "linux/arm64") == [INDEX[3]]


def test_several_all_and_matcher() -> None:
    assert select_platforms(INDEX, ["linux/arm64", "linux/amd64"]) == [INDEX[4], INDEX[1]]
    assert select_platforms(INDEX, "all") == INDEX
    matcher = platforms.any_of(Platform.parse("linux/arm/v6"))
    assert select_platforms(INDEX, matcher) == [INDEX[2]]
    assert select_platforms(INDEX, None) == select_platforms(INDEX, platforms.default())


def test_no_match_names_the_platform() -> None:
    with pytest.raises(NotFound, match=r"linux/s390x.*offers linux/386, linux/amd64"):
        select_platforms(INDEX, "linux/s390x")
    with pytest.raises(InvalidArgument):
        select_platforms(INDEX, 42)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        select_platforms(INDEX, [])


def test_retry_policy_bounds() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_cap=4.0, max_retry_after=10.0)
    for attempt in range(40):
        delay = policy.delay(attempt)
        ceiling = min(4.0, 2.0**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert policy.retry_after("3", 0) == 3.0
    assert policy.retry_after("999", 0) == 10.0
    assert policy.retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 0) == 0.0
    assert 0.5 <= policy.retry_after("soon", 0) <= 1.0
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)


def test_plain_http_only_for_loopback_and_named_hosts() -> None:
    for host in ("127.0.0.1:5000", "127.8.9.1", "localhost:5000", "[::1]:5000", "::1"):
        assert _is_loopback(host), host
    for host in ("10.0.0.1:5000", "registry.example.com", "localhost.evil.com"):
        assert not _is_loopback(host), host
    core = RegistryCore(insecure_hosts=["registry.lan:5000"])
    assert core.plain_http_allowed("registry.lan:5000")
    assert not core.plain_http_allowed("registry.lan")
    assert core.base_url("docker.io") == "https://registry-1.docker.io"
    with pytest.raises(InvalidArgument):
        RegistryCore(insecure_hosts="registry.lan")  # type: ignore[arg-type]


def test_manifest_media_type_inference() -> None:
    index = b'{"schemaVersion":2,"manifests":[]}'
    assert _manifest_media_type("application/json", index, "m") == (
        "application/vnd.oci.image.index.v1+json"
    )
    with pytest.raises(Unimplemented, match="schema 1"):
        _manifest_media_type("application/json", b'{"schemaVersion":1}', "m")


def test_directory_store_commit_and_abort(tmp_path: Path) -> None:
    store = DirectoryContentStore(tmp_path)
    data = b"hello"
    desc = Descriptor(
        media_type="text/plain", digest="sha256:" + hashlib.sha256(data).hexdigest(), size=5
    )
    writer = store.writer(desc)
    writer.write(b"junk")
    writer.truncate()
    writer.write(data)
    assert not store.exists(desc.digest) and len(store.ingests()) == 1
    writer.commit()
    writer.abort()  # harmless after commit
    assert store.read_blob(desc.digest) == data and store.ingests() == []
    aborted = store.writer(Descriptor(media_type="text/plain", digest="sha256:" + "0" * 64, size=1))
    aborted.write(b"x")
    aborted.abort()
    assert store.digests() == [desc.digest] and store.ingests() == []
    with pytest.raises(NotFound):
        store.open_blob("sha256:" + "1" * 64)


def _counting(log: list[str], name: str, fail: bool = False) -> Generator[Any, Any, str]:
    try:
        yield Sleep(0.01 if not fail else 0.0)
        if fail:
            raise RuntimeError(f"{name} failed")
        yield Sleep(2.0)  # long enough that cancellation must cut it short
        return name
    finally:
        log.append(name)


def test_parallel_failure_cancels_siblings_sync() -> None:
    log: list[str] = []

    def flow() -> Generator[Any, Any, list[str]]:
        result = yield Parallel([_counting(log, "a"), _counting(log, "b", fail=True)], 2)
        return list(result)

    with httpx.Client() as client, pytest.raises(RuntimeError, match="b failed"):
        run_sync(client, flow())
    assert sorted(log) == ["a", "b"]


def test_parallel_results_and_call_async() -> None:
    log: list[str] = []

    def quick(name: str) -> Generator[Any, Any, str]:
        value = yield Call(str.upper, (name,))
        return str(value)

    def flow() -> Generator[Any, Any, list[str]]:
        result = yield Parallel([quick("x"), quick("y"), quick("z")], 2)
        return list(result)

    async def main() -> list[str]:
        async with httpx.AsyncClient() as client:
            return await run_async(client, flow())

    assert asyncio.run(main()) == ["X", "Y", "Z"]
    with httpx.Client() as client:
        assert run_sync(client, flow()) == ["X", "Y", "Z"]
    assert log == []


def test_cancel_event_reaches_flow() -> None:
    cancel = threading.Event()
    cancel.set()
    log: list[str] = []
    with httpx.Client() as client, pytest.raises(Canceled):
        run_sync(client, _counting(log, "c"), cancel)
    assert log == ["c"]


def test_exported_names() -> None:
    for name in distribution.__all__:
        assert hasattr(distribution, name), name
    assert "RegistryClient" in distribution.__all__
    assert "AsyncRegistryClient" in distribution.__all__
