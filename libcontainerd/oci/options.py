"""Composable spec options.

Each ``with_*`` function validates its arguments *when it is called* (so a mistake points at
the caller's line) and returns a :data:`~libcontainerd.oci.spec.SpecOpt` that edits a spec in
place. Options apply in order, so a later option wins over an earlier one::

    spec = generate_spec(
        with_image_config(image_config, rootfs=rootfs),
        with_env({"MODE": "test"}),          # overrides the image's MODE
        with_memory_limit(64 * 1024 * 1024),
        container_id="web",
    )

Options that need the root filesystem (user names) take ``rootfs=``; without it they use the
spec's root path when that is absolute.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable

from libcontainerd.errors import InvalidArgument
from libcontainerd.oci.fields import (
    check_abs_path,
    check_env_entries,
    check_int,
    check_str,
    linux_section,
    merge_env,
    process_section,
    resources_section,
    str_list,
)
from libcontainerd.oci.spec import (
    DEFAULT_PATH_ENV,
    NAMESPACE_KINDS,
    Spec,
    SpecOpt,
)
from libcontainerd.oci.users import MAX_ID, parse_user, resolve_user

__all__ = [
    "OciMountable",
    "with_additional_gids",
    "with_annotations",
    "with_cgroups_path",
    "with_cpu_quota",
    "with_cpu_shares",
    "with_cwd",
    "with_default_path_env",
    "with_env",
    "with_host_namespaces",
    "with_hostname",
    "with_linux_namespace",
    "with_memory_limit",
    "with_mounts",
    "with_namespaces",
    "with_pids_limit",
    "with_process_args",
    "with_readonly_rootfs",
    "with_rootfs",
    "with_tty",
    "with_uid_gid",
    "with_user",
    "without_mounts",
]

_MAX_INT64 = 2**63 - 1
_HOST_NAME_MAX = 64


@runtime_checkable
class OciMountable(Protocol):
    """Anything that can describe itself as a runtime-spec mount (e.g. ``types.mount.Mount``)."""

    def to_oci(self) -> Mapping[str, Any]:
        """The mount as a runtime-spec mount object."""
        ...


# ---------------------------------------------------------------------------- helpers


def _set_user(spec: Spec, uid: int, gid: int, additional: Sequence[int]) -> None:
    gids = [gid, *(g for g in additional if g != gid)]
    process_section(spec)["user"] = {"uid": uid, "gid": gid, "additionalGids": gids}


def _effective_rootfs(spec: Spec, rootfs: Path | str | None) -> Path | None:
    if rootfs is not None:
        return Path(rootfs)
    path = spec.get("root", {}).get("path")
    if isinstance(path, str) and path.startswith("/"):
        return Path(path)
    return None


def _check_namespace_kind(kind: object) -> str:
    if kind == "net":
        kind = "network"
    if not isinstance(kind, str) or kind not in NAMESPACE_KINDS:
        raise InvalidArgument(
            f"unknown namespace kind {kind!r}; use one of {', '.join(NAMESPACE_KINDS)}"
        )
    return kind


def _mount_dict(mount: object) -> dict[str, Any]:
    if isinstance(mount, OciMountable):
        raw: object = mount.to_oci()
    else:
        raw = mount
    if not isinstance(raw, Mapping):
        raise InvalidArgument(
            f"mount {mount!r} must be a Mount (with to_oci()) or a mapping with "
            "'destination', 'type', 'source' and 'options'"
        )
    unknown = set(raw) - {"destination", "type", "source", "options", "uidMappings", "gidMappings"}
    if unknown:
        raise InvalidArgument(
            f"mount {dict(raw)!r} has unknown keys {sorted(unknown)}; "
            "runtime-spec mounts use 'destination', 'type', 'source', 'options'"
        )
    result: dict[str, Any] = {
        "destination": check_abs_path(raw.get("destination"), "mount destination")
    }
    for key in ("type", "source"):
        # A runtime fills a missing type or source by guessing (or fails late, in the
        # container's init); refusing here matches what the mount actually needs.
        if not raw.get(key):
            raise InvalidArgument(
                f"mount on {result['destination']} has no {key}; give both 'type' and "
                "'source' (e.g. type 'bind' with the host path as source, or type 'tmpfs' "
                "with source 'tmpfs')"
            )
        result[key] = check_str(raw[key], f"mount {key}")
    if raw.get("options") is not None:
        result["options"] = str_list(raw["options"], "mount options")
    for key in ("uidMappings", "gidMappings"):
        if key in raw:
            result[key] = [dict(m) for m in raw[key]]
    return result


# ---------------------------------------------------------------------------- process


def with_process_args(*args: str) -> SpecOpt:
    """Set the command the container runs: ``args[0]`` is the program, resolved by the
    runtime through the container's ``PATH``."""
    if not args:
        raise InvalidArgument("with_process_args needs at least the program to run")
    checked = [check_str(a, "process argument", allow_empty=True) for a in args]
    if not checked[0]:
        raise InvalidArgument("the first process argument (the program) must not be empty")

    def opt(spec: Spec) -> None:
        process_section(spec)["args"] = list(checked)

    return opt


