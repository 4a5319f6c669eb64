"""Sans-I/O protocol flows and the two drivers (sync and asyncio) that run them.

Every registry operation is written once, as a generator that yields *operations*
(send a request, read a chunk of a body, sleep, call a blocking function, run
sub-flows in parallel) and receives their results. :func:`run_sync` performs the
operations with an :class:`httpx.Client` and threads; :func:`run_async` with an
:class:`httpx.AsyncClient` and asyncio. Errors raised while performing an operation
are thrown back into the generator at its ``yield``, so the flow itself decides what
to retry; cancellation arrives the same way and runs the flow's ``finally`` blocks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from typing import Any, TypeVar

import attrs
import httpx

from libcontainerd.errors import Canceled

__all__ = [
    "Call",
    "Close",
    "Flow",
    "Parallel",
    "Read",
    "Send",
    "Sleep",
    "run_async",
    "run_sync",
]

T = TypeVar("T")


@attrs.frozen
class Send:
    """Send ``request``; the result is an :class:`httpx.Response` whose body is unread."""

    request: httpx.Request


@attrs.frozen(eq=False)
class Read:
    """Read the next chunk of ``response``'s body; the result is ``b""`` at its end."""

    response: httpx.Response


@attrs.frozen(eq=False)
class Close:
    """Release ``response`` (its connection goes back to the pool or is dropped)."""

    response: httpx.Response


@attrs.frozen
class Sleep:
    """Wait ``seconds``."""

    seconds: float


@attrs.frozen(eq=False)
class Call:
    """Call a blocking function (a credential helper); async runs it in a worker thread."""

    function: Callable[..., Any]
    args: tuple[Any, ...] = ()


@attrs.frozen(eq=False)
class Parallel:
    """Run ``flows`` with at most ``limit`` at a time; the result is their results in order.

    When one fails the others are cancelled and the first failure is raised.
    """

    flows: Sequence[Generator[Any, Any, Any]]
    limit: int


Op = Send | Read | Close | Sleep | Call | Parallel
Flow = Generator[Op, Any, T]


class _SyncState:
    def __init__(self, client: httpx.Client, cancel: threading.Event) -> None:
        self.client = client
        self.cancel = cancel
        self.bodies: dict[int, Iterator[bytes]] = {}


def run_sync(client: httpx.Client, flow: Flow[T], cancel: threading.Event | None = None) -> T:
    """Drive ``flow`` to completion with ``client``; return its value or raise its error."""
    state = _SyncState(client, cancel or threading.Event())
    value: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                op = flow.throw(error) if error is not None else flow.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            value, error = None, None
            try:
                if state.cancel.is_set():
                    raise Canceled("the operation was cancelled because a sibling transfer failed")
                value = _perform_sync(state, op)
            except BaseException as caught:  # the flow decides; KeyboardInterrupt included
                error = caught
    finally:
        flow.close()
        for body in state.bodies.values():
            close = getattr(body, "close", None)
            if close is not None:
                close()


def _perform_sync(state: _SyncState, op: Op) -> Any:
    if isinstance(op, Send):
        return state.client.send(op.request, stream=True)
    if isinstance(op, Read):
        key = id(op.response)
        body = state.bodies.get(key)
        if body is None:
            body = state.bodies[key] = op.response.iter_bytes()
        try:
            return next(body)
        except StopIteration:
            return b""
    if isinstance(op, Close):
        state.bodies.pop(id(op.response), None)
        op.response.close()
        return None
    if isinstance(op, Sleep):
        # Wake early when a sibling failed so cancellation is prompt.
        state.cancel.wait(max(0.0, op.seconds))
        return None
    if isinstance(op, Call):
        return op.function(*op.args)
    return _parallel_sync(state, op)


def _parallel_sync(state: _SyncState, op: Parallel) -> list[Any]:
    if not op.flows:
        return []
    cancel = threading.Event()

    def watch() -> None:
        # Propagate an outer cancellation into the children.
        while not cancel.is_set():
            if state.cancel.wait(0.05):
                cancel.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, op.limit)) as pool:
            try:
                futures = [pool.submit(run_sync, state.client, flow, cancel) for flow in op.flows]
                first_error: BaseException | None = None
                for future in concurrent.futures.as_completed(futures):
                    failure = future.exception()
                    if failure is not None and first_error is None:
                        first_error = failure
                        cancel.set()
            except BaseException:
                # Interrupted while waiting (KeyboardInterrupt): stop the workers before
                # the pool joins them, so their finally blocks discard partial blobs.
                cancel.set()
                raise
            if first_error is not None:
                raise first_error
            return [future.result() for future in futures]
    finally:
        cancel.set()
        watcher.join()


class _AsyncState:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.bodies: dict[int, AsyncIterator[bytes]] = {}


async def run_async(client: httpx.AsyncClient, flow: Flow[T]) -> T:
    """Drive ``flow`` to completion with ``client`` under asyncio."""
    state = _AsyncState(client)
    value: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                op = flow.throw(error) if error is not None else flow.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            value, error = None, None
            try:
                value = await _perform_async(state, op)
            except BaseException as caught:  # CancelledError reaches the flow's finally blocks
                error = caught
    finally:
        flow.close()


async def _perform_async(state: _AsyncState, op: Op) -> Any:
    if isinstance(op, Send):
        return await state.client.send(op.request, stream=True)
    if isinstance(op, Read):
        key = id(op.response)
        body = state.bodies.get(key)
        if body is None:
            body = state.bodies[key] = op.response.aiter_bytes()
        try:
            return await body.__anext__()
        except StopAsyncIteration:
            return b""
    if isinstance(op, Close):
        state.bodies.pop(id(op.response), None)
        await op.response.aclose()
        return None
    if isinstance(op, Sleep):
        await asyncio.sleep(max(0.0, op.seconds))
        return None
    if isinstance(op, Call):
        return await asyncio.to_thread(op.function, *op.args)
    return await _parallel_async(state, op)


async def _parallel_async(state: _AsyncState, op: Parallel) -> list[Any]:
    if not op.flows:
        return []
    semaphore = asyncio.Semaphore(max(1, op.limit))

    async def one(flow: Flow[Any]) -> Any:
        async with semaphore:
            return await run_async(state.client, flow)

    tasks = [asyncio.ensure_future(one(flow)) for flow in op.flows]
    try:
        _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failed = [
            task
            for task in tasks
            if task.done() and not task.cancelled() and task.exception() is not None
        ]
        if failed:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            error = failed[0].exception()
            assert error is not None
            raise error
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
