"""The named-pipe relay under load, against the real containerd.

Windows cannot run here, so a Unix socket stands in for the pipe: containerd's own
socket, reached through :func:`unix_socket_dialer`. Everything else (the relay, its peer
check, the transport hook, gRPC) is the code that runs on Windows.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

import libcontainerd
from libcontainerd.config import ClientConfig
from libcontainerd.errors import Error
from libcontainerd.oci import generate_spec
from libcontainerd.remote import RemoteClient, _npipe
from libcontainerd.remote._content import LEASE_HEADER
from libcontainerd.remote._pb.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from libcontainerd.remote._pb.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
from libcontainerd.remote._relay import ByteStream, Relay, peer_is_this_process, unix_socket_dialer
from libcontainerd.remote._transport import MAX_MESSAGE_BYTES, NAMESPACE_HEADER
from libcontainerd.testing.containerd_daemon import ContainerdDaemon, start_containerd

pytestmark = pytest.mark.containerd

NAMESPACE = "npipe-relay"
PIPE = "npipe:////./pipe/relay-test"


def _needs_containerd() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to start containerd")


class _Tracked:
    """A far-side stream that notes when the relay closes it."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self.closed = False

    def recv(self, size: int) -> bytes:
        return self._stream.recv(size)

    def sendall(self, data: bytes) -> None:
        self._stream.sendall(data)

    def abort(self) -> None:
        self._stream.abort()

    def close(self) -> None:
        self.closed = True
        self._stream.close()


class _Recording:
    """A dialer that remembers the far-side streams, so a test can cut them as a pipe break."""

    def __init__(self, socket_path: Path) -> None:
        self._dial = unix_socket_dialer(str(socket_path))
        self.streams: list[_Tracked] = []

    def __call__(self) -> ByteStream:
        stream = _Tracked(self._dial())
        self.streams.append(stream)
        return stream


@pytest.fixture
def stand_in(containerd_daemon: ContainerdDaemon, monkeypatch: pytest.MonkeyPatch) -> _Recording:
    """npipe addresses dial containerd's socket: only the platform and the pipe are simulated."""
    _needs_containerd()
    recording = _Recording(containerd_daemon.socket_path)
    monkeypatch.setattr(_npipe, "HOST_PLATFORM", "win32")
    monkeypatch.setattr(_npipe, "pipe_dialer", lambda path: recording)
    return recording


def _relay_of(client: Any) -> Relay:
    relay = client.transport._relay
    assert isinstance(relay, Relay)
    return relay


def _wait_until(condition: Any, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def test_new_client_dials_the_pipe_through_a_relay_closed_with_it(stand_in: _Recording) -> None:
    client = libcontainerd.new_client("remote", address=PIPE, namespace=NAMESPACE)
    try:
        assert client.version().version
        relay = _relay_of(client)
        assert relay.accepted >= 1
        assert relay.refused == 0
    finally:
        client.close()
    host, port = relay.target.rsplit(":", 1)
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=2).close()
    assert _wait_until(lambda: relay.open_links == 0)


def test_each_client_has_its_own_relay(stand_in: _Recording) -> None:
    first = RemoteClient(ClientConfig(namespace=NAMESPACE, address=PIPE))
    second = RemoteClient(ClientConfig(namespace=NAMESPACE, address=PIPE))
    try:
        assert _relay_of(first).target != _relay_of(second).target
        first.version()
        second.version()
    finally:
        first.close()
        second.close()


def test_many_concurrent_streams_through_one_relay(stand_in: _Recording) -> None:
    """32 workers share one client: each holds an event stream open while creating a
    container and waiting for its own create event on that stream."""
    client = RemoteClient(ClientConfig(namespace=NAMESPACE, address=PIPE))
    workers = 32
    barrier = threading.Barrier(workers)

    def work(index: int) -> str:
        container_id = f"relay-load-{os.getpid()}-{index}"
        with client.events(filters=('topic=="/containers/create"',)) as events:
            barrier.wait(timeout=60)
            container = client.new_container(container_id, generate_spec())
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    event = events.poll(timeout=1.0)
                    if event is not None and event.container_id == container_id:
                        return container_id
            finally:
                container.delete()
        return ""

    try:
        with ThreadPoolExecutor(workers) as pool:
            done = list(pool.map(work, range(workers), timeout=120))
        assert sorted(done) == sorted(f"relay-load-{os.getpid()}-{i}" for i in range(workers))
        # gRPC multiplexes every stream of the channel over very few connections.
        assert 1 <= _relay_of(client).accepted <= 3
    finally:
        client.close()


