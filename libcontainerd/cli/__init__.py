"""The ``libcontainerd`` command: run, inspect and clean up containers and images from scripts.

One module per command group (:mod:`.system`, :mod:`.images`, :mod:`.containers`,
:mod:`.events`); each has a ``register(subparsers)`` function that adds its commands.
Terminal output uses ``rich`` when it is installed (``pip install libcontainerd[cli]``)
and stdout is a terminal; otherwise plain lines, so output pipes cleanly.

Errors are one line on stderr and a non-zero exit (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from libcontainerd.cli import containers, events, images, network, system
from libcontainerd.cli.run_extensions import RunExtension, register_run_extension
from libcontainerd.errors import Error, InvalidArgument

__all__ = ["RunExtension", "build_parser", "main", "register_run_extension"]

EXIT_ERROR = 125
"""Exit status when the command itself failed (not the container): as docker and podman."""

COMMAND_GROUPS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], object]] = [
    system.register,
    images.register,
    network.register,  # before containers: importing it adds run's networking options
    containers.register,
    events.register,
]
"""Each group's ``register(subparsers)``; another group is one more entry."""


def _version() -> str:
    from libcontainerd import __version__

    return f"libcontainerd {__version__}"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="libcontainerd",
        description="Run and manage containers through libcontainerd, on either backend.",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument(
        "--backend", choices=("local", "remote"), help="force a backend (default: auto)"
    )
    parser.add_argument("--address", help="containerd address (selects the remote backend)")
    parser.add_argument(
        "--namespace",
        default=os.environ.get("CONTAINERD_NAMESPACE") or "default",
        help="namespace to act in (default: $CONTAINERD_NAMESPACE or 'default')",
    )
    parser.add_argument("--root", help="local backend: where records and images are kept")
    parser.add_argument("--state", help="local backend: where running state is kept")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMAND_GROUPS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    The status is the container's own for ``run`` (and ``exec``) without ``-d``; 2 for
    invalid input; 125 when libcontainerd reported an error.
    """
    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except Error as error:
        if args.debug:
            traceback.print_exc()
        print(f"libcontainerd: {error}", file=sys.stderr)
        return 2 if isinstance(error, InvalidArgument) else EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``| head``): not an error of ours.
        sys.stderr.close()
        return 0
    return status
