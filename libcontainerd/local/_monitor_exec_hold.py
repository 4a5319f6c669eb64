"""Holding back program starts in a container, for the monitor (standard library only).

``crun exec`` with a terminal lets the new process run on before it sizes the pty (it
sets ``consoleSize`` from its parent process once the child is already on its way to
``execve``), so a quick process can read a 0x0 terminal. While an :class:`ExecHold`
is held, a fanotify permission mark on the container's root mount makes every
``execve`` of a program there wait; releasing it (closing the fanotify group) lets them
all proceed. The monitor holds it from before the runtime runs until the pty is sized.

Best effort: without fanotify (no CAP_SYS_ADMIN, a kernel without permission events)
nothing is held; a program on another mount of the container is not held either.
"""

from __future__ import annotations

import ctypes
import os
import threading

_FAN_CLOEXEC = 0x1
_FAN_CLASS_CONTENT = 0x4
_FAN_MARK_ADD = 0x1
_FAN_MARK_MOUNT = 0x10
_FAN_OPEN_EXEC_PERM = 0x40000
_AT_FDCWD = -100

_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
_LIBC.fanotify_mark.argtypes = [
    ctypes.c_int,
    ctypes.c_uint,
    ctypes.c_uint64,
    ctypes.c_int,
    ctypes.c_char_p,
]


class ExecHold:
    """Makes program starts on the root mount of process ``pid`` wait until released."""

    def __init__(self, pid: int) -> None:
        self.lock = threading.Lock()
        self.fd = -1
        fd = _LIBC.fanotify_init(_FAN_CLOEXEC | _FAN_CLASS_CONTENT, os.O_RDONLY | os.O_CLOEXEC)
        if fd < 0:
            return
        root = f"/proc/{pid}/root/".encode()
        if _LIBC.fanotify_mark(
            fd, _FAN_MARK_ADD | _FAN_MARK_MOUNT, _FAN_OPEN_EXEC_PERM, _AT_FDCWD, root
        ):
            os.close(fd)
            return
        self.fd = fd

    @property
    def held(self) -> bool:
        """Whether program starts are being held (fanotify was available)."""
        return self.fd >= 0

    def release(self) -> None:
        """Let every waiting and later program start proceed (idempotent)."""
        with self.lock:
            fd, self.fd = self.fd, -1
        if fd >= 0:
            # Closing the group answers its pending permission events with "allow".
            os.close(fd)
