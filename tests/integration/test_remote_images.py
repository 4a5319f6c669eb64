"""The remote backend's image service against a private containerd and a local registry."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libcontainerd.config import ClientConfig
from libcontainerd.content import DirectoryContentStore
from libcontainerd.distribution import RegistryClient
from libcontainerd.errors import DigestMismatch, Error, FailedPrecondition, NotFound
from libcontainerd.oci import generate_spec, with_process_args
from libcontainerd.remote import RemoteClient
from libcontainerd.remote._content import RemoteContentStore
from libcontainerd.remote._gc_labels import child_gc_labels
from libcontainerd.remote._manifest_cache import manifest_cache
from libcontainerd.remote._pb.containerd.services.leases.v1 import leases_pb2
from libcontainerd.remote._unpack import UNCOMPRESSED_LABEL, image_chain_id, snapshot_gc_label
from libcontainerd.testing.image_builder import ImageConfigSpec, build_image, host_platform
from libcontainerd.types import descriptor as media
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.stdio import PipedIO

pytestmark = [pytest.mark.containerd, pytest.mark.registry]

NAMESPACE = "images-it"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if os.geteuid() != 0 or shutil.which("containerd") is None:
        pytest.skip("needs root and the containerd binary")
    from libcontainerd.testing.containerd_daemon import start_containerd

    running = start_containerd(tmp_path_factory.mktemp("images-containerd"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(daemon: Any) -> Iterator[RemoteClient]:
    remote = RemoteClient(ClientConfig(namespace=NAMESPACE, address=daemon.address))
    try:
        yield remote
    finally:
        for container in remote.containers():
            with contextlib.suppress(NotFound):
                container.task().force_delete()
            container.delete()
        remote.close()


def push_layout(registry: Any, layout: Path, target: dict[str, Any], repo: str) -> str:
    """Push the image ``target`` of an OCI layout to ``registry`` and return the ref."""
    ref = f"{registry.host}/{repo}:{secrets.token_hex(3)}"
    with RegistryClient(docker_config=False) as reg:
        reg.push_graph(ref, DirectoryContentStore(layout), Descriptor.from_dict(target))
    return ref


@pytest.fixture(scope="module")
def busybox_ref(registry_plain: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    layout = tmp_path_factory.mktemp("layout-busybox") / "oci"
    built = build_image(
        layout,
        config=ImageConfigSpec(env=("PATH=/usr/sbin:/usr/bin:/sbin:/bin", "IMAGE_VAR=from-image")),
        media_types="docker",
    )
    return push_layout(registry_plain, layout, dict(built.target), "sdk/busybox")


def _run(client: RemoteClient, daemon: Any, cid: str, ref: str, *args: str) -> tuple[int, bytes]:
    spec = generate_spec(with_process_args(*args), container_id=cid, namespace=NAMESPACE)
    container = client.new_container(
        cid, spec, image=ref, runtime_options={"root": str(daemon.runc_root)}
    )
    task = container.new_task(stdio=PipedIO(stdin=False))
    try:
        task.start()
        assert task.io is not None and task.io.stdout is not None
        output = task.io.stdout.read()
        status = task.wait(timeout=30)
    finally:
        task.force_delete()
        container.delete()
    return status.code, output


def _content_digests(client: RemoteClient) -> set[str]:
    return {info.digest for info in RemoteContentStore(client.transport).list()}


# ------------------------------------------------------------------ pull


def test_pull_records_labels_unpacks_and_runs(
    client: RemoteClient, daemon: Any, busybox_ref: str
) -> None:
    events: list[Any] = []
    image = client.images.pull(busybox_ref, progress=events.append)
    assert image.name == busybox_ref
    assert media.is_manifest(image.target.media_type)
    assert events, "progress was reported"
    store = RemoteContentStore(client.transport)
    manifest = store.read_json(image.digest)
    info = store.info(image.digest)
    assert dict(info.labels) | child_gc_labels(
        image.target.media_type, store.read_blob(image.digest)
    ) == dict(info.labels)
    assert info.labels["containerd.io/gc.ref.content.config"] == manifest["config"]["digest"]
    assert info.labels["containerd.io/gc.ref.content.l.0"] == manifest["layers"][0]["digest"]
    config_info = store.info(manifest["config"]["digest"])
    assert config_info.labels[snapshot_gc_label("overlayfs")].startswith("sha256:")
    assert config_info.labels["containerd.io/distribution.source." + busybox_ref.split("/")[0]] == (
        "sdk/busybox"
    )
    layer_info = store.info(manifest["layers"][0]["digest"])
    assert layer_info.labels[UNCOMPRESSED_LABEL].startswith("sha256:")
    # the pull's lease is gone
    assert not [lease for lease in client.leases.list() if lease.id.startswith("libcontainerd-")]
    code, output = _run(client, daemon, f"img-{secrets.token_hex(3)}", busybox_ref, "echo", "hi")
    assert (code, output) == (0, b"hi\n")
    env_code, env_out = _run(
        client, daemon, f"img-{secrets.token_hex(3)}", busybox_ref, "sh", "-c", "echo $IMAGE_VAR"
    )
    assert (env_code, env_out) == (0, b"from-image\n")


def test_pull_twice_is_idempotent(client: RemoteClient, busybox_ref: str) -> None:
    first = client.images.pull(busybox_ref)
    second = client.images.pull(busybox_ref)
    assert first.target == second.target
    assert [i.name for i in client.images.list([f'name=="{busybox_ref}"'])] == [busybox_ref]


def test_get_list_remove(client: RemoteClient, busybox_ref: str) -> None:
    client.images.pull(busybox_ref)
    assert client.images.get(busybox_ref).name == busybox_ref
    assert busybox_ref in {image.name for image in client.images.list()}
    client.images.remove(busybox_ref, sync=True)
    with pytest.raises(NotFound):
        client.images.get(busybox_ref)
    with pytest.raises(NotFound):
        client.images.remove(busybox_ref)


def test_container_manifest_is_read_once_and_forgotten_on_remove(
    client: RemoteClient, daemon: Any, busybox_ref: str
) -> None:
    image = client.images.pull(busybox_ref)
    assert _run(client, daemon, f"img-{secrets.token_hex(3)}", busybox_ref, "true")[0] == 0
    remembered = manifest_cache.get(client.address, NAMESPACE, image.digest)
    assert remembered is not None
    # The config blob is what keeps the unpacked layers from containerd's garbage
    # collector; a lease on the top layer's snapshot keeps them while the blobs are gone.
    transport = client.transport
    lease_id = f"keep-layers-{secrets.token_hex(4)}"
    transport.call(transport.leases.Create, leases_pb2.CreateRequest(id=lease_id))
    transport.call(
        transport.leases.AddResource,
        leases_pb2.AddResourceRequest(
            id=lease_id,
            resource=leases_pb2.Resource(
                id=image_chain_id(remembered.config), type="snapshots/overlayfs"
            ),
        ),
    )
    try:
        # With the config blob gone, only the remembered manifest lets a container be made.
        store = RemoteContentStore(transport)
        store.delete(remembered.descriptor.digest)
        store.delete(remembered.manifest["config"]["digest"])
        assert _run(client, daemon, f"img-{secrets.token_hex(3)}", busybox_ref, "true")[0] == 0
    finally:
        transport.call(transport.leases.Delete, leases_pb2.DeleteRequest(id=lease_id))
    client.images.remove(busybox_ref, sync=True)
    assert manifest_cache.get(client.address, NAMESPACE, image.digest) is None
    with pytest.raises(NotFound):
        client.new_container(f"img-{secrets.token_hex(3)}", image=busybox_ref)
    client.images.pull(busybox_ref)


def test_container_from_missing_image_leaves_nothing(client: RemoteClient) -> None:
    cid = f"img-missing-{secrets.token_hex(3)}"
    with pytest.raises(NotFound):
        client.new_container(cid, image="127.0.0.1:1/none:latest")
    assert cid not in {c.id for c in client.containers()}


def test_container_needs_unpacked_image(
    client: RemoteClient, registry_plain: Any, tmp_path: Path
) -> None:
    layout = tmp_path / "oci"
    built = build_image(layout, extra_files={"marker": b"packed"}, media_types="docker")
    ref = push_layout(registry_plain, layout, dict(built.target), "sdk/packed")
    client.images.pull(ref, unpack=False)
    cid = f"img-packed-{secrets.token_hex(3)}"
    with pytest.raises(FailedPrecondition, match="unpack"):
        client.new_container(cid, image=ref)
    assert chain_free(client, cid)


def chain_free(client: RemoteClient, key: str) -> bool:
    from libcontainerd.remote._pb.containerd.services.snapshots.v1 import (
        snapshots_pb2,
        snapshots_pb2_grpc,
    )

    stub = snapshots_pb2_grpc.SnapshotsStub(client.transport.channel)
    try:
        client.transport.call(
            stub.Stat, snapshots_pb2.StatSnapshotRequest(snapshotter="overlayfs", key=key)
        )
    except NotFound:
        return True
    return False


def test_corrupt_blob_is_digest_mismatch_and_not_committed(
    client: RemoteClient, registry_plain: Any, tmp_path: Path
) -> None:
    layout = tmp_path / "oci"
    built = build_image(
        layout, extra_files={"corrupt": secrets.token_bytes(64)}, media_types="docker"
    )
    ref = push_layout(registry_plain, layout, dict(built.target), "sdk/corrupt")
    layer = built.layer_digests[host_platform()][-1]
    algorithm, encoded = layer.split(":")
    data_path = (
        registry_plain.storage_dir
        / "docker/registry/v2/blobs"
        / algorithm
        / encoded[:2]
        / encoded
        / "data"
    )
    original = data_path.read_bytes()
    data_path.write_bytes(bytes([original[0] ^ 0xFF]) + original[1:])
    with pytest.raises(DigestMismatch):
        client.images.pull(ref)
    left = _content_digests(client)
    assert layer not in left
    config = built.config_digests[host_platform()]
    assert config not in left, "the failed pull's lease was deleted with its content"
    assert built.index_digest not in left
    assert not RemoteContentStore(client.transport).ingests()
    with pytest.raises(NotFound):
        client.images.get(ref)


def test_bad_reference_is_invalid(client: RemoteClient) -> None:
    with pytest.raises(Error):
        client.images.pull("Not A Reference")


# ------------------------------------------------------------------ ctr interop


def _ctr(daemon: Any, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ctr", "--address", str(daemon.socket_path), "--namespace", NAMESPACE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def need_ctr() -> None:
    if shutil.which("ctr") is None:
        pytest.skip("needs ctr")


@pytest.mark.usefixtures("need_ctr")
def test_ctr_runs_an_image_the_sdk_pulled(
    client: RemoteClient, daemon: Any, busybox_ref: str
) -> None:
    client.images.pull(busybox_ref)
    cid = f"ctr-run-{secrets.token_hex(3)}"
    result = _ctr(
        daemon,
        "run",
        "--rm",
        "--runc-root",
        str(daemon.runc_root),
        busybox_ref,
        cid,
        "echo",
        "ok",
    )
    if result.returncode != 0 and "runc-root" in result.stderr:
        result = _ctr(daemon, "run", "--rm", busybox_ref, cid, "echo", "ok")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.usefixtures("need_ctr")
def test_sdk_runs_an_image_ctr_pulled(
    client: RemoteClient, daemon: Any, registry_plain: Any, tmp_path: Path
) -> None:
    layout = tmp_path / "oci"
    built = build_image(layout, extra_files={"from-ctr": b"ctr\n"}, media_types="docker")
    ref = push_layout(registry_plain, layout, dict(built.target), "sdk/ctrpull")
    result = _ctr(daemon, "images", "pull", "--plain-http", ref)
    assert result.returncode == 0, result.stderr
    assert client.images.get(ref).digest == built.index_digest
    code, output = _run(client, daemon, f"img-{secrets.token_hex(3)}", ref, "cat", "/from-ctr")
    assert (code, output) == (0, b"ctr\n")


# ------------------------------------------------------------------ multi-platform

OTHER_PLATFORM = "linux/arm64" if host_platform() != "linux/arm64" else "linux/amd64"


@pytest.fixture(scope="module")
def multi(registry_plain: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any]:
    layout = tmp_path_factory.mktemp("layout-multi") / "oci"
    built = build_image(layout, platforms=(host_platform(), OTHER_PLATFORM), media_types="docker")
    assert built.multi_platform
    return push_layout(registry_plain, layout, dict(built.target), "sdk/multi"), built


def test_multi_platform_pull_picks_the_host(
    client: RemoteClient, daemon: Any, multi: tuple[str, Any]
) -> None:
    ref, built = multi
    image = client.images.pull(ref)
    assert media.is_index(image.target.media_type)
    assert image.digest == built.index_digest
    assert [p.format() for p in image.platforms] == [host_platform()]
    store = RemoteContentStore(client.transport)
    assert store.exists(built.manifest_digests[host_platform()])
    assert not store.exists(built.manifest_digests[OTHER_PLATFORM])
    index_labels = dict(store.info(image.digest).labels)
    assert built.manifest_digests[host_platform()] in index_labels.values()
    code, output = _run(client, daemon, f"img-{secrets.token_hex(3)}", ref, "echo", "multi")
    assert (code, output) == (0, b"multi\n")


def test_multi_platform_pull_other_platform(client: RemoteClient, multi: tuple[str, Any]) -> None:
    ref, built = multi
    image = client.images.pull(ref, platform=OTHER_PLATFORM, unpack=False)
    assert [p.format() for p in image.platforms] == [OTHER_PLATFORM]
    assert RemoteContentStore(client.transport).exists(built.manifest_digests[OTHER_PLATFORM])


def test_missing_platform_is_not_found_naming_it(
    client: RemoteClient, multi: tuple[str, Any]
) -> None:
    ref, _ = multi
    client.images.remove(ref, sync=True) if ref in {i.name for i in client.images.list()} else None
    with pytest.raises(NotFound, match="linux/s390x"):
        client.images.pull(ref, platform="linux/s390x")
    with pytest.raises(NotFound):
        client.images.get(ref)


# ------------------------------------------------------------------ push


def test_push_to_another_repository(
    client: RemoteClient, registry_plain: Any, busybox_ref: str
) -> None:
    image = client.images.pull(busybox_ref)
    dest = f"{registry_plain.host}/sdk/pushed:{secrets.token_hex(3)}"
    pushed = client.images.push(dest, source=busybox_ref)
    assert pushed.digest == image.digest
    with RegistryClient(docker_config=False) as reg:
        assert reg.resolve(dest).digest == image.digest


def test_push_partial_index_needs_platform(
    client: RemoteClient, registry_plain: Any, multi: tuple[str, Any]
) -> None:
    ref, built = multi
    client.images.pull(ref)
    dest = f"{registry_plain.host}/sdk/pushed-multi:{secrets.token_hex(3)}"
    with pytest.raises(NotFound, match="platform"):
        client.images.push(dest, source=ref)
    pushed = client.images.push(dest, source=ref, platform=host_platform())
    assert pushed.digest == built.manifest_digests[host_platform()]


# ------------------------------------------------------------------ archives


def test_import_oci_layout_archive_and_run(
    client: RemoteClient, daemon: Any, tmp_path: Path
) -> None:
    from libcontainerd.testing.image_builder import write_layout_archive

    name = f"example.com/sdk/oci-{secrets.token_hex(3)}:v1"
    built = build_image(tmp_path / "oci", extra_files={"hello": b"oci\n"}, ref_name=name)
    archive = write_layout_archive(tmp_path / "oci", tmp_path / "oci.tar")
    images = client.images.import_archive(archive)
    assert [(i.name, i.digest) for i in images] == [(name, built.index_digest)]
    code, output = _run(client, daemon, f"img-{secrets.token_hex(3)}", name, "cat", "/hello")
    assert (code, output) == (0, b"oci\n")


def test_import_docker_archive_and_run(client: RemoteClient, daemon: Any, tmp_path: Path) -> None:
    from libcontainerd.testing.image_builder import write_docker_archive

    built = build_image(tmp_path / "oci", extra_files={"hello": b"docker\n"})
    tag = f"example.com/sdk/docker-{secrets.token_hex(3)}:v2"
    archive = write_docker_archive(built, tmp_path / "docker.tar", repo_tag=tag)
    with open(archive, "rb") as handle:
        images = client.images.import_archive(handle)
    assert [i.name for i in images] == [tag]
    code, output = _run(client, daemon, f"img-{secrets.token_hex(3)}", tag, "cat", "/hello")
    assert (code, output) == (0, b"docker\n")


def test_export_import_round_trip(client: RemoteClient, busybox_ref: str, tmp_path: Path) -> None:
    image = client.images.pull(busybox_ref)
    out = tmp_path / "export.tar"
    client.images.export_archive([busybox_ref], out)
    client.images.remove(busybox_ref, sync=True)
    imported = client.images.import_archive(out)
    assert [(i.name, i.target) for i in imported] == [(image.name, image.target)]
    assert client.images.get(busybox_ref).digest == image.digest


def test_import_platform_filter(client: RemoteClient, tmp_path: Path) -> None:
    from libcontainerd.testing.image_builder import write_layout_archive

    name = f"example.com/sdk/multi-{secrets.token_hex(3)}:v1"
    built = build_image(
        tmp_path / "oci", platforms=(host_platform(), OTHER_PLATFORM), ref_name=name
    )
    archive = write_layout_archive(tmp_path / "oci", tmp_path / "multi.tar")
    with pytest.raises(NotFound, match="linux/s390x"):
        client.images.import_archive(archive, platform="linux/s390x")
    with pytest.raises(NotFound):
        client.images.get(name)
    images = client.images.import_archive(archive, platform=OTHER_PLATFORM)
    assert [p.format() for p in images[0].platforms] == [OTHER_PLATFORM]
    store = RemoteContentStore(client.transport)
    assert store.exists(built.manifest_digests[OTHER_PLATFORM])
    assert not store.exists(built.manifest_digests[host_platform()])


def test_not_an_archive_is_invalid(client: RemoteClient, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.tar"
    bogus.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(Error):
        client.images.import_archive(bogus)


# ------------------------------------------------------------------ async


def test_async_client_pulls_and_gets(daemon: Any, busybox_ref: str) -> None:
    import asyncio

    from libcontainerd.remote import AsyncRemoteClient

    async def scenario() -> tuple[str, str]:
        client = AsyncRemoteClient(ClientConfig(namespace=NAMESPACE, address=daemon.address))
        try:
            pulled = await client.images.pull(busybox_ref)
            got = await client.images.get(busybox_ref)
            return pulled.digest, got.digest
        finally:
            await client.close()

    pulled, got = asyncio.run(scenario())
    assert pulled == got


# ------------------------------------------------------------------ content adapter


def test_writer_chunks_resumes_and_verifies(client: RemoteClient) -> None:
    """Under a lease, as a pull writes: containerd may collect unleased content at once."""
    import hashlib

    with client.images.lease() as lease_id:
        store = RemoteContentStore(client.transport, lease_id=lease_id)
        data = secrets.token_bytes(9 * 1024 * 1024 + 17)  # more than one 8 MiB message
        desc = Descriptor(
            media_type="application/octet-stream",
            digest="sha256:" + hashlib.sha256(data).hexdigest(),
            size=len(data),
        )
        first = store.writer(desc)
        first.write(data[: 3 * 1024 * 1024])
        first._flush()
        first._close_stream()  # as if the process died: the ingest stays resumable
        second = store.writer(desc)
        try:
            assert second.offset == 3 * 1024 * 1024
            second.write(data)  # from byte 0 again; what containerd has is not re-sent
            second.commit()
        finally:
            second.abort()
        assert store.read_blob(desc.digest) == data
        store.delete(desc.digest)

        truncated = store.writer(desc)
        try:
            truncated.write(b"x" * 100)
            truncated._flush()
            truncated.truncate()
            assert truncated.offset == 0
            truncated.write(data)
            truncated.commit()
        finally:
            truncated.abort()
        assert store.info(desc.digest).size == len(data)
        store.delete(desc.digest)


def test_writer_commit_with_wrong_bytes_is_digest_mismatch(client: RemoteClient) -> None:
    store = RemoteContentStore(client.transport)
    desc = Descriptor(media_type="application/octet-stream", digest="sha256:" + "ab" * 32, size=5)
    with pytest.raises(DigestMismatch):
        store.write_blob(desc, b"hello")
    assert not store.exists(desc.digest)
    assert not store.ingests()


def test_cancelled_pull_leaves_nothing(
    client: RemoteClient, registry_plain: Any, tmp_path: Path
) -> None:
    layout = tmp_path / "oci"
    built = build_image(
        layout, extra_files={"big": secrets.token_bytes(2 * 1024 * 1024)}, media_types="docker"
    )
    ref = push_layout(registry_plain, layout, dict(built.target), "sdk/cancel")

    class Stop(Exception):
        pass

    def progress(event: Any) -> None:
        if event.kind.name == "DONE":
            raise Stop

    with pytest.raises(Stop):
        client.images.pull(ref, progress=progress)
    left = _content_digests(client)
    mine = {built.index_digest, built.config_digests[host_platform()]}
    mine.update(built.layer_digests[host_platform()][1:])  # the busybox layer is shared
    assert not mine & left
    assert not [lease for lease in client.leases.list() if lease.id.startswith("libcontainerd-")]
    assert not RemoteContentStore(client.transport).ingests()
    with pytest.raises(NotFound):
        client.images.get(ref)


def test_pull_unpacks_layers_while_later_ones_download(
    client: RemoteClient, registry_plain: Any, tmp_path: Path
) -> None:
    """The last layer's download is held until the layer before it is unpacked.

    An unpack that starts only after every blob is stored would never see that
    snapshot while the hold lasts.
    """
    import threading

    from libcontainerd.content.rootfs import chain_ids
    from libcontainerd.remote._pb.containerd.services.snapshots.v1 import snapshots_pb2

    layout = tmp_path / "oci"
    built = build_image(
        layout,
        extra_layers=[{f"layer{i}": secrets.token_bytes(256 * 1024)} for i in range(2)],
        media_types="docker",
    )
    ref = push_layout(registry_plain, layout, dict(built.target), "sdk/overlap")
    layers = built.layer_digests[host_platform()]
    chain = chain_ids(list(built.diff_ids[host_platform()]))
    seen: list[bool] = []

    def unpacked(key: str) -> bool:
        request = snapshots_pb2.StatSnapshotRequest(snapshotter="overlayfs", key=key)
        try:
            client.transport.call(client.transport.services.snapshots.Stat, request)
        except NotFound:
            return False
        return True

    def progress(event: Any) -> None:
        if event.kind.name == "DONE" and event.digest == layers[-1]:
            stop = threading.Event()
            for _ in range(300):  # up to 30 s
                if unpacked(chain[-2]) or stop.wait(0.1):
                    break
            seen.append(unpacked(chain[-2]))

    client.images.pull(ref, progress=progress)
    assert seen == [True]
    assert unpacked(chain[-1])
    client.images.remove(ref)
