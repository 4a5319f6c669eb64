"""Value types shared by both backends: platforms, references, ids, status, events, stats, ...

Everything here is a frozen ``attrs`` value (or an enum) validated when built; the
package depends on nothing else in libcontainerd but :mod:`libcontainerd.errors`.
Throughout, ``platform`` means the whole OCI platform and ``os`` only the
operating system.
"""

from __future__ import annotations

from .auth import Credentials
from .container import ContainerInfo, RuntimeInfo
from .descriptor import Descriptor
from .digest import Digest, sha256_digest, validate_digest
from .events import Event, EventType
from .identifiers import MAX_IDENTIFIER_LENGTH, is_valid_identifier, validate_identifier
from .image import Image
from .mount import Mount
from .platform import (
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
from .platform import default as default_platform
from .process import ProcessInfo
from .progress import ProgressEvent, ProgressKind
from .reference import Reference
from .requested_platform import (
    REQUESTED_PLATFORM_HEADER,
    decode_platform_parameter,
    decode_requested_platform_header,
    encode_platform_parameter,
    encode_requested_platform_header,
)
from .stats import Resources, Stats
from .status import ExitStatus, Status
from .stdio import FileIO, LogIO, NullIO, PipedIO, Stdio, TerminalIO
from .version import Version

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
