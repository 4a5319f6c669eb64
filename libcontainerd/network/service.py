"""``client.networks``: the one networking entry point both backends hold.

A backend creates one :class:`Networks` in its constructor and calls four hooks:
:meth:`Networks.plan` in ``new_container``, :meth:`Networks.attach` before the task is
created, :meth:`Networks.detach` after the task is deleted and :meth:`Networks.forget`
after the container is deleted. Everything else is here, not in the backends.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from libcontainerd.errors import Error, NotFound
from libcontainerd.network.attachments import (
    LABEL_IPS,
    Attachments,
    ContainerState,
    NetworkStatus,
)
from libcontainerd.network.files import DnsConfig
from libcontainerd.network.networks import Network, NetworkStore
from libcontainerd.network.ports import PortMapping
from libcontainerd.network.settings import NetworkSettings

__all__ = ["Networks"]

_log = logging.getLogger("libcontainerd.network")


class _Container(Protocol):
    def task(self) -> Any: ...

    def set_labels(self, labels: Mapping[str, str]) -> dict[str, str]: ...


class _Client(Protocol):
    def load_container(self, container_id: str) -> Any: ...


class Networks:
    """Create, list and remove CNI networks, and run the container network hooks."""

    def __init__(self, client: _Client, settings: NetworkSettings, *, owner: str) -> None:
        self._client = client
        self.settings = settings
        self.store = NetworkStore(settings)
        self.attachments = Attachments(
            settings.state_dir,
            settings.plugin_dirs,
            owner=owner,
            container_state=self._container_state,
            resolve=self.store.config,
        )

    @classmethod
    def for_client(cls, client: _Client, option: Any, *, owner: str) -> Networks:
        """The networks of a new client (``option`` is its ``network=`` setting); cleans up
        what a killed caller left for containers that no longer exist."""
        networks = cls(client, NetworkSettings.of(option), owner=owner)
        if networks.attachments.container_ids():
            try:
                cleaned = networks.attachments.reap()
            except (Error, OSError) as error:  # e.g. the daemon is away; retry next time
                _log.warning("network clean-up after a killed caller failed: %s", error)
            else:
                if cleaned:
                    _log.info("released the networks of %d gone container(s)", len(cleaned))
        return networks

    def _container_state(self, container_id: str) -> ContainerState:
        try:
            container = self._client.load_container(container_id)
        except NotFound:
            return "gone"
        try:
            container.task()
        except NotFound:
            return "no-task"
        return "task"

    # -- the public face ----------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        subnet: str | None = None,
        gateway: str | None = None,
        bridge: str | None = None,
    ) -> Network:
        """Create a bridge network (see :meth:`NetworkStore.create`)."""
        return self.store.create(name, subnet=subnet, gateway=gateway, bridge=bridge)

    def list(self) -> list[Network]:
        """Every CNI network in the configuration directory."""
        return self.store.list()

    def get(self, name: str) -> Network:
        """One network by name (the default ``bridge`` is created on first use)."""
        return self.store.get(name)

    def remove(self, name: str) -> None:
        """Remove a network the SDK created; ``FailedPrecondition`` while containers use it."""
        self.store.remove(name, in_use=name in self.attachments.networks_in_use())

    def check(self, container_id: str) -> None:
        """Ask the plugins (CNI CHECK) whether the container's network is still as ADD left
        it; raises :class:`~libcontainerd.network.PluginFailed` when not."""
        self.attachments.check(container_id)

    def status(self, container_id: str) -> NetworkStatus | None:
        """A container's network now (addresses, ports, hostname); None without networking."""
        return self.attachments.status(container_id)

    # -- backend hooks ------------------------------------------------------------------

    def plan(
        self,
        container_id: str,
        spec: Mapping[str, Any],
        labels: Mapping[str, str] | None,
        *,
        network: str | None = None,
        ports: Sequence[str | PortMapping] | None = None,
        dns: DnsConfig | Sequence[str] | None = None,
        hostname: str | None = None,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Hook of ``new_container``: the spec and labels to store for this request."""
        new_spec, added = self.attachments.plan(
            container_id, spec, network=network, ports=ports, dns=dns, hostname=hostname
        )
        return new_spec, {**(labels or {}), **added}

    def attach(self, container: _Container, container_id: str) -> None:
        """Hook of ``new_task``, before the runtime creates the task."""
        status = self.attachments.attach(container_id)
        if status is not None and status.ips:
            container.set_labels({LABEL_IPS: ",".join(status.ips)})

    def detach(self, container_id: str) -> None:
        """Hook of task deletion, after the runtime deleted the task."""
        self.attachments.detach(container_id)

    def forget(self, container_id: str) -> None:
        """Hook of container deletion, after the record is gone."""
        with contextlib.suppress(FileNotFoundError):
            self.attachments.forget(container_id)
