"""The local backend against real runc and crun: lifecycle, stdio, exec, signals, state."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_support import NAMESPACE, SIGKILL_CODE, SIGTERM_CODE, LocalEnv, local_env

import libcontainerd
from libcontainerd.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    RuntimeCommandError,
)
from libcontainerd.local._monitor_exec_hold import ExecHold
from libcontainerd.oci import DEFAULT_PATH_ENV, with_memory_limit
from libcontainerd.testing.host import ensure_crun_cgroup_layout, find_runtime, is_root
from libcontainerd.testing.image_builder import (
    ImageConfigSpec,
    build_image,
    busybox_rootfs,
    write_docker_archive,
)
from libcontainerd.types.events import Event, EventType
from libcontainerd.types.stats import Resources
from libcontainerd.types.status import Status
from libcontainerd.types.stdio import FileIO, NullIO, PipedIO, TerminalIO

pytestmark = pytest.mark.runtime

RUNTIMES = ("runc", "crun")


@pytest.fixture(scope="session")
def local_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One busybox root filesystem shared by every container of the session."""
    if not is_root():
        pytest.skip("running containers with runc/crun needs root")
    ensure_crun_cgroup_layout()
    return busybox_rootfs(tmp_path_factory.mktemp("local-rootfs") / "rootfs")


@pytest.fixture(params=RUNTIMES)
def env(request: pytest.FixtureRequest, tmp_path: Path, local_rootfs: Path) -> Iterator[LocalEnv]:
    """A private local-backend root for runc and for crun."""
    name: str = request.param
    if find_runtime(name) is None:
        pytest.skip(f"{name} is not installed")
    with local_env(name, tmp_path, local_rootfs) as value:
        yield value


def test_lifecycle_piped_output_and_exit_code(env: LocalEnv) -> None:
    client = env.client()
    container = env.container(client, "sh", "-c", "read x; echo out:$x; echo err >&2; exit 3")
    task = container.new_task(stdio=PipedIO())
    assert task.status() is Status.CREATED
    assert task.pid > 0
    task.start()
    assert task.io is not None and task.io.stdin is not None
    task.io.stdin.write(b"hi\n")
    task.close_stdin()
    assert task.io.stdout is not None and task.io.stderr is not None
    assert task.io.stdout.read() == b"out:hi\n"
    assert task.io.stderr.read() == b"err\n"
    status = task.wait(timeout=20)
    assert status.code == 3
    assert task.status() is Status.STOPPED
    assert task.delete().code == 3
    with pytest.raises(NotFound):
        container.task()
    container.delete()
    with pytest.raises(NotFound):
        client.load_container(container.id)


def test_wait_registered_before_start_sees_fast_exit(env: LocalEnv) -> None:
    client = env.client()
    task = env.container(client, "true").new_task()
    result: list[int] = []
    waiter = threading.Thread(target=lambda: result.append(task.wait(timeout=20).code))
    waiter.start()
    time.sleep(0.05)
    task.start()
    waiter.join(25)
    assert result == [0]
    assert task.wait(timeout=1).code == 0  # again, from the durable record
    task.delete()


def test_wait_timeout_and_delete_preconditions(env: LocalEnv) -> None:
    client = env.client()
    container = env.container(client, "sleep", "30")
    task = container.new_task()
    task.start()
    with pytest.raises(DeadlineExceeded):
        task.wait(timeout=0.2)
    with pytest.raises(FailedPrecondition):
        task.delete()
    with pytest.raises(FailedPrecondition):
        container.delete()
    with pytest.raises(AlreadyExists):
        container.new_task()
    assert task.force_delete().code == SIGKILL_CODE
    container.delete()


def test_exec_output_exit_code_and_pids(env: LocalEnv) -> None:
    client = env.client()
    container = env.container(client, "sleep", "30")
    task = container.new_task()
    task.start()
    process = dict(container.spec()["process"])
    process["args"] = ["sh", "-c", "echo from-exec; sleep 0.3; exit 5"]
    proc = task.exec("probe", process, stdio=PipedIO(stdin=False))
    assert proc.status() is Status.CREATED
    proc.start()
    assert proc.pid > 0
    pids = task.pids()
    assert task.pid in [p.pid for p in pids]
    assert any(p.exec_id == "probe" for p in pids)
    assert proc.io is not None and proc.io.stdout is not None
    assert proc.io.stdout.read() == b"from-exec\n"
    assert proc.wait(timeout=20).code == 5
    assert proc.status() is Status.STOPPED
    assert task.load_process("probe").wait(1).code == 5
    assert proc.delete().code == 5
    with pytest.raises(NotFound):
        task.load_process("probe")
    with pytest.raises(InvalidArgument):
        task.exec("../escape", process)
    task.kill(signal.SIGKILL)
    assert task.wait(timeout=20).code == SIGKILL_CODE
    task.delete()


