"""Apply an image layer (a tar, maybe compressed) to a directory, safely.

This is a security boundary: a layer comes from a registry or an archive, and no entry of it
may create, change or remove anything outside ``dest``. The rules:

* Every entry name is normalised (leading ``/`` and ``.`` components dropped, ``a/../b``
  folded); a name whose ``..`` would climb above the root, that holds NUL, is longer than
  4096 bytes or has a component longer than 255 bytes is refused with
  :class:`InvalidArgument` naming the entry.
* Parent directories are walked one component at a time from a directory descriptor with
  ``O_NOFOLLOW``; the kernel never follows a link for us. A symlink met on the way is
  resolved *inside* ``dest`` (its absolute target and any ``..`` are clamped to ``dest``,
  the way the container will see it), so ``link -> /`` followed by ``link/etc/x`` writes
  ``dest/etc/x``. Symlinks themselves may point anywhere: they are only ever created,
  never written through.
* The entry itself is created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (after removing what
  was there), so an existing symlink at its name is replaced, not followed.
* Hardlink targets are archive paths resolved the same way; they must already exist in
  ``dest`` and not be directories. A link to a symlink links the symlink itself.
* Device nodes need ``privileged`` (default: running as root); otherwise they are refused
  with :class:`PermissionDenied` (or skipped with ``skip_devices=True``). setuid/setgid
  bits are kept only when privileged; ownership only when running as root.
* OCI whiteouts: ``.wh.<name>`` removes ``<name>`` of lower layers; ``.wh..wh..opq`` removes
  every lower-layer child of its directory, keeping what this layer put there. Neither is
  written. With ``whiteout_format="overlay"`` (privileged only) they become overlayfs
  whiteouts instead: a 0/0 character device and the ``trusted.overlay.opaque=y`` xattr.

On error the typed error is raised; entries applied before the bad one stay (the layer is
applied to ``dest`` directly), but each entry is fully validated before anything is done
for it, and nothing is ever written outside ``dest``. Callers that need all-or-nothing
extract into a fresh directory and rename it into place.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile
from pathlib import Path
from typing import Any, BinaryIO, Literal

import attrs

from libcontainerd.content.dirfd import (
    MAX_PATH_BYTES,
    MissingPath,
    NotADirectory,
    clear_entry,
    fs_error,
    normalise_name,
    open_dir,
    open_physical,
    remove_tree,
    resolve_dir,
)
from libcontainerd.content.layer_streams import (
    CHUNK,
    HashingReader,
    decompressed,
    zstd_available,
    zstd_module,
)
from libcontainerd.errors import (
    DigestMismatch,
    Error,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from libcontainerd.types.descriptor import layer_compression
from libcontainerd.types.digest import validate_digest

__all__ = ["LayerResult", "WhiteoutFormat", "apply_layer", "zstd_available"]

WhiteoutFormat = Literal["oci", "overlay"]

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_XATTR_PREFIX = "SCHILY.xattr."
DEFAULT_MAX_SIZE = 64 << 30
"""Default cap on a layer's uncompressed size (64 GiB): a decompression bomb stops there."""
DEFAULT_MAX_ENTRIES = 4_000_000
"""Default cap on a layer's entry count."""
MAX_METADATA_BYTES = 1 << 20
"""Cap on one pax / GNU long-name header: tarfile holds it in memory whole."""
_METADATA_TYPES = frozenset(
    {
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
    }
)


