"""The named-pipe transport pieces that do not need Windows or a daemon.

Win32 itself cannot run here; what is pure Python (retry pacing, error classes, the
TCP owner table layout, the /proc socket table, the platform refusal) is tested directly.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

import libcontainerd
from libcontainerd.errors import DeadlineExceeded, FailedPrecondition
from libcontainerd.remote import _npipe, _npipe_win32
from libcontainerd.remote._relay import (
    Relay,
    normal_endpoint,
    peer_is_this_process,
    unix_socket_dialer,
)

# ------------------------------------------------------------------ platform refusal


def test_npipe_address_on_linux_names_the_platform() -> None:
    with pytest.raises(FailedPrecondition, match=r"only be dialed on Windows.*linux"):
        libcontainerd.new_client(address="npipe:////./pipe/x")


async def _new_async() -> None:
    client = libcontainerd.new_async_client(address="npipe:////./pipe/x")
    await client.close()


def test_npipe_address_on_linux_names_the_platform_async() -> None:
    import asyncio

    with pytest.raises(FailedPrecondition, match=r"only be dialed on Windows.*linux"):
        asyncio.run(_new_async())


def test_connect_pipe_and_owner_table_refuse_off_windows() -> None:
    with pytest.raises(FailedPrecondition, match="Windows"):
        _npipe_win32.connect_pipe(r"\\.\pipe\x")
    with pytest.raises(FailedPrecondition, match="Windows"):
        _npipe_win32.tcp_connection_owner(("127.0.0.1", 1), ("127.0.0.1", 2))


def test_peer_check_on_linux_looks_at_our_descriptors() -> None:
    assert _npipe.relay_peer_check() is peer_is_this_process


def test_relay_channels_give_connection_attempts_time() -> None:
    options = [("grpc.min_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 1000)]
    adjusted = _npipe.relay_channel_options(options)
    assert ("grpc.max_reconnect_backoff_ms", 1000) in adjusted
    assert [value for key, value in adjusted if key == "grpc.min_reconnect_backoff_ms"] == [
        _npipe.RELAY_CONNECT_TIMEOUT_MS
    ]


# ------------------------------------------------------------------ busy retry


class _FakeClock:
    """Stands in for time: a busy pipe cannot be produced without Windows."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@given(busy=st.integers(0, 20), step=st.floats(0.0, 0.5))
def test_retry_while_busy_waits_once_per_busy_answer(busy: int, step: float) -> None:
    clock = _FakeClock()
    answers = iter([*([None] * busy), 7])
    waits: list[int] = []

    def open_once() -> int:
        value = next(answers)
        if value is None:
            raise _npipe_win32.PipeBusy("busy")
        return value

    def wait(ms: int) -> None:
        waits.append(ms)
        clock.now += step

    timeout = 1000.0
    assert (
        _npipe_win32.retry_while_busy(open_once, wait, pipe="p", timeout=timeout, clock=clock) == 7
    )
    assert len(waits) == busy
    assert all(ms >= 1 for ms in waits)


def test_retry_while_busy_gives_up_at_the_deadline() -> None:
    clock = _FakeClock()

    def always_busy() -> int:
        raise _npipe_win32.PipeBusy("busy")

    def wait(ms: int) -> None:
        clock.now += ms / 1000

    with pytest.raises(DeadlineExceeded, match=r"busy for 2s"):
        _npipe_win32.retry_while_busy(always_busy, wait, pipe="p", timeout=2.0, clock=clock)


def test_retry_while_busy_passes_other_errors_through() -> None:
    def missing() -> int:
        raise FileNotFoundError("no such pipe")

    with pytest.raises(FileNotFoundError):
        _npipe_win32.retry_while_busy(missing, lambda ms: None, pipe="p", timeout=5)


def test_read_errors_that_mean_end_of_stream() -> None:
    assert _npipe_win32.read_error_is_eof(_npipe_win32.ERROR_BROKEN_PIPE)
    assert _npipe_win32.read_error_is_eof(_npipe_win32.ERROR_PIPE_NOT_CONNECTED)
    assert not _npipe_win32.read_error_is_eof(_npipe_win32.ERROR_OPERATION_ABORTED)
    assert not _npipe_win32.read_error_is_eof(_npipe_win32.ERROR_MORE_DATA)


# ------------------------------------------------------------------ TCP owner table

