"""The shortcuts (run, stop, context managers, tag, logs) on every backend, sync and async."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conformance_support import Env, unique_id

from libcontainerd.errors import DeadlineExceeded, FailedPrecondition, NotFound
from libcontainerd.oci import with_process_args
from libcontainerd.testing import build_image, write_layout_archive
from libcontainerd.types.status import Status


@pytest.fixture(scope="session")
def busybox_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox test image as an OCI archive, built once."""
    tmp = tmp_path_factory.mktemp("shortcut-image")
    return write_layout_archive(build_image(tmp / "layout").layout, tmp / "busybox.tar")


@pytest.fixture
def image(client: Any, busybox_archive: Path) -> Iterator[str]:
    """The busybox image imported into the test's namespace (removed afterwards)."""
    (imported,) = client.images.import_archive(busybox_archive)
    yield imported.name
    for name in {imported.name, *(i.name for i in client.images.list())}:
        with contextlib.suppress(NotFound):
            client.images.remove(name)


def _run_options(env: Env) -> dict[str, Any]:
    return {"runtime_options": env.backend.runtime_options or None}


def test_run_collects_output_and_exit_code(env: Env, client: Any, image: str) -> None:
    result = client.run(image, ["sh", "-c", "echo out; echo err >&2; exit 3"], **_run_options(env))
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    assert not result.success
    assert client.containers() == []


def test_run_feeds_input_and_sets_env(env: Env, client: Any, image: str) -> None:
    result = client.run(
        image,
        ["sh", "-c", 'tr a-z A-Z; echo "$GREETING"'],
        input=b"abc\n",
        env={"GREETING": "hello"},
        **_run_options(env),
    )
    assert result.stdout == b"ABC\nhello\n"
    assert result.exit_code == 0


def test_run_timeout_kills_and_removes(env: Env, client: Any, image: str) -> None:
    with pytest.raises(DeadlineExceeded):
        client.run(image, ["sleep", "60"], timeout=1, **_run_options(env))
    assert client.containers() == []


def test_run_detached_keeps_logs(env: Env, client: Any, image: str) -> None:
    name = unique_id("detached")
    container = client.run(
        image,
        ["sh", "-c", "echo one; echo two >&2; sleep 1; echo three"],
        detach=True,
        name=name,
        **_run_options(env),
    )
    with container:
        assert container.id == name
        followed = b"".join(container.logs(follow=True))
        assert followed.count(b"\n") == 3 and followed.endswith(b"three\n")
        assert b"".join(container.logs()) == followed
    assert client.containers() == []


def test_logs_without_log_mode(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args("true"))
    with container, pytest.raises(FailedPrecondition):
        list(container.logs())


def test_stop_terminates_then_kills(env: Env, client: Any) -> None:
    # sh ignores TERM while it traps it, so stop() must fall back to KILL.
    container = env.container(client, with_process_args("sh", "-c", "trap '' TERM; sleep 60"))
    with container:
        task = container.new_task()
        task.start()
        time.sleep(0.3)
        began = time.monotonic()
        status = task.stop(timeout=1)
        assert status.code == 128 + 9
        assert 0.9 <= time.monotonic() - began < 10
        task.delete()


def test_stop_graceful_and_after_exit(env: Env, client: Any) -> None:
    # The container's init is pid 1, which only ends on TERM when it handles it.
    script = "trap 'exit 7' TERM; while true; do sleep 0.1; done"
    container = env.container(client, with_process_args("sh", "-c", script))
    with container:
        task = container.new_task()
        task.start()
        time.sleep(0.3)
        began = time.monotonic()
        assert task.stop(timeout=20).code == 7
        assert time.monotonic() - began < 10
        assert task.stop().code == 7  # already exited: just the status
        task.delete()


def test_task_and_container_context_managers_clean_up(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args("sleep", "60"))
    with container:
        with container.new_task() as task:
            task.start()
            assert task.status() == Status.RUNNING
        with pytest.raises(NotFound):
            container.task()
        container.new_task().start()  # left running: the container's exit removes it
    assert container.id not in {c.id for c in client.containers()}


def test_images_tag(client: Any, image: str) -> None:
    tagged = client.images.tag(image, "example.test/tagged/busybox:v1")
    assert tagged.name == "example.test/tagged/busybox:v1"
    assert tagged.target == client.images.get(image).target
    client.images.remove(tagged.name)
    assert client.images.get(image).name == image