def _content_stub(relay_target: str) -> tuple[grpc.Channel, Any]:
    channel = grpc.insecure_channel(
        relay_target,
        [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    return channel, content_pb2_grpc.ContentStub(channel)


@pytest.mark.parametrize("mib", [3, 12])
def test_messages_of_several_mib(containerd_daemon: ContainerdDaemon, mib: int) -> None:
    """One gRPC message of several MiB each way: written in one request, read back whole."""
    _needs_containerd()
    blob = os.urandom(mib * 1024 * 1024)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    metadata = ((NAMESPACE_HEADER, NAMESPACE),)
    dialer = unix_socket_dialer(str(containerd_daemon.socket_path))
    with Relay(dialer, name="stand-in", peer_check=peer_is_this_process) as relay:
        channel, stub = _content_stub(relay.target)
        with channel:
            # Written under a lease: an unreferenced blob is fair game for containerd's
            # collector, which other tests' deletions on this daemon set off.
            leases = leases_pb2_grpc.LeasesStub(channel)
            lease_id = f"relay-{secrets.token_hex(6)}"
            leases.Create(leases_pb2.CreateRequest(id=lease_id), metadata=metadata, timeout=30)
            leased = (*metadata, (LEASE_HEADER, lease_id))
            try:
                request = content_pb2.WriteContentRequest(
                    action=content_pb2.COMMIT,
                    ref=f"relay-{digest}",
                    total=len(blob),
                    expected=digest,
                    data=blob,
                )
                list(stub.Write(iter([request]), metadata=leased, timeout=60))
                read = b"".join(
                    part.data
                    for part in stub.Read(
                        content_pb2.ReadContentRequest(digest=digest), metadata=metadata, timeout=60
                    )
                )
                assert hashlib.sha256(read).hexdigest() == digest.removeprefix("sha256:")
            finally:
                leases.Delete(
                    leases_pb2.DeleteRequest(id=lease_id, sync=True), metadata=metadata, timeout=30
                )


def test_abrupt_close_on_the_grpc_side_frees_the_pipe(stand_in: _Recording) -> None:
    """Closing the client while a stream is open ends the link and its pipe connection."""
    client = RemoteClient(ClientConfig(namespace=NAMESPACE, address=PIPE))
    relay = _relay_of(client)
    events = client.events()
    client.version()
    assert relay.open_links >= 1
    client.close()
    events.close()
    assert _wait_until(lambda: relay.open_links == 0)
    assert stand_in.streams
    assert _wait_until(lambda: all(stream.closed for stream in stand_in.streams))


def test_abrupt_close_on_the_pipe_side_is_redialed(stand_in: _Recording) -> None:
    """The pipe breaking under a live client: gRPC redials, the next calls work."""
    client = RemoteClient(ClientConfig(namespace=NAMESPACE, address=PIPE))
    try:
        client.version()
        relay = _relay_of(client)
        before = relay.accepted
        for stream in list(stand_in.streams):
            stream.abort()
        assert _wait_until(lambda: relay.open_links == 0)
        assert client.containers() is not None  # an idempotent read: retried while redialing
        assert client.version().version
        assert relay.accepted > before
    finally:
        client.close()


# ------------------------------------------------------------------ the pipe server restarts


@pytest.fixture(scope="module")
def own_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerdDaemon]:
    """A daemon of this module's own: restarting a shared one would disturb other tests."""
    _needs_containerd()
    daemon = start_containerd(tmp_path_factory.mktemp("relay-containerd"))
    try:
        yield daemon
    finally:
        daemon.stop()


def test_pipe_server_restart(own_daemon: ContainerdDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    recording = _Recording(own_daemon.socket_path)
    monkeypatch.setattr(_npipe, "HOST_PLATFORM", "win32")
    monkeypatch.setattr(_npipe, "pipe_dialer", lambda path: recording)
    client = RemoteClient(ClientConfig(namespace=NAMESPACE, address=PIPE))
    try:
        container = client.new_container(f"relay-restart-{os.getpid()}", generate_spec())
        relay = _relay_of(client)
        before = relay.accepted
        own_daemon.restart(down_for=1.0)
        assert client.load_container(container.id).id == container.id
        assert relay.accepted > before
        container.delete()
    finally:
        client.close()


def test_closing_a_relay_with_live_streams_leaves_no_threads(
    containerd_daemon: ContainerdDaemon,
) -> None:
    _needs_containerd()
    baseline = threading.active_count()
    dialer = unix_socket_dialer(str(containerd_daemon.socket_path))
    relay = Relay(dialer, name="stand-in", peer_check=peer_is_this_process)
    client = RemoteClient(ClientConfig(namespace=NAMESPACE, address=f"tcp://{relay.target}"))
    try:
        events = client.events()
        client.version()
        relay.close()
        with pytest.raises(Error):
            client.new_container(f"relay-gone-{os.getpid()}", generate_spec())
        events.close()
    finally:
        client.close()
    assert _wait_until(lambda: threading.active_count() <= baseline + 2)
