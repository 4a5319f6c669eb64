"""Tests of libcontainerd.content.unpack: safe layer extraction, whiteouts, diff ids.

Every hostile-input test keeps a sentinel directory next to ``dest`` and proves that it,
and everything else outside ``dest``, is unchanged after the attempt.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libcontainerd.content.dirfd import normalise_name
from libcontainerd.content.unpack import LayerResult, apply_layer, zstd_available
from libcontainerd.errors import (
    DataLoss,
    DigestMismatch,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unimplemented,
)
from libcontainerd.testing.image_builder import (
    OPAQUE_WHITEOUT,
    EntryInput,
    TarEntrySpec,
    build_layer,
    whiteout,
)
from libcontainerd.types.descriptor import MEDIA_TYPE_OCI_LAYER_ZSTD

T = TarEntrySpec
IS_ROOT = os.geteuid() == 0

Snapshot = dict[str, tuple[int, int, bytes | str | None]]


def snapshot(top: Path, exclude: Path | None = None) -> Snapshot:
    """Every path under ``top`` (except ``exclude``) with type, mode and content/target."""
    found: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        if exclude is not None and Path(dirpath) == exclude:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            if exclude is not None and path == exclude:
                continue
            st_ = path.lstat()
            content: bytes | str | None = None
            if stat.S_ISREG(st_.st_mode):
                content = path.read_bytes()
            elif stat.S_ISLNK(st_.st_mode):
                content = os.readlink(path)
            found[str(path.relative_to(top))] = (st_.st_mode, st_.st_nlink, content)
    return found


class Box:
    """A temp area: ``dest`` to extract into and a ``sentinel`` directory next to it."""

    def __init__(self, top: Path) -> None:
        self.top = top
        self.dest = top / "root"
        self.sentinel = top / "sentinel"
        self.dest.mkdir()
        self.sentinel.mkdir()
        (self.sentinel / "file").write_bytes(b"precious")
        (self.sentinel / "sub").mkdir()
        self.before = snapshot(top, exclude=self.dest)
        self.passwd = os.stat("/etc/passwd")

    def unchanged(self) -> None:
        assert snapshot(self.top, exclude=self.dest) == self.before
        after = os.stat("/etc/passwd")
        assert (after.st_ino, after.st_nlink, after.st_size, after.st_mtime_ns) == (
            self.passwd.st_ino,
            self.passwd.st_nlink,
            self.passwd.st_size,
            self.passwd.st_mtime_ns,
        )

    def apply(self, data: bytes, **kwargs: object) -> LayerResult:
        return apply_layer(io.BytesIO(data), self.dest, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    b = Box(tmp_path)
    yield b
    b.unchanged()


def layer(entries: list[tuple[str, EntryInput]], compression: str = "none") -> bytes:
    return build_layer(entries, compression=compression, sort=False).data  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# Hostile names
# --------------------------------------------------------------------------------------


def test_dotdot_is_refused(box: Box) -> None:
    with pytest.raises(InvalidArgument, match=r"'\.\./sentinel/x'.*climbs out"):
        box.apply(layer([("../sentinel/x", b"evil")]))
    assert list(box.dest.iterdir()) == []


def test_inner_dotdot_escape_is_refused(box: Box) -> None:
    with pytest.raises(InvalidArgument, match="climbs out"):
        box.apply(layer([("a/../../sentinel/x", b"evil")]))
    assert list(box.dest.iterdir()) == []


def test_inner_dotdot_that_stays_inside_is_folded(box: Box) -> None:
    box.apply(layer([("a/../b", b"ok")]))
    assert (box.dest / "b").read_bytes() == b"ok"


def test_absolute_name_is_confined_to_dest(box: Box) -> None:
    target = str(box.sentinel / "x")
    box.apply(layer([(target, b"evil"), ("/etc/passwd", b"evil")]))
    assert (box.dest / target.lstrip("/")).read_bytes() == b"evil"
    assert (box.dest / "etc/passwd").read_bytes() == b"evil"


def test_symlink_to_root_then_write_beneath(box: Box) -> None:
    rel = str(box.sentinel).lstrip("/")
    box.apply(layer([("link", T.symlink("/")), (f"link/{rel}/x", b"evil")]))
    assert os.readlink(box.dest / "link") == "/"
    assert (box.dest / rel / "x").read_bytes() == b"evil"


def test_symlink_to_outside_dir_then_write_beneath(box: Box) -> None:
    box.apply(layer([("link", T.symlink(str(box.sentinel))), ("link/file", b"evil")]))
    assert (box.dest / str(box.sentinel).lstrip("/") / "file").read_bytes() == b"evil"


def test_relative_symlink_escape_is_clamped(box: Box) -> None:
    box.apply(layer([("link", T.symlink("../sentinel")), ("link/file", b"evil")]))
    assert (box.dest / "sentinel/file").read_bytes() == b"evil"


def test_symlink_chain_escape(box: Box) -> None:
    entries: list[tuple[str, EntryInput]] = [
        ("a", T.symlink("b")),
        ("b", T.symlink("c/../../../../../../..")),
        ("c", T.dir()),
        ("a/sentinel/file", b"evil"),
        ("d", T.symlink("e")),
        ("e", T.symlink("/" + str(box.sentinel))),
        ("d/sub/x", b"evil"),
    ]
    box.apply(layer(entries))
    assert (box.dest / "sentinel/file").read_bytes() == b"evil"
    assert (box.dest / str(box.sentinel).lstrip("/") / "sub/x").read_bytes() == b"evil"


def test_symlink_loop_is_refused(box: Box) -> None:
    with pytest.raises(InvalidArgument, match="'a/x'"):
        box.apply(layer([("a", T.symlink("b")), ("b", T.symlink("a")), ("a/x", b"evil")]))


def test_symlink_replacing_directory_then_file_beneath(box: Box) -> None:
    entries: list[tuple[str, EntryInput]] = [
        ("d", T.dir()),
        ("d/old", b"old"),
        ("d", T.symlink(str(box.sentinel))),
        ("d/file", b"evil"),
    ]
    box.apply(layer(entries))
    assert os.path.islink(box.dest / "d")
    assert (box.dest / str(box.sentinel).lstrip("/") / "file").read_bytes() == b"evil"


def test_symlink_replacing_directory_across_layers(box: Box) -> None:
    box.apply(layer([("d", T.dir()), ("d/old", b"old")]))
    box.apply(layer([("d", T.symlink(str(box.sentinel)))]))
    box.apply(layer([("d/file", b"evil"), ("d/sub/x", b"evil")]))
    inner = box.dest / str(box.sentinel).lstrip("/")
    assert (inner / "file").read_bytes() == b"evil"


def test_existing_symlink_at_name_is_replaced_not_followed(box: Box) -> None:
    box.apply(layer([("f", T.symlink(str(box.sentinel / "file")))]))
    box.apply(layer([("f", b"new")]))
    assert not os.path.islink(box.dest / "f")
    assert (box.dest / "f").read_bytes() == b"new"


def test_hardlink_to_etc_passwd_is_refused(box: Box) -> None:
    with pytest.raises(InvalidArgument, match="hardlink target 'etc/passwd' does not exist"):
        box.apply(layer([("pw", T.hardlink("/etc/passwd"))]))
    assert not (box.dest / "pw").exists()


def test_bad_hardlink_creates_no_parent_dirs(box: Box) -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        box.apply(layer([("new/dir/h", T.hardlink("missing"))]))
    assert list(box.dest.iterdir()) == []


def test_layer_path_that_is_a_directory(box: Box) -> None:
    with pytest.raises(InvalidArgument, match="cannot read layer file"):
        apply_layer(box.sentinel, box.dest)


def test_hardlink_with_dotdot_is_refused(box: Box) -> None:
    with pytest.raises(InvalidArgument, match="climbs out"):
        box.apply(layer([("pw", T.hardlink("../sentinel/file"))]))


def test_hardlink_through_outward_symlink_stays_inside(box: Box) -> None:
    entries: list[tuple[str, EntryInput]] = [
        ("out", T.symlink(str(box.sentinel))),
        ("h", T.hardlink("out/file")),
    ]
    # out/file resolves to dest/<sentinel>/file, which does not exist inside dest.
    with pytest.raises(InvalidArgument, match="does not exist"):
        box.apply(layer(entries))


def test_hardlink_to_symlink_that_leads_out(box: Box) -> None:
    entries: list[tuple[str, EntryInput]] = [
        ("s", T.symlink(str(box.sentinel / "file"))),
        ("h", T.hardlink("s")),
        ("h", b"overwrite attempt"),
        ("s2", T.symlink(str(box.sentinel))),
        ("h2", T.hardlink("s2")),
        ("h2/file", b"evil"),
    ]
    box.apply(layer(entries))
    assert os.path.islink(box.dest / "s")
    assert (box.dest / "h").read_bytes() == b"overwrite attempt"
    assert os.path.islink(box.dest / "h2")
    assert (box.dest / str(box.sentinel).lstrip("/") / "file").read_bytes() == b"evil"


def test_hardlink_to_directory_is_refused(box: Box) -> None:
    with pytest.raises(InvalidArgument, match="is a directory"):
        box.apply(layer([("d", T.dir()), ("h", T.hardlink("d"))]))


def test_hardlink_inside_works(box: Box) -> None:
    box.apply(layer([("a", b"data"), ("b", T.hardlink("a"))]))
    assert os.stat(box.dest / "a").st_ino == os.stat(box.dest / "b").st_ino


@pytest.mark.parametrize("kind", ["char", "block"])
def test_device_refused_when_unprivileged(box: Box, kind: str) -> None:
    spec = T.char_device(1, 3) if kind == "char" else T.block_device(8, 0)
    with pytest.raises(PermissionDenied, match="'dev/x' is a device node"):
        box.apply(layer([("dev/x", spec)]), privileged=False)
    assert not (box.dest / "dev").exists()


def test_device_skipped_when_asked(box: Box) -> None:
    result = box.apply(
        layer([("null", T.char_device(1, 3)), ("f", b"x")]), privileged=False, skip_devices=True
    )
    assert result.skipped == ("null",)
    assert not (box.dest / "null").exists()
    assert (box.dest / "f").exists()


@pytest.mark.skipif(not IS_ROOT, reason="creating device nodes needs root")
def test_device_created_when_privileged(box: Box) -> None:
    box.apply(layer([("null", T.char_device(1, 3)), ("sda", T.block_device(8, 0))]))
    st_ = os.lstat(box.dest / "null")
    assert stat.S_ISCHR(st_.st_mode)
    assert (os.major(st_.st_rdev), os.minor(st_.st_rdev)) == (1, 3)
    assert stat.S_ISBLK(os.lstat(box.dest / "sda").st_mode)


def test_overlong_component_is_refused(box: Box) -> None:
    with pytest.raises(InvalidArgument, match="longer than 255"):
        box.apply(layer([("a/" + "x" * 256, b"x")]))


def test_overlong_path_is_refused(box: Box) -> None:
    name = "/".join(["d" * 200] * 21)
    with pytest.raises(InvalidArgument, match="more than the 4096"):
        box.apply(layer([(name, b"x")]))
    assert list(box.dest.iterdir()) == []


def _tar_with_pax_path(path: str, *, linkpath: str | None = None) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("placeholder")
        info.pax_headers = {"path": path}
        if linkpath is not None:
            info.type = tarfile.SYMTYPE
            info.pax_headers["linkpath"] = linkpath
        tar.addfile(info, io.BytesIO(b""))
    return raw.getvalue()


def test_nul_in_name_is_refused(box: Box) -> None:
    with pytest.raises(InvalidArgument, match="NUL"):
        box.apply(_tar_with_pax_path("a\x00/../../sentinel/x"))
    assert list(box.dest.iterdir()) == []


def test_nul_in_symlink_target_is_refused(box: Box) -> None:
    with pytest.raises(InvalidArgument, match="NUL"):
        box.apply(_tar_with_pax_path("s", linkpath="/etc\x00x"))


def test_whiteout_of_dotdot_is_refused(box: Box) -> None:
    with pytest.raises(InvalidArgument, match="climbs out"):
        box.apply(layer([("../.wh.sentinel", b"")]))
    with pytest.raises(InvalidArgument, match="whiteout names no file"):
        box.apply(layer([(".wh..", b"")]))
    with pytest.raises(InvalidArgument, match="whiteout names no file"):
        box.apply(layer([("a/.wh...", b"")]))


def test_whiteout_through_symlink_stays_inside(box: Box) -> None:
    box.apply(layer([("link", T.symlink(str(box.sentinel))), ("up", T.symlink(".."))]))
    box.apply(layer([("link/.wh.file", b""), ("link/.wh.sub", b""), ("up/.wh.sentinel", b"")]))
    assert os.path.islink(box.dest / "link")


def test_opaque_whiteout_through_symlink_stays_inside(box: Box) -> None:
    box.apply(layer([("link", T.symlink(str(box.sentinel)))]))
    box.apply(layer([("link/" + OPAQUE_WHITEOUT, b"")]))


# --------------------------------------------------------------------------------------
# Normal behaviour
# --------------------------------------------------------------------------------------


def test_whiteouts_across_two_layers(box: Box) -> None:
    lower = build_layer(
        {
            "etc": T.dir(),
            "etc/motd": b"hello",
            "etc/keep": b"keep",
            "var": T.dir(mode=0o700),
            "var/cache": T.dir(),
            "var/cache/a": b"a",
            "var/cache/sub": T.dir(),
            "var/cache/sub/b": b"b",
            "gone": T.dir(),
            "gone/x": b"x",
        }
    )
    upper = build_layer(
        {
            whiteout("etc/motd"): b"",
            whiteout("gone"): b"",
            "var/cache/" + OPAQUE_WHITEOUT: b"",
            "var/cache/new": b"new",
            "var/cache/sub": T.dir(),
            "var/cache/sub/c": b"c",
        }
    )
    box.apply(lower.data)
    box.apply(upper.data)
    assert sorted(p.name for p in (box.dest / "etc").iterdir()) == ["keep"]
    assert not (box.dest / "gone").exists()
    cache = box.dest / "var/cache"
    assert sorted(str(p.relative_to(cache)) for p in cache.rglob("*")) == [
        "new",
        "sub",
        "sub/c",
    ]
    assert not list(box.dest.rglob(".wh.*"))
    assert stat.S_IMODE(os.stat(box.dest / "var").st_mode) == 0o700


def test_whiteout_does_not_remove_same_layer_entry(box: Box) -> None:
    box.apply(layer([("a", b"lower")]))
    box.apply(layer([("a", b"same layer"), (".wh.a", b"")]))
    assert (box.dest / "a").read_bytes() == b"same layer"


def test_opaque_keeps_entries_written_before_the_marker(box: Box) -> None:
    box.apply(layer([("d/old", b"old"), ("d/sub/older", b"x")]))
    box.apply(layer([("d/sub/new", b"new"), ("d/" + OPAQUE_WHITEOUT, b"")]))
    assert sorted(str(p.relative_to(box.dest)) for p in box.dest.rglob("*")) == [
        "d",
        "d/sub",
        "d/sub/new",
    ]


def test_whiteout_of_missing_path_is_harmless(box: Box) -> None:
    box.apply(layer([("nothere/.wh.x", b""), (".wh.none", b"")]))
    assert list(box.dest.iterdir()) == []


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_diff_id_and_size_match_builder(box: Box, compression: Literal["gzip", "none"]) -> None:
    blob = build_layer(
        {"a": b"x" * 5000, "d": T.dir(), "d/l": T.symlink("../a")}, compression=compression
    )
    result = box.apply(blob.data)
    assert result.diff_id == blob.diff_id
    raw = gzip.decompress(blob.data) if compression == "gzip" else blob.data
    assert result.size == len(raw)
    assert (box.dest / "a").read_bytes() == b"x" * 5000
    assert os.readlink(box.dest / "d/l") == "../a"


def test_diff_id_covers_trailing_padding(box: Box) -> None:
    data = build_layer({"a": b"x"}, compression="none").data + b"\0" * 4096
    result = box.apply(data)
    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()


def test_layer_from_path_and_expected_diff_id(box: Box, tmp_path: Path) -> None:
    blob = build_layer({"a": b"x"})
    path = tmp_path / "blob"
    path.write_bytes(blob.data)
    assert apply_layer(path, box.dest, expected_diff_id=blob.diff_id).diff_id == blob.diff_id
    with pytest.raises(DigestMismatch) as info:
        apply_layer(path, box.dest, expected_diff_id="sha256:" + "0" * 64)
    assert info.value.actual == blob.diff_id
    path.unlink()


def test_missing_inputs(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        apply_layer(io.BytesIO(b""), tmp_path / "nope")
    with pytest.raises(NotFound):
        apply_layer(tmp_path / "nope.tar", tmp_path)
    with pytest.raises(InvalidArgument, match="not a layer type"):
        apply_layer(io.BytesIO(b""), tmp_path, media_type="application/json")


def test_garbage_is_invalid(box: Box) -> None:
    with pytest.raises(InvalidArgument, match="not a valid tar"):
        box.apply(b"this is not a tar archive at all" * 100)


def test_truncated_gzip_is_data_loss(box: Box) -> None:
    data = build_layer({"a": os.urandom(100_000)}).data
    with pytest.raises(DataLoss, match="corrupt or truncated"):
        box.apply(data[: len(data) // 2])


@pytest.mark.skipif(zstd_available(), reason="zstandard is installed here")
def test_zstd_without_module_is_unimplemented(box: Box) -> None:
    with pytest.raises(Unimplemented, match="zstandard"):
        box.apply(b"", media_type=MEDIA_TYPE_OCI_LAYER_ZSTD)
    with pytest.raises(Unimplemented, match="zstandard"):
        box.apply(b"\x28\xb5\x2f\xfd" + b"\0" * 100)


def test_setuid_stripped_when_unprivileged(box: Box) -> None:
    box.apply(
        layer([("su", T.file(b"x", mode=0o4755)), ("sg", T.file(b"x", mode=0o2755))]),
        privileged=False,
    )
    assert stat.S_IMODE(os.stat(box.dest / "su").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(box.dest / "sg").st_mode) == 0o755


@pytest.mark.skipif(not IS_ROOT, reason="ownership and setuid need root")
def test_setuid_and_owner_kept_when_root(box: Box) -> None:
    box.apply(layer([("su", T.file(b"x", mode=0o4755, uid=1000, gid=1001))]))
    st_ = os.stat(box.dest / "su")
    assert stat.S_IMODE(st_.st_mode) == 0o4755
    assert (st_.st_uid, st_.st_gid) == (1000, 1001)


def test_mtimes_applied(box: Box) -> None:
    entries: list[tuple[str, EntryInput]] = [
        ("d", T("dir", mtime=1_000_000)),
        ("d/f", T("file", content=b"x", mtime=2_000_000)),
        ("d/l", T("symlink", linkname="f", mtime=3_000_000)),
        ("p", T("fifo", mtime=4_000_000)),
    ]
    box.apply(layer(entries))
    assert os.stat(box.dest / "d").st_mtime == 1_000_000
    assert os.stat(box.dest / "d/f").st_mtime == 2_000_000
    assert os.lstat(box.dest / "d/l").st_mtime == 3_000_000
    assert stat.S_ISFIFO(os.lstat(box.dest / "p").st_mode)


def test_readonly_dir_mode_applied_at_end(box: Box) -> None:
    box.apply(layer([("ro", T.dir(mode=0o555)), ("ro/f", b"x")]), privileged=False)
    assert stat.S_IMODE(os.stat(box.dest / "ro").st_mode) == 0o555
    os.chmod(box.dest / "ro", 0o755)


def test_file_replaced_by_directory_and_back(box: Box) -> None:
    box.apply(layer([("x", b"file")]))
    box.apply(layer([("x", T.dir()), ("x/y", b"y")]))
    assert (box.dest / "x/y").read_bytes() == b"y"
    box.apply(layer([("x", b"file again")]))
    assert (box.dest / "x").read_bytes() == b"file again"


def test_parent_that_is_a_file_is_invalid(box: Box) -> None:
    with pytest.raises(InvalidArgument, match=r"'f/x'.*not a directory"):
        box.apply(layer([("f", b"x"), ("f/x", b"y")]))


@pytest.mark.skipif(not IS_ROOT, reason="overlay whiteouts need root")
def test_overlay_whiteout_format(box: Box) -> None:
    box.apply(
        layer([("gone", b""), (".wh.gone", b""), ("d/" + OPAQUE_WHITEOUT, b""), ("d/f", b"")]),
        whiteout_format="overlay",
    )
    st_ = os.lstat(box.dest / "gone")
    assert stat.S_ISCHR(st_.st_mode) and st_.st_rdev == 0
    try:
        assert os.getxattr(box.dest / "d", "trusted.overlay.opaque") == b"y"
    except OSError as exc:  # pragma: no cover - filesystems without trusted xattrs
        pytest.skip(f"no trusted xattrs here: {exc}")


def test_overlay_format_needs_privilege(box: Box) -> None:
    with pytest.raises(PermissionDenied):
        box.apply(layer([("a", b"")]), whiteout_format="overlay", privileged=False)


def test_normalise_unit() -> None:
    assert normalise_name("/./a//b/./c/", "x") == ("a", "b", "c")
    assert normalise_name("a/b/../c", "x") == ("a", "c")
    assert normalise_name("./", "x") == ()


# --------------------------------------------------------------------------------------
# Property: arbitrary names never escape
# --------------------------------------------------------------------------------------

_names = st.text(min_size=1, max_size=40).filter(lambda s: "\0" not in s)
_hostile = st.sampled_from(
    ["..", "../x", "/", "/etc", "a/../..", "sentinel", "../sentinel/file", ".wh.x", "l"]
)
_entry = st.tuples(
    st.one_of(_names, _hostile, st.builds(lambda a, b: f"{a}/{b}", _hostile, _names)),
    st.one_of(
        st.just(b"data"),
        st.builds(T.dir),
        st.builds(T.symlink, st.one_of(_names, _hostile)),
        st.builds(T.hardlink, st.one_of(_names, _hostile)),
    ),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(_entry, min_size=1, max_size=8))
def test_arbitrary_entries_never_escape(entries: list[tuple[str, EntryInput]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        b = Box(Path(tmp))
        (b.dest / "l").symlink_to(b.sentinel)
        with contextlib.suppress(InvalidArgument, PermissionDenied):
            b.apply(layer(entries, compression="gzip"))
        b.unchanged()
        # Everything extracted is a real path below dest (no entry reached out).
        for path in b.dest.rglob("*"):
            assert os.path.realpath(path.parent).startswith(str(b.dest))


# --------------------------------------------------------------------------------------
# Really unprivileged (a forked child that dropped to nobody)
# --------------------------------------------------------------------------------------

NOBODY = 65534


def _as_nobody(dest: Path, data: bytes) -> str:
    """Apply ``data`` to ``dest`` in a child running as nobody; the outcome's class name."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        outcome = "ok"
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            apply_layer(io.BytesIO(data), dest)
        except BaseException as exc:
            outcome = type(exc).__name__
        os.write(write_fd, outcome.encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        outcome = pipe.read().decode()
    os.waitpid(pid, 0)
    return outcome


@pytest.mark.skipif(not IS_ROOT, reason="needs root to drop to another user")
def test_unprivileged_extraction_for_real() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp)
        os.chmod(top, 0o755)
        b = Box(top)
        os.chown(b.dest, NOBODY, NOBODY)
        hostile = layer(
            [
                ("link", T.symlink(str(b.sentinel))),
                ("link/file", b"evil"),
                ("up", T.symlink("../../..")),
                ("up/sentinel/x", b"evil"),
                ("su", T.file(b"x", mode=0o4755, uid=0)),
                ("ro", T.dir(mode=0o555)),
                ("ro/f", b"inside a read-only dir"),
            ]
        )
        assert _as_nobody(b.dest, hostile) == "ok"
        b.unchanged()
        su = os.stat(b.dest / "su")
        assert (stat.S_IMODE(su.st_mode), su.st_uid) == (0o755, NOBODY)
        assert (b.dest / "ro/f").read_bytes() == b"inside a read-only dir"
        assert (b.dest / "sentinel/x").read_bytes() == b"evil"
        assert _as_nobody(b.dest, layer([("dev/null", T.char_device(1, 3))])) == "PermissionDenied"
        assert not (b.dest / "dev").exists()
        b.unchanged()
