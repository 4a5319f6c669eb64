"""The default OCI runtime spec for a Windows container (run by ``runhcs`` or containerd).

A Windows spec has no ``linux`` section and no Linux mounts: the container's filesystem
is a stack of layer folders (read-only parents, then the writable scratch layer last),
isolation is Hyper-V by default (``windows.hyperv``; the root must then stay unset) or
process isolation (the root is the mounted scratch volume), and networking joins an
existing HNS namespace by its id. :func:`generate_windows_spec` builds such a spec;
the shared process options (``with_process_args``, ``with_env``, ``with_cwd``) apply to
it as to a Linux spec.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from libcontainerd.errors import InvalidArgument
from libcontainerd.oci.spec import OCI_VERSION, Spec, SpecOpt, apply_options

__all__ = [
    "DEFAULT_WINDOWS_CWD",
    "ISOLATIONS",
    "generate_windows_spec",
    "with_hyperv_isolation",
    "with_layer_folders",
    "with_network_namespace",
    "with_process_isolation",
]

DEFAULT_WINDOWS_CWD = "C:\\"
"""The working directory of a Windows container's process unless an option sets one."""

ISOLATIONS = ("hyperv", "process")
"""The isolation modes: a utility VM per container, or a shared kernel (server silos)."""

# C:\path, \\?\C:\path or \\?\Volume{guid}\ : what HCS accepts as an absolute folder.
_WINDOWS_PATH = re.compile(r"^(?:[A-Za-z]:\\|\\\\\?\\(?:[A-Za-z]:\\|Volume\{[0-9A-Fa-f-]{36}\}\\))")
_GUID = re.compile(r"^\{?[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}\}?$")


def _check_path(value: object, what: str) -> str:
    if not isinstance(value, str) or not _WINDOWS_PATH.match(value) or "\0" in value:
        raise InvalidArgument(
            f"{what} {value!r} is not an absolute Windows path; write it like "
            r"C:\ProgramData\containerd\layers\<id> or \\?\Volume{<guid>}\ "
        )
    return value


def with_layer_folders(folders: Sequence[str]) -> SpecOpt:
    """Use ``folders`` as the layer stack: read-only parents first, the scratch layer last."""
    if isinstance(folders, str) or not folders:
        raise InvalidArgument(
            "layer folders must be a non-empty list of paths (parents first, scratch last)"
        )
    checked = [_check_path(folder, "layer folder") for folder in folders]

    def apply(spec: Spec) -> None:
        spec.setdefault("windows", {})["layerFolders"] = list(checked)

    return apply


def with_hyperv_isolation(utility_vm_path: str | None = None) -> SpecOpt:
    """Run the container in its own utility VM; the runtime spec then forbids ``root``."""
    if utility_vm_path is not None:
        _check_path(utility_vm_path, "utility VM path")

    def apply(spec: Spec) -> None:
        hyperv: dict[str, Any] = {}
        if utility_vm_path is not None:
            hyperv["utilityVMPath"] = utility_vm_path
        spec.setdefault("windows", {})["hyperv"] = hyperv
        spec.pop("root", None)

    return apply


def with_process_isolation(root_path: str) -> SpecOpt:
    """Share the host kernel; ``root_path`` is the mounted scratch volume (REQUIRED then)."""
    _check_path(root_path, "root path")

    def apply(spec: Spec) -> None:
        spec.setdefault("windows", {}).pop("hyperv", None)
        spec["root"] = {"path": root_path, "readonly": False}

    return apply


def with_network_namespace(namespace_id: str) -> SpecOpt:
    """Join the HNS network namespace ``namespace_id`` (a GUID, as ``hnsdiag`` prints it)."""
    if not isinstance(namespace_id, str) or not _GUID.match(namespace_id):
        raise InvalidArgument(
            f"network namespace id {namespace_id!r} is not a GUID such as "
            "'5f0d4b2c-1a2b-4c3d-8e9f-0a1b2c3d4e5f'"
        )

    def apply(spec: Spec) -> None:
        network = spec.setdefault("windows", {}).setdefault("network", {})
        network["networkNamespace"] = namespace_id.strip("{}").lower()

    return apply


def generate_windows_spec(
    *opts: SpecOpt,
    layer_folders: Sequence[str],
    isolation: str = "hyperv",
    root_path: str | None = None,
    network_namespace: str | None = None,
) -> Spec:
    """Return a new default Windows spec with ``opts`` applied in order.

    ``layer_folders`` are required (the schema demands at least one). ``isolation`` is
    ``"hyperv"`` (the default: no ``root``) or ``"process"`` (then ``root_path``, the
    mounted scratch volume, is required). ``network_namespace`` joins an HNS namespace.
    The process runs in ``C:\\`` with no arguments until an option sets them.
    """
    if isolation not in ISOLATIONS:
        raise InvalidArgument(f"isolation {isolation!r} is not one of {', '.join(ISOLATIONS)}")
    if isolation == "process" and root_path is None:
        raise InvalidArgument("process isolation needs root_path, the mounted scratch volume")
    if isolation == "hyperv" and root_path is not None:
        raise InvalidArgument("Hyper-V isolation must not set root_path; the runtime mounts it")
    defaults: list[SpecOpt] = [with_layer_folders(layer_folders)]
    if isolation == "hyperv":
        defaults.append(with_hyperv_isolation())
    else:
        defaults.append(with_process_isolation(str(root_path)))
    if network_namespace is not None:
        defaults.append(with_network_namespace(network_namespace))
    spec: Spec = {
        "ociVersion": OCI_VERSION,
        "process": {"terminal": False, "args": [], "env": [], "cwd": DEFAULT_WINDOWS_CWD},
        "windows": {},
    }
    return apply_options(spec, *defaults, *opts)
