"""Restore after the caller restarts, on both backends: a process makes containers with
piped stdio and is SIGKILLed; a new process gets containers and running tasks back with
``containers()`` / ``attach_task()`` and talks to them through their stdio."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_support import Tally, open_fds, wait_until

import libcontainerd
from libcontainerd.types.stdio import PipedIO

NAMESPACE = "faults-restore"
TASKS = 3

CALLER = """
import json, os, signal, sys
import libcontainerd
from libcontainerd.oci import generate_spec, with_process_args, with_rootfs
from libcontainerd.types.stdio import PipedIO

cfg = json.loads(sys.argv[1])
client = libcontainerd.new_client(cfg["backend"], **cfg["client"])
for i in range(cfg["tasks"]):
    cid = f"restore-{i}"
    spec = generate_spec(
        with_rootfs(cfg["rootfs"]),
        with_process_args("sh", "-c", "while read line; do echo got-$line; done; exit 3"),
        container_id=cid,
        namespace=cfg["client"]["namespace"],
    )
    task = client.new_container(cid, spec, **cfg["container"]).new_task(stdio=PipedIO())
    task.start()
    task.io.stdin.write(b"first\\n")
    task.io.stdin.flush()
    assert task.io.stdout.readline() == b"got-first\\n"
print("ready", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture(params=["remote", "local"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """How the caller and its successor build their clients, per backend."""
    if request.param == "local":
        yield {
            "backend": "local",
            "client": {
                "root": str(tmp_path / "root"),
                "state": str(tmp_path / "state"),
                "runtime": "runc",
                "namespace": NAMESPACE,
            },
            "container": {},
        }
        return
    from libcontainerd.testing.containerd_daemon import start_containerd

    daemon = start_containerd(tmp_path / "d")
    try:
        yield {
            "backend": "remote",
            "client": {"address": daemon.address, "namespace": NAMESPACE},
            "container": {"runtime_options": {"root": str(daemon.runc_root)}},
        }
    finally:
        daemon.stop()


def test_new_process_gets_tasks_back_with_working_stdio(
    backend: dict[str, Any], fault_rootfs: Path, tally: Tally
) -> None:
    if shutil.which("runc") is None:
        pytest.skip("needs runc")
    cfg = json.dumps({**backend, "rootfs": str(fault_rootfs), "tasks": TASKS})
    caller = subprocess.run(
        [sys.executable, "-c", CALLER, cfg], capture_output=True, text=True, timeout=120
    )
    assert caller.returncode == -signal.SIGKILL, caller.stderr
    assert caller.stdout == "ready\n"
    tally.faults += 1
    fds_before = open_fds()
    client = libcontainerd.new_client(backend["backend"], **backend["client"])
    try:
        found = sorted(container.id for container in client.containers())
        assert found == [f"restore-{i}" for i in range(TASKS)]
        for cid in found:
            task = client.load_container(cid).attach_task(stdio=PipedIO())
            assert task.io is not None and task.io.stdin is not None
            task.io.stdin.write(b"again\n")
            task.io.stdin.flush()
            assert task.io.stdout.readline() == b"got-again\n"
            task.close_stdin()
            assert task.wait(timeout=30).code == 3
            task.delete()
            client.load_container(cid).delete()
        assert client.containers() == []
    finally:
        client.close()
    assert wait_until(lambda: not (open_fds() - fds_before), 5), open_fds() - fds_before
    tally.operations += TASKS * 7
    tally.tests += 1
