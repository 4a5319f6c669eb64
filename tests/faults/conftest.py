"""The fault and load suite: a shared tally, printed as ONE summary line at the end.

Each test adds what it ran to :data:`TALLY` (operations, faults injected, exits expected
and delivered per channel, leaks it measured); the ``fault_summary`` plugin (registered by
the root conftest) prints the line, which CI logs show.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_support import TALLY, Tally


@pytest.fixture(scope="session")
def tally() -> Tally:
    """The suite-wide tally."""
    return TALLY


@pytest.fixture(scope="session")
def fault_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox root filesystem shared by the suite's containers (read-only use)."""
    if os.geteuid() != 0 or shutil.which("containerd") is None or shutil.which("runc") is None:
        pytest.skip("needs root, containerd and runc")
    from libcontainerd.testing.image_builder import busybox_rootfs

    return busybox_rootfs(tmp_path_factory.mktemp("faults-rootfs") / "rootfs")


FAULT_NAMESPACES = ("faults-outage", "faults-load", "faults-restore", "faults-pull")
"""The namespaces the suite's containers use; each becomes a cgroup parent."""


@pytest.fixture(scope="session", autouse=True)
def _remove_fault_cgroup_parents() -> Iterator[None]:
    """Remove the empty cgroups named after the suite's namespaces once it is done."""
    yield
    from libcontainerd.testing.host import CGROUP_ROOT

    for namespace in FAULT_NAMESPACES:
        for parent in [*CGROUP_ROOT.glob(f"*/{namespace}"), CGROUP_ROOT / namespace]:
            with contextlib.suppress(OSError):
                parent.rmdir()


@pytest.fixture
def no_thread_leak(tally: Tally) -> Iterator[None]:
    """Counts threads the test left running (after a short grace for joins)."""
    before = {t.ident for t in threading.enumerate()}
    yield
    for _ in range(50):
        extra = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
        if not extra:
            break
        threading.Event().wait(0.1)
    tally.leaks["threads"] += len(extra)
