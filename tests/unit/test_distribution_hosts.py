"""hosts.toml parsing, host selection, redirect checks and retry rules of the registry core."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcontainerd.distribution import RegistryClient
from libcontainerd.distribution._session import RegistrySession as RegistryCore
from libcontainerd.distribution.hosts import (
    HostsConfig,
    RegistryHost,
    load_hosts_dir,
    parse_hosts_toml,
)
from libcontainerd.errors import (
    FailedPrecondition,
    InvalidArgument,
    RegistryError,
    Unavailable,
)
from libcontainerd.types.auth import Credentials
from libcontainerd.types.descriptor import Descriptor

FULL = """
server = "https://registry.example.com"
ca = "server-ca.pem"

[host."http://127.0.0.1:5001"]
  capabilities = ["pull", "resolve"]

[host."https://mirror.example.com/base"]
  capabilities = ["pull"]
  ca = ["/abs/ca.pem", "rel.pem"]
  skip_verify = true

[host."https://raw.example.com/custom/api"]
  override_path = true
"""


def test_full_file(tmp_path: Path) -> None:
    config = parse_hosts_toml(FULL, path=tmp_path / "hosts.toml")
    assert config.server_named
    assert config.server == RegistryHost(
        "registry.example.com", "https", ca=(str(tmp_path / "server-ca.pem"),)
    )
    local, mirror, raw = config.mirrors
    assert (local.host, local.scheme, local.path) == ("127.0.0.1:5001", "http", "/v2")
    assert local.capabilities == {"pull", "resolve"}
    assert mirror.path == "/base/v2"
    assert mirror.ca == ("/abs/ca.pem", str(tmp_path / "rel.pem"))
    assert mirror.skip_verify and mirror.needs_tls_config
    assert raw.path == "/custom/api"
    assert raw.capabilities == {"pull", "resolve", "push"}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("server = 5", "server"),
        ('server = "ftp://x"', "server"),
        ('server = "https://u:p@x"', "server"),
        ("skip_verfy = true", "skip_verfy"),
        ('skip_verify = "yes"', "skip_verify"),
        ("override_path = 1", "override_path"),
        ('capabilities = "pull"', "capabilities"),
        ('capabilities = ["pull", "fly"]', "capabilities"),
        ("ca = 3", "ca"),
        ('ca = ["a", 1]', "ca"),
        ('host = "x"', "host"),
        ('[host."https://m"]\ncapabilities = ["teleport"]', "capabilities"),
        ('[host."https://m"]\nclient = "c.pem"', "client"),
        ('[host."https://m"]\nheader = {a = "b"}', "header"),
        ('[host."not a url"]', "host"),
        ('[host."https://m?x=1"]', "host"),
        ("server = [", ""),
    ],
)
def test_malformed_files_name_the_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "reg" / "hosts.toml"
    with pytest.raises(InvalidArgument) as caught:
        parse_hosts_toml(text, path=path)
    assert str(path) in str(caught.value)
    assert key in str(caught.value)


def test_binary_garbage_and_oversize(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="UTF-8"):
        parse_hosts_toml(b"\xff\xfe server", path=tmp_path / "h")
    with pytest.raises(InvalidArgument, match="cap"):
        parse_hosts_toml(b"#" * (2 << 20))
    with pytest.raises(InvalidArgument):
        parse_hosts_toml(12)  # type: ignore[arg-type]


def test_load_dir_maps_port_directories_and_default(tmp_path: Path) -> None:
    for name, text in {
        "localhost_5000_": 'server = "http://localhost:5000"',
        "docker.io": '[host."https://mirror.lan"]',
        "_default": '[host."https://fallback.lan"]',
        "empty": None,
    }.items():
        (tmp_path / name).mkdir()
        if text is not None:
            (tmp_path / name / "hosts.toml").write_text(text)
    loaded = load_hosts_dir(tmp_path)
    assert set(loaded) == {"localhost:5000", "docker.io", "_default"}
    core = RegistryCore(hosts=loaded)
    assert [h.host for h in core.endpoints("docker.io", "pull")] == [
        "mirror.lan",
        "registry-1.docker.io",
    ]
    assert [h.host for h in core.endpoints("quay.io", "pull")] == ["fallback.lan", "quay.io"]
    assert core.base_url("localhost:5000") == "http://localhost:5000"


def test_missing_hosts_dir_and_bad_file_fail_at_construction(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="does not exist"):
        RegistryClient(docker_config=False, hosts_dir=tmp_path / "nope")
    (tmp_path / "reg.lan").mkdir()
    (tmp_path / "reg.lan" / "hosts.toml").write_text("bogus = 1")
    with pytest.raises(InvalidArgument, match="bogus"):
        RegistryClient(docker_config=False, hosts_dir=tmp_path)


def test_capabilities_pick_hosts() -> None:
    config = parse_hosts_toml(
        'capabilities = ["pull"]\n[host."https://m"]\ncapabilities = ["resolve"]'
    )
    core = RegistryCore(hosts={"reg.lan": config})
    assert [h.host for h in core.endpoints("reg.lan", "resolve")] == ["m"]
    assert [h.host for h in core.endpoints("reg.lan", "pull")] == ["reg.lan"]
    with pytest.raises(FailedPrecondition, match="push"):
        core.push_endpoint("reg.lan")


_toml_text = st.one_of(
    st.text(max_size=200),
    st.lists(
        st.tuples(
            st.sampled_from(
                ["server", "ca", "skip_verify", "override_path", "capabilities", "x", "host"]
            ),
            st.one_of(
                st.just('"https://a.b"'),
                st.just('"http://[::1]:5"'),
                st.just("true"),
                st.just("[1, 2]"),
                st.just('["pull", "push"]'),
                st.just('"%"'),
                st.just("{a = 1}"),
                st.text(max_size=20).map(repr),
            ),
        ),
        max_size=6,
    ).map(lambda pairs: "\n".join(f"{k} = {v}" for k, v in pairs)),
    st.lists(st.text(max_size=30), max_size=3).map(
        lambda names: "\n".join(f"[host.{name!r}]\nskip_verify = false" for name in names)
    ),
)


@settings(max_examples=300, deadline=None)
@given(_toml_text)
def test_parser_raises_only_invalid_argument(text: str) -> None:
    try:
        result = parse_hosts_toml(text, path="/x/hosts.toml")
    except InvalidArgument:
        return
    assert isinstance(result, HostsConfig)


# --- redirects and retries, with a transport that forces the faults -------------------


def _client(handler: httpx.MockTransport, **kwargs: object) -> RegistryClient:
    return RegistryClient(
        docker_config=False,
        transport=handler,
        retry=None,
        max_retries=2,
        **kwargs,  # type: ignore[arg-type]
    )


def test_redirect_to_plain_http_elsewhere_is_refused() -> None:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.host == "reg.example.com":
            return httpx.Response(307, headers={"Location": "http://cdn.example.net/blob"})
        return httpx.Response(200, content=b"{}")

    with (
        _client(httpx.MockTransport(handle)) as client,
        pytest.raises(RegistryError, match="HTTPS"),
    ):
        client.blob_exists("reg.example.com/app:1", "sha256:" + "a" * 64)
    assert all(not url.startswith("http://cdn") for url in seen)


def test_redirect_to_other_host_drops_authorization() -> None:
    headers: dict[str, str | None] = {}

    def handle(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        headers[host] = request.headers.get("Authorization")
        if host == "reg.example.com":
            if request.headers.get("Authorization") is None:
                return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
            return httpx.Response(307, headers={"Location": "https://cdn.example.net/blob"})
        return httpx.Response(200)

    client = _client(httpx.MockTransport(handle), credentials=Credentials("u", "secret"))
    with client:
        assert client.blob_exists("reg.example.com/app:1", "sha256:" + "a" * 64)
    assert headers["reg.example.com"] is not None
    assert headers["cdn.example.net"] is None


def test_post_is_not_retried_after_a_server_error() -> None:
    posts: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":
            return httpx.Response(404)
        posts.append(request.method)
        return httpx.Response(500)

    blob = b"data"
    descriptor = Descriptor(
        media_type="application/octet-stream",
        digest="sha256:" + hashlib.sha256(blob).hexdigest(),
        size=len(blob),
    )
    with _client(httpx.MockTransport(handle)) as client, pytest.raises(RegistryError):
        client.push_blob("reg.example.com/app:1", descriptor, blob)
    assert posts == ["POST"]


def test_post_is_retried_when_it_never_left() -> None:
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if request.method == "POST":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(404)

    descriptor = Descriptor(
        media_type="application/octet-stream", digest="sha256:" + "b" * 64, size=1
    )
    with _client(httpx.MockTransport(handle)) as client, pytest.raises(Unavailable):
        client.push_blob("reg.example.com/app:1", descriptor, b"x")
    assert calls.count("POST") == 3
