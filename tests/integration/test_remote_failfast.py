"""Fail fast, wait on request: calls while containerd is unreachable, and the settings
that choose where (and in which namespace) the remote backend talks."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import libcontainerd
from libcontainerd.cli import main
from libcontainerd.config import ClientConfig
from libcontainerd.errors import Unavailable
from libcontainerd.oci import generate_spec
from libcontainerd.remote import RemoteClient, RemoteTask
from libcontainerd.remote._process import Session

FAST = 1.5


def _calls(client: RemoteClient) -> list[tuple[str, Callable[[], object]]]:
    task = RemoteTask(Session(client.transport), "absent")
    return [
        ("version", client.version),
        ("containers", client.containers),
        ("load_container", lambda: client.load_container("absent")),
        ("status", task.status),
        ("wait", lambda: task.wait(timeout=30)),
        # A well-formed spec: a malformed one is refused before any call is made.
        ("new_container", lambda: client.new_container("x", generate_spec(container_id="x"))),
    ]


def _stale_socket(path: Path) -> str:
    # A socket file nobody listens on any more: what a SIGKILLed containerd leaves.
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
    return f"unix://{path}"


@pytest.mark.parametrize("kind", ["missing", "stale", "tcp"])
def test_unreachable_calls_raise_unavailable_fast(tmp_path: Path, kind: str) -> None:
    """Every call raises Unavailable (never DeadlineExceeded) within 1.5 s."""
    address = {
        "missing": f"unix://{tmp_path}/missing.sock",
        "stale": _stale_socket(tmp_path / "stale.sock") if kind == "stale" else "",
        "tcp": "tcp://127.0.0.1:1",
    }[kind]
    client = RemoteClient(ClientConfig(address=address, namespace="ff", timeout=10))
    try:
        for name, call in _calls(client):
            started = time.monotonic()
            with pytest.raises(Unavailable, match="is it running"):
                call()
            took = time.monotonic() - started
            assert took < FAST, f"{name}() took {took:.2f} s"
    finally:
        client.close()


def test_wait_ready_times_out_with_unavailable(tmp_path: Path) -> None:
    client = RemoteClient(ClientConfig(address=f"unix://{tmp_path}/none.sock", namespace="ff"))
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable, match=r"did not answer within 0\.5"):
            client.wait_ready(0.5)
        assert 0.4 < time.monotonic() - started < FAST
        with pytest.raises(Unavailable):
            client.version(wait_ready=0.5)
    finally:
        client.close()


def test_wait_ready_values_are_checked(tmp_path: Path) -> None:
    with pytest.raises(libcontainerd.errors.InvalidArgument, match="wait_ready"):
        libcontainerd.new_client("remote", address=f"{tmp_path}/x.sock", wait_ready=-1)


@pytest.fixture
def late_daemon(tmp_path: Path) -> Iterator[Any]:
    """A containerd of this test's own, not started yet."""
    if os.geteuid() != 0 or shutil.which("containerd") is None:
        pytest.skip("needs root and the containerd binary")
    from libcontainerd.testing.containerd_daemon import start_containerd

    started: list[Any] = []
    yield lambda: started.append(start_containerd(tmp_path / "d")) or started[0]
    for daemon in started:
        daemon.stop()


@pytest.mark.containerd
def test_wait_ready_waits_for_containerd_to_come_up(tmp_path: Path, late_daemon: Any) -> None:
    address = f"unix://{tmp_path / 'd' / 'containerd.sock'}"
    with libcontainerd.new_client("remote", address=address, namespace="ff") as client:
        with pytest.raises(Unavailable):
            client.version()
        timer = threading.Timer(1.0, late_daemon)
        timer.start()
        try:
            assert client.version(wait_ready=60).version
            client.wait_ready(5)
        finally:
            timer.join()
    with libcontainerd.new_client(
        "remote", address=address, namespace="ff", wait_ready=5
    ) as client:
        assert client.containers() == []


@pytest.mark.containerd
def test_next_call_after_a_restart_succeeds_at_once(tmp_path: Path, late_daemon: Any) -> None:
    daemon = late_daemon()
    with libcontainerd.new_client("remote", address=daemon.address, namespace="ff") as client:
        client.version()
        daemon.kill()
        with pytest.raises(Unavailable):
            client.containers()
        daemon.relaunch()
        started = time.monotonic()
        client.version()
        assert time.monotonic() - started < 1.0


def test_containerd_address_environment_is_dialed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Remote (by argument or environment) without address= dials $CONTAINERD_ADDRESS."""
    monkeypatch.setenv("CONTAINERD_ADDRESS", f"{tmp_path}/x.sock")
    with libcontainerd.new_client("remote") as client:
        assert client.address == f"unix://{tmp_path}/x.sock"  # type: ignore[attr-defined]
    monkeypatch.setenv("LIBCONTAINERD_BACKEND", "remote")
    with libcontainerd.new_client() as client:
        assert client.address == f"unix://{tmp_path}/x.sock"  # type: ignore[attr-defined]
    with libcontainerd.new_client(address=f"{tmp_path}/y.sock") as client:
        assert client.address == f"unix://{tmp_path}/y.sock"  # type: ignore[attr-defined]


def test_containerd_namespace_environment_is_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTAINERD_NAMESPACE", "from-env")
    address = f"{tmp_path}/x.sock"
    with libcontainerd.new_client("remote", address=address) as client:
        assert client.namespace == "from-env"
    with libcontainerd.new_client("remote", address=address, namespace="given") as client:
        assert client.namespace == "given"
    monkeypatch.setenv("CONTAINERD_NAMESPACE", "")
    with libcontainerd.new_client("remote", address=address) as client:
        assert client.namespace == "default"


def test_cli_backend_checks_the_address(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    address = f"{tmp_path}/nothing.sock"
    assert main(["backend", "--backend", "remote", "--address", address, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report == {
        "backend": "remote",
        "rule": "explicit_backend",
        "address": address,
        "reachable": False,
    }
    assert main(["backend", "--address", address]) == 1
    assert "does not answer" in capsys.readouterr().out


@pytest.mark.containerd
def test_cli_backend_reports_a_live_daemon(
    late_daemon: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = late_daemon()
    assert main(["backend", "--address", daemon.address, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reachable"] is True


def test_async_client_fails_fast_and_waits_on_request(tmp_path: Path) -> None:
    import asyncio

    async def main() -> None:
        client = libcontainerd.new_async_client("remote", address=f"{tmp_path}/none.sock")
        try:
            started = time.monotonic()
            with pytest.raises(Unavailable):
                await client.version()
            with pytest.raises(Unavailable, match="did not answer"):
                await client.wait_ready(0.3)  # type: ignore[attr-defined]
            assert time.monotonic() - started < 2 * FAST
        finally:
            await client.close()

    asyncio.run(main())
