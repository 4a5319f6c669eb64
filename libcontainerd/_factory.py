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

from .client import AsyncClient, Client, EventCallback
from .config import ClientConfig
from .errors import InvalidArgument, Unimplemented
from .system import BackendDecision, decide_backend

__all__ = ["new_async_client", "new_client"]


def _config(
    decision: BackendDecision,
    *,
    address: str | None,
    namespace: str,
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
        local_only = {"root": root, "state": state, "runtime": runtime}
        misplaced = [name for name, value in local_only.items() if value is not None]
        if misplaced:
            raise InvalidArgument(
                f"{', '.join(misplaced)} only apply to the local backend, but {decision.reason}; "
                "configure the runtime in containerd instead, or pass backend='local'"
            )
    return ClientConfig(
        namespace=namespace,
        address=decision.address,
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
    namespace: str = "default",
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
    namespace: str = "default",
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
