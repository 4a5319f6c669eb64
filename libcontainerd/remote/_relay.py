"""A byte relay from a loopback endpoint grpcio can dial to a stream it cannot (a named pipe).

grpcio dials ``unix:`` and ``host:port`` targets only; on Windows it cannot dial a named
pipe and, unlike grpc-go, not an AF_UNIX socket either. A :class:`Relay` therefore listens
on ``127.0.0.1:<ephemeral port>``, and for every connection grpcio opens it dials the far
side with its ``dialer`` (on Windows: the pipe) and copies bytes both ways until either
side ends. gRPC multiplexes all calls of a channel over one HTTP/2 connection, so the
relay only sees a handful of connections however many streams are open.

Loopback TCP is reachable by every local user, so each accepted connection must come from
this very process (a :data:`PeerCheck`: :func:`peer_is_this_process` on Linux, the TCP
owner table on Windows); anything else is closed unread.

Nothing here knows about pipes: the far side is any :class:`ByteStream`, which is how the
tests run the relay on Linux with a Unix socket standing in for the pipe.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import sys
import threading
from collections.abc import Callable
from typing import Protocol

from libcontainerd.errors import Error, FailedPrecondition

__all__ = [
    "CHUNK_BYTES",
    "ByteStream",
    "Dialer",
    "Endpoint",
    "PeerCheck",
    "Relay",
    "SocketStream",
    "normal_endpoint",
    "peer_is_this_process",
    "unix_socket_dialer",
]

CHUNK_BYTES = 256 * 1024
"""Largest read of one relay step; a bigger gRPC message simply takes several."""

_JOIN_TIMEOUT = 5.0


class ByteStream(Protocol):
    """A full-duplex byte stream the relay can drive from two threads at once."""

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end of the stream. Raises ``OSError``."""
        ...

    def sendall(self, data: bytes) -> None:
        """Write all of ``data`` or raise ``OSError``."""
        ...

    def abort(self) -> None:
        """Make pending and future ``recv``/``sendall`` end at once; safe from any thread."""
        ...

    def close(self) -> None:
        """Release the stream; called once no I/O is pending."""
        ...


Dialer = Callable[[], ByteStream]
"""Opens a new connection to the far side; raises ``OSError`` or a libcontainerd error."""

PeerCheck = Callable[[socket.socket], bool]
"""Says whether an accepted loopback connection comes from this process."""


class SocketStream:
    """A connected stream socket as a :class:`ByteStream`."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def recv(self, size: int) -> bytes:
        """See :meth:`ByteStream.recv`."""
        return self._sock.recv(size)

    def sendall(self, data: bytes) -> None:
        """See :meth:`ByteStream.sendall`."""
        self._sock.sendall(data)

    def abort(self) -> None:
        """Shut both directions down: a blocked ``recv`` returns ``b""`` at once."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()


def unix_socket_dialer(path: str) -> Dialer:
    """A dialer that connects to the Unix socket at ``path`` (the tests' stand-in for a pipe)."""

    def dial() -> ByteStream:
        if sys.platform == "win32":
            raise FailedPrecondition("the Unix-socket stand-in for a pipe runs on Linux only")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            raise
        return SocketStream(sock)

    return dial


# ------------------------------------------------------------------ peer check


Endpoint = tuple[str, int]
"""An IP endpoint as ``(address, port)``, IPv4-mapped IPv6 addresses written as IPv4."""


def normal_endpoint(host: str, port: int) -> Endpoint:
    """``(host, port)`` with an IPv4-mapped IPv6 address (gRPC's dual-stack sockets) as IPv4."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address), port


def _own_socket_endpoints(fd: int) -> tuple[Endpoint, Endpoint] | None:
    """(local, remote) of this process's socket ``fd``, or ``None`` if it is not one."""
    try:
        copy = os.dup(fd)
    except OSError:
        return None  # closed meanwhile
    try:
        with socket.socket(fileno=copy) as sock:
            copy = -1  # the socket object owns (and closes) the duplicate now
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                return None
            return normal_endpoint(*sock.getsockname()[:2]), normal_endpoint(
                *sock.getpeername()[:2]
            )
    except OSError:
        return None  # not a socket, or not connected
    finally:
        if copy >= 0:
            os.close(copy)


