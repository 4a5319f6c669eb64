"""The services that tests start: a private containerd, a private registry, a test CA.

Everything here runs the real programs (containerd, ctr, runc, docker-registry, skopeo,
openssl, htpasswd); a test skips, saying why, when a program is missing or root is needed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import ssl
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcontainerd._toml import loads as toml_loads
from libcontainerd.errors import FailedPrecondition, InvalidArgument, Unavailable
from libcontainerd.remote.supervisor import toml_str
from libcontainerd.testing import containerd_daemon as cd
from libcontainerd.testing.containerd_daemon import start_containerd
from libcontainerd.testing.registry import start_registry
from libcontainerd.testing.tls import CA, make_ca, make_server_cert


def _toml_loads(text: str) -> dict[str, Any]:
    return toml_loads(text, what="the generated config")


IS_ROOT = os.geteuid() == 0


def _require(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH")


def _require_root() -> None:
    if not IS_ROOT:
        pytest.skip("needs root (containerd and runc manage mounts and cgroups)")


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{args} failed ({done.returncode}): {done.stderr}")
    return done


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _open_paths(pid: int) -> list[str]:
    paths = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            paths.append(os.readlink(fd))
        except OSError:
            continue
    return paths


def _unix_listen_paths(pid: int) -> set[str]:
    inodes = _socket_inodes(pid)
    paths = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        # Inode is field 6; a bound socket has its path as field 7.
        if len(fields) >= 8 and fields[6] in inodes:
            paths.add(fields[7])
    return paths


def _tcp_listen_addrs(pid: int) -> set[str]:
    inodes = _socket_inodes(pid)
    addrs = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                addrs.add(fields[1])
    return addrs


def _alive(pid: int) -> bool:
    return cd._process_alive(pid)


# --------------------------------------------------------------------------------------
# Pure helpers (no root, no daemons)
# --------------------------------------------------------------------------------------


def _escape_mount_path(path: str) -> str:
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


@settings(max_examples=300)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_mountinfo_path_decoding_round_trips(path: str) -> None:
    assert cd._decode_mount_path(_escape_mount_path(path)) == path


@settings(max_examples=300)
@given(st.text(max_size=60))
def test_toml_strings_round_trip(value: str) -> None:
    assert _toml_loads(f"k = {toml_str(value)}")["k"] == value


def test_mounts_under_sees_real_mounts() -> None:
    assert Path("/proc") in cd._mounts_under([Path("/proc")])
    assert cd._mounts_under([Path("/nonexistent-libcontainerd-dir")]) == []


def test_start_containerd_rejects_bad_extra_config_before_touching_disk(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="extra_config"):
        start_containerd(tmp_path / "ctd", extra_config="[[[ not toml")
    assert not (tmp_path / "ctd").exists()


def test_start_containerd_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="not found"):
        start_containerd(tmp_path / "ctd", binary="no-such-containerd-binary")
    assert not (tmp_path / "ctd").exists()


def test_start_registry_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="docker-registry"):
        start_registry(tmp_path / "reg", binary="no-such-registry-binary")


# --------------------------------------------------------------------------------------
# TLS material (needs openssl)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> CA:
    _require("openssl")
    return make_ca(tmp_path_factory.mktemp("ca"))


def test_server_cert_verifies_against_ca(test_ca: CA, tmp_path: Path) -> None:
    cert, key = make_server_cert(test_ca, tmp_path, hosts=("127.0.0.1", "localhost", "::1"))
    _run("openssl", "verify", "-CAfile", str(test_ca.cert_path), str(cert))
    san = _run("openssl", "x509", "-in", str(cert), "-noout", "-ext", "subjectAltName").stdout
    assert "IP Address:127.0.0.1" in san
    assert "DNS:localhost" in san
    assert "IP Address:0:0:0:0:0:0:0:1" in san
    # The key matches the certificate, and nothing but the pair is left behind.
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["server-key.pem", "server.pem"]
    assert key.stat().st_mode & 0o077 == 0


def test_server_cert_python_verification(test_ca: CA, tmp_path: Path) -> None:
    cert, key = make_server_cert(test_ca, tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(test_ca.cert_path))
    client_ctx.verify_flags |= getattr(ssl, "VERIFY_X509_STRICT", 0)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as raw_client:
            conn, _ = listener.accept()
            with conn:
                # Handshake both ends in lock-step using non-blocking memory BIOs would be
                # overkill: a thread is enough for one handshake.
                import threading

                server_err: list[BaseException] = []

                def serve() -> None:
                    try:
                        with server_ctx.wrap_socket(conn, server_side=True) as s:
                            s.sendall(b"ok")
                    except BaseException as exc:  # pragma: no cover - reported below
                        server_err.append(exc)

                t = threading.Thread(target=serve)
                t.start()
                with client_ctx.wrap_socket(raw_client, server_hostname="localhost") as c:
                    assert c.recv(2) == b"ok"
                t.join(10)
                assert not server_err


@pytest.mark.parametrize(
    "hosts",
    [(), ("bad host",), ("-leading.example",), ("a" * 64 + ".example",), ("x\n",)],
)
def test_server_cert_rejects_bad_hosts(test_ca: CA, tmp_path: Path, hosts: tuple[str]) -> None:
    with pytest.raises(InvalidArgument):
        make_server_cert(test_ca, tmp_path / "out", hosts=hosts)
    assert not (tmp_path / "out").exists()


def test_server_cert_rejects_a_bare_string(test_ca: CA, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not a str"):
        make_server_cert(test_ca, tmp_path, hosts="localhost")


def test_tls_never_overwrites(test_ca: CA, tmp_path: Path) -> None:
    make_server_cert(test_ca, tmp_path)
    with pytest.raises(InvalidArgument, match="exists already"):
        make_server_cert(test_ca, tmp_path)
    make_ca(tmp_path / "ca")
    with pytest.raises(InvalidArgument, match="exists already"):
        make_ca(tmp_path / "ca")


def test_ca_value_is_validated(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not a file"):
        CA(tmp_path / "missing.pem", tmp_path / "missing-key.pem")


# --------------------------------------------------------------------------------------
# containerd
# --------------------------------------------------------------------------------------


def _ctr(daemon: cd.ContainerdDaemon, *args: str, check: bool = True) -> str:
    return _run("ctr", "--address", str(daemon.socket_path), *args, check=check).stdout


@pytest.fixture
def need_containerd() -> None:
    _require_root()
    _require("containerd", "ctr")


@pytest.mark.containerd
@pytest.mark.usefixtures("need_containerd")
def test_containerd_is_private_and_stops_clean(tmp_path: Path) -> None:
    var_lib_existed = Path("/var/lib/containerd").exists()
    opt_existed = Path("/opt/containerd").exists()
    daemon = start_containerd(tmp_path / "ctd")
    try:
        assert daemon.running
        assert daemon.health()
        assert daemon.address == f"unix://{daemon.socket_path}"
        assert tmp_path in daemon.socket_path.parents
        pid = daemon.pid

        version = _ctr(daemon, "version")
        assert "Server:" in version
        assert "UUID" in version
        _ctr(daemon, "namespaces", "create", "lcd-test")
        assert "lcd-test" in _ctr(daemon, "namespaces", "ls")

        config = _toml_loads(daemon.config_path.read_text())
        assert config["version"] == 2
        assert config["root"] == str(daemon.root)
        assert config["state"] == str(daemon.state)
        assert config["grpc"]["address"] == str(daemon.socket_path)
        # Runtime state lives in our state dir, persistent data in our root.
        assert (daemon.state / "io.containerd.runtime.v2.task").is_dir()
        assert (daemon.root / "io.containerd.metadata.v1.bolt" / "meta.db").is_file()

        # Every socket it listens on and every file it holds is ours.
        listening = _unix_listen_paths(pid)
        assert listening == {str(daemon.socket_path), str(daemon.ttrpc_socket_path)}
        for path in _open_paths(pid):
            assert not path.startswith(("/run/containerd", "/var/lib/containerd")), path
        assert _tcp_listen_addrs(pid) == set()
        logs = daemon.logs()
        assert "containerd successfully booted" in logs
        assert "/run/containerd" not in logs
        assert "/var/lib/containerd" not in logs
    finally:
        daemon.stop()

    assert not _alive(pid)
    assert not daemon.running
    for d in (daemon.root, daemon.state, daemon.temp):
        assert not d.exists()
    assert not daemon.socket_path.exists()
    assert not daemon.ttrpc_socket_path.exists()
    assert daemon.log_path.is_file()  # kept for post-mortems
    assert Path("/var/lib/containerd").exists() == var_lib_existed
    assert Path("/opt/containerd").exists() == opt_existed
    daemon.stop()  # idempotent
    with pytest.raises(FailedPrecondition):
        _ = daemon.pid


@pytest.mark.containerd
@pytest.mark.usefixtures("need_containerd")
def test_containerd_restart_keeps_state_and_socket(tmp_path: Path) -> None:
    with start_containerd(tmp_path / "ctd", debug=True) as daemon:
        _ctr(daemon, "namespaces", "create", "survives-restart")
        old_pid = daemon.pid
        daemon.restart()
        assert daemon.pid != old_pid
        assert not _alive(old_pid)
        assert daemon.health()
        assert "survives-restart" in _ctr(daemon, "namespaces", "ls")
        assert daemon.logs().count("containerd successfully booted") == 2
        assert "level=debug" in daemon.logs()
    with pytest.raises(FailedPrecondition, match="stopped"):
        daemon.restart()


@pytest.mark.containerd
@pytest.mark.usefixtures("need_containerd")
def test_containerd_long_base_dir_gets_short_socket_dir(tmp_path: Path) -> None:
    base = tmp_path / ("d" * 120) / "ctd"
    with start_containerd(base) as daemon:
        assert len(str(daemon.ttrpc_socket_path)) <= 104
        short_dir = daemon.socket_path.parent
        assert short_dir.name.startswith("lcd-")
        assert "Server:" in _ctr(daemon, "version")
        assert daemon.root.parent == base
    assert not short_dir.exists()


@pytest.mark.containerd
@pytest.mark.usefixtures("need_containerd")
def test_containerd_failure_is_unavailable_with_log_tail(tmp_path: Path) -> None:
    base = tmp_path / "ctd"
    with pytest.raises(Unavailable, match="exited with code") as info:
        start_containerd(
            base, timeout=15, required_plugins=["io.containerd.grpc.v1.no-such-plugin"]
        )
    assert "no-such-plugin" in str(info.value)
    assert not (base / "root").exists()
    assert not (base / "state").exists()
    assert not (base / "containerd.sock").exists()


@pytest.mark.containerd
@pytest.mark.usefixtures("need_containerd")
def test_containerd_extra_config_overrides(tmp_path: Path) -> None:
    extra = '[debug]\n  level = "debug"\n'
    with start_containerd(tmp_path / "ctd", extra_config=extra) as daemon:
        assert "level=debug" in daemon.logs()


@pytest.mark.containerd
@pytest.mark.usefixtures("need_containerd")
def test_containerd_refuses_a_base_dir_in_use(tmp_path: Path) -> None:
    with start_containerd(tmp_path / "ctd") as daemon:
        with pytest.raises(FailedPrecondition, match="already serving"):
            start_containerd(tmp_path / "ctd")
        assert daemon.health()


@pytest.mark.containerd
@pytest.mark.usefixtures("need_containerd")
def test_containerd_stop_kills_tasks_shims_and_unmounts(tmp_path: Path) -> None:
    _require("runc")
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
    daemon = start_containerd(tmp_path / "ctd")
    try:
        ns = "lcd-stop-test"
        _ctr(
            daemon,
            "--namespace",
            ns,
            "run",
            "-d",
            "--null-io",
            "--cgroup",
            "",
            "--runc-root",
            str(daemon.runc_root),
            "--rootfs",
            str(rootfs),
            "c1",
            "/bin/busybox",
            "sleep",
            "600",
        )
        tasks = _ctr(daemon, "--namespace", ns, "tasks", "ls").splitlines()
        row = next(line.split() for line in tasks[1:] if line.startswith("c1"))
        task_pid = int(row[1])
        assert row[2] == "RUNNING"
        shims = cd._shim_pids(daemon.socket_path)
        assert len(shims) == 1
        bundle = daemon.state / "io.containerd.runtime.v2.task" / ns / "c1"
        shim_socket = Path((bundle / "address").read_text().strip().removeprefix("unix://"))
        assert shim_socket.exists()
        # Leave mounts behind, stacked, the way a crashed snapshotter or shim would.
        for target in (daemon.state / "leftover", daemon.root / "leftover"):
            target.mkdir()
            _run("mount", "-t", "tmpfs", "tmpfs", str(target))
        _run("mount", "-t", "tmpfs", "tmpfs", str(daemon.state / "leftover"))
        assert len(cd._mounts_under([daemon.base_dir])) == 3
    finally:
        daemon.stop()

    assert not _alive(task_pid)
    assert not any(_alive(p) for p in shims)
    assert cd._shim_pids(daemon.socket_path) == []
    assert cd._mounts_under([daemon.base_dir]) == []
    assert not shim_socket.exists()
    assert not daemon.state.exists()
    assert not daemon.root.exists()


# --------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------


@pytest.fixture
def need_registry() -> None:
    _require("docker-registry")


def _assert_only_loopback(pid: int, port: int) -> None:
    addrs = _tcp_listen_addrs(pid)
    assert addrs == {f"0100007F:{port:04X}"}, addrs  # 127.0.0.1 in /proc/net/tcp byte order


@pytest.mark.registry
@pytest.mark.usefixtures("need_registry")
def test_registry_plain_http(tmp_path: Path) -> None:
    registry = start_registry(tmp_path / "reg")
    try:
        assert registry.scheme == "http"
        assert registry.url == f"http://{registry.host}"
        assert registry.host.startswith("127.0.0.1:")
        assert registry.ca_path is None
        response = httpx.get(f"{registry.url}/v2/", trust_env=False)
        assert response.status_code == 200
        assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
        pid = registry.pid
        _assert_only_loopback(pid, registry.port)
        config = json.loads(registry.config_path.read_text())
        assert config["storage"]["delete"]["enabled"] is True
        assert config["http"]["addr"] == registry.host
    finally:
        registry.stop()
    assert not _alive(pid)
    assert not registry.running
    registry.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{registry.url}/v2/", trust_env=False)


@pytest.mark.registry
@pytest.mark.usefixtures("need_registry")
def test_registry_tls_needs_the_ca(tmp_path: Path) -> None:
    _require("openssl")
    with start_registry(tmp_path / "reg", tls=True) as registry:
        assert registry.scheme == "https"
        assert registry.ca_path is not None and registry.ca_path.is_file()
        ctx = ssl.create_default_context(cafile=str(registry.ca_path))
        assert httpx.get(f"{registry.url}/v2/", verify=ctx, trust_env=False).status_code == 200
        with registry.http_client() as client:
            assert client.get("/v2/").status_code == 200
        # The certificate names localhost too.
        url = f"https://localhost:{registry.port}/v2/"
        assert httpx.get(url, verify=ctx, trust_env=False).status_code == 200
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{registry.url}/v2/", trust_env=False)
        _assert_only_loopback(registry.pid, registry.port)


@pytest.mark.registry
@pytest.mark.usefixtures("need_registry")
def test_registry_htpasswd(tmp_path: Path) -> None:
    _require("htpasswd")
    with start_registry(tmp_path / "reg", htpasswd=("alice", "correct horse")) as registry:
        url = f"{registry.url}/v2/"
        anonymous = httpx.get(url, trust_env=False)
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"].startswith("Basic realm=")
        good = httpx.get(url, auth=("alice", "correct horse"), trust_env=False)
        assert good.status_code == 200
        assert httpx.get(url, auth=("alice", "wrong"), trust_env=False).status_code == 401
        assert httpx.get(url, auth=("bob", "correct horse"), trust_env=False).status_code == 401
        assert registry.username == "alice"
        assert "correct horse" not in (registry.base_dir / "htpasswd").read_text()


@pytest.mark.registry
@pytest.mark.usefixtures("need_registry")
@pytest.mark.parametrize("user", ["", "a:b", "a\nb"])
def test_registry_rejects_bad_htpasswd_user(tmp_path: Path, user: str) -> None:
    with pytest.raises(InvalidArgument):
        start_registry(tmp_path / "reg", htpasswd=(user, "pw"))


@pytest.mark.registry
@pytest.mark.usefixtures("need_registry")
def test_registry_port_taken_is_unavailable(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(Unavailable, match="address already in use"):
            start_registry(tmp_path / "reg", port=port)


def _write_oci_layout(layout: Path) -> tuple[str, str]:
    """A one-layer OCI image layout written by hand; returns (manifest digest, layer digest)."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}"

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        content = b"hello from libcontainerd\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(content)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(content))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    layer_digest = put(layer)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {
                "type": "layers",
                "diff_ids": [f"sha256:{hashlib.sha256(raw.getvalue()).hexdigest()}"],
            },
            "config": {},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": put(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest,
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    manifest_digest = put(manifest)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    return manifest_digest, layer_digest


