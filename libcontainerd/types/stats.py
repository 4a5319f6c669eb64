"""Container metrics (:class:`Stats`) and resource limits (:class:`Resources`).

Both are backend-neutral: the remote backend fills :class:`Stats` from
containerd's cgroup v1 or v2 metrics, the local backend from ``runc events
--stats`` (:meth:`Stats.from_runc`); the raw backend data stays available in
``Stats.raw``. :class:`Resources` is what a Linux task can be given at creation
or by ``Task.update_resources``; it converts to and from the OCI runtime-spec
``linux.resources`` JSON object.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from typing import Any

import attrs

from libcontainerd.errors import InvalidArgument
from libcontainerd.types.identifiers import frozen_mapping, safe_repr, to_utc

__all__ = ["Resources", "Stats", "validate_cpuset"]

_MAX_U64 = 2**64 - 1
_MAX_I64 = 2**63 - 1
# cgroup v1 reports "no limit" as the largest page-aligned int64, v2 as "max" which
# runc turns into 2**64-1; anything this large is not a real limit.
_UNLIMITED_THRESHOLD = 2**62


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _counter(instance: object, attribute: attrs.Attribute[int | None], value: object) -> None:
    if value is None:
        return
    if not _is_int(value):
        raise InvalidArgument(
            f"Stats.{attribute.name} must be an int or None, not {type(value).__name__}"
        )
    assert isinstance(value, int)
    if not 0 <= value <= _MAX_U64:
        raise InvalidArgument(f"Stats.{attribute.name} must be between 0 and 2**64-1, got {value}")


def _hugetlb(value: Mapping[str, int] | None) -> Mapping[str, int]:
    result = frozen_mapping(value)
    for size, usage in result.items():
        if not _is_int(usage) or usage < 0:
            raise InvalidArgument(
                f"Stats.hugetlb[{safe_repr(size)}] must be a non-negative int, got "
                f"{safe_repr(usage)}"
            )
    return result


def _stats_timestamp(value: _dt.datetime) -> _dt.datetime:
    return to_utc(value, what="Stats.timestamp")


def _cgroup_version(instance: Stats, attribute: attrs.Attribute[int | None], value: object) -> None:
    if value not in (None, 1, 2) or isinstance(value, bool):
        raise InvalidArgument(f"Stats.cgroup_version must be 1, 2 or None, got {safe_repr(value)}")


def _opt_counter() -> Any:
    return attrs.field(default=None, validator=_counter)


@attrs.frozen(kw_only=True)
class Stats:
    """A sample of a container's resource usage. Every figure is ``None`` when unknown.

    Units: CPU times in nanoseconds, memory and I/O in bytes. ``memory_limit`` and
    ``pids_limit`` are ``None`` when there is no limit. ``memory_swap`` is swap in
    use, not counting memory (cgroup v1's ``memsw`` includes memory; it is
    subtracted). ``hugetlb`` maps a page size such as ``"2MB"`` to bytes in use.
    ``raw`` is the backend's own data, for details not modelled here.
    """

    timestamp: _dt.datetime = attrs.field(factory=_now, converter=_stats_timestamp)
    cgroup_version: int | None = attrs.field(default=None, validator=_cgroup_version)
    cpu_usage_total_ns: int | None = _opt_counter()
    cpu_usage_user_ns: int | None = _opt_counter()
    cpu_usage_kernel_ns: int | None = _opt_counter()
    cpu_throttling_periods: int | None = _opt_counter()
    cpu_throttled_periods: int | None = _opt_counter()
    cpu_throttled_time_ns: int | None = _opt_counter()
    memory_usage: int | None = _opt_counter()
    memory_limit: int | None = _opt_counter()
    memory_max_usage: int | None = _opt_counter()
    memory_cache: int | None = _opt_counter()
    memory_rss: int | None = _opt_counter()
    memory_swap: int | None = _opt_counter()
    pids_current: int | None = _opt_counter()
    pids_limit: int | None = _opt_counter()
    blkio_read_bytes: int | None = _opt_counter()
    blkio_write_bytes: int | None = _opt_counter()
    hugetlb: Mapping[str, int] = attrs.field(factory=dict, converter=_hugetlb, hash=False)
    raw: Mapping[str, Any] = attrs.field(
        factory=dict, converter=frozen_mapping, eq=False, hash=False, repr=False
    )

    @classmethod
    def from_runc(
        cls,
        data: Mapping[str, Any],
        *,
        timestamp: _dt.datetime | None = None,
        cgroup_version: int | None = None,
    ) -> Stats:
        """Build from the ``data`` object of ``runc events --stats`` (crun prints the same).

        runc reports the same shape for cgroup v1 and v2; pass ``cgroup_version``
        when known. Malformed data is an :class:`InvalidArgument`.
        """
        if not isinstance(data, Mapping):
            raise InvalidArgument(f"runc stats must be a JSON object, not {type(data).__name__}")
        cpu = _section(data, "cpu")
        usage = _section(cpu, "usage", "cpu.")
        throttling = _section(cpu, "throttling", "cpu.")
        memory = _section(data, "memory")
        mem_usage = _section(memory, "usage", "memory.")
        mem_swap = _section(memory, "swap", "memory.")
        mem_raw = _section(memory, "raw", "memory.")
        pids = _section(data, "pids")
        blkio = _section(data, "blkio")
        hugetlb_data = _section(data, "hugetlb")

        read = write = 0
        entries = blkio.get("ioServiceBytesRecursive")
        if entries is None:
            entries = []
        if not isinstance(entries, list):
            raise InvalidArgument("runc stats blkio.ioServiceBytesRecursive must be a list")
        for entry in entries:
            if not isinstance(entry, Mapping):
                raise InvalidArgument("runc stats blkio entries must be objects")
            op = str(entry.get("op", "")).lower()
            value = _number(entry, "value", "blkio entry ") or 0
            if op == "read":
                read += value
            elif op == "write":
                write += value

        hugetlb: dict[str, int] = {}
        for size, item in hugetlb_data.items():
            if not isinstance(item, Mapping):
                raise InvalidArgument(f"runc stats hugetlb.{size} must be an object")
            hugetlb[str(size)] = _number(item, "usage", "hugetlb.") or 0

        mem_used = _number(mem_usage, "usage", "memory.usage.")
        swap_total = _number(mem_swap, "usage", "memory.swap.")
        swap = None
        if swap_total is not None and mem_used is not None:
            swap = max(swap_total - mem_used, 0)
        rss = _number(mem_raw, "rss", "memory.raw.")
        if rss is None:
            rss = _number(mem_raw, "anon", "memory.raw.")  # cgroup v2 name
        cache = _number(memory, "cache", "memory.")
        if cache is None:
            cache = _number(mem_raw, "file", "memory.raw.")

        return cls(
            timestamp=timestamp if timestamp is not None else _now(),
            cgroup_version=cgroup_version,
            cpu_usage_total_ns=_number(usage, "total", "cpu.usage."),
            cpu_usage_user_ns=_number(usage, "user", "cpu.usage."),
            cpu_usage_kernel_ns=_number(usage, "kernel", "cpu.usage."),
            cpu_throttling_periods=_number(throttling, "periods", "cpu.throttling."),
            cpu_throttled_periods=_number(throttling, "throttledPeriods", "cpu.throttling."),
            cpu_throttled_time_ns=_number(throttling, "throttledTime", "cpu.throttling."),
            memory_usage=mem_used,
            memory_limit=_limit(_number(mem_usage, "limit", "memory.usage.")),
            memory_max_usage=_number(mem_usage, "max", "memory.usage."),
            memory_cache=cache,
            memory_rss=rss,
            memory_swap=swap,
            pids_current=_number(pids, "current", "pids."),
            pids_limit=_limit(_number(pids, "limit", "pids.")) or None,
            blkio_read_bytes=read if entries else None,
            blkio_write_bytes=write if entries else None,
            hugetlb=hugetlb,
            raw=data,
        )


def _section(data: Mapping[str, Any], key: str, prefix: str = "") -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"runc stats {prefix}{key} must be an object")
    return value


def _number(data: Mapping[str, Any], key: str, prefix: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if not _is_int(value) or value < 0:
        raise InvalidArgument(
            f"runc stats {prefix}{key} must be a non-negative integer, got {safe_repr(value)}"
        )
    assert isinstance(value, int)
    return value


def _limit(value: int | None) -> int | None:
    if value is None or value >= _UNLIMITED_THRESHOLD:
        return None
    return value


# ---------------------------------------------------------------- resources

_CPUSET_RE = re.compile(r"[0-9]+(?:-[0-9]+)?(?:,[0-9]+(?:-[0-9]+)?)*")
_MAX_CPUSET_TEXT = 4096


def validate_cpuset(value: object, *, what: str = "cpuset") -> str:
    """Return ``value`` if it is a cpuset list such as ``0-2,4``, else raise InvalidArgument."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a str such as '0-2,4', not {type(value).__name__}")
    if len(value) > _MAX_CPUSET_TEXT or _CPUSET_RE.fullmatch(value) is None:
        raise InvalidArgument(
            f"{what} {safe_repr(value)} is not valid: use comma-separated numbers or ranges "
            "without spaces, such as '0-2,4'"
        )
    for part in value.split(","):
        low, _, high = part.partition("-")
        if high and int(high) < int(low):
            raise InvalidArgument(
                f"{what} {safe_repr(value)} has the range {part!r} whose end is below its start"
            )
    return value


