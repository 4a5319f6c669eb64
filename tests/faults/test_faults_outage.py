"""containerd SIGKILLed while 20 tasks run: every exit reaches every channel exactly once.

Tasks exit before, during and after the outage (each waits for its own flag file, so the
test decides exactly when). Channels: ``wait()`` (registered before start), one
``events()`` stream, 20 per-task filtered streams and the ``on_event`` callback. Outages
of 5 s (shorter than the shims' re-send schedule: re-sent exits must not be delivered
twice) and 30 s (longer: exits must be rebuilt from containerd's task state), by hand
and through the supervisor. While containerd is down, reads fail fast with Unavailable.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_support import ExitLog, Tally, open_fds, remote_leaks, wait_until

import libcontainerd
from libcontainerd.errors import NotFound, Unavailable
from libcontainerd.oci import generate_spec, with_mounts, with_process_args, with_rootfs

pytestmark = pytest.mark.containerd

NAMESPACE = "faults-outage"
TASKS = 20
FAST = 1.5  # seconds a call may take to fail while containerd is down
RESEND_WINDOW = 17.0  # the shims re-send an exit for about 15 s after it happened


def _spec(rootfs: Path, flags: Path, cid: str, code: int) -> dict[str, Any]:
    script = f"while [ ! -e /flags/{cid} ]; do sleep 0.1; done; exit {code}"
    bind = {"destination": "/flags", "type": "bind", "source": str(flags), "options": ["rbind"]}
    return generate_spec(
        with_rootfs(rootfs),
        with_process_args("sh", "-c", script),
        with_mounts([bind]),
        container_id=cid,
        namespace=NAMESPACE,
    )


def _consume(stream: Any, log: ExitLog, wanted: set[str]) -> threading.Thread:
    def run() -> None:
        for event in stream:
            log.add_event(event, wanted)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _check_fails_fast(client: Any, cid: str, task: Any) -> int:
    calls: list[tuple[str, Callable[[], object]]] = [
        ("version", client.version),
        ("containers", client.containers),
        ("load_container", lambda: client.load_container(cid)),
        ("status", task.status),
    ]
    for name, call in calls:
        started = time.monotonic()
        with pytest.raises(Unavailable):
            call()
        took = time.monotonic() - started
        assert took < FAST, f"{name}() took {took:.2f} s to fail while containerd was down"
    return len(calls)


def run_outage(
    tally: Tally,
    address: str,
    runc_root: Path,
    rootfs: Path,
    flags: Path,
    *,
    crash: Callable[[], None],
    restore: Callable[[], None],
    outage: float,
) -> None:
    """The scenario; ``crash`` SIGKILLs containerd, ``restore`` returns once it answers."""
    codes = {f"exit-{i:02d}": 10 + i for i in range(TASKS)}
    ids = sorted(codes)
    before, during, after = ids[:6], ids[6:13], ids[13:]
    wanted = set(ids)
    logs = {name: ExitLog() for name in ("wait", "stream", "filtered", "callback")}
    fds_before = open_fds()
    client = libcontainerd.new_client(
        "remote",
        address=address,
        namespace=NAMESPACE,
        on_event=lambda event: logs["callback"].add_event(event, wanted),
    )
    streams = [client.events()]
    readers = [_consume(streams[0], logs["stream"], wanted)]
    for cid in ids:
        filtered = client.events([f'topic=="/tasks/exit",event.container_id=="{cid}"'])
        streams.append(filtered)
        readers.append(_consume(filtered, logs["filtered"], wanted))
    tasks: dict[str, Any] = {}
    waiters: list[threading.Thread] = []
    operations = 0
    try:
        for cid in ids:
            container = client.new_container(
                cid,
                _spec(rootfs, flags, cid, codes[cid]),
                runtime_options={"root": str(runc_root)},
            )
            task = container.new_task()
            tasks[cid] = task

            def wait(task: Any = task, cid: str = cid) -> None:
                logs["wait"].add(cid, task.wait(timeout=180).code)

            waiters.append(threading.Thread(target=wait, daemon=True))
            waiters[-1].start()
            task.start()
            operations += 3
        for cid in before:
            (flags / cid).touch()
        assert wait_until(lambda: len(logs["callback"].exits) >= len(before), 20)

        crash()
        killed_at = time.monotonic()
        tally.faults += 1
        if outage:  # the supervisor restarts containerd faster than this check
            time.sleep(0.5)
            operations += _check_fails_fast(client, ids[0], tasks[ids[0]])
        for cid in during:
            (flags / cid).touch()
        time.sleep(max(0.0, outage - (time.monotonic() - killed_at)))
        restore()
        client.version()  # answers at once after containerd is back
        for cid in after:
            (flags / cid).touch()

        def complete() -> bool:
            return all(len(log.codes()) == TASKS for log in logs.values())

        if not wait_until(complete, 60):
            missing = {n: sorted(wanted - set(log.codes())) for n, log in logs.items()}
            pytest.fail(f"exits missing per channel: {missing}")
        # Give the shims' re-sends of exits published while containerd was down time to
        # arrive: they must not be delivered a second time.
        time.sleep(max(2.0, RESEND_WINDOW - (time.monotonic() - killed_at)))
        for name, log in logs.items():
            got = log.codes()
            wrong = {cid: got.get(cid) for cid in ids if got.get(cid) != [codes[cid]]}
            assert not wrong, f"{name}: exits not delivered exactly once with the right code"
        tally.expected += TASKS
        for name, log in logs.items():
            tally.delivered[name] += len(log.exits)
        if outage >= RESEND_WINDOW:
            # Nobody re-sends these any more: they can only have been rebuilt.
            assert logs["stream"].reconstructed() >= 1
        for cid in ids:
            tasks[cid].delete()
            client.load_container(cid).delete()
            operations += 2
        leaks = remote_leaks(client)
    finally:
        for thread in waiters:
            thread.join(timeout=10)
        for cid in ids:
            with contextlib.suppress(Exception):
                tasks[cid].force_delete() if cid in tasks else None
            with contextlib.suppress(NotFound, Exception):
                client.load_container(cid).delete()
        for stream in streams:
            stream.close()
        client.close()
        for reader in readers:
            reader.join(timeout=10)
    tally.operations += operations
    for key, value in leaks.items():
        tally.leaks[key] += value
    assert leaks == {"snapshots": 0, "leases": 0, "fifos": 0}
    assert wait_until(lambda: not (open_fds() - fds_before), 5), open_fds() - fds_before
    tally.leaks["fds"] += len(open_fds() - fds_before)
    tally.tests += 1


@pytest.fixture
def flags(tmp_path: Path) -> Path:
    path = tmp_path / "flags"
    path.mkdir()
    return path


@pytest.fixture
def own_daemon(tmp_path: Path) -> Iterator[Any]:
    """A containerd of this test alone: killing a shared one would disturb others."""
    from libcontainerd.testing.containerd_daemon import start_containerd

    daemon = start_containerd(tmp_path / "containerd")
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.mark.parametrize("outage", [5.0, 30.0], ids=["5s", "30s"])
def test_exits_once_across_sigkill(
    outage: float,
    own_daemon: Any,
    fault_rootfs: Path,
    flags: Path,
    tally: Tally,
    no_thread_leak: None,
) -> None:
    """By hand: SIGKILL containerd, keep it down ``outage`` seconds, start it again."""
    run_outage(
        tally,
        own_daemon.address,
        own_daemon.runc_root,
        fault_rootfs,
        flags,
        crash=own_daemon.kill,
        restore=own_daemon.relaunch,
        outage=outage,
    )


def test_supervisor_restarts_killed_containerd(
    fault_rootfs: Path, flags: Path, tally: Tally, no_thread_leak: None
) -> None:
    """Through the supervisor: it sees containerd die and starts it again by itself."""
    from libcontainerd.remote.supervisor import Supervisor

    base = Path(tempfile.mkdtemp(prefix="lcdf-", dir="/tmp"))
    supervisor = Supervisor(base / "root", base / "state", health_interval=0.3)
    supervisor.start()
    restarted = threading.Event()

    def crash() -> None:
        os.kill(supervisor.pid, signal.SIGKILL)

    def restore() -> None:
        assert wait_until(lambda: supervisor.restarts >= 1 and supervisor.healthy(1.0), 30)
        restarted.set()

    try:
        run_outage(
            tally,
            supervisor.address,
            base / "state" / "runc",
            fault_rootfs,
            flags,
            crash=crash,
            restore=restore,
            outage=0.0,
        )
        assert restarted.is_set() and supervisor.restarts == 1
    finally:
        supervisor.stop()
        shutil.rmtree(base, ignore_errors=True)
    assert not (base / "state" / "containerd.pid").exists()
