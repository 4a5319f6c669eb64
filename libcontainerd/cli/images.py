"""``pull``, ``push`` and ``images ls | rm | import | export | tag``."""

from __future__ import annotations

import argparse
import sys

from libcontainerd.cli.output import make_client, print_json_lines, print_table
from libcontainerd.cli.progress import TransferDisplay, human_bytes

__all__ = ["register"]


def _pull(args: argparse.Namespace) -> int:
    with make_client(args) as client, TransferDisplay("pull") as display:
        image = client.images.pull(args.ref, platform=args.platform, progress=display)
    print(f"pulled {image.name} {image.digest} ({display.summary()})")
    return 0


def _push(args: argparse.Namespace) -> int:
    with make_client(args) as client, TransferDisplay("push") as display:
        pushed = client.images.push(
            args.ref, source=args.source, platform=args.platform, progress=display
        )
    print(f"pushed {args.ref} {pushed.digest} ({display.summary()})")
    return 0


def _ls(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        images = client.images.list(args.filter or ())
    if args.format == "json":
        print_json_lines(
            [
                {
                    "name": image.name,
                    "digest": image.digest,
                    "size": image.target.size,
                    "platforms": [p.format() for p in image.platforms],
                    "labels": dict(image.labels),
                }
                for image in images
            ]
        )
        return 0
    print_table(
        ["NAME", "DIGEST", "PLATFORMS", "SIZE"],
        [
            [
                image.name,
                image.digest.split(":", 1)[-1][:12],
                ",".join(p.format() for p in image.platforms),
                human_bytes(image.target.size),
            ]
            for image in images
        ],
    )
    return 0


def _rm(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        for ref in args.refs:
            client.images.remove(ref)
            print(ref)
    return 0


def _import(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        source = sys.stdin.buffer if args.file == "-" else args.file
        for image in client.images.import_archive(source, platform=args.platform):
            print(f"imported {image.name} {image.digest}")
    return 0


def _export(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        dest = sys.stdout.buffer if args.output == "-" else args.output
        client.images.export_archive(args.refs, dest, platform=args.platform)
    return 0


def _tag(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        image = client.images.tag(args.source, args.target)
    print(image.name)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the image commands."""
    pull = sub.add_parser("pull", help="pull an image, with per-layer progress")
    pull.add_argument("ref")
    pull.add_argument("--platform", help="os/arch[/variant] (default: this host)")
    pull.set_defaults(handler=_pull)

    push = sub.add_parser("push", help="push an image to its registry")
    push.add_argument("ref")
    push.add_argument("--source", help="the local image to push (default: REF)")
    push.add_argument("--platform")
    push.set_defaults(handler=_push)

    images = sub.add_parser("images", help="list, remove, import, export and tag images")
    verbs = images.add_subparsers(dest="verb", required=True, metavar="VERB")
    ls = verbs.add_parser("ls", help="list images")
    ls.add_argument("--filter", action="append", help="containerd filter (repeatable)")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    ls.set_defaults(handler=_ls)
    rm = verbs.add_parser("rm", help="remove images")
    rm.add_argument("refs", nargs="+", metavar="REF")
    rm.set_defaults(handler=_rm)
    imp = verbs.add_parser("import", help="import an OCI or docker archive ('-': stdin)")
    imp.add_argument("file")
    imp.add_argument("--platform")
    imp.set_defaults(handler=_import)
    exp = verbs.add_parser("export", help="export images as an OCI archive ('-': stdout)")
    exp.add_argument("output")
    exp.add_argument("refs", nargs="+", metavar="REF")
    exp.add_argument("--platform")
    exp.set_defaults(handler=_export)
    tag = verbs.add_parser("tag", help="give an image another name")
    tag.add_argument("source")
    tag.add_argument("target")
    tag.set_defaults(handler=_tag)
