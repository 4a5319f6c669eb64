"""The ``libcontainerd`` command line."""

from __future__ import annotations

import json

import pytest

from libcontainerd.cli import main


def test_backend_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backend", "--backend", "local", "--json"]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision == {"backend": "local", "rule": "explicit_backend", "address": None}


def test_platform_normalises_and_encodes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["platform", "Linux/x86_64"]) == 0
    assert capsys.readouterr().out.strip() == "linux/amd64"
    assert main(["platform", "linux/arm64", "--header"]) == 0
    assert json.loads(capsys.readouterr().out) == {"os": "linux", "architecture": "arm64"}


def test_bad_header_is_exit_2_with_a_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode-platform-header", '{"os": "linux"}']) == 2
    assert "architecture" in capsys.readouterr().err


def test_header_decodes(capsys: pytest.CaptureFixture[str]) -> None:
    value = '{"os":"linux","architecture":"arm","variant":"v6"}'
    assert main(["decode-platform-header", value]) == 0
    assert capsys.readouterr().out.strip() == "linux/arm/v6"
