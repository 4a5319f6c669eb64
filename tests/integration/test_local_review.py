"""Local backend: runtime options and binaries, events file rotation, lost monitors and
the races and leaks found in review, against real runc and crun."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_support import NAMESPACE, LocalEnv, local_env

from libcontainerd.errors import (
    DeadlineExceeded,
    Error,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from libcontainerd.local._events import EventLog, LocalEventStream
from libcontainerd.oci import DEFAULT_PATH_ENV
from libcontainerd.testing.host import ensure_crun_cgroup_layout, find_runtime, is_root
from libcontainerd.testing.image_builder import (
    ImageConfigSpec,
    build_image,
    busybox_rootfs,
    write_docker_archive,
)
from libcontainerd.types.events import EventType
from libcontainerd.types.status import ExitStatus, Status

RUNTIMES = ("runc", "crun")


@pytest.fixture(scope="session")
def review_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One busybox root filesystem for the module."""
    if not is_root():
        pytest.skip("running containers with runc/crun needs root")
    ensure_crun_cgroup_layout()
    return busybox_rootfs(tmp_path_factory.mktemp("review-rootfs") / "rootfs")


@pytest.fixture(params=RUNTIMES)
def env(request: pytest.FixtureRequest, tmp_path: Path, review_rootfs: Path) -> Iterator[LocalEnv]:
    """A private local-backend root for runc and for crun."""
    name: str = request.param
    if find_runtime(name) is None:
        pytest.skip(f"{name} is not installed")
    with local_env(name, tmp_path, review_rootfs) as value:
        yield value


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# ------------------------------------------------------------------ runtime options


@pytest.mark.runtime
def test_runtime_options_binary_name_and_root(env: LocalEnv, tmp_path: Path) -> None:
    other = "crun" if env.runtime == "runc" else "runc"
    if find_runtime(other) is None:
        pytest.skip(f"{other} is not installed")
    client = env.client()
    runtime_root = tmp_path / "runtime-root"
    options = {"binary_name": other, "root": str(runtime_root)}
    container_id = env.new_id()
    container = client.new_container(
        container_id, env.spec("sleep", "30", container_id=container_id), runtime_options=options
    )
    assert container.info().runtime.options == options
    task = container.new_task()
    task.start()
    state_dir = runtime_root / NAMESPACE / container_id
    # runc keeps state.json, crun a "status" file: the state tells which binary ran.
    marker = "state.json" if other == "runc" else "status"
    assert (state_dir / marker).exists(), sorted(os.listdir(state_dir))
    assert not any((env.state / "runtime").glob(f"*/{NAMESPACE}/{container_id}"))
    assert task.status() is Status.RUNNING

    # A new client finds the container through the stored options.
    again = env.client().load_container(container_id).task()
    assert again.status() is Status.RUNNING
    again.kill(signal.SIGKILL)
    assert again.wait(timeout=20).code == 128 + signal.SIGKILL
    again.delete()
    assert not state_dir.exists()
    container.delete()


@pytest.mark.runtime
def test_vanished_runtime_binary_is_a_clear_error_and_leaves_no_task(
    env: LocalEnv, tmp_path: Path
) -> None:
    """The monitor starts runtime commands with posix_spawn: a binary that vanished
    between two tasks is a clear error, and the container works again once it is back."""
    installed = find_runtime(env.runtime)
    assert installed is not None
    binary = tmp_path / "bin" / f"my-{env.runtime}"
    binary.parent.mkdir()
    shutil.copy2(installed, binary)
    client = env.client()
    container_id = env.new_id()
    container = client.new_container(
        container_id,
        env.spec("true", container_id=container_id),
        runtime_options={"binary_name": str(binary)},
    )
    task = container.new_task()  # the client has resolved and remembered the binary
    task.start()
    assert task.wait(timeout=30).code == 0
    task.delete()

    binary.unlink()
    with pytest.raises(NotFound) as caught:
        container.new_task()
    message = str(caught.value)
    assert str(binary) in message, message
    assert "No such file" in message and "not installed or not executable" in message, message
    with pytest.raises(Error):
        container.task()  # nothing half-made is left behind

    shutil.copy2(installed, binary)
    task = container.new_task()
    assert task.status() is Status.CREATED
    task.start()
    assert task.wait(timeout=30).code == 0
    task.delete()
    container.delete()
    assert not os.path.exists(env.state / "tasks" / "libcontainerd-it" / container_id)


