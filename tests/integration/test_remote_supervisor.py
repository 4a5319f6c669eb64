"""The supervised containerd: config, start, adopt, restart on death or failed health
checks, clean stop; and ``new_client(managed=True)``."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import libcontainerd
from libcontainerd._toml import loads as toml_loads
from libcontainerd.errors import InvalidArgument
from libcontainerd.remote.supervisor import CRI_PLUGIN, Supervisor

pytestmark = pytest.mark.containerd


@pytest.fixture
def base() -> Iterator[Path]:
    """A short private directory (unix socket paths are limited to 107 bytes)."""
    if os.geteuid() != 0 or shutil.which("containerd") is None:
        pytest.skip("needs root and the containerd binary")
    path = Path(tempfile.mkdtemp(prefix="lcds-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _wait(predicate: object, timeout: float) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _gone(pid: int) -> bool:
    try:
        return not Path(f"/proc/{pid}/cmdline").read_bytes()  # empty: a zombie
    except FileNotFoundError:
        return True


def test_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="log_level"):
        Supervisor(tmp_path / "r", tmp_path / "s", log_level="loud")
    with pytest.raises(InvalidArgument, match="health_interval"):
        Supervisor(tmp_path / "r", tmp_path / "s", health_interval=0)
    with pytest.raises(InvalidArgument, match="too long"):
        Supervisor(tmp_path / "r", tmp_path / ("s" * 120))
    with pytest.raises(InvalidArgument, match="root= and state="):
        libcontainerd.new_client("remote", managed=True)


def test_config_start_adopt_and_stop(base: Path) -> None:
    log = base / "logs" / "containerd.log"
    first = Supervisor(base / "root", base / "state", log_level="debug", log_file=log)
    first.start()
    try:
        config = toml_loads(first.config_path.read_text(), what="config")
        assert config["root"] == str(base / "root")
        assert config["state"] == str(base / "state")
        assert config["grpc"]["address"] == str(first.socket_path)
        assert config["debug"]["level"] == "debug"
        assert CRI_PLUGIN in config["disabled_plugins"]
        assert first.healthy() and log.stat().st_size > 0
        assert int(first.pid_file.read_text()) == first.pid
        # A later run (a second supervisor on the same state) adopts the live daemon.
        pid = first.pid
        first.detach()
        second = Supervisor(base / "root", base / "state", log_level="debug", log_file=log)
        second.start()
        assert second.pid == pid
        with libcontainerd.new_client("remote", address=second.address) as client:
            assert client.version().version
        second.stop()
        assert not second.running and _gone(pid)
        assert not first.socket_path.exists() and not first.pid_file.exists()
    finally:
        first.stop()


def test_restarts_a_daemon_that_stops_answering(base: Path) -> None:
    supervisor = Supervisor(
        base / "root", base / "state", health_interval=0.2, health_timeout=0.3, stop_timeout=1
    )
    with supervisor:
        frozen = supervisor.pid
        os.kill(frozen, signal.SIGSTOP)  # alive but deaf: only the health check can tell
        try:
            assert _wait(lambda: supervisor.restarts == 1 and supervisor.healthy(), 30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(frozen, signal.SIGCONT)
        assert supervisor.pid != frozen
    assert not supervisor.socket_path.exists()


def test_managed_client_owns_its_containerd(base: Path) -> None:
    client = libcontainerd.new_client(
        "remote",
        managed={"health_interval": 0.2},
        root=base / "root",
        state=base / "state",
        namespace="managed",
    )
    supervisor = client.supervisor  # type: ignore[attr-defined]
    try:
        assert client.address == supervisor.address  # type: ignore[attr-defined]
        assert client.version().version
        os.kill(supervisor.pid, signal.SIGKILL)
        client.wait_ready(30)  # type: ignore[attr-defined]
        assert _wait(lambda: supervisor.restarts == 1, 30)
        assert client.containers() == []
    finally:
        client.close()
    assert not supervisor.running and not supervisor.pid_file.exists()
