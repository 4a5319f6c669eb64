"""Backend selection rules, the Windows guard, and argument checks of the factory."""

from __future__ import annotations

from pathlib import Path

import pytest

import libcontainerd
from libcontainerd import system
from libcontainerd.errors import FailedPrecondition, InvalidArgument, Unimplemented
from libcontainerd.system import Rule, decide_backend

NO_DAEMON = "/nonexistent/libcontainerd-test/containerd.sock"


def decide(backend: str | None = None, **kwargs: object) -> system.BackendDecision:
    kwargs.setdefault("environ", {})
    kwargs.setdefault("probe_address", NO_DAEMON)
    return decide_backend(backend, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("backend", "kwargs", "expected", "rule"),
    [
        ("local", {}, "local", Rule.EXPLICIT_BACKEND),
        ("remote", {}, "remote", Rule.EXPLICIT_BACKEND),
        ("REMOTE", {}, "remote", Rule.EXPLICIT_BACKEND),
        ("local", {"environ": {"LIBCONTAINERD_BACKEND": "remote"}}, "local", Rule.EXPLICIT_BACKEND),
        (
            None,
            {"environ": {"LIBCONTAINERD_BACKEND": "remote"}},
            "remote",
            Rule.BACKEND_ENVIRONMENT,
        ),
        (
            None,
            {"environ": {"LIBCONTAINERD_BACKEND": "local", "CONTAINERD_ADDRESS": "/x"}},
            "local",
            Rule.BACKEND_ENVIRONMENT,
        ),
        (None, {"address": "/tmp/c.sock"}, "remote", Rule.EXPLICIT_ADDRESS),
        (
            None,
            {"environ": {"CONTAINERD_ADDRESS": "/tmp/c.sock"}},
            "remote",
            Rule.ADDRESS_ENVIRONMENT,
        ),
        (
            None,
            {"address": "/a.sock", "environ": {"CONTAINERD_ADDRESS": "/b.sock"}},
            "remote",
            Rule.EXPLICIT_ADDRESS,
        ),
        (None, {}, "local", Rule.EMBEDDED_DEFAULT),
    ],
)
def test_linux_rules(
    backend: str | None, kwargs: dict[str, object], expected: str, rule: Rule
) -> None:
    decision = decide(backend, host_os="linux", **kwargs)
    assert (decision.backend, decision.rule) == (expected, rule)
    assert expected in decision.reason


def test_address_from_environment_is_kept() -> None:
    decision = decide(None, host_os="linux", environ={"CONTAINERD_ADDRESS": "/tmp/c.sock"})
    assert decision.address == "/tmp/c.sock"


def test_bad_backend_names_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="'local' or 'remote'"):
        decide("docker", host_os="linux")
    with pytest.raises(InvalidArgument, match="LIBCONTAINERD_BACKEND"):
        decide(None, host_os="linux", environ={"LIBCONTAINERD_BACKEND": "kube"})


def test_stale_socket_file_is_not_a_daemon(tmp_path: Path) -> None:
    stale = tmp_path / "containerd.sock"
    stale.touch()
    assert not system.containerd_answers(str(stale))
    assert decide(None, host_os="linux", probe_address=str(stale)).backend == "local"


WINDOWS_PIPE = "npipe:////./pipe/containerd-containerd"
WINDOWS_ENV = {"LIBCONTAINERD_WINDOWS_CONTAINERD_RUNTIME": "io.containerd.runhcs.v1"}


@pytest.mark.parametrize(
    ("experimental", "environ", "address", "expected"),
    [
        (True, WINDOWS_ENV, WINDOWS_PIPE, "remote"),
        (False, WINDOWS_ENV, WINDOWS_PIPE, "local"),
        (True, {}, WINDOWS_PIPE, "local"),
        (True, {"LIBCONTAINERD_WINDOWS_CONTAINERD_RUNTIME": ""}, WINDOWS_PIPE, "local"),
        (True, WINDOWS_ENV, None, "local"),
        (True, WINDOWS_ENV, "tcp://127.0.0.1:1", "local"),
        (True, {**WINDOWS_ENV, "CONTAINERD_ADDRESS": WINDOWS_PIPE}, None, "remote"),
    ],
)
def test_windows_three_part_guard(
    experimental: bool, environ: dict[str, str], address: str | None, expected: str
) -> None:
    decision = decide(
        None, host_os="windows", experimental=experimental, environ=environ, address=address
    )
    assert decision.backend == expected


def test_windows_explicit_remote_without_guard_is_refused() -> None:
    with pytest.raises(FailedPrecondition, match="experimental"):
        decide("remote", host_os="windows", address=WINDOWS_PIPE)


def test_local_only_arguments_refused_for_remote() -> None:
    with pytest.raises(InvalidArgument, match="root, runtime"):
        libcontainerd.new_client("remote", address="/tmp/c.sock", root="/tmp/r", runtime="runc")


def test_address_refused_for_local() -> None:
    with pytest.raises(InvalidArgument, match="address"):
        libcontainerd.new_client("local", address="/tmp/c.sock")


def test_invalid_namespace_refused_before_any_backend_work() -> None:
    with pytest.raises(InvalidArgument, match="namespace"):
        libcontainerd.new_client("local", namespace="../etc")


def test_invalid_timeout_refused() -> None:
    with pytest.raises(InvalidArgument, match="timeout"):
        libcontainerd.new_client("local", timeout=0)


def test_missing_backend_is_a_clear_unimplemented() -> None:
    """A backend module that is absent (or lacks its factory) is named in the error."""
    from libcontainerd._factory import _backend_factory

    with pytest.raises(Unimplemented, match="nosuchbackend backend is not implemented"):
        _backend_factory("nosuchbackend", "create_client")


def test_explain_and_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBCONTAINERD_BACKEND", "local")
    assert "local" in system.explain()
    assert system.containerd_in_use() is False
    assert system.containerd_in_use("remote") is True
