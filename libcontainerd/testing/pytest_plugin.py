"""pytest fixtures that start real services for a test session.

Enable in a ``conftest.py`` with ``pytest_plugins = ["libcontainerd.testing.pytest_plugin"]``.
Each fixture is session-scoped (one service per xdist worker) and skips, with the
reason, when the machine lacks root or the program it needs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from .containerd_daemon import ContainerdDaemon, start_containerd
from .registry import Registry, start_registry

__all__ = ["containerd_daemon", "registry_auth", "registry_plain", "registry_tls"]

REGISTRY_USER = "testuser"
REGISTRY_PASSWORD = "testpassword"  # a throwaway secret for a loopback-only test registry


def _need(*programs: str) -> None:
    missing = [name for name in programs if shutil.which(name) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH (see README: make test installs them)")


@pytest.fixture(scope="session")
def containerd_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerdDaemon]:
    """A private containerd with its own root, state and socket; stopped after the session."""
    if os.geteuid() != 0:
        pytest.skip("containerd needs root")
    _need("containerd", "runc")
    with start_containerd(tmp_path_factory.mktemp("containerd")) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def registry_plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """docker-registry over plain HTTP on 127.0.0.1."""
    _need("docker-registry")
    with start_registry(tmp_path_factory.mktemp("registry-plain")) as registry:
        yield registry


@pytest.fixture(scope="session")
def registry_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """docker-registry over TLS with a CA made for the session (``registry.ca_path``)."""
    _need("docker-registry", "openssl")
    with start_registry(tmp_path_factory.mktemp("registry-tls"), tls=True) as registry:
        yield registry


@pytest.fixture(scope="session")
def registry_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """docker-registry over TLS with htpasswd basic auth (``registry.username``/``password``)."""
    _need("docker-registry", "openssl", "htpasswd")
    with start_registry(
        tmp_path_factory.mktemp("registry-auth"),
        tls=True,
        htpasswd=(REGISTRY_USER, REGISTRY_PASSWORD),
    ) as registry:
        yield registry
