"""Tests for the value types: status, exit status, stats, resources, events, descriptors,
images, mounts, process info and version."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcontainerd.errors import InvalidArgument
from libcontainerd.types import descriptor as media
from libcontainerd.types.descriptor import Descriptor, layer_compression, validate_media_type
from libcontainerd.types.digest import sha256_digest
from libcontainerd.types.events import Event, EventType
from libcontainerd.types.image import Image, validate_labels
from libcontainerd.types.mount import Mount
from libcontainerd.types.platform import Platform
from libcontainerd.types.process import ProcessInfo
from libcontainerd.types.stats import Resources, Stats, validate_cpuset
from libcontainerd.types.status import ExitStatus, Status
from libcontainerd.types.version import Version

UTC = dt.timezone.utc
DIGEST = sha256_digest(b"hello")

# ---------------------------------------------------------------- status


def test_status_values() -> None:
    assert [s.value for s in Status] == [
        "unknown",
        "created",
        "running",
        "pausing",
        "paused",
        "stopped",
    ]
    assert Status.parse("Running") is Status.RUNNING
    with pytest.raises(InvalidArgument, match="expected one of"):
        Status.parse("exploded")
    with pytest.raises(InvalidArgument):
        Status.parse(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("status", list(Status))
def test_status_proto_round_trip(status: Status) -> None:
    assert Status.from_proto(status.to_proto()) is status


def test_status_proto_numbers_match_containerd() -> None:
    assert Status.STOPPED.to_proto() == 3
    assert Status.PAUSING.to_proto() == 5
    assert Status.from_proto(99) is Status.UNKNOWN


def test_exit_status() -> None:
    when = dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=-3)))
    status = ExitStatus(0, when)
    assert status.success
    assert status.exited_at == dt.datetime(2024, 5, 1, 15, tzinfo=UTC)
    assert status.exited_at.tzinfo is UTC
    assert ExitStatus.UNKNOWN_CODE == 255
    lost = ExitStatus.unknown("monitor died")
    assert lost.code == 255 and not lost.success and lost.error == "monitor died"
    assert ExitStatus(137).signal == 9
    assert ExitStatus(1).signal is None
    assert not ExitStatus(0, error="could not read status").success


@pytest.mark.parametrize(
    "kwargs",
    [
        {"code": -1},
        {"code": 2**32},
        {"code": True},
        {"code": "0"},
        {"code": 0, "exited_at": dt.datetime(2024, 1, 1)},
        {"code": 0, "error": 5},
    ],
)
def test_exit_status_refuses(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        ExitStatus(**kwargs)


def test_exit_status_is_frozen() -> None:
    status = ExitStatus(0)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        status.code = 1  # type: ignore[misc]


# ---------------------------------------------------------------- process and version


def test_process_info() -> None:
    info = ProcessInfo(12, {"exec_id": "shell"})
    assert info.exec_id == "shell"
    assert ProcessInfo(1).exec_id == ""
    assert hash(info) == hash(ProcessInfo(12, {"exec_id": "other"}))
    assert info == ProcessInfo(12, {"exec_id": "shell"})
    with pytest.raises(TypeError):
        info.info["x"] = 1  # type: ignore[index]
    for bad in (0, -5, True, "12"):
        with pytest.raises(InvalidArgument):
            ProcessInfo(bad)  # type: ignore[arg-type]


def test_version() -> None:
    version = Version("1.6.20", "abc", backend="remote")
    assert version.runtime == ""
    with pytest.raises(InvalidArgument):
        Version(1.6)  # type: ignore[arg-type]


# ---------------------------------------------------------------- stats

RUNC_STATS: dict[str, Any] = {
    "cpu": {
        "usage": {"total": 5_000, "percpu": [2_500, 2_500], "kernel": 1_000, "user": 4_000},
        "throttling": {"periods": 10, "throttledPeriods": 2, "throttledTime": 300},
    },
    "memory": {
        "cache": 4096,
        "usage": {"limit": 9223372036854771712, "usage": 1_000_000, "max": 2_000_000},
        "swap": {"limit": 9223372036854771712, "usage": 1_500_000},
        "raw": {"rss": 500_000, "cache": 4096},
    },
    "pids": {"current": 3, "limit": 100},
    "blkio": {
        "ioServiceBytesRecursive": [
            {"major": 8, "minor": 0, "op": "Read", "value": 100},
            {"major": 8, "minor": 0, "op": "Write", "value": 50},
            {"major": 8, "minor": 0, "op": "Total", "value": 150},
            {"major": 8, "minor": 16, "op": "Read", "value": 1},
        ]
    },
    "hugetlb": {"2MB": {"usage": 0, "failcnt": 0}, "1GB": {"failcnt": 0}},
}


def test_stats_from_runc() -> None:
    when = dt.datetime(2024, 1, 1, tzinfo=UTC)
    stats = Stats.from_runc(RUNC_STATS, timestamp=when, cgroup_version=1)
    assert stats.timestamp == when
    assert stats.cpu_usage_total_ns == 5_000
    assert stats.cpu_usage_user_ns == 4_000
    assert stats.cpu_usage_kernel_ns == 1_000
    assert (stats.cpu_throttling_periods, stats.cpu_throttled_periods) == (10, 2)
    assert stats.cpu_throttled_time_ns == 300
    assert stats.memory_usage == 1_000_000
    assert stats.memory_limit is None  # cgroup v1's "unlimited"
    assert stats.memory_max_usage == 2_000_000
    assert stats.memory_swap == 500_000
    assert stats.memory_rss == 500_000
    assert stats.memory_cache == 4096
    assert (stats.pids_current, stats.pids_limit) == (3, 100)
    assert (stats.blkio_read_bytes, stats.blkio_write_bytes) == (101, 50)
    assert stats.hugetlb == {"2MB": 0, "1GB": 0}
    assert stats.raw["pids"] == {"current": 3, "limit": 100}
    json.dumps(dict(stats.raw))


def test_stats_from_runc_cgroup_v2_names_and_empty() -> None:
    data = {"memory": {"usage": {"usage": 10, "limit": 2**64 - 1}, "raw": {"anon": 7, "file": 3}}}
    stats = Stats.from_runc(data, cgroup_version=2)
    assert (stats.memory_rss, stats.memory_cache, stats.memory_limit) == (7, 3, None)
    assert stats.blkio_read_bytes is None and stats.cpu_usage_total_ns is None
    empty = Stats.from_runc({})
    assert empty.memory_usage is None and empty.pids_limit is None


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"cpu": []},
        {"cpu": {"usage": {"total": -1}}},
        {"cpu": {"usage": {"total": "1"}}},
        {"blkio": {"ioServiceBytesRecursive": {}}},
        {"blkio": {"ioServiceBytesRecursive": [1]}},
        {"hugetlb": {"2MB": 1}},
    ],
)
def test_stats_from_runc_refuses_malformed(data: Any) -> None:
    with pytest.raises(InvalidArgument):
        Stats.from_runc(data)


def test_stats_validation() -> None:
    with pytest.raises(InvalidArgument):
        Stats(memory_usage=-1)
    with pytest.raises(InvalidArgument):
        Stats(cpu_usage_total_ns=1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        Stats(cgroup_version=3)
    with pytest.raises(InvalidArgument):
        Stats(timestamp=dt.datetime(2024, 1, 1))
    when = dt.datetime(2024, 1, 1, tzinfo=UTC)
    sample = Stats(timestamp=when, memory_usage=1, hugetlb={"2MB": 0}, raw={"x": [1]})
    assert sample == Stats(timestamp=when, memory_usage=1, hugetlb={"2MB": 0})
    hash(sample)


# ---------------------------------------------------------------- resources


@pytest.mark.parametrize("value", ["0", "0-2", "0-2,4", "1,3,5-7", "0-0"])
def test_valid_cpusets(value: str) -> None:
    assert validate_cpuset(value) == value


@pytest.mark.parametrize("value", ["", " 0", "0-", "-1", "2-0", "0,,1", "a", "0-2,4 ", "1.5"])
def test_invalid_cpusets(value: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_cpuset(value)


def test_resources_to_oci() -> None:
    resources = Resources(
        cpu_shares=512,
        cpu_quota=50_000,
        cpu_period=100_000,
        cpus="0-1",
        mems="0",
        memory_limit=64 * 2**20,
        memory_swap=128 * 2**20,
        memory_reservation=32 * 2**20,
        pids_limit=64,
        blkio_weight=500,
    )
    assert resources.to_oci() == {
        "cpu": {"shares": 512, "quota": 50_000, "period": 100_000, "cpus": "0-1", "mems": "0"},
        "memory": {"limit": 64 * 2**20, "swap": 128 * 2**20, "reservation": 32 * 2**20},
        "pids": {"limit": 64},
        "blockIO": {"weight": 500},
    }
    assert Resources().to_oci() == {}
    assert Resources(pids_limit=-1).to_oci() == {"pids": {"limit": -1}}


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"cpu_shares": 1}, "cpu_shares 1 is out of range"),
        ({"cpu_shares": 262145}, "cpu_shares"),
        ({"cpu_quota": 999}, "or -1 for unlimited"),
        ({"cpu_period": 999}, "cpu_period"),
        ({"cpu_period": 1_000_001}, "cpu_period"),
        ({"cpus": "0-"}, "Resources.cpus"),
        ({"mems": 0}, "Resources.mems"),
        ({"memory_limit": 0}, "memory_limit"),
        ({"memory_limit": -2}, "memory_limit"),
        ({"memory_limit": 100, "memory_swap": 50}, "must not be below"),
        ({"memory_limit": 100, "memory_reservation": 200}, "must not exceed"),
        ({"pids_limit": 0}, "use None to leave it unset"),
        ({"blkio_weight": 9}, "blkio_weight"),
        ({"blkio_weight": 1001}, "blkio_weight"),
        ({"blkio_weight": True}, "must be an int"),
        ({"cpu_shares": 2.5}, "must be an int"),
    ],
)
def test_resources_refuse(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        Resources(**kwargs)
    assert fragment in str(info.value)


def test_resources_from_oci_reads_real_spec_forms() -> None:
    data = {
        "devices": [{"allow": False, "access": "rwm"}],
        "cpu": {"shares": 0, "cpus": "", "quota": 0},
        "memory": {"limit": 1 << 30, "reservation": 0},
        "unified": {"memory.high": "1"},
    }
    resources = Resources.from_oci(data)
    assert resources == Resources(memory_limit=1 << 30, memory_reservation=0)


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"cpu": []},
        {"cpu": {"shares": "512"}},
        {"cpu": {"cpus": 3}},
        {"memory": {"limit": 1.5}},
        {"blockIO": {"weight": 5}},
        {"pids": {"limit": True}},
    ],
)
def test_resources_from_oci_refuses(data: Any) -> None:
    with pytest.raises(InvalidArgument):
        Resources.from_oci(data)


_cpuset = st.lists(
    st.tuples(st.integers(0, 64), st.integers(0, 8)).map(
        lambda t: str(t[0]) if t[1] == 0 else f"{t[0]}-{t[0] + t[1]}"
    ),
    min_size=1,
    max_size=4,
).map(",".join)


@st.composite
def _resources(draw: st.DrawFn) -> Resources:
    def maybe(strategy: st.SearchStrategy[Any]) -> Any:
        return draw(st.one_of(st.none(), strategy))

    limit = maybe(st.one_of(st.just(-1), st.integers(1, 2**40)))
    swap_floor = limit if isinstance(limit, int) and limit > 0 else 1
    reservation_ceiling = limit if isinstance(limit, int) and limit > 0 else 2**40
    return Resources(
        cpu_shares=maybe(st.integers(2, 262144)),
        cpu_quota=maybe(st.one_of(st.just(-1), st.integers(1000, 10**9))),
        cpu_period=maybe(st.integers(1000, 1_000_000)),
        cpus=maybe(_cpuset),
        mems=maybe(_cpuset),
        memory_limit=limit,
        memory_swap=maybe(st.one_of(st.just(-1), st.integers(swap_floor, 2**41))),
        memory_reservation=maybe(st.one_of(st.just(-1), st.integers(0, reservation_ceiling))),
        pids_limit=maybe(st.one_of(st.just(-1), st.integers(1, 2**20))),
        blkio_weight=maybe(st.integers(10, 1000)),
    )


@settings(max_examples=300)
@given(_resources())
def test_resources_oci_round_trip(resources: Resources) -> None:
    encoded = resources.to_oci()
    assert Resources.from_oci(json.loads(json.dumps(encoded))) == resources


# ---------------------------------------------------------------- events


@pytest.mark.parametrize("kind", list(EventType))
def test_event_type_topic_round_trip(kind: EventType) -> None:
    assert EventType.from_topic(kind.topic) is kind


@settings(max_examples=200)
@given(st.sampled_from(list(EventType)))
def test_event_type_topic_round_trip_property(kind: EventType) -> None:
    assert EventType.from_topic(kind.topic) is kind


def test_event_topics_match_containerd() -> None:
    assert EventType.TASK_EXIT.topic == "/tasks/exit"
    assert EventType.TASK_EXEC_ADDED.topic == "/tasks/exec-added"
    assert EventType.CONTAINER_CREATE.topic == "/containers/create"
    assert EventType.IMAGE_UPDATE.topic == "/images/update"
    assert EventType.CONTENT_DELETE.topic == "/content/delete"
    assert EventType.SNAPSHOT_PREPARE.topic == "/snapshot/prepare"
    assert EventType.NAMESPACE_CREATE.topic == "/namespaces/create"
    assert EventType.from_topic("/tasks/?") is EventType.UNKNOWN
    assert EventType.from_topic("/something/new") is EventType.UNKNOWN
    with pytest.raises(InvalidArgument):
        EventType.from_topic(None)  # type: ignore[arg-type]


@settings(max_examples=200)
@given(st.text(max_size=40))
def test_from_topic_never_raises_on_text(topic: str) -> None:
    assert isinstance(EventType.from_topic(topic), EventType)


def test_event_normalises_init_process_id() -> None:
    when = dt.datetime(2024, 1, 1, tzinfo=UTC)
    exit_event = Event(
        type=EventType.TASK_EXIT,
        namespace="default",
        container_id="web",
        process_id="web",
        pid=42,
        exit_code=0,
        exited_at=when,
        raw={"container_id": "web", "id": "web"},
    )
    assert exit_event.process_id == "" and exit_event.is_init
    assert exit_event.topic == "/tasks/exit"
    exec_exit = attrs.evolve(exit_event, process_id="shell")
    assert exec_exit.process_id == "shell" and not exec_exit.is_init
    assert not Event(type=EventType.IMAGE_CREATE, image="x").is_init


def test_event_unknown_keeps_topic_and_accepts_topic_string_type() -> None:
    event = Event(type="/future/thing", topic="/future/thing")
    assert event.type is EventType.UNKNOWN and event.topic == "/future/thing"
    assert Event(type="/tasks/oom").type is EventType.TASK_OOM


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pid": -1},
        {"exit_code": 2**32},
        {"container_id": 5},
        {"timestamp": dt.datetime(2024, 1, 1)},
        {"exited_at": dt.datetime(2024, 1, 1)},
    ],
)
def test_event_refuses(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        Event(type=EventType.TASK_EXIT, **kwargs)


def test_event_type_must_be_event_type() -> None:
    with pytest.raises(InvalidArgument):
        Event(type=3)  # type: ignore[arg-type]


def test_event_is_hashable_despite_raw() -> None:
    event = Event(type=EventType.TASK_OOM, container_id="c", raw={"a": [1]})
    assert hash(event) == hash(attrs.evolve(event, raw={"b": 2}))


# ---------------------------------------------------------------- descriptors


def test_media_type_constants() -> None:
    assert media.MEDIA_TYPE_OCI_INDEX == "application/vnd.oci.image.index.v1+json"
    assert media.MEDIA_TYPE_DOCKER_MANIFEST == (
        "application/vnd.docker.distribution.manifest.v2+json"
    )
    assert media.is_index(media.MEDIA_TYPE_DOCKER_MANIFEST_LIST)
    assert media.is_manifest(media.MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED_MANIFEST)
    assert media.is_config(media.MEDIA_TYPE_DOCKER_CONFIG)
    assert media.is_layer(media.MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP)
    assert not media.is_layer(media.MEDIA_TYPE_OCI_CONFIG)
    assert layer_compression(media.MEDIA_TYPE_OCI_LAYER_ZSTD) == "zstd"
    assert layer_compression(media.MEDIA_TYPE_DOCKER_LAYER_GZIP) == "gzip"
    assert layer_compression(media.MEDIA_TYPE_OCI_LAYER) == ""
    with pytest.raises(InvalidArgument):
        layer_compression(media.MEDIA_TYPE_OCI_LAYER + "+encrypted")


@pytest.mark.parametrize("value", ["", "json", "a/", "/b", "a b/c", "application/json\n", None])
def test_invalid_media_types(value: Any) -> None:
    with pytest.raises(InvalidArgument):
        validate_media_type(value)


def test_descriptor_to_dict() -> None:
    descriptor = Descriptor(
        media_type=media.MEDIA_TYPE_OCI_MANIFEST,
        digest=DIGEST,
        size=5,
        annotations={"org.opencontainers.image.ref.name": "v1"},
        platform=Platform("linux", "arm64", "v8"),
    )
    assert descriptor.to_dict() == {
        "mediaType": media.MEDIA_TYPE_OCI_MANIFEST,
        "digest": DIGEST,
        "size": 5,
        "annotations": {"org.opencontainers.image.ref.name": "v1"},
        "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
    }
    assert Descriptor.from_dict(descriptor.to_dict()) == descriptor
    hash(descriptor)


def test_descriptor_from_docker_manifest_list_entry() -> None:
    entry = {
        "mediaType": media.MEDIA_TYPE_DOCKER_MANIFEST,
        "digest": DIGEST,
        "size": 527,
        "platform": {"architecture": "amd64", "os": "linux", "features": ["sse4"]},
        "artifactType": "ignored",
    }
    descriptor = Descriptor.from_dict(entry)
    assert descriptor.platform == Platform("linux", "amd64")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ([], "JSON object"),
        ({"digest": DIGEST, "size": 1}, "'mediaType'"),
        ({"mediaType": "a/b", "size": 1}, "'digest'"),
        ({"mediaType": "a/b", "digest": DIGEST}, "'size'"),
        ({"mediaType": "a/b", "digest": "sha256:x", "size": 1}, "digest"),
        ({"mediaType": "a/b", "digest": DIGEST, "size": -1}, "negative"),
        ({"mediaType": "a/b", "digest": DIGEST, "size": "1"}, "must be an int"),
        ({"mediaType": "a/b", "digest": DIGEST, "size": 1, "urls": "http://x"}, "urls"),
        ({"mediaType": "a/b", "digest": DIGEST, "size": 1, "annotations": []}, "annotations"),
        ({"mediaType": "a/b", "digest": DIGEST, "size": 1, "annotations": {"a": 1}}, "str"),
        ({"mediaType": "a/b", "digest": DIGEST, "size": 1, "platform": "linux"}, "platform"),
        ({"mediaType": "a/b", "digest": DIGEST, "size": 1, "platform": {"os": "linux"}}, "arch"),
    ],
)
def test_descriptor_from_dict_refuses(data: Any, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        Descriptor.from_dict(data)
    assert fragment in str(info.value)


_token = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,8}", fullmatch=True)
_platforms = st.builds(
    Platform,
    _token,
    _token,
    st.one_of(st.just(""), _token),
    st.one_of(st.just(""), st.from_regex(r"[A-Za-z0-9_.+:-]{1,12}", fullmatch=True)),
    st.lists(st.from_regex(r"[A-Za-z0-9_.+:-]{1,8}", fullmatch=True), max_size=3).map(tuple),
)
_descriptors = st.builds(
    Descriptor,
    media_type=st.sampled_from(
        [
            media.MEDIA_TYPE_OCI_INDEX,
            media.MEDIA_TYPE_OCI_MANIFEST,
            media.MEDIA_TYPE_OCI_LAYER_GZIP,
            media.MEDIA_TYPE_DOCKER_CONFIG,
            "application/vnd.example+json; charset=utf-8",
        ]
    ),
    digest=st.binary(max_size=16).map(sha256_digest),
    size=st.integers(0, 2**63 - 1),
    urls=st.lists(st.text(min_size=1, max_size=20), max_size=2).map(tuple),
    annotations=st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
    platform=st.one_of(st.none(), _platforms),
)


@settings(max_examples=300)
@given(_descriptors)
def test_descriptor_dict_round_trip(descriptor: Descriptor) -> None:
    encoded = json.loads(json.dumps(descriptor.to_dict()))
    assert Descriptor.from_dict(encoded) == descriptor


# ---------------------------------------------------------------- images and mounts


def test_image() -> None:
    target = Descriptor(media_type=media.MEDIA_TYPE_OCI_INDEX, digest=DIGEST, size=10)
    created = dt.datetime(2024, 1, 1, tzinfo=UTC)
    image = Image(
        name="docker.io/library/busybox:latest",
        target=target,
        labels={"a": "b"},
        created_at=created,
        updated_at=created,
        platforms=[Platform("linux", "amd64")],
    )
    assert image.digest == DIGEST
    assert image.platforms == (Platform("linux", "amd64"),)
    assert image.reference().familiar() == "busybox:latest"
    hash(image)
    odd = Image(name="Imported Image", target=target)
    assert odd.labels == {} and odd.created_at is None
    with pytest.raises(InvalidArgument):
        odd.reference()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": ""},
        {"name": " x"},
        {"name": "a\0b"},
        {"name": 5},
        {"target": "sha256:..."},
        {"labels": {"k": 1}},
        {"labels": {"": "v"}},
        {"labels": {"k": "v" * 4096}},
        {"created_at": dt.datetime(2024, 1, 1)},
        {"platforms": ["linux/amd64"]},
    ],
)
def test_image_refuses(kwargs: dict[str, Any]) -> None:
    base: dict[str, Any] = {
        "name": "x",
        "target": Descriptor(media_type=media.MEDIA_TYPE_OCI_INDEX, digest=DIGEST, size=1),
    }
    with pytest.raises(InvalidArgument):
        Image(**{**base, **kwargs})


def test_label_limit_is_in_bytes() -> None:
    assert validate_labels({"k": "v" * 4095}) == {"k": "v" * 4095}
    with pytest.raises(InvalidArgument, match="4096"):
        validate_labels({"k": "\u00e9" * 2048})


def test_mount_to_and_from_oci() -> None:
    mount = Mount(type="bind", source="/srv", target="/data", options=["rbind", "ro"])
    assert mount.options == ("rbind", "ro")
    encoded = mount.to_oci()
    assert encoded == {
        "destination": "/data",
        "type": "bind",
        "source": "/srv",
        "options": ["rbind", "ro"],
    }
    assert Mount.from_oci(encoded) == mount
    assert Mount(type="tmpfs", source="tmpfs", target="/tmp").to_oci() == {
        "destination": "/tmp",
        "type": "tmpfs",
        "source": "tmpfs",
    }


def test_rootfs_mount_has_no_target() -> None:
    mount = Mount(type="overlay", source="overlay", options=("lowerdir=/a",))
    with pytest.raises(InvalidArgument, match="no target"):
        mount.to_oci()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"type": "bind", "source": "/a", "target": "relative"},
        {"type": "bind", "source": "/a\0", "target": "/x"},
        {"type": "bind", "source": "/a", "target": "/x", "options": "ro"},
        {"type": "bind", "source": "/a", "target": "/x", "options": [""]},
        {"type": 1, "source": "/a", "target": "/x"},
    ],
)
def test_mount_refuses(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        Mount(**kwargs)


@pytest.mark.parametrize("data", [[], {"type": "bind"}, {"destination": "/x", "options": "ro"}])
def test_mount_from_oci_refuses(data: Any) -> None:
    with pytest.raises(InvalidArgument):
        Mount.from_oci(data)


_paths = st.from_regex(r"/[a-z0-9/._-]{0,20}", fullmatch=True)
_mounts = st.builds(
    Mount,
    type=st.sampled_from(["", "bind", "tmpfs", "proc"]),
    source=st.one_of(st.just(""), _paths),
    target=_paths,
    options=st.lists(st.sampled_from(["ro", "rbind", "nosuid", "mode=755"]), max_size=3).map(tuple),
)


@settings(max_examples=200)
@given(_mounts)
def test_mount_oci_round_trip(mount: Mount) -> None:
    assert Mount.from_oci(json.loads(json.dumps(mount.to_oci()))) == mount
