"""Benchmark: the cost of CNI networking per container, on both backends.

For each backend (local with runc; remote with a private containerd) it times the
sequential lifecycle create / start / wait / delete of ``/bin/true`` with
``network="none"`` and with ``network="bridge"`` (bridge + host-local + portmap +
firewall + loopback), and as the floor the same plugin chain run by hand: ``ip netns
add``, every plugin's ADD then every plugin's DEL with the same conflist, ``ip netns
delete``. The row reports the medians, the SDK's added cost per container (bridge minus
none) and its ratio to the floor. Run as root on a host with containernetworking-plugins:
``.venv/bin/python benchmarks/bench_network.py [--cycles 20]``.

Its bridge uses ``lcdbench0`` on 10.213.99.0/24; nothing leaves the host.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import libcontainerd
from libcontainerd import oci
from libcontainerd.network import NetworkSettings
from libcontainerd.network.conflist import bridge_conflist
from libcontainerd.testing import busybox_rootfs
from libcontainerd.types import NullIO

BRIDGE = "lcdbench0"
SUBNET = "10.213.99.0/24"
PLUGINS = "/usr/lib/cni"


def _median_ms(cycles: int, one: Callable[[int], None]) -> float:
    one(-1)  # warm caches, create the bridge
    timings = []
    for i in range(cycles):
        started = time.perf_counter()
        one(i)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


def _lifecycle(client: Any, rootfs: Path, network: str, tag: str) -> Callable[[int], None]:
    spec = oci.generate_spec(oci.with_process_args("/bin/true"), oci.with_rootfs(str(rootfs)))

    def one(i: int) -> None:
        container = client.new_container(f"bench-{tag}-{network}-{i + 1}", spec, network=network)
        task = container.new_task(stdio=NullIO())
        task.start()
        task.wait(timeout=30)
        task.delete()
        container.delete()

    return one


def _by_hand(work: Path) -> Callable[[int], None]:
    """The floor: the same conflist's chain, driven the way a shell script would."""
    config = bridge_conflist("bench-hand", bridge=BRIDGE, subnet=SUBNET, ipam_dir=work / "ipam")
    plugins = config.to_json()["plugins"]

    def run(command: str, plugin: dict[str, Any], netns: str, cid: str, prev: Any) -> Any:
        conf = {**plugin, "name": config.name, "cniVersion": config.cni_version}
        if prev is not None:
            conf["prevResult"] = prev
        env = {
            **os.environ,
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": netns,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": PLUGINS,
        }
        done = subprocess.run(
            [f"{PLUGINS}/{plugin['type']}"],
            input=json.dumps(conf).encode(),
            env=env,
            capture_output=True,
            check=True,
        )
        return json.loads(done.stdout) if command == "ADD" else None

    def one(i: int) -> None:
        name = f"lcdbench-{i + 2}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        netns = f"/run/netns/{name}"
        result = None
        for plugin in plugins:
            result = run("ADD", plugin, netns, name, result)
        for plugin in reversed(plugins):
            run("DEL", plugin, netns, name, result)
        subprocess.run(["ip", "netns", "delete", name], check=True)

    return one


@contextmanager
def _clients(work: Path, settings: NetworkSettings) -> Iterator[list[tuple[str, Any]]]:
    clients: list[tuple[str, Any]] = [
        (
            "local (runc)",
            libcontainerd.new_client(
                "local",
                root=work / "root",
                state=work / "state",
                runtime="runc",
                network=settings,
            ),
        )
    ]
    daemon = None
    if shutil.which("containerd"):
        from libcontainerd.testing.containerd_daemon import start_containerd

        daemon = start_containerd(work / "containerd")
        clients.append(
            (
                "remote (containerd)",
                libcontainerd.new_client("remote", address=daemon.address, network=settings),
            )
        )
    try:
        yield clients
    finally:
        for _, client in clients:
            client.close()
        if daemon is not None:
            daemon.stop()


def main() -> None:
    """Print one markdown row per backend."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lcd-bench-net-"))
    try:
        rootfs = busybox_rootfs(work / "rootfs")
        settings = NetworkSettings(
            config_dir=work / "net.d",
            state_dir=work / "net-state",
            default_bridge=BRIDGE,
            default_subnet=SUBNET,
        )
        floor = _median_ms(args.cycles, _by_hand(work))
        print(f"cycles per measurement: {args.cycles} (medians)")
        print(
            "| backend | none ms | bridge ms | added by bridge ms | chain by hand ms | "
            "added / by hand |"
        )
        print("|---|---|---|---|---|---|")
        with _clients(work, settings) as clients:
            for tag, (label, client) in enumerate(clients):
                none = _median_ms(args.cycles, _lifecycle(client, rootfs, "none", str(tag)))
                bridge = _median_ms(args.cycles, _lifecycle(client, rootfs, "bridge", str(tag)))
                added = bridge - none
                print(
                    f"| {label} | {none:.1f} | {bridge:.1f} | {added:.1f} | {floor:.1f} | "
                    f"{added / floor:.2f} |"
                )
            clients[0][1].networks.remove("bridge")
    finally:
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
