"""The daemonless backend: drives an OCI runtime CLI (runc, crun, or a compatible binary).

``create_client``/``create_async_client`` are called by :func:`libcontainerd.new_client`.

How it works:

* Records live under ``root`` (``containers/<namespace>/<id>/record.json``, written
  temp + fsync + rename under an ``flock`` per namespace); running state under ``state``
  (``tasks/<namespace>/<id>/``, ``runtime/<runtime>/<namespace>/`` as the runtime's
  ``--root``, ``events/<namespace>.jsonl``). Defaults: ``/var/lib/libcontainerd`` and
  ``/run/libcontainerd`` for root, the XDG data/runtime directories otherwise.
* Each task gets a monitor process (stdlib only, forked by a small per-client "zygote"
  so no interpreter starts on the hot path). It is a child subreaper in its own session:
  it runs ``runtime create``, owns the stdio (FIFOs, files, the pty master), reaps the
  init and every exec'd process and writes each exit durably (``exit.json``), so
  containers and their exit codes outlive the caller, even a SIGKILLed one.
* Events (task create/start/exit/oom/exec-added/exec-started/paused/resumed/delete/
  checkpointed, container create/update/delete) are lines appended to the namespace's
  events file, in order per container; ``events()`` and ``on_event=`` tail it.
* ``client.images`` is the coalesced image store (``_images``); ``new_container(image=)``
  prepares the container's root filesystem from it.

Known limits: the only extra backend option is ``events_max_bytes=`` (events file
rotation size, default 8 MiB; a subscriber more than one whole file behind misses
events); ``runtime_options`` accepts ``binary_name`` and ``root``; a SIGKILLed monitor
loses its processes' exit codes (reported as 255 with ``ExitStatus.error``); restoring
from a checkpoint is wired (``new_task(checkpoint_dir=)``) but untested here because
CRIU does not work on this machine.
"""

from __future__ import annotations

from libcontainerd._lazy_names import LazyNames

# typing itself costs milliseconds at import; mypy reads this flag as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from libcontainerd.config import ClientConfig
    from libcontainerd.local._async import AsyncLocalClient
    from libcontainerd.local._client import LocalClient
    from libcontainerd.local._container import LocalContainer
    from libcontainerd.local._process import LocalProcess, LocalTask

__all__ = [
    "AsyncLocalClient",
    "LocalClient",
    "LocalContainer",
    "LocalProcess",
    "LocalTask",
    "create_async_client",
    "create_client",
]

#: Where each class lives. Loaded on first use: the monitor imports modules of this
#: package with the standard library alone, so nothing may be imported here eagerly.
_LAZY = {
    "AsyncLocalClient": "libcontainerd.local._async",
    "LocalClient": "libcontainerd.local._client",
    "LocalContainer": "libcontainerd.local._container",
    "LocalProcess": "libcontainerd.local._process",
    "LocalTask": "libcontainerd.local._process",
}


_NAMES = LazyNames(__name__, _LAZY, __all__)


def __getattr__(name: str) -> object:
    """Load an exported class's module on first use."""
    return _NAMES.load(name)


def __dir__() -> list[str]:
    """The package's names, the ones not loaded yet included."""
    return _NAMES.names()


def create_client(config: ClientConfig) -> LocalClient:
    """A blocking local client for ``config``."""
    from libcontainerd.local._client import LocalClient

    return LocalClient(config)


def create_async_client(config: ClientConfig) -> AsyncLocalClient:
    """An asyncio local client for ``config``."""
    from libcontainerd.local._async import AsyncLocalClient
    from libcontainerd.local._client import LocalClient

    return AsyncLocalClient(LocalClient(config))