def test_kill_and_kill_all(env: LocalEnv) -> None:
    client = env.client()
    container = env.container(client, "sh", "-c", "trap 'exit 0' INT; sleep 30 & wait")
    task = container.new_task()
    task.start()
    time.sleep(0.1)  # let sh install its trap
    task.kill(signal.SIGINT)
    assert task.wait(timeout=20).code in (0, 130)
    task.delete()

    second = env.container(client, "sleep", "30").new_task()
    second.start()
    process = {"args": ["/bin/sleep", "30"], "cwd": "/", "user": {"uid": 0, "gid": 0}}
    extra = second.exec("extra", process)
    extra.start()
    second.kill(signal.SIGKILL, all=True)
    assert second.wait(timeout=20).code == SIGKILL_CODE
    assert extra.wait(timeout=20).code == SIGKILL_CODE
    second.delete()


def test_sigterm_exit_code(env: LocalEnv) -> None:
    client = env.client()
    task = env.container(client, "sh", "-c", "trap 'exit 143' TERM; sleep 30 & wait").new_task()
    task.start()
    time.sleep(0.1)
    task.kill(signal.SIGTERM)
    assert task.wait(timeout=20).code == SIGTERM_CODE
    task.delete()


def test_pause_resume_status_stats_update(env: LocalEnv) -> None:
    client = env.client()
    task = env.container(client, "sleep", "30").new_task()
    task.start()
    assert task.status() is Status.RUNNING
    task.pause()
    assert task.status() is Status.PAUSED
    task.resume()
    assert task.status() is Status.RUNNING
    stats = task.stats()
    assert stats.pids_current is not None and stats.pids_current >= 1
    assert stats.memory_usage is not None and stats.memory_usage > 0
    task.update_resources(Resources(memory_limit=64 * 1024 * 1024))
    assert task.stats().memory_limit == 64 * 1024 * 1024
    summary = task.summary()
    assert summary["status"] == "running" and summary["pid"] == task.pid
    task.force_delete()


def test_terminal_output_and_resize(env: LocalEnv) -> None:
    client = env.client()
    container = env.container(client, "sh", "-c", "sleep 0.2; stty size; exit 4", tty=True)
    task = container.new_task(stdio=TerminalIO(width=100, height=30))
    task.start()
    assert task.io is not None and task.io.stdout is not None
    output = task.io.stdout.read()
    assert b"30 100" in output
    assert task.wait(timeout=20).code == 4
    task.delete()
    with pytest.raises(InvalidArgument):
        env.container(client, "true").new_task(stdio=TerminalIO())


def test_file_output_survives_and_attach_from_new_client(env: LocalEnv, tmp_path: Path) -> None:
    first = env.client()
    out = tmp_path / "out.log"
    container = env.container(first, "sh", "-c", "echo one; echo two >&2; sleep 30")
    task = container.new_task(stdio=FileIO(out))
    task.start()
    first.close()
    second = env.client()
    again = second.load_container(container.id).attach_task()
    assert again.pid == task.pid
    assert again.status() is Status.RUNNING
    deadline = time.monotonic() + 10
    while out.read_bytes().count(b"\n") < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(out.read_bytes().split()) == [b"one", b"two"]
    again.kill(signal.SIGKILL)
    assert again.wait(timeout=20).code == SIGKILL_CODE
    again.delete()


def test_attach_piped_from_new_client(env: LocalEnv) -> None:
    first = env.client()
    container = env.container(first, "sh", "-c", "sleep 0.5; echo late")
    task = container.new_task(stdio=PipedIO(stdin=False))
    task.start()
    second = env.client()
    attached = second.load_container(container.id).attach_task()
    assert attached.io is not None and attached.io.stdout is not None
    assert attached.io.stdout.read() == b"late\n"
    assert attached.wait(timeout=20).code == 0
    attached.delete()
    if task.io is not None:
        task.io.close()


