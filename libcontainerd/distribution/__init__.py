"""OCI registry client on httpx: resolve, fetch, push, auth and platform selection.

:class:`RegistryClient` (sync) and :class:`AsyncRegistryClient` (asyncio) share one
implementation: every protocol flow is a generator of I/O steps that a sync driver and
an async driver both run, so behaviour cannot drift between the two.
"""

from __future__ import annotations

from ._client import AsyncRegistryClient, RegistryClient
from ._core import (
    MANIFEST_ACCEPT,
    CredentialSource,
    Manifest,
    PlatformSpec,
    ProgressCallback,
    PullResult,
    RetryPolicy,
    select_platforms,
)
from .auth import Challenge, TokenCache, parse_www_authenticate
from .docker_config import DockerConfig, load_docker_config, parse_docker_config
from .hosts import HostsConfig, RegistryHost, load_hosts_dir, parse_hosts_toml
from .store import BlobSink, BlobSource, ContentWriter, DirectoryContentStore

__all__ = [
    "MANIFEST_ACCEPT",
    "AsyncRegistryClient",
    "BlobSink",
    "BlobSource",
    "Challenge",
    "ContentWriter",
    "CredentialSource",
    "DirectoryContentStore",
    "DockerConfig",
    "HostsConfig",
    "Manifest",
    "PlatformSpec",
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
    "select_platforms",
]
