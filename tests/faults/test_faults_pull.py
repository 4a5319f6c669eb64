"""containerd SIGKILLed while a pull is in flight: the pull fails with a typed error at
once, the pull lease it could not delete is deleted when containerd is back, and the same
pull then succeeds and leaves nothing behind once the image is removed."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_support import Tally, remote_leaks, wait_until

import libcontainerd
from libcontainerd.content import DirectoryContentStore
from libcontainerd.distribution import RegistryClient
from libcontainerd.errors import Error
from libcontainerd.testing.image_builder import build_image
from libcontainerd.types.descriptor import Descriptor

pytestmark = [pytest.mark.containerd, pytest.mark.registry]

NAMESPACE = "faults-pull"


@pytest.fixture
def own_daemon(tmp_path: Path, fault_rootfs: Path) -> Iterator[Any]:
    """A containerd of this test alone: it gets killed."""
    from libcontainerd.testing.containerd_daemon import start_containerd

    daemon = start_containerd(tmp_path / "containerd")
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def image_ref(registry_plain: Any, tmp_path: Path) -> str:
    layout = tmp_path / "oci"
    built = build_image(
        layout, extra_files={"payload": secrets.token_bytes(256 * 1024)}, media_types="docker"
    )
    ref = f"{registry_plain.host}/faults/pull:{secrets.token_hex(3)}"
    with RegistryClient(docker_config=False) as registry:
        registry.push_graph(
            ref, DirectoryContentStore(layout), Descriptor.from_dict(dict(built.target))
        )
    return ref


def test_sigkill_during_pull(own_daemon: Any, image_ref: str, tally: Tally) -> None:
    client = libcontainerd.new_client(
        "remote",
        address=own_daemon.address,
        namespace=NAMESPACE,
        registry={"insecure_hosts": [image_ref.split("/", 1)[0]], "docker_config": False},
    )
    killed: list[int] = []

    def progress(_event: object) -> None:
        if not killed:
            killed.append(own_daemon.kill())

    try:
        started = time.monotonic()
        with pytest.raises(Error):
            client.images.pull(image_ref, progress=progress)
        assert killed, "the pull finished before containerd could be killed"
        assert time.monotonic() - started < 10
        tally.faults += 1
        own_daemon.relaunch()
        image = client.images.pull(image_ref)
        assert image.name == image_ref
        assert client.leases.list() == []  # the interrupted pull's lease is gone too
        client.images.remove(image_ref, sync=True)
        assert wait_until(lambda: remote_leaks(client)["snapshots"] == 0, 10)
        leaks = remote_leaks(client)
    finally:
        client.close()
    for key, value in leaks.items():
        tally.leaks[key] += value
    assert leaks == {"snapshots": 0, "leases": 0, "fifos": 0}
    tally.operations += 4
    tally.tests += 1
