"""Build small, deterministic OCI images from files on this machine.

Tests, examples and users need images without a network. This module makes them from the
host's static busybox (Debian package ``busybox-static``):

* :func:`busybox_rootfs` writes a minimal root filesystem into a directory, ready to be an
  OCI runtime bundle's ``rootfs`` for runc or crun;
* :func:`build_image` writes an OCI image-layout directory holding an image of that rootfs
  (plus optional extra layers), for one platform or as a multi-platform index;
* :func:`write_layout_archive` and :func:`write_docker_archive` turn a layout into the tar
  archives that ``import`` code paths (``oci-archive`` and ``docker save`` formats) read;
* :func:`build_layer` makes one layer blob from a list of :class:`TarEntrySpec`; it writes
  whatever it is given, hostile entries included (absolute names, ``..``, symlinks that
  point outside the root, hardlinks, devices, whiteouts), so unpack code can be tested
  against them.

Everything is deterministic: the same inputs give byte-identical blobs and so identical
digests (entries sorted, mtimes and owners fixed, gzip written without name or time).

The files of every platform in a multi-platform image are the host's files: the other
entries serve platform *selection* tests; they cannot run on the host.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import tarfile
import tempfile
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NamedTuple

import attrs

from libcontainerd.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    RuntimeCommandError,
)
from libcontainerd.types import platform as platforms_mod
from libcontainerd.types.platform import Platform

__all__ = [
    "DEFAULT_CREATED",
    "DEFAULT_PATH_ENV",
    "OPAQUE_WHITEOUT",
    "BuiltImage",
    "ImageConfigSpec",
    "LayerBlob",
    "TarEntrySpec",
    "build_image",
    "build_layer",
    "busybox_rootfs",
    "find_busybox",
    "host_platform",
    "whiteout",
    "write_docker_archive",
    "write_layout_archive",
]

DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""The ``PATH`` every image gets unless its :class:`ImageConfigSpec` says otherwise."""

DEFAULT_CREATED = "1970-01-01T00:00:00Z"
"""The fixed creation time written into configs, so that digests do not change with time."""

OPAQUE_WHITEOUT = ".wh..wh..opq"
"""Name of the entry that marks its directory opaque (hides all lower-layer content)."""

_WHITEOUT_PREFIX = ".wh."
_REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
_BUSYBOX_ENV = "LIBCONTAINERD_BUSYBOX"
_BUSYBOX_CANDIDATES = (Path("/bin/busybox"), Path("/usr/bin/busybox"))
_INSTALL_HINT = "install it with `apt-get install busybox-static`"

_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

EntryKind = Literal["file", "dir", "symlink", "hardlink", "char", "block", "fifo"]
Compression = Literal["gzip", "none"]
MediaTypes = Literal["oci", "docker"]

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


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _as_spec(value: EntryInput) -> TarEntrySpec:
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
        out.append((name, _as_spec(value)))
    return out


def _sort_key(item: tuple[str, TarEntrySpec]) -> tuple[int, tuple[str, ...]]:
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


def _check_compression(compression: str) -> None:
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
    _check_compression(compression)
    entries = _entry_list(files)
    if sort:
        entries.sort(key=_sort_key)
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
    diff_id = _sha256(tar_bytes)
    if compression == "none":
        return LayerBlob(tar_bytes, diff_id, diff_id)
    data = _gzip(tar_bytes)
    return LayerBlob(data, diff_id, _sha256(data))


# --------------------------------------------------------------------------------------
# The busybox root filesystem
# --------------------------------------------------------------------------------------


_PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "app:x:1000:1000:app:/home/app:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
_GROUP = "root:x:0:\napp:x:1000:\nnobody:x:65534:\n"
_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
_APPLET_RE = re.compile(r"^[A-Za-z0-9_\[\]][A-Za-z0-9_.\[\]+-]*$")


