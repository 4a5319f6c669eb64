"""A container's attachment to a network, from ``new_container`` to ``delete``.

* ``plan`` (at ``new_container``): check the request, write ``/etc/hosts``,
  ``/etc/hostname`` and ``/etc/resolv.conf``, and point the spec at them and at the
  namespace pin the task will get.
* ``attach`` (before the task is created): create the pinned namespace, run CNI ADD,
  cache the result, add the address to ``/etc/hosts``.
* ``detach`` (after the task is deleted): CNI DEL with the cached result, unpin.
* ``forget`` (after the container is deleted): detach if needed, drop the state.

Everything lives under ``<state_dir>/containers/<owner>/<container>/``; the owner is a
hash of backend, location and namespace, so two clients never confuse their containers.
The plan is written before ADD runs, so a caller killed at any point leaves enough on
disk for :meth:`Attachments.reap` in a later client to undo it.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from libcontainerd.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from libcontainerd.network.cni import (
    CniResult,
    RuntimeConf,
    add_network,
    check_network,
    delete_network,
)
from libcontainerd.network.conflist import NetworkConfigList
from libcontainerd.network.files import (
    DnsConfig,
    host_hostname,
    hosts_file,
    read_host_resolv_conf,
    write_file,
)
from libcontainerd.network.netns import create_netns, is_netns_mount, remove_netns
from libcontainerd.network.ports import PortMapping, parse_ports

__all__ = [
    "LABEL_HOSTNAME",
    "LABEL_IPS",
    "LABEL_NETWORK",
    "LABEL_PORTS",
    "Attachments",
    "ContainerState",
    "NetworkStatus",
]

LABEL_NETWORK = "libcontainerd.network/name"
LABEL_PORTS = "libcontainerd.network/ports"
LABEL_HOSTNAME = "libcontainerd.network/hostname"
LABEL_IPS = "libcontainerd.network/ips"

IFNAME = "eth0"
PLAN_GRACE = 60.0
"""Seconds a plan without a container record is left alone by ``reap`` (it may belong to a
``new_container`` call in progress in another process)."""
_FILES = {"hosts": "/etc/hosts", "hostname": "/etc/hostname", "resolv.conf": "/etc/resolv.conf"}

ContainerState = Literal["gone", "no-task", "task"]
"""What a client knows of a container: deleted, without a task, or with one."""


@attrs.frozen
class NetworkStatus:
    """A container's network as it is now: mode or network name, addresses, ports."""

    network: str
    ips: tuple[str, ...] = ()
    ports: tuple[PortMapping, ...] = ()
    hostname: str = ""
    netns: str | None = None
    """The pinned namespace while the task exists (None for ``none`` and ``host``)."""


