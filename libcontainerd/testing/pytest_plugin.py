"""pytest fixtures for tests of programs that use libcontainerd; loaded automatically.

Installing libcontainerd registers this module as a pytest plugin (the ``pytest11``
entry point), so no ``conftest.py`` line is needed. pytest itself stays optional
(``pip install libcontainerd[test]``).

Fixtures for your own tests:

``libcontainerd_client``
    a client on the embedded default backend (local: runc driven directly, no daemon),
    with its root and state in a private temporary directory, in a throwaway namespace;
``throwaway_namespace``
    that namespace's name; after the test every container in it is force-deleted and
    every image removed, so nothing is left behind;
``busybox_image``
    the name of a busybox image (built from the host's busybox-static, no download)
    already imported into the client;
``run_container``
    a factory: ``run_container(["sleep", "60"])`` starts a detached container from
    the busybox image (its output kept for ``container.logs()``); removed after the test;
``containerd_daemon``
    a private containerd for the session, with its own root, state, socket and runc
    root, so nothing lands under the system's runtime state; stopped afterwards;
``containerd_client``
    a remote client on that daemon, in the throwaway namespace (deleted afterwards);
``loopback_registry``
    a plain-HTTP OCI registry on 127.0.0.1 for the session (also ``registry_plain``;
    ``registry_tls`` and ``registry_auth`` add TLS and basic auth).

Markers: ``needs_runtime`` skips a test (with the reason) unless it runs as root with
runc on PATH; ``needs_containerd`` also needs the containerd binary; ``needs_registry``
needs docker-registry. The fixtures above skip the same way on their own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from libcontainerd.client import Client, Container
from libcontainerd.errors import Error, NotFound
from libcontainerd.testing.containerd_daemon import ContainerdDaemon, start_containerd
from libcontainerd.testing.registry import Registry, start_registry

__all__ = [
    "busybox_image",
    "containerd_client",
    "containerd_daemon",
    "libcontainerd_client",
    "loopback_registry",
    "registry_auth",
    "registry_plain",
    "registry_tls",
    "run_container",
    "throwaway_namespace",
]

REGISTRY_USER = "testuser"
REGISTRY_PASSWORD = "testpassword"  # a throwaway secret for a loopback-only test registry

_MARKERS = {
    "needs_runtime": "needs root and runc to run containers",
    "needs_containerd": "needs root, runc and the containerd binary",
    "needs_registry": "needs the docker-registry binary",
}


def _missing(*programs: str) -> list[str]:
    return [name for name in programs if shutil.which(name) is None]


def _skip_reason(marker: str) -> str | None:
    programs = {
        "needs_runtime": ("runc",),
        "needs_containerd": ("runc", "containerd"),
        "needs_registry": ("docker-registry",),
    }[marker]
    if marker != "needs_registry" and os.geteuid() != 0:
        return f"{marker}: running containers needs root"
    missing = _missing(*programs)
    if missing:
        return f"{marker}: {', '.join(missing)} not on PATH"
    return None


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers."""
    for name, text in _MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text} (skipped with the reason otherwise)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a marked test whose needs this machine does not meet."""
    for name in _MARKERS:
        if item.get_closest_marker(name) is not None:
            reason = _skip_reason(name)
            if reason is not None:
                pytest.skip(reason)


def _need(marker: str) -> None:
    reason = _skip_reason(marker)
    if reason is not None:
        pytest.skip(reason)


def _need_programs(*programs: str) -> None:
    missing = _missing(*programs)
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH (see README: make test installs them)")


# ----------------------------------------------------------------- services


@pytest.fixture(scope="session")
def containerd_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerdDaemon]:
    """A private containerd with its own root, state, socket and runc root (session)."""
    _need("needs_containerd")
    with start_containerd(tmp_path_factory.mktemp("containerd")) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def registry_plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """docker-registry over plain HTTP on 127.0.0.1."""
    _need_programs("docker-registry")
    with start_registry(tmp_path_factory.mktemp("registry-plain")) as registry:
        yield registry


@pytest.fixture(scope="session")
def loopback_registry(registry_plain: Registry) -> Registry:
    """A plain-HTTP registry on 127.0.0.1 (``registry.host`` is ``127.0.0.1:<port>``)."""
    return registry_plain


@pytest.fixture(scope="session")
def registry_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """docker-registry over TLS with a CA made for the session (``registry.ca_path``)."""
    _need_programs("docker-registry", "openssl")
    with start_registry(tmp_path_factory.mktemp("registry-tls"), tls=True) as registry:
        yield registry


@pytest.fixture(scope="session")
def registry_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """docker-registry over TLS with htpasswd basic auth (``registry.username``/``password``)."""
    _need_programs("docker-registry", "openssl", "htpasswd")
    with start_registry(
        tmp_path_factory.mktemp("registry-auth"),
        tls=True,
        htpasswd=(REGISTRY_USER, REGISTRY_PASSWORD),
    ) as registry:
        yield registry


# ------------------------------------------------------------------ clients


@pytest.fixture
def throwaway_namespace() -> str:
    """A fresh namespace name for one test; the client fixtures empty and remove it."""
    return f"t-{uuid.uuid4().hex[:12]}"


def _empty(client: Client) -> None:
    """Force-delete every container and remove every image of the client's namespace."""
    for container in client.containers():
        with contextlib.suppress(NotFound):
            container.task().force_delete()
        with contextlib.suppress(NotFound):
            container.delete()
    for image in client.images.list():
        with contextlib.suppress(NotFound):
            client.images.remove(image.name)


