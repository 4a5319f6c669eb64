"""The rules both backends follow, written once: argument checks, terminal rules, the
event-callback pump, and the error kinds of failures both backends can meet.

``local`` and ``remote`` call these functions instead of keeping their own copies, so a
caller sees the same :mod:`libcontainerd.errors` class and the same guidance whichever
backend runs the container (``docs/errors.md`` lists the kinds). Nothing here does I/O of
its own; it only decides.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from libcontainerd.client import EventCallback
from libcontainerd.errors import AlreadyExists, Error, FailedPrecondition, InvalidArgument, NotFound
from libcontainerd.types.events import Event
from libcontainerd.types.stdio import Stdio, TerminalIO

__all__ = [
    "EventCallbackPump",
    "EventSource",
    "check_filters",
    "check_labels",
    "check_runtime_name",
    "check_signal",
    "check_terminal",
    "check_terminal_size",
    "container_exists",
    "container_not_found",
    "exec_exists",
    "no_terminal",
    "process_not_found",
    "runtime_failure",
    "runtime_missing",
    "runtime_refused",
    "task_exists",
    "task_not_found",
]

_log = logging.getLogger("libcontainerd.events")

# How containerd words a missing shim, or a shim's missing OCI runtime binary (a program
# missing inside the container reads 'exec: "/x": stat /x: no such file' instead).
_RUNTIME_MISSING = re.compile(
    r"failed to start shim|binary not installed|fork/exec [^:]*: no such file",
    re.IGNORECASE,
)
_MAX_SIGNAL = 64  # SIGRTMAX on Linux
_MAX_TERMINAL_SIDE = 65535


# ------------------------------------------------------------------ argument checks


def check_signal(signal: object) -> int:
    """``signal`` as an int, or ``InvalidArgument`` unless it is a Linux signal number."""
    if isinstance(signal, bool) or not isinstance(signal, int) or not 0 < signal <= _MAX_SIGNAL:
        raise InvalidArgument(
            f"signal must be an int from 1 to {_MAX_SIGNAL} (e.g. signal.SIGTERM), got {signal!r}"
        )
    return int(signal)


def check_terminal_size(width: object, height: object) -> None:
    """``InvalidArgument`` unless both sides are ints in 1..65535."""
    for name, value in (("width", width), ("height", height)):
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 0 < value <= _MAX_TERMINAL_SIDE
        ):
            raise InvalidArgument(
                f"terminal {name} must be an int from 1 to {_MAX_TERMINAL_SIDE}, got {value!r}"
            )


def check_labels(labels: object) -> dict[str, str]:
    """``labels`` as a plain dict, or ``InvalidArgument`` unless it maps non-empty str keys
    to str values."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise InvalidArgument(f"labels must be a dict of str to str, not {type(labels).__name__}")
    for key, value in labels.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise InvalidArgument(
                f"label {key!r}={value!r}: keys must be non-empty str and values str"
            )
    return dict(labels)


def check_filters(filters: object) -> list[str]:
    """``filters`` as a list of str (a single string is one filter), or ``InvalidArgument``."""
    if isinstance(filters, str):
        return [filters]
    if not isinstance(filters, (list, tuple)) or not all(isinstance(f, str) for f in filters):
        raise InvalidArgument(
            f"filters must be a list of str such as ['labels.\"app\"==web'], got {filters!r:.80}"
        )
    return list(filters)


def check_runtime_name(runtime: object) -> str | None:
    """``runtime`` (``None`` for the client's default), or ``InvalidArgument`` unless it is
    a non-empty str."""
    if runtime is not None and (not isinstance(runtime, str) or not runtime):
        raise InvalidArgument(
            f"runtime must be a non-empty str such as 'runc' (local) or "
            f"'io.containerd.runc.v2' (remote), got {runtime!r:.80}"
        )
    return runtime


# ------------------------------------------------------------------ terminal rules


def check_terminal(process: Mapping[str, Any], stdio: Stdio | None, what: str) -> None:
    """A terminal is asked for by the spec (``process.terminal``) and given by the stdio
    (``TerminalIO``) together or not at all; ``what`` names the process in the message."""
    wants = bool(process.get("terminal", False))
    has = isinstance(stdio, TerminalIO)
    if wants and not has:
        raise InvalidArgument(
            f"{what} asks for a terminal (process.terminal is true) but stdio is "
            f"{type(stdio).__name__}; pass stdio=TerminalIO() or drop oci.with_tty()"
        )
    if has and not wants:
        raise InvalidArgument(
            f"stdio is TerminalIO but {what} has process.terminal false; add oci.with_tty() "
            "to the spec (or set process['terminal'] = True)"
        )


def no_terminal(process_id: str) -> FailedPrecondition:
    """The error of ``resize()`` on a process that runs without a terminal."""
    return FailedPrecondition(
        f"process {process_id!r} has no terminal to resize; only a process created with "
        "oci.with_tty() and stdio=TerminalIO() has one"
    )


