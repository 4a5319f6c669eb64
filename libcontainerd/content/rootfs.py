"""Prepare a container's root filesystem from image layers.

Two ways, picked per call:

* ``overlay``: each layer is a directory (extracted with overlayfs whiteouts, see
  :func:`extract_layer_dir`); the root filesystem is an overlay mount of them
  (``lowerdir``) with a per-container ``upper``/``work`` pair. Needs root and a kernel and
  filesystem that allow it; :func:`overlay_supported` finds out by trying.
* ``copy``: every layer is applied, in order, into one directory. Works everywhere, costs
  disk and time.

Layers are given bottom first (the order of an image manifest). Each is either a directory
holding one extracted layer (overlay whiteout format) or a layer blob file (a tar, gzip or
zstd). :func:`chain_id` computes the OCI chain id of a layer stack, the key under which
callers cache extracted layers.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Literal

import attrs

from libcontainerd.content.unpack import (
    OPAQUE_WHITEOUT,
    OVERLAY_OPAQUE_XATTR,
    WHITEOUT_PREFIX,
    LayerResult,
    apply_layer,
)
from libcontainerd.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unimplemented,
)
from libcontainerd.types.digest import validate_digest

__all__ = [
    "RootFS",
    "RootFSMode",
    "chain_id",
    "chain_ids",
    "extract_layer_dir",
    "mount_overlay",
    "overlay_supported",
    "prepare_rootfs",
    "release_rootfs",
    "unmount",
]

RootFSMode = Literal["auto", "overlay", "copy"]

_MNT_DETACH = 2
# The kernel copies mount data into one page; longer option strings are refused.
_MAX_MOUNT_DATA = 4095
_overlay_probe_cache: dict[int, bool] = {}


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The chain id of every prefix of ``diff_ids`` (bottom layer first).

    The first chain id is the first diff id; each next one is the sha256 of
    ``"<previous chain id> <diff id>"``, as the OCI image specification defines.
    """
    if isinstance(diff_ids, str):
        raise InvalidArgument("diff_ids must be a sequence of digests, not one string")
    result: list[str] = []
    for diff_id in diff_ids:
        validate_digest(diff_id)
        if not result:
            result.append(diff_id)
        else:
            text = f"{result[-1]} {diff_id}".encode()
            result.append("sha256:" + hashlib.sha256(text).hexdigest())
    return result


def chain_id(diff_ids: Sequence[str]) -> str:
    """The chain id of the whole layer stack ``diff_ids``; :class:`InvalidArgument` if empty."""
    ids = chain_ids(diff_ids)
    if not ids:
        raise InvalidArgument("a chain id needs at least one diff id")
    return ids[-1]


# --------------------------------------------------------------------------------------
# Mounting
# --------------------------------------------------------------------------------------


