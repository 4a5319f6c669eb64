"""A minimal root filesystem from the host's static busybox (``busybox-static``).

:func:`busybox_rootfs` writes it into a directory, ready to be an OCI runtime bundle's
``rootfs`` for runc or crun; :func:`busybox_entries` gives the same tree as tar entries
for image layers.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from libcontainerd.errors import FailedPrecondition, InvalidArgument, NotFound, RuntimeCommandError
from libcontainerd.testing.layers import EntryInput, TarEntrySpec, as_spec, entry_order

__all__ = ["busybox_entries", "busybox_rootfs", "find_busybox", "with_parents"]

_BUSYBOX_ENV = "LIBCONTAINERD_BUSYBOX"
_BUSYBOX_CANDIDATES = (Path("/bin/busybox"), Path("/usr/bin/busybox"))
_INSTALL_HINT = "install it with `apt-get install busybox-static`"

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


def busybox_entries(busybox: Path | str | None) -> dict[str, TarEntrySpec]:
    """The entries of the busybox root filesystem (see :func:`busybox_rootfs`)."""
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


def with_parents(
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
        out[name] = as_spec(value)
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
    entries = busybox_entries(busybox)
    if extra_files:
        added = with_parents(extra_files, entries)
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
    ordered = sorted(entries.items(), key=entry_order)
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
