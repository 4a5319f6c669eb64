"""Host preparation and probes for tests that run real containers.

These helpers answer "can this machine run a container with runtime X?" and fix the one
host quirk the project knows about (crun on a hybrid cgroup v1 layout without a hugetlb
hierarchy). They change nothing unless asked and say what they changed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from libcontainerd.errors import (
    DeadlineExceeded,
    InvalidArgument,
    PermissionDenied,
    RuntimeCommandError,
)

__all__ = [
    "CGROUP_ROOT",
    "BundleResult",
    "BundleRunner",
    "cgroup_mode",
    "ensure_crun_cgroup_layout",
    "find_runtime",
    "is_root",
    "mounted_cgroup_controllers",
    "run_bundle",
]

CGROUP_ROOT = Path("/sys/fs/cgroup")

_CGROUP2_MAGIC_FILE = "cgroup.controllers"  # exists only at the root of a cgroup2 mount
_COMMAND_TIMEOUT = 30.0


def is_root() -> bool:
    """Whether this process runs with uid 0 (what runc/crun need for rootful containers)."""
    return os.geteuid() == 0


def find_runtime(name: str) -> Path | None:
    """The absolute path of the OCI runtime ``name`` (``"runc"``, ``"crun"``, or a path),
    or ``None`` when it is not installed.

    The system ``sbin`` directories are searched too, since a runtime often lives there and
    is missing from an unprivileged ``PATH``.
    """
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"runtime name must be a non-empty str, got {name!r}")
    if "/" in name:
        path = Path(name)
        return path.absolute() if path.is_file() and os.access(path, os.X_OK) else None
    search = os.pathsep.join(
        [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin"]
    )
    found = shutil.which(name, path=search)
    return Path(found).absolute() if found else None


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, fs type, options) of every mount of this process."""
    entries = []
    with open("/proc/self/mounts", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 4:
                # /proc/self/mounts escapes spaces etc. as octal; mount points here are plain.
                entries.append((fields[1], fields[2], fields[3]))
    return entries


def cgroup_mode() -> str:
    """The host's cgroup layout: ``"unified"`` (v2 only), ``"hybrid"`` (v1 controllers plus
    a v2 hierarchy at ``/sys/fs/cgroup/unified``), ``"legacy"`` (v1 only) or ``"none"``."""
    types = {point: fstype for point, fstype, _ in _mounts()}
    root = str(CGROUP_ROOT)
    if types.get(root) == "cgroup2":
        return "unified"
    if types.get(f"{root}/unified") == "cgroup2":
        return "hybrid"
    if any(p.startswith(root + "/") and t == "cgroup" for p, t in types.items()):
        return "legacy"
    return "none"


def _kernel_controllers() -> dict[str, bool]:
    """Controller name -> enabled, from ``/proc/cgroups``."""
    try:
        text = Path("/proc/cgroups").read_text(encoding="utf-8")
    except OSError:
        return {}
    controllers = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and not line.startswith("#"):
            controllers[fields[0]] = fields[3] == "1"
    return controllers


def mounted_cgroup_controllers() -> set[str]:
    """The cgroup v1 controllers mounted on this host (e.g. ``{"memory", "pids", ...}``)."""
    known = _kernel_controllers()
    controllers: set[str] = set()
    for _point, fstype, options in _mounts():
        if fstype == "cgroup":
            controllers.update(o for o in options.split(",") if o in known)
    return controllers


def ensure_crun_cgroup_layout() -> str | None:
    """Make a hybrid cgroup v1 host usable by crun; return what was done, or ``None``.

    crun refuses to run ("cgroups in hybrid mode not supported") when the kernel offers the
    ``hugetlb`` controller but no v1 hierarchy is mounted for it. This mounts one at
    ``/sys/fs/cgroup/hugetlb`` in that case and touches nothing else. Raises
    :class:`PermissionDenied` when the mount is needed but this process is not root, and
    :class:`RuntimeCommandError` when ``mount`` fails.
    """
    if cgroup_mode() != "hybrid":
        return None
    if "hugetlb" in mounted_cgroup_controllers() or not _kernel_controllers().get("hugetlb"):
        return None
    target = CGROUP_ROOT / "hugetlb"
    if not is_root():
        raise PermissionDenied(
            f"crun needs a hugetlb cgroup hierarchy at {target} on this hybrid cgroup host; "
            "run as root, or mount it once: "
            f"mkdir -p {target} && mount -t cgroup -o hugetlb cgroup {target}"
        )
    target.mkdir(parents=True, exist_ok=True)
    command = ["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", str(target)]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeCommandError(
            f"could not run {' '.join(command)}: {exc}", command=command
        ) from exc
    if result.returncode != 0:
        raise RuntimeCommandError(
            f"mounting the hugetlb cgroup hierarchy for crun failed: {result.stderr.strip()}",
            command=command,
            exit_code=result.returncode,
            stderr=result.stderr,
        )
    return f"mounted the cgroup v1 hugetlb hierarchy at {target} (crun needs it on hybrid hosts)"


@attrs.frozen
class BundleResult:
    """What a foreground container run produced."""

    exit_code: int
    stdout: str
    stderr: str


def run_bundle(
    runtime: Path | str,
    bundle: Path,
    container_id: str,
    *,
    state_root: Path,
    timeout: float = 60.0,
) -> BundleResult:
    """Run the OCI bundle in the foreground with ``runtime`` (runc/crun CLI), capturing
    stdout and stderr (the spec must not ask for a terminal).

    ``state_root`` is passed as ``--root`` so the system's runtime state stays untouched.
    The container is force-deleted afterwards whatever happened; a run that outlives
    ``timeout`` seconds raises :class:`DeadlineExceeded`.
    """
    base = [os.fspath(runtime), "--root", os.fspath(state_root)]
    command = [*base, "run", "--bundle", os.fspath(bundle), container_id]
    try:
        proc = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise DeadlineExceeded(
            f"container {container_id} did not exit within {timeout}s: {' '.join(command)}"
        ) from exc
    except OSError as exc:
        raise RuntimeCommandError(f"could not start {command[0]}: {exc}", command=command) from exc
    finally:
        # The runtime may have been killed by the timeout, leaving the container behind.
        subprocess.run(
            [*base, "delete", "--force", container_id],
            capture_output=True,
            timeout=_COMMAND_TIMEOUT,
            check=False,
        )
    return BundleResult(exit_code=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)


@attrs.frozen
class BundleRunner:
    """Builds bundles on a busybox rootfs under ``workdir`` and runs them with one runtime.

    Containers get ids unique to the run and the cgroup parent ``/<namespace>``.
    """

    name: str
    binary: Path
    state_root: Path
    workdir: Path
    namespace: str = "libcontainerd-test"
    timeout: float = 60.0

    def new_id(self) -> str:
        """A fresh container id (also the cgroup leaf name)."""
        return f"lcd-{self.name}-{uuid.uuid4().hex[:12]}"

    def prepare(self, *, extra_files: Mapping[str, bytes] | None = None) -> tuple[Path, str]:
        """Create a bundle directory with a busybox ``rootfs``; return (bundle, container id).

        The spec comes next, with :meth:`write_spec`, so options may read the rootfs.
        """
        # Imported here so that host probes stay usable without the image builder's deps.
        from libcontainerd.testing.image_builder import busybox_rootfs

        container_id = self.new_id()
        bundle = self.workdir / container_id
        bundle.mkdir(parents=True)
        busybox_rootfs(bundle / "rootfs", extra_files=extra_files)
        return bundle, container_id

    @staticmethod
    def write_spec(bundle: Path, spec: Mapping[str, Any]) -> None:
        """Write ``spec`` as the bundle's ``config.json``."""
        (bundle / "config.json").write_text(json.dumps(spec, indent=2), encoding="utf-8")

    def run(self, bundle: Path, container_id: str) -> BundleResult:
        """Run the bundle in the foreground (see :func:`run_bundle`)."""
        return run_bundle(
            self.binary, bundle, container_id, state_root=self.state_root, timeout=self.timeout
        )