def _process_start(pid: int) -> str | None:
    """The start time of ``pid`` (so a recycled pid is not taken for its predecessor)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_json(path: Path, value: Mapping[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(value), encoding="utf-8")
    os.replace(temporary, path)


class Attachments:
    """The attachment lifecycle for one client (one backend, location and namespace)."""

    def __init__(
        self,
        state_dir: Path,
        plugin_dirs: Sequence[Path],
        *,
        owner: str,
        container_state: Callable[[str], ContainerState],
        resolve: Callable[[str], NetworkConfigList],
    ) -> None:
        self.owner = hashlib.sha256(owner.encode()).hexdigest()[:12]
        self.root = state_dir / "containers" / self.owner
        self.plugin_dirs = tuple(plugin_dirs)
        self._container_state = container_state
        self._resolve = resolve

    def _dir(self, container_id: str) -> Path:
        return self.root / container_id

    def cni_id(self, container_id: str) -> str:
        """The container id the plugins see (unique across owners)."""
        return f"lcd-{self.owner}-{container_id}"

    @contextlib.contextmanager
    def _locked(self, container_id: str, *, wait: bool = True) -> Iterator[bool]:
        directory = self._dir(container_id)
        try:
            fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            yield False
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    # -- new_container ------------------------------------------------------------------

    def plan(
        self,
        container_id: str,
        spec: Mapping[str, Any],
        *,
        network: str | None,
        ports: Sequence[str | PortMapping] | None,
        dns: DnsConfig | Sequence[str] | None,
        hostname: str | None,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The spec and labels for a container with this network request.

        Without any of the four arguments the spec is returned untouched (the runtime's
        own loopback-only namespace, the SDK's default).
        """
        if network is None and not ports and dns is None and hostname is None:
            return dict(spec), {}
        mode = network or "none"
        if not isinstance(mode, str):
            raise InvalidArgument(f"network must be a str such as 'bridge', not {mode!r}")
        mappings = parse_ports(ports)
        resolver = DnsConfig.of(dns)
        config: NetworkConfigList | None = None
        if mode not in ("none", "host"):
            config = self._resolve(mode)
            if mappings and not config.supports("portMappings"):
                raise InvalidArgument(
                    f"network {mode!r} has no plugin with the portMappings capability (portmap); "
                    "ports= cannot be published on it"
                )
        elif mappings:
            raise InvalidArgument(
                f"ports= needs a bridge or CNI network; network={mode!r} has no ports to publish"
            )
        name = hostname or (host_hostname() if mode == "host" else container_id[:63])
        if (
            not isinstance(name, str)
            or not name
            or len(name) > 253
            or any(c.isspace() for c in name)
        ):
            raise InvalidArgument(f"hostname {name!r} must be a non-empty name without spaces")
        directory = self._dir(container_id)
        self._clear_leftover(container_id)
        directory.mkdir(parents=True)
        plan = {
            "container_id": container_id,
            "mode": mode,
            "conflist": config.to_json() if config is not None else None,
            "ports": [port.to_cni() for port in mappings],
            "hostname": name,
            "dns": resolver.to_json(),
        }
        _write_json(directory / "plan.json", plan)
        self._write_files(directory, plan, ips=())
        labels = {LABEL_NETWORK: mode, LABEL_HOSTNAME: name}
        if mappings:
            labels[LABEL_PORTS] = ",".join(str(port) for port in mappings)
        return self._spec_for(spec, directory, mode, name), labels

    def _clear_leftover(self, container_id: str) -> None:
        # Checked here, not only by the backend afterwards: a plan written for an id that
        # exists would attach a network to that other container's next task.
        if self._container_state(container_id) != "gone":
            raise AlreadyExists(f"container {container_id!r} exists already; pick another id")
        # A directory left by an earlier container of the same id whose caller died.
        if self._dir(container_id).exists():
            self.forget(container_id)

    def _write_files(self, directory: Path, plan: Mapping[str, Any], ips: Sequence[str]) -> None:
        mode = str(plan["mode"])
        dns = DnsConfig(**plan["dns"])
        base = None
        if mode == "host":
            with contextlib.suppress(OSError):
                base = Path("/etc/hosts").read_text(errors="replace")
        resolv = read_host_resolv_conf()
        if mode != "host":
            resolv = resolv.without_loopback()
        write_file(directory / "resolv.conf", resolv.with_custom(dns).render())
        write_file(directory / "hostname", f"{plan['hostname']}\n")
        write_file(directory / "hosts", hosts_file(str(plan["hostname"]), ips, base=base))

    @staticmethod
    def _spec_for(
        spec: Mapping[str, Any], directory: Path, mode: str, hostname: str
    ) -> dict[str, Any]:
        result = copy.deepcopy(dict(spec))
        linux = result.setdefault("linux", {})
        namespaces = [n for n in linux.get("namespaces") or () if n.get("type") != "network"]
        if mode == "none":
            namespaces.append({"type": "network"})
        elif mode != "host":
            namespaces.append({"type": "network", "path": str(directory / "netns")})
        linux["namespaces"] = namespaces
        if any(n.get("type") == "uts" for n in namespaces):
            result["hostname"] = hostname
        mounts = [
            m for m in result.get("mounts") or () if m.get("destination") not in _FILES.values()
        ]
        for name, destination in _FILES.items():
            mounts.append(
                {
                    "destination": destination,
                    "type": "bind",
                    "source": str(directory / name),
                    "options": ["rbind", "rprivate"],
                }
            )
        result["mounts"] = mounts
        return result

    # -- new_task / task delete ---------------------------------------------------------

    def _plan(self, container_id: str) -> dict[str, Any] | None:
        return _read_json(self._dir(container_id) / "plan.json")

    def _runtime(self, container_id: str, plan: Mapping[str, Any]) -> RuntimeConf:
        return RuntimeConf(
            container_id=self.cni_id(container_id),
            netns=str(self._dir(container_id) / "netns"),
            ifname=IFNAME,
            capabilities={"portMappings": list(plan["ports"])} if plan["ports"] else {},
        )

    def attach(self, container_id: str) -> NetworkStatus | None:
        """Connect the container's namespace before its task is created (no-op without a plan)."""
        plan = self._plan(container_id)
        if plan is None or plan["conflist"] is None:
            return None
        directory = self._dir(container_id)
        with self._locked(container_id):
            if (directory / "attached.json").exists() or is_netns_mount(directory / "netns"):
                self._detach_locked(container_id, plan)
            _write_json(
                directory / "attached.json",
                {"pid": os.getpid(), "start": _process_start(os.getpid())},
            )
            runtime = self._runtime(container_id, plan)
            config = NetworkConfigList.from_json(plan["conflist"])
            try:
                create_netns(Path(runtime.netns))
                result = add_network(config, runtime, self.plugin_dirs)
                _write_json(directory / "result.json", result.raw)
                self._write_files(directory, plan, result.ips)
            except BaseException:
                with contextlib.suppress(Exception):
                    self._detach_locked(container_id, plan)
                raise
        return self.status(container_id)

    def check(self, container_id: str) -> None:
        """Run CNI CHECK with the cached result: ``PluginFailed`` when the network no longer
        looks as ADD left it; ``FailedPrecondition`` when the container is not attached."""
        plan = self._plan(container_id)
        result = _read_json(self._dir(container_id) / "result.json")
        if plan is None or plan["conflist"] is None or result is None:
            raise FailedPrecondition(
                f"container {container_id!r} has no attached CNI network (create its task first)"
            )
        config = NetworkConfigList.from_json(plan["conflist"])
        with self._locked(container_id):
            check_network(config, self._runtime(container_id, plan), self.plugin_dirs, result)

    def detach(self, container_id: str) -> None:
        """Disconnect and unpin the namespace after the task is deleted (idempotent)."""
        plan = self._plan(container_id)
        if plan is None or plan["conflist"] is None:
            return
        with self._locked(container_id):
            self._detach_locked(container_id, plan)

    def _detach_locked(self, container_id: str, plan: Mapping[str, Any]) -> None:
        directory = self._dir(container_id)
        netns = directory / "netns"
        if not (directory / "attached.json").exists() and not is_netns_mount(netns):
            return
        result = _read_json(directory / "result.json")
        runtime = self._runtime(container_id, plan)
        if not is_netns_mount(netns):
            # The spec allows DEL without a namespace: plugins release what lives outside it.
            runtime = attrs.evolve(runtime, netns="")
        try:
            delete_network(
                NetworkConfigList.from_json(plan["conflist"]), runtime, self.plugin_dirs, result
            )
        finally:
            remove_netns(netns)
            (directory / "result.json").unlink(missing_ok=True)
            (directory / "attached.json").unlink(missing_ok=True)

    def forget(self, container_id: str) -> None:
        """Drop everything of a deleted container (detaching first when still attached)."""
        directory = self._dir(container_id)
        if not directory.exists():
            return
        try:
            self.detach(container_id)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    # -- reading ------------------------------------------------------------------------

    def status(self, container_id: str) -> NetworkStatus | None:
        """The container's network now; ``None`` for a container without a network plan."""
        plan = self._plan(container_id)
        if plan is None:
            return None
        directory = self._dir(container_id)
        result = _read_json(directory / "result.json")
        ips = CniResult.parse(result).ips if result is not None else ()
        attached = result is not None and is_netns_mount(directory / "netns")
        return NetworkStatus(
            network=str(plan["mode"]),
            ips=ips,
            ports=tuple(PortMapping.from_cni(p) for p in plan["ports"]),
            hostname=str(plan["hostname"]),
            netns=str(directory / "netns") if attached else None,
        )

    def container_ids(self) -> list[str]:
        """The containers this client keeps network state for."""
        try:
            return sorted(p.name for p in self.root.iterdir() if p.is_dir())
        except FileNotFoundError:
            return []

    def networks_in_use(self) -> set[str]:
        """Names of the CNI networks any owner's containers are planned on."""
        used: set[str] = set()
        for plan_file in self.root.parent.glob("*/*/plan.json"):
            plan = _read_json(plan_file)
            if plan is not None and plan.get("conflist") is not None:
                used.add(str(plan["mode"]))
        return used

    # -- after a crash ------------------------------------------------------------------

    def reap(self) -> list[str]:
        """Undo what a killed caller left: attachments of containers that no longer exist,
        or that have no task while the process that attached them is gone.

        Returns the ids cleaned up. Attachments another live process holds are skipped.
        """
        cleaned: list[str] = []
        for container_id in self.container_ids():
            state = self._container_state(container_id)
            if state == "task":
                continue
            directory = self._dir(container_id)
            with self._locked(container_id, wait=False) as locked:
                if not locked:
                    continue
                attached = _read_json(directory / "attached.json")
                if state == "gone":
                    plan = self._plan(container_id)
                    plan_age = time.time() - _mtime(directory / "plan.json")
                    if attached is None and plan_age < PLAN_GRACE:
                        continue  # planned by a live new_container that has not stored it yet
                    if plan is not None and plan["conflist"] is not None:
                        self._detach_locked(container_id, plan)
                    shutil.rmtree(directory, ignore_errors=True)
                    cleaned.append(container_id)
                    continue
                if attached is None:
                    continue
                pid = int(attached.get("pid", 0))
                if pid > 0 and _process_start(pid) == attached.get("start"):
                    continue  # its creator is alive and may be creating the task right now
                plan = self._plan(container_id)
                if plan is not None and plan["conflist"] is not None:
                    self._detach_locked(container_id, plan)
                    cleaned.append(container_id)
        return cleaned