def with_env(env: Sequence[str] | Mapping[str, str]) -> SpecOpt:
    """Set environment variables, replacing a variable of the same name or appending it.

    ``env`` is a mapping of names to values, or a sequence of ``"NAME=value"`` strings in
    which a bare ``"NAME"`` removes that variable.
    """
    if isinstance(env, Mapping):
        entries = []
        for key, value in env.items():
            check_str(key, "environment variable name")
            if "=" in key:
                raise InvalidArgument(f"environment variable name {key!r} must not contain '='")
            entries.append(f"{key}={check_str(value, f'value of {key}', allow_empty=True)}")
    else:
        entries = check_env_entries(env, "env")

    def opt(spec: Spec) -> None:
        process = process_section(spec)
        process["env"] = merge_env(process.get("env") or [], entries)

    return opt


def with_default_path_env() -> SpecOpt:
    """Set ``PATH`` to the default search path (``/usr/local/sbin:...:/bin``)."""
    return with_env([DEFAULT_PATH_ENV])


def with_cwd(path: str | PurePosixPath) -> SpecOpt:
    """Set the working directory of the process; it must be an absolute path."""
    cwd = check_abs_path(path, "working directory")

    def opt(spec: Spec) -> None:
        process_section(spec)["cwd"] = cwd

    return opt


def with_tty(enabled: bool = True) -> SpecOpt:
    """Give the process a terminal (and ``TERM=xterm``), or take it away with ``False``.

    Disabling leaves the environment as it is.
    """
    if not isinstance(enabled, bool):
        raise InvalidArgument(f"enabled must be a bool, got {type(enabled).__name__}")

    def opt(spec: Spec) -> None:
        process = process_section(spec)
        process["terminal"] = enabled
        if enabled:
            process["env"] = merge_env(process.get("env") or [], ["TERM=xterm"])

    return opt


def with_user(user: str | int, *, rootfs: Path | str | None = None) -> SpecOpt:
    """Run the process as ``user``: ``uid``, ``"uid"``, ``"uid:gid"``, ``"name"``,
    ``"name:group"`` (or a mix).

    Names are looked up in ``rootfs``'s ``/etc/passwd`` and ``/etc/group`` (default: the
    spec's root path, when it is absolute); a name without a root filesystem is an
    :class:`InvalidArgument`, a name not found a :class:`~libcontainerd.errors.NotFound`. A
    lone user also gets its primary group from passwd and the groups that list it as
    supplementary groups.
    """
    # Check the syntax now so a malformed string fails at the call site, even though the
    # name lookup may have to wait for the spec's root path.
    parse_user(user)

    def opt(spec: Spec) -> None:
        resolved = resolve_user(user, _effective_rootfs(spec, rootfs))
        _set_user(spec, resolved.uid, resolved.gid, resolved.additional_gids)

    return opt