def _linux_peer_is_this_process(peer: Endpoint, local: Endpoint) -> bool:
    """Whether this process holds the socket at ``peer`` that connected to ``local``.

    The 4-tuple of a TCP connection is unique, so finding it among our own descriptors
    proves the peer is us. Only sockets are looked at, by their ``/proc/self/fd`` link.
    """
    wanted = (normal_endpoint(*peer[:2]), normal_endpoint(*local[:2]))
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
        except OSError:
            continue
        if _own_socket_endpoints(int(name)) == wanted:
            return True
    return False


def peer_is_this_process(conn: socket.socket) -> bool:
    """Whether the other end of the accepted loopback connection ``conn`` is this process.

    Looks through this process's descriptors on Linux; Windows has its own check beside
    the pipe code.
    """
    return _linux_peer_is_this_process(conn.getpeername(), conn.getsockname())


# ------------------------------------------------------------------ the relay


class _Link:
    """One accepted gRPC connection joined to one far-side connection."""

    def __init__(self, near: ByteStream, far: ByteStream) -> None:
        self.near = near
        self.far = far

    def abort(self) -> None:
        self.near.abort()
        self.far.abort()

    def _pump(self, source: ByteStream, sink: ByteStream) -> None:
        try:
            while True:
                data = source.recv(CHUNK_BYTES)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # A pipe has no half-close: when either direction ends, the link ends, and
            # gRPC sees a dropped connection that it redials (the far side may restart).
            self.abort()

    def run(self) -> None:
        back = threading.Thread(
            target=self._pump, args=(self.far, self.near), name="relay-back", daemon=True
        )
        back.start()
        self._pump(self.near, self.far)
        back.join()
        self.near.close()
        self.far.close()


class Relay:
    """Listens on loopback for this process's gRPC channel and relays to ``dialer``.

    One relay serves one client and is closed with it. ``target`` is what grpcio dials.
    ``peer_check`` vets every accepted connection; ``None`` (no check) is only for tests
    that connect from another process on purpose.
    """

    def __init__(self, dialer: Dialer, *, name: str, peer_check: PeerCheck | None) -> None:
        self.name = name
        self._dialer = dialer
        self._peer_check = peer_check
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._threads: set[threading.Thread] = set()
        self._closed = False
        self.accepted = 0
        """Connections accepted and relayed so far (refused peers not counted)."""
        self.refused = 0
        """Connections closed unread because they came from another process."""
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._listener.bind(("127.0.0.1", 0))
            self._listener.listen(64)
        except OSError:
            self._listener.close()
            raise
        host, port = self._listener.getsockname()[:2]
        self.target = f"{host}:{port}"
        """The gRPC target of the relay (``127.0.0.1:<port>``)."""
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"relay-accept {name}", daemon=True
        )
        self._acceptor.start()

    def __repr__(self) -> str:
        return f"<Relay {self.target} -> {self.name}>"

    @property
    def open_links(self) -> int:
        """Connections currently being relayed."""
        with self._lock:
            return len(self._links)

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                thread = threading.Thread(
                    target=self._serve, args=(conn,), name=f"relay {self.name}", daemon=True
                )
                self._threads.add(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._serve_connection(conn)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _serve_connection(self, conn: socket.socket) -> None:
        try:
            allowed = self._peer_check is None or self._peer_check(conn)
        except OSError:
            allowed = False
        if not allowed:
            self.refused += 1
            conn.close()
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            far = self._dialer()
        except (OSError, Error):
            # Closing makes gRPC report UNAVAILABLE and redial with backoff, the same as
            # when the daemon's own socket is missing.
            conn.close()
            return
        link = _Link(SocketStream(conn), far)
        with self._lock:
            if self._closed:
                link.abort()
            self._links.add(link)
            self.accepted += 1
        try:
            link.run()
        finally:
            with self._lock:
                self._links.discard(link)

    def close(self) -> None:
        """Stop listening and end every relayed connection; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            links = list(self._links)
            threads = list(self._threads)
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        self._listener.close()
        for link in links:
            link.abort()
        self._acceptor.join(_JOIN_TIMEOUT)
        for thread in threads:
            thread.join(_JOIN_TIMEOUT)

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
