"""Rule 4 of backend selection against a real containerd: one that answers selects remote."""

from __future__ import annotations

from libcontainerd.system import Rule, containerd_answers, decide_backend
from libcontainerd.testing.containerd_daemon import ContainerdDaemon


def test_answering_containerd_selects_remote(containerd_daemon: ContainerdDaemon) -> None:
    assert containerd_answers(containerd_daemon.address)
    decision = decide_backend(environ={}, probe_address=containerd_daemon.address)
    assert decision.backend == "remote"
    assert decision.rule is Rule.DEFAULT_ADDRESS_ANSWERS
    assert decision.address == containerd_daemon.address


def test_socket_without_containerd_selects_local(tmp_path: object) -> None:
    decision = decide_backend(environ={}, probe_address="/nonexistent/containerd.sock")
    assert decision.rule is Rule.EMBEDDED_DEFAULT
