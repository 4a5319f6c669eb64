"""Field helpers shared by the spec options: sections of a spec, and argument checks.

Every check raises :class:`~libcontainerd.errors.InvalidArgument` naming ``what`` was wrong.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from libcontainerd.errors import InvalidArgument
from libcontainerd.oci.spec import Spec

__all__ = [
    "check_abs_path",
    "check_env_entries",
    "check_int",
    "check_str",
    "env_key",
    "linux_section",
    "merge_env",
    "process_section",
    "resources_section",
    "str_list",
]


def process_section(spec: Spec) -> dict[str, Any]:
    """The spec's ``process`` object, created when missing."""
    process: dict[str, Any] = spec.setdefault("process", {})
    return process


def linux_section(spec: Spec) -> dict[str, Any]:
    """The spec's ``linux`` object, created when missing."""
    linux: dict[str, Any] = spec.setdefault("linux", {})
    return linux


def resources_section(spec: Spec) -> dict[str, Any]:
    """The spec's ``linux.resources`` object, created when missing."""
    resources: dict[str, Any] = linux_section(spec).setdefault("resources", {})
    return resources


def check_str(value: object, what: str, *, allow_empty: bool = False) -> str:
    """``value`` if it is a str without NUL (and not empty, unless allowed)."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a str, got {type(value).__name__}")
    if not allow_empty and not value:
        raise InvalidArgument(f"{what} must not be empty")
    if "\0" in value:
        raise InvalidArgument(f"{what} {value!r} must not contain a NUL character")
    return value


def check_int(value: object, what: str, low: int, high: int) -> int:
    """``value`` if it is an int (not a bool) in ``low..high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidArgument(f"{what} {value} is out of range; it must be in {low}..{high}")
    return value


def check_abs_path(value: object, what: str) -> str:
    """``value`` (a str or path) as an absolute path string."""
    text = check_str(os.fspath(value) if isinstance(value, os.PathLike) else value, what)
    if not text.startswith("/"):
        raise InvalidArgument(f"{what} {text!r} must be an absolute path (start with '/')")
    return text


def str_list(values: object, what: str) -> list[str]:
    """``values`` as a list of str; a single string is refused, not split into letters."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InvalidArgument(
            f"{what} must be a sequence of str (not a single string), got {values!r}"
        )
    return [check_str(v, f"each of {what}", allow_empty=True) for v in values]


def env_key(entry: str) -> str:
    """The variable name of a ``NAME=value`` entry."""
    return entry.split("=", 1)[0]


def check_env_entries(entries: Iterable[str], what: str) -> list[str]:
    """``entries`` checked to be ``NAME=value`` (or bare ``NAME``) strings."""
    checked = []
    for entry in str_list(entries, what):
        if not entry or entry.startswith("="):
            raise InvalidArgument(f"environment entry {entry!r} in {what} has no variable name")
        checked.append(entry)
    return checked


def merge_env(current: Sequence[str], overrides: Sequence[str]) -> list[str]:
    """``current`` with each ``KEY=VALUE`` of ``overrides`` replacing or appended, and each
    bare ``KEY`` removing that variable (containerd's rule)."""
    result = list(current)
    for entry in overrides:
        key = env_key(entry)
        positions = [i for i, e in enumerate(result) if env_key(e) == key]
        if "=" not in entry:
            result = [e for e in result if env_key(e) != key]
        elif positions:
            result[positions[0]] = entry
            for i in reversed(positions[1:]):
                del result[i]
        else:
            result.append(entry)
    return result