class _BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses metadata headers too large to hold in memory."""

    def _proc_member(self, tarfile: Any) -> Any:
        if self.type in _METADATA_TYPES and self.size > MAX_METADATA_BYTES:
            raise ResourceExhausted(
                f"layer has a {self.size} byte metadata header (pax or long name), more than "
                f"the {MAX_METADATA_BYTES} byte cap; the layer is malformed or hostile"
            )
        return getattr(super(), "_proc_member")(tarfile)  # noqa: B009 - private in typeshed


@attrs.frozen
class LayerResult:
    """The outcome of :func:`apply_layer`.

    ``diff_id`` is the digest of the uncompressed tar stream (what an image config lists)
    and ``size`` its length in bytes; ``skipped`` names device entries left out because of
    ``skip_devices``.
    """

    diff_id: str
    size: int
    skipped: tuple[str, ...] = ()


def show_name(name: str) -> str:
    """``name`` quoted for an error message, at most 200 characters."""
    text = repr(name)
    return text if len(text) <= 200 else text[:197] + "..."


# --------------------------------------------------------------------------------------
# The extractor
# --------------------------------------------------------------------------------------


@attrs.define
class _DirMeta:
    mode: int
    uid: int
    gid: int
    mtime: float
    xattrs: dict[str, bytes]


class _Extractor:
    def __init__(
        self,
        root_fd: int,
        *,
        privileged: bool,
        as_root: bool,
        whiteout_format: WhiteoutFormat,
        skip_devices: bool,
    ) -> None:
        self.root_fd = root_fd
        self.privileged = privileged
        self.as_root = as_root
        self.overlay = whiteout_format == "overlay"
        self.skip_devices = skip_devices
        self.skipped: list[str] = []
        # Physical paths this layer created (and their ancestors): whiteouts and opaque
        # directories act on lower layers only, never on the layer's own entries.
        self.written: set[tuple[str, ...]] = set()
        self.ancestors: set[tuple[str, ...]] = set()
        self.dirs: dict[tuple[str, ...], _DirMeta] = {}

    # -- bookkeeping ---------------------------------------------------------------------

    def _mark(self, path: tuple[str, ...]) -> None:
        self.written.add(path)
        for i in range(len(path)):
            self.ancestors.add(path[:i])

    def _parent(
        self, parts: tuple[str, ...], label: str, *, create: bool
    ) -> tuple[int, tuple[str, ...]]:
        created: list[tuple[str, ...]] = []
        try:
            fd, physical = resolve_dir(self.root_fd, parts, create=create, created=created)
        except NotADirectory as exc:
            raise InvalidArgument(
                f"layer entry {label}: its parent {'/'.join(exc.path)!r} is not a directory"
            ) from None
        finally:
            for path in created:
                self._mark(path)
        return fd, physical

    def _mode(self, member: tarfile.TarInfo) -> int:
        mode = member.mode & 0o7777
        if not self.privileged:
            mode &= ~(stat.S_ISUID | stat.S_ISGID)
        return mode

    def _xattrs(self, member: tarfile.TarInfo) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        if not self.privileged:
            return found
        for key, value in member.pax_headers.items():
            if not key.startswith(_XATTR_PREFIX):
                continue
            attr = key[len(_XATTR_PREFIX) :]
            # trusted.overlay.* would let a layer steer overlayfs (redirects, opaque dirs).
            if attr.startswith(("user.", "security.")):
                found[attr] = value.encode("utf-8", "surrogateescape")
        return found

    @staticmethod
    def _set_xattrs(fd: int, xattrs: dict[str, bytes]) -> None:
        for attr, value in xattrs.items():
            try:
                os.setxattr(fd, attr, value)
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise

    # -- entries -------------------------------------------------------------------------

    def apply(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        label = show_name(member.name)
        parts = normalise_name(member.name, label)
        base = parts[-1] if parts else ""
        if base.startswith(WHITEOUT_PREFIX):
            if base == OPAQUE_WHITEOUT:
                self._opaque(parts[:-1], label)
            else:
                target = base[len(WHITEOUT_PREFIX) :]
                if target in ("", ".", ".."):
                    raise InvalidArgument(f"layer entry {label}: whiteout names no file")
                self._whiteout(parts[:-1], target, label)
            return
        if not parts:
            return  # the root itself: dest's own metadata is the caller's
        if member.ischr() or member.isblk():
            if not self.privileged:
                if self.skip_devices:
                    self.skipped.append(member.name)
                    return
                raise PermissionDenied(
                    f"layer entry {label} is a device node, which an unprivileged unpack "
                    "may not create; unpack as root, or pass skip_devices=True to leave "
                    "device nodes out"
                )
        elif not (
            member.isreg() or member.isdir() or member.issym() or member.islnk() or member.isfifo()
        ):
            raise InvalidArgument(f"layer entry {label} has unsupported tar type {member.type!r}")
        link_parts: tuple[str, ...] = ()
        if member.issym():
            if not member.linkname or "\0" in member.linkname:
                raise InvalidArgument(f"layer entry {label}: symlink target is empty or has NUL")
            if len(os.fsencode(member.linkname)) > MAX_PATH_BYTES:
                raise InvalidArgument(f"layer entry {label}: symlink target is too long")
        elif member.islnk():
            link_parts = normalise_name(member.linkname, label, "hardlink target")
            if not link_parts:
                raise InvalidArgument(f"layer entry {label}: hardlink target is the root")
        try:
            self._create(member, parts, link_parts, label, tar)
        except Error:
            raise
        except OSError as exc:
            raise fs_error(exc, label) from exc

    def _create(
        self,
        member: tarfile.TarInfo,
        parts: tuple[str, ...],
        link_parts: tuple[str, ...],
        label: str,
        tar: tarfile.TarFile,
    ) -> None:
        # A hardlink's target is checked before anything is created for the entry.
        link = self._link_target(link_parts, label) if member.islnk() else None
        try:
            parent_fd, parent = self._parent(parts[:-1], label, create=True)
        except BaseException:
            if link is not None:
                os.close(link[0])
            raise
        name = parts[-1]
        path = (*parent, name)
        try:
            if member.isdir():
                if not clear_entry(parent_fd, name, keep_dir=True):
                    os.mkdir(name, 0o700, dir_fd=parent_fd)
                self.dirs[path] = _DirMeta(
                    self._mode(member), member.uid, member.gid, member.mtime, self._xattrs(member)
                )
            elif member.isreg():
                self._file(parent_fd, name, member, tar)
            elif member.issym():
                clear_entry(parent_fd, name, keep_dir=False)
                os.symlink(member.linkname, name, dir_fd=parent_fd)
                if self.as_root:
                    os.chown(name, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)
                os.utime(
                    name, (member.mtime, member.mtime), dir_fd=parent_fd, follow_symlinks=False
                )
            elif link is not None:
                target_fd, target, target_path = link
                if target_path != path:  # a link to itself changes nothing
                    clear_entry(parent_fd, name, keep_dir=False)
                    # No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
                    os.link(
                        target,
                        name,
                        src_dir_fd=target_fd,
                        dst_dir_fd=parent_fd,
                        follow_symlinks=False,
                    )
            else:
                self._node(parent_fd, name, member)
            self._mark(path)
        finally:
            os.close(parent_fd)
            if link is not None:
                os.close(link[0])

    def _file(
        self, parent_fd: int, name: str, member: tarfile.TarInfo, tar: tarfile.TarFile
    ) -> None:
        clear_entry(parent_fd, name, keep_dir=False)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o600, dir_fd=parent_fd)
        try:
            source = tar.extractfile(member)
            if source is not None:
                while chunk := source.read(CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
            if self.as_root:
                os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, self._mode(member))  # after chown, which clears setuid bits
            self._set_xattrs(fd, self._xattrs(member))
            os.utime(fd, (member.mtime, member.mtime))
        finally:
            os.close(fd)

    def _link_target(
        self, link_parts: tuple[str, ...], label: str
    ) -> tuple[int, str, tuple[str, ...]]:
        """Find (without changing anything) an existing, non-directory hardlink target.

        Returns its parent directory's descriptor (the caller closes it), its name and its
        physical path.
        """
        missing = InvalidArgument(
            f"layer entry {label}: hardlink target {'/'.join(link_parts)!r} does not exist"
        )
        try:
            target_fd, target_parent = self._parent(link_parts[:-1], label, create=False)
        except MissingPath:
            raise missing from None
        target = link_parts[-1]
        try:
            st = os.stat(target, dir_fd=target_fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                raise InvalidArgument(f"layer entry {label}: hardlink target is a directory")
        except FileNotFoundError:
            os.close(target_fd)
            raise missing from None
        except BaseException:
            os.close(target_fd)
            raise
        return target_fd, target, (*target_parent, target)

    def _node(self, parent_fd: int, name: str, member: tarfile.TarInfo) -> None:
        clear_entry(parent_fd, name, keep_dir=False)
        if member.isfifo():
            os.mkfifo(name, 0o600, dir_fd=parent_fd)
        else:
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            device = os.makedev(member.devmajor, member.devminor)
            os.mknod(name, kind | 0o600, device, dir_fd=parent_fd)
        # The node was just made by us in a directory we hold open; it is not a symlink.
        if self.as_root:
            os.chown(name, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)
        os.chmod(name, self._mode(member), dir_fd=parent_fd)
        os.utime(name, (member.mtime, member.mtime), dir_fd=parent_fd, follow_symlinks=False)

    # -- whiteouts -----------------------------------------------------------------------

    def _whiteout(self, dir_parts: tuple[str, ...], target: str, label: str) -> None:
        try:
            try:
                dir_fd, directory = self._parent(dir_parts, label, create=self.overlay)
            except MissingPath:
                return  # nothing below to hide
            try:
                path = (*directory, target)
                if self.overlay:
                    clear_entry(dir_fd, target, keep_dir=False)
                    os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=dir_fd)
                    self._mark(path)
                elif path not in self.written and path not in self.ancestors:
                    with contextlib.suppress(FileNotFoundError):
                        remove_tree(dir_fd, target)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise fs_error(exc, label) from exc

    def _opaque(self, dir_parts: tuple[str, ...], label: str) -> None:
        try:
            dir_fd, directory = self._parent(dir_parts, label, create=True)
            try:
                if self.overlay:
                    os.setxattr(dir_fd, OVERLAY_OPAQUE_XATTR, b"y")
                else:
                    self._clear_lower(dir_fd, directory)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise fs_error(exc, label) from exc

    def _clear_lower(self, dir_fd: int, directory: tuple[str, ...]) -> None:
        """Remove everything below ``directory`` that this layer did not write."""
        stack: list[tuple[int, tuple[str, ...]]] = [(os.dup(dir_fd), directory)]
        try:
            while stack:
                fd, path = stack.pop()
                try:
                    for child in os.listdir(fd):
                        child_path = (*path, child)
                        if child_path in self.written or child_path in self.ancestors:
                            st = os.stat(child, dir_fd=fd, follow_symlinks=False)
                            if stat.S_ISDIR(st.st_mode):
                                stack.append((open_dir(fd, child), child_path))
                        else:
                            remove_tree(fd, child)
                finally:
                    os.close(fd)
        finally:
            for fd, _ in stack:
                os.close(fd)

    # -- the end -------------------------------------------------------------------------

    def finish(self) -> None:
        """Apply directory metadata, deepest first, so children no longer change mtimes."""
        for path in sorted(self.dirs, key=len, reverse=True):
            meta = self.dirs[path]
            label = show_name("/".join(path))
            try:
                # ``path`` is physical (symlink-free) as recorded: walk it without following
                # anything, so a directory replaced later by a symlink never passes its
                # owner and mode on to whatever the symlink points at.
                parent_fd = open_physical(self.root_fd, path[:-1])
                if parent_fd is None:
                    continue  # replaced later in the layer
                try:
                    fd = open_dir(parent_fd, path[-1])
                except OSError:
                    continue
                finally:
                    os.close(parent_fd)
                try:
                    if self.as_root:
                        os.fchown(fd, meta.uid, meta.gid)
                    os.fchmod(fd, meta.mode)
                    self._set_xattrs(fd, meta.xattrs)
                    os.utime(fd, (meta.mtime, meta.mtime))
                finally:
                    os.close(fd)
            except OSError as exc:
                raise fs_error(exc, label) from exc


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def apply_layer(
    layer: BinaryIO | Path | str,
    dest: Path | str,
    *,
    media_type: str | None = None,
    privileged: bool | None = None,
    whiteout_format: WhiteoutFormat = "oci",
    skip_devices: bool = False,
    expected_diff_id: str | None = None,
    max_size: int | None = DEFAULT_MAX_SIZE,
    max_entries: int | None = DEFAULT_MAX_ENTRIES,
) -> LayerResult:
    """Extract the layer ``layer`` (a path or a binary stream) onto the directory ``dest``.

    Compression is sniffed from the data (gzip via the standard library; zstd needs the
    optional ``zstandard`` module, else :class:`Unimplemented`); ``media_type``, when
    given, must be a layer media type. ``privileged`` (default: whether we run as root)
    allows device nodes and setuid/setgid bits. ``whiteout_format="overlay"`` writes
    overlayfs whiteouts (for a per-layer directory used as an overlay lower dir) instead of
    deleting from ``dest``. ``expected_diff_id`` is checked after extraction
    (:class:`DigestMismatch`). ``max_size`` caps the uncompressed bytes and
    ``max_entries`` the number of entries (None: no cap); past either the unpack stops
    with :class:`ResourceExhausted`. See the module documentation for the safety rules.
    """
    for cap_name, cap in (("max_size", max_size), ("max_entries", max_entries)):
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise InvalidArgument(f"{cap_name} must be a positive int or None, got {cap!r}")
    if media_type is not None:
        compression: str | None = layer_compression(media_type)
    else:
        compression = None
    if expected_diff_id is not None:
        validate_digest(expected_diff_id)
    if whiteout_format not in ("oci", "overlay"):
        raise InvalidArgument(
            f"whiteout_format must be 'oci' or 'overlay', got {whiteout_format!r}"
        )
    as_root = os.geteuid() == 0
    if privileged is None:
        privileged = as_root
    if whiteout_format == "overlay" and not privileged:
        raise PermissionDenied(
            "overlay whiteouts are device nodes and trusted xattrs and need a privileged "
            "unpack; run as root or use whiteout_format='oci'"
        )
    if compression == "zstd":
        zstd_module()
    try:
        root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"destination directory {dest} does not exist; create it first") from None
    except NotADirectoryError:
        raise InvalidArgument(f"destination {dest} is not a directory") from None
    except OSError as exc:
        raise fs_error(exc, f"(destination {dest})") from exc
    try:
        with contextlib.ExitStack() as stack:
            if isinstance(layer, (str, Path)):
                try:
                    raw: BinaryIO = stack.enter_context(open(layer, "rb"))
                except FileNotFoundError:
                    raise NotFound(f"layer file {layer} does not exist") from None
                except OSError as exc:
                    raise InvalidArgument(f"cannot read layer file {layer}: {exc}") from exc
            else:
                raw = layer
            reader = HashingReader(decompressed(raw, compression), max_size)
            extractor = _Extractor(
                root_fd,
                privileged=privileged,
                as_root=as_root,
                whiteout_format=whiteout_format,
                skip_devices=skip_devices,
            )
            try:
                with tarfile.open(  # type: ignore[call-overload]
                    fileobj=reader, mode="r|", tarinfo=_BoundedTarInfo
                ) as tar:
                    for count, member in enumerate(tar, 1):
                        if max_entries is not None and count > max_entries:
                            raise ResourceExhausted(
                                f"layer has more than {max_entries} entries (max_entries); it "
                                "is hostile or needs a larger max_entries"
                            )
                        extractor.apply(member, tar)
            except tarfile.TarError as exc:
                raise InvalidArgument(f"layer is not a valid tar archive ({exc})") from exc
            extractor.finish()
            # The diff id covers the whole uncompressed stream, padding after the end too.
            reader.drain()
    finally:
        os.close(root_fd)
    diff_id = "sha256:" + reader.hash.hexdigest()
    if expected_diff_id is not None and diff_id != expected_diff_id:
        raise DigestMismatch(
            f"layer's uncompressed content has digest {diff_id}, the image says "
            f"{expected_diff_id}; the layer does not belong to this image",
            expected=expected_diff_id,
            actual=diff_id,
        )
    return LayerResult(diff_id=diff_id, size=reader.size, skipped=tuple(extractor.skipped))
