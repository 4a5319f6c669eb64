"""The Windows side of the named-pipe relay: Win32 through ctypes, no extra dependency.

:func:`connect_pipe` opens a client end of a named pipe (``CreateFileW`` with
``FILE_FLAG_OVERLAPPED``; ``WaitNamedPipeW`` and a retry while every instance is busy) and
returns a :class:`~libcontainerd.remote._relay.ByteStream` whose reads and writes are
overlapped, so another thread can end them at once (an abort event and ``CancelIoEx``).
:func:`tcp_connection_owner` asks the TCP table which process owns a loopback connection,
for the relay's peer check.

The module imports on every system; the parts that call Win32 exist only on Windows.
What is independent of Win32 (retry pacing, error classification, the TCP table layout)
is plain Python, unit-tested on Linux.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import attrs

from libcontainerd.errors import DeadlineExceeded, FailedPrecondition
from libcontainerd.remote._relay import ByteStream, Endpoint, normal_endpoint

__all__ = [
    "DIAL_TIMEOUT",
    "ERROR_BROKEN_PIPE",
    "ERROR_FILE_NOT_FOUND",
    "ERROR_HANDLE_EOF",
    "ERROR_MORE_DATA",
    "ERROR_OPERATION_ABORTED",
    "ERROR_PIPE_BUSY",
    "ERROR_PIPE_NOT_CONNECTED",
    "PipeBusy",
    "TcpRow",
    "connect_pipe",
    "own_tcp_peer",
    "parse_tcp_owner_table",
    "read_error_is_eof",
    "retry_while_busy",
    "tcp_connection_owner",
]

DIAL_TIMEOUT = 10.0
"""How long one dial waits for a free pipe instance while all are busy."""

ERROR_FILE_NOT_FOUND = 2
ERROR_HANDLE_EOF = 38
ERROR_BROKEN_PIPE = 109
ERROR_SEM_TIMEOUT = 121
ERROR_INSUFFICIENT_BUFFER = 122
ERROR_PIPE_BUSY = 231
ERROR_PIPE_NOT_CONNECTED = 233
ERROR_MORE_DATA = 234
ERROR_OPERATION_ABORTED = 995
ERROR_IO_PENDING = 997

_T = TypeVar("_T")


class PipeBusy(OSError):
    """Every instance of the pipe is serving another client (``ERROR_PIPE_BUSY``)."""


def retry_while_busy(
    open_once: Callable[[], _T],
    wait_for_instance: Callable[[int], object],
    *,
    pipe: str,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
) -> _T:
    """``open_once()``, retried while it raises :class:`PipeBusy`, for at most ``timeout``.

    Between attempts ``wait_for_instance(milliseconds)`` blocks until an instance may be
    free (``WaitNamedPipeW``); its answer does not matter, because another client can take
    the instance first, so the next attempt decides. Other errors propagate unchanged.
    """
    deadline = clock() + timeout
    while True:
        try:
            return open_once()
        except PipeBusy:
            left = deadline - clock()
            if left <= 0:
                raise DeadlineExceeded(
                    f"every instance of named pipe {pipe} stayed busy for {timeout:g}s; "
                    "containerd is overloaded or another program holds the pipe"
                ) from None
            wait_for_instance(max(1, int(left * 1000)))


def read_error_is_eof(code: int) -> bool:
    """Whether a failed ``ReadFile`` with ``code`` means the server closed its end."""
    return code in (ERROR_BROKEN_PIPE, ERROR_PIPE_NOT_CONNECTED, ERROR_HANDLE_EOF)


@attrs.frozen
class TcpRow:
    """One connection from a TCP owner table: both endpoints and the owning process."""

    local: Endpoint
    remote: Endpoint
    pid: int


# MIB_TCPROW_OWNER_PID: state, local address, local port, remote address, remote port, pid.
_ROW4 = struct.Struct("<I4s2s2x4s2s2xI")
# MIB_TCP6ROW_OWNER_PID: local address, scope, port, remote address, scope, port, state, pid.
_ROW6 = struct.Struct("<16s4x2s2x16s4x2s2x4xI")


def parse_tcp_owner_table(raw: bytes, *, ipv6: bool) -> list[TcpRow]:
    """Decode a ``MIB_TCPTABLE_OWNER_PID`` (or its IPv6 twin) from ``GetExtendedTcpTable``.

    Addresses and ports are in network byte order (a port in the first two bytes of its
    word); the count and the pid are little-endian words, as everything is on Windows.
    IPv4-mapped IPv6 endpoints come out as IPv4, to compare with ``getpeername()``.
    """
    row = _ROW6 if ipv6 else _ROW4
    if len(raw) < 4:
        raise ValueError(f"TCP table of {len(raw)} bytes has no row count")
    (count,) = struct.unpack_from("<I", raw, 0)
    if 4 + count * row.size > len(raw):
        raise ValueError(f"TCP table claims {count} rows but holds {len(raw)} bytes")
    rows = []
    for index in range(count):
        fields = row.unpack_from(raw, 4 + index * row.size)
        if not ipv6:
            fields = fields[1:]  # the state leads the IPv4 row
        laddr, lport, raddr, rport, pid = fields
        rows.append(
            TcpRow(
                normal_endpoint(str(ipaddress.ip_address(laddr)), int.from_bytes(lport, "big")),
                normal_endpoint(str(ipaddress.ip_address(raddr)), int.from_bytes(rport, "big")),
                pid,
            )
        )
    return rows


if sys.platform == "win32":
    import ctypes
    from ctypes import wintypes

    _GENERIC_READ = 0x80000000
    _GENERIC_WRITE = 0x40000000
    _OPEN_EXISTING = 3
    _FILE_FLAG_OVERLAPPED = 0x40000000
    # Identification level only: the server may learn who we are but not act as us.
    _SECURITY_SQOS_PRESENT = 0x00100000
    _SECURITY_IDENTIFICATION = 0x00010000
    _INFINITE = 0xFFFFFFFF
    _WAIT_OBJECT_0 = 0
    _AF_INET = 2
    _AF_INET6 = 23
    _TCP_TABLE_OWNER_PID_ALL = 5
    _INVALID_HANDLE = ctypes.c_void_p(-1).value

    class _Overlapped(ctypes.Structure):
        _fields_ = (
            ("Internal", ctypes.c_size_t),
            ("InternalHigh", ctypes.c_size_t),
            ("Offset", wintypes.DWORD),
            ("OffsetHigh", wintypes.DWORD),
            ("hEvent", wintypes.HANDLE),
        )

    _kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    _iphlpapi = ctypes.WinDLL("iphlpapi", use_last_error=True)

    def _bind(
        dll: ctypes.WinDLL, name: str, restype: object, *argtypes: object
    ) -> Callable[..., int]:
        function = getattr(dll, name)
        function.restype = restype
        function.argtypes = argtypes
        return function  # type: ignore[no-any-return]

    _LPOVERLAPPED = ctypes.POINTER(_Overlapped)
    _CreateFileW = _bind(
        _kernel32,
        "CreateFileW",
        wintypes.HANDLE,
        wintypes.LPCWSTR,
        wintypes.DWORD,
        wintypes.DWORD,
        wintypes.LPVOID,
        wintypes.DWORD,
        wintypes.DWORD,
        wintypes.HANDLE,
    )
    _WaitNamedPipeW = _bind(
        _kernel32, "WaitNamedPipeW", wintypes.BOOL, wintypes.LPCWSTR, wintypes.DWORD
    )
    _ReadFile = _bind(
        _kernel32,
        "ReadFile",
        wintypes.BOOL,
        wintypes.HANDLE,
        wintypes.LPVOID,
        wintypes.DWORD,
        wintypes.LPDWORD,
        _LPOVERLAPPED,
    )
    _WriteFile = _bind(
        _kernel32,
        "WriteFile",
        wintypes.BOOL,
        wintypes.HANDLE,
        wintypes.LPCVOID,
        wintypes.DWORD,
        wintypes.LPDWORD,
        _LPOVERLAPPED,
    )
    _GetOverlappedResult = _bind(
        _kernel32,
        "GetOverlappedResult",
        wintypes.BOOL,
        wintypes.HANDLE,
        _LPOVERLAPPED,
        wintypes.LPDWORD,
        wintypes.BOOL,
    )
    _CancelIoEx = _bind(_kernel32, "CancelIoEx", wintypes.BOOL, wintypes.HANDLE, _LPOVERLAPPED)
    _CreateEventW = _bind(
        _kernel32,
        "CreateEventW",
        wintypes.HANDLE,
        wintypes.LPVOID,
        wintypes.BOOL,
        wintypes.BOOL,
        wintypes.LPCWSTR,
    )
    _SetEvent = _bind(_kernel32, "SetEvent", wintypes.BOOL, wintypes.HANDLE)
    _WaitForMultipleObjects = _bind(
        _kernel32,
        "WaitForMultipleObjects",
        wintypes.DWORD,
        wintypes.DWORD,
        ctypes.POINTER(wintypes.HANDLE),
        wintypes.BOOL,
        wintypes.DWORD,
    )
    _CloseHandle = _bind(_kernel32, "CloseHandle", wintypes.BOOL, wintypes.HANDLE)
    _GetExtendedTcpTable = _bind(
        _iphlpapi,
        "GetExtendedTcpTable",
        wintypes.DWORD,
        wintypes.LPVOID,
        ctypes.POINTER(wintypes.DWORD),
        wintypes.BOOL,
        wintypes.ULONG,
        ctypes.c_int,
        wintypes.ULONG,
    )

    def _new_event() -> int:
        event = _CreateEventW(None, True, False, None)
        if not event:
            raise ctypes.WinError(ctypes.get_last_error())
        return event

    class _PipeStream:
        """A connected client end of a named pipe, driven with overlapped I/O."""

        def __init__(self, handle: int) -> None:
            self._handle = handle
            self._aborted = False
            self._abort_event = _new_event()
            self._read_event = _new_event()
            self._write_event = _new_event()
            self._read_buffer = ctypes.create_string_buffer(65536)

        def _transfer(
            self, function: Callable[..., int], buffer: object, size: int, event: int
        ) -> tuple[int, int]:
            """Run one overlapped ReadFile/WriteFile to completion: (bytes, error code)."""
            if self._aborted:
                return 0, ERROR_OPERATION_ABORTED
            overlapped = _Overlapped()
            overlapped.hEvent = event
            done = wintypes.DWORD(0)
            if function(self._handle, buffer, size, ctypes.byref(done), ctypes.byref(overlapped)):
                return done.value, 0
            code = ctypes.get_last_error()
            if code != ERROR_IO_PENDING:
                return 0, code
            waits = (wintypes.HANDLE * 2)(event, self._abort_event)
            if _WaitForMultipleObjects(2, waits, False, _INFINITE) != _WAIT_OBJECT_0:
                _CancelIoEx(self._handle, ctypes.byref(overlapped))
            # Wait for completion (or for the cancel to land) so that the kernel no longer
            # writes into `overlapped` and the buffer once this frame is gone.
            if _GetOverlappedResult(
                self._handle, ctypes.byref(overlapped), ctypes.byref(done), True
            ):
                return done.value, 0
            return done.value, ctypes.get_last_error()

        def recv(self, size: int) -> bytes:
            """See :meth:`ByteStream.recv`; the server closing its end is ``b""``."""
            size = min(size, len(self._read_buffer))
            count, code = self._transfer(_ReadFile, self._read_buffer, size, self._read_event)
            if code in (0, ERROR_MORE_DATA):
                return self._read_buffer.raw[:count]
            if read_error_is_eof(code):
                return b""
            raise ctypes.WinError(code)

        def sendall(self, data: bytes) -> None:
            """See :meth:`ByteStream.sendall`."""
            view = memoryview(data)
            while view:
                chunk = ctypes.create_string_buffer(bytes(view), len(view))
                count, code = self._transfer(_WriteFile, chunk, len(view), self._write_event)
                if code:
                    raise ctypes.WinError(code)
                view = view[count:]

        def abort(self) -> None:
            """End pending and future I/O (the pumps then return); safe from any thread."""
            self._aborted = True
            _SetEvent(self._abort_event)

        def close(self) -> None:
            """Close the pipe and the events; no I/O may be pending."""
            for handle in (self._handle, self._abort_event, self._read_event, self._write_event):
                _CloseHandle(handle)

    def _open_once(path: str) -> int:
        handle = _CreateFileW(
            path,
            _GENERIC_READ | _GENERIC_WRITE,
            0,
            None,
            _OPEN_EXISTING,
            _FILE_FLAG_OVERLAPPED | _SECURITY_SQOS_PRESENT | _SECURITY_IDENTIFICATION,
            None,
        )
        if handle is None or handle == _INVALID_HANDLE:
            code = ctypes.get_last_error()
            if code == ERROR_PIPE_BUSY:
                raise PipeBusy(f"named pipe {path} is busy")
            raise ctypes.WinError(code, f"cannot open named pipe {path}")
        return handle

    def connect_pipe(path: str, timeout: float = DIAL_TIMEOUT) -> ByteStream:
        """Open the client end of named pipe ``path`` (``\\\\.\\pipe\\name``)."""
        handle = retry_while_busy(
            lambda: _open_once(path),
            lambda ms: _WaitNamedPipeW(path, ms),
            pipe=path,
            timeout=timeout,
        )
        try:
            return _PipeStream(handle)
        except OSError:
            _CloseHandle(handle)
            raise

    def _owner_table(family: int) -> bytes:
        size = wintypes.DWORD(0)
        for _ in range(8):  # the table can grow between the size query and the read
            buffer = ctypes.create_string_buffer(max(size.value, 4))
            size.value = len(buffer)
            code = _GetExtendedTcpTable(
                buffer, ctypes.byref(size), False, family, _TCP_TABLE_OWNER_PID_ALL, 0
            )
            if code == 0:
                return buffer.raw
            if code != ERROR_INSUFFICIENT_BUFFER:
                raise ctypes.WinError(code)
        raise ctypes.WinError(ERROR_INSUFFICIENT_BUFFER)

    def tcp_connection_owner(client_end: Endpoint, server_end: Endpoint) -> int:
        """The pid owning the connection from ``client_end`` to ``server_end``, or -1.

        Both tables are read: gRPC may connect from a dual-stack IPv6 socket.
        """
        wanted = (normal_endpoint(*client_end[:2]), normal_endpoint(*server_end[:2]))
        for family, ipv6 in ((_AF_INET, False), (_AF_INET6, True)):
            for row in parse_tcp_owner_table(_owner_table(family), ipv6=ipv6):
                if (row.local, row.remote) == wanted:
                    return row.pid
        return -1

else:

    def connect_pipe(path: str, timeout: float = DIAL_TIMEOUT) -> ByteStream:
        """Named pipes exist on Windows only; elsewhere this raises ``FailedPrecondition``."""
        raise FailedPrecondition(
            f"named pipe {path} can only be opened on Windows, not on {sys.platform}"
        )

    def tcp_connection_owner(client_end: Endpoint, server_end: Endpoint) -> int:
        """Windows' TCP owner table; elsewhere this raises ``FailedPrecondition``."""
        raise FailedPrecondition(f"the Windows TCP owner table does not exist on {sys.platform}")


def own_tcp_peer(conn: socket.socket) -> bool:
    """The relay's peer check on Windows: the connecting socket belongs to this process."""
    return tcp_connection_owner(conn.getpeername(), conn.getsockname()) == os.getpid()
