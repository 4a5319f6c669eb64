"""The client's three streams of a process, as both backends hand them out (``process.io``)."""

from __future__ import annotations

from typing import IO


class ProcessStreams:
    """Holds a process's stdin, stdout and stderr ends; a backend adds how they close."""

    def __init__(
        self,
        stdin: IO[bytes] | None,
        stdout: IO[bytes] | None,
        stderr: IO[bytes] | None,
    ) -> None:
        self._stdin = stdin
        self._stdout = stdout
        self._stderr = stderr

    @property
    def stdin(self) -> IO[bytes] | None:
        """Writes to the process's stdin; closing it delivers EOF."""
        return self._stdin

    @property
    def stdout(self) -> IO[bytes] | None:
        """The process's standard output (the terminal output with a terminal)."""
        return self._stdout

    @property
    def stderr(self) -> IO[bytes] | None:
        """The process's standard error (``None`` with a terminal)."""
        return self._stderr
