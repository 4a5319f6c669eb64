"""Container, task and process behaviour every backend must share (sync and async)."""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conformance_support import Env, unique_id

from libcontainerd.errors import Error, FailedPrecondition, InvalidArgument, NotFound
from libcontainerd.oci import (
    with_hostname,
    with_process_args,
    with_tty,
    with_uid_gid,
    with_user,
)
from libcontainerd.types.events import EventType
from libcontainerd.types.stats import Resources
from libcontainerd.types.status import Status
from libcontainerd.types.stdio import FileIO, NullIO, PipedIO, TerminalIO

SLEEP = ("sleep", "300")


def _exec_spec(env: Env, *args: str, terminal: bool = False) -> dict[str, Any]:
    spec = env.spec("x", with_process_args(*args))
    process = spec["process"]
    process["terminal"] = terminal
    return process


def _run(env: Env, client: Any, *args: str, **opts: Any) -> tuple[bytes, bytes, int]:
    container = env.container(client, with_process_args(*args), *opts.pop("spec_opts", ()))
    task = container.new_task(stdio=PipedIO(stdin=False))
    task.start()
    out = task.io.stdout.read()
    err = task.io.stderr.read()
    status = task.wait(timeout=30)
    task.delete()
    container.delete()
    return out, err, status.code


def test_version(client: Any) -> None:
    version = client.version()
    assert version.version
    assert client.backend in ("local", "remote")


def test_container_list_new_delete(env: Env, client: Any) -> None:
    before = {c.id for c in client.containers()}
    container = env.container(client, with_process_args(*SLEEP))
    assert container.id in {c.id for c in client.containers()}
    assert container.id not in before
    container.delete()
    assert container.id not in {c.id for c in client.containers()}
    with pytest.raises(NotFound):
        client.load_container(container.id)


def test_list_with_filter(env: Env, client: Any) -> None:
    tag = unique_id("tag")
    wanted = env.container(client, with_process_args(*SLEEP), labels={"tag": tag})
    env.container(client, with_process_args(*SLEEP))
    found = [c.id for c in client.containers([f"labels.tag=={tag}"])]
    assert found == [wanted.id]


def test_invalid_container_id(env: Env, client: Any) -> None:
    with pytest.raises(InvalidArgument):
        env.container(client, with_process_args("true"), container_id="bad/id")


