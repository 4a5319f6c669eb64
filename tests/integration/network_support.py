"""Helpers for the network integration tests: clients of every backend, a one-shot runner,
a tiny DNS responder, and the census of what the SDK may leave on the host."""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from libcontainerd.config import ClientConfig
from libcontainerd.errors import Error
from libcontainerd.network import NetworkSettings
from libcontainerd.oci import generate_spec, with_process_args, with_rootfs
from libcontainerd.types.stdio import FileIO

NAMESPACE = "lcd-net-it"
# An unusual /24 pair no route of this host uses; traffic stays on bridges the tests make.
DEFAULT_SUBNET = "10.213.77.0/24"
DEFAULT_BRIDGE = "lcdt77"
NAMED_SUBNET = "10.213.76.0/24"
NAMED_BRIDGE = "lcdt76"
BRIDGES = (DEFAULT_BRIDGE, NAMED_BRIDGE)
SUBNET_PREFIXES = ("10.213.77.", "10.213.76.")


class NetEnv:
    """One backend's clients with private network configuration and state."""

    def __init__(
        self,
        make: Callable[[ClientConfig], Any],
        config: Callable[..., ClientConfig],
        rootfs: Path,
        base: Path,
        name: str,
    ) -> None:
        self.make = make
        self.config = config
        self.rootfs = rootfs
        self.name = name
        self.settings = NetworkSettings(
            config_dir=base / "net.d",
            state_dir=base / "net-state",
            default_bridge=DEFAULT_BRIDGE,
            default_subnet=DEFAULT_SUBNET,
        )
        self.clients: list[Any] = []

    def client(self) -> Any:
        """A new client with this env's network settings."""
        client = self.make(self.config(NAMESPACE, options={"network": self.settings}))
        self.clients.append(client)
        return client

    def spec(self, *args: str, container_id: str) -> Any:
        """A spec running ``args`` on the busybox root filesystem."""
        return generate_spec(
            with_process_args(*args),
            with_rootfs(self.rootfs),
            container_id=container_id,
            namespace=NAMESPACE,
        )

    def new_id(self, prefix: str = "c") -> str:
        """A fresh container id."""
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    def container(
        self, client: Any, *args: str, container_id: str | None = None, **network: Any
    ) -> Any:
        """A new container running ``args`` with ``network`` keyword arguments."""
        container_id = container_id or self.new_id()
        return client.new_container(
            container_id, self.spec(*args, container_id=container_id), **network
        )

    def run(self, client: Any, tmp: Path, *args: str, **network: Any) -> tuple[int, str]:
        """Run ``args`` to completion in a new container; exit code and output."""
        container = self.container(client, *args, **network)
        output = tmp / f"{container.id}.out"
        try:
            task = container.new_task(stdio=FileIO(output))
            try:
                task.start()
                status = task.wait(60)
            finally:
                task.force_delete()
        finally:
            container.delete()
        return status.code, output.read_text() if output.exists() else ""

    def cleanup(self) -> None:
        """Delete every container of the namespace and every network the tests made."""
        client = self.client()
        for container in client.containers():
            with contextlib.suppress(Error):
                container.task().force_delete()
            with contextlib.suppress(Error):
                container.delete()
        for network in client.networks.list():
            with contextlib.suppress(Error):
                client.networks.remove(network.name)
        for each in self.clients:
            with contextlib.suppress(Error):
                each.close()


def _iptables_lines() -> set[str]:
    lines: set[str] = set()
    for table in ("filter", "nat"):
        done = subprocess.run(
            ["iptables-save", "-t", table], capture_output=True, text=True, check=True
        )
        lines |= {
            re.sub(r"\[\d+:\d+\]", "", line)
            for line in done.stdout.splitlines()
            if not line.startswith("#")
        }
    return lines


class Census:
    """What the SDK may leave on the host: compare after against a baseline taken before."""

    def __init__(self, settings: NetworkSettings) -> None:
        self.settings = settings
        self.baseline = _iptables_lines()

    def leftovers(self) -> list[str]:
        """Veths on the test bridges, netns pins, IPAM leases, new per-container iptables lines."""
        found: list[str] = []
        for bridge in BRIDGES:
            ports = Path("/sys/class/net", bridge, "brif")
            if ports.exists():
                found += [f"veth {p.name} on {bridge}" for p in ports.iterdir()]
        state = str(self.settings.state_dir)
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            if state in line:
                found.append(f"mount {line.split()[4]}")
        for lease in self.settings.ipam_dir.glob("*/*"):
            if lease.name != "lock" and not lease.name.startswith("last_reserved_ip"):
                found.append(f"IPAM lease {lease}")
        for line in sorted(_iptables_lines() - self.baseline):
            per_container = any(p in line for p in SUBNET_PREFIXES) or "lcd-" in line
            chain = re.match(r":CNI-(DN-)?[0-9a-f]{20,}", line)
            if per_container or chain:
                found.append(f"iptables {line}")
        return found


class DnsResponder:
    """A minimal DNS server answering A queries for fixed names (a test's own resolver)."""

    def __init__(self, address: str, records: dict[str, str]) -> None:
        self.records = records
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 53))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            with contextlib.suppress(Exception):
                self.sock.sendto(self._answer(query), peer)

    def _answer(self, query: bytes) -> bytes:
        ident = struct.unpack("!H", query[:2])[0]
        labels, offset = [], 12
        while query[offset]:
            length = query[offset]
            labels.append(query[offset + 1 : offset + 1 + length].decode())
            offset += 1 + length
        qtype = struct.unpack("!H", query[offset + 1 : offset + 3])[0]
        question = query[12 : offset + 5]
        name = ".".join(labels).lower()
        address = self.records.get(name)
        if address is None:
            return struct.pack("!HHHHHH", ident, 0x8183, 1, 0, 0, 0) + question
        if qtype != 1:
            return struct.pack("!HHHHHH", ident, 0x8180, 1, 0, 0, 0) + question
        answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(address)
        return struct.pack("!HHHHHH", ident, 0x8180, 1, 1, 0, 0) + question + answer

    def close(self) -> None:
        """Stop answering."""
        self._stop.set()
        self._thread.join()
        self.sock.close()


def resolve_with(server: str, name: str) -> str | None:
    """Ask ``server`` for ``name``'s A record, as the host's resolver would (None: no answer)."""
    query = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    query += struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(query, (server, 53))
        reply = sock.recv(512)
    if struct.unpack("!H", reply[6:8])[0] == 0:
        return None
    return socket.inet_ntoa(reply[-4:])


@contextlib.contextmanager
def dns_responder(address: str, records: dict[str, str]) -> Iterator[DnsResponder]:
    """A :class:`DnsResponder` closed on exit."""
    responder = DnsResponder(address, records)
    try:
        yield responder
    finally:
        responder.close()