def find_busybox(path: Path | str | None = None) -> Path:
    """Locate the static busybox to copy into images.

    Order: ``path`` when given, else ``$LIBCONTAINERD_BUSYBOX`` when set, else
    ``/bin/busybox``, else ``/usr/bin/busybox``. Raises :class:`NotFound` when none exists
    and :class:`FailedPrecondition` when the file found is not a statically linked ELF
    executable (a dynamically linked one cannot run inside a bare image).
    """
    if path is None and os.environ.get(_BUSYBOX_ENV):
        path = os.environ[_BUSYBOX_ENV]
        if not Path(path).is_file():
            raise NotFound(f"${_BUSYBOX_ENV} names {path!r}, which is not a file; fix or unset it")
    if path is not None:
        found = Path(path)
        if not found.is_file():
            raise NotFound(f"busybox {str(found)!r} is not a file; {_INSTALL_HINT}")
    else:
        for candidate in _BUSYBOX_CANDIDATES:
            if candidate.is_file():
                found = candidate
                break
        else:
            raise NotFound(
                "no busybox found at /bin/busybox or /usr/bin/busybox (or "
                f"${_BUSYBOX_ENV}); test images are built from it: {_INSTALL_HINT}"
            )
    _check_static_elf(found)
    return found


def _check_static_elf(path: Path) -> None:
    with path.open("rb") as f:
        header = f.read(64)
        if len(header) < 52 or header[:4] != b"\x7fELF":
            raise FailedPrecondition(f"{path} is not an ELF executable; {_INSTALL_HINT}")
        is64 = header[4] == 2
        endian = "<" if header[5] == 1 else ">"
        if is64:
            phoff, phentsize, phnum = (
                struct.unpack_from(endian + "Q", header, 32)[0],
                *struct.unpack_from(endian + "HH", header, 54),
            )
        else:
            phoff, phentsize, phnum = (
                struct.unpack_from(endian + "I", header, 28)[0],
                *struct.unpack_from(endian + "HH", header, 42),
            )
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    pt_interp = 3
    for i in range(phnum):
        if len(table) < (i + 1) * phentsize:
            raise FailedPrecondition(f"{path} has a truncated ELF program header table")
        (p_type,) = struct.unpack_from(endian + "I", table, i * phentsize)
        if p_type == pt_interp:
            raise FailedPrecondition(
                f"{path} is dynamically linked (it needs a program interpreter), so it "
                f"cannot run inside a bare test image; {_INSTALL_HINT} (or point "
                f"${_BUSYBOX_ENV} at a static busybox)"
            )


@functools.lru_cache(maxsize=4)
def _load_busybox(path: str, size: int, mtime_ns: int) -> tuple[bytes, tuple[str, ...]]:
    # Keyed by size and mtime as well as path, so a replaced binary is read afresh.
    del size, mtime_ns
    data = Path(path).read_bytes()
    command = [path, "--list"]
    try:
        proc = subprocess.run(command, capture_output=True, timeout=30, check=False)
    except OSError as exc:
        raise RuntimeCommandError(
            f"cannot run {path} to list its applets: {exc}", command=command
        ) from exc
    if proc.returncode != 0:
        raise RuntimeCommandError(
            f"`{path} --list` failed with exit code {proc.returncode}",
            command=command,
            exit_code=proc.returncode,
            stderr=proc.stderr.decode(errors="replace"),
        )
    names = proc.stdout.decode(errors="replace").split()
    applets = sorted({n for n in names if n != "busybox" and _APPLET_RE.match(n)})
    return data, tuple(applets)


def _busybox_entries(busybox: Path | str | None) -> dict[str, TarEntrySpec]:
    found = find_busybox(busybox)
    st = found.stat()
    data, applets = _load_busybox(str(found.resolve()), st.st_size, st.st_mtime_ns)
    d = TarEntrySpec.dir
    entries: dict[str, TarEntrySpec] = {
        "bin": d(),
        "dev": d(),
        "etc": d(),
        "home": d(),
        "home/app": d(uid=1000, gid=1000),
        "proc": d(mode=0o555),
        "root": d(mode=0o700),
        "run": d(),
        "sys": d(mode=0o555),
        "tmp": d(mode=0o1777),
        "usr": d(),
        "var": d(),
        # One real bin directory; the others point at it, so every PATH entry and every
        # conventional absolute path (/usr/bin/env, /bin/sh) finds the applets.
        "sbin": TarEntrySpec.symlink("bin"),
        "usr/bin": TarEntrySpec.symlink("../bin"),
        "usr/sbin": TarEntrySpec.symlink("../bin"),
        "bin/busybox": TarEntrySpec.file(data, mode=0o755),
        "etc/passwd": TarEntrySpec.file(_PASSWD.encode()),
        "etc/group": TarEntrySpec.file(_GROUP.encode()),
        "etc/hosts": TarEntrySpec.file(_HOSTS.encode()),
    }
    for applet in applets:
        entries.setdefault(f"bin/{applet}", TarEntrySpec.symlink("busybox"))
    return entries


