"""The ``registry={...}`` backend option: the same keys on every backend.

Both backends hand these settings to every registry client their image service creates
(:class:`~libcontainerd.distribution.RegistryClient` takes them as keyword arguments).
Only the shape is checked here, cheaply, when a client is made; the registry client checks
the values when the image service first needs one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from libcontainerd.errors import InvalidArgument

__all__ = ["REGISTRY_OPTION_KEYS", "check_registry_option"]

REGISTRY_OPTION_KEYS = frozenset(
    {
        "ca_file",
        "client_cert",
        "credentials",
        "docker_config",
        "hosts_dir",
        "insecure_hosts",
        "max_retries",
        "retry",
        "timeout",
    }
)
"""Keys of the ``registry={...}`` option: CA file, client certificate, credentials, docker
config, ``hosts.toml`` directory (mirrors), insecure hosts, retries and timeout."""


def check_registry_option(value: object) -> dict[str, Any]:
    """``value`` (the ``registry`` option, or None) as a dict of known registry settings.

    :class:`InvalidArgument` when it is not a mapping or names a key no backend knows.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidArgument(
            f"option registry must be a dict of registry client settings "
            f"({', '.join(sorted(REGISTRY_OPTION_KEYS))}), not {type(value).__name__}"
        )
    bad = sorted(str(key) for key in set(value) - REGISTRY_OPTION_KEYS)
    if bad:
        raise InvalidArgument(
            f"unknown key(s) in option registry: {', '.join(bad)}; known keys are "
            f"{', '.join(sorted(REGISTRY_OPTION_KEYS))}"
        )
    return dict(value)
