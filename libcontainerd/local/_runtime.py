"""The OCI runtime CLI driver: runs runc, crun or any runc-compatible binary.

``runhcs`` speaks the same command line for Windows containers; it is accepted on Windows
only (:func:`runtime_os` says which spec defaults a runtime needs).

Every command gets ``--root <state>/runtime/<runtime-name>/<namespace>`` so the system's
default runtime state is never touched; stderr is captured, a timeout is enforced, and
failures become typed errors (:class:`NotFound` when the container does not exist,
:class:`FailedPrecondition` when it is in the wrong state, else
:class:`RuntimeCommandError` carrying the command, exit code and stderr).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from libcontainerd.errors import (
    DeadlineExceeded,
    Error,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    RuntimeCommandError,
)

__all__ = [
    "RUNTIME_OPTIONS",
    "WINDOWS_RUNTIMES",
    "RuntimeDriver",
    "default_runtime",
    "find_runtime",
    "runtime_error",
    "runtime_key",
    "runtime_os",
    "validate_runtime_options",
]

WINDOWS_RUNTIMES = frozenset({"runhcs"})
"""Runtimes (by binary name) that run Windows containers, with runc's command line."""

HOST_PLATFORM = sys.platform
"""The platform the driver believes it runs on (unit tests simulate Windows through it)."""

#: The ``runtime_options`` the local backend understands (the names containerd's runc
#: shim options use, in snake case), with what each one does.
RUNTIME_OPTIONS: dict[str, str] = {
    "binary_name": "the runtime binary to run (a name searched in PATH, or a path)",
    "root": "the runtime's state root (an absolute path; the namespace is appended)",
}

_NOT_FOUND = re.compile(r"container does not exist|container not found|no such container", re.I)
_PRECONDITION = re.compile(
    r"not running|not paused|is paused|is stopped|cannot .* (stopped|paused)|"
    r"container not started|is not in created state|cannot start|already",
    re.I,
)


def runtime_os(runtime: str) -> str:
    """``"windows"`` for a Windows runtime (``runhcs``, a path to it, ``runhcs.exe``), else
    ``"linux"``: which spec defaults (:mod:`libcontainerd.oci.windows` or the Linux ones)
    containers of this runtime need."""
    base = re.split(r"[\\/]", runtime)[-1].lower().removesuffix(".exe")
    return "windows" if base in WINDOWS_RUNTIMES else "linux"


def default_runtime() -> str:
    """The runtime the local backend uses when none is named: runhcs on Windows, else runc."""
    return "runhcs" if HOST_PLATFORM == "win32" else "runc"


def runtime_key(runtime: str) -> str:
    """A directory-safe name for ``runtime`` (a name such as ``runc``, or a path)."""
    base = os.path.basename(runtime) or "runtime"
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", base)
    if "/" in runtime or "\\" in runtime:  # a path (POSIX or Windows): keep it apart
        safe += "-" + hashlib.sha256(runtime.encode()).hexdigest()[:8]
    return safe


def runtime_error(
    what: str,
    command: Sequence[str],
    exit_code: int | None,
    stderr: str,
    *,
    state_root: Path | None = None,
) -> Error:
    """The typed error for a failed runtime command (see the module docstring).

    ``state_root`` lets a runtime that reports a missing container as a missing file in
    its state directory (crun) be recognised too.
    """
    text = stderr.strip()
    message = f"{what} failed: {text or f'exit code {exit_code}'} (command: {' '.join(command)})"
    missing_state = (
        state_root is not None
        and f"{state_root}/" in text
        and "no such file or directory" in text.lower()
    )
    if _NOT_FOUND.search(text) or missing_state:
        return NotFound(message)
    if _PRECONDITION.search(text):
        return FailedPrecondition(message)
    return RuntimeCommandError(message, command=command, exit_code=exit_code, stderr=stderr)


def validate_runtime_options(options: object) -> dict[str, str]:
    """``options`` checked against :data:`RUNTIME_OPTIONS`, as a plain dict.

    Raises :class:`InvalidArgument` naming the allowed options for an unknown one, and
    for a value of the wrong shape.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise InvalidArgument(
            f"runtime_options must be a mapping such as {{'binary_name': 'crun'}}, "
            f"not {type(options).__name__}"
        )
    allowed = ", ".join(sorted(RUNTIME_OPTIONS))
    result: dict[str, str] = {}
    for key, value in options.items():
        if key not in RUNTIME_OPTIONS:
            raise InvalidArgument(
                f"unknown runtime option {key!r} for the local backend; allowed: {allowed}"
            )
        if not isinstance(value, str) or not value or "\0" in value:
            raise InvalidArgument(
                f"runtime option {key!r} must be a non-empty string ({RUNTIME_OPTIONS[key]}), "
                f"got {value!r}"
            )
        if key == "root" and not os.path.isabs(value):
            raise InvalidArgument(
                f"runtime option 'root' must be an absolute path, got {value!r}; "
                "pass e.g. str(Path(root).absolute())"
            )
        result[key] = value
    return result


def _stderr_text(raw: str) -> str:
    """Reduce runc's ``time=... level=error msg="..."`` lines to their messages."""
    out = []
    for line in raw.splitlines():
        match = re.search(r'msg="((?:[^"\\]|\\.)*)"', line)
        out.append(match.group(1).replace('\\"', '"') if match else line)
    return "\n".join(out)