def _int_field(
    name: str, *, low: int, high: int, allow_unlimited: bool = False, hint: str = ""
) -> Any:
    def check(instance: object, attribute: attrs.Attribute[int | None], value: object) -> None:
        if value is None:
            return
        if not _is_int(value):
            raise InvalidArgument(
                f"Resources.{name} must be an int or None, not {type(value).__name__}"
            )
        assert isinstance(value, int)
        if allow_unlimited and value == -1:
            return
        if not low <= value <= high:
            extra = " or -1 for unlimited" if allow_unlimited else ""
            raise InvalidArgument(
                f"Resources.{name} {value} is out of range: expected {low} to {high}{extra}"
                f"{hint}; use None to leave it unset"
            )

    return attrs.field(default=None, validator=check)


def _cpuset_field(name: str) -> Any:
    def check(instance: object, attribute: attrs.Attribute[str | None], value: object) -> None:
        if value is not None:
            validate_cpuset(value, what=f"Resources.{name}")

    return attrs.field(default=None, validator=check)


# (OCI section, OCI key, attribute name)
_OCI_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("cpu", "shares", "cpu_shares"),
    ("cpu", "quota", "cpu_quota"),
    ("cpu", "period", "cpu_period"),
    ("cpu", "cpus", "cpus"),
    ("cpu", "mems", "mems"),
    ("memory", "limit", "memory_limit"),
    ("memory", "swap", "memory_swap"),
    ("memory", "reservation", "memory_reservation"),
    ("pids", "limit", "pids_limit"),
    ("blockIO", "weight", "blkio_weight"),
)
_STRING_ATTRIBUTES = frozenset({"cpus", "mems"})
_ZERO_ALLOWED = frozenset({"memory_reservation"})


