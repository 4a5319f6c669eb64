"""The registry client's bearer-token flow against the real registry in token-auth mode.

Debian's docker-registry (distribution 2.8) runs with ``auth: token`` and trusts one RSA
certificate. The tokens come from :class:`TokenServer`, a test token server in this file
(``http.server`` on 127.0.0.1) that signs JWTs with that certificate's key through the
``openssl`` command line. It speaks both token protocols our client uses: the GET with
optional basic credentials, and the OAuth POST form (``grant_type=password`` or
``refresh_token``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from libcontainerd.content import DirectoryContentStore
from libcontainerd.distribution import AsyncRegistryClient, RegistryClient
from libcontainerd.errors import AuthenticationError, InvalidArgument, NotFound, PermissionDenied
from libcontainerd.testing.image_builder import BuiltImage, build_image
from libcontainerd.testing.registry import Registry, TokenAuth, start_registry
from libcontainerd.types.auth import Credentials
from libcontainerd.types.descriptor import Descriptor

pytestmark = [
    pytest.mark.registry,
    pytest.mark.skipif(shutil.which("docker-registry") is None, reason="needs docker-registry"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl"),
]

SERVICE = "libcontainerd-test-registry"
ISSUER = "libcontainerd-test-token-issuer"
USER, PASSWORD = "alice", "wonderland"
TOKEN_LIFETIME = 300
OPENSSL_TIMEOUT = 30


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _openssl(*args: str, input_bytes: bytes = b"") -> bytes:
    done = subprocess.run(
        ["openssl", *args], input=input_bytes, capture_output=True, timeout=OPENSSL_TIMEOUT
    )
    assert done.returncode == 0, f"openssl {' '.join(args)} failed: {done.stderr!r}"
    return done.stdout


def libtrust_key_id(public_key_der: bytes) -> str:
    """The registry's key id of a public key: its PKIX DER digest, 240 bits in base32 groups."""
    encoded = base64.b32encode(hashlib.sha256(public_key_der).digest()[:30]).decode("ascii")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


