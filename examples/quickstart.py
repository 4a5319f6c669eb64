"""Quickstart: run a container from a locally built busybox image, exec into it, clean up.

``make demo`` runs this on the embedded default backend (local: no daemon, runc
driven directly). With ``CONTAINERD_ADDRESS`` set it runs the same code against
containerd instead. Needs root (containers, cgroups, mounts).
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from pathlib import Path

import libcontainerd
from libcontainerd import oci, system
from libcontainerd.testing import build_image, write_layout_archive
from libcontainerd.types import PipedIO, default_platform, encode_requested_platform_header


def main() -> int:
    """Build the image, run ``echo`` in a container, exec ``uname``, print both outputs."""
    decision = system.decide_backend()
    host = default_platform()
    print(f"libcontainerd {libcontainerd.__version__}")
    print(f"backend decision: {decision.reason}")
    print(
        f"host platform:    {host.format()}  (X-Requested-Platform: "
        f"{encode_requested_platform_header(host)})"
    )

    suffix = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="libcontainerd-demo-") as tmp:
        archive = write_layout_archive(
            build_image(Path(tmp) / "layout").layout, Path(tmp) / "busybox.tar"
        )
        with libcontainerd.new_client(namespace="quickstart") as client:
            (image,) = client.images.import_archive(archive)
            spec = oci.generate_spec(
                oci.with_process_args("sh", "-c", "echo hello from a container; sleep 30"),
                oci.with_hostname("quickstart"),
            )
            container = client.new_container(f"demo-{suffix}", spec, image=image.name)
            try:
                task = container.new_task(stdio=PipedIO(stdin=False, stderr=False))
                task.start()
                assert task.io is not None and task.io.stdout is not None
                print(f"container says:   {task.io.stdout.readline().decode().strip()}")

                probe = task.exec(
                    "uname",
                    {**spec["process"], "args": ["uname", "-a"]},
                    stdio=PipedIO(stdin=False, stderr=False),
                )
                probe.start()
                assert probe.io is not None and probe.io.stdout is not None
                print(f"exec says:        {probe.io.stdout.read().decode().strip()}")
                print(f"exec exit code:   {probe.wait(timeout=30).code}")
                probe.delete()

                task.kill(9)
                print(f"task exit code:   {task.wait(timeout=30).code}")
                task.delete()
            finally:
                container.delete()
            client.images.remove(image.name)
    print("cleaned up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
