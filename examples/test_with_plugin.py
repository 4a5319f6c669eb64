"""Testing your own code with libcontainerd's pytest plugin: no conftest.py needed.

Installing libcontainerd (with pytest, e.g. ``pip install libcontainerd[test]``) loads the
plugin, so these fixtures just work. Run it with ``pytest examples/test_with_plugin.py``.
Each test gets a throwaway namespace that is emptied and removed afterwards.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from libcontainerd import Client, Container


@pytest.mark.needs_runtime
def test_run_a_command(libcontainerd_client: Client, busybox_image: str) -> None:
    result = libcontainerd_client.run(busybox_image, ["sh", "-c", "echo hello; exit 3"])
    assert result.exit_code == 3
    assert result.stdout == b"hello\n"


def test_a_running_container(run_container: Callable[..., Container]) -> None:
    container = run_container(["sh", "-c", "echo ready; sleep 60"])
    task = container.task()
    assert task.status().value == "running"
    task.stop(timeout=5)
    assert b"".join(container.logs(follow=True)) == b"ready\n"


def test_the_namespace_is_private(libcontainerd_client: Client, throwaway_namespace: str) -> None:
    assert libcontainerd_client.namespace == throwaway_namespace
    assert libcontainerd_client.containers() == []
