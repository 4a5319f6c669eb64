"""The asyncio twins of :mod:`libcontainerd.shortcuts`, mixed into the async facades.

Each one runs the blocking shortcut on the async client's thread pool, so there is one
behaviour for both APIs. The facade classes supply ``_sync`` (the blocking object) and
``_run`` (the pool); the client facade also supplies ``_wrap_container``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

from libcontainerd.types.image import Image
from libcontainerd.types.status import ExitStatus

__all__ = [
    "AsyncClientShortcuts",
    "AsyncContainerShortcuts",
    "AsyncImageShortcuts",
    "AsyncTaskShortcuts",
]

T = TypeVar("T")


class AsyncTaskShortcuts:
    """``await task.stop()`` and ``async with task``."""

    async def stop(self, timeout: float = 10.0) -> ExitStatus:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit status."""
        facade: Any = self
        status: ExitStatus = await facade._run(facade._sync.stop, timeout)
        return status

    async def __aenter__(self: T) -> T:
        """``async with`` hands back this object; leaving cleans it up."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the process if it still runs, then delete it."""
        facade: Any = self
        await facade._run(facade._sync.__exit__, exc_type, exc, tb)


class AsyncContainerShortcuts:
    """``container.logs()`` as an async iterator and ``async with container``."""

    async def logs(self, *, follow: bool = False) -> AsyncIterator[bytes]:
        """The output kept by ``LogIO``, in chunks (see the blocking ``logs``)."""
        facade: Any = self
        chunks: Iterator[bytes] = await facade._run(facade._sync.logs, follow=follow)
        try:
            while True:
                chunk: bytes | None = await facade._run(next, chunks, None)
                if chunk is None:
                    return
                yield chunk
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    async def __aenter__(self: T) -> T:
        """``async with`` hands back this object; leaving cleans it up."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Force-delete the container's task, if any, then the container."""
        facade: Any = self
        await facade._run(facade._sync.__exit__, exc_type, exc, tb)


class AsyncImageShortcuts:
    """``await images.tag(ref, new_ref)``; the facade supplies ``_service`` and ``_run``."""

    async def tag(self, ref: str, new_ref: str) -> Image:
        """Give the image ``ref`` a second name ``new_ref``."""
        facade: Any = self
        image: Image = await facade._run(lambda: facade._service().tag(ref, new_ref))
        return image


class AsyncClientShortcuts:
    """``await client.run(...)``: see :meth:`libcontainerd.shortcuts.ClientShortcuts.run`."""

    _wrap_container: Callable[[Any], Any]
    """Turns a blocking container into the facade's async container (facade-supplied)."""

    async def run(
        self, image: str, args: Sequence[str] = (), *, detach: bool = False, **options: Any
    ) -> Any:
        """Run ``args`` in a new container from ``image`` (the keywords of the blocking
        ``run``): a ``RunResult``, or with ``detach=True`` the started async container."""
        facade: Any = self
        result = await facade._run(lambda: facade._sync.run(image, args, detach=detach, **options))
        if detach:
            return self._wrap_container(result)
        return result
