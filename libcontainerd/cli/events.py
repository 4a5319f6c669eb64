"""``events``: print events as they happen, as text or JSON lines."""

from __future__ import annotations

import argparse
import json

from libcontainerd.cli.output import make_client
from libcontainerd.types.events import Event

__all__ = ["event_to_json", "register"]


def event_to_json(event: Event) -> dict[str, object]:
    """The fields of ``event`` that are set, as JSON-able values."""
    result: dict[str, object] = {
        "type": event.type.name.lower(),
        "topic": event.topic,
        "namespace": event.namespace,
        "timestamp": event.timestamp.isoformat(),
    }
    for name in ("container_id", "process_id", "image", "digest", "key", "snapshotter"):
        value = getattr(event, name)
        if value:
            result[name] = value
    if event.pid is not None:
        result["pid"] = event.pid
    if event.exit_code is not None:
        result["exit_code"] = event.exit_code
    return result


def _events(args: argparse.Namespace) -> int:
    seen = 0
    with make_client(args) as client, client.events(args.filter or ()) as stream:
        for event in stream:
            if args.format == "json":
                print(json.dumps(event_to_json(event), sort_keys=True), flush=True)
            else:
                subject = event.container_id or event.image or event.digest or event.key
                print(f"{event.timestamp.isoformat()} {event.topic} {subject}".rstrip(), flush=True)
            seen += 1
            if args.count and seen >= args.count:
                break
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``events`` command."""
    events = sub.add_parser("events", help="print events as they happen")
    events.add_argument(
        "--filter", action="append", help='containerd filter, e.g. topic~="/tasks/"'
    )
    events.add_argument("--format", choices=("text", "json"), default="text")
    events.add_argument("--count", type=int, default=0, help="stop after this many events")
    events.set_defaults(handler=_events)
