"""Value types shared by both backends: platforms, references, ids, status, events, stats, ...

Everything here is a frozen ``attrs`` value (or an enum) validated when built; the
package depends on nothing else in libcontainerd but :mod:`libcontainerd.errors`.
Throughout, ``platform`` means the whole OCI platform and ``os`` only the
operating system.

Names are loaded on first use (PEP 562): reading ``types.Platform`` imports only the
platform module.
"""

from __future__ import annotations

import importlib

# typing itself costs milliseconds at import; mypy reads this flag as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from libcontainerd.types.auth import Credentials
    from libcontainerd.types.container import ContainerInfo, RuntimeInfo
    from libcontainerd.types.descriptor import Descriptor
    from libcontainerd.types.digest import Digest, sha256_digest, validate_digest
    from libcontainerd.types.events import Event, EventType
    from libcontainerd.types.identifiers import (
        MAX_IDENTIFIER_LENGTH,
        is_valid_identifier,
        validate_identifier,
    )
    from libcontainerd.types.image import Image
    from libcontainerd.types.mount import Mount
    from libcontainerd.types.platform import (
        Matcher,
        Platform,
        all_platforms,
        any_of,
        default_matcher,
        only,
        only_strict,
        ordered,
        sort_by_preference,
    )
    from libcontainerd.types.platform import default as default_platform
    from libcontainerd.types.process import ProcessInfo
    from libcontainerd.types.progress import ProgressEvent, ProgressKind
    from libcontainerd.types.reference import Reference
    from libcontainerd.types.requested_platform import (
        REQUESTED_PLATFORM_HEADER,
        decode_platform_parameter,
        decode_requested_platform_header,
        encode_platform_parameter,
        encode_requested_platform_header,
    )
    from libcontainerd.types.stats import Resources, Stats
    from libcontainerd.types.status import ExitStatus, Status
    from libcontainerd.types.stdio import FileIO, LogIO, NullIO, PipedIO, Stdio, TerminalIO
    from libcontainerd.types.version import Version

#: Exported name -> (module, attribute); the module is imported when the name is first read.
_LAZY: dict[str, tuple[str, str]] = {
    "ContainerInfo": ("libcontainerd.types.container", "ContainerInfo"),
    "Credentials": ("libcontainerd.types.auth", "Credentials"),
    "Descriptor": ("libcontainerd.types.descriptor", "Descriptor"),
    "Digest": ("libcontainerd.types.digest", "Digest"),
    "Event": ("libcontainerd.types.events", "Event"),
    "EventType": ("libcontainerd.types.events", "EventType"),
    "ExitStatus": ("libcontainerd.types.status", "ExitStatus"),
    "FileIO": ("libcontainerd.types.stdio", "FileIO"),
    "Image": ("libcontainerd.types.image", "Image"),
    "LogIO": ("libcontainerd.types.stdio", "LogIO"),
    "MAX_IDENTIFIER_LENGTH": ("libcontainerd.types.identifiers", "MAX_IDENTIFIER_LENGTH"),
    "Matcher": ("libcontainerd.types.platform", "Matcher"),
    "Mount": ("libcontainerd.types.mount", "Mount"),
    "NullIO": ("libcontainerd.types.stdio", "NullIO"),
    "PipedIO": ("libcontainerd.types.stdio", "PipedIO"),
    "Platform": ("libcontainerd.types.platform", "Platform"),
    "ProcessInfo": ("libcontainerd.types.process", "ProcessInfo"),
    "ProgressEvent": ("libcontainerd.types.progress", "ProgressEvent"),
    "ProgressKind": ("libcontainerd.types.progress", "ProgressKind"),
    "REQUESTED_PLATFORM_HEADER": (
        "libcontainerd.types.requested_platform",
        "REQUESTED_PLATFORM_HEADER",
    ),
    "Reference": ("libcontainerd.types.reference", "Reference"),
    "Resources": ("libcontainerd.types.stats", "Resources"),
    "RuntimeInfo": ("libcontainerd.types.container", "RuntimeInfo"),
    "Stats": ("libcontainerd.types.stats", "Stats"),
    "Status": ("libcontainerd.types.status", "Status"),
    "Stdio": ("libcontainerd.types.stdio", "Stdio"),
    "TerminalIO": ("libcontainerd.types.stdio", "TerminalIO"),
    "Version": ("libcontainerd.types.version", "Version"),
    "all_platforms": ("libcontainerd.types.platform", "all_platforms"),
    "any_of": ("libcontainerd.types.platform", "any_of"),
    "decode_platform_parameter": (
        "libcontainerd.types.requested_platform",
        "decode_platform_parameter",
    ),
    "decode_requested_platform_header": (
        "libcontainerd.types.requested_platform",
        "decode_requested_platform_header",
    ),
    "default_matcher": ("libcontainerd.types.platform", "default_matcher"),
    "default_platform": ("libcontainerd.types.platform", "default"),
    "encode_platform_parameter": (
        "libcontainerd.types.requested_platform",
        "encode_platform_parameter",
    ),
    "encode_requested_platform_header": (
        "libcontainerd.types.requested_platform",
        "encode_requested_platform_header",
    ),
    "is_valid_identifier": ("libcontainerd.types.identifiers", "is_valid_identifier"),
    "only": ("libcontainerd.types.platform", "only"),
    "only_strict": ("libcontainerd.types.platform", "only_strict"),
    "ordered": ("libcontainerd.types.platform", "ordered"),
    "sha256_digest": ("libcontainerd.types.digest", "sha256_digest"),
    "sort_by_preference": ("libcontainerd.types.platform", "sort_by_preference"),
    "validate_digest": ("libcontainerd.types.digest", "validate_digest"),
    "validate_identifier": ("libcontainerd.types.identifiers", "validate_identifier"),
}

__all__ = [
    "MAX_IDENTIFIER_LENGTH",
    "REQUESTED_PLATFORM_HEADER",
    "ContainerInfo",
    "Credentials",
    "Descriptor",
    "Digest",
    "Event",
    "EventType",
    "ExitStatus",
    "FileIO",
    "Image",
    "LogIO",
    "Matcher",
    "Mount",
    "NullIO",
    "PipedIO",
    "Platform",
    "ProcessInfo",
    "ProgressEvent",
    "ProgressKind",
    "Reference",
    "Resources",
    "RuntimeInfo",
    "Stats",
    "Status",
    "Stdio",
    "TerminalIO",
    "Version",
    "all_platforms",
    "any_of",
    "decode_platform_parameter",
    "decode_requested_platform_header",
    "default_matcher",
    "default_platform",
    "encode_platform_parameter",
    "encode_requested_platform_header",
    "is_valid_identifier",
    "only",
    "only_strict",
    "ordered",
    "sha256_digest",
    "sort_by_preference",
    "validate_digest",
    "validate_identifier",
]


# Not libcontainerd._lazy_names: this package depends on nothing but errors.
def __getattr__(name: str) -> Any:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'libcontainerd.types' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
