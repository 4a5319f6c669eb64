"""Information about a process running inside a task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from libcontainerd.errors import InvalidArgument
from libcontainerd.types.identifiers import frozen_mapping

__all__ = ["ProcessInfo"]


def _check_pid(instance: ProcessInfo, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"pid must be an int, not {type(value).__name__}")
    if value <= 0:
        raise InvalidArgument(f"pid must be positive, got {value}")


def _info(value: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return None if value is None else frozen_mapping(value)


@attrs.frozen
class ProcessInfo:
    """One process of a task, as listed by ``Task.pids()``.

    ``info`` carries what the runtime knows beyond the pid (for runc tasks under
    containerd, the exec id of the process when it is one), as a read-only
    mapping; ``None`` when the backend has nothing to add.
    """

    pid: int = attrs.field(validator=_check_pid)
    info: Mapping[str, Any] | None = attrs.field(default=None, converter=_info, hash=False)

    @property
    def exec_id(self) -> str:
        """The exec id of the process when the backend reported one, else ``""``."""
        if self.info is None:
            return ""
        value = self.info.get("exec_id", "")
        return value if isinstance(value, str) else ""
