"""Tests of libcontainerd.testing.image_builder: rootfs, layers, layouts and archives.

skopeo (an independent OCI implementation) checks that what we write is a valid layout
and archive; runc and crun check that the rootfs really runs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcontainerd.errors import FailedPrecondition, InvalidArgument, NotFound
from libcontainerd.testing import busybox
from libcontainerd.testing import image_builder as ib
from libcontainerd.testing.image_builder import (
    BuiltImage,
    ImageConfigSpec,
    TarEntrySpec,
    build_image,
    build_layer,
    busybox_rootfs,
    whiteout,
    write_docker_archive,
    write_layout_archive,
)
from libcontainerd.types.platform import Platform

HOST = ib.host_platform()
SKOPEO = shutil.which("skopeo")
needs_skopeo = pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REF = "org.opencontainers.image.ref.name"


# --- helpers ------------------------------------------------------------------------------


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def check_descriptor(layout: Path, desc: dict[str, Any]) -> bytes:
    data = blob(layout, desc["digest"])
    assert len(data) == desc["size"], desc
    assert sha(data) == desc["digest"]
    return data


def walk(layout: Path, desc: dict[str, Any]) -> Iterator[tuple[dict[str, Any], bytes]]:
    """Yield every descriptor reachable from ``desc`` with its verified content."""
    data = check_descriptor(layout, desc)
    yield desc, data
    media = desc["mediaType"]
    if media.endswith(("index.v1+json", "manifest.list.v2+json")):
        doc = json.loads(data)
        assert doc["mediaType"] == media
        for child in doc["manifests"]:
            yield from walk(layout, child)
    elif media.endswith(("manifest.v1+json", "manifest.v2+json")):
        doc = json.loads(data)
        assert doc["schemaVersion"] == 2 and doc["mediaType"] == media
        yield from walk(layout, doc["config"])
        for layer in doc["layers"]:
            yield from walk(layout, layer)


def tar_members(data: bytes) -> list[tarfile.TarInfo]:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def tar_read(data: bytes, name: str) -> bytes:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()


def _extract_all(tar: tarfile.TarFile, out: Path) -> None:
    """Extract an archive the builder wrote: the ``data`` filter where this Python has it.

    ``extractall(filter=...)`` arrived in 3.11.4 (and 3.10.12); Debian's 3.11.2 lacks it,
    so there the members are checked by hand to be plain files and directories under
    ``out`` before extracting.
    """
    if hasattr(tarfile, "data_filter"):
        tar.extractall(out, filter="data")
        return
    for member in tar.getmembers():
        path = (out / member.name).resolve()
        assert member.isfile() or member.isdir(), member.name
        assert path.is_relative_to(out.resolve()), member.name
    tar.extractall(out)


def skopeo(*args: str) -> str:
    assert SKOPEO is not None
    proc = subprocess.run([SKOPEO, *args], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    layout = tmp_path_factory.mktemp("single") / "layout"
    return build_image(
        layout,
        config=ImageConfigSpec(
            entrypoint=("/bin/sh", "-c"),
            cmd=("echo hello",),
            env=("PATH=/bin", "GREETING=hi"),
            working_dir="/home/app",
            user="app",
            labels={"b": "2", "a": "1"},
            exposed_ports=("8080", "53/udp"),
            stop_signal="SIGINT",
        ),
        extra_files={
            "/etc/motd": b"welcome\n",
            "opt/app/run.sh": TarEntrySpec.file(b"#!/bin/sh\necho ok\n", mode=0o755),
            "home/app/note": TarEntrySpec.file(b"x", uid=1000, gid=1000),
        },
    )


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    layout = tmp_path_factory.mktemp("multi") / "layout"
    return build_image(layout, platforms=["linux/amd64", "linux/arm64/v8", "linux/arm/v7"])


# --- busybox_rootfs -----------------------------------------------------------------------


def test_rootfs_tree(tmp_path: Path) -> None:
    root = busybox_rootfs(tmp_path / "rootfs")
    assert root == tmp_path / "rootfs"
    busybox = root / "bin" / "busybox"
    assert busybox.is_file() and not busybox.is_symlink()
    assert os.access(busybox, os.X_OK)
    assert ib.find_busybox(busybox) == busybox  # still a static ELF after the copy
    for path in ("bin/sh", "bin/true", "bin/cat", "usr/bin/env", "bin/id", "bin/hostname"):
        assert (root / path).resolve() == busybox.resolve(), path
    for d in ("proc", "sys", "dev", "tmp", "root", "home/app", "etc", "run", "var"):
        assert (root / d).is_dir() and not (root / d).is_symlink(), d
        assert not any((root / d).iterdir()) or d in ("etc", "home/app"), d
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    assert not (root / "etc" / "hostname").exists()
    if os.geteuid() == 0:
        st_app = (root / "home" / "app").stat()
        assert (st_app.st_uid, st_app.st_gid) == (1000, 1000)

    root_real = root.resolve()
    symlinks = [p for p in root.rglob("*") if p.is_symlink()]
    assert len(symlinks) > 100  # one per applet
    for link in symlinks:
        target = os.readlink(link)
        assert not target.startswith("/"), (link, target)
        resolved = link.resolve()
        assert resolved.is_relative_to(root_real), (link, resolved)
        assert resolved.exists(), link


def test_rootfs_accounts(tmp_path: Path) -> None:
    root = busybox_rootfs(tmp_path / "r")
    passwd = {
        line.split(":")[0]: line.split(":")
        for line in (root / "etc/passwd").read_text().splitlines()
    }
    assert passwd["root"][2:4] == ["0", "0"]
    assert passwd["app"][2:4] == ["1000", "1000"] and passwd["app"][5] == "/home/app"
    assert passwd["nobody"][2:4] == ["65534", "65534"]
    groups = {
        line.split(":")[0]: line.split(":")[2]
        for line in (root / "etc/group").read_text().splitlines()
    }
    assert groups == {"root": "0", "app": "1000", "nobody": "65534"}
    assert "localhost" in (root / "etc/hosts").read_text()


def test_rootfs_busybox_runs(tmp_path: Path) -> None:
    root = busybox_rootfs(tmp_path / "r")
    out = subprocess.run([root / "bin/busybox", "echo", "hi"], capture_output=True, check=True)
    assert out.stdout == b"hi\n"
    out = subprocess.run([root / "bin/sh", "-c", "echo $((6*7))"], capture_output=True, check=True)
    assert out.stdout == b"42\n"


def test_rootfs_extra_files(tmp_path: Path) -> None:
    root = busybox_rootfs(
        tmp_path / "r",
        extra_files={
            "/opt/tool/run": TarEntrySpec.file(b"#!/bin/sh\n", mode=0o700),
            "etc/motd": b"hi",
            "opt/link": TarEntrySpec.symlink("tool/run"),
        },
    )
    assert stat.S_IMODE((root / "opt/tool/run").stat().st_mode) == 0o700
    assert (root / "etc/motd").read_bytes() == b"hi"
    assert os.readlink(root / "opt/link") == "tool/run"


def test_rootfs_existing_empty_dir_ok_nonempty_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (busybox_rootfs(empty) / "bin/busybox").is_file()
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep").write_text("x")
    with pytest.raises(FailedPrecondition, match="empty directory"):
        busybox_rootfs(full)
    assert [p.name for p in full.iterdir()] == ["keep"]
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(FailedPrecondition):
        busybox_rootfs(afile)


def test_rootfs_refuses_devices_and_dotdot(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="char"):
        busybox_rootfs(tmp_path / "a", extra_files={"dev/null": TarEntrySpec.char_device(1, 3)})
    with pytest.raises(InvalidArgument, match=r"\.\."):
        busybox_rootfs(tmp_path / "b", extra_files={"../escape": b"x"})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_dynamic_busybox_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dynamic = shutil.which("ls") or "/bin/ls"  # Debian's coreutils are dynamically linked
    monkeypatch.setenv("LIBCONTAINERD_BUSYBOX", dynamic)
    with pytest.raises(FailedPrecondition, match="dynamically linked") as info:
        busybox_rootfs(tmp_path / "r")
    assert "busybox-static" in str(info.value)
    assert not (tmp_path / "r").exists()
    with pytest.raises(FailedPrecondition, match="dynamically linked"):
        build_image(tmp_path / "layout")
    assert not (tmp_path / "layout").exists()


def test_not_elf_refused(tmp_path: Path) -> None:
    script = tmp_path / "busybox"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(FailedPrecondition, match="not an ELF"):
        ib.find_busybox(script)


def test_busybox_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBCONTAINERD_BUSYBOX", str(tmp_path / "nope"))
    with pytest.raises(NotFound, match="LIBCONTAINERD_BUSYBOX"):
        ib.find_busybox()
    monkeypatch.delenv("LIBCONTAINERD_BUSYBOX")
    monkeypatch.setattr(busybox, "_BUSYBOX_CANDIDATES", (tmp_path / "x", tmp_path / "y"))
    with pytest.raises(NotFound, match="apt-get install busybox-static"):
        busybox_rootfs(tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_busybox_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "my-busybox"
    shutil.copy2(ib.find_busybox(), copy)
    monkeypatch.setenv("LIBCONTAINERD_BUSYBOX", str(copy))
    assert ib.find_busybox() == copy


# --- build_image: single platform ---------------------------------------------------------


def test_single_layout_structure(single: BuiltImage) -> None:
    layout = single.layout
    assert json.loads((layout / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_bytes())
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    [desc] = index["manifests"]
    assert desc == dict(single.target)
    assert desc["mediaType"] == OCI_MANIFEST
    assert desc["annotations"] == {REF: "latest"}
    assert desc["platform"]["os"] == "linux"
    assert single.index_digest == desc["digest"] == single.manifest_digests[HOST]
    assert single.platforms == (HOST,)
    assert not single.multi_platform
    assert single.reference == f"oci:{layout}:latest"

    reached = {d["digest"] for d, _ in walk(layout, desc)}
    on_disk = {"sha256:" + p.name for p in (layout / "blobs" / "sha256").iterdir()}
    assert reached == on_disk  # every blob referenced, nothing stray (no temp files)
    for p in (layout / "blobs" / "sha256").iterdir():
        assert sha(p.read_bytes()) == "sha256:" + p.name


def test_single_config(single: BuiltImage) -> None:
    manifest = single.read_json(single.manifest_digests[HOST])
    assert manifest["config"]["digest"] == single.config_digests[HOST]
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    cfg = single.read_json(single.config_digests[HOST])
    plat = Platform.parse(HOST)
    assert cfg["os"] == plat.os and cfg["architecture"] == plat.architecture
    assert cfg["created"] == ib.DEFAULT_CREATED
    assert cfg["config"] == {
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo hello"],
        "Env": ["PATH=/bin", "GREETING=hi"],
        "WorkingDir": "/home/app",
        "User": "app",
        "Labels": {"a": "1", "b": "2"},
        "ExposedPorts": {"53/udp": {}, "8080/tcp": {}},
        "StopSignal": "SIGINT",
    }
    assert cfg["rootfs"]["type"] == "layers"
    assert tuple(cfg["rootfs"]["diff_ids"]) == single.diff_ids[HOST]
    assert len(cfg["history"]) == len(single.diff_ids[HOST]) == 2
    layer_digests = [layer["digest"] for layer in manifest["layers"]]
    assert tuple(layer_digests) == single.layer_digests[HOST]
    for layer, diff_id in zip(manifest["layers"], single.diff_ids[HOST], strict=True):
        assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
        assert sha(gzip.decompress(single.blob_path(layer["digest"]).read_bytes())) == diff_id


def test_default_config() -> None:
    cfg = ImageConfigSpec().to_oci()
    assert cfg == {"Cmd": ["sh"], "Env": [ib.DEFAULT_PATH_ENV], "WorkingDir": "/"}


def test_base_layer_contents(single: BuiltImage) -> None:
    data = single.blob_path(single.layer_digests[HOST][0]).read_bytes()
    gz_header = data[:10]
    assert gz_header[4:8] == b"\0\0\0\0"  # gzip mtime 0
    assert not gz_header[3] & 0x08  # no file name stored
    members = tar_members(data)
    names = [m.name for m in members]
    by_name = {m.name: m for m in members}
    assert "bin/busybox" in by_name and by_name["bin/busybox"].mode == 0o755
    assert by_name["bin/sh"].issym() and by_name["bin/sh"].linkname == "busybox"
    assert by_name["usr/bin"].issym() and by_name["usr/bin"].linkname == "../bin"
    assert by_name["tmp"].isdir() and by_name["tmp"].mode == 0o1777
    assert (by_name["home/app"].uid, by_name["home/app"].gid) == (1000, 1000)
    assert all(m.mtime == 0 for m in members)
    assert all(m.uid == 0 for m in members if m.name != "home/app")
    assert not any(n.startswith(("/", "./")) for n in names)
    # Every directory comes before anything inside it.
    seen: set[str] = set()
    for name in names:
        parent = name.rpartition("/")[0]
        assert not parent or parent in seen, name
        seen.add(name)


def test_extra_files_layer(single: BuiltImage) -> None:
    data = single.blob_path(single.layer_digests[HOST][1]).read_bytes()
    by_name = {m.name: m for m in tar_members(data)}
    assert set(by_name) == {"etc/motd", "opt", "opt/app", "opt/app/run.sh", "home/app/note"}
    assert by_name["opt"].isdir() and by_name["opt/app"].isdir()  # missing parents added
    assert by_name["opt/app/run.sh"].mode == 0o755
    assert by_name["home/app/note"].uid == 1000
    assert tar_read(data, "etc/motd") == b"welcome\n"


def test_deterministic(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {
        "platforms": ["linux/amd64", "linux/arm64"],
        "extra_files": {"a/b": b"1", "a/c": TarEntrySpec.symlink("b")},
        "extra_layers": [{"d": b"2"}],
        "config": ImageConfigSpec(labels={"x": "y"}),
    }
    one = build_image(tmp_path / "one", **kwargs)
    two = build_image(tmp_path / "two", **kwargs)
    assert one.index_digest == two.index_digest
    assert one.manifest_digests == two.manifest_digests
    assert one.layer_digests == two.layer_digests
    assert (tmp_path / "one/index.json").read_bytes() == (tmp_path / "two/index.json").read_bytes()
    names = sorted(p.name for p in (tmp_path / "one/blobs/sha256").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two/blobs/sha256").iterdir())
    other = build_image(tmp_path / "three", extra_files={"a/b": b"other"})
    assert other.layer_digests[HOST][0] == one.layer_digests["linux/amd64"][0]  # same base
    assert other.layer_digests[HOST][1] != one.layer_digests["linux/amd64"][1]


def test_uncompressed(tmp_path: Path) -> None:
    built = build_image(tmp_path / "l", compression="none", extra_files={"f": b"x"})
    manifest = built.read_json(built.manifest_digests[HOST])
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        "application/vnd.oci.image.layer.v1.tar"
    ] * 2
    assert built.layer_digests[HOST] == built.diff_ids[HOST]
    for _ in walk(built.layout, dict(built.target)):
        pass


# --- build_image: multi-platform ----------------------------------------------------------


def test_multi_index(multi: BuiltImage) -> None:
    assert multi.multi_platform
    assert multi.platforms == ("linux/amd64", "linux/arm64", "linux/arm/v7")
    index_json = json.loads((multi.layout / "index.json").read_bytes())
    [top] = index_json["manifests"]
    assert top["mediaType"] == OCI_INDEX and top["annotations"] == {REF: "latest"}
    assert "platform" not in top
    assert top["digest"] == multi.index_digest == multi.target["digest"]
    index = multi.read_json(multi.index_digest)
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    plats = [m["platform"] for m in index["manifests"]]
    assert plats == [
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm64"},
        {"os": "linux", "architecture": "arm", "variant": "v7"},
    ]
    for entry, key in zip(index["manifests"], multi.platforms, strict=True):
        assert entry["digest"] == multi.manifest_digests[key]
        cfg = multi.read_json(multi.config_digests[key])
        assert cfg["architecture"] == entry["platform"]["architecture"]
        assert cfg.get("variant") == entry["platform"].get("variant")
    assert len(set(multi.config_digests.values())) == 3
    assert len(set(multi.layer_digests.values())) == 1  # the same files for every platform
    digests = {d["digest"] for d, _ in walk(multi.layout, dict(multi.target))}
    assert digests == {"sha256:" + p.name for p in (multi.layout / "blobs/sha256").iterdir()}


def test_single_platform_as_index(tmp_path: Path) -> None:
    built = build_image(tmp_path / "l", multi_platform_index=True)
    assert built.target["mediaType"] == OCI_INDEX
    assert built.index_digest != built.manifest_digests[HOST]
    assert len(built.read_json(built.index_digest)["manifests"]) == 1


def test_docker_media_types(tmp_path: Path) -> None:
    built = build_image(
        tmp_path / "l",
        platforms=["linux/amd64", "linux/arm64"],
        media_types="docker",
        extra_files={"f": b"x"},
    )
    assert built.target["mediaType"] == (
        "application/vnd.docker.distribution.manifest.list.v2+json"
    )
    index_json = json.loads((built.layout / "index.json").read_bytes())
    assert index_json["mediaType"] == OCI_INDEX  # the layout's own index stays OCI
    medias = {d["mediaType"] for d, _ in walk(built.layout, dict(built.target))}
    assert medias == {
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.container.image.v1+json",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    }


def test_add_to_existing_layout(tmp_path: Path) -> None:
    layout = tmp_path / "l"
    first = build_image(layout, ref_name="one")
    second = build_image(layout, ref_name="two", extra_files={"f": b"x"})
    refs = [
        m["annotations"][REF] for m in json.loads((layout / "index.json").read_bytes())["manifests"]
    ]
    assert refs == ["one", "two"]
    again = build_image(layout, ref_name="one", extra_files={"g": b"y"})
    index = json.loads((layout / "index.json").read_bytes())
    by_ref = {m["annotations"][REF]: m["digest"] for m in index["manifests"]}
    assert by_ref == {"two": second.index_digest, "one": again.index_digest}
    assert first.index_digest != again.index_digest


def test_annotations(tmp_path: Path) -> None:
    built = build_image(tmp_path / "l", annotations={"org.example": "yes"})
    assert built.target["annotations"] == {"org.example": "yes", REF: "latest"}
    assert built.read_json(built.index_digest)["annotations"] == {"org.example": "yes"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"platforms": ["linux/amd64", "linux/x86_64"]}, "twice"),
        ({"platforms": ["linux/amd64", "linux/arm64"], "multi_platform_index": False}, "index"),
        ({"platforms": ["linux//amd64"]}, "platform"),
        ({"platforms": "linux/amd64"}, "sequence"),
        ({"ref_name": "bad ref"}, "ref name"),
        ({"ref_name": ""}, "ref name"),
        ({"extra_files": {"../x": b""}}, "build_layer"),
        ({"extra_files": {"a": "text"}}, "bytes or TarEntrySpec"),
        ({"extra_layers": [["not", "a", "map"]]}, "mapping"),
        ({"compression": "zstd"}, "compression"),
        ({"media_types": "v1"}, "media_types"),
    ],
)
def test_build_image_invalid(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        build_image(tmp_path / "l", **kwargs)
    assert not (tmp_path / "l").exists()


def test_build_image_refuses_foreign_dir(tmp_path: Path) -> None:
    (tmp_path / "l").mkdir()
    (tmp_path / "l" / "data").write_text("x")
    with pytest.raises(FailedPrecondition, match="OCI image layout"):
        build_image(tmp_path / "l")
    assert [p.name for p in (tmp_path / "l").iterdir()] == ["data"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cmd": "sh -c true"}, "single string"),
        ({"env": ("NOEQUALS",)}, "KEY=value"),
        ({"env": ("=x",)}, "KEY=value"),
        ({"working_dir": "relative"}, "absolute"),
        ({"exposed_ports": ("http",)}, "port"),
        ({"exposed_ports": ("70000",)}, "port"),
        ({"labels": {"": "x"}}, "labels"),
        ({"stop_signal": ""}, "stop_signal"),
    ],
)
def test_config_spec_invalid(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        ImageConfigSpec(**kwargs)


def test_config_spec_is_frozen_value() -> None:
    a = ImageConfigSpec(cmd=["a", "b"], labels={"k": "v"})
    assert a.cmd == ("a", "b")
    assert a == ImageConfigSpec(cmd=("a", "b"), labels={"k": "v"})
    assert hash(a) == hash(ImageConfigSpec(cmd=("a", "b"), labels={"k": "v"}))
    with pytest.raises(TypeError):
        a.labels["k"] = "w"  # type: ignore[index]


# --- archives -----------------------------------------------------------------------------


def test_layout_archive_round_trip(single: BuiltImage, tmp_path: Path) -> None:
    archive = write_layout_archive(single.layout, tmp_path / "img.tar")
    again = write_layout_archive(single.layout, tmp_path / "img2.tar")
    assert archive.read_bytes() == again.read_bytes()
    out = tmp_path / "out"
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        _extract_all(tar, out)
    assert names[:2] == ["oci-layout", "index.json"]
    original = sorted(p.relative_to(single.layout) for p in single.layout.rglob("*"))
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == original
    for rel in original:
        if (single.layout / rel).is_file():
            assert (out / rel).read_bytes() == (single.layout / rel).read_bytes()


def test_layout_archive_needs_layout(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        write_layout_archive(tmp_path, tmp_path / "x.tar")
    layout = build_image(tmp_path / "l").layout
    with pytest.raises(NotFound, match="does not exist"):
        write_layout_archive(layout, tmp_path / "missing" / "x.tar")


def test_docker_archive_structure(single: BuiltImage, tmp_path: Path) -> None:
    archive = write_docker_archive(single, tmp_path / "d.tar", repo_tag="example.com/bb:1")
    with tarfile.open(archive) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    [entry] = json.loads(files["manifest.json"])
    assert entry["RepoTags"] == ["example.com/bb:1"]
    config = files[entry["Config"]]
    assert sha(config) == single.config_digests[HOST]
    assert [sha(files[name]) for name in entry["Layers"]] == list(single.diff_ids[HOST])
    repos = json.loads(files["repositories"])
    assert repos == {"example.com/bb": {"1": entry["Layers"][-1].split("/")[0]}}


def test_docker_archive_platform_choice(multi: BuiltImage, tmp_path: Path) -> None:
    archive = write_docker_archive(
        multi, tmp_path / "d.tar", repo_tag="bb", platform="linux/arm/v7"
    )
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        config = json.loads(tar.extractfile(manifest[0]["Config"]).read())  # type: ignore[union-attr]
    assert manifest[0]["RepoTags"] == ["bb:latest"]
    assert (config["architecture"], config["variant"]) == ("arm", "v7")
    with pytest.raises(NotFound, match="platform"):
        write_docker_archive(multi, tmp_path / "e.tar", repo_tag="bb", platform="linux/s390x")
    with pytest.raises(InvalidArgument, match="repo_tag"):
        write_docker_archive(multi, tmp_path / "e.tar", repo_tag="BB@sha256:00")
    assert not (tmp_path / "e.tar").exists()


# --- skopeo as an independent reader --------------------------------------------------------


@needs_skopeo
def test_skopeo_reads_single(single: BuiltImage, tmp_path: Path) -> None:
    raw = json.loads(skopeo("inspect", "--raw", f"oci:{single.layout}:latest"))
    assert raw["config"]["digest"] == single.config_digests[HOST]
    info = json.loads(skopeo("inspect", f"oci:{single.layout}:latest"))
    assert info["Digest"] == single.index_digest
    assert info["Labels"] == {"a": "1", "b": "2"}
    skopeo("--insecure-policy", "copy", f"oci:{single.layout}:latest", f"dir:{tmp_path / 'out'}")
    assert (tmp_path / "out" / "manifest.json").is_file()


@needs_skopeo
def test_skopeo_reads_multi(multi: BuiltImage, tmp_path: Path) -> None:
    raw = json.loads(skopeo("inspect", "--raw", f"oci:{multi.layout}:latest"))
    assert raw["mediaType"] == OCI_INDEX and len(raw["manifests"]) == 3
    # skopeo picks the entry for the requested platform and returns that config verbatim.
    config = skopeo(
        "--override-arch",
        "arm",
        "--override-variant",
        "v7",
        "inspect",
        "--config",
        "--raw",
        f"oci:{multi.layout}:latest",
    )
    assert sha(config.encode()) == multi.config_digests["linux/arm/v7"]
    skopeo(
        "--insecure-policy",
        "copy",
        "--all",
        f"oci:{multi.layout}:latest",
        f"oci:{tmp_path / 'copy'}:x",
    )


@needs_skopeo
def test_skopeo_reads_archives(single: BuiltImage, tmp_path: Path) -> None:
    oci_archive = write_layout_archive(single.layout, tmp_path / "oci.tar")
    info = json.loads(skopeo("inspect", f"oci-archive:{oci_archive}"))
    assert info["Digest"] == single.index_digest
    docker_archive = write_docker_archive(single, tmp_path / "docker.tar", repo_tag="bb:1")
    info = json.loads(skopeo("inspect", f"docker-archive:{docker_archive}"))
    assert len(info["Layers"]) == 2
    assert info["Labels"] == {"a": "1", "b": "2"}
    config = json.loads(skopeo("inspect", "--config", f"docker-archive:{docker_archive}"))
    assert config["rootfs"]["diff_ids"] == list(single.diff_ids[HOST])


@needs_skopeo
def test_skopeo_uncompressed_and_hostile(tmp_path: Path) -> None:
    hostile = build_layer({"../x": b"", "etc/passwd-link": TarEntrySpec.symlink("/etc/passwd")})
    built = build_image(tmp_path / "l", compression="none", extra_layers=[hostile])
    skopeo("--insecure-policy", "copy", built.reference, f"dir:{tmp_path / 'out'}")


# --- build_layer and hostile inputs ---------------------------------------------------------


def test_hostile_layer_written_verbatim() -> None:
    layer = build_layer(
        {
            "etc/passwd-link": TarEntrySpec.symlink("/etc/passwd"),
            "../x": b"escape",
            "/abs/file": b"abs",
            "dir/hard": TarEntrySpec.hardlink("../x"),
            "dev/null": TarEntrySpec.char_device(1, 3),
            "dev/sda": TarEntrySpec.block_device(8, 0),
            "pipe": TarEntrySpec.fifo(),
            whiteout("etc/motd"): b"",
            f"var/{ib.OPAQUE_WHITEOUT}": b"",
            "suid": TarEntrySpec.file(b"", mode=0o4755, uid=0),
        }
    )
    assert isinstance(layer, tuple) and len(layer) == 3
    data, diff_id, digest = layer
    assert digest == sha(data) and diff_id == sha(gzip.decompress(data)) and layer.compressed
    by_name = {m.name: m for m in tar_members(data)}
    assert by_name["etc/passwd-link"].issym()
    assert by_name["etc/passwd-link"].linkname == "/etc/passwd"
    assert "../x" in by_name and "/abs/file" in by_name
    assert by_name["dir/hard"].islnk() and by_name["dir/hard"].linkname == "../x"
    assert by_name["dev/null"].ischr() and (
        by_name["dev/null"].devmajor,
        by_name["dev/null"].devminor,
    ) == (1, 3)
    assert by_name["dev/sda"].isblk()
    assert by_name["pipe"].isfifo()
    assert "etc/.wh.motd" in by_name and "var/.wh..wh..opq" in by_name
    assert by_name["suid"].mode == 0o4755
    assert list(by_name)[-1] == "dir/hard"  # hardlinks last


def test_layer_order_and_duplicates() -> None:
    pairs: list[tuple[str, bytes | TarEntrySpec]] = [
        ("link", TarEntrySpec.symlink("/etc")),
        ("link/passwd", b"through the symlink"),
        ("a", b"1"),
        ("a", b"2"),
    ]
    layer = build_layer(pairs, sort=False, compression="none")
    assert [m.name for m in tar_members(layer.data)] == ["link", "link/passwd", "a", "a"]
    assert layer.diff_id == layer.digest and not layer.compressed


def test_prebuilt_layer_in_image(tmp_path: Path) -> None:
    hostile = build_layer({"../../evil": b"x", "bin": TarEntrySpec.symlink("/")})
    built = build_image(tmp_path / "l", extra_layers=[hostile, {"ok": b"fine"}])
    assert built.layer_digests[HOST][1] == hostile.digest
    assert built.diff_ids[HOST][1] == hostile.diff_id
    assert len(built.layer_digests[HOST]) == 3
    for _ in walk(built.layout, dict(built.target)):
        pass


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "socket"}, "kind"),
        ({"kind": "dir", "content": b"x"}, "content"),
        ({"kind": "symlink"}, "linkname"),
        ({"kind": "file", "linkname": "x"}, "linkname"),
        ({"kind": "file", "devmajor": 1}, "device"),
        ({"mode": 0o10000}, "mode"),
        ({"uid": -1}, "uid"),
        ({"content": "text"}, "bytes"),
        ({"kind": "symlink", "linkname": b"x"}, "str"),
    ],
)
def test_tar_entry_invalid(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        TarEntrySpec(**kwargs)


def test_build_layer_invalid() -> None:
    with pytest.raises(InvalidArgument):
        build_layer({"": b""})
    with pytest.raises(InvalidArgument):
        build_layer({"a": 1})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgument, match="compression"):
        build_layer({"a": b""}, compression="xz")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        whiteout("/")


def test_whiteout_names() -> None:
    assert whiteout("etc/motd") == "etc/.wh.motd"
    assert whiteout("/top") == ".wh.top"


_name_part = st.text(
    alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="._-"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", ".."))


@settings(max_examples=150, deadline=None)
@given(
    files=st.dictionaries(
        st.lists(_name_part, min_size=1, max_size=3).map("/".join),
        st.binary(max_size=300),
        max_size=8,
    ),
    compression=st.sampled_from(["gzip", "none"]),
)
def test_build_layer_round_trip(files: dict[str, bytes], compression: ib.Compression) -> None:
    layer = build_layer(files, compression=compression)
    assert layer == build_layer(dict(reversed(list(files.items()))), compression=compression)
    raw = gzip.decompress(layer.data) if compression == "gzip" else layer.data
    assert layer.diff_id == sha(raw) and layer.digest == sha(layer.data)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    assert got == files


# --- runtimes run the rootfs ---------------------------------------------------------------


@pytest.mark.runtime
@pytest.mark.parametrize("runtime", ["runc", "crun"])
def test_runtime_runs_rootfs(runtime: str, tmp_path: Path) -> None:
    binary = shutil.which(runtime)
    if binary is None or os.geteuid() != 0:
        pytest.skip(f"needs root and {runtime}")
    bundle = tmp_path / "bundle"
    busybox_rootfs(bundle / "rootfs")
    subprocess.run([binary, "spec"], cwd=bundle, check=True, capture_output=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = [
        "/bin/sh",
        "-c",
        "/bin/true && /usr/bin/env >/dev/null && /bin/id -u && /bin/grep -c x /etc/group",
    ]
    (bundle / "config.json").write_text(json.dumps(spec))
    container_id = f"ib-test-{runtime}-{os.getpid()}"
    proc = subprocess.run(
        [binary, "run", "--bundle", str(bundle), container_id],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    subprocess.run([binary, "delete", "-f", container_id], capture_output=True, check=False)
    if runtime == "crun" and "hugetlb" in proc.stderr:
        pytest.skip(f"crun cannot use this host's cgroup layout: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "3"]


def test_build_into_empty_dir(tmp_path: Path) -> None:
    layout = tmp_path / "l"
    layout.mkdir()
    built = build_image(layout)
    assert (layout / "oci-layout").is_file()
    assert built.blob_path(built.index_digest).is_file()
    with pytest.raises(InvalidArgument, match="sha256"):
        built.blob_path("md5:abc")
