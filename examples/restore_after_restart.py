"""Restore after the caller restarts: a container outlives the program that started it.

The first process starts a detached container (output kept by ``LogIO``) and exits.
A second one - as after a restart - finds it with ``load_container``, waits for its
task and reads its logs.
"""

from __future__ import annotations

import subprocess
import sys

from _image import import_busybox

import libcontainerd

NAME = "restored"


def start() -> int:
    """The program before its restart: start the container, then exit at once."""
    with libcontainerd.new_client(namespace="examples-restore") as client:
        image = import_busybox(client)
        client.run(
            image,
            ["sh", "-c", "sleep 2; echo finished while nobody watched"],
            name=NAME,
            detach=True,
        )
    print(f"started {NAME}, exiting")
    return 0


def main() -> int:
    """Run ``start`` in a separate process, then pick the container up again here."""
    subprocess.run([sys.executable, __file__, "--start"], check=True)
    with libcontainerd.new_client(namespace="examples-restore") as client:
        with client.load_container(NAME) as container:
            task = container.task()
            print(f"found {container.id}, its task is {task.status().value}")
            print(f"exit code: {task.wait(timeout=60).code}")
            print(f"logs: {b''.join(container.logs()).decode().strip()}")
        for image in client.images.list():
            client.images.remove(image.name)
    print("cleaned up")
    return 0


if __name__ == "__main__":
    sys.exit(start() if sys.argv[1:] == ["--start"] else main())
