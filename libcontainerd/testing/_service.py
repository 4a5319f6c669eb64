"""What the private test services (containerd, registry) share: one child process, its log,
its start in a session of its own, a bounded readiness poll, and SIGTERM-then-SIGKILL stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from libcontainerd.errors import FailedPrecondition

_LOG_TAIL_BYTES = 4000
_S = TypeVar("_S", bound="ServiceProcess")


class ServiceProcess:
    """One service child process writing its stdout and stderr to ``log_path``.

    Subclasses set ``_name`` (for messages) and ``_log_name`` and implement ``stop``.
    """

    _name = "the service"
    _log_name = "service.log"

    def __init__(self, *, binary: str, base_dir: Path) -> None:
        self._binary = binary
        self._base_dir = base_dir
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_dir(self) -> Path:
        """The directory holding the service's config, log and data."""
        return self._base_dir

    @property
    def log_path(self) -> Path:
        """Where the service's stdout and stderr go (kept after stop)."""
        return self._base_dir / self._log_name

    @property
    def pid(self) -> int:
        """Process id of the running service."""
        if self._process is None:
            raise FailedPrecondition(f"{self._name} is not running: it was stopped")
        return self._process.pid

    @property
    def running(self) -> bool:
        """Whether the service process is alive."""
        return self._process is not None and self._process.poll() is None

    def logs(self) -> str:
        """Everything the service wrote so far (across restarts)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def _log_tail(self) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - _LOG_TAIL_BYTES))
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def _spawn(self, argv: Sequence[str]) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C meant for pytest must not reach it first.
                start_new_session=True,
                cwd=self._base_dir,
            )

    def _poll(self, ready: Callable[[float], bool], timeout: float) -> bool | None:
        """Call ``ready(remaining_seconds)`` with backoff until it is true (True), the
        process exits (False), or ``timeout`` passes (None). Bounded in count and time."""
        assert self._process is not None
        deadline = time.monotonic() + timeout
        delay = 0.02
        for _ in range(int(timeout / delay) + 20):
            if self._process.poll() is not None:
                return False
            if ready(max(0.1, min(1.0, deadline - time.monotonic()))):
                return True
            if time.monotonic() >= deadline:
                return None
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        return None

    def _terminate(self, timeout: float) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; forget the process."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait(timeout=timeout)
        self._process = None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the service. Idempotent."""
        self._terminate(timeout)

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
