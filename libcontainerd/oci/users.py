"""User and group resolution against a container's root filesystem.

An image names its user as ``"uid"``, ``"name"``, ``"uid:gid"``, ``"name:group"`` (or any
mix); the runtime spec needs numbers. This module reads the rootfs's ``/etc/passwd`` and
``/etc/group`` -- following symlinks *inside* the rootfs only, so an image cannot make the
host's files answer -- and turns such a string into a uid, a primary gid and the
supplementary gids.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import attrs

from libcontainerd.errors import InvalidArgument, NotFound

__all__ = [
    "MAX_ID",
    "GroupEntry",
    "PasswdEntry",
    "ResolvedUser",
    "parse_group",
    "parse_passwd",
    "parse_user",
    "read_group",
    "read_passwd",
    "resolve_in_root",
    "resolve_user",
]

#: The largest uid/gid accepted. The kernel allows up to 2**32 - 2, but runc (and so the
#: runtimes this project drives) rejects ids above the signed 32-bit range.
MAX_ID = 2**31 - 1

_MAX_SYMLINKS = 40  # Linux's own limit (MAXSYMLINKS) for one path walk


def _check_id(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what} must be an int, got {type(value).__name__}")
    if not 0 <= value <= MAX_ID:
        raise InvalidArgument(f"{what} {value} is out of range; it must be in 0..{MAX_ID}")
    return value


def _check_name(value: str, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a str, got {type(value).__name__}")
    if not value or any(c in value for c in ":\n\0"):
        raise InvalidArgument(
            f"{what} {value!r} must be non-empty and contain no ':', newline or NUL"
        )
    return value


def _check_entry_id(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    _check_id(value, attr.name)


def _check_entry_name(_inst: object, attr: attrs.Attribute[str], value: str) -> None:
    _check_name(value, attr.name)


def _str_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _int_tuple(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(values)


@attrs.frozen
class PasswdEntry:
    """One line of an ``/etc/passwd`` file (the fields a container runtime needs)."""

    name: str = attrs.field(validator=_check_entry_name)
    uid: int = attrs.field(validator=_check_entry_id)
    gid: int = attrs.field(validator=_check_entry_id)
    home: str = ""
    shell: str = ""

    def to_line(self) -> str:
        """Format the entry as a passwd line (password field ``x``, empty GECOS)."""
        return f"{self.name}:x:{self.uid}:{self.gid}::{self.home}:{self.shell}"


@attrs.frozen
class GroupEntry:
    """One line of an ``/etc/group`` file."""

    name: str = attrs.field(validator=_check_entry_name)
    gid: int = attrs.field(validator=_check_entry_id)
    members: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)

    def to_line(self) -> str:
        """Format the entry as a group line (password field ``x``)."""
        return f"{self.name}:x:{self.gid}:{','.join(self.members)}"


@attrs.frozen
class ResolvedUser:
    """The numeric identity a user string resolved to."""

    uid: int = attrs.field(validator=_check_entry_id)
    gid: int = attrs.field(validator=_check_entry_id)
    additional_gids: tuple[int, ...] = attrs.field(default=(), converter=_int_tuple)


def _parse_number(text: str) -> int | None:
    # Only plain decimal digits count: int() would also take "+1", " 1" or "1_0".
    if not text or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def parse_passwd(text: str) -> list[PasswdEntry]:
    """Parse the content of an ``/etc/passwd`` file.

    Blank lines, comments and lines that are not well formed (too few fields, non-numeric
    ids, NIS ``+``/``-`` entries) are skipped, as the C library does, so that one odd line in
    an image does not make every other user unusable.
    """
    entries: list[PasswdEntry] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) < 4:
            continue
        name = fields[0]
        uid, gid = _parse_number(fields[2]), _parse_number(fields[3])
        if not name or name[0] in "+-" or uid is None or gid is None:
            continue
        home = fields[5] if len(fields) > 5 else ""
        shell = fields[6] if len(fields) > 6 else ""
        entries.append(PasswdEntry(name=name, uid=uid, gid=gid, home=home, shell=shell))
    return entries


def parse_group(text: str) -> list[GroupEntry]:
    """Parse the content of an ``/etc/group`` file; malformed lines are skipped."""
    entries: list[GroupEntry] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) < 3:
            continue
        name = fields[0]
        gid = _parse_number(fields[2])
        if not name or name[0] in "+-" or gid is None:
            continue
        members = tuple(m.strip() for m in fields[3].split(",")) if len(fields) > 3 else ()
        entries.append(GroupEntry(name=name, gid=gid, members=tuple(m for m in members if m)))
    return entries


def resolve_in_root(root: Path, path: str) -> Path:
    """Resolve ``path`` as the container would see it, with ``root`` as ``/``.

    Symlinks are followed, but absolute targets and ``..`` are interpreted relative to
    ``root`` and can never leave it. The result need not exist.
    """
    root = Path(root)
    remaining = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    followed = 0
    while remaining:
        part = remaining.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            followed += 1
            if followed > _MAX_SYMLINKS:
                raise InvalidArgument(
                    f"too many levels of symbolic links resolving {path!r} under {root}"
                )
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            remaining = [p for p in target.split("/") if p not in ("", ".")] + remaining
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


def _read_file(rootfs: Path, path: str) -> str | None:
    try:
        return resolve_in_root(rootfs, path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None


def read_passwd(rootfs: Path) -> list[PasswdEntry]:
    """The entries of ``rootfs``'s ``/etc/passwd`` (empty when the file does not exist)."""
    text = _read_file(Path(rootfs), "/etc/passwd")
    return [] if text is None else parse_passwd(text)