def find_runtime(name: str) -> str | None:
    """The absolute path of runtime ``name`` (a name searched in PATH and sbin, or a path)."""
    if "/" in name:
        path = os.path.abspath(name)
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    search = os.pathsep.join(
        [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin"]
    )
    found = shutil.which(name, path=search)
    return os.path.abspath(found) if found else None


class RuntimeDriver:
    """Runs one OCI runtime binary with a private state root.

    ``name`` is the runtime the container was created with; ``binary_name`` (the runtime
    option of that name) picks another binary speaking the same CLI.
    """

    def __init__(
        self, runtime: str, state_root: Path, *, timeout: float, binary_name: str | None = None
    ) -> None:
        if not isinstance(runtime, str) or not runtime:
            raise InvalidArgument(f"runtime must be a non-empty name or path, got {runtime!r}")
        wanted = binary_name or runtime
        self.os = runtime_os(wanted)
        """The OS of the containers this runtime runs (``"linux"`` or ``"windows"``)."""
        if self.os == "windows" and HOST_PLATFORM != "win32":
            raise FailedPrecondition(
                f"OCI runtime {wanted!r} runs Windows containers and only on Windows, and "
                f"this is {HOST_PLATFORM}; use runc or crun here"
            )
        binary = find_runtime(wanted)
        if binary is None:
            how = (
                "fix the runtime option binary_name"
                if binary_name
                else "pass runtime='/path/to/runtime'"
            )
            raise NotFound(
                f"OCI runtime {wanted!r} is not installed or not executable; install it "
                f"(e.g. apt-get install runc) or {how}"
            )
        self.name = runtime
        self.binary = str(binary)
        self.state_root = state_root
        self.timeout = timeout

    @property
    def base(self) -> list[str]:
        """The command prefix: binary and ``--root``."""
        return [self.binary, "--root", str(self.state_root)]

    def run(
        self,
        what: str,
        args: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
    ) -> str:
        """Run ``runtime --root ... args``; return stdout or raise a typed error."""
        command = [*self.base, *args]
        self.state_root.mkdir(parents=True, exist_ok=True)
        limit = timeout or self.timeout
        try:
            proc = subprocess.run(
                command,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                timeout=limit,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise DeadlineExceeded(
                f"{what} did not finish within {limit}s: {' '.join(command)}"
            ) from exc
        except OSError as exc:
            raise RuntimeCommandError(
                f"could not run {self.binary}: {exc}", command=command
            ) from exc
        if proc.returncode != 0:
            stderr = proc.stderr.decode(errors="replace")
            raise runtime_error(
                what, command, proc.returncode, _stderr_text(stderr), state_root=self.state_root
            )
        return proc.stdout.decode(errors="replace")

    def version(self) -> tuple[str, str, str]:
        """(version, revision, full output) of ``runtime --version``."""
        out = self.run("runtime --version", ["--version"])
        version = revision = ""
        for line in out.splitlines():
            if " version " in line and not version:
                version = line.split(" version ", 1)[1].strip()
            elif line.startswith("commit:"):
                revision = line.split(":", 1)[1].strip()
        return version, revision, out.strip()

    def state(self, container_id: str) -> dict[str, Any]:
        """``runtime state``: the container's state object."""
        value = json.loads(self.run("runtime state", ["state", container_id]))
        if not isinstance(value, dict):
            raise RuntimeCommandError(f"{self.name} state printed {value!r}, not an object")
        return value

    def kill(self, container_id: str, signal: int, *, all: bool = False) -> None:
        """Send ``signal`` to the init (or every process with ``all``)."""
        args = ["kill", *(["--all"] if all else []), container_id, str(signal)]
        self.run("runtime kill", args)

    def pause(self, container_id: str) -> None:
        """Freeze the container."""
        self.run("runtime pause", ["pause", container_id])

    def resume(self, container_id: str) -> None:
        """Thaw the container."""
        self.run("runtime resume", ["resume", container_id])

    def ps(self, container_id: str) -> list[int]:
        """The host pids of the container's processes."""
        value = json.loads(self.run("runtime ps", ["ps", "--format", "json", container_id]))
        return [int(pid) for pid in (value or [])]

    def update(self, container_id: str, resources: dict[str, Any]) -> None:
        """Apply OCI ``linux.resources`` to the running container."""
        data = json.dumps(resources).encode()
        self.run("runtime update", ["update", "--resources", "-", container_id], input=data)

    def checkpoint(
        self, container_id: str, image_path: Path, work_path: Path, *, leave_running: bool
    ) -> None:
        """Checkpoint with CRIU into ``image_path``."""
        args = ["checkpoint", "--image-path", str(image_path), "--work-path", str(work_path)]
        if leave_running:
            args.append("--leave-running")
        self.run("runtime checkpoint", [*args, container_id], timeout=max(self.timeout, 120.0))

    def delete(self, container_id: str, *, force: bool = False) -> None:
        """Remove the container from the runtime (``NotFound`` is ignored)."""
        with contextlib.suppress(NotFound):
            self.run("runtime delete", ["delete", *(["--force"] if force else []), container_id])
