"""An events watcher in the callback form, as a daemon uses it: ``new_client(on_event=...)``.

The callback runs on the client's own thread for every event of the namespace; here it
collects task events while the main thread runs two commands.
"""

from __future__ import annotations

import sys
import threading

from _image import import_busybox

import libcontainerd
from libcontainerd.types import Event, EventType


def main() -> int:
    """Print the task events of two short runs, in order."""
    seen: list[Event] = []
    exits = threading.Semaphore(0)

    def on_event(event: Event) -> None:
        if event.type in (EventType.TASK_START, EventType.TASK_EXIT):
            seen.append(event)
        if event.type is EventType.TASK_EXIT:
            exits.release()

    with libcontainerd.new_client(namespace="examples-events", on_event=on_event) as client:
        image = import_busybox(client)
        for code in (0, 3):
            client.run(image, ["sh", "-c", f"exit {code}"], name=f"events-{code}")
        for _ in range(2):
            if not exits.acquire(timeout=30):
                print("an exit event did not arrive", file=sys.stderr)
                return 1
        for event in seen:
            detail = f" exit_code={event.exit_code}" if event.type is EventType.TASK_EXIT else ""
            print(f"event: {event.topic} {event.container_id}{detail}")
        client.images.remove(image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
