"""A local pull that fails leaves nothing behind: no blob, no record, no temp file (issue 8.8).

Real docker-registry. The faults are real ones too: a blob corrupted in the registry's own
storage, and manifests (pushed like any other) whose layer descriptor gives a wrong size.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from libcontainerd.content import DirectoryContentStore
from libcontainerd.distribution import RegistryClient
from libcontainerd.errors import DigestMismatch, Error, InvalidArgument, ResourceExhausted
from libcontainerd.local._images import LocalImageService
from libcontainerd.testing.image_builder import BuiltImage, build_image, host_platform
from libcontainerd.testing.registry import Registry
from libcontainerd.types import descriptor as media
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.progress import ProgressEvent, ProgressKind

pytestmark = [
    pytest.mark.registry,
    pytest.mark.skipif(shutil.which("docker-registry") is None, reason="needs docker-registry"),
]

HOST = host_platform()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    return build_image(
        tmp_path_factory.mktemp("pull-failures") / "layout",
        extra_files={"etc/marker": b"failures\n"},
        media_types="docker",
    )


def _service(root: Path) -> LocalImageService:
    options = {"docker_config": False, "max_retries": 1}
    return LocalImageService(root, "default", registry_options=options)


def _assert_nothing_left(service: LocalImageService, root: Path) -> None:
    assert service.content.digests() == []
    assert service.content.ingests() == []
    assert service.list() == []
    assert [p for p in (root / "content" / "ingest").iterdir()] == []
    assert [p for p in (root / "images").rglob("*.json")] == []


def _push(registry: Registry, image: BuiltImage, repo: str) -> str:
    ref = f"{registry.host}/{repo}:1"
    with RegistryClient(docker_config=False) as client:
        client.push_graph(
            ref, DirectoryContentStore(image.layout), Descriptor.from_dict(dict(image.target))
        )
    return ref


def _push_lying_manifest(registry: Registry, image: BuiltImage, repo: str, delta: int) -> str:
    """Push ``image`` and then a manifest whose last layer's size is off by ``delta``."""
    _push(registry, image, repo)
    manifest = image.read_json(image.manifest_digests[HOST])
    manifest["layers"][-1]["size"] += delta
    data = json.dumps(manifest).encode()
    ref = f"{registry.host}/{repo}:lying"
    with RegistryClient(docker_config=False) as client:
        client.push_manifest(ref, data, media.MEDIA_TYPE_DOCKER_MANIFEST)
    return ref


def test_corrupt_blob(registry_plain: Registry, image: BuiltImage, tmp_path: Path) -> None:
    ref = _push(registry_plain, image, "failures/corrupt")
    layer = image.layer_digests[HOST][-1].split(":")[1]
    blobs = registry_plain.storage_dir / "docker" / "registry" / "v2" / "blobs" / "sha256"
    data_file = blobs / layer[:2] / layer / "data"
    original = data_file.read_bytes()
    data_file.write_bytes(bytes([original[0] ^ 0xFF]) + original[1:])  # same size, other bytes
    try:
        service = _service(tmp_path)
        with pytest.raises(DigestMismatch):
            service.pull(ref, max_concurrent=1)
        _assert_nothing_left(service, tmp_path)
    finally:
        data_file.write_bytes(original)


def test_blob_shorter_than_its_descriptor(
    registry_plain: Registry, image: BuiltImage, tmp_path: Path
) -> None:
    ref = _push_lying_manifest(registry_plain, image, "failures/short", +7)
    service = _service(tmp_path)
    with pytest.raises(Error):  # a 416 to the resume request, or the retries run out
        service.pull(ref, max_concurrent=1)
    _assert_nothing_left(service, tmp_path)


def test_blob_longer_than_its_descriptor(
    registry_plain: Registry, image: BuiltImage, tmp_path: Path
) -> None:
    ref = _push_lying_manifest(registry_plain, image, "failures/long", -7)
    service = _service(tmp_path)
    with pytest.raises(DigestMismatch, match="larger than"):
        service.pull(ref, max_concurrent=1)
    _assert_nothing_left(service, tmp_path)


class _Stop(Exception):
    """Raised from the progress callback: the caller gives up half way."""


def test_interrupted_pull(registry_plain: Registry, image: BuiltImage, tmp_path: Path) -> None:
    ref = _push(registry_plain, image, "failures/interrupted")
    done: list[str] = []

    def progress(event: ProgressEvent) -> None:
        if event.kind is ProgressKind.DONE:
            done.append(event.digest)
            raise _Stop("enough")

    service = _service(tmp_path)
    with pytest.raises((_Stop, Error)):
        service.pull(ref, progress=progress, max_concurrent=1)
    assert done, "one blob was stored before the interruption"
    _assert_nothing_left(service, tmp_path)
    # The store works afterwards.
    assert service.pull(ref).name == ref


@pytest.mark.skipif(os.geteuid() != 0, reason="layers are unpacked into snapshots as root only")
def test_lowered_decompression_cap(
    registry_plain: Registry, image: BuiltImage, tmp_path: Path
) -> None:
    """The local pull path takes a lower decompression cap (``max_layer_size=``)."""
    ref = _push(registry_plain, image, "failures/cap")
    options = {"docker_config": False}
    service = LocalImageService(tmp_path, "default", registry_options=options, max_layer_size=4096)
    with pytest.raises(ResourceExhausted, match="max_size"):
        service.pull(ref)
    _assert_nothing_left(service, tmp_path)
    with pytest.raises(InvalidArgument, match="max_layer_size"):
        LocalImageService(tmp_path, "default", max_layer_size=0)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runc") is None, reason="needs root and runc")
def test_local_backend_takes_registry_and_cap_options(
    registry_plain: Registry, image: BuiltImage, tmp_path: Path
) -> None:
    """``registry=`` and ``max_layer_size=`` reach the local image service through the factory."""
    import libcontainerd

    ref = _push(registry_plain, image, "failures/factory")
    client = libcontainerd.new_client(
        backend="local",
        root=tmp_path / "root",
        state=tmp_path / "state",
        registry={"docker_config": False, "max_retries": 1},
        max_layer_size=4096,
    )
    with client:
        with pytest.raises(ResourceExhausted):
            client.images.pull(ref)
        assert client.images.list() == []
