"""The ``libcontainerd`` command against real containers, on both backends.

Each test runs the command (``python -m libcontainerd``) as a script would, in a fresh
namespace that it empties afterwards; remote tests use the plugin's private containerd.
"""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from libcontainerd.testing.containerd_daemon import ContainerdDaemon
from libcontainerd.testing.registry import Registry

BACKENDS = ["local", "remote"]
IMAGE = "localhost/cli-test/busybox:1"


def _cli(
    *args: str, stdin: bytes | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "libcontainerd", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from libcontainerd.testing import build_image, write_layout_archive

    base = tmp_path_factory.mktemp("cli-image")
    return write_layout_archive(build_image(base / "layout").layout, base / "busybox.tar")


@pytest.fixture(params=BACKENDS)
def cli(request: pytest.FixtureRequest, archive: Path, tmp_path: Path) -> Iterator[list[str]]:
    """The global options of one backend, in a fresh namespace holding the test image."""
    if os.geteuid() != 0 or shutil.which("runc") is None:
        pytest.skip("running containers needs root and runc")
    namespace = f"cli-{uuid.uuid4().hex[:10]}"
    if request.param == "remote":
        daemon: ContainerdDaemon = request.getfixturevalue("containerd_daemon")
        options = ["--backend", "remote", "--address", daemon.address, "--namespace", namespace]
    else:
        options = ["--backend", "local", "--namespace", namespace]
        options += ["--root", str(tmp_path / "root"), "--state", str(tmp_path / "state")]
    done = _cli(*options, "images", "import", str(archive))
    assert done.returncode == 0, done.stderr
    digest = done.stdout.split()[1].decode()  # "imported NAME DIGEST"
    assert _cli(*options, "images", "tag", digest, IMAGE).returncode == 0
    yield options
    for line in _cli(*options, "ps", "-a", "--format", "json").stdout.splitlines():
        _cli(*options, "rm", "-f", line.decode().split('"id": "')[1].split('"')[0])
    _cli(*options, "images", "rm", digest, IMAGE)
    # The runc shim of the private containerd keeps runc's state per namespace here.
    shutil.rmtree(f"/run/containerd/runc/{namespace}", ignore_errors=True)


@pytest.mark.runtime
def test_run_echo_prints_and_exits_0(cli: list[str]) -> None:
    done = _cli(*cli, "run", "--rm", IMAGE, "echo", "hi")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"hi\n", b"")
    assert _cli(*cli, "ps", "-a").stdout.count(b"\n") == 1  # the header only: removed


@pytest.mark.runtime
def test_run_exit_code_becomes_ours(cli: list[str]) -> None:
    assert _cli(*cli, "run", "--rm", IMAGE, "sh", "-c", "exit 3").returncode == 3


@pytest.mark.runtime
def test_run_interactive_pipes_stdin(cli: list[str]) -> None:
    done = _cli(*cli, "run", "--rm", "-i", IMAGE, "tr", "a-z", "A-Z", stdin=b"abc\n")
    assert (done.returncode, done.stdout) == (0, b"ABC\n")


@pytest.mark.runtime
def test_run_stderr_env_and_workdir(cli: list[str], tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# a comment\nFROM_FILE=1\n")
    done = _cli(
        *cli, "run", "--rm", "-e", "GREETING=hello", "--env-file", str(env_file), "-w", "/tmp",
        IMAGE, "sh", "-c", 'echo "$GREETING $FROM_FILE $(pwd)"; echo oops >&2',
    )  # fmt: skip
    assert (done.stdout, done.stderr) == (b"hello 1 /tmp\n", b"oops\n")


@pytest.mark.runtime
def test_detached_logs_exec_stop_rm(cli: list[str]) -> None:
    name = f"d-{uuid.uuid4().hex[:8]}"
    started = _cli(*cli, "run", "-d", "--name", name, IMAGE, "sh", "-c", "echo up; sleep 60")
    assert started.stdout.strip() == name.encode(), started.stderr
    assert b"running" in _cli(*cli, "ps").stdout
    assert _cli(*cli, "exec", name, "sh", "-c", "exit 4").returncode == 4
    deadline = time.monotonic() + 10
    while b"up" not in _cli(*cli, "logs", name).stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _cli(*cli, "logs", name).stdout == b"up\n"
    refused = _cli(*cli, "rm", name)
    assert refused.returncode != 0 and b"rm -f" in refused.stderr
    assert b"Traceback" not in refused.stderr and refused.stderr.count(b"\n") == 1
    assert _cli(*cli, "stop", "--time", "1", name).returncode == 0
    assert _cli(*cli, "logs", "-f", name).stdout == b"up\n"  # ends: the task exited
    assert _cli(*cli, "rm", name).returncode == 0
    assert name.encode() not in _cli(*cli, "ps", "-a").stdout


@pytest.mark.runtime
def test_run_tty_gets_a_terminal(cli: list[str]) -> None:
    """Under a pseudo-terminal of ours, ``-t`` gives the container one too."""
    output, status = _in_pty([*cli, "run", "--rm", "-t", IMAGE, "sh", "-c", "tty; exit 5"])
    assert status == 5
    assert b"/dev/pts/" in output


def _in_pty(args: list[str], timeout: float = 120) -> tuple[bytes, int]:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command, with the pty as its terminal
        os.execv(sys.executable, [sys.executable, "-m", "libcontainerd", *args])
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return output, os.waitstatus_to_exitcode(status)


@pytest.mark.runtime
@pytest.mark.registry
def test_pull_progress_live_on_a_terminal_plain_when_piped(
    cli: list[str], registry_plain: Registry
) -> None:
    remote_ref = f"{registry_plain.host}/cli-test/busybox:{uuid.uuid4().hex[:6]}"
    assert _cli(*cli, "images", "tag", IMAGE, remote_ref).returncode == 0
    pushed = _cli(*cli, "push", remote_ref)
    assert pushed.returncode == 0, pushed.stderr
    assert _cli(*cli, "images", "rm", remote_ref).returncode == 0

    piped = _cli(*cli, "pull", remote_ref)
    assert piped.returncode == 0, piped.stderr
    lines = piped.stdout.decode().splitlines()
    assert b"\x1b[" not in piped.stdout  # no terminal codes when piped
    assert any(": done (" in line or ": exists (" in line for line in lines), lines
    assert lines[-1].startswith(f"pulled {remote_ref} sha256:")

    assert _cli(*cli, "images", "rm", remote_ref).returncode == 0
    output, status = _in_pty([*cli, "pull", remote_ref])
    assert status == 0, output
    assert b"\x1b[" in output  # drawn in place by rich
    assert b"/s" in output and b"B" in output  # speed and byte counts
    assert f"pulled {remote_ref}".encode() in output
    _cli(*cli, "images", "rm", remote_ref)
