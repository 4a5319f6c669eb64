"""The default OCI runtime spec for a Linux container, and how options are applied to it.

A spec is a plain JSON-able ``dict`` in the layout of the OCI runtime-spec ``config.json``;
a spec option is a callable that edits such a dict in place. :func:`generate_spec` builds
the default (the same defaults containerd uses) and applies options in order;
:func:`apply_options` applies options to an existing spec. Both are all-or-nothing: if any
option raises, the caller's spec is left exactly as it was.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any, TypeAlias

from libcontainerd.errors import Error, InvalidArgument

__all__ = [
    "DEFAULT_CAPABILITIES",
    "DEFAULT_MASKED_PATHS",
    "DEFAULT_PATH_ENV",
    "DEFAULT_READONLY_PATHS",
    "NAMESPACE_KINDS",
    "OCI_VERSION",
    "Spec",
    "SpecOpt",
    "apply_options",
    "default_mounts",
    "generate_spec",
]

Spec: TypeAlias = dict[str, Any]
"""An OCI runtime spec (``config.json``) as plain JSON-able data."""

SpecOpt: TypeAlias = Callable[[Spec], None]
"""A spec option: edits the spec it is given in place, raising an ``Error`` on bad input."""

#: The runtime-spec version written into new specs; runc 1.1 and crun 1.8 both accept it.
OCI_VERSION = "1.0.2-dev"

#: The ``PATH`` every container gets unless its image or an option says otherwise.
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Capabilities a default (unprivileged) container keeps: containerd's default set.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

#: Host information a container must not read (hidden by the runtime).
DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
)

#: Kernel interfaces a container may read but not change.
DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

#: The Linux namespace kinds of the runtime spec.
NAMESPACE_KINDS: tuple[str, ...] = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup")

_DEFAULT_NAMESPACES = ("pid", "ipc", "uts", "mount", "network")

# containerd namespaces and container ids end up as cgroup directory names.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def default_mounts() -> list[dict[str, Any]]:
    """The mounts of a default container, as runtime-spec mount objects (a fresh list).

    These are containerd's defaults plus a read-only ``/sys/fs/cgroup`` (as containerd's CRI
    plugin adds), so a container can read its own resource limits.
    """

    def mount(dest: str, kind: str, source: str, *options: str) -> dict[str, Any]:
        return {"destination": dest, "type": kind, "source": source, "options": list(options)}

    return [
        mount("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
        mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ),
        mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
        mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
        mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev", "relatime", "ro"),
        mount("/run", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
    ]


def _check_name(value: str | None, what: str) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not _NAME_RE.match(value) or len(value) > 76:
        raise InvalidArgument(
            f"{what} {value!r} is not valid: use 1-76 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )


def _default_spec(container_id: str | None, namespace: str) -> Spec:
    linux: dict[str, Any] = {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": kind} for kind in _DEFAULT_NAMESPACES],
        "maskedPaths": list(DEFAULT_MASKED_PATHS),
        "readonlyPaths": list(DEFAULT_READONLY_PATHS),
    }
    if container_id is not None:
        linux["cgroupsPath"] = f"/{namespace}/{container_id}"
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": [],
            "env": [DEFAULT_PATH_ENV],
            "cwd": "/",
            "capabilities": {
                "bounding": list(DEFAULT_CAPABILITIES),
                "effective": list(DEFAULT_CAPABILITIES),
                "permitted": list(DEFAULT_CAPABILITIES),
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "mounts": default_mounts(),
        "linux": linux,
    }


def apply_options(spec: Spec, *opts: SpecOpt, atomic: bool = True) -> Spec:
    """Apply ``opts`` in order to ``spec`` and return it (the same object).

    The options run against a deep copy which replaces the content of ``spec`` only when
    every option succeeded, so a failing option leaves ``spec`` untouched. Options must raise
    a :class:`~libcontainerd.errors.Error`; anything else they raise is re-raised as
    :class:`InvalidArgument`, naming the option. ``atomic=False`` skips the copy for a
    caller that owns ``spec`` and drops it when an option fails (a failure may leave it
    half-changed).
    """
    if not isinstance(spec, dict):
        raise InvalidArgument(f"spec must be a dict, got {type(spec).__name__}")
    work = copy.deepcopy(spec) if atomic else spec
    for opt in opts:
        if not callable(opt):
            raise InvalidArgument(
                f"spec option {opt!r} is not callable; pass options such as with_env([...])"
            )
        try:
            opt(work)
        except Error:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            name = getattr(opt, "__qualname__", repr(opt))
            raise InvalidArgument(f"spec option {name} failed: {exc}") from exc
    if work is not spec:
        spec.clear()
        spec.update(work)
    return spec


def generate_spec(
    *opts: SpecOpt, container_id: str | None = None, namespace: str = "default"
) -> Spec:
    """Return a new default Linux spec with ``opts`` applied in order.

    With ``container_id`` the spec gets containerd's cgroup path ``/<namespace>/<id>``;
    without it the runtime picks a cgroup itself. The default process runs as root in ``/``
    with no arguments (set them with an option), containerd's capability set, no new
    privileges and 1024 open files; the root filesystem is ``rootfs`` beside ``config.json``.
    """
    _check_name(container_id, "container id")
    _check_name(namespace, "namespace")
    # The default is new and only returned on success: no copy needed to stay all-or-nothing.
    return apply_options(_default_spec(container_id, namespace), *opts, atomic=False)
