"""Exec and streams: a long-running container, a process exec'd into it, live stdin/stdout/stderr.

Also shows the shortcuts: ``with container`` and ``with task`` clean up, ``task.stop()``
sends TERM then KILL.
"""

from __future__ import annotations

import sys
import uuid

from _image import import_busybox

import libcontainerd
from libcontainerd import oci
from libcontainerd.types import PipedIO


def main() -> int:
    """Start ``sleep``, exec ``sh`` into it, talk to it through pipes."""
    with libcontainerd.new_client(namespace="examples") as client:
        image = import_busybox(client)
        spec = oci.generate_spec(
            oci.with_process_args("sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait")
        )
        name = f"streams-{uuid.uuid4().hex[:8]}"
        with client.new_container(name, spec, image=image) as box, box.new_task() as task:
            task.start()
            process = task.exec("shell", {**spec["process"], "args": ["sh"]}, stdio=PipedIO())
            process.start()
            assert process.io is not None and process.io.stdin is not None
            process.io.stdin.write(b"echo to stdout; echo to stderr >&2; exit 7\n")
            process.io.stdin.flush()
            process.close_stdin()
            assert process.io.stdout is not None and process.io.stderr is not None
            print(f"stdout: {process.io.stdout.read().decode().strip()}")
            print(f"stderr: {process.io.stderr.read().decode().strip()}")
            print(f"exec exit code: {process.wait(timeout=30).code}")
            process.delete()
            print(f"stopped with: {task.stop(timeout=5).code}")
        client.images.remove(image)
    print("cleaned up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