@pytest.mark.registry
@pytest.mark.usefixtures("need_registry")
def test_skopeo_copy_into_plain_registry(tmp_path: Path) -> None:
    _require("skopeo")
    manifest_digest, layer_digest = _write_oci_layout(tmp_path / "layout")
    with start_registry(tmp_path / "reg") as registry:
        _run(
            "skopeo",
            "copy",
            "--dest-tls-verify=false",
            f"oci:{tmp_path / 'layout'}:latest",
            f"docker://{registry.host}/test/hello:1",
        )
        with registry.http_client(trust_env=False) as client:
            tags = client.get("/v2/test/hello/tags/list").json()
            assert tags == {"name": "test/hello", "tags": ["1"]}
            got = client.get(
                "/v2/test/hello/manifests/1",
                headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
            )
            assert got.status_code == 200
            assert got.headers["Docker-Content-Digest"] == manifest_digest
            assert client.head(f"/v2/test/hello/blobs/{layer_digest}").status_code == 200
            # Deletes are enabled.
            deleted = client.delete(f"/v2/test/hello/manifests/{manifest_digest}")
            assert deleted.status_code == 202


@pytest.mark.registry
@pytest.mark.usefixtures("need_registry")
def test_skopeo_copy_into_tls_registry_with_auth(tmp_path: Path) -> None:
    _require("skopeo", "openssl", "htpasswd")
    manifest_digest, _ = _write_oci_layout(tmp_path / "layout")
    with start_registry(tmp_path / "reg", tls=True, htpasswd=("ci", "pw")) as registry:
        assert registry.ca_path is not None
        cert_dir = tmp_path / "certs"
        cert_dir.mkdir()
        shutil.copy(registry.ca_path, cert_dir / "ca.crt")
        dest = f"docker://{registry.host}/test/secure:1"
        source = f"oci:{tmp_path / 'layout'}:latest"
        refused = _run("skopeo", "copy", f"--dest-cert-dir={cert_dir}", source, dest, check=False)
        assert refused.returncode != 0
        _run(
            "skopeo",
            "copy",
            f"--dest-cert-dir={cert_dir}",
            "--dest-creds=ci:pw",
            source,
            dest,
        )
        with registry.http_client(trust_env=False) as client:
            got = client.head(
                "/v2/test/secure/manifests/1",
                headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
            )
            assert got.headers["Docker-Content-Digest"] == manifest_digest