def read_group(rootfs: Path) -> list[GroupEntry]:
    """The entries of ``rootfs``'s ``/etc/group`` (empty when the file does not exist)."""
    text = _read_file(Path(rootfs), "/etc/group")
    return [] if text is None else parse_group(text)


def _supplementary(groups: Iterable[GroupEntry], username: str, primary: int) -> tuple[int, ...]:
    gids = [primary]
    for group in groups:
        if username in group.members and group.gid not in gids:
            gids.append(group.gid)
    return tuple(gids)


def _need_rootfs(rootfs: Path | None, user: str, name: str) -> Path:
    if rootfs is None:
        raise InvalidArgument(
            f"cannot resolve the name {name!r} in user {user!r} without a root filesystem; "
            "pass rootfs= (or set an absolute root path first), or use numeric ids"
        )
    return Path(rootfs)


def parse_user(user: str | int) -> tuple[str, str | None]:
    """Check the syntax of an image-style user string and split it into (user, group).

    Raises :class:`InvalidArgument` for anything but ``uid``/``name`` optionally followed by
    ``:gid``/``:group``, and for numeric ids above :data:`MAX_ID`. Nothing is looked up.
    """
    if isinstance(user, bool):
        raise InvalidArgument("user must be a str or an int, not a bool")
    if isinstance(user, int):
        user = str(_check_id(user, "uid"))
    if not isinstance(user, str):
        raise InvalidArgument(f"user must be a str or an int, got {type(user).__name__}")
    parts = user.split(":")
    if len(parts) > 2 or any(not p for p in parts):
        raise InvalidArgument(
            f"invalid user {user!r}: use 'uid', 'name', 'uid:gid' or 'name:group'"
        )
    for part in parts:
        if part.isascii() and part.isdigit():
            if int(part) > MAX_ID:
                raise InvalidArgument(f"id {part} in user {user!r} is above the maximum {MAX_ID}")
        else:
            _check_name(part, "user or group name")
    return parts[0], (parts[1] if len(parts) == 2 else None)


def resolve_user(user: str | int, rootfs: Path | None = None) -> ResolvedUser:
    """Turn an image-style user string into numeric ids.

    Accepted forms: an int uid, ``"uid"``, ``"name"``, ``"uid:gid"``, ``"name:group"``,
    ``"uid:group"`` and ``"name:gid"``. Names are looked up in ``rootfs``'s ``/etc/passwd`` and
    ``/etc/group``; a name needs ``rootfs`` (:class:`InvalidArgument` without it) and must
    exist (:class:`NotFound` otherwise). With a single user part the primary gid comes from
    passwd (0 when the uid has no entry, like containerd) and the groups that list the user
    become supplementary gids; with an explicit group only that group is used. The primary
    gid is always the first of ``additional_gids``.
    """
    user_part, group_part = parse_user(user)
    uid = _parse_number(user_part)

    entry: PasswdEntry | None = None
    if uid is None:
        root = _need_rootfs(rootfs, str(user), user_part)
        entry = next((e for e in read_passwd(root) if e.name == user_part), None)
        if entry is None:
            raise NotFound(
                f"user {user_part!r} not found in {root}/etc/passwd; "
                "add it to the image or use a numeric uid"
            )
        uid = entry.uid
    elif rootfs is not None:
        entry = next((e for e in read_passwd(Path(rootfs)) if e.uid == uid), None)

    if group_part is not None:
        gid = _parse_number(group_part)
        if gid is None:
            root = _need_rootfs(rootfs, str(user), group_part)
            group = next((g for g in read_group(root) if g.name == group_part), None)
            if group is None:
                raise NotFound(
                    f"group {group_part!r} not found in {root}/etc/group; "
                    "add it to the image or use a numeric gid"
                )
            gid = group.gid
        return ResolvedUser(uid=uid, gid=gid, additional_gids=(gid,))

    if entry is None:
        return ResolvedUser(uid=uid, gid=0, additional_gids=(0,))
    groups = read_group(Path(rootfs)) if rootfs is not None else []
    return ResolvedUser(
        uid=uid, gid=entry.gid, additional_gids=_supplementary(groups, entry.name, entry.gid)
    )
