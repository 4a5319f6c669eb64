"""The ``libcontainerd`` command: small, scriptable views of what the SDK sees on this host."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import __version__
from .errors import Error
from .system import containerd_answers, decide_backend
from .types import platform as platforms
from .types import requested_platform

__all__ = ["main"]


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
    chosen = requested_platform.decode_requested_platform_header(args.value)
    print(chosen.format())
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="libcontainerd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"libcontainerd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    backend = sub.add_parser("backend", help="say which backend new_client() would pick, and why")
    backend.add_argument("--backend", choices=("local", "remote"))
    backend.add_argument("--address")
    backend.add_argument("--json", action="store_true")
    backend.set_defaults(run=_backend)

    platform = sub.add_parser("platform", help="print this host's (or a normalised) platform")
    platform.add_argument("spec", nargs="?", help="a platform such as linux/arm64 or aarch64")
    platform.add_argument(
        "--header", action="store_true", help="print it as an X-Requested-Platform header value"
    )
    platform.set_defaults(run=_platform)

    decode = sub.add_parser("decode-platform-header", help="decode an X-Requested-Platform value")
    decode.add_argument("value")
    decode.set_defaults(run=_decode_header)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for invalid input)."""
    args = _parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except Error as error:
        print(f"libcontainerd: {error}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