def _normalize_name(name: str) -> str:
    if not isinstance(name, str):
        raise InvalidArgument(f"file paths must be strings, got {name!r}")
    parts = [p for p in PurePosixPath(name).parts if p not in ("/", ".")]
    if not parts or ".." in parts or "\0" in name:
        raise InvalidArgument(
            f"file path {name!r} must name a file inside the image (no '..'); "
            "build hostile layers with build_layer() and pass them in extra_layers"
        )
    return "/".join(parts)


def _with_parents(
    files: Mapping[str, EntryInput], lower: Mapping[str, TarEntrySpec]
) -> dict[str, TarEntrySpec]:
    """Normalize names and add directories that neither this layer nor a lower one has.

    Parents that exist below are not repeated: re-emitting them would reset their owner or
    replace a symlink (``usr/bin``) with a directory.
    """
    out: dict[str, TarEntrySpec] = {}
    for raw_name, value in files.items():
        name = _normalize_name(raw_name)
        if name in out:
            raise InvalidArgument(f"file path {raw_name!r} appears twice after normalizing")
        out[name] = _as_spec(value)
    for name in list(out):
        parts = name.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in out and parent not in lower:
                out[parent] = TarEntrySpec.dir()
    return out


def busybox_rootfs(
    dest: Path,
    *,
    busybox: Path | str | None = None,
    extra_files: Mapping[str, EntryInput] | None = None,
) -> Path:
    """Write a minimal root filesystem built on the host's static busybox into ``dest``.

    ``dest`` is created when missing and must otherwise be an empty directory. The tree
    holds ``/bin/busybox`` with a relative symlink for every applet it lists (``/bin/sh``,
    ``/bin/cat``, ``/bin/id`` ...); ``/sbin``, ``/usr/bin`` and ``/usr/sbin`` are relative
    symlinks to ``/bin``; ``/etc/passwd`` and ``/etc/group`` with ``root`` (0), ``app``
    (1000, home ``/home/app``) and ``nobody`` (65534); ``/etc/hosts``; and empty ``/proc``
    ``/sys`` ``/dev`` ``/tmp`` (1777) ``/root`` ``/home/app`` ``/run`` ``/var``. It is
    enough for runc or crun to run as a bundle's ``rootfs``.

    ``extra_files`` (path -> bytes or a file/dir/symlink :class:`TarEntrySpec`) are added on
    top, parents created as needed. ``/home/app`` is owned by 1000:1000 only when running
    as root; otherwise every file belongs to the caller. The busybox is found by
    :func:`find_busybox` (``busybox`` overrides the search). On any error nothing is left
    behind: a ``dest`` this call created is removed, a pre-existing one emptied again.
    """
    dest = Path(dest)
    entries = _busybox_entries(busybox)
    if extra_files:
        added = _with_parents(extra_files, entries)
        for name, spec in added.items():
            if spec.kind not in ("file", "dir", "symlink"):
                raise InvalidArgument(
                    f"busybox_rootfs writes only files, directories and symlinks; "
                    f"{name!r} is a {spec.kind} (use build_layer for other kinds)"
                )
        entries.update(added)
    created = not dest.exists()
    if not created and (not dest.is_dir() or any(dest.iterdir())):
        raise FailedPrecondition(
            f"{dest} must be an empty directory or not exist; remove it or choose another path"
        )
    dest.mkdir(parents=True, exist_ok=True)
    try:
        _materialize(dest, entries)
    except BaseException:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        else:
            for child in dest.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        raise
    return dest


def _materialize(dest: Path, entries: Mapping[str, TarEntrySpec]) -> None:
    as_root = os.geteuid() == 0
    ordered = sorted(entries.items(), key=_sort_key)
    for name, spec in ordered:
        target = dest / name
        if spec.kind == "dir":
            target.mkdir(exist_ok=True)
        elif spec.kind == "symlink":
            target.symlink_to(spec.linkname)
        else:
            target.write_bytes(spec.content)
        if spec.kind != "symlink" and as_root and (spec.uid or spec.gid):
            os.chown(target, spec.uid, spec.gid)
    # Modes last, in reverse, so a read-only directory (/proc is 0555) is filled first.
    for name, spec in reversed(ordered):
        if spec.kind != "symlink":
            os.chmod(dest / name, spec.effective_mode)


