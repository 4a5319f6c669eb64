"""The error-kind table of ``docs/errors.md``, checked row by row on every backend."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conformance_support import Env, unique_id

from libcontainerd import errors
from libcontainerd.oci import with_process_args
from libcontainerd.types.stdio import NullIO

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
SLEEP = ("sleep", "300")


def _table() -> dict[str, type[errors.Error]]:
    """``row -> class`` from the table in docs/errors.md."""
    rows: dict[str, type[errors.Error]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\|\s*`([a-z-]+)`\s*\|.*\|\s*`([A-Za-z]+)`\s*\|[^|]*\|\s*$", line)
        if match:
            rows[match.group(1)] = getattr(errors, match.group(2))
    return rows


TABLE = _table()


def _raises(row: str, action: Callable[[], Any]) -> errors.Error:
    """Run ``action``; it must raise exactly the documented class of ``row``."""
    with pytest.raises(errors.Error) as caught:
        action()
    assert type(caught.value) is TABLE[row], f"{row}: {caught.value!r}"
    return caught.value


def _started(env: Env, client: Any) -> tuple[Any, Any]:
    container = env.container(client, with_process_args(*SLEEP))
    task = container.new_task(stdio=NullIO())
    task.start()
    return container, task


def test_every_row_is_tested() -> None:
    tested = {name.removeprefix("test_row_").replace("_", "-") for name in globals()}
    assert TABLE, "docs/errors.md has no table"
    assert set(TABLE) <= tested, sorted(set(TABLE) - tested)


def test_row_runtime_missing(env: Env, client: Any) -> None:
    def action() -> None:
        container = env.container(
            client,
            with_process_args("true"),
            runtime_options={"binary_name": "/nonexistent/oci-runtime"},
        )
        container.new_task()

    error = _raises("runtime-missing", action)
    assert "not installed" in str(error)


def test_row_kill_invalid_signal(env: Env, client: Any) -> None:
    _container, task = _started(env, client)
    for signal in (0, 65, 999, -9):
        _raises("kill-invalid-signal", lambda signal=signal: task.kill(signal))
    task.force_delete()


def test_row_resize_without_terminal(env: Env, client: Any) -> None:
    _container, task = _started(env, client)
    error = _raises("resize-without-terminal", lambda: task.resize(80, 24))
    assert "terminal" in str(error)
    task.force_delete()


def test_row_spec_wrong_type(env: Env, client: Any) -> None:
    cid = unique_id()
    spec = env.spec(cid, with_process_args("true"))
    spec["process"]["user"]["uid"] = "0"
    error = _raises("spec-wrong-type", lambda: client.new_container(cid, spec))
    assert "process.user.uid" in str(error)
    _container, task = _started(env, client)
    process = env.spec("x", with_process_args("true"))["process"]
    process["env"] = "PATH=/bin"
    _raises("spec-wrong-type", lambda: task.exec(unique_id("e"), process))
    task.force_delete()


def test_row_spec_not_data(env: Env, client: Any) -> None:
    cid = unique_id()
    spec = env.spec(cid, with_process_args("true"))
    deep: Any = []
    for _ in range(10_000):
        deep = [deep]
    for bad in ({**spec, "process": "sh"}, {**spec, "extra": deep}, {**spec, "x": {1, 2}}):
        _raises("spec-not-data", lambda bad=bad: client.new_container(cid, bad))


def test_row_resources_rejected(env: Env, client: Any) -> None:
    cid = unique_id()
    spec = env.spec(cid, with_process_args(*SLEEP))
    # Kernels refuse CFS periods under 1 ms; the types are right, the value is not usable.
    spec["linux"]["resources"]["cpu"] = {"period": 1, "quota": 1}
    options = env.backend.runtime_options or None
    container = client.new_container(cid, spec, runtime_options=options)
    error = _raises("resources-rejected", lambda: container.new_task(stdio=NullIO()))
    assert error.__cause__ is not None
    container.delete()


def test_row_container_exists(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args("true"))
    error = _raises(
        "container-exists",
        lambda: env.container(client, with_process_args("true"), container_id=container.id),
    )
    assert container.id in str(error) and "pick another id" in str(error)


def test_row_task_exists(env: Env, client: Any) -> None:
    container, task = _started(env, client)
    error = _raises("task-exists", lambda: container.new_task(stdio=NullIO()))
    assert container.id in str(error) and "delete" in str(error)
    task.force_delete()


def test_row_exec_id_reused(env: Env, client: Any) -> None:
    _container, task = _started(env, client)
    process = env.spec("x", with_process_args(*SLEEP))["process"]
    exec_id = unique_id("e")
    task.exec(exec_id, process)
    error = _raises("exec-id-reused", lambda: task.exec(exec_id, process))
    assert exec_id in str(error) and "pick another id" in str(error)
    task.force_delete()


def test_row_container_not_found(client: Any) -> None:
    missing = unique_id("missing")
    error = _raises("container-not-found", lambda: client.load_container(missing))
    assert missing in str(error) and "new_container()" in str(error)


def test_row_task_not_found(env: Env, client: Any) -> None:
    container = env.container(client, with_process_args("true"))
    for call in (container.task, container.attach_task):
        error = _raises("task-not-found", call)
        assert container.id in str(error) and "new_task()" in str(error)


def test_row_process_not_found(env: Env, client: Any) -> None:
    _container, task = _started(env, client)
    missing = unique_id("e")
    error = _raises("process-not-found", lambda: task.load_process(missing))
    assert missing in str(error) and "exec()" in str(error)
    task.force_delete()
