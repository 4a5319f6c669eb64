"""Making the client the global options ask for, and printing tables and JSON.

``rich`` is optional: :func:`console` returns a rich ``Console`` only when rich is
installed and stdout is a terminal, so piped output is always plain text.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from libcontainerd.client import Client

__all__ = ["console", "make_client", "print_json_lines", "print_table"]


def make_client(args: argparse.Namespace, **options: Any) -> Client:
    """The client the global ``--backend``, ``--address``, ``--namespace``, ``--root`` and
    ``--state`` choose (the last two only when given: they are for the local backend);
    ``options`` are further ``new_client`` keyword arguments."""
    from libcontainerd import new_client

    local_dirs = {key: getattr(args, key) for key in ("root", "state") if getattr(args, key)}
    return new_client(
        args.backend, address=args.address, namespace=args.namespace, **local_dirs, **options
    )


def console(stream: Any = None) -> Any | None:
    """A rich ``Console`` on ``stream`` (stdout) when rich is installed and it is a tty."""
    stream = stream or sys.stdout
    if not stream.isatty():
        return None
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(file=stream)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table: rich on a terminal, else columns padded with spaces (one row a line)."""
    rich_console = console()
    if rich_console is not None:
        from rich.table import Table

        table = Table(box=None, header_style="bold")
        for header in headers:
            table.add_column(header)
        for row in rows:
            table.add_row(*row)
        rich_console.print(table)
        return
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    for line in [headers, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def print_json_lines(items: Sequence[Mapping[str, Any]]) -> None:
    """One JSON object a line."""
    for item in items:
        print(json.dumps(item, sort_keys=True, default=str))