def with_uid_gid(uid: int, gid: int) -> SpecOpt:
    """Run the process as numeric ``uid`` and primary group ``gid`` (no supplementary groups)."""
    check_int(uid, "uid", 0, MAX_ID)
    check_int(gid, "gid", 0, MAX_ID)

    def opt(spec: Spec) -> None:
        _set_user(spec, uid, gid, ())

    return opt


def with_additional_gids(*gids: int) -> SpecOpt:
    """Add supplementary groups to the process (duplicates are dropped)."""
    checked = [check_int(g, "gid", 0, MAX_ID) for g in gids]

    def opt(spec: Spec) -> None:
        user = process_section(spec).setdefault("user", {"uid": 0, "gid": 0})
        current = list(user.get("additionalGids") or [user.get("gid", 0)])
        current.extend(g for g in checked if g not in current)
        user["additionalGids"] = current

    return opt


# ---------------------------------------------------------------------------- root and mounts


def with_hostname(name: str) -> SpecOpt:
    """Set the container's hostname (needs the UTS namespace, which the default spec has)."""
    check_str(name, "hostname")
    if len(name.encode()) > _HOST_NAME_MAX or any(c.isspace() or c == "/" for c in name):
        raise InvalidArgument(
            f"hostname {name!r} must be at most {_HOST_NAME_MAX} bytes without spaces or '/'"
        )

    def opt(spec: Spec) -> None:
        spec["hostname"] = name

    return opt


def with_rootfs(path: str | os.PathLike[str]) -> SpecOpt:
    """Set the root filesystem path: absolute, or relative to the bundle directory."""
    text = check_str(os.fspath(path) if isinstance(path, os.PathLike) else path, "rootfs path")

    def opt(spec: Spec) -> None:
        spec.setdefault("root", {})["path"] = text

    return opt


def with_readonly_rootfs(readonly: bool = True) -> SpecOpt:
    """Mount the root filesystem read-only (or writable again with ``False``)."""
    if not isinstance(readonly, bool):
        raise InvalidArgument(f"readonly must be a bool, got {type(readonly).__name__}")

    def opt(spec: Spec) -> None:
        spec.setdefault("root", {"path": "rootfs"})["readonly"] = readonly

    return opt


def with_mounts(mounts: Iterable[OciMountable | Mapping[str, Any]]) -> SpecOpt:
    """Append mounts, given as ``Mount`` objects (anything with ``to_oci()``) or as
    runtime-spec mount mappings. A mount on the same destination as an existing one replaces
    it, so a caller can, say, swap the default ``/dev/shm`` for a bigger one."""
    if isinstance(mounts, (Mapping, str)) or not isinstance(mounts, Iterable):
        raise InvalidArgument("mounts must be a sequence of mounts (wrap a single mount in a list)")
    checked = [_mount_dict(m) for m in mounts]

    def opt(spec: Spec) -> None:
        current = spec.setdefault("mounts", [])
        for mount in checked:
            dest = os.path.normpath(mount["destination"])
            current[:] = [m for m in current if os.path.normpath(m.get("destination", "")) != dest]
            current.append(dict(mount))

    return opt


def without_mounts(*destinations: str) -> SpecOpt:
    """Remove the mounts on the given destinations (absent ones are ignored)."""
    dests = {os.path.normpath(check_abs_path(d, "mount destination")) for d in destinations}

    def opt(spec: Spec) -> None:
        spec["mounts"] = [
            m
            for m in spec.get("mounts") or []
            if os.path.normpath(m.get("destination", "")) not in dests
        ]

    return opt


# ---------------------------------------------------------------------------- resources


def with_memory_limit(limit: int) -> SpecOpt:
    """Limit the container's memory to ``limit`` bytes (at least 4 MiB, below which runtimes
    cannot even start the process)."""
    check_int(limit, "memory limit", 4 * 1024 * 1024, _MAX_INT64)

    def opt(spec: Spec) -> None:
        resources_section(spec).setdefault("memory", {})["limit"] = limit

    return opt


