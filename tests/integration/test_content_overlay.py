"""Overlay root filesystems on the real kernel (root only)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from libcontainerd.content.rootfs import overlay_supported, prepare_rootfs, release_rootfs
from libcontainerd.testing.image_builder import OPAQUE_WHITEOUT, build_layer, whiteout

pytestmark = pytest.mark.runtime


@pytest.fixture
def overlay_dir(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("overlay mounts need root")
    if not overlay_supported(tmp_path):
        pytest.skip("this kernel/filesystem does not allow an overlay mount here")
    return tmp_path


def test_overlay_rootfs_mount_and_unmount(overlay_dir: Path) -> None:
    lower = build_layer({"a": b"from lower", "gone": b"x", "d/old": b"old", "keep": b"k"})
    upper = build_layer(
        {"b": b"from upper", whiteout("gone"): b"", "d/" + OPAQUE_WHITEOUT: b"", "d/new": b"n"}
    )
    blobs = []
    for i, blob in enumerate((lower, upper)):
        path = overlay_dir / f"l{i}.tar.gz"
        path.write_bytes(blob.data)
        blobs.append(path)
    rootfs = prepare_rootfs(blobs, overlay_dir / "ctr", mode="overlay")
    try:
        assert rootfs.mode == "overlay"
        assert os.path.ismount(rootfs.path)
        assert (rootfs.path / "a").read_bytes() == b"from lower"
        assert (rootfs.path / "b").read_bytes() == b"from upper"
        assert not (rootfs.path / "gone").exists()
        assert sorted(os.listdir(rootfs.path / "d")) == ["new"]
        (rootfs.path / "written").write_bytes(b"w")
        assert rootfs.upper is not None
        assert (rootfs.upper / "written").read_bytes() == b"w"
        (rootfs.path / "keep").unlink()
        assert (rootfs.lowers[0] / "keep").exists()  # lower layers are never changed
    finally:
        release_rootfs(rootfs)
    assert not os.path.ismount(rootfs.path)
    assert not rootfs.path.exists()


def test_auto_mode_prefers_overlay(overlay_dir: Path) -> None:
    path = overlay_dir / "l.tar"
    path.write_bytes(build_layer({"x": b"1"}, compression="none").data)
    rootfs = prepare_rootfs([path], overlay_dir / "ctr")
    try:
        assert rootfs.mode == "overlay"
        assert (rootfs.path / "x").read_bytes() == b"1"
    finally:
        release_rootfs(overlay_dir / "ctr")
    assert not (overlay_dir / "ctr" / "rootfs").exists()
