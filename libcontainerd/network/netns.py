"""Persistent network namespaces: a new namespace bind-mounted onto a file, and its removal.

The namespace must exist before the task does (the spec names its path and the CNI
plugins configure it), and outlive every process in it until the task is deleted, so it
is pinned by a bind mount of its ``nsfs`` handle, as ``ip netns add`` does.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from pathlib import Path

from libcontainerd.errors import FailedPrecondition, PermissionDenied

__all__ = ["create_netns", "is_netns_mount", "remove_netns"]

_CLONE_NEWNET = 0x40000000
_MS_BIND = 0x1000
_MNT_DETACH = 0x2
_NSFS_MAGIC = 0x6E736673

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str, path: Path) -> None:
    if result != 0:
        code = ctypes.get_errno()
        if code == errno.EPERM:
            raise PermissionDenied(
                f"{what} for network namespace {path}: not permitted (networking needs root "
                "or CAP_SYS_ADMIN and CAP_NET_ADMIN)"
            )
        raise OSError(code, f"{what} for network namespace {path}: {os.strerror(code)}")


def create_netns(path: Path) -> None:
    """Create a network namespace and pin it at ``path`` (which must not exist yet).

    The namespace is made by a short-lived thread: ``unshare(CLONE_NEWNET)`` moves only
    the calling thread, so the caller's own namespace never changes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
    except FileExistsError:
        raise FailedPrecondition(
            f"network namespace file {path} exists already; remove_netns() it first"
        ) from None
    failure: list[BaseException] = []

    def pin() -> None:
        try:
            _check(_libc.unshare(_CLONE_NEWNET), "unshare", path)
            source = f"/proc/self/task/{threading.get_native_id()}/ns/net".encode()
            _check(_libc.mount(source, os.fsencode(path), None, _MS_BIND, None), "mount", path)
        except BaseException as error:  # handed to the creating thread
            failure.append(error)

    thread = threading.Thread(target=pin, name="libcontainerd-netns")
    thread.start()
    thread.join()
    if failure:
        path.unlink(missing_ok=True)
        raise failure[0]


def is_netns_mount(path: Path) -> bool:
    """Whether ``path`` currently pins a network namespace."""
    buffer = ctypes.create_string_buffer(256)  # struct statfs, f_type first
    if _libc.statfs(os.fsencode(path), buffer) != 0:
        return False
    return int.from_bytes(buffer.raw[:8], "little") & 0xFFFFFFFF == _NSFS_MAGIC


def remove_netns(path: Path) -> None:
    """Unpin and delete ``path``; a missing or unmounted file is fine (idempotent)."""
    while is_netns_mount(path):
        if _libc.umount2(os.fsencode(path), _MNT_DETACH) != 0:
            code = ctypes.get_errno()
            if code in (errno.EINVAL, errno.ENOENT):
                break
            _check(-1, "umount", path)
    path.unlink(missing_ok=True)