# ------------------------------------------------------------------ error kinds


def container_exists(
    container_id: str, namespace: str, cause: Error | None = None
) -> AlreadyExists:
    """The error of creating a container whose id is taken."""
    error = AlreadyExists(
        f"container {container_id!r} already exists in namespace {namespace!r}; "
        "load it with load_container() or pick another id"
    )
    error.__cause__ = cause
    return error


def task_exists(container_id: str, cause: Error | None = None) -> AlreadyExists:
    """The error of creating a second task for one container."""
    error = AlreadyExists(
        f"container {container_id!r} already has a task; use task() or attach_task(), "
        "or delete that task first"
    )
    error.__cause__ = cause
    return error


def exec_exists(exec_id: str, container_id: str, cause: Error | None = None) -> AlreadyExists:
    """The error of an ``exec`` whose process id is already used in the task."""
    error = AlreadyExists(
        f"exec id {exec_id!r} is already used in task {container_id!r}; delete that "
        "process or pick another id"
    )
    error.__cause__ = cause
    return error


def container_not_found(container_id: str, namespace: str, cause: Error | None = None) -> NotFound:
    """The error of naming a container that does not exist."""
    error = NotFound(
        f"container {container_id!r} not found in namespace {namespace!r}; list the "
        "containers with containers() or create it with new_container()"
    )
    error.__cause__ = cause
    return error


def task_not_found(container_id: str, cause: Error | None = None) -> NotFound:
    """The error of asking for the task of a container that has none."""
    error = NotFound(f"container {container_id!r} has no task; create one with new_task()")
    error.__cause__ = cause
    return error


def process_not_found(exec_id: str, container_id: str, cause: Error | None = None) -> NotFound:
    """The error of naming an exec'd process the task does not have."""
    error = NotFound(
        f"no process {exec_id!r} in task {container_id!r}; create it with exec() first "
        "(a deleted process is gone)"
    )
    error.__cause__ = cause
    return error


def runtime_missing(runtime: str, cause: Error | None = None) -> NotFound:
    """The error of a container whose OCI runtime (or its shim) is not installed."""
    error = NotFound(
        f"the OCI runtime {runtime!r} is not installed or not executable; install it "
        "or name an installed one (runtime=, or runtime_options={'binary_name': ...})"
        + (f": {cause}" if cause is not None else "")
    )
    error.__cause__ = cause
    return error


def runtime_refused(what: str, cause: Error) -> FailedPrecondition:
    """The error of an OCI runtime that refused a well-formed request (``what``), such as
    resources this host's kernel or cgroups cannot apply."""
    error = FailedPrecondition(
        f"the OCI runtime refused to {what}: {cause}; check the spec's linux.resources and "
        "what this host supports (cgroup controllers, minimum values), then retry"
    )
    error.__cause__ = cause
    return error


def runtime_failure(what: str, runtime: str, cause: Error) -> Error:
    """The typed error for a daemon's untyped report that the runtime failed to ``what``.

    containerd passes a runtime's failure on as an unknown error with the runtime's text;
    a missing runtime (shim or OCI runtime binary) becomes ``NotFound``, any other refusal
    ``FailedPrecondition``, as the local backend reports them.
    """
    text = str(cause)
    if _RUNTIME_MISSING.search(text):
        return runtime_missing(runtime or "(the container's runtime)", cause)
    return runtime_refused(what, cause)


# ------------------------------------------------------------------ event callbacks


class EventSource(Protocol):
    """A subscription both backends hand to :class:`EventCallbackPump`."""

    def __iter__(self) -> Any:
        """Yield events until closed."""
        ...

    def close(self) -> None:
        """End the subscription; a blocked iteration ends."""
        ...


class EventCallbackPump:
    """Delivers every event of ``source`` to ``callback`` from one background thread.

    A callback that raises does not end the subscription and is not silenced: the
    exception is logged (logger ``libcontainerd.events``) with the event it failed on,
    and the next event is delivered as usual. The rule is the same on both backends.
    """

    def __init__(self, source: EventSource, callback: EventCallback, *, name: str) -> None:
        if not callable(callback):
            raise InvalidArgument(f"on_event must be callable, got {callback!r}")
        self._source = source
        self._callback = callback
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        events: Iterable[Event] = self._source
        try:
            for event in events:
                self._deliver(event)
        except Exception:
            if not self._closed.is_set():
                _log.exception("the on_event subscription ended with an error")

    def _deliver(self, event: Event) -> None:
        try:
            self._callback(event)
        except Exception:
            _log.exception(
                "on_event callback raised on event %s (container %r, process %r): %r; "
                "the subscription continues",
                event.topic,
                event.container_id,
                event.process_id,
                event,
            )

    def close(self) -> None:
        """Stop the subscription and wait (briefly) for the thread to finish."""
        self._closed.set()
        self._source.close()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
