"""containerd restarts under a live client: calls, waits and event subscriptions carry on."""

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
from libcontainerd.remote import AsyncRemoteClient, RemoteClient
from libcontainerd.types.events import Event, EventType
from libcontainerd.types.status import Status

NAMESPACE = "restart-it"

pytestmark = pytest.mark.containerd


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A daemon of this module's own: restarting a shared one would disturb other tests."""
    if os.geteuid() != 0 or shutil.which("containerd") is None:
        pytest.skip("needs root and the containerd binary")
    from libcontainerd.testing.containerd_daemon import start_containerd

    running = start_containerd(tmp_path_factory.mktemp("restart-containerd"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from libcontainerd.testing.image_builder import busybox_rootfs

    return busybox_rootfs(tmp_path_factory.mktemp("restart-bundle") / "rootfs")


def _container(client: RemoteClient, daemon: Any, rootfs: Path, cid: str, *args: str) -> Any:
    spec = generate_spec(
        with_rootfs(rootfs), with_process_args(*args), container_id=cid, namespace=NAMESPACE
    )
    return client.new_container(cid, spec, runtime_options={"root": str(daemon.runc_root)})


def _wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_client_survives_restart(daemon: Any, rootfs: Path) -> None:
    seen: list[Event] = []
    client = RemoteClient(
        ClientConfig(namespace=NAMESPACE, address=daemon.address, on_event=seen.append)
    )
    stream = client.events(['topic=="/tasks/exit"'])
    streamed: list[Event] = []
    reader = threading.Thread(target=lambda: streamed.extend(stream), daemon=True)
    reader.start()
    try:
        # Exits while containerd is down: the shim keeps its status for the daemon.
        short = _container(client, daemon, rootfs, "short", "sh", "-c", "sleep 1; exit 9")
        short_task = short.new_task()
        short_task.start()
        # Still running after the restart: a wait begun before must not be lost.
        long = _container(client, daemon, rootfs, "long", "sh", "-c", "sleep 4; exit 5")
        long_task = long.new_task()
        long_task.start()
        pending: list[Any] = []
        waiter = threading.Thread(target=lambda: pending.append(long_task.wait(timeout=60)))
        waiter.start()
        time.sleep(0.2)

        daemon.restart(down_for=1.5)  # "short" exits while no daemon runs

        assert client.version().version
        assert {c.id for c in client.containers()} == {"short", "long"}
        assert short_task.wait(timeout=30).code == 9
        assert short_task.status() is Status.STOPPED
        assert short_task.delete().code == 9
        short.delete()

        waiter.join(30)
        assert pending and pending[0].code == 5

        # Events after the restart reach both the callback and the open stream.
        probe = _container(client, daemon, rootfs, "probe", "sh", "-c", "exit 3")
        probe_task = probe.new_task()
        probe_task.start()
        assert probe_task.wait(timeout=30).code == 3

        def delivered(events: list[Event]) -> bool:
            return any(
                e.type is EventType.TASK_EXIT and e.container_id == "probe" and e.exit_code == 3
                for e in list(events)
            )

        assert _wait_for(lambda: delivered(seen)), [e.topic for e in seen]
        assert _wait_for(lambda: delivered(streamed)), [e.topic for e in streamed]
        probe_task.delete()
        probe.delete()
        long_task.delete()
        long.delete()
    finally:
        stream.close()
        reader.join(10)
        client.close()
    assert not reader.is_alive()


def test_async_wait_survives_restart_and_cancel_frees_thread(daemon: Any, rootfs: Path) -> None:
    sync = RemoteClient(ClientConfig(namespace=NAMESPACE, address=daemon.address))
    container = _container(sync, daemon, rootfs, "async", "sh", "-c", "sleep 3; exit 4")
    sync.close()

    async def main() -> None:
        client = AsyncRemoteClient(ClientConfig(namespace=NAMESPACE, address=daemon.address))
        try:
            task = await (await client.load_container(container.id)).new_task()
            await task.start()
            before = threading.active_count()
            abandoned = asyncio.ensure_future(task.wait())
            await asyncio.sleep(0.3)
            abandoned.cancel()
            with pytest.raises(asyncio.CancelledError):
                await abandoned
            waiting = asyncio.ensure_future(task.wait(timeout=60))
            await asyncio.sleep(0.2)
            await asyncio.to_thread(daemon.restart)
            assert (await waiting).code == 4
            # The cancelled wait's pool thread is free again after at most one slice:
            # a burst of calls needs no new threads.
            await asyncio.sleep(1.5)
            await asyncio.gather(*(task.status() for _ in range(2)))
            assert threading.active_count() <= before + 2
            await task.delete()
            await (await client.load_container(container.id)).delete()
        finally:
            await client.close()

    asyncio.run(main())


def test_cancelled_wait_returns_promptly(daemon: Any, rootfs: Path) -> None:
    from libcontainerd.errors import Canceled

    client = RemoteClient(ClientConfig(namespace=NAMESPACE, address=daemon.address))
    try:
        container = _container(client, daemon, rootfs, "cancel", "sleep", "300")
        task = container.new_task()
        task.start()
        cancel = threading.Event()
        outcome: list[BaseException] = []

        def wait() -> None:
            try:
                task.wait(cancel=cancel)
            except BaseException as error:
                outcome.append(error)

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.3)
        cancel.set()
        waiter.join(5)
        assert not waiter.is_alive()
        assert outcome and isinstance(outcome[0], Canceled)
        task.force_delete()
        container.delete()
    finally:
        client.close()
