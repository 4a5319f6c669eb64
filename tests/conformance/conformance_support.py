"""Helpers shared by the conformance tests: ids, the async driver, the test environment.

Kept out of ``conftest.py`` so test modules can import them by a unique module name.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from libcontainerd.config import ClientConfig
from libcontainerd.oci import generate_spec, with_rootfs

_counter = itertools.count()


def unique_id(prefix: str = "c") -> str:
    """A container/exec id no other test uses."""
    return f"{prefix}-{os.getpid()}-{next(_counter)}-{secrets.token_hex(3)}"


# ------------------------------------------------------------------ async driver


class _Loop:
    """An event loop on its own thread; ``run`` blocks until a coroutine finishes."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, awaitable: Awaitable[Any]) -> Any:
        async def wrapper() -> Any:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


class _DrivenStdin:
    def __init__(self, io: Any, loop: _Loop) -> None:
        self._io, self._loop = io, loop
        self.closed = False

    def write(self, data: bytes) -> int:
        self._loop.run(self._io.write(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True
        self._loop.run(self._io.close_stdin())


class _DrivenReader:
    def __init__(self, read: Callable[[int], Awaitable[bytes]], loop: _Loop) -> None:
        self._read, self._loop = read, loop

    def read(self, n: int = -1) -> bytes:
        return self._loop.run(self._read(n))  # type: ignore[no-any-return]

    def readline(self) -> bytes:
        line = b""
        while not line.endswith(b"\n"):
            chunk = self.read(1)
            if not chunk:
                break
            line += chunk
        return line

    def close(self) -> None:
        pass


class _DrivenIO:
    """A blocking ProcessIO view over an AsyncProcessIO."""

    def __init__(self, io: Any, loop: _Loop) -> None:
        self._io, self._loop = io, loop
        self.stdin = _DrivenStdin(io, loop)
        self.stdout = _DrivenReader(io.read_stdout, loop)
        self.stderr = _DrivenReader(io.read_stderr, loop)

    def close(self) -> None:
        self._loop.run(self._io.close())


class _DrivenEvents:
    def __init__(self, stream: Any, loop: _Loop) -> None:
        self._stream, self._loop = stream, loop

    def __iter__(self) -> _DrivenEvents:
        return self

    def __next__(self) -> Any:
        try:
            return self._loop.run(self._stream.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        self._loop.run(self._stream.aclose())

    def __enter__(self) -> _DrivenEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncDriver:
    """Blocking view of an async object: coroutine methods are run to completion."""

    def __init__(self, target: Any, loop: _Loop) -> None:
        self._target, self._loop = target, loop

    def _wrap(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self._wrap(v) for v in value]
        name = type(value).__name__
        if name.startswith("Async") and "ProcessIO" in name:
            return _DrivenIO(value, self._loop)
        if name.startswith("Async") and "EventStream" in name:
            return _DrivenEvents(value, self._loop)
        if name.startswith("Async"):
            return AsyncDriver(value, self._loop)
        if isinstance(value, AsyncIterator):
            return _DrivenEvents(value, self._loop)
        return value

    def __enter__(self) -> AsyncDriver:
        self._loop.run(self._target.__aenter__())
        return self

    def __exit__(self, *exc: Any) -> None:
        self._loop.run(self._target.__aexit__(*exc))

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return self._wrap(attribute)

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            if asyncio.iscoroutine(result):
                result = self._loop.run(result)
            return self._wrap(result)

        return call

    def __repr__(self) -> str:
        return f"<AsyncDriver {self._target!r}>"


class Backend:
    """How to build clients of one backend, and its per-container defaults."""

    def __init__(
        self,
        name: str,
        make_sync: Callable[[ClientConfig], Any],
        make_async: Callable[[ClientConfig], Any],
        config: Callable[[str], ClientConfig],
        runtime_options: dict[str, Any],
    ) -> None:
        self.name = name
        self.make_sync = make_sync
        self.make_async = make_async
        self.config = config
        self.runtime_options = runtime_options


class Env:
    """What a test body needs: the client, how to build containers, a second client."""

    def __init__(self, backend: Backend, flavour: str, rootfs: Path, namespace: str) -> None:
        self.backend = backend
        self.flavour = flavour
        self.rootfs = rootfs
        self.namespace = namespace
        self._loops: list[_Loop] = []
        self._clients: list[Any] = []

    def new_client(self, **config: Any) -> Any:
        """A client of the flavour under test (closed at teardown)."""
        cfg = self.backend.config(self.namespace, **config)  # type: ignore[call-arg]
        if self.flavour == "sync":
            client = self.backend.make_sync(cfg)
            self._clients.append(client.close)
            return client
        loop = _Loop()
        self._loops.append(loop)
        made = loop.run(_make_async(self.backend.make_async, cfg))
        driven = AsyncDriver(made, loop)
        self._clients.append(driven.close)
        return driven

    def spec(self, container_id: str, *opts: Any) -> dict[str, Any]:
        """A default spec on the shared busybox rootfs with ``opts`` applied."""
        return generate_spec(
            with_rootfs(self.rootfs), *opts, container_id=container_id, namespace=self.namespace
        )

    def container(
        self,
        client: Any,
        *opts: Any,
        container_id: str | None = None,
        runtime_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Create a container with a fresh id running ``opts``."""
        cid = container_id or unique_id()
        options = {**self.backend.runtime_options, **(runtime_options or {})}
        return client.new_container(
            cid, self.spec(cid, *opts), runtime_options=options or None, **kwargs
        )

    def close(self) -> None:
        for close in reversed(self._clients):
            with contextlib.suppress(Exception):
                close()
        for loop in self._loops:
            loop.close()


async def _make_async(factory: Callable[[ClientConfig], Any], cfg: ClientConfig) -> Any:
    return factory(cfg)