@pytest.mark.runtime
def test_runtime_options_are_validated_before_anything_is_stored(env: LocalEnv) -> None:
    client = env.client()
    container_id = env.new_id()
    spec = env.spec("true", container_id=container_id)
    bad: list[object] = [
        {"binary": "crun"},
        {"root": "relative/dir"},
        {"binary_name": ""},
        {"binary_name": 3},
        ["binary_name"],
    ]
    for options in bad:
        with pytest.raises(InvalidArgument) as info:
            client.new_container(container_id, spec, runtime_options=options)  # type: ignore[arg-type]
        if isinstance(options, dict) and "binary" in options:
            assert "binary_name" in str(info.value) and "root" in str(info.value)
    with pytest.raises(NotFound, match="binary_name"):
        client.new_container(
            container_id, spec, runtime_options={"binary_name": "no-such-runtime-binary"}
        )
    assert client.containers() == []
    assert not (env.root / "containers" / NAMESPACE / container_id).exists()


# --------------------------------------------------------------------------- events


def test_events_file_rotates_and_readers_follow(tmp_path: Path) -> None:
    path = str(tmp_path / "ns.jsonl")
    log = EventLog(path, "ns", max_bytes=1024)
    stream = LocalEventStream(path)
    rotations = 0
    with stream:
        for i in range(300):
            log.publish("/containers/update", container_id=f"c{i}")
            if not os.path.exists(path):  # this event filled the file: it was rotated
                rotations += 1
            if i % 3 == 2:  # the reader lags a few events behind, across rotations
                for j in range(i - 2, i + 1):
                    event = stream.poll(5)
                    assert event is not None and event.container_id == f"c{j}"
        assert stream.poll(0.05) is None
    assert rotations > 10
    assert not os.path.exists(path) or os.path.getsize(path) < 1024
    assert os.path.getsize(path + ".1") < 1024 + 200


