"""Faults the real registry cannot show, forced by small fake peers on 127.0.0.1.

Each peer here is a few lines of ``http.server`` in a thread. They exist only to
produce what a well-behaved registry never does (a connection dropped mid-blob, rate
limiting, bytes that do not match their digest, schema 1 manifests, lying headers) and
to stand in for a bearer token server: the real registry can be configured with
``auth: token`` but that needs JWTs signed with a key, so the bearer flow is tested
against a fake registry plus a fake token server (see :class:`TokenRegistry`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from libcontainerd.content import DirectoryContentStore
from libcontainerd.distribution import AsyncRegistryClient, RegistryClient, RetryPolicy
from libcontainerd.errors import (
    AuthenticationError,
    DigestMismatch,
    RegistryError,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
)
from libcontainerd.testing.tls import make_ca, make_server_cert
from libcontainerd.types.auth import Credentials
from libcontainerd.types.descriptor import Descriptor

FAST = RetryPolicy(max_retries=3, backoff_base=0.01, backoff_cap=0.05, max_retry_after=0.2)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        server: Peer = self.server.peer  # type: ignore[attr-defined]
        server.requests.append((self.command, self.path, dict(self.headers.items())))
        server.app(self)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # dropped connections and TLS probes are part of these tests


class Peer:
    """A fake HTTP peer on 127.0.0.1 running ``app(handler)`` for every request."""

    def __init__(
        self, app: Callable[[_Handler], None], context: ssl.SSLContext | None = None
    ) -> None:
        self.app = app
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.server = _QuietServer(("127.0.0.1", 0), _Handler)
        if context is not None:
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.server.peer = self  # type: ignore[attr-defined]
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def paths(self, method: str) -> list[str]:
        return [p for m, p, _ in self.requests if m == method and p.startswith("/v2/")]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def peer_factory() -> Iterator[Callable[[Callable[[_Handler], None]], Peer]]:
    peers: list[Peer] = []

    def make(app: Callable[[_Handler], None], context: ssl.SSLContext | None = None) -> Peer:
        peer = Peer(app, context)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.close()


BLOB = bytes(range(256)) * 800  # 200 KiB
BLOB_DESC = Descriptor(media_type="application/octet-stream", digest=_digest(BLOB), size=len(BLOB))


def _dropping_blob_app(handler: _Handler) -> None:
    """Sends 50 000 bytes of the blob then drops the connection; honours Range later."""
    if not handler.path.startswith(f"/v2/repo/blobs/{BLOB_DESC.digest}"):
        handler.reply(404)
        return
    wanted = handler.headers.get("Range")
    if wanted is None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(BLOB)))
        handler.end_headers()
        handler.wfile.write(BLOB[:50_000])
        handler.wfile.flush()
        handler.connection.shutdown(socket.SHUT_RDWR)
        handler.close_connection = True
        return
    start = int(wanted.removeprefix("bytes=").split("-")[0])
    handler.reply(
        206,
        BLOB[start:],
        {"Content-Range": f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}"},
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_dropped_connection_resumes_with_range(
    peer_factory: Callable[..., Peer], tmp_path: Path, mode: str
) -> None:
    peer = peer_factory(_dropping_blob_app)
    store = DirectoryContentStore(tmp_path / "store")
    ref = f"{peer.host}/repo:x"
    if mode == "sync":
        with RegistryClient(docker_config=False, retry=FAST) as client:
            client.fetch_blob(ref, BLOB_DESC, store)
    else:

        async def run() -> None:
            async with AsyncRegistryClient(docker_config=False, retry=FAST) as client:
                await client.fetch_blob(ref, BLOB_DESC, store)

        asyncio.run(run())
    assert store.read_blob(BLOB_DESC.digest) == BLOB
    ranges = [h.get("Range") for m, p, h in peer.requests if m == "GET" and "/blobs/" in p]
    assert ranges == [None, "bytes=50000-"]
    assert store.ingests() == []


def test_wrong_bytes_raise_digest_mismatch_and_store_nothing(
    peer_factory: Callable[..., Peer], tmp_path: Path
) -> None:
    corrupt = bytearray(BLOB)
    corrupt[1000] ^= 0xFF

    def app(handler: _Handler) -> None:
        handler.reply(200, bytes(corrupt))

    peer = peer_factory(app)
    store = DirectoryContentStore(tmp_path / "store")
    with (
        RegistryClient(docker_config=False, retry=FAST) as client,
        pytest.raises(DigestMismatch) as caught,
    ):
        client.fetch_blob(f"{peer.host}/repo:x", BLOB_DESC, store)
    assert caught.value.expected == BLOB_DESC.digest
    assert caught.value.actual == _digest(bytes(corrupt))
    assert store.digests() == [] and store.ingests() == []


MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": BLOB_DESC.digest,
            "size": BLOB_DESC.size,
        },
        "layers": [],
    }
).encode()


def test_rate_limit_then_success(peer_factory: Callable[..., Peer]) -> None:
    calls = {"n": 0}

    def app(handler: _Handler) -> None:
        calls["n"] += 1
        if calls["n"] <= 2:
            handler.reply(429, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}', {"Retry-After": "0"})
            return
        handler.reply(200, MANIFEST, {"Content-Type": OCI_MANIFEST})

    peer = peer_factory(app)
    with RegistryClient(docker_config=False, retry=FAST) as client:
        descriptor = client.resolve(f"{peer.host}/repo:tag")
    assert descriptor.digest == _digest(MANIFEST)
    assert descriptor.media_type == OCI_MANIFEST
    assert calls["n"] >= 3


def test_retries_are_bounded(peer_factory: Callable[..., Peer]) -> None:
    peer = peer_factory(lambda h: h.reply(503, b"busy"))
    with (
        RegistryClient(docker_config=False, retry=FAST) as client,
        pytest.raises(RegistryError) as caught,
    ):
        client.resolve(f"{peer.host}/repo:tag")
    assert caught.value.status == 503
    # One HEAD and one GET, each tried 1 + max_retries times.
    assert len(peer.paths("HEAD")) == 4 and len(peer.paths("GET")) == 4


def test_schema1_refused_naming_media_type(peer_factory: Callable[..., Peer]) -> None:
    schema1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"
    body = json.dumps({"schemaVersion": 1, "name": "repo", "tag": "old"}).encode()
    peer = peer_factory(lambda h: h.reply(200, body, {"Content-Type": schema1}))
    with (
        RegistryClient(docker_config=False, retry=FAST) as client,
        pytest.raises(Unimplemented, match=r"schema 1.*prettyjws"),
    ):
        client.resolve(f"{peer.host}/repo:old")


def test_manifest_size_is_capped(peer_factory: Callable[..., Peer]) -> None:
    big = b" " * (4 * 1024 * 1024 + 1)
    peer = peer_factory(lambda h: h.reply(200, big, {"Content-Type": OCI_MANIFEST}))
    with (
        RegistryClient(docker_config=False, retry=FAST) as client,
        pytest.raises(ResourceExhausted, match="limit"),
    ):
        client.resolve(f"{peer.host}/repo:big")


def test_lying_content_digest_header(peer_factory: Callable[..., Peer]) -> None:
    lie = _digest(b"something else")
    peer = peer_factory(
        lambda h: h.reply(
            200, MANIFEST, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": lie}
        )
    )
    with (
        RegistryClient(docker_config=False, retry=FAST) as client,
        pytest.raises(DigestMismatch),
    ):
        client.resolve(f"{peer.host}/repo:tag")


def test_cancelled_async_download_leaves_nothing(
    peer_factory: Callable[..., Peer], tmp_path: Path
) -> None:
    release = threading.Event()

    def slow(handler: _Handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(BLOB)))
        handler.end_headers()
        handler.wfile.write(BLOB[:10_000])
        handler.wfile.flush()
        release.wait(10)

    peer = peer_factory(slow)
    store = DirectoryContentStore(tmp_path / "store")
    seen = asyncio.Event

    async def run() -> None:
        started = seen()

        def progress(event: object) -> None:
            if getattr(event, "current", 0) > 0:
                started.set()

        async with AsyncRegistryClient(docker_config=False, retry=FAST) as client:
            task = asyncio.ensure_future(
                client.fetch_blob(f"{peer.host}/repo:x", BLOB_DESC, store, progress=progress)
            )
            await asyncio.wait_for(started.wait(), 10)
            assert len(store.ingests()) == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    try:
        asyncio.run(run())
    finally:
        release.set()
    assert store.digests() == [] and store.ingests() == []


class TokenRegistry:
    """A fake registry that wants bearer tokens, and the fake token server issuing them.

    Stands in for a registry with ``auth: token`` (which needs signed JWTs). The token
    server accepts anonymous GETs (pull only), GETs with basic credentials, and OAuth
    POSTs (``grant_type=password`` or ``refresh_token``); ``post_supported=False`` makes
    it answer POSTs with 405 like servers without an OAuth endpoint.
    """

    def __init__(
        self, factory: Callable[..., Peer], *, post_supported: bool = True, anonymous: bool = True
    ) -> None:
        self.post_supported = post_supported
        self.anonymous = anonymous
        self.issued: list[dict[str, Any]] = []
        self.tokens = factory(self._token_app)
        self.registry = factory(self._registry_app)

    @property
    def host(self) -> str:
        return self.registry.host

    def _token_app(self, handler: _Handler) -> None:
        url = urllib.parse.urlsplit(handler.path)
        if handler.command == "POST":
            if not self.post_supported:
                handler.reply(405)
                return
            form = dict(urllib.parse.parse_qsl(handler.body.decode()))
            ok = (form.get("grant_type") == "password" and form.get("password") == "pass") or (
                form.get("grant_type") == "refresh_token" and form.get("refresh_token") == "idtok"
            )
            scopes = form.get("scope", "").split()
            kind = form.get("grant_type", "")
        else:
            query = urllib.parse.parse_qs(url.query)
            scopes = query.get("scope", [])
            auth = handler.headers.get("Authorization", "")
            if auth:
                user_pass = base64.b64decode(auth.split()[1]).decode()
                ok = user_pass == "user:pass"
                kind = "basic"
            else:
                ok = self.anonymous
                kind = "anonymous"
        if not ok:
            handler.reply(401, b'{"details":"bad credentials"}')
            return
        token = f"tok-{len(self.issued)}"
        self.issued.append({"token": token, "kind": kind, "scopes": scopes})
        answer = {"access_token" if kind != "anonymous" else "token": token, "expires_in": 300}
        handler.reply(200, json.dumps(answer).encode(), {"Content-Type": "application/json"})

    def _registry_app(self, handler: _Handler) -> None:
        auth = handler.headers.get("Authorization", "")
        valid = {f"Bearer {entry['token']}" for entry in self.issued}
        if auth not in valid:
            realm = f"http://{self.tokens.host}/token"
            handler.reply(
                401,
                b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                {
                    "WWW-Authenticate": f'Bearer realm="{realm}",service="fake",'
                    f'scope="repository:team/app:pull"'
                },
            )
            return
        handler.reply(200, MANIFEST, {"Content-Type": OCI_MANIFEST})


@pytest.mark.parametrize(
    ("credentials", "post_supported", "kind"),
    [
        (None, True, "anonymous"),
        (Credentials(username="user", password="pass"), True, "password"),
        (Credentials(username="user", password="pass"), False, "basic"),
        (Credentials(identity_token="idtok"), True, "refresh_token"),
    ],
)
def test_bearer_token_flows(
    peer_factory: Callable[..., Peer],
    credentials: Credentials | None,
    post_supported: bool,
    kind: str,
) -> None:
    fake = TokenRegistry(peer_factory, post_supported=post_supported)
    with RegistryClient(docker_config=False, credentials=credentials, retry=FAST) as client:
        first = client.resolve(f"{fake.host}/team/app:v1")
        second = client.resolve(f"{fake.host}/team/app:v2")
    assert first.digest == second.digest == _digest(MANIFEST)
    # One token, cached for the second resolve (same realm, service and scope).
    assert [entry["kind"] for entry in fake.issued] == [kind]
    assert fake.issued[0]["scopes"] == ["repository:team/app:pull"]


def test_bearer_wrong_credentials(peer_factory: Callable[..., Peer]) -> None:
    fake = TokenRegistry(peer_factory, anonymous=False)
    wrong = Credentials(username="user", password="nope")
    with (
        RegistryClient(docker_config=False, credentials=wrong, retry=FAST) as client,
        pytest.raises(AuthenticationError, match=fake.host),
    ):
        client.resolve(f"{fake.host}/team/app:v1")
    assert fake.issued == []


def test_bearer_token_used_by_async_client_too(peer_factory: Callable[..., Peer]) -> None:
    fake = TokenRegistry(peer_factory)

    async def run() -> str:
        async with AsyncRegistryClient(
            docker_config=False, credentials={fake.host: Credentials(identity_token="idtok")}
        ) as client:
            return (await client.resolve(f"{fake.host}/team/app:v1")).digest

    start = time.monotonic()
    assert asyncio.run(run()) == _digest(MANIFEST)
    assert time.monotonic() - start < 10
    assert [entry["kind"] for entry in fake.issued] == ["refresh_token"]


def _client_cert(ca_cert: Path, ca_key: Path, directory: Path) -> tuple[Path, Path]:
    """Issue a clientAuth certificate signed by the test CA (openssl, as testing.tls does)."""
    key, csr, cert, ext = (directory / n for n in ("c-key.pem", "c.csr", "c.pem", "c.ext"))
    ext.write_text("extendedKeyUsage=clientAuth\n")
    for args in (
        ["genrsa", "-out", str(key), "2048"],
        ["req", "-new", "-key", str(key), "-subj", "/CN=test-client", "-out", str(csr)],
        [
            *("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key)),
            *("-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert)),
        ],
    ):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_client_certificate_is_presented(peer_factory: Callable[..., Peer], tmp_path: Path) -> None:
    """Mutual TLS against a fake TLS peer that requires a client certificate.

    The real registry can require client certificates (``http.tls.clientcas``), but
    ``start_registry``'s readiness probe carries none, so it never reports ready; this
    peer stands in until the fixture learns to probe with a client certificate.
    """
    ca = make_ca(tmp_path / "tls")
    server_cert, server_key = make_server_cert(ca, tmp_path / "tls")
    client_cert = _client_cert(ca.cert_path, ca.key_path, tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca.cert_path))
    context.load_cert_chain(str(server_cert), str(server_key))
    context.verify_mode = ssl.CERT_REQUIRED
    peer = peer_factory(lambda h: h.reply(200, MANIFEST, {"Content-Type": OCI_MANIFEST}), context)
    ref = f"{peer.host}/repo:tag"
    with RegistryClient(
        docker_config=False, ca_file=ca.cert_path, client_cert=client_cert, retry=FAST
    ) as client:
        assert client.resolve(ref).digest == _digest(MANIFEST)
    with (
        RegistryClient(docker_config=False, ca_file=ca.cert_path, max_retries=0) as client,
        pytest.raises(Unavailable),
    ):
        client.resolve(ref)


def _graph() -> tuple[dict[str, tuple[bytes, str]], bytes, list[bytes]]:
    """A two-platform image served by path: index -> manifests -> config + 2 layers."""
    layers = [bytes([n]) * 300_000 for n in (1, 2)]
    config = b'{"architecture":"amd64","os":"linux"}'
    routes: dict[str, tuple[bytes, str]] = {}
    for blob in (*layers, config):
        routes[f"/v2/repo/blobs/{_digest(blob)}"] = (blob, "application/octet-stream")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": _digest(layer),
                    "size": len(layer),
                }
                for layer in layers
            ],
        }
    ).encode()
    routes[f"/v2/repo/manifests/{_digest(manifest)}"] = (manifest, OCI_MANIFEST)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": _digest(manifest),
                    "size": len(manifest),
                    "platform": {"os": "linux", "architecture": arch},
                }
                for arch in ("amd64", "arm64")
            ],
        }
    ).encode()
    routes["/v2/repo/manifests/v1"] = (index, "application/vnd.oci.image.index.v1+json")
    return routes, index, layers


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_failed_blob_in_pull_leaves_no_partial_image(
    peer_factory: Callable[..., Peer], tmp_path: Path, mode: str
) -> None:
    routes, _, layers = _graph()
    bad = f"/v2/repo/blobs/{_digest(layers[1])}"
    routes[bad] = (layers[1][:-1] + b"X", "application/octet-stream")

    def app(handler: _Handler) -> None:
        body, content_type = routes.get(handler.path, (b"", ""))
        if not content_type:
            handler.reply(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
            return
        handler.reply(200, body, {"Content-Type": content_type})

    peer = peer_factory(app)
    store = DirectoryContentStore(tmp_path / "store")
    ref = f"{peer.host}/repo:v1"
    with pytest.raises(DigestMismatch):
        if mode == "sync":
            with RegistryClient(docker_config=False, retry=FAST) as client:
                client.pull_graph(ref, store, platform="linux/amd64", max_concurrent=2)
        else:

            async def run() -> None:
                async with AsyncRegistryClient(docker_config=False, retry=FAST) as client:
                    await client.pull_graph(ref, store, platform="linux/amd64", max_concurrent=2)

            asyncio.run(run())
    # Good blobs may have landed, but no manifest or index refers to missing content.
    assert _digest(layers[1]) not in store.digests()
    for digest in store.digests():
        assert f"/v2/repo/blobs/{digest}" in routes
    assert store.ingests() == []
    # With the blob repaired the pull completes and reuses what was stored.
    routes[bad] = (layers[1], "application/octet-stream")
    with RegistryClient(docker_config=False, retry=FAST) as client:
        result = client.pull_graph(ref, store, platform="linux/amd64")
    assert len(result.blobs) == 3 and len(store.digests()) == 5


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_blob_downloads_respect_max_concurrent(
    peer_factory: Callable[..., Peer], tmp_path: Path, mode: str
) -> None:
    """A fake peer that counts blob downloads in flight (the registry cannot report it)."""
    layers = [bytes([n]) * 1000 for n in range(6)]
    config = b'{"architecture":"amd64","os":"linux"}'
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": _digest(x),
                    "size": len(x),
                }
                for x in layers
            ],
        }
    ).encode()
    blobs = {_digest(b): b for b in (*layers, config)}
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def app(handler: _Handler) -> None:
        if "/manifests/" in handler.path:
            handler.reply(200, manifest, {"Content-Type": OCI_MANIFEST})
            return
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.1)
        with lock:
            state["now"] -= 1
        handler.reply(200, blobs[handler.path.rsplit("/", 1)[1]])

    peer = peer_factory(app)
    store = DirectoryContentStore(tmp_path / "store")
    ref = f"{peer.host}/repo:v1"
    if mode == "sync":
        with RegistryClient(docker_config=False, retry=FAST) as client:
            result = client.pull_graph(ref, store, max_concurrent=2)
    else:

        async def run() -> Any:
            async with AsyncRegistryClient(docker_config=False, retry=FAST) as client:
                return await client.pull_graph(ref, store, max_concurrent=2)

        result = asyncio.run(run())
    assert len(result.blobs) == 7
    assert state["max"] == 2