@attrs.frozen
class SigningKey:
    """An RSA key and its self-signed certificate (the registry's rootcertbundle)."""

    key_path: Path
    cert_path: Path
    key_id: str

    @classmethod
    def create(cls, directory: Path) -> SigningKey:
        """Make a fresh key pair and certificate in ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        key, cert = directory / "token-key.pem", directory / "token-cert.pem"
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
            str(cert), "-days", "2", "-subj", "/CN=libcontainerd test token signer",
        )  # fmt: skip
        pem = _openssl("x509", "-in", str(cert), "-pubkey", "-noout")
        der = _openssl("pkey", "-pubin", "-outform", "DER", input_bytes=pem)
        return cls(key, cert, libtrust_key_id(der))

    def sign(self, signing_input: bytes) -> bytes:
        """An RS256 signature (RSASSA-PKCS1-v1_5 over SHA-256) of ``signing_input``."""
        return _openssl("dgst", "-sha256", "-sign", str(self.key_path), input_bytes=signing_input)


def _parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name or not actions:
        return None
    return kind, name, actions.split(",")


class TokenServer:
    """A test token server on 127.0.0.1 for the registry's ``auth: token`` mode.

    ``GET`` with valid basic credentials (or none: anonymous, pull-only) and the OAuth
    ``POST`` form (``grant_type=password`` or ``refresh_token``; both answer a fresh
    refresh token) return a JWT signed by ``key``. Users get every action they ask for;
    anonymous callers get only ``pull``. Wrong credentials get 401. ``requests`` records
    ``(method, grant, scopes)`` for each call, ``grant`` being ``basic``, ``anonymous``,
    ``password`` or ``refresh_token``. ``expires_in`` is the lifetime the responses
    announce (the JWTs themselves always live ``TOKEN_LIFETIME`` seconds).
    """

    def __init__(self, key: SigningKey, users: dict[str, str]) -> None:
        """Bind a free port on 127.0.0.1; :meth:`start` serves it."""
        self.key = key
        self.users = dict(users)
        self.refresh_tokens: dict[str, str] = {}
        self.expires_in = TOKEN_LIFETIME
        self.requests: list[tuple[str, str, tuple[str, ...]]] = []
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def realm(self) -> str:
        """The token endpoint URL."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/token"

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def reset(self) -> None:
        """Forget recorded requests and announce the default lifetime again."""
        with self.lock:
            self.requests.clear()
            self.expires_in = TOKEN_LIFETIME

    def grants(self) -> list[str]:
        """The grant kind of every request so far."""
        with self.lock:
            return [grant for _, grant, _ in self.requests]

    def issue(self, subject: str, scopes: list[str], *, anonymous: bool) -> str:
        """A signed JWT granting ``subject`` what it may have of ``scopes``."""
        access: list[dict[str, Any]] = []
        for scope in scopes:
            parsed = _parse_scope(scope)
            if parsed is None:
                continue
            kind, name, actions = parsed
            granted = [a for a in actions if a == "pull"] if anonymous else actions
            if granted:
                access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "kid": self.key.key_id}
        claims = {
            "iss": ISSUER,
            "sub": subject,
            # distribution 2.8 reads aud as a single string.
            "aud": SERVICE,
            "exp": now + TOKEN_LIFETIME,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        signature = self.key.sign(signing_input.encode("ascii"))
        return signing_input + "." + _b64url(signature)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest output clean

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _grant(
                self, method: str, grant: str, subject: str | None, scopes: list[str]
            ) -> None:
                with server.lock:
                    server.requests.append((method, grant, tuple(scopes)))
                if subject is None:
                    self._answer(401, {"error": "invalid_grant"})
                    return
                token = server.issue(subject, scopes, anonymous=subject == "")
                body: dict[str, Any] = {
                    "token": token,
                    "access_token": token,
                    "expires_in": server.expires_in,
                    "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
                if method == "POST":
                    refresh = secrets.token_urlsafe(24)
                    with server.lock:
                        server.refresh_tokens[refresh] = subject
                    body["refresh_token"] = refresh
                self._answer(200, body)

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                if url.path != "/token" or query.get("service") != [SERVICE]:
                    self._answer(400, {"error": "invalid_request"})
                    return
                scopes = [s for value in query.get("scope", []) for s in value.split()]
                authorization = self.headers.get("Authorization", "")
                if not authorization:
                    self._grant("GET", "anonymous", "", scopes)
                    return
                subject: str | None = None
                if authorization.startswith("Basic "):
                    pair = base64.b64decode(authorization[6:]).decode("utf-8", "replace")
                    user, _, password = pair.partition(":")
                    if user and server.users.get(user) == password:
                        subject = user
                self._grant("GET", "basic", subject, scopes)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode("ascii"))
                fields = {k: v[0] for k, v in form.items()}
                if self.path != "/token" or fields.get("service") != SERVICE:
                    self._answer(400, {"error": "invalid_request"})
                    return
                scopes = fields.get("scope", "").split()
                grant = fields.get("grant_type", "")
                subject: str | None = None
                if grant == "password":
                    user = fields.get("username", "")
                    if user and server.users.get(user) == fields.get("password"):
                        subject = user
                elif grant == "refresh_token":
                    with server.lock:
                        subject = server.refresh_tokens.get(fields.get("refresh_token", ""))
                else:
                    self._answer(400, {"error": "unsupported_grant_type"})
                    return
                self._grant("POST", grant, subject, scopes)

        return Handler


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("token-auth")


@pytest.fixture(scope="module")
def token_server(workdir: Path) -> Iterator[TokenServer]:
    server = TokenServer(SigningKey.create(workdir / "keys"), {USER: PASSWORD})
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def registry(workdir: Path, token_server: TokenServer) -> Iterator[Registry]:
    auth = TokenAuth(
        realm=token_server.realm,
        service=SERVICE,
        issuer=ISSUER,
        root_cert=token_server.key.cert_path,
    )
    registry = start_registry(workdir / "registry", token_auth=auth)
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def image(workdir: Path) -> BuiltImage:
    return build_image(workdir / "layout", platforms=("linux/amd64", "linux/arm64"))


@pytest.fixture()
def tokens(token_server: TokenServer) -> TokenServer:
    token_server.reset()
    return token_server


def _target(image: BuiltImage) -> Descriptor:
    return Descriptor.from_dict(dict(image.target))


def _client(credentials: Credentials | None = None) -> RegistryClient:
    return RegistryClient(credentials=credentials, docker_config=False)


def _assert_pulled(store: DirectoryContentStore, image: BuiltImage) -> None:
    digests = store.digests()
    assert image.index_digest in digests
    assert set(image.manifest_digests.values()) <= set(digests)
    for digest in digests:
        assert store.read_blob(digest) == image.blob_path(digest).read_bytes()
    assert store.ingests() == []


def _push(registry: Registry, image: BuiltImage, repository: str) -> str:
    ref = f"{registry.host}/{repository}:v1"
    with _client(Credentials(USER, PASSWORD)) as client:
        assert client.push_graph(ref, DirectoryContentStore(image.layout), _target(image)) == (
            _target(image)
        )
    return ref


def test_registry_challenges_with_the_token_realm(
    registry: Registry, token_server: TokenServer
) -> None:
    assert registry.token_auth is not None
    response = httpx.get(f"{registry.url}/v2/", trust_env=False)
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'realm="{token_server.realm}"' in challenge
    assert f'service="{SERVICE}"' in challenge


def test_push_and_pull_with_password(
    registry: Registry, image: BuiltImage, tokens: TokenServer, tmp_path: Path
) -> None:
    ref = f"{registry.host}/lib/password:v1"
    store = DirectoryContentStore(tmp_path / "out")
    with _client(Credentials(USER, PASSWORD)) as client:
        pushed = client.push_graph(ref, DirectoryContentStore(image.layout), _target(image))
        assert pushed.digest == image.index_digest
        result = client.pull_graph(ref, store, platform="all")
    assert result.target.digest == image.index_digest
    _assert_pulled(store, image)
    # Our client asks with the OAuth form first; the test server answers it.
    assert set(tokens.grants()) == {"password"}


def test_tokens_are_reused_from_the_cache(
    registry: Registry, image: BuiltImage, tokens: TokenServer, tmp_path: Path
) -> None:
    ref = _push(registry, image, "lib/cache")
    tokens.reset()
    with _client(Credentials(USER, PASSWORD)) as client:
        client.pull_graph(ref, DirectoryContentStore(tmp_path / "one"), platform="all")
        # Index, two manifests, two configs, layers: many requests, one pull token.
        assert len(tokens.requests) == 1
        assert tokens.requests[0][2] == ("repository:lib/cache:pull",)
        client.pull_graph(ref, DirectoryContentStore(tmp_path / "two"), platform="all")
        assert len(tokens.requests) == 1
    # A new client has an empty cache.
    with _client(Credentials(USER, PASSWORD)) as client:
        client.resolve(ref)
    assert len(tokens.requests) == 2


def test_announced_lifetime_is_honoured(
    registry: Registry, image: BuiltImage, tokens: TokenServer
) -> None:
    ref = _push(registry, image, "lib/short")
    tokens.reset()
    tokens.expires_in = 1
    with _client(Credentials(USER, PASSWORD)) as client:
        client.resolve(ref)
        assert len(tokens.requests) == 1
        time.sleep(1.2)
        client.resolve(ref)
        assert len(tokens.requests) == 2


def test_cross_repository_mount_asks_for_both_scopes(
    registry: Registry, image: BuiltImage, tokens: TokenServer
) -> None:
    _push(registry, image, "lib/mount-source")
    layer = next(iter(image.layer_digests.values()))[0]
    descriptor = Descriptor(
        media_type="application/vnd.oci.image.layer.v1.tar+gzip",
        digest=layer,
        size=image.blob_path(layer).stat().st_size,
    )
    tokens.reset()
    ref = f"{registry.host}/lib/mount-target:v1"
    with _client(Credentials(USER, PASSWORD)) as client:
        assert client.mount_blob(ref, descriptor, "lib/mount-source") is True
        assert client.blob_exists(ref, layer)
    assert (
        "POST",
        "password",
        ("repository:lib/mount-source:pull", "repository:lib/mount-target:pull,push"),
    ) in tokens.requests


def test_anonymous_pull_gets_a_pull_only_token(
    registry: Registry, image: BuiltImage, tokens: TokenServer, tmp_path: Path
) -> None:
    ref = _push(registry, image, "lib/public")
    tokens.reset()
    store = DirectoryContentStore(tmp_path / "out")
    with _client() as client:
        result = client.pull_graph(ref, store, platform="all")
        assert result.target.digest == image.index_digest
        _assert_pulled(store, image)
        assert tokens.requests == [("GET", "anonymous", ("repository:lib/public:pull",))]
        with pytest.raises(AuthenticationError) as caught:
            client.push_graph(
                f"{registry.host}/lib/public:v2",
                DirectoryContentStore(image.layout),
                _target(image),
            )
    error = caught.value
    assert isinstance(error, PermissionDenied)
    assert error.status == 401
    assert registry.host in str(error)
    assert "no credentials" in str(error)
    # The push asked for a token (anonymous, so pull-only) and nothing was tagged.
    assert ("GET", "anonymous", ("repository:lib/public:pull,push",)) in tokens.requests
    with _client(Credentials(USER, PASSWORD)) as client, pytest.raises(NotFound):
        client.resolve(f"{registry.host}/lib/public:v2")


def test_wrong_password_is_a_typed_error_naming_the_registry(
    registry: Registry, image: BuiltImage, tokens: TokenServer
) -> None:
    ref = f"{registry.host}/lib/wrong:v1"
    with _client(Credentials(USER, "not-the-password")) as client:
        with pytest.raises(AuthenticationError) as pushing:
            client.push_graph(ref, DirectoryContentStore(image.layout), _target(image))
        with pytest.raises(AuthenticationError) as pulling:
            client.resolve(ref)
    for caught in (pushing, pulling):
        message = str(caught.value)
        assert registry.host in message
        assert tokens.realm in message
        assert "user name and password" in message
        assert caught.value.status == 401
        assert "not-the-password" not in message
    assert set(tokens.grants()) == {"password"}


def test_refresh_token_path(
    registry: Registry, image: BuiltImage, tokens: TokenServer, tmp_path: Path
) -> None:
    # What `docker login` stores as an identity token: a refresh token from the OAuth form.
    answer = httpx.post(
        tokens.realm,
        data={
            "grant_type": "password",
            "username": USER,
            "password": PASSWORD,
            "service": SERVICE,
            "client_id": "test",
            "access_type": "offline",
        },
        trust_env=False,
    )
    assert answer.status_code == 200
    refresh = answer.json()["refresh_token"]
    tokens.reset()
    ref = f"{registry.host}/lib/refresh:v1"
    store = DirectoryContentStore(tmp_path / "out")
    with _client(Credentials(identity_token=refresh)) as client:
        client.push_graph(ref, DirectoryContentStore(image.layout), _target(image))
        client.pull_graph(ref, store, platform="all")
    _assert_pulled(store, image)
    assert tokens.grants()
    assert set(tokens.grants()) == {"refresh_token"}

    tokens.reset()
    with (
        _client(Credentials(identity_token="revoked-or-made-up")) as client,
        pytest.raises(AuthenticationError) as caught,
    ):
        client.resolve(ref)
    assert registry.host in str(caught.value)
    assert tokens.grants() == ["refresh_token"]


def test_registry_token_is_sent_as_is(
    registry: Registry, image: BuiltImage, tokens: TokenServer
) -> None:
    ref = _push(registry, image, "lib/preissued")
    token = tokens.issue(USER, ["repository:lib/preissued:pull"], anonymous=False)
    tokens.reset()
    with _client(Credentials(registry_token=token)) as client:
        assert client.resolve(ref).digest == image.index_digest
    assert tokens.requests == []


def test_registry_refuses_tokens_it_cannot_trust(
    registry: Registry, image: BuiltImage, tokens: TokenServer
) -> None:
    # Proof that the tokens above pass a real check: a forged signature or a foreign
    # audience is refused with our typed error.
    ref = _push(registry, image, "lib/forged")
    good = tokens.issue(USER, ["repository:lib/forged:pull"], anonymous=False)
    head, payload, _ = good.split(".")
    forged = f"{head}.{payload}.{_b64url(tokens.key.sign(b'something else'))}"
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["aud"] = "some-other-service"
    other = f"{head}.{_b64url(json.dumps(claims).encode())}"
    other += "." + _b64url(tokens.key.sign(other.encode()))
    with _client(Credentials(registry_token=good)) as client:
        assert client.resolve(ref).digest == image.index_digest
    for token in (forged, other):
        with (
            _client(Credentials(registry_token=token)) as client,
            pytest.raises(AuthenticationError) as caught,
        ):
            client.resolve(ref)
        assert registry.host in str(caught.value)


def test_async_client_push_and_pull(
    registry: Registry, image: BuiltImage, tokens: TokenServer, tmp_path: Path
) -> None:
    ref = f"{registry.host}/lib/async:v1"
    store = DirectoryContentStore(tmp_path / "out")

    async def main() -> None:
        async with AsyncRegistryClient(
            credentials={registry.host: Credentials(USER, PASSWORD)}, docker_config=False
        ) as client:
            pushed = await client.push_graph(
                ref, DirectoryContentStore(image.layout), _target(image)
            )
            assert pushed.digest == image.index_digest
            await client.pull_graph(ref, store, platform="all")
        async with AsyncRegistryClient(docker_config=False) as anonymous:
            with pytest.raises(AuthenticationError):
                await anonymous.push_graph(
                    f"{registry.host}/lib/async:anon",
                    DirectoryContentStore(image.layout),
                    _target(image),
                )

    asyncio.run(main())
    _assert_pulled(store, image)
    assert "password" in tokens.grants()
    assert "anonymous" in tokens.grants()


def test_token_auth_settings_are_validated(tmp_path: Path, token_server: TokenServer) -> None:
    cert = token_server.key.cert_path
    with pytest.raises(InvalidArgument, match="realm"):
        TokenAuth(realm="ftp://127.0.0.1/token", service=SERVICE, issuer=ISSUER, root_cert=cert)
    with pytest.raises(InvalidArgument, match="service"):
        TokenAuth(realm=token_server.realm, service="", issuer=ISSUER, root_cert=cert)
    with pytest.raises(InvalidArgument, match="not a file"):
        TokenAuth(
            realm=token_server.realm, service=SERVICE, issuer=ISSUER, root_cert=tmp_path / "x"
        )
    auth = TokenAuth(realm=token_server.realm, service=SERVICE, issuer=ISSUER, root_cert=cert)
    with pytest.raises(InvalidArgument, match="exclusive"):
        start_registry(tmp_path / "both", htpasswd=("u", "p"), token_auth=auth)
    assert not (tmp_path / "both").exists()
