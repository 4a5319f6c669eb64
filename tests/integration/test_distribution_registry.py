"""The registry client against the real distribution registry (Debian's docker-registry).

Three registries run for the module: plain HTTP, TLS with a throwaway CA, and htpasswd
basic auth. Images come from ``build_image``; skopeo pushes and pulls as an independent
implementation of the protocol.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from libcontainerd.content import DirectoryContentStore
from libcontainerd.distribution import AsyncRegistryClient, RegistryClient
from libcontainerd.errors import AuthenticationError, DigestMismatch, NotFound, Unavailable
from libcontainerd.testing.image_builder import BuiltImage, build_image
from libcontainerd.testing.registry import Registry, start_registry
from libcontainerd.types.auth import Credentials
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.progress import ProgressKind

pytestmark = [
    pytest.mark.registry,
    pytest.mark.skipif(shutil.which("docker-registry") is None, reason="needs docker-registry"),
]

PLATFORMS = ("linux/amd64", "linux/arm64")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("distribution")


@pytest.fixture(scope="module")
def plain_registry(workdir: Path) -> Iterator[Registry]:
    registry = start_registry(workdir / "plain")
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def tls_registry(workdir: Path) -> Iterator[Registry]:
    registry = start_registry(workdir / "tls", tls=True)
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def auth_registry(workdir: Path) -> Iterator[Registry]:
    registry = start_registry(workdir / "auth", htpasswd=("user", "pass"))
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def image(workdir: Path) -> BuiltImage:
    return build_image(workdir / "layout", platforms=PLATFORMS)


@pytest.fixture(scope="module")
def docker_image(workdir: Path) -> BuiltImage:
    return build_image(
        workdir / "docker-layout", platforms=PLATFORMS, media_types="docker", ref_name="docker"
    )


def _target(image: BuiltImage) -> Descriptor:
    return Descriptor.from_dict(dict(image.target))


def _client(**kwargs: object) -> RegistryClient:
    return RegistryClient(docker_config=False, **kwargs)  # type: ignore[arg-type]


def _skopeo(*args: str) -> None:
    done = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"skopeo {' '.join(args)} failed: {done.stderr}"


def _assert_same_blobs(store: DirectoryContentStore, image: BuiltImage) -> None:
    digests = store.digests()
    assert digests
    for digest in digests:
        assert store.read_blob(digest) == image.blob_path(digest).read_bytes()
        assert "sha256:" + hashlib.sha256(store.read_blob(digest)).hexdigest() == digest
    assert store.ingests() == []


def test_push_then_pull_every_platform(
    plain_registry: Registry, image: BuiltImage, tmp_path: Path
) -> None:
    ref = f"{plain_registry.host}/lib/busybox:all"
    events = []
    with _client() as client:
        pushed = client.push_graph(
            ref, DirectoryContentStore(image.layout), _target(image), progress=events.append
        )
        assert pushed.digest == image.index_digest
        resolved = client.resolve(ref)
        assert resolved.digest == image.index_digest
        assert resolved.media_type == image.target["mediaType"]
        store = DirectoryContentStore(tmp_path / "out")
        result = client.pull_graph(ref, store, platform="all")
    assert {e.kind for e in events} >= {ProgressKind.UPLOADING, ProgressKind.DONE}
    assert len(result.manifests) == 3
    expected = {image.index_digest, *image.manifest_digests.values()}
    expected |= set(image.config_digests.values())
    for layers in image.layer_digests.values():
        expected |= set(layers)
    assert set(store.digests()) == expected
    _assert_same_blobs(store, image)


def test_pull_single_platform_and_progress(
    plain_registry: Registry, image: BuiltImage, tmp_path: Path
) -> None:
    ref = f"{plain_registry.host}/lib/busybox:single"
    with _client() as client:
        client.push_graph(ref, DirectoryContentStore(image.layout), _target(image))
        store = DirectoryContentStore(tmp_path / "out")
        events = []
        result = client.pull_graph(ref, store, platform="linux/arm64", progress=events.append)
        assert [m.digest for m in result.manifests] == [
            image.index_digest,
            image.manifest_digests["linux/arm64"],
        ]
        assert image.manifest_digests["linux/amd64"] not in store.digests()
        _assert_same_blobs(store, image)
        kinds = [e.kind for e in events]
        assert kinds[0] is ProgressKind.RESOLVED
        assert {ProgressKind.WAITING, ProgressKind.DOWNLOADING, ProgressKind.VERIFYING} <= set(
            kinds
        )
        layer = image.layer_digests["linux/arm64"][0]
        done = [e for e in events if e.digest == layer and e.kind is ProgressKind.DONE]
        assert done and done[0].current == done[0].total > 0
        # A second pull finds everything present.
        again = []
        client.pull_graph(ref, store, platform="linux/arm64", progress=again.append)
        assert {e.kind for e in again if e.digest == layer} == {
            ProgressKind.WAITING,
            ProgressKind.EXISTS,
        }
        with pytest.raises(NotFound, match="linux/s390x"):
            client.pull_graph(ref, DirectoryContentStore(tmp_path / "none"), platform="linux/s390x")


def test_resolve_by_digest_and_missing(plain_registry: Registry, image: BuiltImage) -> None:
    ref = f"{plain_registry.host}/lib/busybox:bydigest"
    with _client() as client:
        client.push_graph(ref, DirectoryContentStore(image.layout), _target(image))
        by_digest = client.resolve(f"{plain_registry.host}/lib/busybox@{image.index_digest}")
        assert by_digest.digest == image.index_digest
        assert by_digest.size == image.target["size"]
        manifest = client.fetch_manifest(f"{plain_registry.host}/lib/busybox", by_digest)
        assert len(manifest.children()) == 2
        with pytest.raises(NotFound, match="lib/busybox:nope"):
            client.resolve(f"{plain_registry.host}/lib/busybox:nope")
        with pytest.raises(NotFound, match="nothere"):
            client.resolve(f"{plain_registry.host}/nothere/x:latest")


def test_fetch_blob_size_mismatch_keeps_nothing(
    plain_registry: Registry, image: BuiltImage, tmp_path: Path
) -> None:
    ref = f"{plain_registry.host}/lib/busybox:size"
    config = image.config_digests["linux/amd64"]
    with _client() as client:
        client.push_graph(ref, DirectoryContentStore(image.layout), _target(image))
        store = DirectoryContentStore(tmp_path / "out")
        real = image.blob_path(config).stat().st_size
        lying = Descriptor(
            media_type="application/vnd.oci.image.config.v1+json", digest=config, size=real - 1
        )
        with pytest.raises(DigestMismatch):
            client.fetch_blob(ref, lying, store)
        assert store.digests() == [] and store.ingests() == []
        good = Descriptor(
            media_type="application/vnd.oci.image.config.v1+json", digest=config, size=real
        )
        client.fetch_blob(ref, good, store)
        assert store.read_blob(config) == image.blob_path(config).read_bytes()


def test_blob_upload_monolithic_chunked_and_mount(plain_registry: Registry) -> None:
    data = bytes(range(256)) * 1000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    desc = Descriptor(media_type="application/octet-stream", digest=digest, size=len(data))
    other = data[::-1] + b"x"
    other_desc = Descriptor(
        media_type="application/octet-stream",
        digest="sha256:" + hashlib.sha256(other).hexdigest(),
        size=len(other),
    )
    host = plain_registry.host
    with _client() as client:
        assert not client.blob_exists(f"{host}/blobs/a", digest)
        client.push_blob(f"{host}/blobs/a", desc, data)
        assert client.blob_exists(f"{host}/blobs/a", digest)
        client.push_blob(f"{host}/blobs/b", other_desc, other, chunk_size=10_000)
        assert client.blob_exists(f"{host}/blobs/b", other_desc.digest)
        assert client.mount_blob(f"{host}/blobs/c", desc, "blobs/a") is True
        assert client.blob_exists(f"{host}/blobs/c", digest)
        # A mount the registry cannot do (unknown source) falls back to an upload.
        assert client.mount_blob(f"{host}/blobs/d", other_desc, "blobs/none", data=other) is False
        assert client.blob_exists(f"{host}/blobs/d", other_desc.digest)
        store = DirectoryContentStore(plain_registry.base_dir / "fetched")
        client.fetch_blob(f"{host}/blobs/b", other_desc, store)
        assert store.read_blob(other_desc.digest) == other


def test_async_client_same_results(
    plain_registry: Registry, docker_image: BuiltImage, tmp_path: Path
) -> None:
    ref = f"{plain_registry.host}/lib/docker:async"

    async def scenario() -> None:
        async with AsyncRegistryClient(docker_config=False) as client:
            pushed = await client.push_graph(
                ref, DirectoryContentStore(docker_image.layout), _target(docker_image)
            )
            assert pushed.digest == docker_image.index_digest
            resolved = await client.resolve(ref)
            assert resolved.media_type == (
                "application/vnd.docker.distribution.manifest.list.v2+json"
            )
            store = DirectoryContentStore(tmp_path / "async")
            result = await client.pull_graph(ref, store, platform=["linux/amd64", "linux/arm64"])
            assert len(result.manifests) == 3
            _assert_same_blobs(store, docker_image)

    asyncio.run(scenario())


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="needs skopeo")
def test_skopeo_push_then_our_pull(
    plain_registry: Registry, image: BuiltImage, tmp_path: Path
) -> None:
    ref = f"{plain_registry.host}/skopeo/busybox:pushed"
    _skopeo(
        "copy", "--all", "--dest-tls-verify=false", f"oci:{image.layout}:latest", f"docker://{ref}"
    )
    with _client() as client:
        store = DirectoryContentStore(tmp_path / "out")
        result = client.pull_graph(ref, store, platform="all")
    assert result.target.digest == image.index_digest
    _assert_same_blobs(store, image)


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="needs skopeo")
def test_our_push_then_skopeo_pull(
    plain_registry: Registry, docker_image: BuiltImage, tmp_path: Path
) -> None:
    ref = f"{plain_registry.host}/ours/busybox:pushed"
    with _client() as client:
        client.push_graph(ref, DirectoryContentStore(docker_image.layout), _target(docker_image))
    out = tmp_path / "skopeo-out"
    _skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{ref}", f"dir:{out}")
    # skopeo's dir: layout: "manifest.json" is the index, blobs are files named by hex.
    index = (out / "manifest.json").read_bytes()
    assert "sha256:" + hashlib.sha256(index).hexdigest() == docker_image.index_digest
    blobs = [p for p in out.iterdir() if len(p.name) == 64]
    assert len(blobs) >= 3
    for path in blobs:
        assert docker_image.blob_path("sha256:" + path.name).read_bytes() == path.read_bytes()


def test_tls_with_ca_and_refused_without(
    tls_registry: Registry, image: BuiltImage, tmp_path: Path
) -> None:
    ref = f"{tls_registry.host}/tls/busybox:v1"
    with _client(ca_file=tls_registry.ca_path) as client:
        client.push_graph(ref, DirectoryContentStore(image.layout), _target(image))
        store = DirectoryContentStore(tmp_path / "out")
        client.pull_graph(ref, store, platform="linux/amd64")
        _assert_same_blobs(store, image)
    # Unknown CA: verification fails and the client must not fall back to plain HTTP.
    with _client(max_retries=0) as client, pytest.raises(Unavailable, match="CERTIFICATE"):
        client.resolve(ref)


def test_basic_auth_credentials(auth_registry: Registry, image: BuiltImage, tmp_path: Path) -> None:
    ref = f"{auth_registry.host}/auth/busybox:v1"
    with _client(credentials=Credentials(username="user", password="pass")) as client:
        client.push_graph(ref, DirectoryContentStore(image.layout), _target(image))
        assert client.resolve(ref).digest == image.index_digest
    with (
        _client(credentials=Credentials(username="user", password="wrong")) as client,
        pytest.raises(AuthenticationError, match=auth_registry.host) as caught,
    ):
        client.resolve(ref)
    assert caught.value.status == 401
    with _client() as client, pytest.raises(AuthenticationError, match="no credentials"):
        client.resolve(ref)
    # Credentials from a docker config.json.
    config = tmp_path / "config.json"
    auth = base64.b64encode(b"user:pass").decode()
    config.write_text(json.dumps({"auths": {f"http://{auth_registry.host}": {"auth": auth}}}))
    with RegistryClient(docker_config=config) as client:
        store = DirectoryContentStore(tmp_path / "out")
        client.pull_graph(ref, store)
        _assert_same_blobs(store, image)


def test_credential_helper_with_async_client(
    auth_registry: Registry, image: BuiltImage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = f"{auth_registry.host}/auth/busybox:helper"
    with _client(credentials={auth_registry.host: Credentials("user", "pass")}) as client:
        client.push_graph(ref, DirectoryContentStore(image.layout), _target(image))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-testhelper"
    # Answers only for the registry it is asked about on stdin.
    helper.write_text(
        "#!/bin/sh\nread url\n"
        f'[ "$url" = "{auth_registry.host}" ] || {{ echo "credentials not found"; exit 1; }}\n'
        'echo \'{"Username":"user","Secret":"pass"}\'\n'
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credsStore": "testhelper"}))

    async def scenario() -> None:
        async with AsyncRegistryClient(docker_config=config) as client:
            store = DirectoryContentStore(tmp_path / "out")
            await client.pull_graph(ref, store, platform="linux/arm64")
            _assert_same_blobs(store, image)

    asyncio.run(scenario())
