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
from libcontainerd.oci.spec import (
    DEFAULT_PATH_ENV,
    NAMESPACE_KINDS,
    Spec,
    SpecOpt,
)
from libcontainerd.oci.users import MAX_ID, parse_user, resolve_user

__all__ = [
    "ALL_CAPABILITIES",
    "OciMountable",
    "with_additional_gids",
    "with_annotations",
    "with_capabilities",
    "with_cgroups_path",
    "with_cpu_quota",
    "with_cpu_shares",
    "with_cwd",
    "with_default_path_env",
    "with_env",
    "with_host_namespaces",
    "with_hostname",
    "with_image_config",
    "with_linux_namespace",
    "with_memory_limit",
    "with_mounts",
    "with_namespaces",
    "with_pids_limit",
    "with_privileged",
    "with_process_args",
    "with_readonly_rootfs",
    "with_rootfs",
    "with_tty",
    "with_uid_gid",
    "with_user",
    "without_mounts",
]

#: Every Linux capability up to kernel 6.x, in kernel numbering order.
ALL_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

_MAX_INT64 = 2**63 - 1
_HOST_NAME_MAX = 64


@runtime_checkable
class OciMountable(Protocol):
    """Anything that can describe itself as a runtime-spec mount (e.g. ``types.mount.Mount``)."""

    def to_oci(self) -> Mapping[str, Any]:
        """The mount as a runtime-spec mount object."""
        ...


# ---------------------------------------------------------------------------- helpers


def _process(spec: Spec) -> dict[str, Any]:
    process: dict[str, Any] = spec.setdefault("process", {})
    return process


def _linux(spec: Spec) -> dict[str, Any]:
    linux: dict[str, Any] = spec.setdefault("linux", {})
    return linux


def _resources(spec: Spec) -> dict[str, Any]:
    resources: dict[str, Any] = _linux(spec).setdefault("resources", {})
    return resources


