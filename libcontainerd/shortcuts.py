"""The shortcuts people expect, written once above both backends.

``client.run(image, args)`` (create, start, wait, collect output, remove),
``task.stop(timeout=10)`` (TERM, then KILL), containers and tasks as context managers
that clean up, ``images.tag(ref, new_ref)`` and ``container.logs(follow=...)`` for the
:class:`~libcontainerd.types.stdio.LogIO` stdio mode.

Each backend's handle classes inherit the mixins below; a mixin only calls the public
operations of :mod:`libcontainerd.client` (plus the one documented hook it names), so the
behaviour is the same on every backend. The asyncio twins are in
:mod:`libcontainerd.async_shortcuts`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Protocol, TypeVar, overload

import attrs

from libcontainerd.errors import (
    DeadlineExceeded,
    Error,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from libcontainerd.oci import (
    SpecOpt,
    generate_spec,
    with_cpu_quota,
    with_cwd,
    with_env,
    with_memory_limit,
    with_mounts,
    with_process_args,
    with_tty,
    with_user,
)
from libcontainerd.types.image import Image
from libcontainerd.types.status import ExitStatus, Status
from libcontainerd.types.stdio import FileIO, LogIO, PipedIO, Stdio

__all__ = [
    "KILL_GRACE",
    "LOG_POLL",
    "ClientShortcuts",
    "ContainerShortcuts",
    "ImageShortcuts",
    "RunResult",
    "SupportsRun",
    "TaskShortcuts",
    "resolve_log_stdio",
    "run_spec",
]

KILL_GRACE = 10.0
"""Seconds ``stop`` waits after SIGKILL before it gives up with ``DeadlineExceeded``."""

LOG_POLL = 0.1
"""Seconds between looks at a followed log file that has no new output."""

_ALIVE = (Status.CREATED, Status.RUNNING, Status.PAUSED, Status.PAUSING)
_CPU_PERIOD = 100_000


@attrs.frozen
class RunResult:
    """What ``client.run`` returns for a command it waited for."""

    exit_code: int
    """The command's exit code (128 + n when signal n ended it)."""
    stdout: bytes
    """Everything the command wrote to stdout."""
    stderr: bytes
    """Everything the command wrote to stderr."""

    @property
    def success(self) -> bool:
        """True when the command exited with code 0."""
        return self.exit_code == 0


def resolve_log_stdio(stdio: Stdio | None, log_file: Path) -> Stdio | None:
    """``stdio`` with :class:`LogIO` turned into the file request a backend understands.

    Backends call this first thing in ``new_task``/``exec``; every other request is
    returned unchanged.
    """
    if not isinstance(stdio, LogIO):
        return stdio
    log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return FileIO(log_file)


def run_spec(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | Sequence[str] | None = None,
    workdir: str | None = None,
    user: str | int | None = None,
    tty: bool = False,
    memory: int | None = None,
    cpus: float | None = None,
    mounts: Sequence[Mapping[str, Any]] = (),
    spec_options: Sequence[SpecOpt] = (),
) -> dict[str, Any]:
    """The OCI spec ``run`` uses: the default spec, ``args`` and the options given.

    ``memory`` is in bytes; ``cpus`` a number of CPUs (``1.5``). ``spec_options`` are
    applied last, so they win.
    """
    if not args:
        raise InvalidArgument("run needs the command to run (args), e.g. ['echo', 'hi']")
    options: list[SpecOpt] = [with_process_args(*args)]
    if env:
        options.append(with_env(env))
    if workdir:
        options.append(with_cwd(workdir))
    if user is not None and user != "":
        options.append(with_user(user))
    if tty:
        options.append(with_tty())
    if memory is not None:
        options.append(with_memory_limit(memory))
    if cpus is not None:
        if not cpus > 0:
            raise InvalidArgument(f"cpus {cpus!r} must be a positive number such as 0.5 or 2")
        options.append(with_cpu_quota(max(int(cpus * _CPU_PERIOD), 1000), _CPU_PERIOD))
    if mounts:
        options.append(with_mounts(mounts))
    options.extend(spec_options)
    return generate_spec(*options)


# --------------------------------------------------------------------- task / process


class _TaskLike(Protocol):
    @property
    def id(self) -> str: ...

    def kill(self, signal: int, *, all: bool = False) -> None: ...

    def wait(self, timeout: float | None = None) -> ExitStatus: ...

    def status(self) -> Status: ...

    def delete(self) -> ExitStatus: ...


T = TypeVar("T")


