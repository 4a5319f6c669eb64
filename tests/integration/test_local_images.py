"""The local backend's coalesced image store against a real registry and real runc.

Images come from ``build_image`` (host busybox), are pushed to docker-registry with the
registry client, and pulled, listed, removed, imported and exported through
:class:`LocalImageService`; root filesystems it prepares are run with runc.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import threading
from pathlib import Path

import pytest

from libcontainerd.content import DirectoryContentStore, chain_ids
from libcontainerd.distribution import RegistryClient
from libcontainerd.errors import InvalidArgument, NotFound
from libcontainerd.local._images import LocalImageService
from libcontainerd.oci import generate_spec, with_image_config, with_process_args
from libcontainerd.testing.host import find_runtime, is_root, run_bundle
from libcontainerd.testing.image_builder import (
    BuiltImage,
    ImageConfigSpec,
    build_image,
    build_layer,
    host_platform,
    write_docker_archive,
    write_layout_archive,
)
from libcontainerd.testing.registry import Registry
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.platform import Platform

pytestmark = [
    pytest.mark.registry,
    pytest.mark.skipif(shutil.which("docker-registry") is None, reason="needs docker-registry"),
]

HOST = host_platform()
OTHER = "linux/arm64" if HOST != "linux/arm64" else "linux/amd64"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuiltImage]:
    base = tmp_path_factory.mktemp("local-images")
    return {
        "multi": build_image(base / "multi", platforms=[HOST, OTHER], media_types="docker"),
        "one": build_image(
            base / "one",
            extra_files={"etc/marker": b"one\n"},
            config=ImageConfigSpec(cmd=("cat", "/etc/marker"), env=("PATH=/bin", "WHO=one")),
        ),
        "two": build_image(base / "two", extra_files={"etc/marker": b"two\n"}),
    }


@pytest.fixture(scope="module")
def pushed(registry_plain: Registry, images: dict[str, BuiltImage]) -> dict[str, str]:
    refs = {}
    with RegistryClient(docker_config=False) as client:
        for key, image in images.items():
            ref = f"{registry_plain.host}/local-images/{key}:1"
            client.push_graph(
                ref, DirectoryContentStore(image.layout), Descriptor.from_dict(dict(image.target))
            )
            refs[key] = ref
    return refs


def _service(root: Path, namespace: str = "default") -> LocalImageService:
    return LocalImageService(root, namespace, registry_options={"docker_config": False})


def _snapshots(root: Path) -> set[str]:
    return {p.name for p in (root / "snapshots").iterdir() if not p.name.startswith(".")}


def test_pull_single_platform(
    tmp_path: Path, pushed: dict[str, str], images: dict[str, BuiltImage]
) -> None:
    service = _service(tmp_path)
    events: list[object] = []
    image = service.pull(pushed["multi"], progress=events.append)
    built = images["multi"]
    assert image.name == pushed["multi"]
    assert image.target.digest == built.index_digest
    assert [p.format() for p in image.platforms] == [HOST]
    assert events
    chains = chain_ids(built.diff_ids[HOST])
    assert {c.split(":")[1] for c in chains} <= _snapshots(tmp_path)
    assert service.get(pushed["multi"], platform=HOST) == image
    assert built.manifest_digests[OTHER] not in service.content.digests()
    with pytest.raises(NotFound, match=OTHER):
        service.get(pushed["multi"], platform=OTHER)
    with pytest.raises(NotFound, match="not in namespace"):
        service.get("example.com/missing:1")
    # The record is namespaced; the content store is shared.
    assert _service(tmp_path, "other").list() == []


def test_multi_platform_kept_in_one_store(
    tmp_path: Path, pushed: dict[str, str], images: dict[str, BuiltImage]
) -> None:
    service = _service(tmp_path)
    service.pull(pushed["multi"], platform=HOST)
    assert service.list(["platform==" + OTHER]) == []
    image = service.pull(pushed["multi"], platform=OTHER, unpack=False)
    assert {p.format() for p in image.platforms} == {HOST, OTHER}
    assert len(service.list()) == 1
    assert service.list(["platform==" + OTHER]) == [image]
    assert service.list(platform=OTHER) == [image]
    assert service.list(platform="linux/s390x") == []
    assert service.list(["platform!=linux/s390x,name~=multi"]) == [image]
    assert service.get(pushed["multi"], platform=OTHER).name == image.name
    other = _service(tmp_path / "all").pull(pushed["multi"], platform="all")
    assert {p.format() for p in other.platforms} == {HOST, OTHER}
    with pytest.raises(InvalidArgument):
        service.list(["nonsense==1"])
    with pytest.raises(NotFound, match="linux/s390x"):
        service.pull(pushed["multi"], platform="linux/s390x")


def test_remove_counts_references(
    tmp_path: Path, pushed: dict[str, str], images: dict[str, BuiltImage]
) -> None:
    service = _service(tmp_path)
    service.pull(pushed["one"])
    service.pull(pushed["two"])
    one, two = images["one"], images["two"]
    shared_layer = one.layer_digests[HOST][0]
    assert shared_layer == two.layer_digests[HOST][0]
    only_one = one.layer_digests[HOST][1]
    shared_chain = chain_ids(one.diff_ids[HOST])[0].split(":")[1]
    one_chain = chain_ids(one.diff_ids[HOST])[1].split(":")[1]
    assert {shared_chain, one_chain} <= _snapshots(tmp_path)

    service.remove(pushed["one"])
    digests = set(service.content.digests())
    assert shared_layer in digests
    assert only_one not in digests
    assert one.manifest_digests[HOST] not in digests
    assert shared_chain in _snapshots(tmp_path)
    assert one_chain not in _snapshots(tmp_path)
    with pytest.raises(NotFound):
        service.remove(pushed["one"])

    service.remove(pushed["two"])
    assert service.content.digests() == []
    assert _snapshots(tmp_path) == set()


def test_export_import_round_trip(tmp_path: Path, pushed: dict[str, str]) -> None:
    source = _service(tmp_path / "a")
    pulled = source.pull(pushed["multi"], platform="all")
    single = source.pull(pushed["one"])
    archive = tmp_path / "out.tar"
    source.export_archive([pushed["multi"], pushed["one"]], archive)
    with tarfile.open(archive) as tar:
        assert {"oci-layout", "index.json"} <= set(tar.getnames())

    dest = _service(tmp_path / "b")
    imported = dest.import_archive(archive)
    assert {i.name for i in imported} == {pulled.name, single.name}
    again = dest.get(pushed["multi"])
    assert again.target == pulled.target
    assert set(again.platforms) == set(pulled.platforms)
    assert set(dest.content.digests()) == set(source.content.digests())

    # One platform, through a file object, into a third store.
    buffer = io.BytesIO()
    source.export_archive([pushed["multi"]], buffer, platform=OTHER)
    buffer.seek(0)
    third = _service(tmp_path / "c")
    (image,) = third.import_archive(buffer)
    assert [p.format() for p in image.platforms] == [OTHER]
    assert image.name == pulled.name


def test_import_layout_archive_with_platform(tmp_path: Path, images: dict[str, BuiltImage]) -> None:
    archive = write_layout_archive(images["multi"].layout, tmp_path / "layout.tar")
    service = _service(tmp_path / "root")
    (image,) = service.import_archive(archive, platform=OTHER, base_name="example.com/bb")
    assert image.name == "example.com/bb:latest"
    assert [p.format() for p in image.platforms] == [OTHER]
    with pytest.raises(NotFound, match="linux/s390x"):
        service.import_archive(archive, platform="linux/s390x")


def test_import_docker_archive(tmp_path: Path, images: dict[str, BuiltImage]) -> None:
    archive = write_docker_archive(
        images["one"], tmp_path / "docker.tar", repo_tag="example.com/busybox:7"
    )
    service = _service(tmp_path / "root")
    (image,) = service.import_archive(archive)
    assert image.name == "example.com/busybox:7"
    assert [p.format() for p in image.platforms] == [HOST]
    assert service.get("example.com/busybox:7") == image
    chains = {c.split(":")[1] for c in chain_ids(images["one"].diff_ids[HOST])}
    assert chains <= _snapshots(tmp_path / "root")


def test_bad_archive_leaves_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        data = json.dumps(
            {"manifests": [{"mediaType": "x/y", "digest": "sha256:" + "a" * 64, "size": 1}]}
        ).encode()
        info = tarfile.TarInfo("index.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    service = _service(tmp_path / "root")
    with pytest.raises(InvalidArgument):
        service.import_archive(bad)
    with pytest.raises(InvalidArgument):
        service.import_archive(io.BytesIO(b"not a tar at all" * 100))
    assert service.list() == []
    assert service.content.digests() == []


def test_two_clients_write_concurrently(
    tmp_path: Path, pushed: dict[str, str], images: dict[str, BuiltImage]
) -> None:
    archives = [
        write_docker_archive(images["one"], tmp_path / f"d{i}.tar", repo_tag=f"example.com/c{i}:1")
        for i in range(4)
    ]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            service = _service(tmp_path / "root")
            service.import_archive(archives[i])
            service.pull(pushed["two" if i % 2 else "one"])
            if i % 2:
                service.remove(f"example.com/c{i}:1")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    service = _service(tmp_path / "root")
    names = {i.name for i in service.list()}
    assert names == {"example.com/c0:1", "example.com/c2:1", pushed["one"], pushed["two"]}
    for image in service.list():
        assert image.platforms == (Platform.parse(HOST),)
    # Removing everything leaves an empty store: nothing was lost or leaked.
    for name in names:
        service.remove(name)
    assert service.content.digests() == []
    assert _snapshots(tmp_path / "root") == set()


@pytest.mark.runtime
@pytest.mark.skipif(not is_root() or find_runtime("runc") is None, reason="needs root and runc")
def test_prepared_rootfs_runs_with_runc(tmp_path: Path, pushed: dict[str, str]) -> None:
    root = tmp_path / "root"
    service = _service(root)
    service.pull(pushed["one"])
    bundle = tmp_path / "bundle"
    rootfs, config = service.prepare_image_rootfs(pushed["one"], bundle)
    assert rootfs == bundle / "rootfs"
    spec = generate_spec(
        with_image_config(config, rootfs=rootfs),
        with_process_args("sh", "-c", "cat /etc/marker; echo $WHO; touch /new"),
    )
    spec["root"] = {"path": str(rootfs), "readonly": False}
    (bundle / "config.json").write_text(json.dumps(spec))
    result = run_bundle(
        find_runtime("runc") or "runc", bundle, "img-run", state_root=tmp_path / "s"
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == ["one", "one"]

    # Removing the image while a container uses it keeps the content until release.
    service.remove(pushed["one"])
    assert service.content.digests() != []
    assert service.image_rootfs_users() == [str(bundle.resolve())]
    service.release_image_rootfs(bundle)
    assert not (bundle / "rootfs").exists()
    assert service.content.digests() == []
    assert _snapshots(root) == set()
    service.release_image_rootfs(bundle)  # twice is fine


@pytest.mark.skipif(not is_root(), reason="unpacking into snapshots needs root")
def test_hostile_layer_import_leaves_nothing(tmp_path: Path) -> None:
    hostile = build_layer([("../escape", b"x")])
    built = build_image(tmp_path / "layout", extra_layers=[hostile])
    archive = write_layout_archive(built.layout, tmp_path / "hostile.tar")
    service = _service(tmp_path / "root")
    with pytest.raises(InvalidArgument):
        service.import_archive(archive, base_name="example.com/hostile")
    assert service.list() == []
    assert service.content.digests() == []
    assert _snapshots(tmp_path / "root") == set()
    assert not (tmp_path / "escape").exists()


@pytest.mark.runtime
@pytest.mark.skipif(not is_root() or find_runtime("runc") is None, reason="needs root and runc")
def test_local_client_runs_image(tmp_path: Path, images: dict[str, BuiltImage]) -> None:
    import libcontainerd
    from libcontainerd.types.stdio import FileIO

    archive = write_docker_archive(images["one"], tmp_path / "d.tar", repo_tag="example.com/one:1")
    client = libcontainerd.new_client(
        backend="local", root=tmp_path / "root", state=tmp_path / "st"
    )
    with client:
        client.images.import_archive(archive)
        container = client.new_container("img-e2e", image="example.com/one:1")
        out = tmp_path / "out.txt"
        try:
            task = container.new_task(stdio=FileIO(out))
            try:
                task.start()
                assert task.wait(timeout=30).code == 0
            finally:
                task.force_delete()
            assert out.read_text() == "one\n"
        finally:
            container.delete()
        client.images.remove("example.com/one:1")
    assert _service(tmp_path / "root").content.digests() == []
