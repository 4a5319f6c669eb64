"""Fixtures for the conformance suite: one set of test bodies for every backend and flavour.

``client`` is parametrized by backend x flavour. The async flavour hands the test a
:class:`AsyncDriver`, a blocking view that runs each call of the *async* client on a
private event loop, so the same test body exercises ``AsyncClient`` too.

Adding a backend is one entry in :data:`BACKENDS` (plus its factory in
:func:`_backend_settings`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conformance_support import Backend, Env

from libcontainerd.config import ClientConfig
from libcontainerd.errors import Error

BACKENDS = ["remote", "remote-relay", "local-runc", "local-crun"]
FLAVOURS = ["sync", "async"]
NAMESPACE_PREFIX = "conformance"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here not in Path(str(item.fspath)).parents:
            continue
        params = getattr(getattr(item, "callspec", None), "params", {})
        backend = params.get("backend", "remote")
        remote = backend.startswith("remote")
        item.add_marker(pytest.mark.containerd if remote else pytest.mark.runtime)


# ------------------------------------------------------------------ backends


@pytest.fixture(scope="session")
def containerd_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A private containerd for the whole session (remote backend only)."""
    if os.geteuid() != 0 or shutil.which("containerd") is None:
        pytest.skip("needs root and the containerd binary")
    from libcontainerd.testing.containerd_daemon import start_containerd

    daemon = start_containerd(tmp_path_factory.mktemp("containerd"))
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox root filesystem shared (read-mostly) by every test container."""
    from libcontainerd.testing.image_builder import busybox_rootfs

    return busybox_rootfs(tmp_path_factory.mktemp("bundle") / "rootfs")


STAND_IN_PIPE = "npipe:////./pipe/conformance-stand-in"


@pytest.fixture
def pipe_stand_in(containerd_daemon: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Makes ``npipe://`` addresses dial through the relay to containerd's Unix socket.

    Windows cannot run here: only the pipe itself is simulated (the platform name and the
    dialer). Every client still gets its own relay from the transport, closed with it.
    """
    from libcontainerd.remote import _npipe
    from libcontainerd.remote._relay import unix_socket_dialer

    monkeypatch.setattr(_npipe, "HOST_PLATFORM", "win32")
    stand_in = unix_socket_dialer(str(containerd_daemon.socket_path))
    monkeypatch.setattr(_npipe, "pipe_dialer", lambda path: stand_in)
    return STAND_IN_PIPE


def _backend_settings(name: str, request: pytest.FixtureRequest) -> Backend:
    if name in ("remote", "remote-relay"):
        daemon = request.getfixturevalue("containerd_daemon")
        address = daemon.address
        if name == "remote-relay":
            address = request.getfixturevalue("pipe_stand_in")
        from libcontainerd import remote

        return Backend(
            name,
            remote.create_client,
            remote.create_async_client,
            lambda ns, **kw: ClientConfig(namespace=ns, address=address, **kw),
            {"root": str(daemon.runc_root)},
        )
    if name.startswith("local-"):
        runtime = name.removeprefix("local-")
        if os.geteuid() != 0 or shutil.which(runtime) is None:
            pytest.skip(f"the local backend with {runtime} needs root and the {runtime} binary")
        from libcontainerd import local
        from libcontainerd.testing.host import ensure_crun_cgroup_layout

        if runtime == "crun":
            ensure_crun_cgroup_layout()  # crun refuses hybrid cgroup v1 without hugetlb mounted
        base = request.getfixturevalue("local_dirs")
        return Backend(
            name,
            local.create_client,
            local.create_async_client,
            lambda ns, **kw: ClientConfig(
                namespace=ns, root=base / "root", state=base / "state", runtime=runtime, **kw
            ),
            {},
        )
    raise AssertionError(f"unknown backend {name}")


@pytest.fixture(scope="session")
def local_dirs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root and state directories of the local backend, private to this session."""
    return tmp_path_factory.mktemp("local")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """The backend under test."""
    return _backend_settings(request.param, request)


def _cleanup(backend: Backend, namespace: str) -> None:
    client = backend.make_sync(backend.config(namespace))
    try:
        for container in client.containers():
            with contextlib.suppress(Error):
                container.task().force_delete()
            with contextlib.suppress(Error):
                container.delete()
    finally:
        client.close()


@pytest.fixture(params=FLAVOURS)
def env(request: pytest.FixtureRequest, backend: Backend, rootfs: Path) -> Iterator[Env]:
    """The test environment for one backend x flavour."""
    namespace = f"{NAMESPACE_PREFIX}-{backend.name}-{request.param}"
    environment = Env(backend, request.param, rootfs, namespace)
    try:
        yield environment
    finally:
        environment.close()
        _cleanup(backend, namespace)


@pytest.fixture
def client(env: Env) -> Any:
    """A client of the backend x flavour under test."""
    return env.new_client()
