"""The local backend outlives its callers: SIGKILLed clients, exits with no client, and
several clients sharing one root."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_support import NAMESPACE, SIGKILL_CODE, LocalEnv, local_env

from libcontainerd.testing.host import ensure_crun_cgroup_layout, find_runtime, is_root
from libcontainerd.testing.image_builder import busybox_rootfs
from libcontainerd.types.status import Status

pytestmark = pytest.mark.runtime

RUNTIMES = ("runc", "crun")

# Creates and starts one container with FileIO per argv entry, prints the ids, then
# sleeps until it is killed.
CALLER = textwrap.dedent(
    """
    import json, sys, time
    from libcontainerd.config import ClientConfig
    from libcontainerd.local import create_client
    from libcontainerd.oci import generate_spec, with_process_args, with_rootfs
    from libcontainerd.types.stdio import FileIO
    cfg = json.loads(sys.argv[1])
    client = create_client(ClientConfig(root=cfg["root"], state=cfg["state"],
                                        runtime=cfg["runtime"], namespace=cfg["namespace"]))
    ids = []
    for i, script in enumerate(cfg["scripts"]):
        cid = cfg["prefix"] + str(i)
        spec = generate_spec(with_process_args("sh", "-c", script), with_rootfs(cfg["rootfs"]),
                             container_id=cid, namespace=cfg["namespace"])
        task = client.new_container(cid, spec).new_task(stdio=FileIO(cfg["out"] + str(i)))
        task.start()
        ids.append(cid)
    print(json.dumps(ids), flush=True)
    time.sleep(600)
    """
)

# Creates containers and updates one shared record's labels, many times.
WRITER = textwrap.dedent(
    """
    import json, sys
    from libcontainerd.config import ClientConfig
    from libcontainerd.local import create_client
    cfg = json.loads(sys.argv[1])
    client = create_client(ClientConfig(root=cfg["root"], state=cfg["state"],
                                        runtime=cfg["runtime"], namespace=cfg["namespace"]))
    shared = client.load_container(cfg["shared"])
    for i in range(cfg["count"]):
        client.new_container(f"{cfg['prefix']}{i}", cfg["spec"], labels={"n": str(i)})
        shared.set_labels({f"{cfg['prefix']}{i}": "x"})
    """
)


@pytest.fixture(scope="session")
def survival_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox rootfs for the session."""
    if not is_root():
        pytest.skip("running containers with runc/crun needs root")
    ensure_crun_cgroup_layout()
    return busybox_rootfs(tmp_path_factory.mktemp("survival-rootfs") / "rootfs")


@pytest.fixture(params=RUNTIMES)
def env(
    request: pytest.FixtureRequest, tmp_path: Path, survival_rootfs: Path
) -> Iterator[LocalEnv]:
    """A private local-backend root for runc and for crun."""
    name: str = request.param
    if find_runtime(name) is None:
        pytest.skip(f"{name} is not installed")
    with local_env(name, tmp_path, survival_rootfs) as value:
        yield value


def _config(env: LocalEnv, **extra: object) -> str:
    return json.dumps(
        {
            "root": str(env.root),
            "state": str(env.state),
            "runtime": env.runtime,
            "namespace": NAMESPACE,
            "rootfs": str(env.rootfs),
            **extra,
        }
    )


def test_sigkilled_caller_leaves_containers_and_true_exit_codes(
    env: LocalEnv, tmp_path: Path
) -> None:
    prefix = env.new_id() + "-"
    out = str(tmp_path / "out")
    scripts = ["echo started; sleep 30", "echo started; sleep 1; exit 7"]
    cfg = _config(env, scripts=scripts, prefix=prefix, out=out)
    child = subprocess.Popen([sys.executable, "-c", CALLER, cfg], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        ids = json.loads(child.stdout.readline())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
    assert len(ids) == 2
    client = env.client()

    # The sleeper still runs after its creator died; a new client kills it.
    sleeper = client.load_container(ids[0]).task()
    assert sleeper.status() is Status.RUNNING
    sleeper.kill(signal.SIGKILL)
    assert sleeper.wait(timeout=20).code == SIGKILL_CODE
    assert sleeper.delete().code == SIGKILL_CODE

    # The other one exited with 7 while no client existed; its code was recorded.
    time.sleep(1.5)
    exiter = client.load_container(ids[1]).attach_task()
    assert exiter.wait(timeout=20).code == 7
    assert exiter.status() is Status.STOPPED
    exiter.delete()
    assert Path(out + "0").read_text() == "started\n"
    assert Path(out + "1").read_text() == "started\n"


def test_two_clients_on_one_root_in_threads(env: LocalEnv) -> None:
    import threading

    clients = [env.client(), env.client()]
    shared_id = env.new_id()
    shared = clients[0].new_container(shared_id, env.spec("true", container_id=shared_id))
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            client = clients[index]
            handle = client.load_container(shared_id)
            for i in range(15):
                cid = f"t{index}-{i}"
                client.new_container(cid, env.spec("true", container_id=cid))
                handle.set_labels({cid: "x"})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(clients[1].containers()) == 31
    assert len(shared.labels()) == 30


def test_two_clients_on_one_root_in_processes(env: LocalEnv) -> None:
    client = env.client()
    shared_id = env.new_id()
    spec = env.spec("true", container_id=shared_id)
    client.new_container(shared_id, spec)
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                _config(env, shared=shared_id, prefix=f"p{n}-", count=15, spec=spec),
            ]
        )
        for n in range(2)
    ]
    for child in children:
        assert child.wait(120) == 0
    assert len(client.containers()) == 31
    labels = client.load_container(shared_id).labels()
    assert len(labels) == 30
    assert {c.info().labels.get("n") for c in client.containers(["labels.n==14"])} == {"14"}
    for name in os.listdir(env.root / "containers" / NAMESPACE):
        if name.startswith("."):
            continue  # the namespace's lock file
        json.loads((env.root / "containers" / NAMESPACE / name / "record.json").read_text())