# --------------------------------------------------------------------------------------
# Platforms
# --------------------------------------------------------------------------------------


def _parse_platform(text: str) -> Platform:
    if not isinstance(text, str):
        raise InvalidArgument(f"platform must be a string like 'linux/amd64', got {text!r}")
    return Platform.parse(text)


def host_platform() -> str:
    """This machine's platform as ``os/architecture[/variant]`` (e.g. ``linux/amd64``)."""
    return platforms_mod.default_string()


# --------------------------------------------------------------------------------------
# Image config and the built image
# --------------------------------------------------------------------------------------


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)):
        raise InvalidArgument(
            f"expected a sequence of strings, got the single string {value!r}; "
            "write ('sh', '-c', '...') rather than 'sh -c ...'"
        )
    out = tuple(value)
    for item in out:
        if not isinstance(item, str):
            raise InvalidArgument(f"expected strings, got {item!r}")
    return out


def _frozen_labels(value: Mapping[str, str] | None) -> Mapping[str, str]:
    labels = dict(value or {})
    for key, val in labels.items():
        if not isinstance(key, str) or not key or not isinstance(val, str):
            raise InvalidArgument(f"labels must map non-empty strings to strings: {key!r}")
    return types.MappingProxyType(dict(sorted(labels.items())))


_PORT_RE = re.compile(r"^([0-9]{1,5})(?:/(tcp|udp|sctp))?$")


def _ports(value: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for port in _str_tuple(value):
        m = _PORT_RE.match(port)
        if not m or not 0 < int(m.group(1)) < 65536:
            raise InvalidArgument(
                f"exposed port {port!r} must look like '80', '80/tcp' or '53/udp'"
            )
        out.append(f"{int(m.group(1))}/{m.group(2) or 'tcp'}")
    return tuple(sorted(set(out)))


@attrs.frozen
class ImageConfigSpec:
    """What goes into the ``config`` object of an OCI image config.

    Sequences must be tuples or lists of strings (a bare string is refused so ``"sh -c x"``
    is not silently split into letters). ``env`` entries are ``KEY=value``; ``working_dir``
    is absolute; ``exposed_ports`` are ``"80"``, ``"80/tcp"`` or ``"53/udp"`` (normalized
    to ``port/proto``); ``labels`` is stored as a read-only mapping.
    """

    entrypoint: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    cmd: tuple[str, ...] = attrs.field(default=("sh",), converter=_str_tuple)
    env: tuple[str, ...] = attrs.field(default=(DEFAULT_PATH_ENV,), converter=_str_tuple)
    working_dir: str = "/"
    user: str = ""
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_labels, hash=False)
    exposed_ports: tuple[str, ...] = attrs.field(default=(), converter=_ports)
    stop_signal: str | None = None

    def __attrs_post_init__(self) -> None:
        for item in self.env:
            key, sep, _ = item.partition("=")
            if not sep or not key:
                raise InvalidArgument(f"env entry {item!r} must be KEY=value")
        if not isinstance(self.working_dir, str) or (
            self.working_dir and not self.working_dir.startswith("/")
        ):
            raise InvalidArgument(f"working_dir {self.working_dir!r} must be an absolute path")
        if not isinstance(self.user, str):
            raise InvalidArgument("user must be a string such as 'app' or '1000:1000'")
        if self.stop_signal is not None and (
            not isinstance(self.stop_signal, str) or not self.stop_signal
        ):
            raise InvalidArgument("stop_signal must be a signal name such as 'SIGTERM'")

    def to_oci(self) -> dict[str, Any]:
        """The ``config`` object as the image config JSON spells it (empty fields left out)."""
        out: dict[str, Any] = {}
        if self.user:
            out["User"] = self.user
        if self.exposed_ports:
            out["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        out["Env"] = list(self.env)
        if self.entrypoint:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            out["Cmd"] = list(self.cmd)
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        return out


def _frozen_map(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value))


