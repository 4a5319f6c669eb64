"""``info``, ``backend``, ``platform`` and ``decode-platform-header``: what the SDK sees."""

from __future__ import annotations

import argparse
import json
from typing import Any

from libcontainerd.cli.output import make_client
from libcontainerd.system import containerd_answers, decide_backend
from libcontainerd.types import platform as platforms
from libcontainerd.types import requested_platform

__all__ = ["register"]


def _info(args: argparse.Namespace) -> int:
    from libcontainerd import __version__

    decision = decide_backend(args.backend, address=args.address)
    with make_client(args) as client:
        version = client.version()
        facts: dict[str, Any] = {
            "libcontainerd": __version__,
            "backend": client.backend,
            "rule": decision.rule.name.lower(),
            "reason": decision.reason,
            "address": decision.address,
            "namespace": client.namespace,
            "version": version.version,
            "revision": version.revision,
            "platform": platforms.default().format(),
        }
    if args.format == "json":
        print(json.dumps(facts, sort_keys=True))
    else:
        for key, value in facts.items():
            print(f"{key + ':':15} {'' if value is None else value}")
    return 0


def _backend(args: argparse.Namespace) -> int:
    decision = decide_backend(args.backend, address=args.address)
    report: dict[str, object] = {
        "backend": decision.backend,
        "rule": decision.rule.name.lower(),
        "address": decision.address,
    }
    reachable = True
    if decision.backend == "remote" and decision.address:
        # Say what was checked, not only what was chosen: exit 1 when nothing answers.
        reachable = containerd_answers(decision.address, timeout=1.0)
        report["reachable"] = reachable
    if args.json:
        print(json.dumps(report))
    elif reachable:
        print(decision.reason)
    else:
        print(f"{decision.reason} (containerd does not answer there: is it running?)")
    return 0 if reachable else 1


def _platform(args: argparse.Namespace) -> int:
    chosen = platforms.Platform.parse(args.spec) if args.spec else platforms.default()
    if args.header:
        print(requested_platform.encode_requested_platform_header(chosen))
    else:
        print(chosen.format())
    return 0


def _decode_header(args: argparse.Namespace) -> int:
    print(requested_platform.decode_requested_platform_header(args.value).format())
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the system commands."""
    info = sub.add_parser("info", help="backend and the rule that chose it, versions, platform")
    info.add_argument("--format", choices=("text", "json"), default="text")
    info.set_defaults(handler=_info)

    backend = sub.add_parser("backend", help="say which backend new_client() would pick, and why")
    backend.add_argument("--json", action="store_true", help="print it as JSON")
    # Also accepted after the command name, as before the global options existed.
    backend.add_argument("--backend", choices=("local", "remote"), default=argparse.SUPPRESS)
    backend.add_argument("--address", default=argparse.SUPPRESS)
    backend.set_defaults(handler=_backend)

    platform = sub.add_parser("platform", help="print this host's (or a normalised) platform")
    platform.add_argument("spec", nargs="?", help="a platform such as linux/arm64 or aarch64")
    platform.add_argument(
        "--header", action="store_true", help="print it as an X-Requested-Platform header value"
    )
    platform.set_defaults(handler=_platform)

    decode = sub.add_parser("decode-platform-header", help="decode an X-Requested-Platform value")
    decode.add_argument("value")
    decode.set_defaults(handler=_decode_header)