class TaskShortcuts:
    """``stop`` and ``with`` for a task (or any process); mixed into backend task classes."""

    def stop(self: _TaskLike, timeout: float = 10.0) -> ExitStatus:
        """Send SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; return the exit status.

        A process that already exited just has its status returned. Raises
        ``DeadlineExceeded`` only when even SIGKILL did not end it within ``KILL_GRACE``.
        """
        if timeout < 0:
            raise InvalidArgument(f"stop timeout {timeout!r} must be zero or more seconds")
        if self.status() in _ALIVE:
            with contextlib.suppress(NotFound, FailedPrecondition):
                self.kill(signal.SIGTERM)
            with contextlib.suppress(DeadlineExceeded):
                return self.wait(timeout) if timeout > 0 else self.wait(0.001)
            with contextlib.suppress(NotFound, FailedPrecondition):
                self.kill(signal.SIGKILL, all=True)
            return self.wait(KILL_GRACE)
        return self.wait(KILL_GRACE)

    def __enter__(self: T) -> T:
        """``with process:`` hands back the process; leaving stops and deletes it."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the process if it still runs, then delete it.

        A cleanup error is raised only when the ``with`` body itself raised nothing.
        """
        task: Any = self
        try:
            with contextlib.suppress(NotFound):
                task.stop()
            with contextlib.suppress(NotFound):
                task.delete()
        except Error:
            if exc is None:
                raise


# -------------------------------------------------------------------------- container


class _TaskOfContainer(Protocol):
    def status(self) -> Status: ...

    def force_delete(self) -> ExitStatus: ...


