"""OCI runtime-spec generation: a default Linux spec and composable spec options.

A spec is a plain JSON-able dict (the content of a bundle's ``config.json``); options are
small functions applied in order::

    from libcontainerd.oci import generate_spec, with_process_args, with_memory_limit

    spec = generate_spec(
        with_process_args("sh", "-c", "echo hello"),
        with_memory_limit(64 * 1024 * 1024),
        container_id="hello",
    )
"""

from __future__ import annotations

from libcontainerd.oci.capabilities import (
    ALL_CAPABILITIES,
    bounding_capabilities,
    with_capabilities,
    with_privileged,
)
from libcontainerd.oci.image import spec_with_image, with_image_config
from libcontainerd.oci.options import (
    OciMountable,
    with_additional_gids,
    with_annotations,
    with_cgroups_path,
    with_cpu_quota,
    with_cpu_shares,
    with_cwd,
    with_default_path_env,
    with_env,
    with_host_namespaces,
    with_hostname,
    with_linux_namespace,
    with_memory_limit,
    with_mounts,
    with_namespaces,
    with_pids_limit,
    with_process_args,
    with_readonly_rootfs,
    with_rootfs,
    with_tty,
    with_uid_gid,
    with_user,
    without_mounts,
)
from libcontainerd.oci.spec import (
    DEFAULT_CAPABILITIES,
    DEFAULT_MASKED_PATHS,
    DEFAULT_PATH_ENV,
    DEFAULT_READONLY_PATHS,
    NAMESPACE_KINDS,
    OCI_VERSION,
    Spec,
    SpecOpt,
    apply_options,
    default_mounts,
    generate_spec,
)
from libcontainerd.oci.users import ResolvedUser, resolve_user
from libcontainerd.oci.validate import MAX_SPEC_DEPTH, validate_process, validate_spec

__all__ = [
    "ALL_CAPABILITIES",
    "DEFAULT_CAPABILITIES",
    "DEFAULT_MASKED_PATHS",
    "DEFAULT_PATH_ENV",
    "DEFAULT_READONLY_PATHS",
    "MAX_SPEC_DEPTH",
    "NAMESPACE_KINDS",
    "OCI_VERSION",
    "OciMountable",
    "ResolvedUser",
    "Spec",
    "SpecOpt",
    "apply_options",
    "bounding_capabilities",
    "default_mounts",
    "generate_spec",
    "resolve_user",
    "spec_with_image",
    "validate_process",
    "validate_spec",
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
