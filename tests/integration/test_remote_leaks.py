"""Acceptance: many container lifecycles leave no descriptors, threads or FIFO directories."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libcontainerd.config import ClientConfig
from libcontainerd.oci import generate_spec, with_process_args, with_rootfs
from libcontainerd.remote import FIFO_ROOT, AsyncRemoteClient, RemoteClient
from libcontainerd.types.stdio import PipedIO

pytestmark = pytest.mark.containerd

WARMUP = 10
CYCLES = 200


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if os.geteuid() != 0 or shutil.which("containerd") is None:
        pytest.skip("needs root and the containerd binary")
    from libcontainerd.testing.containerd_daemon import start_containerd

    running = start_containerd(tmp_path_factory.mktemp("leaks"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from libcontainerd.testing.image_builder import busybox_rootfs

    return busybox_rootfs(tmp_path_factory.mktemp("leaks-bundle") / "rootfs")


POOL_PREFIX = "libcontainerd-remote"
# The async client's thread pool reuses idle workers, but a call submitted just before the
# previous worker marks itself idle starts one more: the pool settles at a few threads
# (bounded by the calls in flight at once, here one), which is not a leak.
POOL_BOUND = 8


def _pool_threads() -> int:
    return sum(t.name.startswith(POOL_PREFIX) for t in threading.enumerate())


def _resources() -> tuple[int, int, int]:
    """Open fds, Python threads and OS threads, not counting the async client's pool."""
    pool = _pool_threads()
    return (
        len(os.listdir("/proc/self/fd")),
        threading.active_count() - pool,
        len(os.listdir("/proc/self/task")) - pool,
    )


def _spec(rootfs: Path, cid: str, namespace: str) -> dict[str, Any]:
    return generate_spec(
        with_rootfs(rootfs), with_process_args("echo", "hi"), container_id=cid, namespace=namespace
    )


def _check(namespace: str, after_warmup: tuple[int, int, int], elapsed: float) -> None:
    after = _resources()
    print(f"{CYCLES} cycles in {elapsed:.1f} s; fds/threads/tasks {after_warmup} -> {after}")
    assert after[0] <= after_warmup[0], "file descriptors leaked"
    assert after[1] <= after_warmup[1], "Python threads leaked"
    assert after[2] <= after_warmup[2], "OS threads leaked"
    assert not (FIFO_ROOT / namespace).exists(), list((FIFO_ROOT / namespace).rglob("*"))
    assert _pool_threads() <= POOL_BOUND


def test_sync_lifecycles_leak_nothing(daemon: Any, rootfs: Path) -> None:
    namespace = f"leaks-sync-{os.getpid()}"
    options = {"root": str(daemon.runc_root)}
    with RemoteClient(ClientConfig(namespace=namespace, address=daemon.address)) as client:

        def cycle(n: int) -> None:
            cid = f"leak-{n}"
            container = client.new_container(
                cid, _spec(rootfs, cid, namespace), runtime_options=options
            )
            task = container.new_task(stdio=PipedIO())
            task.start()
            assert task.io is not None and task.io.stdout is not None
            assert task.io.stdout.read() == b"hi\n"
            assert task.wait(timeout=30).code == 0
            task.delete()
            container.delete()

        for n in range(WARMUP):
            cycle(n)
        after_warmup = _resources()
        started = time.monotonic()
        for n in range(WARMUP, WARMUP + CYCLES):
            cycle(n)
        _check(namespace, after_warmup, time.monotonic() - started)


def test_async_lifecycles_leak_nothing(daemon: Any, rootfs: Path) -> None:
    namespace = f"leaks-async-{os.getpid()}"
    options = {"root": str(daemon.runc_root)}

    async def main() -> None:
        client = AsyncRemoteClient(ClientConfig(namespace=namespace, address=daemon.address))

        async def cycle(n: int) -> None:
            cid = f"leak-{n}"
            container = await client.new_container(
                cid, _spec(rootfs, cid, namespace), runtime_options=options
            )
            task = await container.new_task(stdio=PipedIO())
            await task.start()
            assert task.io is not None
            assert await task.io.read_stdout() == b"hi\n"
            assert (await task.wait(timeout=30)).code == 0
            await task.delete()
            await container.delete()

        try:
            for n in range(WARMUP):
                await cycle(n)
            after_warmup = _resources()
            started = time.monotonic()
            for n in range(WARMUP, WARMUP + CYCLES):
                await cycle(n)
            _check(namespace, after_warmup, time.monotonic() - started)
        finally:
            await client.close()

    asyncio.run(main())
