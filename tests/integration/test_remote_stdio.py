"""Remote stdio edge cases: writing to the stdin of a process that is gone."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libcontainerd.config import ClientConfig
from libcontainerd.errors import FailedPrecondition
from libcontainerd.oci import generate_spec, with_process_args, with_rootfs
from libcontainerd.remote import AsyncRemoteClient, RemoteClient
from libcontainerd.types.stdio import PipedIO

NAMESPACE = "stdio-it"
CHUNK = b"x" * 4096
# Far more than a pipe holds: a writer that could block would block within this.
LIMIT = 4 * 1024 * 1024

pytestmark = pytest.mark.containerd


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if os.geteuid() != 0 or shutil.which("containerd") is None:
        pytest.skip("needs root and the containerd binary")
    from libcontainerd.testing.containerd_daemon import start_containerd

    running = start_containerd(tmp_path_factory.mktemp("stdio-it"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from libcontainerd.testing.image_builder import busybox_rootfs

    return busybox_rootfs(tmp_path_factory.mktemp("stdio-bundle") / "rootfs")


def _spec(rootfs: Path, cid: str, *args: str) -> dict[str, Any]:
    return generate_spec(
        with_rootfs(rootfs), with_process_args(*args), container_id=cid, namespace=NAMESPACE
    )


def _write_until_error(write: Any) -> BaseException | None:
    """Write CHUNKs until one fails; run in a thread so a blocking write fails the test."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            for _ in range(LIMIT // len(CHUNK)):
                write(CHUNK)
        except BaseException as error:
            outcome.append(error)
        else:
            outcome.append(None)

    writer = threading.Thread(target=run, daemon=True)
    writer.start()
    writer.join(20)
    assert not writer.is_alive(), "writing to the stdin of an exited process blocked"
    return outcome[0]


@pytest.mark.parametrize("kind", ["task", "exec"])
def test_stdin_write_after_exit_fails(daemon: Any, rootfs: Path, kind: str) -> None:
    cid = f"stdin-{kind}-{os.getpid()}"
    options = {"root": str(daemon.runc_root)}
    with RemoteClient(ClientConfig(namespace=NAMESPACE, address=daemon.address)) as client:
        args = ("true",) if kind == "task" else ("sleep", "300")
        container = client.new_container(cid, _spec(rootfs, cid, *args), runtime_options=options)
        task = container.new_task(stdio=PipedIO() if kind == "task" else None)
        task.start()
        process: Any = task
        if kind == "exec":
            spec = _spec(rootfs, cid, "true")["process"]
            process = task.exec("short", spec, stdio=PipedIO())
            process.start()
        assert process.wait(timeout=30).code == 0
        assert process.io.stdout.read() == b""
        error = _write_until_error(process.io.stdin.write)
        assert isinstance(error, FailedPrecondition), error
        assert "exited" in str(error)
        process.delete()
        if kind == "exec":
            task.force_delete()
        container.delete()


def test_async_stdin_write_after_exit_fails(daemon: Any, rootfs: Path) -> None:
    cid = f"stdin-async-{os.getpid()}"
    options = {"root": str(daemon.runc_root)}

    async def main() -> None:
        client = AsyncRemoteClient(ClientConfig(namespace=NAMESPACE, address=daemon.address))
        try:
            container = await client.new_container(
                cid, _spec(rootfs, cid, "true"), runtime_options=options
            )
            task = await container.new_task(stdio=PipedIO())
            await task.start()
            await task.wait(timeout=30)
            assert task.io is not None
            with pytest.raises(FailedPrecondition):
                for _ in range(LIMIT // len(CHUNK)):
                    await asyncio.wait_for(task.io.write(CHUNK), 20)
            await task.delete()
            await container.delete()
        finally:
            await client.close()

    asyncio.run(main())
