"""The state of a task or process, and how a process ended."""

from __future__ import annotations

import datetime as _dt
import enum
from typing import ClassVar

import attrs

from libcontainerd.errors import InvalidArgument
from libcontainerd.types.identifiers import safe_repr, to_utc

__all__ = ["ExitStatus", "Status"]


class Status(enum.Enum):
    """The state of a task or process, with the names containerd and runc use."""

    UNKNOWN = "unknown"
    CREATED = "created"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    STOPPED = "stopped"

    @classmethod
    def parse(cls, text: str) -> Status:
        """The status named ``text`` (as printed by ``runc state``; case-insensitive)."""
        if isinstance(text, str):
            try:
                return cls(text.strip().lower())
            except ValueError:
                pass
        names = ", ".join(member.value for member in cls)
        raise InvalidArgument(f"unknown task status {safe_repr(text)}: expected one of {names}")

    @classmethod
    def from_proto(cls, number: int) -> Status:
        """The status for containerd's numeric ``containerd.v1.types.Status`` value.

        Numbers this version does not know map to :attr:`UNKNOWN`, since a newer
        daemon may add states.
        """
        return _BY_PROTO_NUMBER.get(number, cls.UNKNOWN)

    def to_proto(self) -> int:
        """containerd's numeric value for this status."""
        return _PROTO_NUMBER[self]


# containerd's wire numbering is not the declaration order above (PAUSING came last).
_PROTO_NUMBER: dict[Status, int] = {
    Status.UNKNOWN: 0,
    Status.CREATED: 1,
    Status.RUNNING: 2,
    Status.STOPPED: 3,
    Status.PAUSED: 4,
    Status.PAUSING: 5,
}
_BY_PROTO_NUMBER: dict[int, Status] = {number: status for status, number in _PROTO_NUMBER.items()}

_MAX_EXIT_CODE = 0xFFFFFFFF


def _check_code(instance: ExitStatus, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"exit code must be an int, not {type(value).__name__}")
    if not 0 <= value <= _MAX_EXIT_CODE:
        raise InvalidArgument(
            f"exit code {value} is out of range: expected 0 to {_MAX_EXIT_CODE} "
            "(128 + n means the process was killed by signal n)"
        )


def _check_error(
    instance: ExitStatus, attribute: attrs.Attribute[str | None], value: object
) -> None:
    if value is not None and not isinstance(value, str):
        raise InvalidArgument(f"ExitStatus.error must be a str or None, not {type(value).__name__}")


def _exited_at(value: _dt.datetime) -> _dt.datetime:
    return to_utc(value, what="exited_at")


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


@attrs.frozen
class ExitStatus:
    """How a process ended: its exit ``code`` and when (``exited_at``, UTC).

    ``error`` is set when the exit could not be observed properly (for example the
    monitor lost track of the process); ``code`` is then usually
    :attr:`UNKNOWN_CODE`, as containerd reports it.
    """

    UNKNOWN_CODE: ClassVar[int] = 255

    code: int = attrs.field(validator=_check_code)
    exited_at: _dt.datetime = attrs.field(factory=_now, converter=_exited_at)
    error: str | None = attrs.field(default=None, validator=_check_error)

    @classmethod
    def unknown(cls, error: str, *, exited_at: _dt.datetime | None = None) -> ExitStatus:
        """An exit whose code could not be learned, explained by ``error``."""
        return cls(cls.UNKNOWN_CODE, exited_at or _now(), error)

    @property
    def success(self) -> bool:
        """True when the process exited with code 0 and nothing went wrong observing it."""
        return self.code == 0 and self.error is None

    @property
    def signal(self) -> int | None:
        """The signal number when the code follows the shell's 128 + n convention, else None.

        This is a reading of the convention, not proof: a process may also call
        ``exit(137)`` itself.
        """
        if 128 < self.code < 128 + 65:
            return self.code - 128
        return None
