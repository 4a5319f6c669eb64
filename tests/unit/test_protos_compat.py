"""The project's own .proto files must be wire-compatible with containerd's API v1.

The reference is the set of upstream ``.proto`` files that Debian ships in
golang-github-containerd-containerd-dev and golang-github-containerd-cgroups-dev (their gogoproto
options come from golang-github-gogo-protobuf-dev, google/rpc/status.proto from
golang-github-gogo-googleapis-dev). Both sides are compiled with grpc_tools.protoc into
FileDescriptorSets and compared definition by definition: names, field numbers, types, type
names, labels, map entries, enum values and RPC signatures. Options are ignored: they do not
change the wire.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

protoc = pytest.importorskip("grpc_tools.protoc")
grpc_tools = pytest.importorskip("grpc_tools")

from google.protobuf import descriptor_pb2  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "protos"
GOCODE = Path("/usr/share/gocode/src")
CONTAINERD = "github.com/containerd/containerd"
CGROUPS = "github.com/containerd/cgroups"
GOGO_INCLUDE = GOCODE / "github.com/gogo/protobuf"
GOOGLEAPIS_INCLUDE = GOCODE / "github.com/gogo/googleapis"
WELL_KNOWN_INCLUDE = Path(grpc_tools.__file__).parent / "_proto"

# Upstream files (relative to GOCODE) whose definitions the project mirrors.
_API = f"{CONTAINERD}/api"
UPSTREAM_FILES = (
    f"{_API}/events/container.proto",
    f"{_API}/events/content.proto",
    f"{_API}/events/image.proto",
    f"{_API}/events/namespace.proto",
    f"{_API}/events/snapshot.proto",
    f"{_API}/events/task.proto",
    f"{_API}/services/containers/v1/containers.proto",
    f"{_API}/services/content/v1/content.proto",
    f"{_API}/services/diff/v1/diff.proto",
    f"{_API}/services/events/v1/events.proto",
    f"{_API}/services/images/v1/images.proto",
    f"{_API}/services/introspection/v1/introspection.proto",
    f"{_API}/services/leases/v1/leases.proto",
    f"{_API}/services/namespaces/v1/namespace.proto",
    f"{_API}/services/snapshots/v1/snapshots.proto",
    f"{_API}/services/tasks/v1/tasks.proto",
    f"{_API}/services/version/v1/version.proto",
    f"{_API}/types/descriptor.proto",
    f"{_API}/types/metrics.proto",
    f"{_API}/types/mount.proto",
    f"{_API}/types/platform.proto",
    f"{_API}/types/task/task.proto",
    f"{CONTAINERD}/runtime/v2/runc/options/oci.proto",
    f"{CGROUPS}/stats/v1/metrics.proto",
    f"{CGROUPS}/v2/stats/metrics.proto",
)
REQUIRED_INCLUDES = {
    "golang-github-gogo-protobuf-dev": GOGO_INCLUDE / "gogoproto/gogo.proto",
    "golang-github-gogo-googleapis-dev": GOOGLEAPIS_INCLUDE / "google/rpc/status.proto",
}

# google.rpc.Status is declared under the project's own package so that the generated module
# cannot clash with googleapis-common-protos in protobuf's default pool (see
# protos/libcontainerd/rpc/status.proto); on the wire an embedded message has no name.
RENAMED = {".libcontainerd.rpc.Status": ".google.rpc.Status"}

# Upstream definitions (in the files above) that the project deliberately leaves out.
KNOWN_UPSTREAM_ONLY: frozenset[str] = frozenset()

_FDP = descriptor_pb2.FieldDescriptorProto


def _compile(
    include_dirs: list[Path], files: list[str], out: Path
) -> descriptor_pb2.FileDescriptorSet:
    args = ["protoc", *(f"-I{d}" for d in include_dirs), "--include_imports", f"-o{out}", *files]
    rc = protoc.main(args)
    assert rc == 0, f"grpc_tools.protoc failed ({rc}) on {files}; its stderr is above"
    result = descriptor_pb2.FileDescriptorSet()
    result.ParseFromString(out.read_bytes())
    return result


def _walk_messages(
    prefix: str, messages: list[descriptor_pb2.DescriptorProto]
) -> Iterator[tuple[str, descriptor_pb2.DescriptorProto]]:
    for message in messages:
        name = f"{prefix}.{message.name}"
        yield name, message
        yield from _walk_messages(name, list(message.nested_type))


class Definitions:
    """Every message, enum and service of a FileDescriptorSet, by fully-qualified name."""

    def __init__(self, fds: descriptor_pb2.FileDescriptorSet, *, skip_packages: tuple[str, ...]):
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self.services: dict[str, descriptor_pb2.ServiceDescriptorProto] = {}
        for file in fds.file:
            if file.package.startswith(skip_packages):
                continue
            prefix = f".{file.package}" if file.package else ""
            for enum in file.enum_type:
                self.enums[f"{prefix}.{enum.name}"] = enum
            for name, message in _walk_messages(prefix, list(file.message_type)):
                self.messages[name] = message
                for enum in message.enum_type:
                    self.enums[f"{name}.{enum.name}"] = enum
            for service in file.service:
                self.services[f"{prefix}.{service.name}"] = service


@functools.cache
def ours() -> Definitions:
    """The project's definitions, compiled from protos/ (needs nothing from Debian)."""
    import tempfile

    files = sorted(p.relative_to(PROTO_DIR).as_posix() for p in PROTO_DIR.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        fds = _compile([PROTO_DIR, WELL_KNOWN_INCLUDE], files, Path(tmp) / "ours.pb")
    return Definitions(fds, skip_packages=("google.protobuf",))


@functools.cache
def upstream() -> Definitions:
    """containerd's definitions, compiled from the files Debian installs."""
    import tempfile

    missing = [f"{GOCODE / f}" for f in UPSTREAM_FILES if not (GOCODE / f).is_file()]
    missing += [
        f"{path} (apt-get install {pkg})"
        for pkg, path in REQUIRED_INCLUDES.items()
        if not path.is_file()
    ]
    if missing:
        reason = (
            "upstream containerd .proto files are not installed; apt-get install "
            "golang-github-containerd-containerd-dev golang-github-containerd-cgroups-dev "
            "golang-github-gogo-protobuf-dev golang-github-gogo-googleapis-dev. Missing: "
            + ", ".join(missing)
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    includes = [GOCODE, GOGO_INCLUDE, GOOGLEAPIS_INCLUDE, WELL_KNOWN_INCLUDE]
    with tempfile.TemporaryDirectory() as tmp:
        fds = _compile(includes, list(UPSTREAM_FILES), Path(tmp) / "upstream.pb")
    return Definitions(fds, skip_packages=("google.protobuf", "gogoproto"))


def _upstream_name(name: str) -> str:
    return RENAMED.get(name, name)


def _field_facts(field: descriptor_pb2.FieldDescriptorProto) -> dict[str, object]:
    return {
        "number": field.number,
        "label": _FDP.Label.Name(field.label),
        "type": _FDP.Type.Name(field.type),
        "type_name": _upstream_name(field.type_name),
        "oneof_index": field.oneof_index if field.HasField("oneof_index") else None,
        "proto3_optional": field.proto3_optional,
    }


def _our_names(kind: str) -> list[str]:
    table: dict[str, object] = getattr(ours(), kind)
    return sorted(table)


@pytest.mark.parametrize("name", _our_names("messages"))
def test_message_matches_upstream(name: str) -> None:
    mine = ours().messages[name]
    theirs = upstream().messages.get(_upstream_name(name))
    assert theirs is not None, f"{name} does not exist upstream"
    assert mine.options.map_entry == theirs.options.map_entry, f"{name}: map entry differs"
    mine_fields = {f.name: _field_facts(f) for f in mine.field}
    their_fields = {f.name: _field_facts(f) for f in theirs.field}
    assert mine_fields == their_fields, f"{name}: fields differ from upstream"
    assert [o.name for o in mine.oneof_decl] == [o.name for o in theirs.oneof_decl]


@pytest.mark.parametrize("name", _our_names("enums"))
def test_enum_matches_upstream(name: str) -> None:
    theirs = upstream().enums.get(name)
    assert theirs is not None, f"{name} does not exist upstream"
    mine_values = {v.name: v.number for v in ours().enums[name].value}
    assert mine_values == {v.name: v.number for v in theirs.value}, f"{name}: values differ"


@pytest.mark.parametrize("name", _our_names("services"))
def test_service_matches_upstream(name: str) -> None:
    theirs = upstream().services.get(name)
    assert theirs is not None, f"{name} does not exist upstream"

    def signature(service: descriptor_pb2.ServiceDescriptorProto) -> dict[str, tuple[object, ...]]:
        return {
            m.name: (m.input_type, m.output_type, m.client_streaming, m.server_streaming)
            for m in service.method
        }

    assert signature(ours().services[name]) == signature(theirs), f"{name}: methods differ"


def test_renamed_status_has_google_rpc_status_layout() -> None:
    for mine, theirs in RENAMED.items():
        mine_fields = {f.name: _field_facts(f) for f in ours().messages[mine].field}
        their_fields = {f.name: _field_facts(f) for f in upstream().messages[theirs].field}
        assert mine_fields == their_fields


def test_upstream_only_definitions_are_known() -> None:
    """Every upstream definition is mirrored, or listed in KNOWN_UPSTREAM_ONLY on purpose."""
    ups, mine = upstream(), ours()
    covered = {_upstream_name(n) for n in (*mine.messages, *mine.enums, *mine.services)}
    defined = {*ups.messages, *ups.enums, *ups.services} - {".google.rpc.Status"}
    assert sorted(defined - covered) == sorted(KNOWN_UPSTREAM_ONLY)


def test_type_urls_keep_upstream_packages() -> None:
    """Any values carry the full name, so the packages must be containerd's own."""
    for name in (
        ".io.containerd.cgroups.v1.Metrics",
        ".io.containerd.cgroups.v2.Metrics",
        ".containerd.runc.v1.Options",
        ".containerd.runc.v1.CheckpointOptions",
        ".containerd.events.TaskExit",
        ".containerd.services.events.v1.Envelope",
    ):
        assert name in ours().messages
