"""The fields of an OCI platform: their limits, validation, aliases and host probing.

The rules of :class:`libcontainerd.types.platform.Platform` that do not need the class
itself: which text an os, architecture, variant, ``os.version`` or ``os.features`` entry
may hold, containerd's alias table, and reading a 32-bit ARM host's variant from
``/proc/cpuinfo``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

from libcontainerd.errors import InvalidArgument

__all__ = [
    "EXAMPLE",
    "KNOWN_ARCH",
    "KNOWN_ARCH_WORDS",
    "KNOWN_OS",
    "KNOWN_OS_WORDS",
    "MAX_FIELD_LENGTH",
    "MAX_OS_FEATURES",
    "MAX_OS_VERSION_LENGTH",
    "OPAQUE",
    "RAW_TOKEN",
    "TOKEN",
    "arm_variant",
    "check_opaque",
    "check_raw_token",
    "check_token",
    "cpuinfo_field",
    "features_tuple",
    "json_type",
    "normalize_arch",
    "normalize_os",
    "quote",
    "validate_architecture",
    "validate_os",
    "validate_os_features",
    "validate_os_version",
    "validate_variant",
]

MAX_FIELD_LENGTH = 64
"""Longest os, architecture, variant or single os feature accepted, in characters."""

MAX_OS_VERSION_LENGTH = 128
"""Longest ``os.version`` accepted, in characters."""

MAX_OS_FEATURES = 32
"""Most entries accepted in ``os.features``."""

EXAMPLE = "expected os/arch[/variant] such as linux/amd64"

# Components as stored: lowercase, not starting with '.', so that no component can be
# "." or ".." if someone ever builds a path from it.
TOKEN = re.compile(r"[a-z0-9_-][a-z0-9_.-]*")
# Components as a user may type them, before normalisation lowers the case.
# Checked BEFORE lowering: str.lower() maps some non-ASCII letters (the Kelvin
# sign, for one) onto ASCII ones.
# containerd's platforms.Parse takes [A-Za-z0-9_-]+ per component: no '.', any first one.
RAW_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
# os.version ("10.0.17763.1879") and os.features ("win32k") are opaque to
# matching; a conservative character set keeps them safe in headers and logs.
OPAQUE = re.compile(r"[A-Za-z0-9_.+:-]+")

# The os and architecture names Go knows; a lone word is only accepted if it is one of these.
KNOWN_OS_WORDS = (
    "aix android darwin dragonfly freebsd hurd illumos ios js linux nacl netbsd openbsd plan9 "
    "solaris windows zos"
)
KNOWN_ARCH_WORDS = (
    "386 amd64 amd64p32 arm armbe arm64 arm64be ppc64 ppc64le loong64 mips mipsle mips64 "
    "mips64le mips64p32 mips64p32le ppc riscv riscv64 s390 s390x sparc sparc64 wasm"
)
KNOWN_OS = frozenset(KNOWN_OS_WORDS.split())
KNOWN_ARCH = frozenset(KNOWN_ARCH_WORDS.split())


def quote(value: object) -> str:
    """Quote a value for an error message: JSON-style, control characters escaped, bounded."""
    if not isinstance(value, str):
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    if len(value) > 80:
        return json.dumps(value[:77]) + "..."
    return json.dumps(value)


def normalize_os(os: str) -> str:
    """``os`` lower-cased, with the ``macos`` alias mapped to ``darwin``."""
    os = os.lower()
    return "darwin" if os == "macos" else os


def normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    """Containerd's architecture/variant alias table (both inputs may be any case)."""
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", ("" if variant == "v1" else variant)
    if arch in ("aarch64", "arm64"):
        return "arm64", ("" if variant in ("8", "v8") else variant)
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            return "arm", "v7"
        if variant in ("5", "6", "8"):
            return "arm", "v" + variant
    return arch, variant


def check_token(name: str, value: object, *, allow_empty: bool = False) -> None:
    """Refuse an os, architecture or variant that is not a lowercase token."""
    if not isinstance(value, str):
        raise InvalidArgument(
            f"invalid platform {name} {quote(value)}: must be a string, not {type(value).__name__}"
        )
    if not value:
        if allow_empty:
            return
        raise InvalidArgument(f"invalid platform: empty {name}; {EXAMPLE}")
    if "/" in value:
        raise InvalidArgument(
            f"invalid platform {name} {quote(value)}: contains '/'; give os, architecture and "
            f"variant as separate fields, or use Platform.parse() for an os/arch[/variant] string"
        )
    if len(value) > MAX_FIELD_LENGTH:
        raise InvalidArgument(
            f"invalid platform {name} {quote(value)}: longer than {MAX_FIELD_LENGTH} characters"
        )
    if not TOKEN.fullmatch(value):
        hint = (
            "; use Platform.parse() or Platform.of() to normalise case"
            if TOKEN.fullmatch(value.lower()) and value.isascii()
            else ""
        )
        raise InvalidArgument(
            f"invalid platform {name} {quote(value)}: must be lowercase letters, digits, '_', '.' "
            f"and '-', not starting with '.'{hint}"
        )