def test_records_labels_filters(env: LocalEnv) -> None:
    client = env.client()
    assert isinstance(client, libcontainerd.Client)
    a = env.container(client, "true", labels={"role": "web", "tier": "a"})
    b = env.container(client, "true", labels={"role": "db"})
    assert {c.id for c in client.containers()} == {a.id, b.id}
    assert [c.id for c in client.containers([f"id=={a.id}"])] == [a.id]
    assert [c.id for c in client.containers(['labels."role"==db'])] == [b.id]
    assert a.set_labels({"tier": "", "new": "x"}) == {"role": "web", "new": "x"}
    info = a.info()
    assert info.runtime.name == env.runtime and info.labels["new"] == "x"
    assert info.created_at is not None and info.updated_at is not None
    assert info.updated_at >= info.created_at
    with pytest.raises(AlreadyExists):
        client.new_container(a.id, a.spec())
    with pytest.raises(NotFound):
        client.new_container(env.new_id(), image="example.com/missing:latest")
    assert client.containers([f"id=={a.id}"])[0].id == a.id  # nothing left behind
    with pytest.raises(InvalidArgument):
        client.new_container("bad/id", a.spec())
    with pytest.raises(InvalidArgument):
        client.new_container(env.new_id())
    assert client.version().backend == "local"


def test_checkpoint_fails_typed_and_container_keeps_running(env: LocalEnv, tmp_path: Path) -> None:
    client = env.client()
    task = env.container(client, "sleep", "30").new_task()
    task.start()
    with pytest.raises(RuntimeCommandError) as info:
        task.create_checkpoint(tmp_path / "ckpt")
    assert "keeps running" in str(info.value)
    assert task.status() is Status.RUNNING
    task.force_delete()


def test_events_in_order(env: LocalEnv) -> None:
    received: list[Event] = []
    client = env.client(on_event=received.append)
    stream = client.events()
    container = env.container(client, "sleep", "30")
    task = container.new_task(stdio=NullIO())
    task.start()
    process = {"args": ["/bin/true"], "cwd": "/", "user": {"uid": 0, "gid": 0}}
    proc = task.exec("e1", process)
    proc.start()
    proc.wait(timeout=20)
    task.pause()
    task.resume()
    task.kill(signal.SIGKILL)
    task.wait(timeout=20)
    task.delete()
    container.delete()
    expected = [
        EventType.CONTAINER_CREATE,
        EventType.TASK_CREATE,
        EventType.TASK_START,
        EventType.TASK_EXEC_ADDED,
        EventType.TASK_EXEC_STARTED,
        EventType.TASK_EXIT,
        EventType.TASK_PAUSED,
        EventType.TASK_RESUMED,
        EventType.TASK_EXIT,
        EventType.TASK_DELETE,
        EventType.CONTAINER_DELETE,
    ]
    got: list[Event] = []
    with stream:
        while len(got) < len(expected):
            event = stream.poll(10)
            assert event is not None, f"only got {got}"
            if event.container_id == container.id:
                got.append(event)
    assert [e.type for e in got] == expected
    assert got[5].process_id == "e1" and got[5].exit_code == 0
    assert got[8].is_init and got[8].exit_code == SIGKILL_CODE
    assert all(e.namespace == NAMESPACE for e in got)
    deadline = time.monotonic() + 5
    while len([e for e in received if e.container_id == container.id]) < len(expected):
        assert time.monotonic() < deadline, "on_event callback missed events"
        time.sleep(0.02)
    filtered = client.events([f"topic=={EventType.TASK_START.topic}"])
    filtered.close()


def test_async_facade(env: LocalEnv) -> None:
    async def main() -> int:
        client = libcontainerd.new_async_client(
            "local", root=env.root, state=env.state, runtime=env.runtime, namespace=NAMESPACE
        )
        async with client:
            container_id = env.new_id()
            spec = env.spec("sh", "-c", "echo async; exit 2", container_id=container_id)
            container = await client.new_container(container_id, spec)
            task = await container.new_task(stdio=PipedIO(stdin=False))
            await task.start()
            assert task.io is not None
            assert await task.io.read_stdout() == b"async\n"
            code = (await task.wait(20)).code
            await task.delete()
            await container.delete()
            return code

    assert asyncio.run(main()) == 2


def test_factory_rejects_unknown_option(env: LocalEnv) -> None:
    with pytest.raises(InvalidArgument):
        libcontainerd.new_client(
            "local", root=env.root, state=env.state, runtime=env.runtime, bogus=1
        )


def test_exec_with_terminal(env: LocalEnv) -> None:
    client = env.client()
    container = env.container(client, "sleep", "30")
    task = container.new_task()
    task.start()
    process = dict(container.spec()["process"])
    process.update(args=["sh", "-c", "stty size; exit 6"], terminal=True)
    proc = task.exec("tty", process, stdio=TerminalIO(width=90, height=20))
    proc.start()
    assert proc.io is not None and proc.io.stdout is not None
    assert b"20 90" in proc.io.stdout.read()
    assert proc.wait(timeout=20).code == 6
    proc.delete()
    task.force_delete()


