"""The remote backend and containerd's own ``ctr`` see the same containers and tasks."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libcontainerd.config import ClientConfig
from libcontainerd.errors import DeadlineExceeded, NotFound
from libcontainerd.oci import generate_spec, with_process_args, with_rootfs
from libcontainerd.remote import RemoteClient
from libcontainerd.types.status import Status

NAMESPACE = "ctr-interop"

pytestmark = pytest.mark.containerd


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if os.geteuid() != 0 or shutil.which("containerd") is None or shutil.which("ctr") is None:
        pytest.skip("needs root and the containerd and ctr binaries")
    from libcontainerd.testing.containerd_daemon import start_containerd

    running = start_containerd(tmp_path_factory.mktemp("ctr-interop"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from libcontainerd.testing.image_builder import busybox_rootfs

    return busybox_rootfs(tmp_path_factory.mktemp("interop-bundle") / "rootfs")


@pytest.fixture
def client(daemon: Any) -> Iterator[RemoteClient]:
    remote = RemoteClient(ClientConfig(namespace=NAMESPACE, address=daemon.address))
    try:
        yield remote
    finally:
        for container in remote.containers():
            with contextlib.suppress(NotFound):
                container.task().force_delete()
            container.delete()
        remote.close()


def _ctr(daemon: Any, *args: str) -> str:
    result = subprocess.run(
        ["ctr", "--address", str(daemon.socket_path), "--namespace", NAMESPACE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _table(text: str) -> dict[str, list[str]]:
    rows = [line.split() for line in text.splitlines()[1:] if line.strip()]
    return {row[0]: row[1:] for row in rows}


def test_sdk_container_and_task_show_in_ctr(
    daemon: Any, client: RemoteClient, rootfs: Path
) -> None:
    cid = f"sdk-{os.getpid()}"
    spec = generate_spec(
        with_rootfs(rootfs), with_process_args("sleep", "60"), container_id=cid, namespace=NAMESPACE
    )
    container = client.new_container(cid, spec, runtime_options={"root": str(daemon.runc_root)})
    assert cid in _table(_ctr(daemon, "containers", "ls"))
    assert _table(_ctr(daemon, "containers", "ls"))[cid][-1] == "io.containerd.runc.v2"
    task = container.new_task()
    task.start()
    tasks = _table(_ctr(daemon, "tasks", "ls"))
    assert tasks[cid] == [str(task.pid), "RUNNING"]
    task.force_delete()
    assert cid not in _table(_ctr(daemon, "tasks", "ls"))
    container.delete()
    assert cid not in _table(_ctr(daemon, "containers", "ls"))


def test_ctr_container_driven_by_sdk(daemon: Any, client: RemoteClient, rootfs: Path) -> None:
    cid = f"ctr-{os.getpid()}"
    # The shell waits for sleep (the trailing "exit" stops it from exec'ing sleep), and
    # ignores SIGTERM itself: it is the container's pid 1, which only gets signals it
    # handles. So SIGTERM to every process ends sleep, and the shell exits with sleep's
    # status, 128 + SIGTERM.
    _ctr(
        daemon,
        "run",
        "-d",
        "--null-io",
        "--runc-root",
        str(daemon.runc_root),
        "--env",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        "--rootfs",
        str(rootfs),
        cid,
        "sh",
        "-c",
        "sleep 60; exit $?",
    )
    container = client.load_container(cid)
    assert container.spec()["process"]["args"] == ["sh", "-c", "sleep 60; exit $?"]
    task = container.task()
    assert task.pid > 0
    assert task.status() is Status.RUNNING
    task.kill(signal.SIGTERM, all=True)
    status = task.wait(timeout=30)
    assert status.code == 128 + signal.SIGTERM
    assert task.delete().code == 128 + signal.SIGTERM
    container.delete()
    assert cid not in _table(_ctr(daemon, "containers", "ls"))
    assert cid not in _table(_ctr(daemon, "tasks", "ls"))


def test_sigterm_to_pid1_without_handler_is_ignored(
    daemon: Any, client: RemoteClient, rootfs: Path
) -> None:
    cid = f"ctr-init-{os.getpid()}"
    _ctr(
        daemon,
        "run",
        "-d",
        "--null-io",
        "--runc-root",
        str(daemon.runc_root),
        "--env",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        "--rootfs",
        str(rootfs),
        cid,
        "sleep",
        "60",
    )
    task = client.load_container(cid).task()
    task.kill(signal.SIGTERM)
    with pytest.raises(DeadlineExceeded, match="did not exit"):
        task.wait(timeout=1)
    assert task.status() is Status.RUNNING
    assert task.force_delete().code == 128 + signal.SIGKILL
