"""Filesystem steps on directory descriptors, so that the kernel never follows a link for us.

Used by layer unpacking (:mod:`libcontainerd.content.unpack`): every walk starts at the
root's descriptor and opens one component at a time with ``O_NOFOLLOW``; symlinks met on
the way are resolved inside the root.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator

from libcontainerd.errors import (
    DataLoss,
    Error,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unknown,
)

__all__ = [
    "DIR_FLAGS",
    "MAX_COMPONENT_BYTES",
    "MAX_PATH_BYTES",
    "MAX_SYMLINK_HOPS",
    "MissingPath",
    "NotADirectory",
    "clear_entry",
    "fs_error",
    "normalise_name",
    "open_dir",
    "open_physical",
    "remove_tree",
    "resolve_dir",
]

MAX_PATH_BYTES = 4096
MAX_COMPONENT_BYTES = 255
MAX_SYMLINK_HOPS = 40
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class NotADirectory(Exception):
    """A component on the way is not a directory (``path`` is how far the walk got)."""

    def __init__(self, path: tuple[str, ...]) -> None:
        super().__init__("/".join(path))
        self.path = path


class MissingPath(Exception):
    """A component on the way does not exist."""

    pass


def open_dir(parent_fd: int, name: str) -> int:
    """Open directory ``name`` below ``parent_fd`` without following a link."""
    return os.open(name, DIR_FLAGS, dir_fd=parent_fd)


def resolve_dir(
    root_fd: int,
    parts: tuple[str, ...],
    *,
    create: bool,
    created: list[tuple[str, ...]] | None = None,
) -> tuple[int, tuple[str, ...]]:
    """Open the directory ``parts`` below ``root_fd`` with symlinks resolved inside the root.

    Returns a new descriptor (the caller closes it) and the physical path (no symlinks).
    Only two descriptors are held at a time, so deep trees cannot exhaust them.
    """
    pending = list(reversed(parts))
    physical: list[str] = []
    current = os.dup(root_fd)
    hops = 0
    try:
        while pending:
            component = pending.pop()
            if component in ("", "."):
                continue
            if component == "..":
                if physical:
                    # Re-walk the (symlink-free) physical path from the root: cheap, and it
                    # holds no descriptor per level.
                    physical.pop()
                    os.close(current)
                    current = os.dup(root_fd)
                    for step in physical:
                        nxt = open_dir(current, step)
                        os.close(current)
                        current = nxt
                continue
            try:
                nxt = open_dir(current, component)
            except FileNotFoundError:
                if not create:
                    raise MissingPath() from None
                try:
                    os.mkdir(component, 0o755, dir_fd=current)
                except FileExistsError:
                    pass  # made concurrently; the open below decides what it is
                else:
                    if created is not None:
                        created.append((*physical, component))
                nxt = open_dir(current, component)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                st = os.stat(component, dir_fd=current, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise NotADirectory((*physical, component)) from None
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links") from None
                target = os.readlink(component, dir_fd=current)
                if target.startswith("/"):
                    physical.clear()
                    os.close(current)
                    current = os.dup(root_fd)
                pending.extend(reversed(target.split("/")))
                continue
            os.close(current)
            current = nxt
            physical.append(component)
        return current, tuple(physical)
    except BaseException:
        os.close(current)
        raise


def open_physical(root_fd: int, parts: tuple[str, ...]) -> int | None:
    """Open the directory ``parts`` below ``root_fd`` following no symlink at all.

    Returns None when a component is missing or is no longer a real directory.
    """
    current = os.dup(root_fd)
    try:
        for component in parts:
            try:
                nxt = open_dir(current, component)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                    os.close(current)
                    return None
                raise
            os.close(current)
            current = nxt
        return current
    except BaseException:
        os.close(current)
        raise


def remove_tree(parent_fd: int, name: str) -> None:
    """Remove ``name`` (below ``parent_fd``) and everything under it, never following links.

    Iterative, holding one descriptor per level being emptied.
    """
    st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=parent_fd)
        return
    first = open_dir(parent_fd, name)
    stack: list[tuple[int, str, int, Iterator[str]]] = [
        (parent_fd, name, first, iter(os.listdir(first)))
    ]
    try:
        while stack:
            pfd, pname, dfd, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                os.close(dfd)
                os.rmdir(pname, dir_fd=pfd)
                continue
            cst = os.stat(child, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISDIR(cst.st_mode):
                cfd = open_dir(dfd, child)
                stack.append((dfd, child, cfd, iter(os.listdir(cfd))))
            else:
                os.unlink(child, dir_fd=dfd)
    finally:
        for _, _, dfd, _ in stack:
            os.close(dfd)


def clear_entry(parent_fd: int, name: str, *, keep_dir: bool) -> bool:
    """Remove what is at ``name`` so a new entry can take its place.

    Returns True when ``name`` is a directory that was kept (``keep_dir``).
    """
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return True
        remove_tree(parent_fd, name)
    else:
        os.unlink(name, dir_fd=parent_fd)
    return False


def fs_error(exc: OSError, label: str) -> Error:
    """The typed error for an ``OSError`` met while applying entry ``label``."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PermissionDenied(f"layer entry {label}: {reason} (operation not permitted)")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE):
        return ResourceExhausted(f"layer entry {label}: {reason}")
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EEXIST):
        return InvalidArgument(f"layer entry {label}: {reason}")
    if exc.errno == errno.EIO:
        return DataLoss(f"layer entry {label}: I/O error writing it ({reason})")
    return Unknown(f"layer entry {label}: {reason} (errno {exc.errno})")


def normalise_name(name: str, label: str, what: str = "name") -> tuple[str, ...]:
    """Lexically clean an archive path into components, refusing anything unsafe."""
    if "\0" in name:
        raise InvalidArgument(f"layer entry {label}: its {what} contains a NUL byte")
    try:
        encoded = os.fsencode(name)
    except UnicodeError:
        raise InvalidArgument(f"layer entry {label}: its {what} is not encodable") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise InvalidArgument(
            f"layer entry {label}: its {what} is {len(encoded)} bytes long, more than the "
            f"{MAX_PATH_BYTES} a path may have"
        )
    parts: list[str] = []
    for component in name.split("/"):
        if component in ("", "."):
            continue
        if component == "..":
            if not parts:
                raise InvalidArgument(
                    f"layer entry {label}: its {what} climbs out of the root with '..'; "
                    "the layer is malformed or hostile and was not applied further"
                )
            parts.pop()
            continue
        if len(os.fsencode(component)) > MAX_COMPONENT_BYTES:
            raise InvalidArgument(
                f"layer entry {label}: a component of its {what} is longer than "
                f"{MAX_COMPONENT_BYTES} bytes"
            )
        parts.append(component)
    return tuple(parts)
