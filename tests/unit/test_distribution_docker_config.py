"""docker ``config.json`` parsing and ``docker-credential-*`` helpers."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcontainerd.distribution import load_docker_config, parse_docker_config
from libcontainerd.distribution.docker_config import (
    default_config_path,
    normalize_registry_host,
    run_credential_helper,
)
from libcontainerd.errors import (
    DeadlineExceeded,
    Error,
    FailedPrecondition,
    InvalidArgument,
    RuntimeCommandError,
)
from libcontainerd.types.auth import Credentials


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_auths_forms() -> None:
    config = parse_docker_config(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": _b64("hub:secret:with:colons")},
                    "registry.example.com:5000": {"username": "u", "password": "p"},
                    "http://token.example.com/v2/": {"username": "u", "identitytoken": "idt"},
                    "empty.example.com": {},
                }
            }
        )
    )
    assert config.static_credentials("docker.io") == Credentials(
        username="hub", password="secret:with:colons"
    )
    assert config.static_credentials("registry-1.docker.io") is not None
    assert config.static_credentials("registry.example.com:5000") == Credentials(
        username="u", password="p"
    )
    assert config.static_credentials("token.example.com") == Credentials(
        username="u", identity_token="idt"
    )
    assert config.static_credentials("empty.example.com") is None
    assert config.static_credentials("unknown.example.com") is None


def test_helpers_and_store() -> None:
    config = parse_docker_config(
        '{"credHelpers": {"gcr.io": "gcloud"}, "credsStore": "desktop", "auths": {}}'
    )
    assert config.helper_for("gcr.io") == "gcloud"
    assert config.helper_for("other.io") == "desktop"


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        "{not json",
        '{"auths": []}',
        '{"auths": {"x": "y"}}',
        '{"auths": {"x": {"auth": "%%%"}}}',
        '{"auths": {"x": {"auth": "' + _b64("nocolon") + '"}}}',
        '{"auths": {"x": {"username": 5}}}',
        '{"credHelpers": {"x": "../../bin/sh"}}',
        '{"credsStore": 7}',
    ],
)
def test_malformed_configs(text: str) -> None:
    with pytest.raises(InvalidArgument, match=r"docker config|helper"):
        parse_docker_config(text)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
_ENTRY = st.dictionaries(
    st.sampled_from(["auth", "username", "password", "identitytoken", "registrytoken", "email"]),
    st.one_of(
        st.text(max_size=30), st.integers(), st.none(), st.builds(_b64, st.text(max_size=20))
    ),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        _JSON,
        st.fixed_dictionaries(
            {},
            optional={
                "auths": st.dictionaries(st.text(max_size=30), _ENTRY, max_size=4) | _JSON,
                "credHelpers": st.dictionaries(st.text(max_size=10), st.text(max_size=10)),
                "credsStore": st.text(max_size=10) | _JSON,
            },
        ),
    )
)
def test_parser_raises_only_invalid_argument(document: object) -> None:
    try:
        config = parse_docker_config(json.dumps(document))
    except InvalidArgument:
        return
    for credentials in config.auths.values():
        assert isinstance(credentials, Credentials)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_parser_on_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(InvalidArgument):
        parse_docker_config(data)


def test_normalize_registry_host() -> None:
    assert normalize_registry_host("https://index.docker.io/v1/") == "docker.io"
    assert normalize_registry_host("HTTP://Registry.Example.com:5000/v2/") == (
        "registry.example.com:5000"
    )


def test_load_from_env_and_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert default_config_path() == tmp_path / "config.json"
    assert load_docker_config().auths == {}
    (tmp_path / "config.json").write_text('{"auths": {"r.io": {"auth": "' + _b64("a:b") + '"}}}')
    assert load_docker_config().static_credentials("r.io") == Credentials(
        username="a", password="b"
    )


def _helper(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / f"docker-credential-{name}"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_credential_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    # The server URL arrives on stdin; echo it back as the user name to prove it.
    _helper(
        bin_dir,
        "echo",
        'read url\nprintf \'{"ServerURL":"%s","Username":"%s","Secret":"s3"}\' "$url" "$url"\n',
    )
    _helper(bin_dir, "token", 'echo \'{"Username":"<token>","Secret":"refresh"}\'\n')
    _helper(bin_dir, "none", "echo 'credentials not found in native keychain'; exit 1\n")
    _helper(bin_dir, "broken", "echo boom >&2; exit 3\n")
    _helper(bin_dir, "slow", "sleep 5\n")
    _helper(bin_dir, "garbage", "echo not-json\n")
    assert run_credential_helper("echo", "r.example.com") == Credentials(
        username="r.example.com", password="s3"
    )
    assert run_credential_helper("token", "x") == Credentials(identity_token="refresh")
    assert run_credential_helper("none", "x") is None
    with pytest.raises(RuntimeCommandError, match="docker-credential-broken") as caught:
        run_credential_helper("broken", "x")
    assert caught.value.exit_code == 3 and "boom" in caught.value.stderr
    with pytest.raises(DeadlineExceeded, match="slow"):
        run_credential_helper("slow", "x", timeout=0.2)
    with pytest.raises(InvalidArgument, match="invalid JSON"):
        run_credential_helper("garbage", "x")
    with pytest.raises(FailedPrecondition, match="not on PATH"):
        run_credential_helper("absent", "x")
    config = parse_docker_config(
        '{"credHelpers": {"docker.io": "echo"}, "auths": {"q.io": {"auth": "'
        + _b64("u:p")
        + '"}}, "credsStore": "none"}'
    )
    # Docker Hub's helper gets docker's historical server URL.
    assert config.credentials("registry-1.docker.io") == Credentials(
        username="https://index.docker.io/v1/", password="s3"
    )
    # The store has nothing for q.io, so the auths entry is used.
    assert config.credentials("q.io") == Credentials(username="u", password="p")


def test_all_errors_are_typed() -> None:
    assert issubclass(InvalidArgument, Error)
