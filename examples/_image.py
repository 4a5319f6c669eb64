"""Shared by the examples: the busybox test image, built from this machine's busybox-static."""

from __future__ import annotations

import tempfile
from pathlib import Path

from libcontainerd import Client
from libcontainerd.testing import build_image, write_layout_archive

NAME = "localhost/examples/busybox:latest"


def busybox_archive(directory: Path) -> Path:
    """Write the image as an OCI archive into ``directory``; returns its path."""
    return write_layout_archive(build_image(directory / "layout").layout, directory / "bb.tar")


def import_busybox(client: Client) -> str:
    """Import the image into ``client`` under :data:`NAME` (no download); returns the name."""
    with tempfile.TemporaryDirectory(prefix="libcontainerd-example-") as tmp:
        (image,) = client.images.import_archive(busybox_archive(Path(tmp)))
    if image.name != NAME:
        client.images.tag(image.name, NAME)
        client.images.remove(image.name)
    return NAME