@attrs.frozen
class BuiltImage:
    """An image written by :func:`build_image` into an OCI image-layout directory.

    ``target`` is the descriptor that ``index.json`` holds for this image (``mediaType``,
    ``digest``, ``size``, annotations and, for a single-platform image, ``platform``).
    ``index_digest`` is ``target["digest"]``: the digest of the **index blob** (image index
    or Docker manifest list) for a multi-platform image, or of the **manifest** for a
    single-platform one; it is what ``name@digest`` references resolve to.

    The per-platform mappings are keyed by the normalized platform string
    (``"linux/amd64"``, ``"linux/arm64/v8"``) in the order the platforms were given.
    ``layer_digests`` are blob (compressed) digests, ``diff_ids`` the uncompressed ones.
    """

    layout: Path
    index_digest: str
    manifest_digests: Mapping[str, str] = attrs.field(converter=_frozen_map, hash=False)
    config_digests: Mapping[str, str] = attrs.field(converter=_frozen_map, hash=False)
    layer_digests: Mapping[str, tuple[str, ...]] = attrs.field(converter=_frozen_map, hash=False)
    diff_ids: Mapping[str, tuple[str, ...]] = attrs.field(converter=_frozen_map, hash=False)
    ref_name: str
    target: Mapping[str, Any] = attrs.field(converter=_frozen_map, hash=False)
    media_types: MediaTypes = "oci"
    multi_platform: bool = False

    @property
    def platforms(self) -> tuple[str, ...]:
        """The image's platforms, normalized, in the order given to :func:`build_image`."""
        return tuple(self.manifest_digests)

    @property
    def reference(self) -> str:
        """The ``oci:`` transport reference of this image (``oci:<layout>:<ref_name>``)."""
        return f"oci:{self.layout}:{self.ref_name}"

    def blob_path(self, digest: str) -> Path:
        """Path of the blob ``digest`` inside the layout."""
        algorithm, _, encoded = digest.partition(":")
        if algorithm != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", encoded):
            raise InvalidArgument(f"{digest!r} is not a sha256 digest")
        return self.layout / "blobs" / "sha256" / encoded

    def read_json(self, digest: str) -> Any:
        """Parse the JSON blob ``digest`` (a manifest, index or config) from the layout."""
        return json.loads(self.blob_path(digest).read_bytes())


# --------------------------------------------------------------------------------------
# build_image
# --------------------------------------------------------------------------------------

_REF_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_REF_NAME_RE = re.compile(rf"^{_REF_COMPONENT}(?:/{_REF_COMPONENT})*$")


def _canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _sha256(data), "size": len(data), **extra}


