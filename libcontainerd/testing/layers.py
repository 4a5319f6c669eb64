"""Tar entries and layer blobs for test images: deterministic, and hostile when asked.

:func:`build_layer` makes one layer blob from a list of :class:`TarEntrySpec`; it writes
whatever it is given (absolute names, ``..``, symlinks that point outside the root,
hardlinks, devices, whiteouts), so unpack code can be tested against them. Entries are
sorted, mtimes and owners fixed, gzip written without name or time: the same entries
give the same digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

import attrs

from libcontainerd.errors import InvalidArgument

__all__ = [
    "OPAQUE_WHITEOUT",
    "Compression",
    "EntryInput",
    "EntryKind",
    "LayerBlob",
    "TarEntrySpec",
    "as_spec",
    "build_layer",
    "check_compression",
    "entry_order",
    "sha256_hex_digest",
    "whiteout",
]

OPAQUE_WHITEOUT = ".wh..wh..opq"
"""Name of the entry that marks its directory opaque (hides all lower-layer content)."""

_WHITEOUT_PREFIX = ".wh."

EntryKind = Literal["file", "dir", "symlink", "hardlink", "char", "block", "fifo"]
Compression = Literal["gzip", "none"]

_TAR_TYPES: dict[str, bytes] = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}
_DEFAULT_MODES: dict[str, int] = {
    "file": 0o644,
    "dir": 0o755,
    "symlink": 0o777,
    "hardlink": 0o644,
    "char": 0o666,
    "block": 0o660,
    "fifo": 0o644,
}


# --------------------------------------------------------------------------------------
# Tar entries and layers
# --------------------------------------------------------------------------------------


def _check_kind(_inst: object, _attr: object, value: str) -> None:
    if not isinstance(value, str) or value not in _TAR_TYPES:
        raise InvalidArgument(
            f"unknown tar entry kind {value!r}; use one of {', '.join(sorted(_TAR_TYPES))}"
        )


def _check_bytes(_inst: object, attr: attrs.Attribute[bytes], value: bytes) -> None:
    if not isinstance(value, bytes):
        raise InvalidArgument(f"tar entry {attr.name} must be bytes, got {type(value).__name__}")


def _check_str(_inst: object, attr: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str):
        raise InvalidArgument(f"tar entry {attr.name} must be a str, got {type(value).__name__}")


def _check_non_negative(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidArgument(f"tar entry {attr.name} must be an integer >= 0, got {value!r}")


@attrs.frozen
class TarEntrySpec:
    """One entry of a layer tar, described exactly (for :func:`build_layer`).

    ``kind`` is ``file``, ``dir``, ``symlink``, ``hardlink``, ``char``, ``block`` or
    ``fifo``. ``mode`` holds permission bits (including setuid/setgid/sticky, at most
    ``0o7777``); ``None`` picks the usual default for the kind (0644 files, 0755 dirs, 0777
    symlinks). ``linkname`` is the target of a symlink (any text, absolute or escaping the
    root included) or of a hardlink (the name of another entry in the archive) and must be
    empty for other kinds. ``content`` is only for files; ``devmajor``/``devminor`` only for
    ``char`` and ``block`` devices.

    Nothing here checks that the entry is *safe*: crafting hostile input is the point.
    """

    kind: EntryKind = attrs.field(default="file", validator=_check_kind)
    content: bytes = attrs.field(default=b"", validator=_check_bytes)
    mode: int | None = None
    uid: int = attrs.field(default=0, validator=_check_non_negative)
    gid: int = attrs.field(default=0, validator=_check_non_negative)
    linkname: str = attrs.field(default="", validator=_check_str)
    devmajor: int = attrs.field(default=0, validator=_check_non_negative)
    devminor: int = attrs.field(default=0, validator=_check_non_negative)
    mtime: int = attrs.field(default=0, validator=_check_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.mode is not None and (
            not isinstance(self.mode, int) or not 0 <= self.mode <= 0o7777
        ):
            raise InvalidArgument(
                f"tar entry mode must be permission bits between 0 and 0o7777, "
                f"got {self.mode!r} (the file type comes from `kind`)"
            )
        if self.content and self.kind != "file":
            raise InvalidArgument(f"a {self.kind} entry cannot have content; only files do")
        if self.kind in ("symlink", "hardlink"):
            if not self.linkname:
                raise InvalidArgument(f"a {self.kind} entry needs a linkname (its target)")
        elif self.linkname:
            raise InvalidArgument(f"a {self.kind} entry cannot have a linkname")
        if self.kind not in ("char", "block") and (self.devmajor or self.devminor):
            raise InvalidArgument(
                f"a {self.kind} entry cannot have device numbers; only char and block do"
            )

    @property
    def effective_mode(self) -> int:
        """The permission bits written to the archive (``mode`` or the kind's default)."""
        return _DEFAULT_MODES[self.kind] if self.mode is None else self.mode

    @classmethod
    def file(
        cls, content: bytes = b"", *, mode: int = 0o644, uid: int = 0, gid: int = 0
    ) -> TarEntrySpec:
        """A regular file."""
        return cls("file", content=content, mode=mode, uid=uid, gid=gid)

    @classmethod
    def dir(cls, *, mode: int = 0o755, uid: int = 0, gid: int = 0) -> TarEntrySpec:
        """A directory."""
        return cls("dir", mode=mode, uid=uid, gid=gid)

    @classmethod
    def symlink(cls, target: str, *, uid: int = 0, gid: int = 0) -> TarEntrySpec:
        """A symbolic link to ``target`` (written verbatim, even if absolute or escaping)."""
        return cls("symlink", linkname=target, uid=uid, gid=gid)

    @classmethod
    def hardlink(cls, target: str) -> TarEntrySpec:
        """A hard link to the archive entry named ``target`` (written verbatim)."""
        return cls("hardlink", linkname=target)

    @classmethod
    def char_device(cls, major: int, minor: int, *, mode: int = 0o666) -> TarEntrySpec:
        """A character device node."""
        return cls("char", devmajor=major, devminor=minor, mode=mode)

    @classmethod
    def block_device(cls, major: int, minor: int, *, mode: int = 0o660) -> TarEntrySpec:
        """A block device node."""
        return cls("block", devmajor=major, devminor=minor, mode=mode)

    @classmethod
    def fifo(cls, *, mode: int = 0o644) -> TarEntrySpec:
        """A named pipe."""
        return cls("fifo", mode=mode)


EntryInput = bytes | TarEntrySpec
"""What a layer's file map holds: plain bytes (a 0644 root-owned file) or a full spec."""


class LayerBlob(NamedTuple):
    """A layer made by :func:`build_layer`: the blob, its uncompressed and blob digests.

    ``diff_id`` is the sha256 of the uncompressed tar (what an image config lists),
    ``digest`` the sha256 of ``data`` (what a manifest lists); they are equal for an
    uncompressed layer.
    """

    data: bytes
    diff_id: str
    digest: str

    @property
    def compressed(self) -> bool:
        """Whether ``data`` is gzip-compressed."""
        return self.diff_id != self.digest


def whiteout(path: str) -> str:
    """The name of the whiteout entry that deletes ``path`` from lower layers.

    ``whiteout("etc/motd")`` is ``"etc/.wh.motd"``; map it to ``b""`` in a layer.
    """
    parent, _, name = path.strip("/").rpartition("/")
    if not name:
        raise InvalidArgument(f"cannot white out {path!r}: it names no file")
    return f"{parent}/{_WHITEOUT_PREFIX}{name}" if parent else f"{_WHITEOUT_PREFIX}{name}"


def sha256_hex_digest(data: bytes) -> str:
    """The ``sha256:<hex>`` digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def as_spec(value: EntryInput) -> TarEntrySpec:
    """``value`` as a :class:`TarEntrySpec` (bytes become a regular file)."""
    if isinstance(value, TarEntrySpec):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return TarEntrySpec("file", content=bytes(value))
    raise InvalidArgument(
        f"layer entries must be bytes or TarEntrySpec, got {type(value).__name__}"
    )


def _entry_list(
    files: Mapping[str, EntryInput] | Sequence[tuple[str, EntryInput]],
) -> list[tuple[str, TarEntrySpec]]:
    items = files.items() if isinstance(files, Mapping) else files
    out: list[tuple[str, TarEntrySpec]] = []
    for name, value in items:
        if not isinstance(name, str) or not name or "\0" in name:
            raise InvalidArgument(f"tar entry names must be non-empty strings, got {name!r}")
        out.append((name, as_spec(value)))
    return out


def entry_order(item: tuple[str, TarEntrySpec]) -> tuple[int, tuple[str, ...]]:
    """Sort key putting parents before children, then by path."""
    # Comparing path components (not whole strings) puts every directory right before its
    # contents ("a/b" sorts before "a-b/c"); hardlinks go last so their targets precede them.
    name, spec = item
    return (1 if spec.kind == "hardlink" else 0, tuple(name.split("/")))


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    # Fixed mtime and empty filename keep the gzip header free of host or time details.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return buf.getvalue()


def check_compression(compression: str) -> None:
    """Refuse a compression other than ``gzip`` or ``none``."""
    if compression not in ("gzip", "none"):
        raise InvalidArgument(f"compression must be 'gzip' or 'none', got {compression!r}")


def build_layer(
    files: Mapping[str, EntryInput] | Sequence[tuple[str, EntryInput]],
    *,
    compression: Compression = "gzip",
    sort: bool = True,
) -> LayerBlob:
    """Make one layer blob from ``files``: entry name -> bytes or :class:`TarEntrySpec`.

    Names are written **exactly as given** (no leading ``/`` stripped, ``..`` kept, no
    parent directories added) so that hostile layers can be crafted; pass clean relative
    names such as ``"etc/motd"`` for a normal layer. ``files`` may also be a sequence of
    ``(name, entry)`` pairs, which allows duplicate names. With ``sort`` (the default)
    entries are ordered by path components, so each directory comes before its contents and
    hardlinks come after everything else; ``sort=False`` keeps the given order (to craft,
    say, a file written through a symlink that an earlier entry created).

    Returns a :class:`LayerBlob` (a ``(data, diff_id, digest)`` tuple). The tar is PAX
    format with owners' names empty, mtimes as given (0 by default), so the output depends
    on the input only.
    """
    check_compression(compression)
    entries = _entry_list(files)
    if sort:
        entries.sort(key=entry_order)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, spec in entries:
            info = tarfile.TarInfo(name)
            info.type = _TAR_TYPES[spec.kind]
            info.mode = spec.effective_mode
            info.uid, info.gid = spec.uid, spec.gid
            info.uname = info.gname = ""
            info.mtime = spec.mtime
            info.linkname = spec.linkname
            info.devmajor, info.devminor = spec.devmajor, spec.devminor
            info.size = len(spec.content) if spec.kind == "file" else 0
            tar.addfile(info, io.BytesIO(spec.content) if spec.kind == "file" else None)
    tar_bytes = raw.getvalue()
    diff_id = sha256_hex_digest(tar_bytes)
    if compression == "none":
        return LayerBlob(tar_bytes, diff_id, diff_id)
    data = _gzip(tar_bytes)
    return LayerBlob(data, diff_id, sha256_hex_digest(data))