_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(str)
_port = st.integers(0, 65535)
_pid = st.integers(0, 2**32 - 1)


def _encode_row(local: tuple[str, int], remote: tuple[str, int], pid: int, ipv6: bool) -> bytes:
    def addr(host: str) -> bytes:
        return ipaddress.ip_address(host).packed

    def port(value: int) -> bytes:
        return value.to_bytes(2, "big") + b"\0\0"

    if ipv6:
        return b"".join(
            [
                addr(local[0]),
                b"\0" * 4,
                port(local[1]),
                addr(remote[0]),
                b"\0" * 4,
                port(remote[1]),
                struct.pack("<II", 5, pid),
            ]
        )
    state = struct.pack("<I", 5)
    return (
        state
        + addr(local[0])
        + port(local[1])
        + addr(remote[0])
        + port(remote[1])
        + (struct.pack("<I", pid))
    )


@given(
    ipv6=st.booleans(),
    data=st.data(),
)
def test_tcp_owner_table_round_trip(ipv6: bool, data: st.DataObject) -> None:
    hosts = _ipv6 if ipv6 else _ipv4
    rows = data.draw(
        st.lists(st.tuples(st.tuples(hosts, _port), st.tuples(hosts, _port), _pid), max_size=8)
    )
    raw = struct.pack("<I", len(rows)) + b"".join(_encode_row(*row, ipv6) for row in rows)
    parsed = _npipe_win32.parse_tcp_owner_table(raw + b"\0" * 7, ipv6=ipv6)
    assert [(row.local, row.remote, row.pid) for row in parsed] == [
        (normal_endpoint(*local), normal_endpoint(*remote), pid) for local, remote, pid in rows
    ]


def test_tcp_owner_table_maps_ipv4_in_ipv6() -> None:
    row = _encode_row(("::ffff:127.0.0.1", 5000), ("::ffff:127.0.0.1", 80), 42, True)
    (parsed,) = _npipe_win32.parse_tcp_owner_table(struct.pack("<I", 1) + row, ipv6=True)
    assert parsed.local == ("127.0.0.1", 5000)
    assert parsed.pid == 42


@given(claimed=st.integers(1, 100), present=st.integers(0, 3))
def test_tcp_owner_table_refuses_a_short_buffer(claimed: int, present: int) -> None:
    if present >= claimed:
        return
    raw = struct.pack("<I", claimed) + b"\0" * (24 * present)
    with pytest.raises(ValueError, match="claims"):
        _npipe_win32.parse_tcp_owner_table(raw, ipv6=False)


# ------------------------------------------------------------------ the peer check, for real


@pytest.fixture
def echo_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Unix-socket echo server standing in for the pipe."""
    path = str(tmp_path_factory.mktemp("echo") / "s")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield path
    server.shutdown(socket.SHUT_RDWR)
    server.close()


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def test_relay_serves_this_process(echo_socket: str) -> None:
    with Relay(
        unix_socket_dialer(echo_socket), name="echo", peer_check=peer_is_this_process
    ) as relay:
        host, port = relay.target.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(b"ping")
            assert conn.recv(4) == b"ping"
        assert relay.accepted == 1
        assert relay.refused == 0


def test_relay_refuses_another_process(echo_socket: str) -> None:
    with Relay(
        unix_socket_dialer(echo_socket), name="echo", peer_check=peer_is_this_process
    ) as relay:
        host, port = relay.target.rsplit(":", 1)
        code = (
            "import socket,sys\n"
            f"s=socket.create_connection(({host!r},{port}),timeout=10)\n"
            "s.sendall(b'ping')\n"
            "sys.stdout.write(repr(s.recv(4)))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
        )
        assert out.stdout in ("b''", ""), out
        assert relay.refused == 1
        assert relay.accepted == 0


@given(host=_ipv4, port=_port)
def test_ipv4_mapped_endpoints_compare_as_ipv4(host: str, port: int) -> None:
    assert normal_endpoint(f"::ffff:{host}", port) == (host, port)
    assert normal_endpoint(host, port) == (host, port)


@given(host=_ipv6.filter(lambda text: ipaddress.ip_address(text).ipv4_mapped is None), port=_port)
def test_other_ipv6_endpoints_stay_ipv6(host: str, port: int) -> None:
    assert normal_endpoint(host, port) == (str(ipaddress.ip_address(host)), port)