def with_cpu_shares(shares: int) -> SpecOpt:
    """Set the container's relative CPU weight (cgroup ``cpu.shares``, 2..262144; 1024 is
    the kernel's default)."""
    check_int(shares, "cpu shares", 2, 262144)

    def opt(spec: Spec) -> None:
        resources_section(spec).setdefault("cpu", {})["shares"] = shares

    return opt


def with_cpu_quota(quota: int, period: int = 100_000) -> SpecOpt:
    """Allow ``quota`` microseconds of CPU time per ``period`` microseconds (CFS bandwidth);
    ``quota=-1`` removes the limit. ``period`` must be in 1000..1000000."""
    check_int(period, "cpu period", 1000, 1_000_000)
    if quota != -1:
        check_int(quota, "cpu quota (or -1 for no limit)", 1000, _MAX_INT64)

    def opt(spec: Spec) -> None:
        cpu = resources_section(spec).setdefault("cpu", {})
        cpu["quota"] = quota
        cpu["period"] = period

    return opt


def with_pids_limit(limit: int) -> SpecOpt:
    """Allow at most ``limit`` processes and threads in the container (``-1``: unlimited)."""
    if limit != -1:
        check_int(limit, "pids limit (or -1 for no limit)", 1, _MAX_INT64)

    def opt(spec: Spec) -> None:
        resources_section(spec)["pids"] = {"limit": limit}

    return opt


def with_cgroups_path(path: str) -> SpecOpt:
    """Place the container in the cgroup ``path`` (absolute, below the cgroup root)."""
    text = check_abs_path(path, "cgroups path")

    def opt(spec: Spec) -> None:
        linux_section(spec)["cgroupsPath"] = text

    return opt


# ---------------------------------------------------------------------------- namespaces


def with_namespaces(*kinds: str) -> SpecOpt:
    """Give the container its own namespaces of ``kinds`` (added when missing)."""
    checked = [_check_namespace_kind(k) for k in kinds]

    def opt(spec: Spec) -> None:
        namespaces = linux_section(spec).setdefault("namespaces", [])
        present = {ns.get("type") for ns in namespaces}
        for kind in checked:
            if kind not in present:
                namespaces.append({"type": kind})
                present.add(kind)

    return opt


def with_host_namespaces(*kinds: str) -> SpecOpt:
    """Share the host's namespaces of ``kinds`` (e.g. ``"network"``) by removing them."""
    checked = {_check_namespace_kind(k) for k in kinds}

    def opt(spec: Spec) -> None:
        linux = linux_section(spec)
        linux["namespaces"] = [
            ns for ns in linux.get("namespaces") or [] if ns.get("type") not in checked
        ]

    return opt


def with_linux_namespace(kind: str, path: str | os.PathLike[str]) -> SpecOpt:
    """Join an existing namespace of ``kind`` at ``path`` (e.g. ``/proc/<pid>/ns/net``)."""
    checked = _check_namespace_kind(kind)
    ns_path = check_abs_path(path, "namespace path")

    def opt(spec: Spec) -> None:
        namespaces = linux_section(spec).setdefault("namespaces", [])
        entry = {"type": checked, "path": ns_path}
        for i, ns in enumerate(namespaces):
            if ns.get("type") == checked:
                namespaces[i] = entry
                return
        namespaces.append(entry)

    return opt


# ---------------------------------------------------------------------------- metadata


def with_annotations(annotations: Mapping[str, str]) -> SpecOpt:
    """Add or replace annotations (string keys and values)."""
    if not isinstance(annotations, Mapping):
        raise InvalidArgument(
            f"annotations must be a mapping of str to str, got {type(annotations).__name__}"
        )
    checked = {
        check_str(k, "annotation key"): check_str(v, f"annotation {k!r}", allow_empty=True)
        for k, v in annotations.items()
    }

    def opt(spec: Spec) -> None:
        spec.setdefault("annotations", {}).update(checked)

    return opt
