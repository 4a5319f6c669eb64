"""Linux capabilities: their names, the calling process's bounding set, and the spec
options that grant them."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from libcontainerd.errors import InvalidArgument, Unavailable
from libcontainerd.oci.fields import (
    check_str,
    linux_section,
    process_section,
    resources_section,
    str_list,
)
from libcontainerd.oci.spec import Spec, SpecOpt

__all__ = ["ALL_CAPABILITIES", "bounding_capabilities", "with_capabilities", "with_privileged"]

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


def _normalise_capability(cap: object) -> str:
    name = check_str(cap, "capability").strip().upper()
    if not name.startswith("CAP_"):
        name = "CAP_" + name
    if name not in ALL_CAPABILITIES:
        raise InvalidArgument(
            f"unknown capability {cap!r}; use names such as 'CAP_NET_ADMIN' (see ALL_CAPABILITIES)"
        )
    return name


def with_capabilities(caps: Iterable[str]) -> SpecOpt:
    """Give the process exactly ``caps`` (bounding, effective and permitted sets).

    Names are case-insensitive and the ``CAP_`` prefix is optional.
    """
    checked: list[str] = []
    for cap in str_list(caps, "capabilities"):
        name = _normalise_capability(cap)
        if name not in checked:
            checked.append(name)

    def opt(spec: Spec) -> None:
        capabilities = process_section(spec).setdefault("capabilities", {})
        for key in ("bounding", "effective", "permitted"):
            capabilities[key] = list(checked)

    return opt


def bounding_capabilities(status_path: str | os.PathLike[str] = "/proc/self/status") -> list[str]:
    """The capabilities in the calling process's bounding set (``CapBnd`` of
    ``status_path``), by name, in kernel order; bits this SDK has no name for are left out.

    ``Unavailable`` when the file cannot be read or has no ``CapBnd`` line (not Linux,
    or no ``/proc``).
    """
    try:
        text = Path(status_path).read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise Unavailable(
            f"cannot read the capability bounding set from {status_path}: {exc}; "
            "is /proc mounted? Name the capabilities with with_capabilities() instead"
        ) from exc
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "CapBnd":
            try:
                bits = int(value.strip(), 16)
            except ValueError:
                break
            return [name for i, name in enumerate(ALL_CAPABILITIES) if bits >> i & 1]
    raise Unavailable(
        f"{status_path} has no readable CapBnd line; name the capabilities with "
        "with_capabilities() instead"
    )


def with_privileged() -> SpecOpt:
    """Make the container privileged: the capabilities the calling process has (its
    bounding set, read when the option is applied), no masked or read-only paths, a
    writable ``/sys`` and cgroup filesystem, no seccomp, AppArmor or SELinux confinement,
    access to every device the cgroup would allow, and new privileges allowed.

    Asking for capabilities the host does not have would make the runtime refuse the
    container, so only those of :func:`bounding_capabilities` are granted. Host devices are
    not added to ``/dev``; mount them with :func:`~libcontainerd.oci.with_mounts` if needed.
    """

    def opt(spec: Spec) -> None:
        with_capabilities(bounding_capabilities())(spec)
        process = process_section(spec)
        process["noNewPrivileges"] = False
        process.pop("apparmorProfile", None)
        process.pop("selinuxLabel", None)
        linux = linux_section(spec)
        linux["maskedPaths"] = []
        linux["readonlyPaths"] = []
        linux.pop("seccomp", None)
        resources_section(spec)["devices"] = [{"allow": True, "access": "rwm"}]
        for mount in spec.get("mounts") or []:
            if mount.get("type") in ("sysfs", "cgroup", "cgroup2"):
                mount["options"] = [o for o in mount.get("options") or [] if o != "ro"]

    return opt