@attrs.frozen(kw_only=True)
class Resources:
    """Linux resource limits for a task; ``None`` leaves a limit unset (or unchanged on update).

    Ranges are checked here, before a runtime sees them: ``cpu_shares`` 2..262144,
    ``cpu_quota`` in microseconds per period (at least 1000, or -1 for none),
    ``cpu_period`` 1000..1000000 microseconds, ``cpus``/``mems`` cpuset lists like
    ``0-2,4``, memory figures in bytes (-1 for unlimited; ``memory_swap`` is memory
    plus swap, as in the OCI spec, so it may not be below ``memory_limit``),
    ``pids_limit`` positive or -1, ``blkio_weight`` 10..1000.
    """

    cpu_shares: int | None = _int_field("cpu_shares", low=2, high=262144)
    cpu_quota: int | None = _int_field("cpu_quota", low=1000, high=_MAX_I64, allow_unlimited=True)
    cpu_period: int | None = _int_field("cpu_period", low=1000, high=1_000_000)
    cpus: str | None = _cpuset_field("cpus")
    mems: str | None = _cpuset_field("mems")
    memory_limit: int | None = _int_field(
        "memory_limit", low=1, high=_MAX_I64, allow_unlimited=True
    )
    memory_swap: int | None = _int_field("memory_swap", low=1, high=_MAX_I64, allow_unlimited=True)
    memory_reservation: int | None = _int_field(
        "memory_reservation", low=0, high=_MAX_I64, allow_unlimited=True
    )
    pids_limit: int | None = _int_field("pids_limit", low=1, high=_MAX_I64, allow_unlimited=True)
    blkio_weight: int | None = _int_field("blkio_weight", low=10, high=1000)

    def __attrs_post_init__(self) -> None:
        limit = self.memory_limit
        if limit is not None and limit > 0:
            swap = self.memory_swap
            if swap is not None and swap > 0 and swap < limit:
                raise InvalidArgument(
                    f"Resources.memory_swap ({swap}) is memory plus swap and must not be below "
                    f"memory_limit ({limit}); use -1 for unlimited swap"
                )
            reservation = self.memory_reservation
            if reservation is not None and reservation > limit:
                raise InvalidArgument(
                    f"Resources.memory_reservation ({reservation}) must not exceed "
                    f"memory_limit ({limit})"
                )

    def to_oci(self) -> dict[str, Any]:
        """The OCI runtime-spec ``linux.resources`` object holding the fields that are set."""
        result: dict[str, Any] = {}
        for section, key, name in _OCI_FIELDS:
            value = getattr(self, name)
            if value is not None:
                result.setdefault(section, {})[key] = value
        return result

    @classmethod
    def from_oci(cls, data: Mapping[str, Any]) -> Resources:
        """Read an OCI ``linux.resources`` object.

        Only the fields modelled here are read; other members (``devices``,
        ``hugepageLimits``, ``unified`` ...) are ignored. ``""`` and ``0`` read as
        unset, as runtimes treat them (except ``memory.reservation``, where 0 is a
        value). Wrong types or ranges are an :class:`InvalidArgument`.
        """
        if not isinstance(data, Mapping):
            raise InvalidArgument(
                f"linux.resources must be a JSON object, not {type(data).__name__}"
            )
        values: dict[str, Any] = {}
        for section, key, name in _OCI_FIELDS:
            part = data.get(section)
            if part is None:
                continue
            if not isinstance(part, Mapping):
                raise InvalidArgument(f"linux.resources.{section} must be a JSON object")
            value = part.get(key)
            # Runtimes read "" and 0 as "not set", and real specs contain both.
            if (
                value is None
                or value == ""
                or (_is_int(value) and value == 0 and name not in _ZERO_ALLOWED)
            ):
                continue
            if name in _STRING_ATTRIBUTES:
                if not isinstance(value, str):
                    raise InvalidArgument(
                        f"linux.resources.{section}.{key} must be a string, got {safe_repr(value)}"
                    )
            elif not _is_int(value):
                raise InvalidArgument(
                    f"linux.resources.{section}.{key} must be an integer, got {safe_repr(value)}"
                )
            values[name] = value
        return cls(**values)