def test_events_rotation_with_concurrent_writers_loses_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "ns.jsonl")
    stream = LocalEventStream(path)
    writers = 4
    per_writer = 150
    # Large enough that a reader polling every 10 ms never falls a whole file behind.
    logs = [EventLog(path, "ns", max_bytes=64 << 10) for _ in range(writers)]

    def write(n: int) -> None:
        for i in range(per_writer):
            logs[n].publish("/containers/update", container_id=f"w{n}-{i}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    seen: list[str] = []
    with stream:
        while len(seen) < writers * per_writer:
            event = stream.poll(10)
            assert event is not None, f"only {len(seen)} events"
            seen.append(event.container_id)
    for t in threads:
        t.join()
    assert len(set(seen)) == writers * per_writer
    for n in range(writers):  # each writer's events in order
        mine = [s for s in seen if s.startswith(f"w{n}-")]
        assert mine == [f"w{n}-{i}" for i in range(per_writer)]
    assert os.path.exists(path + ".1")


@pytest.mark.runtime
def test_events_rotation_through_the_client(env: LocalEnv) -> None:
    client = env.client(options={"events_max_bytes": 4096})
    stream = client.events()
    with stream:
        for _ in range(8):
            container = env.container(client, "true")
            task = container.new_task()
            task.start()
            assert task.wait(timeout=20).code == 0
            task.delete()
            container.delete()
            expected = [
                EventType.CONTAINER_CREATE,
                EventType.TASK_CREATE,
                EventType.TASK_START,
                EventType.TASK_EXIT,
                EventType.TASK_DELETE,
                EventType.CONTAINER_DELETE,
            ]
            got: list[EventType] = []
            while len(got) < len(expected):
                event = stream.poll(10)
                assert event is not None, f"only got {got}"
                got.append(event.type)
            assert got == expected
    events_file = env.state / "events" / f"{NAMESPACE}.jsonl"
    assert events_file.stat().st_size < 4096
    assert Path(f"{events_file}.1").exists()
    with pytest.raises(InvalidArgument, match="events_max_bytes"):
        env.client(options={"events_max_bytes": 10})


def test_closed_event_streams_release_their_files(tmp_path: Path) -> None:
    path = str(tmp_path / "ns.jsonl")
    before = _open_fds()
    streams = [LocalEventStream(path) for _ in range(20)]
    assert _open_fds() >= before + 20
    for stream in streams:
        stream.close()
        assert stream.poll(0) is None
    assert _open_fds() == before


# ----------------------------------------------------------------- lost monitors


@pytest.mark.runtime
def test_killed_monitor_wait_follows_the_processes_and_explains(env: LocalEnv) -> None:
    client = env.client()
    container = env.container(client, "sleep", "30")
    stream = client.events([f"container_id=={container.id},topic==/tasks/exit"])
    task = container.new_task()
    task.start()
    process = {
        "args": ["sleep", "30"],
        "env": [DEFAULT_PATH_ENV],
        "cwd": "/",
        "user": {"uid": 0, "gid": 0},
    }
    proc = task.exec("e1", process)
    proc.start()
    task_dir = env.state / "tasks" / NAMESPACE / container.id
    os.kill(int((task_dir / "monitor.pid").read_text()), signal.SIGKILL)
    time.sleep(0.1)

    # The exec'd process still runs: wait must keep waiting, not report an exit.
    with pytest.raises(DeadlineExceeded):
        proc.wait(timeout=0.3)
    proc.kill(signal.SIGKILL)
    lost = proc.wait(timeout=10)
    assert lost.code == ExitStatus.UNKNOWN_CODE
    assert lost.error is not None and "monitor" in lost.error and "killed" in lost.error

    with pytest.raises(DeadlineExceeded):
        task.wait(timeout=0.3)
    task.kill(signal.SIGKILL)
    started = time.monotonic()
    status = task.wait(timeout=10)
    assert status.error is not None and "exit code is lost" in status.error
    assert task.status() is Status.STOPPED
    assert time.monotonic() - started < 5
    # The lost exit is recorded once, for every later call and client.
    again = env.client().load_container(container.id).task()
    assert again.wait(timeout=1) == status
    with stream:
        exits = [stream.poll(5), stream.poll(5)]
        assert stream.poll(0.2) is None
    assert [e.process_id if e else None for e in exits] == ["e1", ""]
    assert all(e is not None and e.exit_code == ExitStatus.UNKNOWN_CODE for e in exits)
    assert task.delete() == status
    container.delete()


# ---------------------------------------------------------------------------- races


@pytest.mark.runtime
def test_container_delete_racing_a_new_task_keeps_the_image_rootfs(
    env: LocalEnv, tmp_path: Path
) -> None:
    built = build_image(
        tmp_path / "layout", config=ImageConfigSpec(cmd=("true",), env=(DEFAULT_PATH_ENV,))
    )
    archive = write_docker_archive(built, tmp_path / "img.tar", repo_tag="example.com/race:1")
    client = env.client()
    (image,) = client.images.import_archive(archive)
    container = client.new_container(env.new_id(), image=image.name)
    container_dir = env.root / "containers" / NAMESPACE / container.id
    errors: list[BaseException] = []

    def delete() -> None:
        try:
            container.delete()
        except BaseException as exc:
            errors.append(exc)

    with client.layout.locked():
        deleter = threading.Thread(target=delete)
        deleter.start()
        time.sleep(0.5)  # the deleter passed its first check and waits for the lock
        # Another client's new_task wins the lock first.
        (env.state / "tasks" / NAMESPACE / container.id).mkdir()
    deleter.join(30)
    assert len(errors) == 1 and isinstance(errors[0], FailedPrecondition)
    assert str(container_dir) in [str(Path(p)) for p in client.images.image_rootfs_users()]
    assert (container_dir / "rootfs").is_dir()
    (env.state / "tasks" / NAMESPACE / container.id).rmdir()
    container.delete()
    assert client.images.image_rootfs_users() == []


@pytest.mark.runtime
def test_new_task_racing_a_container_delete_is_not_found_and_leaves_nothing(
    env: LocalEnv,
) -> None:
    client = env.client()
    container = env.container(client, "true")
    container_dir = env.root / "containers" / NAMESPACE / container.id
    task_dir = env.state / "tasks" / NAMESPACE / container.id
    errors: list[BaseException] = []

    def new_task() -> None:
        try:
            container.new_task()
        except BaseException as exc:
            errors.append(exc)

    with client.layout.locked():
        creator = threading.Thread(target=new_task)
        creator.start()
        time.sleep(0.5)
        # A delete() of another client holds the lock and removes the container.
        record = json.loads((container_dir / "record.json").read_text())
        assert record["id"] == container.id
        os.unlink(container_dir / "record.json")
    creator.join(30)
    assert len(errors) == 1 and isinstance(errors[0], NotFound), errors
    assert not task_dir.exists()