class _ContainerLike(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def log_file(self) -> Path: ...

    def task(self) -> Any: ...

    def delete(self, *, cleanup_snapshot: bool = True) -> None: ...


class ContainerShortcuts:
    """``logs`` and ``with`` for a container; mixed into backend container classes.

    The backend supplies one hook, the ``log_file`` property: where :class:`LogIO`
    output of this container is kept.
    """

    def logs(self: _ContainerLike, *, follow: bool = False) -> Iterator[bytes]:
        """The output kept by :class:`LogIO`, in chunks as written.

        Without ``follow`` the iterator ends at the current end of the file; with it,
        it keeps reading until the container's task has exited (or was deleted) and its
        last output is read. ``FailedPrecondition`` when the container keeps no log.
        """
        path = self.log_file
        try:
            stream: IO[bytes] = path.open("rb")
        except FileNotFoundError:
            raise FailedPrecondition(
                f"container {self.id!r} keeps no log; create its task with stdio=LogIO() "
                "(client.run(..., detach=True) does)"
            ) from None
        return _read_log(stream, self if follow else None)

    def __enter__(self: T) -> T:
        """``with container:`` hands back the container; leaving removes it and its task."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Force-delete the container's task, if any, then the container.

        A cleanup error is raised only when the ``with`` body itself raised nothing.
        """
        container: Any = self
        try:
            with contextlib.suppress(NotFound):
                container.task().force_delete()
            with contextlib.suppress(NotFound):
                container.delete()
        except Error:
            if exc is None:
                raise


def _task_done(container: _ContainerLike) -> bool:
    try:
        task: _TaskOfContainer = container.task()
        return task.status() not in _ALIVE
    except NotFound:
        return True


def _read_log(stream: IO[bytes], follow: _ContainerLike | None) -> Iterator[bytes]:
    with stream:
        while True:
            chunk = stream.read(65536)
            if chunk:
                yield chunk
                continue
            if follow is None:
                return
            if _task_done(follow):
                # The backend may still be copying the last bytes just after the exit.
                time.sleep(LOG_POLL)
                rest = stream.read()
                if rest:
                    yield rest
                return
            time.sleep(LOG_POLL)


# ------------------------------------------------------------------------------ images


class _ImageStore(Protocol):
    def get(self, ref: str) -> Image: ...

    def put_record(
        self, name: str, target: Any, labels: Mapping[str, str] | None = None
    ) -> object: ...


class ImageShortcuts:
    """``tag`` for an image service; the backend supplies ``put_record(name, target, labels)``."""

    def tag(self: _ImageStore, ref: str, new_ref: str) -> Image:
        """Give the image ``ref`` a second name ``new_ref`` (replacing what that name held)."""
        from libcontainerd.types.reference import Reference

        image = self.get(ref)
        try:
            name = str(Reference.parse(new_ref))
        except InvalidArgument:
            name = new_ref  # containerd allows any image name; keep it as given
        self.put_record(name, image.target, dict(image.labels))
        return self.get(name)


# ------------------------------------------------------------------------------ client


C = TypeVar("C", covariant=True)


class SupportsRun(Protocol[C]):
    """The ``run`` shortcut of a client; ``C`` is the client's container type."""

    @overload
    def run(
        self,
        image: str,
        args: Sequence[str] = (),
        *,
        detach: Literal[False] = False,
        name: str | None = None,
        env: Mapping[str, str] | Sequence[str] | None = None,
        workdir: str | None = None,
        user: str | int | None = None,
        memory: int | None = None,
        cpus: float | None = None,
        mounts: Sequence[Mapping[str, Any]] = (),
        labels: Mapping[str, str] | None = None,
        runtime_options: Mapping[str, Any] | None = None,
        spec_options: Sequence[SpecOpt] = (),
        input: bytes | None = None,
        timeout: float | None = None,
        remove: bool = True,
    ) -> RunResult:
        """Run a command and wait: see :meth:`ClientShortcuts.run`."""

    @overload
    def run(
        self,
        image: str,
        args: Sequence[str] = (),
        *,
        detach: Literal[True],
        name: str | None = None,
        env: Mapping[str, str] | Sequence[str] | None = None,
        workdir: str | None = None,
        user: str | int | None = None,
        memory: int | None = None,
        cpus: float | None = None,
        mounts: Sequence[Mapping[str, Any]] = (),
        labels: Mapping[str, str] | None = None,
        runtime_options: Mapping[str, Any] | None = None,
        spec_options: Sequence[SpecOpt] = (),
        input: bytes | None = None,
        timeout: float | None = None,
        remove: bool = True,
    ) -> C:
        """Start a command in the background: see :meth:`ClientShortcuts.run`."""


class ClientShortcuts:
    """``run`` for a client; mixed into backend client classes."""

    def run(
        self,
        image: str,
        args: Sequence[str] = (),
        *,
        detach: bool = False,
        name: str | None = None,
        env: Mapping[str, str] | Sequence[str] | None = None,
        workdir: str | None = None,
        user: str | int | None = None,
        memory: int | None = None,
        cpus: float | None = None,
        mounts: Sequence[Mapping[str, Any]] = (),
        labels: Mapping[str, str] | None = None,
        runtime_options: Mapping[str, Any] | None = None,
        spec_options: Sequence[SpecOpt] = (),
        input: bytes | None = None,
        timeout: float | None = None,
        remove: bool = True,
    ) -> Any:
        """Run ``args`` in a new container from ``image``; by default wait and clean up.

        Creates the container (id ``name`` or a random ``run-...``), starts its task,
        feeds it ``input`` (else an empty stdin), waits (up to ``timeout`` seconds, then
        kills it and raises ``DeadlineExceeded``), collects stdout and stderr, deletes the
        task and, unless ``remove=False``, the container. Returns a :class:`RunResult`.

        ``args`` replace the image's command; with no ``args`` the image's own command
        and spec are used (then the options that edit the spec cannot be given).

        With ``detach=True`` it returns the started container at once; its output goes
        to its log (:class:`LogIO`, read with ``container.logs()``), and the caller
        removes it (``with container:`` does). ``labels`` and ``runtime_options`` go
        to ``new_container``.
        """
        client: Any = self
        container_id = name or f"run-{uuid.uuid4().hex[:12]}"
        spec: dict[str, Any] | None = None
        if args:
            spec = run_spec(
                args,
                env=env,
                workdir=workdir,
                user=user,
                memory=memory,
                cpus=cpus,
                mounts=mounts,
                spec_options=spec_options,
            )
        elif env or workdir or user is not None or memory or cpus or mounts or spec_options:
            raise InvalidArgument(
                "run without args uses the image's own command and spec; pass args to "
                "change env, workdir, user, limits, mounts or spec options"
            )
        container = client.new_container(
            container_id, spec, image=image, labels=labels, runtime_options=runtime_options
        )
        try:
            if detach:
                if input is not None:
                    raise InvalidArgument("a detached run takes no input; drop input=")
                task = container.new_task(stdio=LogIO())
                try:
                    task.start()
                except BaseException:
                    with contextlib.suppress(Error):
                        task.delete()
                    raise
                return container
            return _run_attached(container, input, timeout)
        except BaseException:
            with contextlib.suppress(Error):
                container.delete()
            raise
        finally:
            if remove and not detach:
                with contextlib.suppress(NotFound):
                    container.delete()


def _drain(stream: IO[bytes] | None, into: list[bytes]) -> threading.Thread | None:
    if stream is None:
        return None

    def pump() -> None:
        with contextlib.suppress(OSError, ValueError):
            while True:
                chunk = stream.read(65536)
                if not chunk:
                    return
                into.append(chunk)

    thread = threading.Thread(target=pump, name="libcontainerd-run-output", daemon=True)
    thread.start()
    return thread


def _run_attached(container: Any, input: bytes | None, timeout: float | None) -> RunResult:
    task = container.new_task(stdio=PipedIO(stdin=input is not None))
    out: list[bytes] = []
    err: list[bytes] = []
    try:
        io = task.io
        readers = [_drain(io.stdout, out), _drain(io.stderr, err)] if io is not None else []
        task.start()
        if input is not None and io is not None and io.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                io.stdin.write(input)
                io.stdin.flush()
            task.close_stdin()
        try:
            status = task.wait(timeout)
        except DeadlineExceeded:
            with contextlib.suppress(Error):
                task.kill(signal.SIGKILL, all=True)
            raise DeadlineExceeded(
                f"the command in container {container.id!r} did not exit within {timeout} s; "
                "it was killed (raise timeout= for longer commands)"
            ) from None
        for reader in readers:
            if reader is not None:
                reader.join(KILL_GRACE)
    finally:
        with contextlib.suppress(Error):
            task.force_delete()
        if task.io is not None:
            task.io.close()
    return RunResult(status.code, b"".join(out), b"".join(err))