@pytest.fixture(scope="session")
def _libcontainerd_local_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("libcontainerd-local")
    yield base
    # The runtime's state (its --root) and the monitors' state live here, not under /run.
    shutil.rmtree(base / "state", ignore_errors=True)


@pytest.fixture
def libcontainerd_client(
    _libcontainerd_local_dirs: Path, throwaway_namespace: str
) -> Iterator[Client]:
    """A client on the embedded default (local) backend in a throwaway namespace."""
    _need("needs_runtime")
    from libcontainerd import new_client

    client = new_client(
        "local",
        namespace=throwaway_namespace,
        root=_libcontainerd_local_dirs / "root",
        state=_libcontainerd_local_dirs / "state",
    )
    try:
        yield client
    finally:
        try:
            _empty(client)
        finally:
            client.close()
            _remove_local_namespace(_libcontainerd_local_dirs, throwaway_namespace)


def _remove_local_namespace(base: Path, namespace: str) -> None:
    for path in (
        base / "root" / "containers" / namespace,
        base / "root" / "images" / namespace,
        base / "state" / "tasks" / namespace,
        base / "state" / "runtime" / "runc" / namespace,
    ):
        shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(OSError):
        (base / "state" / "events" / f"{namespace}.jsonl").unlink()


@pytest.fixture
def containerd_client(
    containerd_daemon: ContainerdDaemon, throwaway_namespace: str
) -> Iterator[Client]:
    """A remote client on the private containerd, in a throwaway namespace (deleted after).

    For full isolation pass ``runtime_options={"root": str(containerd_daemon.runc_root)}``
    when creating containers (``new_container`` or ``run``): the runc shim otherwise keeps
    runc's state under ``/run/containerd/runc``.
    """
    from libcontainerd import new_client
    from libcontainerd.remote import RemoteClient

    client = new_client("remote", address=containerd_daemon.address, namespace=throwaway_namespace)
    try:
        yield client
    finally:
        try:
            _empty(client)
            if isinstance(client, RemoteClient):
                with contextlib.suppress(Error):
                    client.namespaces.delete(throwaway_namespace)
        finally:
            client.close()


# ------------------------------------------------------------------- images


@pytest.fixture(scope="session")
def busybox_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox test image as an OCI archive (built once per session, no download)."""
    if shutil.which("busybox") is None and not Path("/bin/busybox").exists():
        pytest.skip("needs busybox-static (the Debian package) to build the test image")
    from libcontainerd.testing.image_builder import build_image, write_layout_archive

    base = tmp_path_factory.mktemp("busybox-image")
    return write_layout_archive(build_image(base / "layout").layout, base / "busybox.tar")


BUSYBOX_NAME = "localhost/libcontainerd-test/busybox:latest"
"""The name ``busybox_image`` gives the test image in the client."""


@pytest.fixture
def busybox_image(libcontainerd_client: Client, busybox_archive: Path) -> str:
    """The name of the busybox test image, already imported into ``libcontainerd_client``."""
    (image,) = libcontainerd_client.images.import_archive(busybox_archive)
    if image.name != BUSYBOX_NAME:
        libcontainerd_client.images.tag(image.name, BUSYBOX_NAME)
        libcontainerd_client.images.remove(image.name)
    return BUSYBOX_NAME


@pytest.fixture
def run_container(
    libcontainerd_client: Client, busybox_image: str
) -> Iterator[Callable[..., Container]]:
    """A factory of started, detached busybox containers; all removed after the test.

    ``run_container(args, **options)`` takes the keywords of ``client.run`` (``env``,
    ``name``, ``image`` ...) and returns the container; its output is in ``logs()``.
    """
    started: list[Container] = []

    def run(args: Sequence[str], *, image: str | None = None, **options: Any) -> Container:
        container: Container = libcontainerd_client.run(
            image or busybox_image, list(args), detach=True, **options
        )
        started.append(container)
        return container

    yield run
    for container in reversed(started):
        with contextlib.suppress(NotFound):
            container.task().force_delete()
        with contextlib.suppress(NotFound):
            container.delete()
