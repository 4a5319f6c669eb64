"""The remote backend's client: one containerd namespace over containerd's gRPC API.

The handles it returns live in :mod:`libcontainerd.remote._container` and
:mod:`libcontainerd.remote._process`; :mod:`libcontainerd.remote._async` wraps these same
objects for asyncio, so the behaviour lives here only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from google.protobuf import empty_pb2

import libcontainerd.remote._convert as _convert
from libcontainerd._backend_rules import (
    EventCallbackPump,
    check_filters,
    container_exists,
    container_not_found,
)
from libcontainerd._closing import ClosesOnExit
from libcontainerd._health import HealthStatus, check_health
from libcontainerd._new_container import ContainerRequest, NewContainerFront
from libcontainerd.client import Container
from libcontainerd.config import ClientConfig
from libcontainerd.errors import AlreadyExists, InvalidArgument, NotFound
from libcontainerd.network import Networks
from libcontainerd.remote._container import RemoteContainer
from libcontainerd.remote._events import RemoteEventStream, subscribe
from libcontainerd.remote._extras import Introspection, Leases, Namespaces
from libcontainerd.remote._pb.containerd.services.containers.v1 import containers_pb2
from libcontainerd.remote._process import (
    DEFAULT_RUNTIME,
    RemoteProcess,
    RemoteTask,
    Session,
    validate_id,
)
from libcontainerd.remote._transport import REGISTRY_OPTION_KEYS, Transport
from libcontainerd.shortcuts import ClientShortcuts
from libcontainerd.types.version import Version

if TYPE_CHECKING:
    from libcontainerd.remote._images import RemoteImages
    from libcontainerd.remote.supervisor import Supervisor

__all__ = ["RemoteClient", "RemoteContainer", "RemoteProcess", "RemoteTask"]


def _check_registry_options(options: Mapping[str, Any]) -> None:
    """Build (and drop) one registry client so bad values fail at ``new_client``."""
    from libcontainerd.distribution import RegistryClient

    try:
        RegistryClient(**options).close()
    except TypeError as error:
        raise InvalidArgument(f"option registry: {error}") from None


class RemoteClient(ClosesOnExit, ClientShortcuts, NewContainerFront[RemoteContainer]):
    """A blocking client for one containerd namespace.

    Backend options (``config.options``, the extra keyword arguments of ``new_client``):
    ``tls_ca``, ``tls_cert``, ``tls_key`` (paths or PEM bytes) secure a ``tcp://``
    connection; ``registry`` is a dict handed to every registry client that pulls and
    pushes, e.g. ``registry={"ca_file": "/etc/ca.pem", "insecure_hosts": ["127.0.0.1:5000"],
    "docker_config": False, "credentials": Credentials(...)}`` (keys:
    ``ca_file``, ``client_cert``, ``credentials``, ``docker_config``, ``insecure_hosts``,
    ``max_retries``, ``retry``, ``timeout``, as :class:`~libcontainerd.distribution.RegistryClient`
    takes them).
    """

    backend: Final = "remote"
    """Always ``"remote"``."""

    def __init__(self, config: ClientConfig) -> None:
        self._config = config
        registry = config.options.get("registry")
        # Values first, before a channel exists; Transport reports wrong types and keys.
        if isinstance(registry, Mapping) and registry and set(registry) <= REGISTRY_OPTION_KEYS:
            _check_registry_options(registry)
        self.supervisor: Supervisor | None = None
        """The private containerd this client started (``managed=``), else None."""
        address = config.address
        managed = config.options.get("managed")
        if managed:
            from libcontainerd.remote.supervisor import start_managed  # only for managed=

            self.supervisor = start_managed(config.root, config.state, address, managed)
            address = self.supervisor.address
        try:
            self.transport = Transport(
                address,
                config.namespace,
                timeout=config.timeout,
                options=config.options,
            )
        except BaseException:
            if self.supervisor is not None:
                self.supervisor.stop()
            raise
        self._registry_options: dict[str, Any] = dict(registry or {})
        self._session = Session(self.transport)
        self.namespaces = Namespaces(self.transport)
        """Create, list, label and delete containerd namespaces."""
        self.introspection = Introspection(self.transport)
        """containerd's plugins and server identity."""
        self.leases = Leases(self.transport)
        """Leases that protect content and snapshots from garbage collection."""
        self._subscription: EventCallbackPump | None = None
        if config.on_event is not None:
            # The resilient stream reconstructs exits missed across a containerd restart,
            # so the callback sees them too.
            self._subscription = EventCallbackPump(
                subscribe(self.transport, ()), config.on_event, name="libcontainerd-events"
            )
        self.networks = Networks.for_client(
            self, config.options.get("network"), owner=f"remote:{self.address}:{self.namespace}"
        )
        """CNI networks: create, list and remove them; containers join with ``network=``."""
        self._session.networks = self.networks

    @property
    def namespace(self) -> str:
        """The namespace every call acts in."""
        return self.transport.namespace

    @property
    def address(self) -> str:
        """The daemon address this client talks to."""
        return self.transport.address

    @property
    def images(self) -> RemoteImages:
        """The image service: pull, push, list, get, remove, import and export images."""
        from libcontainerd.remote._images import RemoteImages

        return RemoteImages(self.transport, registry_options=self._registry_options)

    # -- operations -----------------------------------------------------------------------

    def healthy(self, timeout: float = 2.0) -> bool:
        """Whether containerd answers gRPC health checks as SERVING within ``timeout``."""
        if not timeout > 0:
            raise InvalidArgument(f"timeout {timeout!r} must be a positive number of seconds")
        return check_health(self.transport.channel, timeout) is HealthStatus.SERVING

    def wait_ready(self, timeout: float) -> None:
        """Block until containerd answers; ``Unavailable`` when it has not within ``timeout`` s.

        Calls fail fast while containerd is unreachable; use this (or ``wait_ready=`` on
        the client or a call) where a program should wait for containerd to come up.
        """
        self.transport.wait_ready(timeout)

    def version(self, *, wait_ready: float | None = None) -> Version:
        """containerd's version and revision."""
        response = self.transport.call(
            self.transport.version.Version,
            empty_pb2.Empty(),
            idempotent=True,
            wait_ready=wait_ready,
        )
        return Version(
            version=response.version,
            revision=response.revision,
            backend="remote",
            runtime=DEFAULT_RUNTIME,
        )

    def _create_container(self, request: ContainerRequest) -> RemoteContainer:
        """Create the container record (and its image's snapshot under a lease)."""
        container_id, labels = request.container_id, request.labels
        spec: Mapping[str, Any] | None = request.spec
        runtime, runtime_options = request.runtime, request.runtime_options
        image, extensions = request.image, request.extensions
        prepared = None
        if image is not None:
            from libcontainerd.remote._images import prepare_image_rootfs

            prepared = prepare_image_rootfs(self.transport, container_id, image, spec)
            spec = prepared.spec
        try:
            spec, labels = self.networks.plan(
                container_id,
                spec or {},
                labels,
                network=request.network,
                ports=request.ports,
                dns=request.dns,
                hostname=request.hostname,
            )
            record = containers_pb2.Container(
                id=container_id,
                labels=dict(labels or {}),
                spec=_convert.json_any(_convert.SPEC_TYPE, dict(spec or {})),
                runtime=containers_pb2.Container.Runtime(name=runtime or DEFAULT_RUNTIME),
            )
            if prepared is not None:
                record.image = prepared.image_name
                record.snapshotter = prepared.snapshotter
                record.snapshot_key = prepared.key
            if runtime_options:
                record.runtime.options.CopyFrom(_convert.runtime_options_any(runtime_options))
            if extensions:
                for name, value in _convert.encode_extensions(extensions).items():
                    record.extensions[name].CopyFrom(value)
            created = self.transport.call(
                self.transport.containers.Create,
                containers_pb2.CreateContainerRequest(container=record),
            )
        except BaseException as error:
            if prepared is not None:
                prepared.discard()
            if isinstance(error, AlreadyExists):
                raise container_exists(container_id, self.namespace, error) from error
            raise
        if prepared is not None:
            prepared.release()
        return RemoteContainer(self._session, container_id, created.container)

    def load_container(
        self, container_id: str, *, wait_ready: float | None = None
    ) -> RemoteContainer:
        """A handle on an existing container; ``NotFound`` when absent."""
        container = RemoteContainer(self._session, validate_id(container_id, "container id"))
        try:
            container.refresh(wait_ready=wait_ready)
        except NotFound as error:
            raise container_not_found(container.id, self.namespace, error) from error
        return container

    def containers(
        self, filters: Sequence[str] = (), *, wait_ready: float | None = None
    ) -> list[Container]:
        """Every container in the namespace, optionally filtered (containerd filter syntax)."""
        filters = check_filters(filters)
        response = self.transport.call(
            self.transport.containers.List,
            containers_pb2.ListContainersRequest(filters=list(filters)),
            idempotent=True,
            wait_ready=wait_ready,
        )
        return [RemoteContainer(self._session, record.id, record) for record in response.containers]

    def events(self, filters: Sequence[str] = ()) -> RemoteEventStream:
        """Subscribe to this namespace's events from now on."""
        return subscribe(self.transport, check_filters(filters))

    def close(self) -> None:
        """Stop the event callback, close every stream and the connection.

        FIFOs of processes that still exist stay on disk so ``attach_task`` can find them.
        """
        if not self._session.close():
            return
        if self._subscription is not None:
            self._subscription.close()
        self.transport.close()
        if self.supervisor is not None:
            self.supervisor.stop()