def _check_str(value: object, what: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a str, got {type(value).__name__}")
    if not allow_empty and not value:
        raise InvalidArgument(f"{what} must not be empty")
    if "\0" in value:
        raise InvalidArgument(f"{what} {value!r} must not contain a NUL character")
    return value


def _check_int(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidArgument(f"{what} {value} is out of range; it must be in {low}..{high}")
    return value


def _check_abs_path(value: object, what: str) -> str:
    text = _check_str(os.fspath(value) if isinstance(value, os.PathLike) else value, what)
    if not text.startswith("/"):
        raise InvalidArgument(f"{what} {text!r} must be an absolute path (start with '/')")
    return text


def _str_list(values: object, what: str) -> list[str]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InvalidArgument(
            f"{what} must be a sequence of str (not a single string), got {values!r}"
        )
    return [_check_str(v, f"each of {what}", allow_empty=True) for v in values]


def _env_key(entry: str) -> str:
    return entry.split("=", 1)[0]


def _check_env_entries(entries: Iterable[str], what: str) -> list[str]:
    checked = []
    for entry in _str_list(entries, what):
        if not entry or entry.startswith("="):
            raise InvalidArgument(f"environment entry {entry!r} in {what} has no variable name")
        checked.append(entry)
    return checked


def _merge_env(current: Sequence[str], overrides: Sequence[str]) -> list[str]:
    """``current`` with each ``KEY=VALUE`` of ``overrides`` replacing or appended, and each
    bare ``KEY`` removing that variable (containerd's rule)."""
    result = list(current)
    for entry in overrides:
        key = _env_key(entry)
        positions = [i for i, e in enumerate(result) if _env_key(e) == key]
        if "=" not in entry:
            result = [e for e in result if _env_key(e) != key]
        elif positions:
            result[positions[0]] = entry
            for i in reversed(positions[1:]):
                del result[i]
        else:
            result.append(entry)
    return result


def _set_user(spec: Spec, uid: int, gid: int, additional: Sequence[int]) -> None:
    gids = [gid, *(g for g in additional if g != gid)]
    _process(spec)["user"] = {"uid": uid, "gid": gid, "additionalGids": gids}


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


def _normalise_capability(cap: object) -> str:
    name = _check_str(cap, "capability").strip().upper()
    if not name.startswith("CAP_"):
        name = "CAP_" + name
    if name not in ALL_CAPABILITIES:
        raise InvalidArgument(
            f"unknown capability {cap!r}; use names such as 'CAP_NET_ADMIN' (see ALL_CAPABILITIES)"
        )
    return name


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
        "destination": _check_abs_path(raw.get("destination"), "mount destination")
    }
    for key in ("type", "source"):
        if raw.get(key) is not None:
            result[key] = _check_str(raw[key], f"mount {key}")
    if raw.get("options") is not None:
        result["options"] = _str_list(raw["options"], "mount options")
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
    checked = [_check_str(a, "process argument", allow_empty=True) for a in args]
    if not checked[0]:
        raise InvalidArgument("the first process argument (the program) must not be empty")

    def opt(spec: Spec) -> None:
        _process(spec)["args"] = list(checked)

    return opt


def with_env(env: Sequence[str] | Mapping[str, str]) -> SpecOpt:
    """Set environment variables, replacing a variable of the same name or appending it.

    ``env`` is a mapping of names to values, or a sequence of ``"NAME=value"`` strings in
    which a bare ``"NAME"`` removes that variable.
    """
    if isinstance(env, Mapping):
        entries = []
        for key, value in env.items():
            _check_str(key, "environment variable name")
            if "=" in key:
                raise InvalidArgument(f"environment variable name {key!r} must not contain '='")
            entries.append(f"{key}={_check_str(value, f'value of {key}', allow_empty=True)}")
    else:
        entries = _check_env_entries(env, "env")

    def opt(spec: Spec) -> None:
        process = _process(spec)
        process["env"] = _merge_env(process.get("env") or [], entries)

    return opt


def with_default_path_env() -> SpecOpt:
    """Set ``PATH`` to the default search path (``/usr/local/sbin:...:/bin``)."""
    return with_env([DEFAULT_PATH_ENV])


def with_cwd(path: str | PurePosixPath) -> SpecOpt:
    """Set the working directory of the process; it must be an absolute path."""
    cwd = _check_abs_path(path, "working directory")

    def opt(spec: Spec) -> None:
        _process(spec)["cwd"] = cwd

    return opt


def with_tty(enabled: bool = True) -> SpecOpt:
    """Give the process a terminal (and ``TERM=xterm``), or take it away with ``False``.

    Disabling leaves the environment as it is.
    """
    if not isinstance(enabled, bool):
        raise InvalidArgument(f"enabled must be a bool, got {type(enabled).__name__}")

    def opt(spec: Spec) -> None:
        process = _process(spec)
        process["terminal"] = enabled
        if enabled:
            process["env"] = _merge_env(process.get("env") or [], ["TERM=xterm"])

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
    _check_int(uid, "uid", 0, MAX_ID)
    _check_int(gid, "gid", 0, MAX_ID)

    def opt(spec: Spec) -> None:
        _set_user(spec, uid, gid, ())

    return opt


def with_additional_gids(*gids: int) -> SpecOpt:
    """Add supplementary groups to the process (duplicates are dropped)."""
    checked = [_check_int(g, "gid", 0, MAX_ID) for g in gids]

    def opt(spec: Spec) -> None:
        user = _process(spec).setdefault("user", {"uid": 0, "gid": 0})
        current = list(user.get("additionalGids") or [user.get("gid", 0)])
        current.extend(g for g in checked if g not in current)
        user["additionalGids"] = current

    return opt


def with_capabilities(caps: Iterable[str]) -> SpecOpt:
    """Give the process exactly ``caps`` (bounding, effective and permitted sets).

    Names are case-insensitive and the ``CAP_`` prefix is optional.
    """
    checked: list[str] = []
    for cap in _str_list(caps, "capabilities"):
        name = _normalise_capability(cap)
        if name not in checked:
            checked.append(name)

    def opt(spec: Spec) -> None:
        capabilities = _process(spec).setdefault("capabilities", {})
        for key in ("bounding", "effective", "permitted"):
            capabilities[key] = list(checked)

    return opt


def with_privileged() -> SpecOpt:
    """Make the container privileged: every capability, no masked or read-only paths,
    access to every device the cgroup would allow, and new privileges allowed.

    Host devices are not added to ``/dev``; mount them with :func:`with_mounts` if needed.
    """

    def opt(spec: Spec) -> None:
        with_capabilities(ALL_CAPABILITIES)(spec)
        _process(spec)["noNewPrivileges"] = False
        linux = _linux(spec)
        linux["maskedPaths"] = []
        linux["readonlyPaths"] = []
        _resources(spec)["devices"] = [{"allow": True, "access": "rwm"}]

    return opt


# ---------------------------------------------------------------------------- root and mounts


def with_hostname(name: str) -> SpecOpt:
    """Set the container's hostname (needs the UTS namespace, which the default spec has)."""
    _check_str(name, "hostname")
    if len(name.encode()) > _HOST_NAME_MAX or any(c.isspace() or c == "/" for c in name):
        raise InvalidArgument(
            f"hostname {name!r} must be at most {_HOST_NAME_MAX} bytes without spaces or '/'"
        )

    def opt(spec: Spec) -> None:
        spec["hostname"] = name

    return opt


def with_rootfs(path: str | os.PathLike[str]) -> SpecOpt:
    """Set the root filesystem path: absolute, or relative to the bundle directory."""
    text = _check_str(os.fspath(path) if isinstance(path, os.PathLike) else path, "rootfs path")

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
    dests = {os.path.normpath(_check_abs_path(d, "mount destination")) for d in destinations}

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
    _check_int(limit, "memory limit", 4 * 1024 * 1024, _MAX_INT64)

    def opt(spec: Spec) -> None:
        _resources(spec).setdefault("memory", {})["limit"] = limit

    return opt


def with_cpu_shares(shares: int) -> SpecOpt:
    """Set the container's relative CPU weight (cgroup ``cpu.shares``, 2..262144; 1024 is
    the kernel's default)."""
    _check_int(shares, "cpu shares", 2, 262144)

    def opt(spec: Spec) -> None:
        _resources(spec).setdefault("cpu", {})["shares"] = shares

    return opt


def with_cpu_quota(quota: int, period: int = 100_000) -> SpecOpt:
    """Allow ``quota`` microseconds of CPU time per ``period`` microseconds (CFS bandwidth);
    ``quota=-1`` removes the limit. ``period`` must be in 1000..1000000."""
    _check_int(period, "cpu period", 1000, 1_000_000)
    if quota != -1:
        _check_int(quota, "cpu quota (or -1 for no limit)", 1000, _MAX_INT64)

    def opt(spec: Spec) -> None:
        cpu = _resources(spec).setdefault("cpu", {})
        cpu["quota"] = quota
        cpu["period"] = period

    return opt


def with_pids_limit(limit: int) -> SpecOpt:
    """Allow at most ``limit`` processes and threads in the container (``-1``: unlimited)."""
    if limit != -1:
        _check_int(limit, "pids limit (or -1 for no limit)", 1, _MAX_INT64)

    def opt(spec: Spec) -> None:
        _resources(spec)["pids"] = {"limit": limit}

    return opt


def with_cgroups_path(path: str) -> SpecOpt:
    """Place the container in the cgroup ``path`` (absolute, below the cgroup root)."""
    text = _check_abs_path(path, "cgroups path")

    def opt(spec: Spec) -> None:
        _linux(spec)["cgroupsPath"] = text

    return opt


# ---------------------------------------------------------------------------- namespaces


def with_namespaces(*kinds: str) -> SpecOpt:
    """Give the container its own namespaces of ``kinds`` (added when missing)."""
    checked = [_check_namespace_kind(k) for k in kinds]

    def opt(spec: Spec) -> None:
        namespaces = _linux(spec).setdefault("namespaces", [])
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
        linux = _linux(spec)
        linux["namespaces"] = [
            ns for ns in linux.get("namespaces") or [] if ns.get("type") not in checked
        ]

    return opt


def with_linux_namespace(kind: str, path: str | os.PathLike[str]) -> SpecOpt:
    """Join an existing namespace of ``kind`` at ``path`` (e.g. ``/proc/<pid>/ns/net``)."""
    checked = _check_namespace_kind(kind)
    ns_path = _check_abs_path(path, "namespace path")

    def opt(spec: Spec) -> None:
        namespaces = _linux(spec).setdefault("namespaces", [])
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
        _check_str(k, "annotation key"): _check_str(v, f"annotation {k!r}", allow_empty=True)
        for k, v in annotations.items()
    }

    def opt(spec: Spec) -> None:
        spec.setdefault("annotations", {}).update(checked)

    return opt


