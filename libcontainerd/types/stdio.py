"""How a process's standard streams are wired: discarded, sent to files, piped live, or a terminal.

These are requests a caller passes to ``new_task``/``exec``/``attach_task``; both
backends honour all five. Output sent to files outlives the caller, so it is the
form to use when a process must survive a restart of the program that started it;
:class:`LogIO` is the same with a file the backend picks and cleans up, read back
with ``container.logs()``.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from libcontainerd.errors import InvalidArgument

__all__ = ["FileIO", "LogIO", "NullIO", "PipedIO", "Stdio", "TerminalIO"]


def _absolute(value: Path | str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if not path.is_absolute():
        raise InvalidArgument(
            f"stdio file path {str(value)!r} is relative; pass an absolute path so the "
            "backend writes where you expect"
        )
    return path


@attrs.frozen
class NullIO:
    """Discard stdout and stderr; stdin is empty."""


@attrs.frozen
class FileIO:
    """Append stdout and stderr to files (the same file for both is allowed).

    ``stderr=None`` sends stderr to the stdout file. Files are created when missing.
    The files are complete once the process is deleted: a backend may still be copying
    the last output into them just after ``wait()`` returns.
    """

    stdout: Path | None = attrs.field(converter=_absolute)
    stderr: Path | None = attrs.field(default=None, converter=_absolute)

    def __attrs_post_init__(self) -> None:
        if self.stdout is None:
            raise InvalidArgument("FileIO needs a stdout path; use NullIO to discard output")


@attrs.frozen
class LogIO:
    """Keep stdout and stderr in the container's log file, which the backend manages.

    The file lives with the container's other state, is appended to by every process
    started this way, survives the caller and is removed with the container. Read it back
    with ``container.logs()`` (``follow=True`` to keep reading while the task runs). It is
    the stdio of detached containers (``client.run(..., detach=True)``).
    """


@attrs.frozen
class PipedIO:
    """Live binary streams: write to ``process.io.stdin``, read ``stdout`` and ``stderr``.

    ``stdin=False`` gives the process an empty stdin. The reader must drain the
    streams: a full pipe blocks the process, as it would with ``subprocess``.
    """

    stdin: bool = True
    stdout: bool = True
    stderr: bool = True


@attrs.frozen
class TerminalIO:
    """Run with a pseudo-terminal: ``io.stdout`` carries the terminal output, ``io.stdin`` input.

    The process spec must ask for a terminal too (``oci.with_tty()``); the size can be
    changed with ``resize``.
    """

    stdin: bool = True
    width: int = attrs.field(default=80)
    height: int = attrs.field(default=24)

    @width.validator
    @height.validator
    def _check_size(self, attribute: attrs.Attribute[int], value: int) -> None:
        if not 0 < value <= 65535:
            raise InvalidArgument(
                f"terminal {attribute.name} {value} is out of range; use 1 to 65535"
            )


Stdio = NullIO | FileIO | LogIO | PipedIO | TerminalIO
"""Any of the five stdio requests."""
