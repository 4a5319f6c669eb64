"""The one image archive codec and the content protocol it is written against.

Real stores only: images from the image builder in an OCI layout directory
(:class:`DirectoryContentStore`), imported into the local :class:`ContentStore`.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libcontainerd.content import ContentStore, DirectoryContentStore
from libcontainerd.content.archive import (
    IMAGE_NAME_ANNOTATION,
    REF_NAME_ANNOTATION,
    image_name,
    import_images,
    open_archive,
)
from libcontainerd.content.archive_export import (
    named_entry,
    write_docker_archive,
    write_oci_archive,
)
from libcontainerd.content.protocol import BlobSink, BlobSource, BlobStore
from libcontainerd.errors import DigestMismatch, InvalidArgument, NotFound
from libcontainerd.testing.image_builder import (
    BuiltImage,
    build_image,
    host_platform,
    write_layout_archive,
)
from libcontainerd.testing.image_builder import (
    write_docker_archive as builder_docker_archive,
)
from libcontainerd.types import descriptor as media
from libcontainerd.types import platform as platforms
from libcontainerd.types.descriptor import Descriptor, index_manifests, select_platforms
from libcontainerd.types.platform import Platform, PlatformSelector

HOST = host_platform()
OTHER = "linux/arm64" if HOST != "linux/arm64" else "linux/amd64"
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    return build_image(
        tmp_path_factory.mktemp("multi") / "layout",
        platforms=[HOST, OTHER],
        ref_name="example.com/codec/multi:2",
    )


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    return build_image(tmp_path_factory.mktemp("single") / "layout", ref_name="v1")


def _target(image: BuiltImage) -> Descriptor:
    return Descriptor.from_dict(dict(image.target))


def test_stores_implement_the_protocol(tmp_path: Path) -> None:
    local = ContentStore(tmp_path / "content")
    directory = DirectoryContentStore(tmp_path / "dir")
    assert isinstance(local, BlobStore)
    assert isinstance(directory, BlobSink)
    assert isinstance(directory, BlobSource)


def test_oci_round_trip_through_the_local_store(multi: BuiltImage, tmp_path: Path) -> None:
    source = DirectoryContentStore(multi.layout)
    out = io.BytesIO()
    write_oci_archive(out, source, [named_entry("example.com/codec/multi:2", _target(multi))])
    out.seek(0)
    store = ContentStore(tmp_path / "content")
    with open_archive(out) as archive:
        (found,) = import_images(archive, store)
    assert found.name == "example.com/codec/multi:2"
    assert found.target.digest == multi.index_digest
    assert IMAGE_NAME_ANNOTATION not in found.target.annotations
    assert {m.platform.format() for m in found.manifests if m.platform} == {HOST, OTHER}
    assert set(store.digests()) == set(source.digests())

    # Exported again from the store it went into: the same archive, byte for byte.
    first, again = io.BytesIO(), io.BytesIO()
    entry = named_entry(found.name, found.target)
    write_oci_archive(first, source, [entry])
    write_oci_archive(again, store, [entry])
    assert first.getvalue() == again.getvalue()


def test_platform_filter_on_import_and_export(multi: BuiltImage, tmp_path: Path) -> None:
    source = DirectoryContentStore(multi.layout)
    archive_path = write_layout_archive(multi.layout, tmp_path / "multi.tar")
    store = ContentStore(tmp_path / "content")
    with open_archive(archive_path) as archive:
        (found,) = import_images(archive, store, OTHER)
    assert [m.platform.format() for m in found.manifests if m.platform] == [OTHER]
    assert multi.manifest_digests[HOST] not in store.digests()
    with open_archive(archive_path) as archive, pytest.raises(NotFound, match="linux/s390x"):
        import_images(archive, ContentStore(tmp_path / "none"), "linux/s390x")
    out = io.BytesIO()
    write_oci_archive(out, source, [named_entry("x.io/a:1", _target(multi))], platform=HOST)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        names = tar.getnames()
    assert f"blobs/sha256/{multi.manifest_digests[HOST].split(':')[1]}" in names
    assert f"blobs/sha256/{multi.manifest_digests[OTHER].split(':')[1]}" not in names


def test_naming_rule(single: BuiltImage, tmp_path: Path) -> None:
    archive_path = write_layout_archive(single.layout, tmp_path / "single.tar")
    with open_archive(archive_path) as archive:
        (bare,) = import_images(archive, ContentStore(tmp_path / "a"))
    assert bare.name == single.index_digest  # a bare tag names nothing without a base name
    with open_archive(archive_path) as archive:
        (based,) = import_images(archive, ContentStore(tmp_path / "b"), base_name="example.com/x")
    assert based.name == "example.com/x:v1"
    with open_archive(archive_path) as archive, pytest.raises(InvalidArgument):
        import_images(archive, ContentStore(tmp_path / "c"), base_name="Not A Name")


def test_docker_archive_round_trip(single: BuiltImage, tmp_path: Path) -> None:
    path = builder_docker_archive(single, tmp_path / "d.tar", repo_tag="example.com/d:3")
    store = ContentStore(tmp_path / "content")
    with open_archive(path) as archive:
        (found,) = import_images(archive, store)
    assert found.name == "example.com/d:3"
    assert [m.platform.format() for m in found.manifests if m.platform] == [HOST]
    manifest = json.loads(store.read(found.target.digest))
    assert manifest["config"]["digest"] == single.config_digests[HOST]
    # Written again from the store: same config and layers (uncompressed) as the first one.
    out = io.BytesIO()
    write_docker_archive(out, store, found.target, ["example.com/d:3"])
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar, tarfile.open(path) as first:
        assert sorted(tar.getnames()) == sorted(first.getnames())


def test_failed_import_leaves_nothing(single: BuiltImage, tmp_path: Path) -> None:
    """A blob whose size does not match its descriptor: every blob written is taken back."""
    archive_path = write_layout_archive(single.layout, tmp_path / "ok.tar")
    bad = tmp_path / "bad.tar"
    layer = single.layer_digests[HOST][0].split(":")[1]
    with tarfile.open(archive_path) as src, tarfile.open(bad, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name.endswith(layer) and data is not None:
                data = data[:-1]
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    store = ContentStore(tmp_path / "content")
    with open_archive(bad) as archive, pytest.raises(DigestMismatch):
        import_images(archive, store)
    assert store.digests() == []
    assert store.ingests() == []


def test_hostile_member_names_are_not_read(tmp_path: Path) -> None:
    path = tmp_path / "hostile.tar"
    with tarfile.open(path, "w") as tar:
        for name in ("../index.json", "/index.json"):
            data = b'{"manifests": []}'
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with open_archive(path) as archive, pytest.raises(InvalidArgument, match="neither"):
        import_images(archive, ContentStore(tmp_path / "content"))


def test_image_name_rule() -> None:
    assert image_name({IMAGE_NAME_ANNOTATION: "x/y:z"}) == "x/y:z"
    assert image_name({REF_NAME_ANNOTATION: "busybox/a:1"}) == "docker.io/busybox/a:1"
    assert image_name({REF_NAME_ANNOTATION: "reg.io:5000/a:1"}) == "reg.io:5000/a:1"
    assert image_name({REF_NAME_ANNOTATION: "1.0"}) is None
    assert image_name({REF_NAME_ANNOTATION: "1.0"}, "example.com/b") == "example.com/b:1.0"
    assert image_name({}) is None


# --- platform requests, parsed once ---------------------------------------------------------


def test_platform_selector() -> None:
    host = PlatformSelector.of(None)
    assert host.label == platforms.default().format()
    assert not host.take_all
    assert PlatformSelector.of(None, none="all").take_all
    assert PlatformSelector.of("all").take_all
    assert PlatformSelector.of(host) is host
    both = PlatformSelector.of(["linux/arm64", Platform.parse("linux/amd64")])
    assert both.label == "linux/arm64, linux/amd64"
    assert both.match(Platform.parse("linux/386"))  # amd64 runs 386
    with pytest.raises(InvalidArgument, match="empty"):
        PlatformSelector.of([])
    with pytest.raises(InvalidArgument, match="int"):
        PlatformSelector.of(42)  # type: ignore[arg-type]


# --- manifest lists with odd entries (issue 8, point 10) -----------------------------------


def _entry(platform: object, digest: str = DIGEST) -> dict[str, Any]:
    return {
        "mediaType": media.MEDIA_TYPE_OCI_MANIFEST,
        "digest": digest,
        "size": 1,
        "platform": platform,
    }


def test_odd_entries_are_normalised_like_containerd() -> None:
    host_os = platforms.default().os
    index = {
        "manifests": [
            _entry({"os": "Linux", "architecture": "x86_64"}),
            _entry({"architecture": "arm64"}),
            _entry({"os": "windows", "architecture": "amd64", "os.version": "10.0 17763"}),
            _entry({"os": "linux", "architecture": "s390x", "os.features": ["f"] * 40}),
            _entry({"os": "linux", "architecture": 5}),
            _entry("linux/amd64"),
            {"mediaType": media.MEDIA_TYPE_OCI_MANIFEST, "size": 1},
            "not an object",
        ]
    }
    found = index_manifests(index)
    assert [d.platform.format() if d.platform else None for d in found] == [
        "linux/amd64",
        f"{host_os}/arm64",
        "windows/amd64",
        "linux/s390x",
        None,
        None,
    ]
    assert found[2].platform is not None and found[2].platform.os_version == ""
    assert found[3].platform is not None and found[3].platform.os_features == ()
    # The un-understandable ones are skipped for matching, not fatal.
    assert select_platforms(found, "linux/amd64") == [found[0]]
    assert select_platforms(found, "all") == found
    with pytest.raises(InvalidArgument, match="not a list"):
        index_manifests({"manifests": {"a": 1}})


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_platform_objects = st.fixed_dictionaries(
    {},
    optional={
        "os": st.one_of(st.sampled_from(["linux", "Linux", "windows", "", "LINUX"]), _json),
        "architecture": st.one_of(
            st.sampled_from(["amd64", "x86_64", "aarch64", "arm", "ARM64"]), _json
        ),
        "variant": st.one_of(st.sampled_from(["v7", "8", ""]), _json),
        "os.version": st.one_of(st.text(max_size=20), _json),
        "os.features": st.one_of(st.lists(st.text(max_size=6), max_size=40), _json),
    },
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(entries=st.lists(st.one_of(_platform_objects.map(_entry), _json), max_size=6))
def test_reading_an_index_never_fails_on_an_entry(entries: list[Any]) -> None:
    found = index_manifests({"manifests": entries})
    assert len(found) <= len(entries)
    for descriptor in found:
        if descriptor.platform is not None:
            # Whatever was read is a valid platform that matching can use.
            plain = descriptor.platform.normalized().without_os_details()
            assert Platform.parse(descriptor.platform.format()) == plain
    select_platforms(found, "all")


_platform_texts = st.builds(
    lambda os, arch, variant: "/".join(p for p in (os, arch, variant) if p),
    st.sampled_from(["linux", "windows", "Linux", "darwin", "freebsd"]),
    st.sampled_from(["amd64", "x86_64", "arm64", "aarch64", "arm", "armhf", "386", "s390x"]),
    st.sampled_from(["", "v6", "v7", "v8"]),
)


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(_platform_texts, min_size=1, max_size=4))
def test_selector_matches_what_it_was_asked_for(texts: list[str]) -> None:
    parsed = [Platform.parse(text) for text in texts]
    one = PlatformSelector.of(texts[0])
    assert one.label == parsed[0].format()
    assert one.match(parsed[0])
    several = PlatformSelector.of(texts)
    assert several.label == ", ".join(p.format() for p in parsed)
    assert all(several.match(p) for p in parsed)
    assert PlatformSelector.of(several) is several
    entries = [
        Descriptor(media_type=media.MEDIA_TYPE_OCI_MANIFEST, digest=DIGEST, size=i, platform=p)
        for i, p in enumerate(parsed)
    ]
    assert select_platforms(entries, several)  # each asked-for platform is offered


def test_directory_store_commit_checks_the_digest(tmp_path: Path) -> None:
    store = DirectoryContentStore(tmp_path)
    desc = Descriptor(media_type="text/plain", digest=DIGEST, size=5)
    writer = store.writer(desc)
    writer.write(b"hello")
    with pytest.raises(DigestMismatch):
        writer.commit()
    assert store.digests() == [] and store.ingests() == []