def test_task_output_and_exit_code(env: Env, client: Any) -> None:
    out, err, code = _run(env, client, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert out == b"out\n"
    assert err == b"err\n"
    assert code == 7


def test_wait_registered_before_start_sees_fast_exit(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args("true"))
    task = container.new_task()
    result: list[Any] = []
    waiter = threading.Thread(target=lambda: result.append(task.wait(timeout=30)))
    waiter.start()
    time.sleep(0.1)
    task.start()
    waiter.join(30)
    assert result and result[0].code == 0
    task.delete()


def test_exited_at_set(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args("true"))
    task = container.new_task()
    started = time.time()
    task.start()
    status = task.wait(timeout=30)
    assert status.exited_at.timestamp() >= started - 1
    deleted = task.delete()
    assert deleted.code == 0
    assert abs((deleted.exited_at - status.exited_at).total_seconds()) < 1


def test_wait_on_stopped_task(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args("sh", "-c", "exit 3"))
    task = container.new_task()
    task.start()
    assert task.wait(timeout=30).code == 3
    assert task.status() is Status.STOPPED
    assert task.wait(timeout=30).code == 3
    task.delete()


def test_short_running_task_pid(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args("true"))
    task = container.new_task()
    assert task.pid > 0
    assert task.status() is Status.CREATED
    task.start()
    assert task.pid > 0
    task.wait(timeout=30)
    task.delete()


def test_exec(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args(*SLEEP))
    task = container.new_task()
    task.start()
    process = task.exec(
        unique_id("e"),
        _exec_spec(env, "sh", "-c", "echo from-exec; exit 5"),
        stdio=PipedIO(stdin=False),
    )
    process.start()
    assert process.io.stdout.read() == b"from-exec\n"
    assert process.wait(timeout=30).code == 5
    assert process.delete().code == 5
    task.force_delete()


def test_exec_missing_binary(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args(*SLEEP))
    task = container.new_task()
    task.start()
    with pytest.raises(Error):
        process = task.exec(unique_id("e"), _exec_spec(env, "/does/not/exist"))
        process.start()
    assert task.status() is Status.RUNNING
    task.force_delete()


def test_start_missing_binary_fails(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args("/does/not/exist"))
    with pytest.raises(Error):
        task = container.new_task()
        task.start()
    with contextlib.suppress(NotFound):
        container.task().force_delete()
    container.delete()


def test_pids(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args(*SLEEP))
    task = container.new_task()
    task.start()
    pids = [p.pid for p in task.pids()]
    assert task.pid in pids
    task.force_delete()


def test_close_stdin_ends_cat(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args("cat"))
    task = container.new_task(stdio=PipedIO())
    task.start()
    task.io.stdin.write(b"hello through the fifo\n")
    task.close_stdin()
    assert task.io.stdout.read() == b"hello through the fifo\n"
    assert task.wait(timeout=30).code == 0
    task.delete()


def test_no_stdin(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args("cat"))
    task = container.new_task(stdio=PipedIO(stdin=False))
    task.start()
    assert task.io.stdout.read() == b""
    assert task.wait(timeout=30).code == 0
    task.delete()


@pytest.mark.parametrize("keep", ["stdout", "stderr"])
def test_only_one_output_stream(env: Env, client: Any, keep: str) -> None:
    """Asking for one output stream sends the other nowhere, and the task still runs."""
    container = env.container(client, with_process_args("sh", "-c", "echo out; echo err >&2"))
    task = container.new_task(
        stdio=PipedIO(stdin=False, stdout=keep == "stdout", stderr=keep == "stderr")
    )
    task.start()
    stream = task.io.stdout if keep == "stdout" else task.io.stderr
    assert stream.read() == (b"out\n" if keep == "stdout" else b"err\n")
    assert task.wait(timeout=30).code == 0
    task.delete()


def test_delete_running_task_fails(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args(*SLEEP))
    task = container.new_task()
    task.start()
    with pytest.raises(FailedPrecondition):
        task.delete()
    with pytest.raises(FailedPrecondition):
        container.delete()
    assert task.status() is Status.RUNNING
    task.force_delete()


def test_kill(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args(*SLEEP))
    task = container.new_task()
    task.start()
    task.kill(signal.SIGKILL)
    assert task.wait(timeout=30).code == 128 + signal.SIGKILL
    task.delete()


def test_kill_all(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args(*SLEEP))
    task = container.new_task()
    task.start()
    process = task.exec(unique_id("e"), _exec_spec(env, *SLEEP))
    process.start()
    task.kill(signal.SIGKILL, all=True)
    assert process.wait(timeout=30).code == 128 + signal.SIGKILL
    assert task.wait(timeout=30).code == 128 + signal.SIGKILL
    process.delete()
    task.delete()


def test_force_delete(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args(*SLEEP))
    task = container.new_task(stdio=PipedIO())
    task.start()
    status = task.force_delete()
    assert status.code == 128 + signal.SIGKILL
    with pytest.raises(NotFound):
        container.task()
    container.delete()


def test_hostname(env: Env, client: Any) -> None:
    out, _, code = _run(env, client, "hostname", spec_opts=[with_hostname("conformance-host")])
    assert (out, code) == (b"conformance-host\n", 0)


def test_username(env: Env, client: Any) -> None:
    out, _, _ = _run(env, client, "id", "-un", spec_opts=[with_user("app", rootfs=env.rootfs)])
    assert out == b"app\n"


def test_user_id(env: Env, client: Any) -> None:
    out, _, _ = _run(env, client, "sh", "-c", "id -u; id -g", spec_opts=[with_uid_gid(1000, 1001)])
    assert out == b"1000\n1001\n"


def test_tty_output(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args("echo", "in-a-tty"), with_tty())
    task = container.new_task(stdio=TerminalIO(stdin=False))
    task.start()
    assert task.io.stderr is None or task.io.stderr.read() == b""
    assert task.io.stdout.read() == b"in-a-tty\r\n"
    assert task.wait(timeout=30).code == 0
    task.delete()


def test_resize(env: Env, client: Any) -> None:
    container = env.container(
        client, with_process_args("sh", "-c", "sleep 1; stty size"), with_tty()
    )
    task = container.new_task(stdio=TerminalIO(stdin=False, width=80, height=24))
    task.start()
    task.resize(100, 40)
    assert task.io.stdout.read().strip() == b"40 100"
    task.wait(timeout=30)
    task.delete()


def test_tty_mismatch_is_invalid(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args("true"))
    with pytest.raises(InvalidArgument):
        container.new_task(stdio=TerminalIO())


def test_file_io(env: Env, client: Any, tmp_path: Path) -> None:
    container = env.container(client, with_process_args("sh", "-c", "echo to-out; echo to-err >&2"))
    task = container.new_task(stdio=FileIO(tmp_path / "out.log", tmp_path / "err.log"))
    task.start()
    task.wait(timeout=30)
    task.delete()
    assert (tmp_path / "out.log").read_bytes() == b"to-out\n"
    assert (tmp_path / "err.log").read_bytes() == b"to-err\n"


def test_attach_from_new_client(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args("sh", "-c", "read line; echo got:$line"))
    task = container.new_task(stdio=PipedIO())
    task.start()
    client.close()

    second = env.new_client()
    attached = second.load_container(container.id).attach_task(stdio=PipedIO())
    attached.io.stdin.write(b"again\n")
    assert attached.io.stdout.readline() == b"got:again\n"
    assert attached.wait(timeout=30).code == 0
    attached.delete()


def test_attach_process_from_new_client(env: Env, client: Any) -> None:
    """An exec'd process's live streams are re-attached by a client that did not make it."""
    container = env.container(client, with_process_args(*SLEEP))
    task = container.new_task()
    task.start()
    exec_id = unique_id("e")
    process = task.exec(
        exec_id, _exec_spec(env, "sh", "-c", "read line; echo got:$line"), stdio=PipedIO()
    )
    process.start()
    client.close()

    second = env.new_client()
    attached = second.load_container(container.id).task().load_process(exec_id, stdio=PipedIO())
    attached.io.stdin.write(b"again\n")
    attached.io.stdin.flush()
    assert attached.io.stdout.readline() == b"got:again\n"
    assert attached.wait(timeout=30).code == 0
    attached.delete()
    second.load_container(container.id).task().force_delete()


def test_attach_process_with_another_stdio_kind_is_refused(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args(*SLEEP))
    task = container.new_task()
    task.start()
    exec_id = unique_id("e")
    task.exec(exec_id, _exec_spec(env, *SLEEP), stdio=PipedIO()).start()
    with pytest.raises((InvalidArgument, FailedPrecondition)):
        task.load_process(exec_id, stdio=TerminalIO())
    task.force_delete()


def test_load_missing_process(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args(*SLEEP))
    task = container.new_task()
    task.start()
    with pytest.raises(NotFound):
        task.load_process("no-such-exec")
    process = task.exec(unique_id("e"), _exec_spec(env, *SLEEP))
    assert task.load_process(process.id).id == process.id
    task.force_delete()


def test_missing_task_not_found(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args(*SLEEP))
    with pytest.raises(NotFound):
        container.task()


def test_pause_resume(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args(*SLEEP))
    task = container.new_task()
    task.start()
    task.pause()
    assert task.status() is Status.PAUSED
    task.resume()
    assert task.status() is Status.RUNNING
    task.force_delete()


def test_stats(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args(*SLEEP))
    task = container.new_task()
    task.start()
    stats = task.stats()
    assert stats.memory_usage and stats.memory_usage > 0
    assert stats.pids_current and stats.pids_current >= 1
    task.force_delete()


def test_stats_of_deleted_task(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args("true"))
    task = container.new_task()
    task.start()
    task.wait(timeout=30)
    task.delete()
    with pytest.raises(Error):
        task.stats()


def test_update_resources(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args(*SLEEP))
    task = container.new_task()
    task.start()
    limit = 64 * 1024 * 1024
    task.update_resources(Resources(memory_limit=limit, pids_limit=50))
    stats = task.stats()
    assert stats.memory_limit == limit
    assert stats.pids_limit == 50
    task.force_delete()


def test_info(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args("echo", "info"), labels={"a": "b"})
    info = container.info()
    assert info.id == container.id
    assert info.labels == {"a": "b"}
    assert info.spec["process"]["args"] == ["echo", "info"]
    assert info.runtime.name
    assert container.spec()["process"]["args"] == ["echo", "info"]


def test_labels(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args("true"), labels={"keep": "1", "drop": "x"})
    assert container.labels() == {"keep": "1", "drop": "x"}
    updated = container.set_labels({"new": "2", "drop": ""})
    assert updated == {"keep": "1", "new": "2"}
    assert container.labels() == {"keep": "1", "new": "2"}


def test_extensions(env: Env, client: Any) -> None:
    container = env.container(
        client, with_process_args("true"), extensions={"example.com/ext": {"n": 1}}
    )
    assert container.info().extensions["example.com/ext"] == {"n": 1}


def test_one_exit_event_per_process(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args("sh", "-c", "sleep 0.5"))
    events: list[Any] = []
    stream = client.events(['topic=="/tasks/exit"'])
    ready = threading.Event()

    def collect() -> None:
        ready.set()
        for event in stream:
            events.append(event)

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    ready.wait()
    time.sleep(0.2)
    task = container.new_task()
    task.start()
    process = task.exec(unique_id("e"), _exec_spec(env, "true"))
    process.start()
    process.wait(timeout=30)
    task.wait(timeout=30)
    time.sleep(0.5)
    stream.close()
    collector.join(10)
    mine = [e for e in events if e.container_id == container.id]
    assert all(e.type is EventType.TASK_EXIT for e in mine)
    assert len([e for e in mine if e.is_init]) == 1
    assert len([e for e in mine if e.process_id == process.id]) == 1
    init = next(e for e in mine if e.is_init)
    assert init.exit_code == 0 and init.exited_at is not None and init.pid == task.pid
    process.delete()
    task.delete()


def _wait_until_delivering(env: Env, client: Any, seen: list[Any]) -> None:
    """Create probe containers until the client's event callback sees one.

    containerd acknowledges a subscription with its first event only, so a remote
    ``on_event`` subscription is live some time after ``new_client`` returns; a test that
    counts a container's every event first waits for it. Bounded to 20 s.
    """
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        probe = env.container(client, with_process_args("true"))
        settle = time.monotonic() + 0.3
        while time.monotonic() < settle:
            if any(e.container_id == probe.id for e in seen):
                probe.delete()
                return
            time.sleep(0.02)
        probe.delete()
    raise AssertionError("no event reached the on_event callback within 20 s")


def test_on_event_callback(env: Env) -> None:
    seen: list[Any] = []
    client = env.new_client(on_event=seen.append)
    _wait_until_delivering(env, client, seen)
    container = env.container(client, with_process_args("true"))
    task = container.new_task(stdio=NullIO())
    task.start()
    task.wait(timeout=30)
    task.delete()
    deadline = time.monotonic() + 5
    kinds: set[EventType] = set()
    while time.monotonic() < deadline:
        kinds = {e.type for e in seen if e.container_id == container.id}
        if EventType.TASK_DELETE in kinds:
            break
        time.sleep(0.05)
    assert {EventType.TASK_CREATE, EventType.TASK_START, EventType.TASK_EXIT} <= kinds
    assert EventType.TASK_DELETE in kinds


def test_runtime_options_crun(env: Env, client: Any) -> None:
    try:
        from libcontainerd.testing.host import ensure_crun_cgroup_layout
    except ImportError:
        pass
    else:
        ensure_crun_cgroup_layout()
    container = env.container(
        client, with_process_args("echo", "crun"), runtime_options={"binary_name": "crun"}
    )
    assert container.info().runtime.options.get("binary_name") == "crun"
    task = container.new_task(stdio=PipedIO(stdin=False))
    task.start()
    assert task.io.stdout.read() == b"crun\n"
    assert task.wait(timeout=30).code == 0
    task.delete()


def test_checkpoint_fails_with_typed_error_and_keeps_running(
    env: Env, client: Any, tmp_path: Path
) -> None:
    container = env.container(client, with_process_args(*SLEEP))
    task = container.new_task()
    task.start()
    try:
        task.create_checkpoint(tmp_path / "checkpoint")
    except Error as error:
        assert str(error)
    assert task.status() is Status.RUNNING
    task.force_delete()


def test_restore_from_a_bad_checkpoint_fails_cleanly(env: Env, client: Any, tmp_path: Path) -> None:
    """CRIU cannot restore here (nor from an empty directory anywhere): the error is typed,
    no task is left behind, and the container still takes a normal task afterwards."""
    container = env.container(client, with_process_args("echo", "fresh"))
    with pytest.raises(InvalidArgument):
        container.new_task(checkpoint_dir=Path("relative/checkpoint"))
    with pytest.raises(InvalidArgument):
        container.new_task(checkpoint_dir=tmp_path / "missing")
    empty = tmp_path / "empty-checkpoint"
    empty.mkdir()
    with pytest.raises(Error):
        task = container.new_task(checkpoint_dir=empty)
        task.start()  # a backend may only find out when it starts the restored task
    with contextlib.suppress(NotFound):
        container.task().force_delete()
    task = container.new_task(stdio=PipedIO(stdin=False))
    task.start()
    assert task.io.stdout.read() == b"fresh\n"
    assert task.wait(timeout=30).code == 0
    task.delete()


# ------------------------------------------------ gaps from containerd's client integration list


def test_exec_large_args(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args(*SLEEP))
    task = container.new_task()
    task.start()
    # 100 arguments of 1000 bytes: well past 64 KiB in total, each below the kernel's
    # per-string limit.
    payload = ["a" * 1000] * 100
    script = 'echo $#; echo "$*" | wc -c'
    process = task.exec(
        unique_id("e"),
        _exec_spec(env, "sh", "-c", script, "sh", *payload),
        stdio=PipedIO(stdin=False),
    )
    process.start()
    out = process.io.stdout.read()
    assert process.wait(timeout=30).code == 0
    assert out.split() == [b"100", str(100 * 1000 + 99 + 1).encode()]
    process.delete()
    task.force_delete()


def test_exec_large_output_under_tty(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args(*SLEEP))
    task = container.new_task()
    task.start()
    process = task.exec(
        unique_id("e"),
        _exec_spec(env, "seq", "1", "50000", terminal=True),
        stdio=TerminalIO(stdin=False),
    )
    process.start()
    chunks: list[bytes] = []
    while True:
        chunk = process.io.stdout.read(65536)
        if not chunk:
            break
        chunks.append(chunk)
    assert process.wait(timeout=60).code == 0
    lines = b"".join(chunks).split(b"\r\n")
    assert lines[-1] == b""
    assert lines[:-1] == [str(i).encode() for i in range(1, 50001)]
    process.delete()
    task.force_delete()


def test_exec_load_process_from_new_client(env: Env, client: Any, tmp_path: Path) -> None:
    # A new client finds the process with load_process and waits for it; its output went
    # to files, which outlive any client.
    container = env.container(client, with_process_args(*SLEEP))
    task = container.new_task()
    task.start()
    exec_id = unique_id("e")
    out, err = tmp_path / "exec.out", tmp_path / "exec.err"
    process = task.exec(
        exec_id,
        _exec_spec(env, "sh", "-c", "sleep 1; echo late-out; echo late-err >&2; exit 6"),
        stdio=FileIO(out, err),
    )
    process.start()
    pid = process.pid
    client.close()

    second = env.new_client()
    loaded = second.load_container(container.id).task().load_process(exec_id)
    assert loaded.id == exec_id and loaded.container_id == container.id
    assert loaded.pid == pid
    assert loaded.wait(timeout=30).code == 6
    # FileIO output is complete once the process is deleted (containerd's shim may still
    # be copying it into the file right after the exit).
    assert loaded.delete().code == 6
    assert out.read_bytes() == b"late-out\n"
    assert err.read_bytes() == b"late-err\n"
    with pytest.raises(NotFound):
        second.load_container(container.id).task().load_process(exec_id)
    second.load_container(container.id).task().force_delete()


def test_wait_on_stopped_exec(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args(*SLEEP))
    task = container.new_task()
    task.start()
    process = task.exec(unique_id("e"), _exec_spec(env, "sh", "-c", "exit 4"))
    process.start()
    assert process.wait(timeout=30).code == 4
    assert process.status() is Status.STOPPED
    again = process.wait(timeout=30)
    assert again.code == 4
    assert task.load_process(process.id).wait(timeout=30).code == 4
    assert process.delete().code == 4
    assert task.status() is Status.RUNNING
    task.force_delete()


def test_start_missing_binary_events(env: Env) -> None:
    # runc checks the binary when the task is created, so the failure comes from
    # new_task (or start): no task ever exists, and the container's events are exactly
    # its own create and delete, with no task create/start/exit in between.
    seen: list[Any] = []
    client = env.new_client(on_event=seen.append)
    _wait_until_delivering(env, client, seen)
    container = env.container(client, with_process_args("/does/not/exist"))
    with pytest.raises(Error):
        task = container.new_task()
        task.start()
    with contextlib.suppress(NotFound):
        container.task().force_delete()
    with pytest.raises(NotFound):
        container.task()
    container.delete()
    deadline = time.monotonic() + 5
    mine: list[EventType] = []
    while time.monotonic() < deadline:
        mine = [e.type for e in seen if e.container_id == container.id]
        if EventType.CONTAINER_DELETE in mine:
            break
        time.sleep(0.05)
    assert mine == [EventType.CONTAINER_CREATE, EventType.CONTAINER_DELETE]


def test_pty_is_a_terminal(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args("tty"), with_tty())
    task = container.new_task(stdio=TerminalIO(stdin=False))
    task.start()
    out = task.io.stdout.read()
    assert task.wait(timeout=30).code == 0
    assert re.fullmatch(rb"/dev/pts/\d+\r\n", out), out
    task.delete()


def test_exec_pty_is_a_terminal(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args(*SLEEP))
    task = container.new_task()
    task.start()
    process = task.exec(
        unique_id("e"), _exec_spec(env, "tty", terminal=True), stdio=TerminalIO(stdin=False)
    )
    process.start()
    out = process.io.stdout.read()
    assert process.wait(timeout=30).code == 0
    assert re.fullmatch(rb"/dev/pts/\d+\r\n", out), out
    process.delete()
    task.force_delete()


def test_no_tty_without_terminal(env: Env, client: Any) -> None:
    out, _, _ = _run(env, client, "sh", "-c", "tty; true")
    assert out == b"not a tty\n"


def test_user_name_and_group(env: Env, client: Any) -> None:
    out, _, code = _run(
        env,
        client,
        "sh",
        "-c",
        "id -un; id -gn; id -u; id -g",
        spec_opts=[with_user("app:nobody", rootfs=env.rootfs)],
    )
    assert code == 0
    assert out == b"app\nnobody\n1000\n65534\n"
