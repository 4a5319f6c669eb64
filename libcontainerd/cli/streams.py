"""Wiring a container process to this command's stdin, stdout and stderr.

Without a terminal the three streams are copied as bytes (pipeable; EOF on our stdin
closes the process's stdin). With ``-t`` the process gets a pseudo-terminal; when our
stdin is a terminal it is put in raw mode for the session and window-size changes are
passed on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import termios
import threading
import tty
from collections.abc import Iterator
from typing import IO, Any

from libcontainerd.client import Process
from libcontainerd.errors import Error
from libcontainerd.types.status import ExitStatus
from libcontainerd.types.stdio import PipedIO, Stdio, TerminalIO

__all__ = ["attach", "stdio_for"]

_CHUNK = 65536


def stdio_for(*, terminal: bool, interactive: bool) -> Stdio:
    """The stdio request for ``-t``/``-i``: a terminal sized like ours, or pipes."""
    if terminal:
        size = shutil.get_terminal_size((80, 24))
        return TerminalIO(stdin=interactive, width=size.columns, height=size.lines)
    return PipedIO(stdin=interactive)


def _copy(source: IO[bytes] | None, dest: IO[bytes]) -> threading.Thread | None:
    if source is None:
        return None

    def pump() -> None:
        with contextlib.suppress(OSError, ValueError):
            while True:
                chunk = source.read(_CHUNK)
                if not chunk:
                    return
                dest.write(chunk)
                dest.flush()

    thread = threading.Thread(target=pump, name="libcontainerd-cli-output", daemon=True)
    thread.start()
    return thread


def _feed_stdin(process: Process, sink: IO[bytes]) -> None:
    def pump() -> None:
        fd = sys.stdin.fileno()
        with contextlib.suppress(OSError, ValueError):
            while True:
                chunk = os.read(fd, _CHUNK)
                if not chunk:
                    break
                sink.write(chunk)
                sink.flush()
        # EOF on our stdin: the process reads EOF too (a terminal gets end-of-file).
        with contextlib.suppress(Error, OSError):
            process.close_stdin()

    threading.Thread(target=pump, name="libcontainerd-cli-stdin", daemon=True).start()


@contextlib.contextmanager
def _raw_terminal(process: Process) -> Iterator[None]:
    if not sys.stdin.isatty():
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)

    def resize(_signum: int, _frame: Any) -> None:
        size = shutil.get_terminal_size((80, 24))
        with contextlib.suppress(Error):
            process.resize(size.columns, size.lines)

    previous = signal.signal(signal.SIGWINCH, resize)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous)


@contextlib.contextmanager
def _forward_signals(process: Process) -> Iterator[None]:
    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(Error):
            process.kill(signum)

    wanted = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, forward) for signum in wanted}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def attach(process: Process, *, terminal: bool, interactive: bool) -> ExitStatus:
    """Start ``process`` (created with :func:`stdio_for`), pass the streams, wait for it.

    SIGINT, SIGTERM and SIGHUP sent to this command are passed on to the process.
    """
    io = process.io
    out = sys.stdout.buffer
    readers = []
    if io is not None:
        readers.append(_copy(io.stdout, out))
        readers.append(_copy(io.stderr, sys.stderr.buffer))
    with contextlib.ExitStack() as stack:
        if terminal:
            stack.enter_context(_raw_terminal(process))
        stack.enter_context(_forward_signals(process))
        process.start()
        if interactive and io is not None and io.stdin is not None:
            _feed_stdin(process, io.stdin)
        status = process.wait()
        for reader in readers:
            if reader is not None:
                reader.join(10)
    return status