# ---------------------------------------------------------------------------- image config


def _image_list(config: Mapping[str, Any], key: str) -> list[str]:
    value = config.get(key)
    if value is None:
        return []
    return _str_list(value, f"image config {key}")


def with_image_config(
    config: Mapping[str, Any],
    *,
    rootfs: Path | str | None = None,
    args: Sequence[str] | None = None,
) -> SpecOpt:
    """Apply an OCI image configuration: the whole config JSON (with its ``"config"`` object)
    or just that inner object.

    ``Entrypoint`` + ``Cmd`` become the process arguments (``args`` replaces ``Cmd``, as a
    command line after the image name does); ``Env`` is merged over the spec's environment;
    ``WorkingDir`` becomes the working directory (``/`` when empty); ``User`` is resolved as
    :func:`with_user` does, against ``rootfs``. Options after this one override the image,
    e.g. ``with_env`` for a variable the image also sets. An image with neither
    ``Entrypoint`` nor ``Cmd`` leaves the arguments unchanged.
    """
    if not isinstance(config, Mapping):
        raise InvalidArgument(f"image config must be a mapping, got {type(config).__name__}")
    inner: object = config
    if "config" in config or "rootfs" in config or "architecture" in config:
        inner = config.get("config")
        if inner is None:
            inner = {}
    if not isinstance(inner, Mapping):
        raise InvalidArgument(f"image config 'config' must be an object, got {inner!r}")
    entrypoint = _image_list(inner, "Entrypoint")
    cmd = _image_list(inner, "Cmd") if args is None else _str_list(args, "args")
    image_env = _check_env_entries(_image_list(inner, "Env"), "image config Env")
    workdir = inner.get("WorkingDir") or "/"
    _check_abs_path(workdir, "image config WorkingDir")
    user = inner.get("User") or ""
    _check_str(user, "image config User", allow_empty=True)
    process_args = entrypoint + cmd

    def opt(spec: Spec) -> None:
        process = _process(spec)
        process["env"] = _merge_env(process.get("env") or [], image_env)
        if process_args:
            process["args"] = list(process_args)
        process["cwd"] = workdir
        if user:
            with_user(user, rootfs=rootfs)(spec)

    return opt
