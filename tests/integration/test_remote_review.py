"""Remote backend review: round trips per lifecycle, registry options, platforms, ingest locks."""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from libcontainerd import new_client
from libcontainerd.config import ClientConfig
from libcontainerd.content import DirectoryContentStore
from libcontainerd.distribution import RegistryClient
from libcontainerd.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from libcontainerd.oci import generate_spec, with_process_args, with_rootfs
from libcontainerd.remote import RemoteClient
from libcontainerd.remote._transport import translate_rpc_error
from libcontainerd.testing.image_builder import build_image, host_platform
from libcontainerd.types.descriptor import Descriptor

NAMESPACE = "review-it"
OTHER_PLATFORM = "linux/arm64" if host_platform() != "linux/arm64" else "linux/amd64"


# ------------------------------------------------------------------ no daemon needed


class _Locked(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "ref default/1/libcontainerd-sha256:ab locked for 1s (since now): unavailable"


def test_locked_ingest_is_not_reported_as_unreachable_daemon() -> None:
    error = translate_rpc_error(_Locked(), address="unix:///run/x.sock")
    assert isinstance(error, Unavailable)
    assert "locked" in str(error)
    assert "is it running" not in str(error)


@pytest.mark.parametrize(
    ("registry", "match"),
    [
        ({"bogus": 1}, "bogus"),
        ("ca.pem", "dict"),
        ({"docker_config": 3}, "docker_config"),
        ({"timeout": -1}, "timeout"),
    ],
)
def test_registry_option_is_checked_at_creation(registry: Any, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        RemoteClient(ClientConfig(address="unix:///tmp/none.sock", options={"registry": registry}))


def test_registry_option_reaches_the_image_service(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked until used\n")
    options = {"registry": {"insecure_hosts": ["127.0.0.1:1"], "docker_config": False}}
    with RemoteClient(ClientConfig(address="unix:///tmp/none.sock", options=options)) as client:
        assert client.images.registry_options == options["registry"]
        # a registry option is not a TLS option for the gRPC channel
        assert client.transport.channel is not None


# ------------------------------------------------------------------ against containerd


@pytest.fixture
def client(containerd_daemon: Any) -> Iterator[RemoteClient]:
    remote = RemoteClient(ClientConfig(namespace=NAMESPACE, address=containerd_daemon.address))
    try:
        yield remote
    finally:
        for container in remote.containers():
            with contextlib.suppress(NotFound):
                container.task().force_delete()
            container.delete()
        remote.close()


def _count_rpcs(client: RemoteClient) -> Counter[str]:
    counts: Counter[str] = Counter()
    original = client.transport.call

    def call(method: Any, request: Any, **kwargs: Any) -> Any:
        # The gRPC method path ("/containerd.services.tasks.v1.Tasks/Get"): bytes on a
        # plain channel's callable, str behind the namespace interceptor.
        name = getattr(method, "_method", b"?")
        text = name.decode() if isinstance(name, bytes) else str(name)
        counts[text.rsplit(".", 1)[-1]] += 1
        return original(method, request, **kwargs)

    client.transport.call = call  # type: ignore[method-assign]
    return counts


@pytest.mark.containerd
@pytest.mark.runtime
def test_lifecycle_round_trips(client: RemoteClient, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
    cid = f"rt-{secrets.token_hex(3)}"
    spec = generate_spec(
        with_process_args("/bin/busybox", "true"),
        with_rootfs(str(rootfs)),
        container_id=cid,
        namespace=NAMESPACE,
    )
    counts = _count_rpcs(client)
    container = client.new_container(cid, spec)
    task = container.new_task()
    task.start()
    assert task.wait(timeout=30).code == 0
    task.delete()
    container.delete()
    # Create, task Create, Start, Wait, task Delete, the task check, container Delete:
    # no record is read again that the handle already knows.
    assert counts["Containers/Get"] == 0, counts
    assert counts["Tasks/Get"] == 1, counts
    assert sum(counts.values()) == 7, counts


@pytest.mark.containerd
@pytest.mark.runtime
def test_delete_of_a_running_task_is_still_refused(client: RemoteClient, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
    cid = f"run-{secrets.token_hex(3)}"
    spec = generate_spec(
        with_process_args("/bin/busybox", "sleep", "30"),
        with_rootfs(str(rootfs)),
        container_id=cid,
        namespace=NAMESPACE,
    )
    container = client.new_container(cid, spec)
    task = container.new_task()
    task.start()
    with pytest.raises(FailedPrecondition, match="force_delete"):
        task.delete()
    with pytest.raises(FailedPrecondition, match="still has a task"):
        container.delete()
    task.force_delete()
    container.delete()


# ------------------------------------------------------------------ images


def _push(registry: Any, layout: Path, target: dict[str, Any], repo: str, **options: Any) -> str:
    ref = f"{registry.host}/{repo}:{secrets.token_hex(3)}"
    with RegistryClient(docker_config=False, **options) as reg:
        reg.push_graph(ref, DirectoryContentStore(layout), Descriptor.from_dict(target))
    return ref


@pytest.fixture
def images_client(containerd_daemon: Any) -> Iterator[RemoteClient]:
    namespace = f"review-img-{secrets.token_hex(3)}"
    remote = RemoteClient(ClientConfig(namespace=namespace, address=containerd_daemon.address))
    try:
        yield remote
    finally:
        for image in remote.images.list():
            remote.images.remove(image.name)
        remote.close()


@pytest.mark.containerd
@pytest.mark.registry
def test_list_and_get_report_present_platforms(
    images_client: RemoteClient, registry_plain: Any, tmp_path: Path
) -> None:
    layout = tmp_path / "oci"
    built = build_image(layout, platforms=(host_platform(), OTHER_PLATFORM))
    ref = _push(registry_plain, layout, dict(built.target), "review/multi")
    images = images_client.images
    images.pull(ref, unpack=False)
    assert [p.format() for p in images.get(ref).platforms] == [host_platform()]
    listed = {image.name: image for image in images.list()}
    assert [p.format() for p in listed[ref].platforms] == [host_platform()]
    images.pull(ref, platform="all", unpack=False)
    both = sorted(p.format() for p in images.get(ref).platforms)
    assert both == sorted([host_platform(), OTHER_PLATFORM])
    listed = {image.name: image for image in images.list()}
    assert sorted(p.format() for p in listed[ref].platforms) == both


@pytest.mark.containerd
@pytest.mark.registry
def test_single_manifest_image_reports_its_platform(
    images_client: RemoteClient, registry_plain: Any, tmp_path: Path
) -> None:
    layout = tmp_path / "oci"
    built = build_image(layout)
    ref = _push(registry_plain, layout, dict(built.target), "review/single")
    images_client.images.pull(ref, unpack=False)
    assert [p.format() for p in images_client.images.get(ref).platforms] == [host_platform()]


@pytest.mark.containerd
@pytest.mark.registry
def test_pull_from_tls_registry_with_client_option(
    containerd_daemon: Any, registry_tls: Any, tmp_path: Path
) -> None:
    layout = tmp_path / "oci"
    built = build_image(layout)
    ref = _push(
        registry_tls, layout, dict(built.target), "review/tls", ca_file=registry_tls.ca_path
    )
    namespace = f"review-tls-{secrets.token_hex(3)}"
    with new_client(
        "remote",
        address=containerd_daemon.address,
        namespace=namespace,
        registry={"ca_file": registry_tls.ca_path, "docker_config": False},
    ) as client:
        image = client.images.pull(ref, unpack=False)
        assert image.target.digest == built.index_digest
        client.images.remove(ref)


def _layer(layout: Path, built: Any) -> tuple[Descriptor, bytes]:
    manifest_digest = built.manifest_digests[host_platform()]
    manifest = json.loads((layout / "blobs" / "sha256" / manifest_digest[7:]).read_bytes())
    layer = Descriptor.from_dict(manifest["layers"][-1])
    return layer, (layout / "blobs" / "sha256" / layer.digest[7:]).read_bytes()


@pytest.mark.containerd
@pytest.mark.registry
def test_pull_waits_for_another_writer_of_the_same_blob(
    images_client: RemoteClient, registry_plain: Any, tmp_path: Path
) -> None:
    layout = tmp_path / "oci"
    built = build_image(layout, extra_layers=[{"marker": secrets.token_bytes(64)}])
    ref = _push(registry_plain, layout, dict(built.target), "review/locked")
    layer, data = _layer(layout, built)
    store = images_client.images.content()
    holder = store.writer(layer)  # takes the ingest ref a pull of this layer uses
    outcome: list[BaseException | None] = []

    def pull() -> None:
        try:
            images_client.images.pull(ref, unpack=False)
        except BaseException as error:
            outcome.append(error)
        else:
            outcome.append(None)

    worker = threading.Thread(target=pull)
    worker.start()
    time.sleep(1.5)
    assert not outcome, outcome  # still waiting for the ref
    holder.write(data)
    holder.commit()
    worker.join(60)
    assert outcome == [None]
    assert store.exists(layer.digest)


@pytest.mark.containerd
@pytest.mark.registry
def test_same_image_pulled_from_two_threads(
    images_client: RemoteClient, registry_plain: Any, tmp_path: Path
) -> None:
    layout = tmp_path / "oci"
    built = build_image(layout, extra_layers=[{"noise": secrets.token_bytes(4 * 1024 * 1024)}])
    ref = _push(registry_plain, layout, dict(built.target), "review/twice")
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def pull() -> None:
        barrier.wait()
        try:
            images_client.images.pull(ref)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=pull) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert images_client.images.get(ref).target.digest == built.index_digest
