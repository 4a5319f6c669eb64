"""Pull with progress: a private registry on 127.0.0.1, a push, then a pull that reports
per-blob progress through ``progress=`` (the ``libcontainerd pull`` command draws the same
events as live bars on a terminal).

Needs the ``docker-registry`` program (Debian package docker-registry).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from _image import import_busybox

import libcontainerd
from libcontainerd.testing import start_registry
from libcontainerd.types import ProgressEvent


def main() -> int:
    """Push the test image to a loopback registry and pull it back with progress."""
    if shutil.which("docker-registry") is None:
        print("skipped: docker-registry is not installed")
        return 0
    with (
        tempfile.TemporaryDirectory(prefix="libcontainerd-registry-") as tmp,
        start_registry(Path(tmp)) as registry,
        libcontainerd.new_client(namespace="examples-pull") as client,
    ):
        ref = f"{registry.host}/examples/busybox:1"
        client.images.tag(import_busybox(client), ref)
        client.images.push(ref)
        for image in client.images.list():
            client.images.remove(image.name)

        def progress(event: ProgressEvent) -> None:
            if event.kind.value in ("done", "exists"):
                print(f"  {event.digest[:19]} {event.kind.value} {event.total} bytes")

        print(f"pulling {ref}")
        image = client.images.pull(ref, progress=progress)
        print(f"pulled {image.name} ({image.digest[:19]})")
        client.images.remove(image.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
