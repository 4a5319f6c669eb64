"""Stdio requests, container records, credentials and progress values."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from libcontainerd.errors import InvalidArgument
from libcontainerd.types import (
    ContainerInfo,
    Credentials,
    FileIO,
    NullIO,
    PipedIO,
    ProgressEvent,
    ProgressKind,
    RuntimeInfo,
    TerminalIO,
)


def test_file_io_needs_absolute_paths() -> None:
    assert FileIO("/tmp/out").stdout == Path("/tmp/out")
    assert FileIO("/tmp/out").stderr is None
    with pytest.raises(InvalidArgument, match="relative"):
        FileIO("out.log")
    with pytest.raises(InvalidArgument, match="relative"):
        FileIO("/tmp/out", "err.log")
    with pytest.raises(InvalidArgument, match="NullIO"):
        FileIO(None)


@pytest.mark.parametrize(("width", "height"), [(0, 24), (80, 0), (70000, 24), (-1, -1)])
def test_terminal_size_is_checked(width: int, height: int) -> None:
    with pytest.raises(InvalidArgument, match="out of range"):
        TerminalIO(width=width, height=height)


def test_stdio_values_are_frozen() -> None:
    piped = PipedIO(stdin=False)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        piped.stdin = True  # type: ignore[misc]
    assert NullIO() == NullIO()


def test_container_info_mappings_are_read_only() -> None:
    labels = {"a": "b"}
    info = ContainerInfo("c1", labels=labels, runtime=RuntimeInfo("io.containerd.runc.v2"))
    labels["a"] = "changed"
    assert info.labels["a"] == "b"
    with pytest.raises(TypeError):
        info.labels["x"] = "y"  # type: ignore[index]


def test_credentials_hide_secrets() -> None:
    creds = Credentials("alice", "s3cret")
    assert "s3cret" not in repr(creds)
    assert not creds.anonymous
    assert Credentials().anonymous
    with pytest.raises(InvalidArgument, match="no username"):
        Credentials(password="x")


def test_progress_event() -> None:
    event = ProgressEvent(ProgressKind.DOWNLOADING, "sha256:" + "0" * 64, current=5, total=10)
    assert event.kind.value == "downloading"
