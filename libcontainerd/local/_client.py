"""The local backend's client: containers, tasks and processes driven through an OCI runtime.

This is the one implementation; :mod:`libcontainerd.local._async` wraps it for asyncio.
Durable state lives on disk (see :mod:`libcontainerd.local._store`) and with the
per-container monitor (see :mod:`libcontainerd.local._monitor`), so every handle can be
rebuilt by a new client. The handles are in :mod:`libcontainerd.local._container` and
:mod:`libcontainerd.local._process`.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from libcontainerd._backend_rules import (
    EventCallbackPump,
    check_filters,
    container_exists,
)
from libcontainerd._closing import ClosesOnExit
from libcontainerd._new_container import ContainerRequest, NewContainerFront
from libcontainerd.client import Container
from libcontainerd.config import ClientConfig
from libcontainerd.errors import Error, InvalidArgument, NotFound
from libcontainerd.local._container import LocalContainer
from libcontainerd.local._events import EventLog, LocalEventStream
from libcontainerd.local._monitor_client import Zygote
from libcontainerd.local._monitor_protocol import EVENTS_MAX_BYTES
from libcontainerd.local._runtime import RuntimeDriver, default_runtime, validate_runtime_options
from libcontainerd.local._stdio import FifoIO
from libcontainerd.local._store import (
    ContainerStore,
    Layout,
    default_root,
    default_state,
    matches_filters,
)
from libcontainerd.network import Networks
from libcontainerd.oci import generate_spec, spec_with_image
from libcontainerd.shortcuts import ClientShortcuts
from libcontainerd.types.registry_options import check_registry_option
from libcontainerd.types.version import Version

if TYPE_CHECKING:
    from libcontainerd.local._images import LocalImageService

__all__ = ["LocalClient"]

DEFAULT_RUNTIME = default_runtime()
DEFAULT_TIMEOUT = 30.0
_KNOWN_OPTIONS: frozenset[str] = frozenset(
    {"events_max_bytes", "registry", "max_layer_size", "network"}
)
_MIN_EVENTS_BYTES = 1024


class LocalClient(ClosesOnExit, ClientShortcuts, NewContainerFront[LocalContainer]):
    """The local backend's client (implements ``Client``)."""

    backend: Final = "local"
    """Always ``"local"``."""

    def __init__(self, config: ClientConfig) -> None:
        unknown = sorted(set(config.options) - _KNOWN_OPTIONS)
        if unknown:
            raise InvalidArgument(
                f"unknown option(s) for the local backend: {', '.join(unknown)}; "
                "the local backend accepts root=, state=, runtime=, namespace=, timeout=, "
                "on_event=, events_max_bytes=, registry=, max_layer_size= and network="
            )
        # Image options: checked now, used when the image service is first needed.
        self._image_options: dict[str, Any] = {
            "registry_options": check_registry_option(config.options.get("registry")),
        }
        if "max_layer_size" in config.options:
            self._image_options["max_layer_size"] = config.options["max_layer_size"]
        events_max = config.options.get("events_max_bytes", EVENTS_MAX_BYTES)
        if (
            not isinstance(events_max, int)
            or isinstance(events_max, bool)
            or events_max < _MIN_EVENTS_BYTES
        ):
            raise InvalidArgument(
                f"events_max_bytes must be an int of at least {_MIN_EVENTS_BYTES} (the size "
                f"at which the events file is rotated), got {events_max!r}"
            )
        self.events_max_bytes = events_max
        self.timeout = config.timeout or DEFAULT_TIMEOUT
        self.runtime = config.runtime or DEFAULT_RUNTIME
        self.layout = Layout(
            config.root or default_root(), config.state or default_state(), config.namespace
        )
        self.store = ContainerStore(self.layout)
        self.events_log = EventLog(
            str(self.layout.events_file), self.layout.namespace, max_bytes=events_max
        )
        self._drivers: dict[tuple[str, str, str], RuntimeDriver] = {}
        self._lock = threading.Lock()
        self.driver_for(self.runtime)  # fail now when the runtime is missing
        self._images: LocalImageService | None = None
        self.zygote = Zygote()
        self._closed = False
        # The streams this client's handles opened, released (stdin left open) on close.
        self._streams: weakref.WeakSet[FifoIO] = weakref.WeakSet()
        self._callback_pump: EventCallbackPump | None = None
        self.networks = Networks.for_client(
            self,
            config.options.get("network"),
            owner=f"local:{self.layout.base_root}:{self.namespace}",
        )
        """CNI networks: create, list and remove them; containers join with ``network=``."""
        if config.on_event is not None:
            self._callback_pump = EventCallbackPump(
                LocalEventStream(str(self.layout.events_file)),
                config.on_event,
                name="libcontainerd-local-events",
            )

    def driver_for(
        self, runtime: str, runtime_options: Mapping[str, Any] | None = None
    ) -> RuntimeDriver:
        """The (cached) driver of ``runtime`` with ``runtime_options`` (see RUNTIME_OPTIONS).

        Without a ``root`` option the runtime's state lives under ``state``, keyed by the
        binary actually run, so two binaries never share a state directory.
        """
        options = validate_runtime_options(runtime_options)
        binary_name = options.get("binary_name")
        if "root" in options:
            state_root = Path(options["root"]) / self.layout.namespace
        else:
            state_root = self.layout.runtime_root(binary_name or runtime)
        key = (runtime, binary_name or "", str(state_root))
        with self._lock:
            driver = self._drivers.get(key)
            if driver is None:
                driver = RuntimeDriver(
                    runtime, state_root, timeout=self.timeout, binary_name=binary_name
                )
                self._drivers[key] = driver
            return driver

    @property
    def namespace(self) -> str:
        """The namespace every call acts in."""
        return self.layout.namespace

    @property
    def images(self) -> LocalImageService:
        """The image service: the coalesced image store under ``root``."""
        with self._lock:
            if self._images is None:
                # Imported on first use: the registry client is not needed to run containers.
                from libcontainerd.local._images import LocalImageService

                self._images = LocalImageService(
                    self.layout.base_root, self.namespace, **self._image_options
                )
            return self._images

    def version(self) -> Version:
        """The OCI runtime's version."""
        driver = self.driver_for(self.runtime)
        version, revision, full = driver.version()
        return Version(
            version=version,
            revision=revision,
            backend="local",
            runtime=driver.name,
            runtime_version=full,
        )

    def _create_container(self, request: ContainerRequest) -> LocalContainer:
        """Store the container's record (and prepare its image's root filesystem)."""
        container_id, spec, image = request.container_id, request.spec, request.image
        runtime_name = request.runtime or self.runtime
        options = validate_runtime_options(request.runtime_options)
        self.driver_for(runtime_name, options)
        if self.store.exists(container_id):
            raise container_exists(container_id, self.namespace)
        container_dir = self.layout.container_dir(container_id)
        if image is not None:
            rootfs, config = self.images.prepare_image_rootfs(image, container_dir)
        try:
            if image is not None:
                # The one rule of both backends: the image fills what the spec leaves at
                # its defaults (see libcontainerd.oci.image).
                base = spec or generate_spec(container_id=container_id, namespace=self.namespace)
                spec = spec_with_image(base, config, root_path=rootfs)
            assert spec is not None
            spec, labels = self.networks.plan(
                container_id,
                spec,
                request.labels,
                network=request.network,
                ports=request.ports,
                dns=request.dns,
                hostname=request.hostname,
            )
            self.store.create(
                container_id,
                spec,
                runtime=runtime_name,
                runtime_options=options,
                labels=labels or {},
                image=image or "",
                extensions=request.extensions or {},
            )
        except BaseException:
            if image is not None:
                with contextlib.suppress(Error, OSError):
                    self.images.release_image_rootfs(container_dir)
                with contextlib.suppress(OSError):
                    container_dir.rmdir()
            raise
        self.events_log.publish("/containers/create", container_id=container_id)
        return LocalContainer(self, container_id)

    def load_container(self, container_id: str) -> LocalContainer:
        """A handle on a stored container; ``NotFound`` when absent."""
        self.store.get(container_id)
        return LocalContainer(self, container_id)

    def containers(self, filters: Sequence[str] = ()) -> list[Container]:
        """Every container, optionally filtered (``id==x``, ``labels."k"==v``, ``runtime==``)."""
        filters = check_filters(filters)
        result: list[Container] = []
        for container_id in self.store.ids():
            try:
                record = self.store.get(container_id)
            except NotFound:
                continue

            def lookup(key: str, record: dict[str, Any] = record) -> str | None:
                if key == "id":
                    return str(record["id"])
                if key == "image":
                    return str(record.get("image", ""))
                if key in ("runtime", "runtime.name"):
                    return str(record["runtime"]["name"])
                if key.startswith("labels."):
                    value = (record.get("labels") or {}).get(key[len("labels.") :])
                    return None if value is None else str(value)
                return None

            if matches_filters(filters, lookup):
                result.append(LocalContainer(self, container_id))
        return result

    def events(self, filters: Sequence[str] = ()) -> LocalEventStream:
        """Events from now on (``topic==...``, ``container_id==...`` filters)."""
        return LocalEventStream(str(self.layout.events_file), check_filters(filters))

    def track_streams(self, streams: FifoIO) -> None:
        """Release ``streams`` when this client closes."""
        self._streams.add(streams)

    def close(self) -> None:
        """Stop the ``on_event`` pump and release every stream its handles opened.

        Containers keep running and a process's stdin stays open (as with containerd):
        a later client can ``attach_task()`` and write; only closing stdin is EOF.
        """
        self._closed = True
        for streams in list(self._streams):
            with contextlib.suppress(OSError):
                streams.release()
        self.zygote.close()
        if self._callback_pump is not None:
            self._callback_pump.close()
