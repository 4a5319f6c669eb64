"""Tests of libcontainerd.content.rootfs: chain ids and copy-mode root filesystems."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcontainerd.content import rootfs as rootfs_mod
from libcontainerd.content.rootfs import (
    chain_id,
    chain_ids,
    extract_layer_dir,
    prepare_rootfs,
    release_rootfs,
)
from libcontainerd.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from libcontainerd.testing.image_builder import OPAQUE_WHITEOUT, TarEntrySpec, build_layer, whiteout

IS_ROOT = os.geteuid() == 0

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_chain_id_follows_the_oci_definition() -> None:
    assert chain_id([D1]) == D1
    c2 = _sha(f"{D1} {D2}")
    assert chain_id([D1, D2]) == c2
    assert chain_ids([D1, D2, D3]) == [D1, c2, _sha(f"{c2} {D3}")]


def test_chain_id_refuses_bad_input() -> None:
    with pytest.raises(InvalidArgument):
        chain_id([])
    with pytest.raises(InvalidArgument):
        chain_id(D1)
    with pytest.raises(InvalidArgument):
        chain_id([D1, "sha256:../x"])


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=6))
def test_chain_id_is_prefix_consistent(blobs: list[bytes]) -> None:
    ids = ["sha256:" + hashlib.sha256(b).hexdigest() for b in blobs]
    chain = chain_ids(ids)
    assert all(chain_id(ids[: i + 1]) == c for i, c in enumerate(chain))


def _layers(tmp_path: Path) -> list[Path]:
    lower = build_layer(
        {
            "bin": TarEntrySpec.dir(),
            "bin/tool": TarEntrySpec.file(b"#!/bin/sh\n", mode=0o755),
            "etc": TarEntrySpec.dir(),
            "etc/motd": b"lower",
            "etc/gone": b"x",
            "opq": TarEntrySpec.dir(),
            "opq/old": b"old",
        }
    )
    upper = build_layer(
        {
            "etc/motd": b"upper",
            whiteout("etc/gone"): b"",
            "opq/" + OPAQUE_WHITEOUT: b"",
            "opq/new": b"new",
        },
        compression="none",
    )
    paths = []
    for i, blob in enumerate((lower, upper)):
        path = tmp_path / f"layer{i}.tar"
        path.write_bytes(blob.data)
        paths.append(path)
    return paths


def _check_merged(root: Path) -> None:
    assert (root / "etc/motd").read_bytes() == b"upper"
    assert not (root / "etc/gone").exists()
    assert sorted(os.listdir(root / "opq")) == ["new"]
    assert stat.S_IMODE(os.stat(root / "bin/tool").st_mode) == 0o755


def test_copy_mode_from_blobs(tmp_path: Path) -> None:
    layers = _layers(tmp_path)
    rootfs = prepare_rootfs(layers, tmp_path / "c1", mode="copy")
    assert rootfs.mode == "copy" and rootfs.path == tmp_path / "c1" / "rootfs"
    _check_merged(rootfs.path)
    with pytest.raises(AlreadyExists):
        prepare_rootfs(layers, tmp_path / "c1", mode="copy")
    release_rootfs(rootfs)
    assert not rootfs.path.exists()


@pytest.mark.skipif(not IS_ROOT, reason="overlay-format layer directories need root")
def test_copy_mode_from_layer_dirs(tmp_path: Path) -> None:
    dirs = []
    for i, blob in enumerate(_layers(tmp_path)):
        extract_layer_dir(blob, tmp_path / f"dir{i}")
        dirs.append(tmp_path / f"dir{i}")
    with pytest.raises(AlreadyExists):
        extract_layer_dir(_layers(tmp_path)[0], dirs[0])
    rootfs = prepare_rootfs(dirs, tmp_path / "c2", mode="copy")
    _check_merged(rootfs.path)
    release_rootfs(tmp_path / "c2")
    assert not rootfs.path.exists()
    assert (dirs[0] / "etc/motd").exists()  # the caller's layer directories stay


def test_bad_layer_leaves_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(build_layer({"../x": b"evil"}, compression="none").data)
    with pytest.raises(InvalidArgument):
        prepare_rootfs([_layers(tmp_path)[0], bad], tmp_path / "c3", mode="copy")
    assert not (tmp_path / "c3").exists()
    with pytest.raises(NotFound):
        prepare_rootfs([tmp_path / "missing"], tmp_path / "c4")
    with pytest.raises(InvalidArgument):
        prepare_rootfs([], tmp_path / "c4")
    with pytest.raises(InvalidArgument):
        prepare_rootfs([bad], tmp_path / "c4", mode="fast")  # type: ignore[arg-type]


def test_overlay_options_refuse_unsafe_paths(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="cannot carry"):
        rootfs_mod._overlay_data([Path("/a,b")], Path("/u"), Path("/w"))
    with pytest.raises(InvalidArgument, match="more than"):
        rootfs_mod._overlay_data([Path("/" + "x" * 200)] * 30, Path("/u"), Path("/w"))
    data = rootfs_mod._overlay_data([Path("/l1"), Path("/l2")], Path("/u"), Path("/w"))
    assert data == "lowerdir=/l2:/l1,upperdir=/u,workdir=/w"


@pytest.mark.skipif(IS_ROOT, reason="checks the unprivileged refusal")
def test_extract_layer_dir_needs_root(tmp_path: Path) -> None:  # pragma: no cover
    with pytest.raises(PermissionDenied):
        extract_layer_dir(_layers(tmp_path)[0], tmp_path / "d")
