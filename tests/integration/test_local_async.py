"""The local backend's asyncio client against real runc and crun: what the shared facade adds."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_support import NAMESPACE, LocalEnv, local_env

import libcontainerd
from libcontainerd.errors import FailedPrecondition
from libcontainerd.local import AsyncLocalClient
from libcontainerd.testing.host import ensure_crun_cgroup_layout, find_runtime, is_root
from libcontainerd.testing.image_builder import busybox_rootfs
from libcontainerd.types.stdio import PipedIO

pytestmark = pytest.mark.runtime

POOL_PREFIX = "libcontainerd-local"


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not is_root():
        pytest.skip("running containers with runc/crun needs root")
    ensure_crun_cgroup_layout()
    return busybox_rootfs(tmp_path_factory.mktemp("local-async-rootfs") / "rootfs")


@pytest.fixture(params=("runc", "crun"))
def env(request: pytest.FixtureRequest, tmp_path: Path, rootfs: Path) -> Iterator[LocalEnv]:
    name: str = request.param
    if find_runtime(name) is None:
        pytest.skip(f"{name} is not installed")
    with local_env(name, tmp_path, rootfs) as value:
        yield value


def _busy_pool_threads() -> int:
    # A pool thread blocked in a wait shows the facade's frame on its stack.
    frames = sys._current_frames()
    busy = 0
    for thread in threading.enumerate():
        frame = frames.get(thread.ident or -1)
        if not thread.name.startswith(POOL_PREFIX) or frame is None:
            continue
        while frame is not None:
            if frame.f_code.co_name == "_sliced_wait":
                busy += 1
                break
            frame = frame.f_back
    return busy


def test_cancelled_wait_frees_its_pool_thread(env: LocalEnv) -> None:
    async def main() -> None:
        client = libcontainerd.new_async_client(
            "local", root=env.root, state=env.state, runtime=env.runtime, namespace=NAMESPACE
        )
        assert isinstance(client, AsyncLocalClient)
        async with client:
            container_id = env.new_id()
            spec = env.spec("sh", "-c", "read line; exit 7", container_id=container_id)
            container = await client.new_container(container_id, spec)
            task = await container.new_task(stdio=PipedIO())
            await task.start()
            abandoned = asyncio.ensure_future(task.wait())
            await asyncio.sleep(0.3)
            assert _busy_pool_threads() == 1
            abandoned.cancel()
            with pytest.raises(asyncio.CancelledError):
                await abandoned
            for _ in range(60):
                if _busy_pool_threads() == 0:
                    break
                await asyncio.sleep(0.05)
            assert _busy_pool_threads() == 0
            # The process is untouched: a new wait still sees its exit.
            waiting = asyncio.ensure_future(task.wait(30))
            assert task.io is not None
            await task.io.write(b"go\n")
            assert (await waiting).code == 7
            await task.delete()
            await container.delete()
        with pytest.raises(FailedPrecondition, match="closed"):
            await client.version()
        await client.close()

    asyncio.run(main())