def build_image(
    layout: Path,
    *,
    platforms: Sequence[str] | None = None,
    config: ImageConfigSpec | None = None,
    extra_files: Mapping[str, EntryInput] | None = None,
    extra_layers: Sequence[Mapping[str, EntryInput] | LayerBlob] = (),
    ref_name: str = "latest",
    multi_platform_index: bool | None = None,
    compression: Compression = "gzip",
    media_types: MediaTypes = "oci",
    busybox: Path | str | None = None,
    created: str = DEFAULT_CREATED,
    annotations: Mapping[str, str] | None = None,
) -> BuiltImage:
    """Build a busybox image into the OCI image-layout directory ``layout``.

    Layers, bottom to top: the :func:`busybox_rootfs` tree; ``extra_files`` (path ->
    bytes or :class:`TarEntrySpec`, missing parent directories added) as a second layer
    when given; then each of ``extra_layers``, either a file mapping like ``extra_files`` or
    a :class:`LayerBlob` from :func:`build_layer` inserted verbatim (the way to put a
    hostile layer into an image). Paths in mappings are relative to the image root; a
    leading ``/`` is dropped and ``..`` refused. Files under ``usr/bin`` land in ``bin``
    (``usr/bin`` is a symlink to it), so prefer ``bin/`` paths.

    ``platforms`` (default: :func:`host_platform`) are ``os/arch[/variant]`` strings; each
    gets its own config and manifest over the same layers. ``multi_platform_index``
    (default: more than one platform) writes an image index (Docker manifest list with
    ``media_types="docker"``) and points ``index.json`` at it; otherwise ``index.json``
    points straight at the single manifest, with its ``platform``. ``media_types="docker"``
    uses Docker schema 2 media types for manifests, configs and layers (``index.json``
    itself is always an OCI index, as the layout requires; note that some readers, such as
    skopeo 1.9's ``oci:`` transport, only follow ``index.json`` entries with OCI media
    types, so use ``"docker"`` for registry pushes and archives rather than layout reads).
    ``ref_name`` becomes the ``org.opencontainers.image.ref.name`` annotation;
    ``annotations`` are added to the manifests (and index). ``created`` is the fixed
    creation time written into configs.

    ``layout`` may be missing, an empty directory, or an existing OCI layout, to which the
    image is added (an entry with the same ref name is replaced). The output is
    deterministic: the same arguments give the same digests. Blobs are written before
    ``index.json`` is atomically replaced, so a failure never leaves a half-updated index.
    """
    layout = Path(layout)
    config = ImageConfigSpec() if config is None else config
    if not isinstance(config, ImageConfigSpec):
        raise InvalidArgument(f"config must be an ImageConfigSpec, got {type(config).__name__}")
    _check_compression(compression)
    if media_types not in ("oci", "docker"):
        raise InvalidArgument(f"media_types must be 'oci' or 'docker', got {media_types!r}")
    if not isinstance(ref_name, str) or not _REF_NAME_RE.match(ref_name):
        raise InvalidArgument(
            f"ref_name {ref_name!r} is not a valid OCI ref name "
            "(letters, digits and -._:@+ separators, '/'-separated components)"
        )
    extra_annotations = dict(annotations or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in extra_annotations.items()):
        raise InvalidArgument("annotations must map strings to strings")
    if isinstance(platforms, str):
        raise InvalidArgument(f"platforms must be a sequence of strings, e.g. [{platforms!r}]")
    parsed = [_parse_platform(p) for p in (platforms or [host_platform()])]
    keys = [p.format() for p in parsed]
    if len(set(keys)) != len(keys):
        raise InvalidArgument(f"platforms {list(platforms or [])!r} name a platform twice")
    multi = len(parsed) > 1 if multi_platform_index is None else bool(multi_platform_index)
    if not multi and len(parsed) > 1:
        raise InvalidArgument(
            f"{len(parsed)} platforms need an index; drop multi_platform_index=False"
        )
    existing = _existing_index(layout)

    docker = media_types == "docker"
    blobs: dict[str, bytes] = {}

    # Layers are shared by every platform: build them once.
    base = _busybox_entries(busybox)
    seen: dict[str, TarEntrySpec] = dict(base)
    layers: list[tuple[LayerBlob, str]] = [(build_layer(base, compression=compression), "busybox")]
    file_layers: list[tuple[Mapping[str, EntryInput] | LayerBlob, str]] = []
    if extra_files:
        file_layers.append((extra_files, "extra files"))
    file_layers.extend((layer, f"extra layer {i}") for i, layer in enumerate(extra_layers, 1))
    for item, what in file_layers:
        if isinstance(item, LayerBlob):
            layers.append((item, f"{what} (prebuilt)"))
            continue
        if not isinstance(item, Mapping):
            raise InvalidArgument(
                f"{what} must be a mapping of paths or a LayerBlob, got {type(item).__name__}"
            )
        entries = _with_parents(item, seen)
        seen.update(entries)
        layers.append((build_layer(entries, compression=compression), what))

    layer_descs: list[dict[str, Any]] = []
    for blob, _ in layers:
        if blob.compressed:
            media = _DOCKER_LAYER_GZIP if docker else _OCI_LAYER_GZIP
        else:
            media = _DOCKER_LAYER if docker else _OCI_LAYER
        blobs[blob.digest] = blob.data
        layer_descs.append({"mediaType": media, "digest": blob.digest, "size": len(blob.data)})
    diff_ids = tuple(blob.diff_id for blob, _ in layers)
    layer_digests = tuple(blob.digest for blob, _ in layers)
    history = [
        {"created": created, "created_by": f"libcontainerd.testing.image_builder: {what}"}
        for _, what in layers
    ]

    manifest_descs: list[dict[str, Any]] = []
    manifest_digests: dict[str, str] = {}
    config_digests: dict[str, str] = {}
    for plat, key in zip(parsed, keys, strict=True):
        config_json: dict[str, Any] = {
            "created": created,
            "architecture": plat.architecture,
            "os": plat.os,
            **({"variant": plat.variant} if plat.variant else {}),
            "config": config.to_oci(),
            "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
            "history": history,
        }
        config_bytes = _canonical_json(config_json)
        config_desc = _descriptor(_DOCKER_CONFIG if docker else _OCI_CONFIG, config_bytes)
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": _DOCKER_MANIFEST if docker else _OCI_MANIFEST,
            "config": config_desc,
            "layers": layer_descs,
        }
        if extra_annotations and not docker:
            manifest["annotations"] = extra_annotations
        manifest_bytes = _canonical_json(manifest)
        blobs[config_desc["digest"]] = config_bytes
        blobs[_sha256(manifest_bytes)] = manifest_bytes
        manifest_descs.append(
            _descriptor(manifest["mediaType"], manifest_bytes, platform=plat.to_dict())
        )
        manifest_digests[key] = _sha256(manifest_bytes)
        config_digests[key] = config_desc["digest"]

    ref_annotations = {**extra_annotations, _REF_NAME_ANNOTATION: ref_name}
    if multi:
        index: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": _DOCKER_LIST if docker else _OCI_INDEX,
            "manifests": manifest_descs,
        }
        if extra_annotations and not docker:
            index["annotations"] = extra_annotations
        index_bytes = _canonical_json(index)
        blobs[_sha256(index_bytes)] = index_bytes
        target = _descriptor(index["mediaType"], index_bytes, annotations=ref_annotations)
    else:
        target = {**manifest_descs[0], "annotations": ref_annotations}

    _write_layout(layout, blobs, target, existing)
    return BuiltImage(
        layout=layout,
        index_digest=target["digest"],
        manifest_digests=manifest_digests,
        config_digests=config_digests,
        layer_digests=dict.fromkeys(keys, layer_digests),
        diff_ids=dict.fromkeys(keys, diff_ids),
        ref_name=ref_name,
        target=target,
        media_types=media_types,
        multi_platform=multi,
    )