def _libc() -> ctypes.CDLL:
    name = ctypes.util.find_library("c") or "libc.so.6"
    return ctypes.CDLL(name, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _overlay_data(lowers: Sequence[Path], upper: Path, work: Path) -> str:
    for path in (*lowers, upper, work):
        if any(ch in str(path) for ch in ",:\\\n"):
            raise InvalidArgument(
                f"path {str(path)!r} holds a ',', ':', '\\\\' or newline, which overlay mount "
                "options cannot carry; use another directory or mode='copy'"
            )
    # overlayfs lists the topmost lower first; callers pass the bottom layer first.
    lowerdir = ":".join(str(p) for p in reversed(lowers))
    data = f"lowerdir={lowerdir},upperdir={upper},workdir={work}"
    if len(data.encode()) > _MAX_MOUNT_DATA:
        raise InvalidArgument(
            f"overlay options for {len(lowers)} layers are {len(data)} bytes, more than the "
            f"kernel's {_MAX_MOUNT_DATA}; use shorter layer paths or mode='copy'"
        )
    return data


def mount_overlay(lowers: Sequence[Path], upper: Path, work: Path, target: Path) -> None:
    """Mount an overlay at ``target``: ``lowers`` bottom first, writable ``upper``/``work``.

    ``upper`` and ``work`` must be on the same filesystem. Needs root.
    """
    if not lowers:
        raise InvalidArgument("an overlay mount needs at least one lower directory")
    data = _overlay_data([Path(p) for p in lowers], Path(upper), Path(work))
    if os.geteuid() != 0:
        raise PermissionDenied("mounting an overlay needs root; use mode='copy' instead")
    try:
        _check(
            _libc().mount(b"overlay", os.fsencode(target), b"overlay", 0, data.encode()),
            f"mount overlay on {target}",
        )
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise PermissionDenied(f"{exc}; use mode='copy' instead") from exc
        if exc.errno == errno.ENODEV:
            raise Unimplemented(f"{exc}: the kernel has no overlay filesystem") from exc
        raise InvalidArgument(f"{exc} (options {data!r})") from exc


def unmount(target: Path, *, detach: bool = False) -> None:
    """Unmount ``target`` (``detach`` for a lazy unmount of a busy mount).

    Unmounting something that is not mounted is a no-op.
    """
    if not os.path.ismount(target):
        return
    try:
        _check(
            _libc().umount2(os.fsencode(target), _MNT_DETACH if detach else 0),
            f"unmount {target}",
        )
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise FailedPrecondition(
                f"{exc}: something still uses it; stop it, or pass detach=True"
            ) from exc
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise PermissionDenied(str(exc)) from exc
        raise InvalidArgument(str(exc)) from exc


def overlay_supported(probe_dir: Path | None = None) -> bool:
    """Whether an overlay can be mounted here, found by mounting a tiny one.

    ``probe_dir`` is where the upper/work directories would live (the answer depends on
    its filesystem: an overlay cannot have its upper directory on another overlay). The
    answer is cached per filesystem.
    """
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/filesystems", encoding="ascii") as f:
            if not any(line.split()[-1:] == ["overlay"] for line in f):
                return False
    except OSError:
        return False
    base = Path(probe_dir) if probe_dir is not None else Path(tempfile.gettempdir())
    try:
        dev = os.stat(base).st_dev
    except OSError:
        return False
    if dev in _overlay_probe_cache:
        return _overlay_probe_cache[dev]
    ok = False
    try:
        with tempfile.TemporaryDirectory(dir=base, prefix=".overlay-probe-") as tmp:
            lower, upper, work, merged = (Path(tmp) / n for n in ("l", "u", "w", "m"))
            for p in (lower, upper, work, merged):
                p.mkdir()
            (lower / "f").write_bytes(b"x")
            try:
                mount_overlay([lower], upper, work, merged)
            except Exception:
                ok = False
            else:
                try:
                    ok = (merged / "f").read_bytes() == b"x"
                finally:
                    unmount(merged, detach=True)
    except OSError:
        ok = False
    _overlay_probe_cache[dev] = ok
    return ok


# --------------------------------------------------------------------------------------
# Layers as directories
# --------------------------------------------------------------------------------------


def extract_layer_dir(layer: Path, dest: Path, *, media_type: str | None = None) -> LayerResult:
    """Extract one layer blob into the new directory ``dest`` for use as an overlay lower.

    Whiteouts are written in overlayfs form (0/0 character devices, opaque xattrs), which
    needs root (:class:`PermissionDenied` otherwise). The directory appears only when
    extraction succeeded: it is built under a temporary name first.
    """
    dest = Path(dest)
    if dest.exists():
        raise AlreadyExists(f"layer directory {dest} exists already; remove it or reuse it")
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        os.chmod(tmp, 0o755)
        result = apply_layer(layer, tmp, media_type=media_type, whiteout_format="overlay")
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def _is_overlay_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OVERLAY_OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _dir_as_tar(layer_dir: Path, out: BinaryIO) -> None:
    """Write the layer directory as a layer tar, turning overlay whiteouts into OCI ones."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for top, dirs, files in _walk(layer_dir):
            rel_top = os.path.relpath(top, layer_dir)
            prefix = "" if rel_top == "." else rel_top + "/"
            if prefix and _is_opaque(Path(top)):
                tar.addfile(tarfile.TarInfo(prefix + OPAQUE_WHITEOUT))
            for name in sorted(dirs + files):
                full = os.path.join(top, name)
                st = os.lstat(full)
                if _is_overlay_whiteout(st):
                    tar.addfile(tarfile.TarInfo(prefix + WHITEOUT_PREFIX + name))
                    continue
                info = tar.gettarinfo(full, prefix + name)
                if info.isreg():
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)


def _walk(top: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        dirnames.sort()
        yield dirpath, dirnames, filenames


# --------------------------------------------------------------------------------------
# Root filesystems
# --------------------------------------------------------------------------------------


@attrs.frozen
class RootFS:
    """A prepared root filesystem: ``path`` is what the runtime gets as ``root.path``."""

    path: Path
    mode: Literal["overlay", "copy"]
    container_dir: Path
    lowers: tuple[Path, ...] = ()
    upper: Path | None = None
    work: Path | None = None


def prepare_rootfs(
    layers: Sequence[Path | str],
    container_dir: Path | str,
    *,
    mode: RootFSMode = "auto",
) -> RootFS:
    """Build a container's root filesystem at ``container_dir/rootfs`` from ``layers``.

    ``layers`` come bottom first; each is an extracted layer directory or a layer blob
    file. ``mode="auto"`` uses an overlay mount when :func:`overlay_supported` and the
    options fit, else a copy. ``container_dir`` must not hold a ``rootfs`` already. On
    failure everything made here is removed again.
    """
    if mode not in ("auto", "overlay", "copy"):
        raise InvalidArgument(f"mode must be 'auto', 'overlay' or 'copy', got {mode!r}")
    if isinstance(layers, (str, Path)):
        raise InvalidArgument("layers must be a sequence of paths, not one path")
    sources = [Path(p) for p in layers]
    if not sources:
        raise InvalidArgument("a root filesystem needs at least one layer")
    for source in sources:
        if not source.exists():
            raise NotFound(f"layer {source} does not exist")
    container_dir = Path(container_dir)
    rootfs = container_dir / "rootfs"
    if rootfs.exists():
        raise AlreadyExists(f"{rootfs} exists already; release it first")
    created_dir = not container_dir.exists()
    container_dir.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    try:
        use_overlay = mode == "overlay" or (mode == "auto" and overlay_supported(container_dir))
        if use_overlay:
            return _prepare_overlay(sources, container_dir, rootfs, made, strict=mode == "overlay")
        return _prepare_copy(sources, container_dir, rootfs, made)
    except BaseException:
        if os.path.ismount(rootfs):
            with contextlib.suppress(Exception):
                unmount(rootfs, detach=True)
        for path in reversed(made):
            if not os.path.ismount(path):
                shutil.rmtree(path, ignore_errors=True)
        if created_dir:
            with contextlib.suppress(OSError):
                container_dir.rmdir()
        raise


def _prepare_overlay(
    sources: list[Path], container_dir: Path, rootfs: Path, made: list[Path], *, strict: bool
) -> RootFS:
    lowers: list[Path] = []
    for i, source in enumerate(sources):
        if source.is_dir():
            lowers.append(source.resolve())
        else:
            layer_dir = container_dir / "layers" / str(i)
            layer_dir.parent.mkdir(exist_ok=True)
            if container_dir / "layers" not in made:
                made.append(container_dir / "layers")
            extract_layer_dir(source, layer_dir)
            lowers.append(layer_dir.resolve())
    upper, work = container_dir / "upper", container_dir / "work"
    for path in (upper, work, rootfs):
        path.mkdir()
        made.append(path)
    os.chmod(upper, 0o755)
    try:
        _overlay_data(lowers, upper.resolve(), work.resolve())
    except InvalidArgument:
        if strict:
            raise
        for path in (upper, work):
            shutil.rmtree(path)
            made.remove(path)
        rootfs.rmdir()
        made.remove(rootfs)
        return _prepare_copy(sources, container_dir, rootfs, made)
    mount_overlay(lowers, upper.resolve(), work.resolve(), rootfs)
    return RootFS(
        path=rootfs,
        mode="overlay",
        container_dir=container_dir,
        lowers=tuple(lowers),
        upper=upper,
        work=work,
    )


def _prepare_copy(
    sources: list[Path], container_dir: Path, rootfs: Path, made: list[Path]
) -> RootFS:
    rootfs.mkdir()
    made.append(rootfs)
    os.chmod(rootfs, 0o755)
    for source in sources:
        if source.is_dir():
            with tempfile.TemporaryFile(dir=container_dir) as tmp:
                _dir_as_tar(source, tmp)
                tmp.seek(0)
                apply_layer(tmp, rootfs)
        else:
            apply_layer(source, rootfs)
    return RootFS(path=rootfs, mode="copy", container_dir=container_dir)


def release_rootfs(rootfs: RootFS | Path | str, *, detach: bool = False) -> None:
    """Unmount (if mounted) and delete a root filesystem made by :func:`prepare_rootfs`.

    Accepts the :class:`RootFS` or its ``container_dir`` (after a restart of the caller).
    Layer directories passed in by the caller are never touched; the ``rootfs``,
    ``upper``, ``work`` and ``layers`` directories under ``container_dir`` are removed.
    """
    container_dir = rootfs.container_dir if isinstance(rootfs, RootFS) else Path(rootfs)
    target = container_dir / "rootfs"
    unmount(target, detach=detach)
    if os.path.ismount(target):
        raise FailedPrecondition(f"{target} is still mounted; not deleting through it")
    for name in ("rootfs", "upper", "work", "layers"):
        shutil.rmtree(container_dir / name, ignore_errors=True)
