"""Manifest lists with odd entries pull like containerd pulls them (issue 8, point 10).

A real registry holds an index whose entries carry platforms containerd would normalise
(``"os": "Linux"``, no ``os``, an ``os.version`` with a space, too many features) and one
it cannot understand; the pull of this host's platform succeeds and picks the right entry.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from libcontainerd.content import DirectoryContentStore
from libcontainerd.distribution import RegistryClient
from libcontainerd.local._images import LocalImageService
from libcontainerd.testing.image_builder import BuiltImage, build_image, host_platform
from libcontainerd.testing.registry import Registry
from libcontainerd.types import descriptor as media
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.platform import Platform

pytestmark = [
    pytest.mark.registry,
    pytest.mark.skipif(shutil.which("docker-registry") is None, reason="needs docker-registry"),
]

HOST = host_platform()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    return build_image(tmp_path_factory.mktemp("odd-lists") / "layout", media_types="docker")


def _odd_index(image: BuiltImage) -> dict[str, Any]:
    host = Platform.parse(HOST)
    arch = host.architecture.upper()
    digest = image.manifest_digests[HOST]
    size = len(image.blob_path(digest).read_bytes())

    def entry(platform: object) -> dict[str, Any]:
        return {
            "mediaType": media.MEDIA_TYPE_DOCKER_MANIFEST,
            "digest": digest,
            "size": size,
            "platform": platform,
        }

    return {
        "schemaVersion": 2,
        "mediaType": media.MEDIA_TYPE_DOCKER_MANIFEST_LIST,
        "manifests": [
            entry({"os": "linux", "architecture": "s390x", "os.features": ["x"] * 40}),
            entry({"os": "windows", "architecture": "amd64", "os.version": "10.0 17763"}),
            entry({"os": "linux", "architecture": "not an/arch!"}),
            entry({"architecture": "x86_64" if host.architecture == "amd64" else "nowhere"}),
            entry({"os": "Linux", "architecture": arch, "variant": host.variant}),
        ],
    }


@pytest.mark.parametrize("flavour", ["registry-client", "local-backend"])
def test_odd_entries_do_not_fail_the_pull(
    registry_plain: Registry, image: BuiltImage, tmp_path: Path, flavour: str
) -> None:
    repo = f"{registry_plain.host}/odd-lists/{flavour}"
    index = json.dumps(_odd_index(image)).encode()
    with RegistryClient(docker_config=False) as client:
        client.push_graph(
            f"{repo}:single",
            DirectoryContentStore(image.layout),
            Descriptor.from_dict(dict(image.target)),
        )
        client.push_manifest(f"{repo}:odd", index, media.MEDIA_TYPE_DOCKER_MANIFEST_LIST)
        if flavour == "registry-client":
            result = client.pull_graph(f"{repo}:odd", DirectoryContentStore(tmp_path / "out"))
            assert image.manifest_digests[HOST] in {m.digest for m in result.manifests}
            return
    service = LocalImageService(
        tmp_path / "root", "default", registry_options={"docker_config": False}
    )
    pulled = service.pull(f"{repo}:odd")
    # (Every entry here points at the same manifest, so each names a platform present.)
    assert HOST in {p.format() for p in pulled.platforms}
    assert image.manifest_digests[HOST] in service.content.digests()
