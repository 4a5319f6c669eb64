"""The ``libcontainerd`` command line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libcontainerd.cli import main
from libcontainerd.cli.containers import (
    parse_env_file,
    parse_memory,
    parse_mount,
    parse_volume,
)
from libcontainerd.errors import InvalidArgument


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


# ------------------------------------------------------------------ run's option parsers

_UNIT_FACTORS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


@given(st.integers(1, 10**6), st.sampled_from(sorted(_UNIT_FACTORS)), st.booleans())
def test_memory_sizes_round_trip(number: int, unit: str, upper: bool) -> None:
    text = f"{number}{unit.upper() if upper else unit}"
    assert parse_memory(text) == number * _UNIT_FACTORS[unit]


def _not_a_size(text: str) -> bool:
    """Outside the grammar: digits, an optional unit and ``b``, spaces around."""
    return re.fullmatch(r"\s*\d+\s*[bkmgt]?b?\s*", text, re.IGNORECASE) is None


@given(st.text(max_size=12).filter(_not_a_size))
def test_memory_rejects_what_is_not_a_size(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_memory(text)


_PATH = st.lists(st.text("abcxyz019_-", min_size=1, max_size=6), min_size=1, max_size=3).map(
    lambda parts: "/" + "/".join(parts)
)


@given(_PATH, _PATH, st.booleans())
def test_volume_is_a_bind_mount(host: str, inside: str, readonly: bool) -> None:
    mount = parse_volume(f"{host}:{inside}{':ro' if readonly else ''}")
    assert mount["type"] == "bind"
    assert mount["destination"] == inside
    assert mount["source"].endswith(host)
    assert ("ro" in mount["options"]) is readonly
    assert mount == parse_mount(f"type=bind,src={host},dst={inside}{',ro' if readonly else ''}")


@pytest.mark.parametrize(
    "text", ["/a", "a:b:c:d", "/a:/b:rx", "type=volume,target=/x", "target=/x", "bogus=1"]
)
def test_bad_mounts_and_volumes_say_why(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_mount(text) if "=" in text else parse_volume(text)


def test_tmpfs_mount() -> None:
    assert parse_mount("type=tmpfs,target=/scratch")["type"] == "tmpfs"


def test_env_file_skips_comments_and_blanks(tmp_path: Path) -> None:
    path = tmp_path / "env"
    path.write_text("# comment\n\nA=1\n  B=two words  \n")
    assert parse_env_file(str(path)) == ["A=1", "B=two words"]
    with pytest.raises(InvalidArgument):
        parse_env_file(str(tmp_path / "missing"))


def test_errors_are_one_line_and_debug_shows_the_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--backend", "local", "run", "--memory", "lots", "img", "true"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "memory 'lots'" in err
    assert main(["--debug", "--backend", "local", "run", "--memory", "lots", "img", "true"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "--rm" in out and "--env-file" in out and "\x1b[" not in out


def test_run_extensions_add_options(capsys: pytest.CaptureFixture[str]) -> None:
    """A registered extension's options appear in ``run`` and reach its ``apply``."""
    import argparse

    from libcontainerd.cli import build_parser
    from libcontainerd.cli import run_extensions as hooks

    class Probe:
        def add_arguments(self, group: argparse._ArgumentGroup) -> None:
            group.add_argument("--probe")

        def apply(self, args: argparse.Namespace, request: hooks.RunRequest) -> None:
            request.container_options["probe"] = args.probe

    probe = Probe()
    hooks.register_run_extension(probe)
    try:
        args = build_parser().parse_args(["run", "--probe", "x", "img", "true"])
        request = hooks.RunRequest("c")
        for extension in hooks.run_extensions():
            extension.apply(args, request)
        assert request.container_options["probe"] == "x"
    finally:
        hooks._EXTENSIONS.remove(probe)


def test_the_sdk_does_not_import_rich() -> None:
    """rich is the CLI's optional extra: importing the SDK (and the CLI module) must not load it."""
    import subprocess
    import sys

    code = (
        "import sys, libcontainerd, libcontainerd.local, libcontainerd.remote, "
        "libcontainerd.shortcuts, libcontainerd.cli; "
        "assert 'rich' not in sys.modules, sorted(m for m in sys.modules if 'rich' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
