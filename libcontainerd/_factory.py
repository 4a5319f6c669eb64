"""``new_client`` / ``new_async_client``: pick a backend at runtime and build its client.

A backend is a subpackage (``libcontainerd.remote``, ``libcontainerd.local``) that
exposes ``create_client(config)`` and ``create_async_client(config)``. It is
imported only when chosen, so a program that never talks to containerd never
loads the gRPC stubs, and the other way round.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from libcontainerd.address import default_namespace
from libcontainerd.client import AsyncClient, Client, EventCallback
from libcontainerd.config import ClientConfig
from libcontainerd.errors import InvalidArgument, Unimplemented
from libcontainerd.system import BackendDecision, decide_backend

__all__ = ["new_async_client", "new_client"]


def _config(
    decision: BackendDecision,
    *,
    address: str | None,
    namespace: str | None,
    root: Path | str | None,
    state: Path | str | None,
    runtime: str | None,
    timeout: float | None,
    on_event: EventCallback | None,
    experimental: bool,
    options: dict[str, Any],
) -> ClientConfig:
    if decision.backend == "local" and address is not None:
        raise InvalidArgument(
            f"address={address!r} only applies to the remote backend, but {decision.reason}; "
            "drop address= or pass backend='remote'"
        )
    if decision.backend == "remote":
        # A managed containerd (options["managed"]) keeps its own root and state there.
        local_only: dict[str, object] = {"root": root, "state": state, "runtime": runtime}
        if options.get("managed"):
            local_only = {"runtime": runtime}
        misplaced = [name for name, value in local_only.items() if value is not None]
        if misplaced:
            raise InvalidArgument(
                f"{', '.join(misplaced)} only apply to the local backend (or to a managed "
                f"containerd: managed=True takes root= and state=), but {decision.reason}; "
                "configure the runtime in containerd instead, or pass backend='local'"
            )
    return ClientConfig(
        namespace=default_namespace() if namespace is None else namespace,
        # A managed containerd listens where it is told, never at a shared default.
        address=address if options.get("managed") else decision.address,
        root=root,
        state=state,
        runtime=runtime,
        timeout=timeout,
        on_event=on_event,
        experimental=experimental,
        options=options,
    )


def _backend_factory(backend: str, function: str) -> Callable[[ClientConfig], object]:
    try:
        module = importlib.import_module(f"libcontainerd.{backend}")
    except ModuleNotFoundError as error:
        if error.name != f"libcontainerd.{backend}":
            raise
        module = None
    factory = getattr(module, function, None)
    if factory is None:
        raise Unimplemented(
            f"the {backend} backend is not implemented in this version of libcontainerd; "
            f"choose another backend (backend='local' or 'remote') or upgrade"
        )
    return cast(Callable[[ClientConfig], object], factory)


def new_client(
    backend: str | None = None,
    *,
    address: str | None = None,
    namespace: str | None = None,
    root: Path | str | None = None,
    state: Path | str | None = None,
    runtime: str | None = None,
    timeout: float | None = None,
    on_event: EventCallback | None = None,
    experimental: bool = False,
    **backend_options: Any,
) -> Client:
    """Return a blocking :class:`~libcontainerd.Client` for the backend chosen at runtime.

    See :mod:`libcontainerd.system` for the selection rules. Arguments that belong
    to the other backend are refused with ``InvalidArgument`` rather than ignored.
    ``namespace`` defaults to ``$CONTAINERD_NAMESPACE``, else ``"default"``; the remote
    backend dials ``address``, else ``$CONTAINERD_ADDRESS``, else containerd's default.

    Remote calls fail fast (``Unavailable`` within about a second) while containerd is
    unreachable; pass ``wait_ready=<seconds>`` to make every call wait for it, or call
    ``client.wait_ready(timeout)``. ``managed=True`` (remote) starts and supervises a
    private containerd keeping its data in ``root`` and ``state``
    (see :mod:`libcontainerd.remote.supervisor`).
    """
    decision = decide_backend(backend, address=address, experimental=experimental)
    config = _config(
        decision,
        address=address,
        namespace=namespace,
        root=root,
        state=state,
        runtime=runtime,
        timeout=timeout,
        on_event=on_event,
        experimental=experimental,
        options=backend_options,
    )
    return cast(Client, _backend_factory(decision.backend, "create_client")(config))


def new_async_client(
    backend: str | None = None,
    *,
    address: str | None = None,
    namespace: str | None = None,
    root: Path | str | None = None,
    state: Path | str | None = None,
    runtime: str | None = None,
    timeout: float | None = None,
    on_event: EventCallback | None = None,
    experimental: bool = False,
    **backend_options: Any,
) -> AsyncClient:
    """Return an asyncio :class:`~libcontainerd.AsyncClient`; same arguments as ``new_client``."""
    decision = decide_backend(backend, address=address, experimental=experimental)
    config = _config(
        decision,
        address=address,
        namespace=namespace,
        root=root,
        state=state,
        runtime=runtime,
        timeout=timeout,
        on_event=on_event,
        experimental=experimental,
        options=backend_options,
    )
    return cast(AsyncClient, _backend_factory(decision.backend, "create_async_client")(config))
