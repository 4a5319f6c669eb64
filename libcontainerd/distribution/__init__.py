"""OCI registry client on httpx: resolve, fetch, push and auth.

:class:`RegistryClient` (sync) and :class:`AsyncRegistryClient` (asyncio) share one
implementation: every protocol flow is a generator of I/O steps that a sync driver and
an async driver both run, so behaviour cannot drift between the two. Blobs go into
and come from any store of the content protocol (:mod:`libcontainerd.content.protocol`).
"""

from __future__ import annotations

from libcontainerd.distribution._client import AsyncRegistryClient, RegistryClient
from libcontainerd.distribution._fetch import ProgressCallback
from libcontainerd.distribution._http import RetryPolicy
from libcontainerd.distribution._manifests import MANIFEST_ACCEPT, Manifest, PullResult
from libcontainerd.distribution._tokens import CredentialSource
from libcontainerd.distribution.auth import Challenge, TokenCache, parse_www_authenticate
from libcontainerd.distribution.docker_config import (
    DockerConfig,
    load_docker_config,
    parse_docker_config,
)
from libcontainerd.distribution.hosts import (
    HostsConfig,
    RegistryHost,
    load_hosts_dir,
    parse_hosts_toml,
)

__all__ = [
    "MANIFEST_ACCEPT",
    "AsyncRegistryClient",
    "Challenge",
    "CredentialSource",
    "DockerConfig",
    "HostsConfig",
    "Manifest",
    "ProgressCallback",
    "PullResult",
    "RegistryClient",
    "RegistryHost",
    "RetryPolicy",
    "TokenCache",
    "load_docker_config",
    "load_hosts_dir",
    "parse_docker_config",
    "parse_hosts_toml",
    "parse_www_authenticate",
]
