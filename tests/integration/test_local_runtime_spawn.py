"""The monitor starts runtime commands with posix_spawn: a runtime binary that vanished
between two tasks is a clear error, and the container stays usable once it is back."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_support import LocalEnv, local_env

from libcontainerd.errors import Error, NotFound
from libcontainerd.testing.host import ensure_crun_cgroup_layout, find_runtime, is_root
from libcontainerd.testing.image_builder import busybox_rootfs
from libcontainerd.types.status import Status

RUNTIMES = ("runc", "crun")


@pytest.fixture(scope="session")
def spawn_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One busybox root filesystem for the module."""
    if not is_root():
        pytest.skip("running containers with runc/crun needs root")
    ensure_crun_cgroup_layout()
    return busybox_rootfs(tmp_path_factory.mktemp("spawn-rootfs") / "rootfs")


@pytest.fixture(params=RUNTIMES)
def env(request: pytest.FixtureRequest, tmp_path: Path, spawn_rootfs: Path) -> Iterator[LocalEnv]:
    """A private local-backend root for runc and for crun."""
    name: str = request.param
    if find_runtime(name) is None:
        pytest.skip(f"{name} is not installed")
    with local_env(name, tmp_path, spawn_rootfs) as value:
        yield value


@pytest.mark.runtime
def test_vanished_runtime_binary_is_a_clear_error_and_leaves_no_task(
    env: LocalEnv, tmp_path: Path
) -> None:
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
