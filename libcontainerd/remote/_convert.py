"""Conversions between containerd's protobuf messages and libcontainerd's value types."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from typing import Any

from google.protobuf import any_pb2, json_format, timestamp_pb2
from google.protobuf.message import Message

from libcontainerd.errors import InvalidArgument
from libcontainerd.remote._pb.containerd.runc.v1 import oci_pb2
from libcontainerd.remote._pb.containerd.services.containers.v1 import containers_pb2
from libcontainerd.remote._pb.io.containerd.cgroups.v1 import metrics_pb2 as cgroups_v1
from libcontainerd.remote._pb.io.containerd.cgroups.v2 import metrics_pb2 as cgroups_v2
from libcontainerd.types.container import ContainerInfo, RuntimeInfo
from libcontainerd.types.stats import Stats

__all__ = [
    "EXTENSION_JSON_TYPE",
    "LINUX_RESOURCES_TYPE",
    "PROCESS_SPEC_TYPE",
    "RUNC_OPTIONS_TYPE",
    "SPEC_TYPE",
    "container_info",
    "decode_extensions",
    "encode_extensions",
    "json_any",
    "metrics_to_stats",
    "runtime_options_any",
    "runtime_options_dict",
    "to_datetime",
    "unpack_json",
]

SPEC_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
PROCESS_SPEC_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Process"
LINUX_RESOURCES_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
RUNC_OPTIONS_TYPE = "containerd.runc.v1.Options"
EXTENSION_JSON_TYPE = "types.libcontainerd.io/json"
"""Type URL of extension values this SDK stores (JSON text)."""

_CGROUPS_V1_TYPE = "io.containerd.cgroups.v1.Metrics"
_CGROUPS_V2_TYPE = "io.containerd.cgroups.v2.Metrics"
_UNLIMITED = 2**62


def json_any(type_url: str, value: Any) -> any_pb2.Any:
    """``value`` as JSON bytes inside an ``Any`` of ``type_url`` (how containerd stores specs)."""
    try:
        data = json.dumps(value, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"value for {type_url} is not JSON-serialisable: {exc}") from None
    return any_pb2.Any(type_url=type_url, value=data)


def unpack_json(value: any_pb2.Any) -> Any:
    """The JSON value inside an ``Any`` written by :func:`json_any` (or by containerd)."""
    if not value.value:
        return {}
    try:
        return json.loads(value.value)
    except ValueError as exc:
        raise InvalidArgument(f"{value.type_url} value is not valid JSON: {exc}") from None


def to_datetime(ts: timestamp_pb2.Timestamp) -> _dt.datetime:
    """A protobuf timestamp as an aware UTC datetime."""
    return ts.ToDatetime(tzinfo=_dt.timezone.utc)


def runtime_options_any(options: Mapping[str, Any]) -> any_pb2.Any:
    """runc shim options (``binary_name``, ``root``, ...) as a ``containerd.runc.v1.Options``."""
    if not isinstance(options, Mapping):
        raise InvalidArgument(f"runtime_options must be a mapping, not {type(options).__name__}")
    message = oci_pb2.Options()
    try:
        json_format.ParseDict(dict(options), message)
    except json_format.ParseError as exc:
        known = ", ".join(f.name for f in oci_pb2.Options.DESCRIPTOR.fields)
        raise InvalidArgument(f"bad runtime_options: {exc}; known fields: {known}") from None
    return any_pb2.Any(type_url=RUNC_OPTIONS_TYPE, value=message.SerializeToString())


def _message_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def runtime_options_dict(value: any_pb2.Any) -> dict[str, Any]:
    """Decode a runtime options ``Any`` (runc options as a dict; others as type and bytes)."""
    if not value.type_url:
        return {}
    if value.type_url.rsplit("/", 1)[-1] == RUNC_OPTIONS_TYPE:
        message = oci_pb2.Options()
        message.ParseFromString(value.value)
        return _message_dict(message)
    return {"type_url": value.type_url, "value": value.value}


def encode_extensions(extensions: Mapping[str, Any]) -> dict[str, any_pb2.Any]:
    """Extensions given by the caller: ``Any`` messages kept, other values stored as JSON."""
    if not isinstance(extensions, Mapping):
        raise InvalidArgument(f"extensions must be a mapping, not {type(extensions).__name__}")
    result: dict[str, any_pb2.Any] = {}
    for name, value in extensions.items():
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"extension names must be non-empty str, got {name!r}")
        if isinstance(value, any_pb2.Any):
            result[name] = value
        else:
            result[name] = json_any(EXTENSION_JSON_TYPE, value)
    return result


def decode_extensions(extensions: Mapping[str, any_pb2.Any]) -> dict[str, Any]:
    """Stored extensions: JSON ones decoded, foreign ones as ``{"type_url", "value"}``."""
    result: dict[str, Any] = {}
    for name, value in extensions.items():
        if value.type_url == EXTENSION_JSON_TYPE:
            result[name] = unpack_json(value)
        else:
            result[name] = {"type_url": value.type_url, "value": value.value}
    return result


def container_info(record: containers_pb2.Container) -> ContainerInfo:
    """A containerd container record as :class:`ContainerInfo`."""
    spec = unpack_json(record.spec) if record.HasField("spec") else {}
    return ContainerInfo(
        id=record.id,
        labels=dict(record.labels),
        image=record.image,
        runtime=RuntimeInfo(record.runtime.name, runtime_options_dict(record.runtime.options)),
        spec=spec if isinstance(spec, dict) else {},
        snapshotter=record.snapshotter,
        snapshot_key=record.snapshot_key,
        created_at=to_datetime(record.created_at) if record.HasField("created_at") else None,
        updated_at=to_datetime(record.updated_at) if record.HasField("updated_at") else None,
        extensions=decode_extensions(record.extensions),
    )


def _limit(value: int) -> int | None:
    return None if value == 0 or value >= _UNLIMITED else value


def _v1_stats(data: cgroups_v1.Metrics, timestamp: _dt.datetime) -> Stats:
    read = write = 0
    entries = list(data.blkio.io_service_bytes_recursive)
    for entry in entries:
        op = entry.op.lower()
        if op == "read":
            read += entry.value
        elif op == "write":
            write += entry.value
    memory = data.memory
    swap = None
    if memory.HasField("swap") and memory.swap.usage:
        swap = max(memory.swap.usage - memory.usage.usage, 0)
    return Stats(
        timestamp=timestamp,
        cgroup_version=1,
        cpu_usage_total_ns=data.cpu.usage.total,
        cpu_usage_user_ns=data.cpu.usage.user,
        cpu_usage_kernel_ns=data.cpu.usage.kernel,
        cpu_throttling_periods=data.cpu.throttling.periods,
        cpu_throttled_periods=data.cpu.throttling.throttled_periods,
        cpu_throttled_time_ns=data.cpu.throttling.throttled_time,
        memory_usage=memory.usage.usage,
        memory_limit=_limit(memory.usage.limit),
        memory_max_usage=memory.usage.max,
        memory_cache=memory.cache,
        memory_rss=memory.rss,
        memory_swap=swap,
        pids_current=data.pids.current,
        pids_limit=_limit(data.pids.limit),
        blkio_read_bytes=read if entries else None,
        blkio_write_bytes=write if entries else None,
        hugetlb={entry.pagesize: entry.usage for entry in data.hugetlb},
        raw=_message_dict(data),
    )


def _v2_stats(data: cgroups_v2.Metrics, timestamp: _dt.datetime) -> Stats:
    read = write = 0
    entries = list(data.io.usage)
    for entry in entries:
        read += entry.rbytes
        write += entry.wbytes
    memory = data.memory
    return Stats(
        timestamp=timestamp,
        cgroup_version=2,
        cpu_usage_total_ns=data.cpu.usage_usec * 1000,
        cpu_usage_user_ns=data.cpu.user_usec * 1000,
        cpu_usage_kernel_ns=data.cpu.system_usec * 1000,
        cpu_throttling_periods=data.cpu.nr_periods,
        cpu_throttled_periods=data.cpu.nr_throttled,
        cpu_throttled_time_ns=data.cpu.throttled_usec * 1000,
        memory_usage=memory.usage,
        memory_limit=_limit(memory.usage_limit),
        memory_cache=memory.file,
        memory_rss=memory.anon,
        memory_swap=memory.swap_usage,
        pids_current=data.pids.current,
        pids_limit=_limit(data.pids.limit),
        blkio_read_bytes=read if entries else None,
        blkio_write_bytes=write if entries else None,
        hugetlb={entry.pagesize: entry.current for entry in data.hugetlb},
        raw=_message_dict(data),
    )


def metrics_to_stats(data: any_pb2.Any, timestamp: _dt.datetime) -> Stats:
    """Decode a task's cgroup v1 or v2 metrics ``Any`` into :class:`Stats`."""
    name = data.type_url.rsplit("/", 1)[-1]
    if name == _CGROUPS_V1_TYPE:
        v1 = cgroups_v1.Metrics()
        v1.ParseFromString(data.value)
        return _v1_stats(v1, timestamp)
    if name == _CGROUPS_V2_TYPE:
        v2 = cgroups_v2.Metrics()
        v2.ParseFromString(data.value)
        return _v2_stats(v2, timestamp)
    return Stats(timestamp=timestamp, raw={"type_url": data.type_url})
