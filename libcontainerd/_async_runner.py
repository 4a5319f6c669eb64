"""The thread pool an async client runs its blocking calls on."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from libcontainerd.errors import FailedPrecondition

__all__ = ["MAX_THREADS", "Runner"]

P = ParamSpec("P")
T = TypeVar("T")

MAX_THREADS = 256
"""Pool size: every pending ``wait`` or event read holds a thread while it lasts."""


class Runner:
    """Runs blocking calls off the event loop on a pool that one async client owns."""

    def __init__(self, thread_name_prefix: str, max_threads: int = MAX_THREADS) -> None:
        self._pool = ThreadPoolExecutor(max_threads, thread_name_prefix=thread_name_prefix)

    async def __call__(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` on the pool (with the caller's context variables)."""
        context = contextvars.copy_context()

        def call() -> T:
            return context.run(fn, *args, **kwargs)

        try:
            future = asyncio.get_running_loop().run_in_executor(self._pool, call)
        except RuntimeError:
            # The executor refuses new work once shut down.
            raise FailedPrecondition(
                "the async client was closed; create a new client to go on"
            ) from None
        return await future

    def shutdown(self) -> None:
        """Stop taking calls; threads still running finish on their own."""
        self._pool.shutdown(wait=False, cancel_futures=True)
