"""Remote backend specifics: transport options, extras, event/metrics decoding, stdio cleanup."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import any_pb2, timestamp_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from libcontainerd import new_async_client, new_client
from libcontainerd.client import AsyncClient, Client
from libcontainerd.config import ClientConfig
from libcontainerd.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    Unimplemented,
)
from libcontainerd.oci import generate_spec, with_process_args, with_rootfs
from libcontainerd.remote import FIFO_ROOT, RemoteClient
from libcontainerd.remote._convert import metrics_to_stats, runtime_options_any
from libcontainerd.remote._events import decode_envelope
from libcontainerd.remote._pb.containerd.events import task_pb2 as task_events
from libcontainerd.remote._pb.containerd.services.events.v1 import events_pb2
from libcontainerd.remote._pb.io.containerd.cgroups.v1 import metrics_pb2 as cg1
from libcontainerd.types.events import EventType
from libcontainerd.types.stdio import PipedIO, TerminalIO

NAMESPACE = "remote-it"
_ids = st.from_regex(r"[a-z0-9]{1,10}(-[a-z0-9]{1,5})?", fullmatch=True)


# ------------------------------------------------------------------ no daemon needed


def test_unknown_option_rejected() -> None:
    with pytest.raises(InvalidArgument, match="bogus"):
        RemoteClient(ClientConfig(address="unix:///tmp/none.sock", options={"bogus": 1}))


def test_npipe_names_the_platform_here() -> None:
    with pytest.raises(FailedPrecondition, match="only be dialed on Windows"):
        RemoteClient(ClientConfig(address="npipe:////./pipe/containerd-containerd"))


def test_tls_needs_tcp_and_key_pair() -> None:
    with pytest.raises(InvalidArgument):
        RemoteClient(ClientConfig(address="unix:///tmp/x.sock", options={"tls_ca": b"x"}))
    with pytest.raises(InvalidArgument):
        RemoteClient(ClientConfig(address="tcp://127.0.0.1:1", options={"tls_cert": b"x"}))


def test_unreachable_daemon_is_unavailable(tmp_path: Path) -> None:
    client = RemoteClient(
        ClientConfig(address=f"unix://{tmp_path}/missing.sock", timeout=2, namespace="x")
    )
    with pytest.raises(Unavailable):
        client.version()
    client.close()


def test_runtime_options_unknown_field() -> None:
    with pytest.raises(InvalidArgument, match="binary_name"):
        runtime_options_any({"no_such_field": True})
    packed = runtime_options_any({"binary_name": "crun", "root": "/x"})
    assert packed.type_url == "containerd.runc.v1.Options"


def _stamp(seconds: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromSeconds(seconds)
    return stamp


@settings(max_examples=200, deadline=None)
@given(
    container_id=_ids,
    exec_id=st.one_of(st.just(""), _ids),
    pid=st.integers(1, 2**32 - 1),
    code=st.integers(0, 255),
    seconds=st.integers(0, 2**33),
)
def test_task_exit_envelope_decodes(
    container_id: str, exec_id: str, pid: int, code: int, seconds: int
) -> None:
    payload = task_events.TaskExit(
        container_id=container_id,
        id=exec_id or container_id,
        pid=pid,
        exit_status=code,
        exited_at=_stamp(seconds),
    )
    envelope = events_pb2.Envelope(
        timestamp=_stamp(seconds),
        namespace="ns",
        topic="/tasks/exit",
        event=any_pb2.Any(type_url="containerd.events.TaskExit", value=payload.SerializeToString()),
    )
    event = decode_envelope(envelope)
    assert event.type is EventType.TASK_EXIT
    assert (event.container_id, event.pid, event.exit_code) == (container_id, pid, code)
    assert event.process_id == (exec_id if exec_id != container_id else "")
    assert event.exited_at == dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
    assert event.namespace == "ns"


def test_unknown_event_type_kept() -> None:
    envelope = events_pb2.Envelope(
        topic="/something/new", event=any_pb2.Any(type_url="example.New", value=b"\x01")
    )
    event = decode_envelope(envelope)
    assert event.type is EventType.UNKNOWN
    assert event.topic == "/something/new"
    assert event.raw["type_url"] == "example.New"


def test_cgroup_v1_metrics_to_stats() -> None:
    data = cg1.Metrics()
    data.memory.usage.usage = 1000
    data.memory.usage.limit = 2**63 - 4096
    data.memory.swap.usage = 1500
    data.pids.current = 3
    data.pids.limit = 10
    data.cpu.usage.total = 42
    entry = data.blkio.io_service_bytes_recursive.add()
    entry.op, entry.value = "Read", 7
    packed = any_pb2.Any(
        type_url="io.containerd.cgroups.v1.Metrics", value=data.SerializeToString()
    )
    now = dt.datetime.now(dt.timezone.utc)
    stats = metrics_to_stats(packed, now)
    assert stats.cgroup_version == 1
    assert stats.memory_usage == 1000 and stats.memory_limit is None
    assert stats.memory_swap == 500
    assert (stats.pids_current, stats.pids_limit) == (3, 10)
    assert stats.cpu_usage_total_ns == 42
    assert (stats.blkio_read_bytes, stats.blkio_write_bytes) == (7, 0)


# ------------------------------------------------------------------ against containerd


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    if os.geteuid() != 0 or shutil.which("containerd") is None:
        pytest.skip("needs root and the containerd binary")
    from libcontainerd.testing.containerd_daemon import start_containerd

    running = start_containerd(tmp_path_factory.mktemp("remote-it"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(daemon: object) -> Iterator[RemoteClient]:
    remote = RemoteClient(ClientConfig(namespace=NAMESPACE, address=daemon.address))  # type: ignore[attr-defined]
    try:
        yield remote
    finally:
        remote.close()


@pytest.mark.containerd
def test_factory_builds_remote_clients(daemon: object) -> None:
    address = daemon.address  # type: ignore[attr-defined]
    with new_client("remote", address=address, namespace=NAMESPACE) as sync_client:
        assert isinstance(sync_client, Client)
        assert sync_client.backend == "remote"
        assert sync_client.version().version
    async_client = new_async_client("remote", address=address, namespace=NAMESPACE)
    assert isinstance(async_client, AsyncClient)
    with pytest.raises(InvalidArgument):
        new_client("remote", address=address, nonsense=True)


@pytest.mark.containerd
def test_namespaces(client: RemoteClient) -> None:
    name = f"it-ns-{os.getpid()}"
    created = client.namespaces.create(name, {"a": "1"})
    assert created.labels == {"a": "1"}
    with pytest.raises(AlreadyExists):
        client.namespaces.create(name)
    assert name in {ns.name for ns in client.namespaces.list()}
    assert client.namespaces.set_labels(name, {"b": "2", "a": ""}).labels == {"b": "2"}
    client.namespaces.delete(name)
    with pytest.raises(NotFound):
        client.namespaces.get(name)


@pytest.mark.containerd
def test_introspection(client: RemoteClient) -> None:
    plugins = client.introspection.plugins(['type=="io.containerd.grpc.v1"'])
    assert "tasks" in {p.id for p in plugins}
    assert client.introspection.server_uuid()


@pytest.mark.containerd
def test_leases(client: RemoteClient) -> None:
    lease = client.leases.create(f"lease-{os.getpid()}", {"k": "v"})
    assert lease.created_at is not None
    assert lease.id in {item.id for item in client.leases.list()}
    client.leases.delete(lease.id)
    assert lease.id not in {item.id for item in client.leases.list()}


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.containerd
@pytest.mark.parametrize("stdio", [PipedIO(), TerminalIO()], ids=["piped", "tty"])
def test_stdio_leaves_nothing_behind(
    client: RemoteClient, daemon: object, tmp_path: Path, stdio: PipedIO | TerminalIO
) -> None:
    from libcontainerd.oci import with_tty
    from libcontainerd.testing.image_builder import busybox_rootfs

    rootfs = busybox_rootfs(tmp_path / "rootfs")
    cid = f"leak-{os.getpid()}-{type(stdio).__name__.lower()}"
    opts = [with_rootfs(rootfs), with_process_args("echo", "x")]
    if isinstance(stdio, TerminalIO):
        opts.append(with_tty())
    client.version()  # the channel's own descriptors are not a leak
    before = _fds()
    container = client.new_container(
        cid,
        generate_spec(*opts, container_id=cid, namespace=NAMESPACE),
        runtime_options={"root": str(daemon.runc_root)},  # type: ignore[attr-defined]
    )
    task = container.new_task(stdio=stdio)
    directory = FIFO_ROOT / NAMESPACE / cid / "task"
    assert directory.is_dir() and oct(directory.stat().st_mode & 0o777) == "0o700"
    task.start()
    assert task.io is not None and task.io.stdout is not None
    assert task.io.stdout.read().strip() == b"x"
    task.wait(timeout=30)
    task.delete()
    container.delete()
    assert not directory.exists()
    assert not (FIFO_ROOT / NAMESPACE / cid).exists()
    assert _fds() <= before


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.containerd
@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tcp-tls"])
def test_tcp_address(tmp_path: Path, tls: bool) -> None:
    if os.geteuid() != 0 or shutil.which("containerd") is None:
        pytest.skip("needs root and the containerd binary")
    from libcontainerd.testing.containerd_daemon import start_containerd

    port = _free_port()
    lines = ["[grpc]", f'  tcp_address = "127.0.0.1:{port}"']
    options: dict[str, object] = {}
    if tls:
        if shutil.which("openssl") is None:
            pytest.skip("needs openssl")
        from libcontainerd.testing.tls import make_ca, make_server_cert

        ca = make_ca(tmp_path / "ca")
        cert, key = make_server_cert(ca, tmp_path / "ca")
        lines += [f'  tcp_tls_cert = "{cert}"', f'  tcp_tls_key = "{key}"']
        options["tls_ca"] = str(ca.cert_path)
    daemon = start_containerd(tmp_path / "d", extra_config="\n".join(lines))
    try:
        client = RemoteClient(
            ClientConfig(address=f"tcp://127.0.0.1:{port}", namespace=NAMESPACE, options=options)
        )
        try:
            # containerd 1.6 serves only TCP-capable services (CRI) on its TCP listener, so
            # an answer of "unknown service" proves the connection (and TLS) worked.
            with pytest.raises(Unimplemented, match="unknown service"):
                client.version()
        finally:
            client.close()
        if tls:
            plain = RemoteClient(
                ClientConfig(address=f"tcp://127.0.0.1:{port}", namespace=NAMESPACE, timeout=3)
            )
            with pytest.raises(Unavailable):
                plain.version()
            plain.close()
    finally:
        daemon.stop()


@pytest.mark.containerd
def test_event_poll_waits_boundedly_and_ends_on_close(client: RemoteClient) -> None:
    """poll() gives up after its timeout, returns events as they come, and its reader
    thread ends with close(): an abandoned async read holds no thread for long."""
    import threading
    import time

    stream = client.events(["topic~=/containers/"])
    started = time.monotonic()
    assert stream.poll(0.2) is None
    assert 0.15 < time.monotonic() - started < 5
    spec = generate_spec(with_process_args("true"), with_rootfs("/nonexistent-rootfs"))
    container = client.new_container(f"poll-{os.getpid()}", spec)
    try:
        event = stream.poll(10)
        assert event is not None and event.type is EventType.CONTAINER_CREATE
        assert event.container_id == container.id
    finally:
        container.delete()
    stream.close()
    assert stream.poll(5) is None
    assert stream.closed
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
        t.name == "libcontainerd-remote-events" for t in threading.enumerate()
    ):
        time.sleep(0.05)
    assert not any(t.name == "libcontainerd-remote-events" for t in threading.enumerate())


@pytest.mark.containerd
def test_closing_the_client_under_an_event_stream_ends_it_quietly(daemon: object) -> None:
    """A stream whose client closes first ends (poll gives None) and its reader thread
    ends without an exception, instead of probing the closed channel."""
    import threading
    import time

    remote = RemoteClient(ClientConfig(namespace=NAMESPACE, address=daemon.address))  # type: ignore[attr-defined]
    stream = remote.events()
    raised: list[BaseException | None] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: raised.append(args.exc_value)
    try:
        remote.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and stream.poll(0.5) is not None:
            pass
        assert stream.poll(5) is None
        while time.monotonic() < deadline and any(
            t.name == "libcontainerd-remote-events" for t in threading.enumerate()
        ):
            time.sleep(0.05)
        assert not any(t.name == "libcontainerd-remote-events" for t in threading.enumerate())
    finally:
        threading.excepthook = previous
        stream.close()
    assert raised == []


@pytest.mark.containerd
def test_health_check(client: RemoteClient, tmp_path: Path) -> None:
    assert client.healthy()
    with pytest.raises(InvalidArgument):
        client.healthy(0)
    gone = RemoteClient(ClientConfig(address=str(tmp_path / "nobody.sock")))
    try:
        assert not gone.healthy(0.3)
    finally:
        gone.close()


def test_health_response_decoding() -> None:
    from libcontainerd._health import HealthStatus, decode_health_response

    assert decode_health_response(b"\x08\x01") is HealthStatus.SERVING
    assert decode_health_response(b"") is HealthStatus.UNKNOWN
    assert decode_health_response(b"\x08\x02") is HealthStatus.NOT_SERVING
    assert decode_health_response(b"\x08\x09") is None
    assert decode_health_response(b"\x10\x01") is None
