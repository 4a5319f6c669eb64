"""The Windows guard: every combination of its three parts, on a simulated Windows host.

The platform is simulated through ``decide_backend(host_os="windows")`` and an explicit
environment; nothing else about Windows is needed to decide.
"""

from __future__ import annotations

import itertools

import pytest

from libcontainerd import cli
from libcontainerd.errors import FailedPrecondition
from libcontainerd.system import (
    MISSING_EXPERIMENTAL,
    MISSING_PIPE,
    MISSING_RUNTIME,
    WINDOWS_RUNTIME_ENV,
    Rule,
    decide_backend,
    windows_guard,
)

PIPE = "npipe:////./pipe/containerd-containerd"
COMBINATIONS = list(itertools.product([False, True], repeat=3))


def _arguments(experimental: bool, runtime: bool, pipe: bool) -> dict[str, object]:
    return {
        "experimental": experimental,
        "environ": {WINDOWS_RUNTIME_ENV: "io.containerd.runhcs.v1"} if runtime else {},
        "address": PIPE if pipe else "tcp://127.0.0.1:2375",
    }


@pytest.mark.parametrize(("experimental", "runtime", "pipe"), COMBINATIONS)
def test_each_combination_reports_what_is_missing(
    experimental: bool, runtime: bool, pipe: bool
) -> None:
    decision = decide_backend(None, host_os="windows", **_arguments(experimental, runtime, pipe))  # type: ignore[arg-type]
    expected = tuple(
        name
        for present, name in (
            (experimental, MISSING_EXPERIMENTAL),
            (runtime, MISSING_RUNTIME),
            (pipe, MISSING_PIPE),
        )
        if not present
    )
    assert decision.missing == expected
    if expected:
        assert decision.backend == "local"
        assert decision.rule is Rule.WINDOWS_GUARD
        for name in expected:
            assert name in decision.reason
    else:
        assert decision.backend == "remote"
        assert decision.address == PIPE
        assert "missing" not in decision.reason


@pytest.mark.parametrize(("experimental", "runtime", "pipe"), COMBINATIONS[:-1])
def test_explicit_remote_is_refused_naming_the_missing_parts(
    experimental: bool, runtime: bool, pipe: bool
) -> None:
    arguments = _arguments(experimental, runtime, pipe)
    guard = windows_guard(
        arguments["address"],  # type: ignore[arg-type]
        experimental=experimental,
        environ=arguments["environ"],  # type: ignore[arg-type]
    )
    with pytest.raises(FailedPrecondition) as raised:
        decide_backend("remote", host_os="windows", **arguments)  # type: ignore[arg-type]
    assert str(raised.value).endswith("missing: " + "; ".join(guard.missing))


def test_blank_runtime_variable_counts_as_missing() -> None:
    guard = windows_guard(PIPE, experimental=True, environ={WINDOWS_RUNTIME_ENV: "  "})
    assert guard.missing == (MISSING_RUNTIME,)
    assert not guard.open


def test_pipe_address_may_come_from_the_environment() -> None:
    environ = {WINDOWS_RUNTIME_ENV: "io.containerd.runhcs.v1", "CONTAINERD_ADDRESS": PIPE}
    guard = windows_guard(None, experimental=True, environ=environ)
    assert guard.open
    assert guard.address == PIPE


def test_malformed_pipe_address_is_a_missing_pipe() -> None:
    guard = windows_guard("npipe:////./notapipe/x", experimental=True, environ={})
    assert MISSING_PIPE in guard.missing


def test_linux_decisions_carry_no_guard_report() -> None:
    decision = decide_backend("local", host_os="linux", environ={})
    assert decision.missing == ()
    assert "missing" not in decision.reason


def test_command_line_prints_the_missing_parts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Simulates Windows by the platform the command line's decision sees."""
    import libcontainerd.system as system

    monkeypatch.setattr(system.sys, "platform", "win32")
    monkeypatch.delenv(WINDOWS_RUNTIME_ENV, raising=False)
    monkeypatch.delenv("CONTAINERD_ADDRESS", raising=False)
    monkeypatch.delenv("LIBCONTAINERD_BACKEND", raising=False)
    assert cli.main(["backend", "--address", PIPE]) == 0
    out = capsys.readouterr().out
    assert out.startswith("backend local")
    assert f"missing: {MISSING_EXPERIMENTAL}; {MISSING_RUNTIME})" in out
