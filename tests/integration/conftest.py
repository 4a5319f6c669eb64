"""Fixtures for integration tests that run real containers with runc and crun.

``oci_runtime`` is parametrized over the runtimes; each test gets a runner whose state
directory (``--root``) lives under the test's ``tmp_path``, so nothing touches the system's
default runtime state, and whose containers are always force-deleted afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from libcontainerd.testing.host import (
    CGROUP_ROOT,
    BundleRunner,
    ensure_crun_cgroup_layout,
    find_runtime,
    is_root,
)

#: containerd-style namespace of every test container; it becomes the cgroup parent.
CGROUP_NAMESPACE = "libcontainerd-it"

RUNTIMES = ("runc", "crun")


def _skip_reason(name: str) -> str | None:
    if not is_root():
        return "running containers with runc/crun needs root"
    if find_runtime(name) is None:
        return f"{name} is not installed"
    return None


@pytest.fixture(scope="session")
def crun_cgroup_layout() -> str | None:
    """Prepare the host for crun once per session (see ``ensure_crun_cgroup_layout``)."""
    if _skip_reason("crun") is not None:
        return None
    return ensure_crun_cgroup_layout()


@pytest.fixture(scope="session", autouse=True)
def _remove_test_cgroup_parents() -> Iterator[None]:
    """Remove the empty ``<controller>/libcontainerd-it`` cgroups the runs leave behind."""
    yield
    for parent in [*CGROUP_ROOT.glob(f"*/{CGROUP_NAMESPACE}"), CGROUP_ROOT / CGROUP_NAMESPACE]:
        with contextlib.suppress(OSError):
            parent.rmdir()


@pytest.fixture(params=RUNTIMES)
def oci_runtime(
    request: pytest.FixtureRequest, tmp_path: Path, crun_cgroup_layout: str | None
) -> BundleRunner:
    """A :class:`BundleRunner` for each of runc and crun (skipped when unusable)."""
    name: str = request.param
    reason = _skip_reason(name)
    if reason is not None:
        pytest.skip(reason)
    binary = find_runtime(name)
    assert binary is not None
    state_root = tmp_path / f"state-{name}"
    state_root.mkdir()
    return BundleRunner(
        name=name,
        binary=binary,
        state_root=state_root,
        workdir=tmp_path,
        namespace=CGROUP_NAMESPACE,
    )