def _existing_index(layout: Path) -> list[dict[str, Any]] | None:
    """The manifests of an existing layout at ``layout``, or ``None`` for a new one."""
    if not layout.exists():
        return None
    if not layout.is_dir():
        raise FailedPrecondition(f"{layout} exists and is not a directory")
    if not any(layout.iterdir()):
        return None
    marker, index = layout / "oci-layout", layout / "index.json"
    if not marker.is_file() or not index.is_file():
        raise FailedPrecondition(
            f"{layout} is neither empty nor an OCI image layout (no oci-layout/index.json); "
            "choose an empty or missing directory"
        )
    try:
        data = json.loads(index.read_bytes())
        manifests = data["manifests"]
        if not isinstance(manifests, list):
            raise TypeError("manifests is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise FailedPrecondition(
            f"{index} is not a valid image index ({exc}); fix or remove it"
        ) from exc
    return manifests


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_layout(
    layout: Path,
    blobs: Mapping[str, bytes],
    target: Mapping[str, Any],
    existing: list[dict[str, Any]] | None,
) -> None:
    created = not layout.exists()
    try:
        blob_dir = layout / "blobs" / "sha256"
        blob_dir.mkdir(parents=True, exist_ok=True)
        for digest in sorted(blobs):
            path = blob_dir / digest.partition(":")[2]
            if not path.exists():
                _atomic_write(path, blobs[digest])
        if existing is None:
            _atomic_write(layout / "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            manifests: list[dict[str, Any]] = []
        else:
            ref = target["annotations"][_REF_NAME_ANNOTATION]
            manifests = [
                m for m in existing if (m.get("annotations") or {}).get(_REF_NAME_ANNOTATION) != ref
            ]
        manifests.append(dict(target))
        index = {"schemaVersion": 2, "mediaType": _OCI_INDEX, "manifests": manifests}
        _atomic_write(layout / "index.json", json.dumps(index, indent=2).encode() + b"\n")
    except BaseException:
        # A new layout is removed again (an empty directory the caller made is kept, empty);
        # an existing one keeps its old index.json, plus at most some unreferenced blobs.
        if created:
            shutil.rmtree(layout, ignore_errors=True)
        elif existing is None:
            for child in ("blobs", "oci-layout", "index.json"):
                with contextlib.suppress(FileNotFoundError):
                    if (layout / child).is_dir():
                        shutil.rmtree(layout / child)
                    else:
                        (layout / child).unlink()
        raise


# --------------------------------------------------------------------------------------
# Archives
# --------------------------------------------------------------------------------------


def _deterministic_tar(archive: Path, members: Iterable[tuple[str, bytes | None]]) -> Path:
    """Write ``members`` (name -> bytes, or ``None`` for a directory) to ``archive``."""
    archive = Path(archive)
    if not archive.parent.is_dir():
        raise NotFound(f"directory {archive.parent} for the archive does not exist; create it")
    fd, tmp = tempfile.mkstemp(dir=archive.parent, prefix=f".{archive.name}.")
    try:
        with (
            os.fdopen(fd, "wb") as f,
            tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.mtime = 0
                info.uname = info.gname = ""
                if data is None:
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                else:
                    info.mode, info.size = 0o644, len(data)
                    tar.addfile(info, io.BytesIO(data))
        os.chmod(tmp, 0o644)
        os.replace(tmp, archive)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return archive


def write_layout_archive(layout: Path, archive: Path) -> Path:
    """Write the OCI layout directory ``layout`` as an uncompressed tar at ``archive``.

    The archive holds ``oci-layout``, ``index.json`` and ``blobs/sha256/*`` at its top level
    (the ``oci-archive`` format), sorted, with fixed mtimes and owners, so it is
    deterministic. The file appears atomically; returns ``archive``.
    """
    layout = Path(layout)
    if not (layout / "oci-layout").is_file() or not (layout / "index.json").is_file():
        raise NotFound(f"{layout} is not an OCI image layout (no oci-layout or index.json)")

    def members() -> Iterator[tuple[str, bytes | None]]:
        yield "oci-layout", (layout / "oci-layout").read_bytes()
        yield "index.json", (layout / "index.json").read_bytes()
        yield "blobs", None
        for algo_dir in sorted((layout / "blobs").iterdir()):
            if not algo_dir.is_dir():
                continue
            yield f"blobs/{algo_dir.name}", None
            for blob in sorted(algo_dir.iterdir()):
                if blob.is_file() and not blob.name.startswith("."):
                    yield f"blobs/{algo_dir.name}/{blob.name}", blob.read_bytes()

    return _deterministic_tar(archive, members())


_REPO_TAG_RE = re.compile(
    r"^(?P<repo>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?::[0-9]+)?"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?$"
)


def write_docker_archive(
    built: BuiltImage, archive: Path, *, repo_tag: str, platform: str | None = None
) -> Path:
    """Write one platform of ``built`` as a ``docker save`` archive at ``archive``.

    The tar holds ``manifest.json`` (``[{"Config", "RepoTags", "Layers"}]``), the config
    as ``<config hex>.json``, each layer uncompressed as ``<diff_id hex>/layer.tar`` and a
    ``repositories`` file. ``repo_tag`` is ``name[:tag]`` (``:latest`` when no tag).
    ``platform`` picks the manifest of a multi-platform image; it defaults to the only
    platform, else the host's. Returns ``archive``, written atomically.
    """
    m = _REPO_TAG_RE.match(repo_tag) if isinstance(repo_tag, str) else None
    if m is None:
        raise InvalidArgument(
            f"repo_tag {repo_tag!r} must be a lower-case repository with an optional tag, "
            "e.g. 'example.com/busybox:1' (digests are not allowed in docker archives)"
        )
    repo, tag = m.group("repo"), m.group("tag") or "latest"
    if platform is None:
        if len(built.manifest_digests) == 1:
            key = next(iter(built.manifest_digests))
        else:
            key = host_platform()
    else:
        key = _parse_platform(platform).format()
    if key not in built.manifest_digests:
        raise NotFound(
            f"image has no platform {key!r}; pass platform= one of "
            f"{', '.join(built.manifest_digests)}"
        )
    manifest = built.read_json(built.manifest_digests[key])
    config_digest: str = manifest["config"]["digest"]
    config_bytes = built.blob_path(config_digest).read_bytes()
    layers: list[tuple[str, bytes]] = []
    for desc, diff_id in zip(manifest["layers"], built.diff_ids[key], strict=True):
        data = built.blob_path(desc["digest"]).read_bytes()
        if desc["digest"] != diff_id:
            data = gzip.decompress(data)
        layers.append((diff_id.partition(":")[2], data))
    layer_names = [f"{hex_id}/layer.tar" for hex_id, _ in layers]
    config_name = f"{config_digest.partition(':')[2]}.json"
    docker_manifest = [
        {
            "Config": config_name,
            "RepoTags": [f"{repo}:{tag}"],
            "Layers": layer_names,
        }
    ]
    repositories = {repo: {tag: layers[-1][0]}}

    def members() -> Iterator[tuple[str, bytes | None]]:
        yield config_name, config_bytes
        written: set[str] = set()
        for hex_id, data in layers:
            if hex_id not in written:
                written.add(hex_id)
                yield hex_id, None
                yield f"{hex_id}/layer.tar", data
        yield "manifest.json", json.dumps(docker_manifest).encode()
        yield "repositories", json.dumps(repositories).encode()

    return _deterministic_tar(archive, members())
