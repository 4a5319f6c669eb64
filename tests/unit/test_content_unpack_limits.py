"""Hostile layers against the unpack caps and the directory-metadata pass of apply_layer."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from libcontainerd.content import unpack
from libcontainerd.content.unpack import apply_layer
from libcontainerd.errors import InvalidArgument, ResourceExhausted


def _tar(entries: list[tuple[tarfile.TarInfo, bytes | None]], **kwargs: object) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", **kwargs) as tar:  # type: ignore[call-overload]
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _dir(name: str, mode: int) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    return info, None


def _symlink(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info, None


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    return info, data


def test_directory_metadata_never_lands_on_a_symlink_target(tmp_path: Path) -> None:
    # p/d's mode must not reach q/d after p is replaced by a symlink to q.
    dest = tmp_path / "dest"
    dest.mkdir()
    layer = _tar(
        [
            _dir("q", 0o755),
            _dir("q/d", 0o755),
            _dir("p", 0o755),
            _dir("p/d", 0o700),
            _symlink("p", "q"),
        ]
    )
    apply_layer(io.BytesIO(layer), dest)
    assert (dest / "p").is_symlink()
    assert stat.S_IMODE(os.stat(dest / "q" / "d").st_mode) == 0o755


def test_decompression_bomb_stops_at_max_size(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    # 8 MiB of zeros gzip to a few KiB.
    layer = gzip.compress(_tar([_file("zeros", bytes(8 << 20))]))
    assert len(layer) < 64 * 1024
    with pytest.raises(ResourceExhausted, match="max_size"):
        apply_layer(io.BytesIO(layer), dest, max_size=1 << 20)
    # The same layer fits without the tight cap.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert apply_layer(io.BytesIO(layer), fresh).size >= 8 << 20


def test_entry_count_is_capped(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    layer = _tar([_file(f"f{i}", b"") for i in range(50)])
    with pytest.raises(ResourceExhausted, match="max_entries"):
        apply_layer(io.BytesIO(layer), dest, max_entries=10)
    assert len(os.listdir(dest)) <= 10


def test_huge_pax_header_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(unpack, "MAX_METADATA_BYTES", 4096)
    dest = tmp_path / "dest"
    dest.mkdir()
    info, data = _file("x", b"hi")
    info.pax_headers = {"comment": "A" * 20000}
    layer = _tar([(info, data)], format=tarfile.PAX_FORMAT)
    with pytest.raises(ResourceExhausted, match="metadata header"):
        apply_layer(io.BytesIO(layer), dest)
    assert os.listdir(dest) == []


def test_huge_gnu_long_name_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(unpack, "MAX_METADATA_BYTES", 1024)
    dest = tmp_path / "dest"
    dest.mkdir()
    layer = _tar([_file("d/" * 1000 + "x", b"")], format=tarfile.GNU_FORMAT)
    with pytest.raises(ResourceExhausted):
        apply_layer(io.BytesIO(layer), dest)


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10"])
def test_caps_are_validated(tmp_path: Path, bad: object) -> None:
    with pytest.raises(InvalidArgument):
        apply_layer(io.BytesIO(b""), tmp_path, max_size=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        apply_layer(io.BytesIO(b""), tmp_path, max_entries=bad)  # type: ignore[arg-type]
