"""The committed modules in libcontainerd/remote/_pb must be what protos/ generates."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "protos"
SCRIPT = ROOT / "scripts" / "generate_protos.py"
PB_PACKAGE = "libcontainerd.remote._pb"
EXIT_NO_GENERATOR = 3  # scripts/generate_protos.py: pinned generator could not be installed

PROTO_FILES = sorted(p.relative_to(PROTO_DIR).as_posix() for p in PROTO_DIR.rglob("*.proto"))


def test_generated_code_is_fresh() -> None:
    """Runs the pinned generator (installing it into a cached venv on first use)."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--quiet"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=ROOT,
    )
    if done.returncode == EXIT_NO_GENERATOR:
        pytest.skip(f"pinned protobuf generator cannot be installed here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr + done.stdout


def test_every_proto_file_has_a_module() -> None:
    assert PROTO_FILES, f"no .proto files found under {PROTO_DIR}"
    for rel in PROTO_FILES:
        module = ROOT / "libcontainerd/remote/_pb" / rel.replace(".proto", "_pb2.py")
        assert module.is_file(), f"{rel} has no generated module; run {SCRIPT.name}"


def _strip(fdp: descriptor_pb2.FileDescriptorProto) -> bytes:
    # Different protoc releases disagree on whether json_name is filled in; it is not wire.
    fdp.ClearField("source_code_info")

    def clear(messages: list[descriptor_pb2.DescriptorProto]) -> None:
        for message in messages:
            for field in message.field:
                field.ClearField("json_name")
            clear(list(message.nested_type))

    clear(list(fdp.message_type))
    return fdp.SerializeToString(deterministic=True)


@pytest.fixture(scope="module")
def compiled() -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """protos/ compiled by whatever grpc_tools the test environment has."""
    protoc = pytest.importorskip("grpc_tools.protoc")
    grpc_tools = pytest.importorskip("grpc_tools")
    wkt = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        rc = protoc.main(["protoc", f"-I{PROTO_DIR}", f"-I{wkt}", f"-o{out}", *PROTO_FILES])
        assert rc == 0
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return {f.name: f for f in fds.file}


@pytest.mark.parametrize("rel", PROTO_FILES)
def test_module_descriptor_matches_proto(
    rel: str, compiled: dict[str, descriptor_pb2.FileDescriptorProto]
) -> None:
    """Cheap staleness check that needs no pinned generator: embedded descriptor == source."""
    name = PB_PACKAGE + "." + rel[: -len(".proto")].replace("/", ".") + "_pb2"
    module = importlib.import_module(name)
    embedded = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(embedded)
    assert embedded.name == rel
    assert _strip(embedded) == _strip(compiled[rel]), f"{name} is stale against {rel}"
    services = compiled[rel].service
    if services:
        grpc_module = importlib.import_module(name + "_grpc")
        for service in services:
            assert hasattr(grpc_module, f"{service.name}Stub")
            assert hasattr(grpc_module, f"add_{service.name}Servicer_to_server")
