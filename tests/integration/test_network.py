"""CNI networking on every backend, against the real plugins in /usr/lib/cni.

Every test network has its own bridge device and an unusual subnet (see
``network_support``); the host only talks to 127.0.0.1 and to addresses on those bridges.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from network_support import (
    DEFAULT_BRIDGE,
    NAMED_BRIDGE,
    NAMED_SUBNET,
    Census,
    NetEnv,
    dns_responder,
    resolve_with,
)

from libcontainerd.config import ClientConfig
from libcontainerd.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from libcontainerd.network import LABEL_IPS, LABEL_NETWORK, LABEL_PORTS, DnsConfig, PluginFailed
from libcontainerd.network.files import read_host_resolv_conf

BACKENDS = [
    pytest.param("local-runc", marks=pytest.mark.runtime),
    pytest.param("local-crun", marks=pytest.mark.runtime),
    pytest.param("remote", marks=pytest.mark.containerd),
]
INDEX = b"hello from a networked container\n"
CYCLES = 100
LOCK_FILE = "/tmp/libcontainerd-network-tests.lock"


@pytest.fixture(scope="module")
def net_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from libcontainerd.testing.image_builder import busybox_rootfs

    return busybox_rootfs(
        tmp_path_factory.mktemp("net-bundle") / "rootfs", extra_files={"www/index.html": INDEX}
    )


@pytest.fixture(scope="module")
def net_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if os.geteuid() != 0 or shutil.which("containerd") is None:
        pytest.skip("needs root and the containerd binary")
    from libcontainerd.testing.containerd_daemon import start_containerd

    daemon = start_containerd(tmp_path_factory.mktemp("net-containerd"))
    try:
        yield daemon
    finally:
        daemon.stop()


def _needs(binary: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("networking needs root")
    for tool in (binary, "iptables-save"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    if not Path("/usr/lib/cni/bridge").exists():
        pytest.skip("the CNI plugins (containernetworking-plugins) are not installed")


@pytest.fixture(params=BACKENDS)
def env(request: pytest.FixtureRequest, net_rootfs: Path, tmp_path: Path) -> Iterator[NetEnv]:
    """A backend with private network settings; everything removed afterwards."""
    name: str = request.param
    if name == "remote":
        _needs("containerd")
        daemon = request.getfixturevalue("net_daemon")
        from libcontainerd import remote

        def config(ns: str, **kw: Any) -> ClientConfig:
            return ClientConfig(namespace=ns, address=daemon.address, timeout=30.0, **kw)

        environment = NetEnv(remote.create_client, config, net_rootfs, tmp_path, name)
        environment.daemon = daemon  # type: ignore[attr-defined]
    else:
        runtime = name.removeprefix("local-")
        _needs(runtime)
        from libcontainerd import local
        from libcontainerd.testing.host import ensure_crun_cgroup_layout

        if runtime == "crun":
            ensure_crun_cgroup_layout()

        def config(ns: str, **kw: Any) -> ClientConfig:
            return ClientConfig(
                namespace=ns,
                root=tmp_path / "root",
                state=tmp_path / "state",
                runtime=runtime,
                timeout=30.0,
                **kw,
            )

        environment = NetEnv(local.create_client, config, net_rootfs, tmp_path, name)
    # Tests share the test bridge and subnet: under pytest-xdist they take turns.
    with open(LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        census = Census(environment.settings)
        environment.census = census  # type: ignore[attr-defined]
        try:
            yield environment
        finally:
            environment.cleanup()
        assert census.leftovers() == []
    assert not Path("/sys/class/net", DEFAULT_BRIDGE).exists()


def _http_get(port: int, deadline: float = 15.0) -> bytes:
    end = time.monotonic() + deadline
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2) as r:
                return bytes(r.read())
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_published_port_answers_and_a_peer_reaches_it_by_ip(env: NetEnv, tmp_path: Path) -> None:
    client = env.client()
    port = _free_port()
    web = env.container(
        client,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
        network="bridge",
        ports=[f"127.0.0.1:{port}:80"],
    )
    task = web.new_task()
    try:
        task.start()
        assert _http_get(port) == INDEX
        status = client.networks.status(web.id)
        assert status is not None and status.network == "bridge"
        (ip,) = status.ips
        assert ip.startswith("10.213.77.") and status.netns is not None
        labels = web.labels()
        assert labels[LABEL_IPS] == ip and labels[LABEL_NETWORK] == "bridge"
        assert labels[LABEL_PORTS] == f"127.0.0.1:{port}:80/tcp"
        code, output = env.run(
            client, tmp_path, "wget", "-q", "-O", "-", f"http://{ip}/index.html", network="bridge"
        )
        assert (code, output) == (0, INDEX.decode())
    finally:
        task.force_delete()
        web.delete()
    assert client.networks.status(web.id) is None


def test_check_reports_a_network_changed_behind_the_plugins_back(env: NetEnv) -> None:
    """CNI CHECK on a container without published ports (Debian's portmap 1.1.1 fails
    CHECK on IPv4-only hosts by looking for IPv6 rules it never made)."""
    client = env.client()
    idle = env.container(client, "sleep", "1000", network="bridge")
    task = idle.new_task()
    try:
        task.start()
        client.networks.check(idle.id)
        status = client.networks.status(idle.id)
        assert status is not None and status.netns is not None
        subprocess.run(
            ["nsenter", f"--net={status.netns}", "ip", "route", "del", "default"], check=True
        )
        with pytest.raises(PluginFailed, match="CHECK"):
            client.networks.check(idle.id)
    finally:
        task.force_delete()
    with pytest.raises(FailedPrecondition, match="no attached"):
        client.networks.check(idle.id)
    idle.delete()


def test_generated_files_in_every_mode(env: NetEnv, tmp_path: Path) -> None:
    client = env.client()
    show = ("sh", "-c", "hostname; cat /etc/resolv.conf /etc/hosts; ip -o addr show")
    dns = DnsConfig(servers=["10.213.77.1"], search=["it.test"], options=["ndots:1"])
    code, none = env.run(client, tmp_path, *show, network="none", hostname="alpha", dns=dns)
    assert code == 0, none
    assert none.startswith("alpha\nnameserver 10.213.77.1\nsearch it.test\noptions ndots:1\n")
    assert "127.0.0.1\talpha" in none and "eth0" not in none
    code, bridged = env.run(client, tmp_path, *show, network="bridge", hostname="beta")
    assert code == 0, bridged
    expected = read_host_resolv_conf().without_loopback().render()
    assert bridged.startswith("beta\n" + expected)
    ip = next(w for w in bridged.split() if w.startswith("10.213.77.")).split("/")[0]
    assert f"{ip}\tbeta" in bridged
    code, hosted = env.run(client, tmp_path, *show, network="host")
    assert code == 0, hosted
    assert hosted.startswith(os.uname().nodename + "\n" + read_host_resolv_conf().render())
    assert Path("/etc/hosts").read_text().splitlines()[0] in hosted
    with pytest.raises(InvalidArgument, match="ports"):
        env.container(client, "true", network="host", ports=["8080:80"])
    with pytest.raises(NotFound, match="create it"):
        env.container(client, "true", network="no-such-net")
    plain = env.container(client, "true")
    with pytest.raises(AlreadyExists):
        env.container(client, "true", container_id=plain.id, network="bridge")
    assert client.networks.status(plain.id) is None  # no plan was left for the other one
    plain.delete()


def test_names_resolve_through_the_generated_resolv_conf(env: NetEnv, tmp_path: Path) -> None:
    """The host has no internet, so the resolver is one the test runs on its own bridge's
    gateway address; the host resolves the name through it first, then the container does
    through nothing but its generated /etc/resolv.conf."""
    client = env.client()
    lookup = env.container(
        client, "nslookup", "svc.lcd.test", network="bridge", dns=["10.213.77.1"]
    )
    output = tmp_path / "nslookup.out"
    from libcontainerd.types.stdio import FileIO

    task = lookup.new_task(stdio=FileIO(output))  # attached: the gateway address exists now
    try:
        with dns_responder("10.213.77.1", {"svc.lcd.test": "10.213.77.250"}):
            assert resolve_with("10.213.77.1", "svc.lcd.test") == "10.213.77.250"
            task.start()
            status = task.wait(60)
    finally:
        task.force_delete()
        lookup.delete()
    text = output.read_text()
    assert status.code == 0, text
    assert "10.213.77.250" in text


def test_named_networks_are_stored_listed_and_removed(env: NetEnv, tmp_path: Path) -> None:
    client = env.client()
    created = client.networks.create("itnet", subnet=NAMED_SUBNET, bridge=NAMED_BRIDGE)
    assert created.owned and created.bridge == NAMED_BRIDGE
    assert created.plugins == ("bridge", "portmap", "firewall", "loopback")
    again = env.client()  # a restarted caller finds it
    assert "itnet" in [n.name for n in again.networks.list()]
    code, output = env.run(
        again, tmp_path, "ip", "-o", "-4", "addr", "show", "eth0", network="itnet"
    )
    assert code == 0 and "10.213.76." in output, output
    holder = env.container(again, "true", network="itnet")
    with pytest.raises(FailedPrecondition, match="attached"):
        again.networks.remove("itnet")
    holder.delete()
    again.networks.remove("itnet")
    assert "itnet" not in [n.name for n in client.networks.list()]
    assert not Path("/sys/class/net", NAMED_BRIDGE).exists()
    foreign = env.settings.config_dir / "foreign.conflist"
    foreign.write_text(
        json.dumps({"cniVersion": "1.0.0", "name": "foreign", "plugins": [{"type": "loopback"}]})
    )
    with pytest.raises(FailedPrecondition, match="not created by libcontainerd"):
        client.networks.remove("foreign")


def test_hundred_bridge_lifecycles_leave_nothing(env: NetEnv) -> None:
    if env.name == "local-crun":
        pytest.skip(
            "the network hooks are the runtime's neighbours, not its users: runc covers local"
        )
    client = env.client()
    census: Census = env.census  # type: ignore[attr-defined]
    port = _free_port()
    for index in range(CYCLES):
        container = env.container(
            client,
            "true",
            container_id=f"cycle-{index}",
            network="bridge",
            ports=[f"127.0.0.1:{port}:80"],
        )
        task = container.new_task()
        task.start()
        assert task.wait(30).code == 0
        task.delete()
        container.delete()
    assert census.leftovers() == []


_CHILD = r"""
import json, os, signal, sys
from libcontainerd.config import ClientConfig
from libcontainerd.network import NetworkSettings, Networks
from libcontainerd.oci import generate_spec, with_process_args, with_rootfs
args = json.loads(sys.argv[1])
settings = NetworkSettings(**args["settings"])
if args["backend"] == "remote":
    from libcontainerd.remote import create_client
