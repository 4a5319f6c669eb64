"""Load: 64 concurrent lifecycles (threads and asyncio) and 10,000 events in order."""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fault_support import Tally, fifo_count, open_fds, remote_leaks, wait_until
from google.protobuf import any_pb2

import libcontainerd
from libcontainerd.oci import generate_spec, with_process_args, with_rootfs
from libcontainerd.remote._pb.containerd.events import container_pb2
from libcontainerd.remote._pb.containerd.services.events.v1 import events_pb2
from libcontainerd.types.events import EventType

pytestmark = pytest.mark.containerd

NAMESPACE = "faults-load"
LIFECYCLES = 64
EVENT_SOURCES = 10
EVENTS_EACH = 1000


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, fault_rootfs: Path) -> Iterator[Any]:
    """This module's own containerd."""
    from libcontainerd.testing.containerd_daemon import start_containerd

    running = start_containerd(tmp_path_factory.mktemp("faults-load") / "d")
    try:
        yield running
    finally:
        running.stop()


def _spec(rootfs: Path, cid: str, code: int) -> dict[str, Any]:
    return generate_spec(
        with_rootfs(rootfs),
        with_process_args("sh", "-c", f"exit {code}"),
        container_id=cid,
        namespace=NAMESPACE,
    )


def _check_clean(client: Any, tally: Tally) -> None:
    leaks = remote_leaks(client)
    for key, value in leaks.items():
        tally.leaks[key] += value
    assert leaks == {"snapshots": 0, "leases": 0, "fifos": 0}


def test_64_lifecycles_from_threads(
    daemon: Any, fault_rootfs: Path, tally: Tally, no_thread_leak: None
) -> None:
    fds_before = open_fds()
    client = libcontainerd.new_client("remote", address=daemon.address, namespace=NAMESPACE)
    runtime = {"root": str(daemon.runc_root)}

    def lifecycle(index: int) -> int:
        cid = f"thread-{index:02d}"
        container = client.new_container(
            cid, _spec(fault_rootfs, cid, index % 100), runtime_options=runtime
        )
        task = container.new_task()
        task.start()
        code = task.wait(timeout=120).code
        task.delete()
        container.delete()
        return code

    try:
        with ThreadPoolExecutor(LIFECYCLES) as pool:
            codes = list(pool.map(lifecycle, range(LIFECYCLES)))
        assert codes == [i % 100 for i in range(LIFECYCLES)]
        assert client.containers() == []
        _check_clean(client, tally)
    finally:
        client.close()
    assert wait_until(lambda: not (open_fds() - fds_before), 5), open_fds() - fds_before
    tally.operations += LIFECYCLES * 6
    tally.tests += 1


def test_64_lifecycles_from_asyncio(
    daemon: Any, fault_rootfs: Path, tally: Tally, no_thread_leak: None
) -> None:
    fds_before = open_fds()
    runtime = {"root": str(daemon.runc_root)}

    async def main() -> list[int]:
        client = libcontainerd.new_async_client(
            "remote", address=daemon.address, namespace=NAMESPACE
        )

        async def lifecycle(index: int) -> int:
            cid = f"async-{index:02d}"
            container = await client.new_container(
                cid, _spec(fault_rootfs, cid, index % 100), runtime_options=runtime
            )
            task = await container.new_task()
            await task.start()
            code = (await task.wait(timeout=120)).code
            await task.delete()
            await container.delete()
            return code

        try:
            codes = await asyncio.gather(*(lifecycle(i) for i in range(LIFECYCLES)))
            assert await client.containers() == []
            return list(codes)
        finally:
            await client.close()

    assert asyncio.run(main()) == [i % 100 for i in range(LIFECYCLES)]
    assert fifo_count(NAMESPACE) == 0
    assert wait_until(lambda: not (open_fds() - fds_before), 5), open_fds() - fds_before
    tally.operations += LIFECYCLES * 6
    tally.tests += 1


def test_10000_events_without_loss_or_reordering(
    daemon: Any, tally: Tally, no_thread_leak: None
) -> None:
    """Events published through containerd's own exchange (Events.Publish), 1,000 for each
    of ten containers from ten threads at once, read by a stream and a callback."""
    seen: dict[str, dict[str, list[int]]] = {"stream": {}, "callback": {}}
    lock = threading.Lock()
    total = EVENT_SOURCES * EVENTS_EACH

    def record(channel: str, event: Any) -> None:
        if event.type is EventType.CONTAINER_UPDATE and event.container_id.startswith("ev-"):
            with lock:
                seen[channel].setdefault(event.container_id, []).append(int(event.image))

    client = libcontainerd.new_client(
        "remote",
        address=daemon.address,
        namespace=NAMESPACE,
        on_event=lambda event: record("callback", event),
    )
    stream = client.events(['topic=="/containers/update"'])

    def read() -> None:
        for event in stream:
            record("stream", event)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    transport = client.transport  # type: ignore[attr-defined]

    def publish(source: int) -> None:
        cid = f"ev-{source}"
        for seq in range(EVENTS_EACH):
            payload = container_pb2.ContainerUpdate(id=cid, image=str(seq))
            transport.call(
                transport.events.Publish,
                events_pb2.PublishRequest(
                    topic="/containers/update",
                    event=any_pb2.Any(
                        type_url="containerd.events.ContainerUpdate",
                        value=payload.SerializeToString(),
                    ),
                ),
            )

    try:
        time.sleep(0.5)  # both subscriptions in place on the daemon
        with ThreadPoolExecutor(EVENT_SOURCES) as pool:
            list(pool.map(publish, range(EVENT_SOURCES)))

        def counted() -> collections.Counter[str]:
            with lock:
                return collections.Counter(
                    {ch: sum(len(v) for v in per.values()) for ch, per in seen.items()}
                )

        assert wait_until(lambda: min(counted().values()) >= total, 60), counted()
        for channel, per in seen.items():
            assert sorted(per) == [f"ev-{i}" for i in range(EVENT_SOURCES)], channel
            for cid, sequence in per.items():
                assert sequence == list(range(EVENTS_EACH)), f"{channel}: {cid} out of order"
    finally:
        stream.close()
        client.close()
        reader.join(timeout=10)
    tally.operations += total
    tally.tests += 1
