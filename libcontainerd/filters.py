"""containerd's filter syntax, matched on the client: ``field==value,other~=regexp``.

A list of filter strings matches when any one of them does; a filter string matches
when all its comma-separated clauses do. A clause is ``field==value``,
``field!=value``, ``field~=regexp`` or a bare ``field`` (present). Values may be
double-quoted. Both backends use this one matcher: local for everything it lists and
streams, remote for the events it reconstructs after containerd comes back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from libcontainerd.errors import InvalidArgument

__all__ = ["Clause", "matches_filters", "parse_filter"]

Clause = tuple[str, str, str]
"""One clause: (field, operator, value); the operator is ``""`` for a presence test."""


def parse_filter(text: str) -> list[Clause]:
    """The clauses of one filter string; ``InvalidArgument`` for an empty field name."""
    clauses = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        for op in ("!=", "~=", "=="):
            if op in part:
                key, value = part.split(op, 1)
                break
        else:
            key, op, value = part, "", ""
        key = key.strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key.startswith("labels."):
            key = "labels." + key[len("labels.") :].strip('"')
        if not key:
            raise InvalidArgument(f"filter {text!r} has an empty field name; use field==value")
        clauses.append((key, op, value))
    return clauses


def matches_filters(filters: Sequence[str], lookup: Callable[[str], str | None]) -> bool:
    """containerd filter semantics: any filter string matches when all its clauses do.

    ``lookup`` returns a field's value or ``None`` when absent.
    """
    if isinstance(filters, str):
        raise InvalidArgument("filters must be a sequence of strings, not a single string")
    if not filters:
        return True
    for text in filters:
        ok = True
        for key, op, value in parse_filter(text):
            actual = lookup(key)
            if op == "":
                ok = actual is not None
            elif op == "==":
                ok = actual == value
            elif op == "!=":
                ok = actual != value
            else:
                try:
                    ok = actual is not None and re.search(value, actual) is not None
                except re.error as exc:
                    raise InvalidArgument(
                        f"bad regular expression in filter {text!r}: {exc}"
                    ) from exc
            if not ok:
                break
        if ok:
            return True
    return False