def test_exec_hold_keeps_a_program_from_starting_until_released(env: LocalEnv) -> None:
    """While the monitor's ExecHold is held, an exec'd program waits in execve."""
    client = env.client()
    container = env.container(client, "sleep", "30")
    task = container.new_task()
    task.start()
    process = dict(container.spec()["process"])
    process.update(args=["sh", "-c", "exit 5"])
    hold = ExecHold(task.pid)
    assert hold.held
    try:
        proc = task.exec("held", process)
        proc.start()
        with pytest.raises(DeadlineExceeded):
            proc.wait(timeout=1)
    finally:
        hold.release()
    assert proc.wait(timeout=20).code == 5
    proc.delete()
    task.force_delete()


def test_force_delete_paused_task(env: LocalEnv) -> None:
    client = env.client()
    task = env.container(client, "sleep", "30").new_task()
    task.start()
    task.pause()
    assert task.force_delete().code == SIGKILL_CODE


def test_delete_created_task_and_kill_exited(env: LocalEnv) -> None:
    client = env.client()
    container = env.container(client, "true")
    task = container.new_task()
    assert task.delete().code == SIGKILL_CODE
    task = container.new_task()
    task.start()
    task.wait(timeout=20)
    with pytest.raises(NotFound):
        task.kill(signal.SIGTERM)
    task.delete()
    container.delete()


def test_killed_monitor_still_allows_force_delete(env: LocalEnv) -> None:
    client = env.client()
    container = env.container(client, "sleep", "30")
    task = container.new_task()
    task.start()
    monitor = int((env.state / "tasks" / NAMESPACE / container.id / "monitor.pid").read_text())
    os.kill(monitor, signal.SIGKILL)
    time.sleep(0.1)
    assert task.status() is Status.RUNNING
    with pytest.raises(DeadlineExceeded):
        task.wait(timeout=0.3)
    status = task.force_delete()
    assert status.error is not None  # the exit code died with the monitor
    container.delete()


def test_container_from_imported_image(env: LocalEnv, tmp_path: Path) -> None:
    built = build_image(
        tmp_path / "layout",
        config=ImageConfigSpec(
            cmd=("sh", "-c", "echo from-image:$GREETING; exit 9"),
            env=(DEFAULT_PATH_ENV, "GREETING=hi"),
        ),
    )
    archive = write_docker_archive(built, tmp_path / "img.tar", repo_tag="example.com/it:1")
    client = env.client()
    (image,) = client.images.import_archive(archive)
    container = client.new_container(env.new_id(), image=image.name)
    assert container.info().image == image.name
    task = container.new_task(stdio=PipedIO(stdin=False))
    task.start()
    assert task.io is not None and task.io.stdout is not None
    assert task.io.stdout.read() == b"from-image:hi\n"
    assert task.wait(timeout=20).code == 9
    task.delete()
    container.delete()
    assert client.images.image_rootfs_users() == []


def test_oom_event_before_exit(env: LocalEnv) -> None:
    client = env.client()
    container_id = env.new_id()
    script = "x=a; while true; do x=$x$x$x$x; done"
    spec = env.spec(
        "sh", "-c", script, container_id=container_id, opts=[with_memory_limit(16 << 20)]
    )
    container = client.new_container(container_id, spec)
    stream = client.events([f"container_id=={container_id}"])
    task = container.new_task()
    task.start()
    assert task.wait(timeout=30).code == SIGKILL_CODE
    kinds: list[EventType] = []
    with stream:
        while EventType.TASK_EXIT not in kinds:
            event = stream.poll(10)
            assert event is not None, f"only got {kinds}"
            kinds.append(event.type)
    assert EventType.TASK_OOM in kinds
    assert kinds.index(EventType.TASK_OOM) < kinds.index(EventType.TASK_EXIT)
    task.delete()


def test_failed_create_is_typed_and_leaves_nothing(env: LocalEnv) -> None:
    client = env.client()
    container_id = env.new_id()
    spec = env.spec("true", container_id=container_id)
    spec["root"]["path"] = "/nonexistent-rootfs"
    container = client.new_container(container_id, spec)
    # One class on both backends (docs/errors.md); the runtime's failure is the cause.
    with pytest.raises(FailedPrecondition) as info:
        container.new_task()
    cause = info.value.__cause__
    assert isinstance(cause, RuntimeCommandError) and cause.command and cause.exit_code
    with pytest.raises(NotFound):
        container.task()
    assert not (env.state / "tasks" / NAMESPACE / container_id).exists()
    container.delete()


def test_runtime_reports_missing_container_as_not_found(env: LocalEnv) -> None:
    client = env.client()
    driver = client.driver_for(env.runtime)
    with pytest.raises(NotFound):
        driver.state("no-such-container")
    with pytest.raises(NotFound):
        driver.kill("no-such-container", 9)
