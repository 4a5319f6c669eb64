"""runhcs in the local runtime driver: accepted on Windows only, driven like runc.

runhcs cannot run on Linux, so the driver's Windows path is exercised with a fake
``runhcs`` script and a simulated platform; the fake only records its command line and
answers the way runc does (runhcs is a fork of runc's command line).
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libcontainerd.errors import FailedPrecondition, NotFound
from libcontainerd.local import _runtime
from libcontainerd.local._runtime import RuntimeDriver, default_runtime, runtime_os

FAKE_RUNHCS = """#!/bin/sh
# A stand-in for runhcs.exe: logs argv, answers like runc.
echo "$@" >> "$(dirname "$0")/calls.log"
case "$3" in
  state) printf '{"id": "%s", "status": "running", "pid": 4242}' "$4" ;;
  ps) echo '[4242]' ;;
  kill) [ "$4" = missing ] && { echo 'container does not exist' >&2; exit 1; } ;;
esac
exit 0
"""


@pytest.mark.parametrize(
    ("runtime", "expected"),
    [
        ("runhcs", "windows"),
        ("runhcs.exe", "windows"),
        ("C:\\Program Files\\containerd\\runhcs.exe", "windows"),
        ("/opt/bin/runhcs", "windows"),
        ("runc", "linux"),
        ("crun", "linux"),
        ("/usr/sbin/runc", "linux"),
    ],
)
def test_runtime_os(runtime: str, expected: str) -> None:
    assert runtime_os(runtime) == expected


@given(
    folder=st.lists(st.text("abcXYZ09 _-", min_size=1, max_size=8), max_size=3),
    separator=st.sampled_from(["/", "\\"]),
    upper=st.booleans(),
    exe=st.booleans(),
)
def test_runhcs_is_windows_wherever_it_lives(
    folder: list[str], separator: str, upper: bool, exe: bool
) -> None:
    name = ("RUNHCS" if upper else "runhcs") + (".exe" if exe else "")
    assert runtime_os(separator.join([*folder, name])) == "windows"
    assert runtime_os(separator.join([*folder, "runc"])) == "linux"


def test_runhcs_is_refused_off_windows(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match=r"only on Windows.*linux"):
        RuntimeDriver("runhcs", tmp_path / "state", timeout=5)


def test_default_runtime_follows_the_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_runtime() == "runc"
    monkeypatch.setattr(_runtime, "HOST_PLATFORM", "win32")
    assert default_runtime() == "runhcs"


@pytest.fixture
def fake_runhcs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake runhcs on a simulated Windows host (see the module docstring)."""
    monkeypatch.setattr(_runtime, "HOST_PLATFORM", "win32")
    binary = tmp_path / "bin" / "runhcs"
    binary.parent.mkdir()
    binary.write_text(FAKE_RUNHCS)
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    return binary


def test_runhcs_is_driven_with_runc_command_lines(fake_runhcs: Path, tmp_path: Path) -> None:
    root = tmp_path / "state"
    driver = RuntimeDriver(str(fake_runhcs), root, timeout=10)
    assert driver.os == "windows"
    assert driver.state("c1")["pid"] == 4242
    assert driver.ps("c1") == [4242]
    driver.kill("c1", 15)
    driver.delete("c1", force=True)
    calls = (fake_runhcs.parent / "calls.log").read_text().splitlines()
    assert calls == [
        f"--root {root} state c1",
        f"--root {root} ps --format json c1",
        f"--root {root} kill c1 15",
        f"--root {root} delete --force c1",
    ]


def test_runhcs_missing_container_is_not_found(fake_runhcs: Path, tmp_path: Path) -> None:
    driver = RuntimeDriver(str(fake_runhcs), tmp_path / "state", timeout=10)
    with pytest.raises(NotFound, match="does not exist"):
        driver.kill("missing", 9)
