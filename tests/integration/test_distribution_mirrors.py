"""hosts.toml mirrors against real registries: mirrors first, the upstream last.

Three docker-registry processes: an upstream, a plain-HTTP mirror and a TLS mirror whose
CA is only named in hosts.toml (the client gets no ca_file), so reaching it proves the
per-host TLS settings are used.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from libcontainerd.content import DirectoryContentStore
from libcontainerd.distribution import AsyncRegistryClient, RegistryClient
from libcontainerd.errors import NotFound
from libcontainerd.testing.image_builder import BuiltImage, build_image
from libcontainerd.testing.registry import Registry, start_registry
from libcontainerd.types.descriptor import Descriptor

pytestmark = [
    pytest.mark.registry,
    pytest.mark.skipif(shutil.which("docker-registry") is None, reason="needs docker-registry"),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mirrors")


@pytest.fixture(scope="module")
def image(workdir: Path) -> BuiltImage:
    return build_image(workdir / "layout", platforms=("linux/amd64", "linux/arm64"))


@pytest.fixture(scope="module")
def mirror(workdir: Path) -> Iterator[Registry]:
    registry = start_registry(workdir / "mirror")
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def tls_mirror(workdir: Path) -> Iterator[Registry]:
    registry = start_registry(workdir / "tls-mirror", tls=True)
    yield registry
    registry.stop()


@pytest.fixture()
def upstream(tmp_path: Path) -> Iterator[Registry]:
    registry = start_registry(tmp_path / "upstream")
    yield registry
    registry.stop()


def _push(registry: Registry, image: BuiltImage, repo_tag: str) -> None:
    target = Descriptor.from_dict(dict(image.target))
    with RegistryClient(docker_config=False, ca_file=registry.ca_path) as client:
        client.push_graph(
            f"{registry.host}/{repo_tag}", DirectoryContentStore(image.layout), target
        )


def _hosts_dir(base: Path, upstream: Registry, *mirrors: tuple[Registry, str]) -> Path:
    directory = base / "certs.d" / upstream.host
    directory.mkdir(parents=True)
    lines = [f'server = "{upstream.url}"', ""]
    for registry, extra in mirrors:
        lines += [f'[host."{registry.url}"]', '  capabilities = ["pull", "resolve"]', extra, ""]
    (directory / "hosts.toml").write_text("\n".join(lines))
    return base / "certs.d"


def test_pull_from_mirror_while_upstream_is_down(
    upstream: Registry, mirror: Registry, image: BuiltImage, tmp_path: Path
) -> None:
    _push(mirror, image, "lib/app:down")
    hosts_dir = _hosts_dir(tmp_path, upstream, (mirror, ""))
    ref = f"{upstream.host}/lib/app:down"
    upstream.stop()
    store = DirectoryContentStore(tmp_path / "out")
    with RegistryClient(docker_config=False, hosts_dir=hosts_dir, max_retries=0) as client:
        result = client.pull_graph(ref, store, platform="linux/arm64")
    assert result.target.digest == image.index_digest
    assert image.manifest_digests["linux/arm64"] in store.digests()
    assert store.ingests() == []


def test_async_pull_from_tls_mirror_with_ca_from_hosts_toml(
    upstream: Registry, tls_mirror: Registry, image: BuiltImage, tmp_path: Path
) -> None:
    assert tls_mirror.ca_path is not None
    _push(tls_mirror, image, "lib/app:tls")
    hosts_dir = _hosts_dir(tmp_path, upstream, (tls_mirror, f'  ca = "{tls_mirror.ca_path}"'))
    upstream.stop()
    store = DirectoryContentStore(tmp_path / "out")

    async def pull() -> str:
        async with AsyncRegistryClient(
            docker_config=False, hosts_dir=hosts_dir, max_retries=0
        ) as client:
            result = await client.pull_graph(f"{upstream.host}/lib/app:tls", store)
            return result.target.digest

    assert asyncio.run(pull()) == image.index_digest


def test_falls_back_to_upstream_when_mirror_lacks_the_image(
    upstream: Registry, mirror: Registry, image: BuiltImage, tmp_path: Path
) -> None:
    _push(upstream, image, "lib/app:only-upstream")
    hosts_dir = _hosts_dir(tmp_path, upstream, (mirror, ""))
    store = DirectoryContentStore(tmp_path / "out")
    with RegistryClient(docker_config=False, hosts_dir=hosts_dir) as client:
        result = client.pull_graph(f"{upstream.host}/lib/app:only-upstream", store, platform="all")
        assert result.target.digest == image.index_digest
        with pytest.raises(NotFound) as caught:
            client.resolve(f"{upstream.host}/lib/app:nowhere")
    # The error names the mirror that was tried before the upstream.
    assert mirror.host in str(caught.value)
