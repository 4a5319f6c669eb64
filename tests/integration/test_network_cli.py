"""The networking command line: ``network ls|create|rm`` and ``run``'s networking options,
through the ``libcontainerd`` command itself."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from libcontainerd.cli import main as cli_main
from libcontainerd.cli import network as network_cli
from libcontainerd.network import DnsConfig


@pytest.fixture(scope="module")
def cli() -> ModuleType:
    return network_cli


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("containerd") is None:
        pytest.skip("needs root and the containerd binary")
    from libcontainerd.testing.containerd_daemon import start_containerd

    daemon = start_containerd(tmp_path_factory.mktemp("net-cli-containerd"))
    try:
        yield daemon.address
    finally:
        daemon.stop()


@pytest.mark.containerd
def test_network_ls_create_rm(
    address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = ["--backend", "remote", "--address", address, "--namespace", "lcd-net-cli"]
    dirs = [
        "--cni-config-dir",
        str(tmp_path / "net.d"),
        "--network-state-dir",
        str(tmp_path / "state"),
    ]
    create = ["clinet", "--subnet", "10.213.75.0/24", "--bridge", "lcdt75"]
    assert cli_main([*client, "network", "create", *create, *dirs]) == 0
    assert capsys.readouterr().out == "clinet lcdt75 10.213.75.0/24\n"
    assert cli_main([*client, "network", "ls", "--json", *dirs]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["name"] == "clinet" and listed["owned"] is True
    assert listed["plugins"] == ["bridge", "portmap", "firewall", "loopback"]
    assert cli_main([*client, "network", "ls", *dirs]) == 0
    assert "clinet" in capsys.readouterr().out
    assert cli_main([*client, "network", "rm", "clinet", *dirs]) == 0
    assert not (tmp_path / "net.d" / "libcontainerd-clinet.conflist").exists()


def test_run_options_become_new_container_arguments(cli: ModuleType) -> None:
    parser = argparse.ArgumentParser()
    cli.add_run_arguments(parser)
    defaults = cli.run_kwargs(parser.parse_args([]))
    assert defaults == {"network": "bridge", "ports": None, "dns": None, "hostname": None}
    args = parser.parse_args(
        [
            "--network",
            "host",
            "-p",
            "127.0.0.1:8080:80",
            "--publish",
            "9000:9000/udp",
            "--dns",
            "10.0.0.2",
            "--dns-search",
            "it.test",
            "--hostname",
            "web",
            "--cni-config-dir",
            "/tmp/x",
        ]
    )
    assert cli.run_kwargs(args) == {
        "network": "host",
        "ports": ["127.0.0.1:8080:80", "9000:9000/udp"],
        "dns": DnsConfig(servers=["10.0.0.2"], search=["it.test"]),
        "hostname": "web",
    }
    options: dict[str, Any] = cli.client_options(args)
    assert str(options["network"].config_dir) == "/tmp/x"
    assert cli.client_options(parser.parse_args([])) == {}
