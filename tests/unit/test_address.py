"""Daemon address parsing, including hostile and malformed input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcontainerd.address import AddressKind, default_address, parse_address
from libcontainerd.errors import InvalidArgument


@pytest.mark.parametrize(
    ("text", "kind", "target"),
    [
        (
            "unix:///run/containerd/containerd.sock",
            AddressKind.UNIX,
            "unix:/run/containerd/containerd.sock",
        ),
        ("/tmp/c.sock", AddressKind.UNIX, "unix:/tmp/c.sock"),
        ("tcp://127.0.0.1:1234", AddressKind.TCP, "127.0.0.1:1234"),
        ("tcp://[::1]:80", AddressKind.TCP, "[::1]:80"),
        ("TCP://localhost:9", AddressKind.TCP, "localhost:9"),
        (
            "npipe:////./pipe/containerd-containerd",
            AddressKind.NPIPE,
            "\\\\.\\pipe\\containerd-containerd",
        ),
        ("\\\\.\\pipe\\docker_engine", AddressKind.NPIPE, "\\\\.\\pipe\\docker_engine"),
    ],
)
def test_parse(text: str, kind: AddressKind, target: str) -> None:
    address = parse_address(text)
    assert address.kind is kind
    assert address.target == target
    assert parse_address(str(address)) == address


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("relative.sock", "not absolute"),
        ("unix://relative", "not absolute"),
        ("tcp://host", "no port"),
        ("tcp://host:0", "invalid port"),
        ("tcp://host:70000", "invalid port"),
        ("tcp://:80", "no valid host"),
        ("http://x:1", "unknown scheme"),
        ("npipe:////./notpipe/x", "npipe"),
        ("unix:///" + "a" * 200, "bytes"),
    ],
)
def test_refused_with_a_reason(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        parse_address(text)


def test_defaults() -> None:
    assert default_address("linux") == "/run/containerd/containerd.sock"
    assert parse_address(default_address("windows")).kind is AddressKind.NPIPE


@settings(max_examples=300)
@given(st.text())
def test_arbitrary_text_raises_only_invalid_argument(text: str) -> None:
    with contextlib.suppress(InvalidArgument):
        parse_address(text)