else:
    from libcontainerd.local import create_client
client = create_client(ClientConfig(**args["config"], options={"network": settings}))
def container(cid):
    spec = generate_spec(with_process_args("sleep", "1000"), with_rootfs(args["rootfs"]),
                         container_id=cid, namespace=args["config"]["namespace"])
    c = client.new_container(cid, spec, network="bridge")
    t = c.new_task()
    t.start()
    return c, t
container("kept")
container("gone")
_, task = container("half")
task.kill(signal.SIGKILL)
task.wait(30)
# Die exactly where the SDK would release the namespace of the deleted task.
Networks.detach = lambda self, cid: os.kill(os.getpid(), signal.SIGKILL)
task.delete()
"""


def test_a_new_client_cleans_up_after_a_killed_caller(env: NetEnv) -> None:
    """The caller is SIGKILLed right after a task deletion, before the SDK released its
    network (a fault injected by replacing the release with SIGKILL in the child); one
    more container is then deleted with the release skipped (the same fault, in this
    process). A new client must release both, and keep the running container's."""
    census: Census = env.census  # type: ignore[attr-defined]
    probe = env.config("x")
    config: dict[str, Any] = {"namespace": "lcd-net-it", "timeout": 30.0}
    if env.name == "remote":
        config["address"] = probe.address
    else:
        config.update(root=str(probe.root), state=str(probe.state), runtime=probe.runtime)
    settings = {
        "config_dir": str(env.settings.config_dir),
        "state_dir": str(env.settings.state_dir),
        "default_bridge": env.settings.default_bridge,
        "default_subnet": env.settings.default_subnet,
    }
    payload = {
        "backend": "remote" if env.name == "remote" else "local",
        "config": config,
        "settings": settings,
        "rootfs": str(env.rootfs),
    }
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(payload)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert census.leftovers() != []

    faulty = env.client()
    faulty.networks.detach = lambda container_id: None  # type: ignore[method-assign]
    faulty.networks.forget = lambda container_id: None  # type: ignore[method-assign]
    gone = faulty.load_container("gone")
    gone.task().force_delete()
    gone.delete()

    fresh = env.client()
    for container_id in ("half", "gone"):
        status = fresh.networks.status(container_id)
        assert status is None or status.netns is None, container_id
    kept = fresh.networks.status("kept")
    assert kept is not None and kept.netns is not None
    container = fresh.load_container("kept")
    container.task().force_delete()
    container.delete()
    fresh.load_container("half").delete()
    assert census.leftovers() == []