def check_opaque(name: str, value: str, limit: int) -> None:
    """Refuse an ``os.version`` or ``os.features`` entry too long or with odd characters."""
    if len(value) > limit:
        raise InvalidArgument(
            f"invalid platform {name} {quote(value)}: longer than {limit} characters"
        )
    if not OPAQUE.fullmatch(value):
        raise InvalidArgument(
            f"invalid platform {name} {quote(value)}: may only contain letters, digits, "
            f"'_', '.', '+', ':' and '-'"
        )


def validate_os(_inst: object, _attr: object, value: str) -> None:
    """attrs validator of ``Platform.os``."""
    check_token("os", value)


def validate_architecture(_inst: object, _attr: object, value: str) -> None:
    """attrs validator of ``Platform.architecture``."""
    check_token("architecture", value)


def validate_variant(_inst: object, _attr: object, value: str) -> None:
    """attrs validator of ``Platform.variant``."""
    check_token("variant", value, allow_empty=True)


def validate_os_version(_inst: object, _attr: object, value: str) -> None:
    """attrs validator of ``Platform.os_version``."""
    if not isinstance(value, str):
        raise InvalidArgument(
            f"invalid platform os.version {quote(value)}: must be a string, "
            f"not {type(value).__name__}"
        )
    if value:
        check_opaque("os.version", value, MAX_OS_VERSION_LENGTH)


def features_tuple(value: Iterable[str]) -> tuple[str, ...]:
    """attrs converter of ``Platform.os_features`` (a bare string is refused)."""
    # A bare string is iterable too; splitting it into letters is never what was meant.
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InvalidArgument(
            f"invalid platform os.features {quote(value)}: must be a list of strings, "
            f"not {type(value).__name__}"
        )
    return tuple(value)


def validate_os_features(_inst: object, _attr: object, value: tuple[str, ...]) -> None:
    """attrs validator of ``Platform.os_features``."""
    if len(value) > MAX_OS_FEATURES:
        raise InvalidArgument(
            f"invalid platform os.features: {len(value)} entries, at most {MAX_OS_FEATURES} allowed"
        )
    for feature in value:
        if not isinstance(feature, str):
            raise InvalidArgument(
                f"invalid platform os.features entry {quote(feature)}: must be a string, "
                f"not {type(feature).__name__}"
            )
        if not feature:
            raise InvalidArgument("invalid platform os.features: entries must not be empty")
        check_opaque("os.features entry", feature, MAX_FIELD_LENGTH)


def check_raw_token(name: str, value: object, *, allow_empty: bool = False) -> None:
    """Like the constructor's check, but any letter case is fine (it is lowered later)."""
    if isinstance(value, str) and (
        (allow_empty and not value)
        or (len(value) <= MAX_FIELD_LENGTH and RAW_TOKEN.fullmatch(value))
    ):
        return
    check_token(name, value, allow_empty=allow_empty)


def json_type(value: object) -> str:
    """How a JSON value's type is named in error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def cpuinfo_field(cpuinfo: str, name: str) -> str | None:
    """The value of field ``name`` in ``/proc/cpuinfo`` text, if present."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name.lower():
            return value.strip()
    return None


def arm_variant(machine: str, cpuinfo: str | None) -> str:
    """The variant of a 32-bit ARM host, read from /proc/cpuinfo the way containerd does."""
    raw = cpuinfo_field(cpuinfo, "Cpu architecture") if cpuinfo else None
    if raw is None:
        # No cpuinfo (or no such line): the kernel's machine name says "armv7l" etc.
        match = re.match(r"armv(\d+)", machine)
        return f"v{match.group(1)}" if match else "v7"
    if raw == "7":
        model = cpuinfo_field(cpuinfo or "", "model name") or ""
        if model.lower().startswith("armv6-compatible"):
            raw = "6"
    raw = raw.lower()
    if raw in ("8", "aarch64"):
        return "v8"
    if raw in ("7", "7m") or raw in {f"?({n})" for n in range(12, 18)}:
        return "v7"
    if raw in ("6", "6tej"):
        return "v6"
    if raw in ("5", "5t", "5te", "5tej"):
        return "v5"
    if raw in ("4", "4t"):
        return "v4"
    if raw == "3":
        return "v3"
    return "unknown"
