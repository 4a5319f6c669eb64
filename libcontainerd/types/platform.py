"""The OCI image-spec ``Platform`` value and the matchers that pick platforms.

Vocabulary used throughout the SDK: *platform* is the whole OCI description
(operating system, architecture, variant, plus the optional ``os.version`` and
``os.features``); *os* means only the operating system.

The rules for parsing, normalising and matching follow containerd's
``platforms`` package so that an image chosen by the local backend is the one
containerd would have chosen:

* ``parse`` accepts ``os/arch[/variant]`` as well as a lone os (``linux``) or a
  lone architecture (``aarch64``); the missing half comes from this host.
* aliases are normalised: ``x86_64``/``x86-64`` -> ``amd64``, ``aarch64`` ->
  ``arm64`` (whose ``8``/``v8`` variant is implied and therefore dropped),
  ``armhf`` -> ``arm/v7``, ``armel`` -> ``arm/v6``, ``i386`` -> ``386``,
  ``macos`` -> ``darwin``, ``arm`` without a variant -> ``arm/v7``, and
  ``amd64/v1`` -> plain ``amd64``.
* :func:`only` also accepts what the platform can run: ``amd64/v4`` falls back
  to v3, v2, plain ``amd64`` and then ``386``; ``arm/v8`` down to ``arm/v5``;
  ``arm64`` to ``arm/v8`` .. ``arm/v5``, always preferring the closest match.

One deliberate difference: containerd's ``Parse`` leaves some results in a
display form (``linux/arm`` stays without a variant, ``linux/arm64/v8`` keeps
``v8``); :meth:`Platform.parse` here always returns the normalised value, which
is what every comparison uses anyway.
"""

from __future__ import annotations

import functools
import platform as _host
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, Protocol, TypeAlias, runtime_checkable

import attrs

from libcontainerd.errors import InvalidArgument
from libcontainerd.types.platform_fields import (
    EXAMPLE,
    KNOWN_ARCH,
    KNOWN_OS,
    MAX_FIELD_LENGTH,
    MAX_OS_FEATURES,
    MAX_OS_VERSION_LENGTH,
    RAW_TOKEN,
    TOKEN,
    arm_variant,
    check_raw_token,
    features_tuple,
    json_type,
    normalize_arch,
    normalize_os,
    quote,
    validate_architecture,
    validate_os,
    validate_os_features,
    validate_os_version,
    validate_variant,
)

__all__ = [
    "MAX_FIELD_LENGTH",
    "MAX_OS_FEATURES",
    "MAX_OS_VERSION_LENGTH",
    "AllMatcher",
    "AnyMatcher",
    "Matcher",
    "OrderedMatcher",
    "Platform",
    "PlatformRequest",
    "PlatformSelector",
    "all_platforms",
    "any_of",
    "default",
    "default_matcher",
    "default_spec",
    "default_strict",
    "default_string",
    "only",
    "only_strict",
    "ordered",
    "sort_by_preference",
]


@attrs.frozen
class Platform:
    """An OCI image-spec platform: ``os``/``architecture``/``variant`` plus optional extras.

    Construction validates but does not normalise: ``os``, ``architecture`` and
    ``variant`` must already be lowercase tokens of ``[a-z0-9_.-]`` (starting
    with a letter or digit, at most 64 characters; ``variant`` may be empty).
    ``os_version`` (at most 128 characters) and each ``os_features`` entry (at
    most 64, at most 32 entries) use ``[A-Za-z0-9_.+:-]``. Use :meth:`parse` or
    :meth:`of` to accept user spellings such as ``Linux`` or ``x86_64``.
    """

    os: str = attrs.field(validator=validate_os)
    architecture: str = attrs.field(validator=validate_architecture)
    variant: str = attrs.field(default="", validator=validate_variant)
    os_version: str = attrs.field(default="", validator=validate_os_version)
    os_features: tuple[str, ...] = attrs.field(
        default=(), converter=features_tuple, validator=validate_os_features
    )

    @classmethod
    def of(
        cls,
        os: str,
        architecture: str,
        variant: str = "",
        os_version: str = "",
        os_features: Iterable[str] = (),
    ) -> Platform:
        """Build a normalised platform from fields spelt any way containerd accepts.

        ``Platform.of("Linux", "x86_64")`` is ``linux/amd64``. Invalid fields
        raise :class:`InvalidArgument` naming the field.
        """
        check_raw_token("os", os)
        check_raw_token("architecture", architecture)
        check_raw_token("variant", variant, allow_empty=True)
        arch, var = normalize_arch(architecture, variant)
        return cls(normalize_os(os), arch, var, os_version, os_features).normalized()

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant]``, a lone os or a lone architecture; return it normalised.

        A lone known os (``linux``, ``windows`` ...) takes this host's
        architecture and variant; a lone known architecture (``aarch64``,
        ``armel`` ...) takes this host's os. Components are case-insensitive.
        Raises :class:`InvalidArgument` naming the offending component.
        """
        if not isinstance(text, str):
            raise InvalidArgument(
                f"invalid platform {quote(text)}: must be a string, not {type(text).__name__}"
            )
        prefix = f"invalid platform {quote(text)}"
        if not text:
            raise InvalidArgument(f"invalid platform: empty string; {EXAMPLE}")
        if "*" in text:
            raise InvalidArgument(f"{prefix}: wildcards are not supported; {EXAMPLE}")
        parts = text.split("/")
        if len(parts) > 3:
            raise InvalidArgument(
                f"{prefix}: too many '/'-separated parts ({len(parts)}); {EXAMPLE}"
            )
        names = ("os", "architecture", "variant") if len(parts) > 1 else ("os or architecture",)
        for name, part in zip(names, parts, strict=False):
            if not part:
                raise InvalidArgument(f"{prefix}: empty {name}; {EXAMPLE}")
            if len(part) > MAX_FIELD_LENGTH:
                raise InvalidArgument(
                    f"{prefix}: {name} is longer than {MAX_FIELD_LENGTH} characters"
                )
            if not RAW_TOKEN.fullmatch(part):
                raise InvalidArgument(
                    f"{prefix}: {name} {quote(part)} may only contain letters, digits, '_' and "
                    f"'-'; {EXAMPLE}"
                )
        if len(parts) == 1:
            word = parts[0]
            os = normalize_os(word)
            if os in KNOWN_OS:
                host = default()
                return cls(os, host.architecture, host.variant)
            arch, variant = normalize_arch(word, "")
            if arch in KNOWN_ARCH:
                return cls(default().os, arch, variant).normalized()
            raise InvalidArgument(
                f"{prefix}: unknown operating system or architecture; give both as "
                f"os/arch, e.g. linux/amd64"
            )
        variant = parts[2] if len(parts) == 3 else ""
        arch, variant = normalize_arch(parts[1], variant)
        return cls(normalize_os(parts[0]), arch, variant).normalized()

    def format(self) -> str:
        """The ``os/arch[/variant]`` form (``os.version`` and ``os.features`` are not shown)."""
        if self.variant:
            return f"{self.os}/{self.architecture}/{self.variant}"
        return f"{self.os}/{self.architecture}"

    __str__ = format

    def normalized(self) -> Platform:
        """This platform with containerd's aliases resolved and ``os_features`` sorted, unique.

        ``os_version`` is kept as is. Normalising twice changes nothing.
        """
        arch, variant = normalize_arch(self.architecture, self.variant)
        features = tuple(sorted(set(self.os_features)))
        result = Platform(normalize_os(self.os), arch, variant, self.os_version, features)
        return self if result == self else result

    def without_os_details(self) -> Platform:
        """The same platform without ``os_version`` and ``os_features``."""
        return Platform(self.os, self.architecture, self.variant)

    def to_dict(self) -> dict[str, object]:
        """The OCI image-spec JSON object; empty optional fields are left out."""
        data: dict[str, object] = {"os": self.os, "architecture": self.architecture}
        if self.variant:
            data["variant"] = self.variant
        if self.os_version:
            data["os.version"] = self.os_version
        if self.os_features:
            data["os.features"] = list(self.os_features)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object], *, normalize: bool = False) -> Platform:
        """Read an OCI image-spec platform object strictly.

        Unknown keys, values of the wrong JSON type, and a missing or empty
        ``os`` or ``architecture`` raise :class:`InvalidArgument` naming the key.
        With ``normalize=True`` aliases and case are resolved as by :meth:`of`;
        otherwise the values must already be in stored form.
        """
        if not isinstance(data, Mapping):
            raise InvalidArgument(
                f"invalid platform: expected a JSON object, got {type(data).__name__}"
            )
        unknown = sorted(str(k) for k in data if k not in _DICT_KEYS)
        if unknown:
            raise InvalidArgument(
                f"invalid platform: unknown field {quote(unknown[0])}; allowed fields are "
                + ", ".join(quote(k) for k in _DICT_KEYS)
            )
        fields: dict[str, str] = {}
        for key in ("os", "architecture", "variant", "os.version"):
            value = data.get(key, "")
            if not isinstance(value, str):
                raise InvalidArgument(
                    f"invalid platform: field {quote(key)} must be a string, not {json_type(value)}"
                )
            fields[key] = value
        for key in ("os", "architecture"):
            if not fields[key]:
                raise InvalidArgument(
                    f"invalid platform: field {quote(key)} is missing or empty; it is required"
                )
        raw_features = data.get("os.features", [])
        if not isinstance(raw_features, (list, tuple)):
            raise InvalidArgument(
                'invalid platform: field "os.features" must be a list of strings, not '
                + json_type(raw_features)
            )
        if len(raw_features) > MAX_OS_FEATURES:
            raise InvalidArgument(
                f'invalid platform: field "os.features" has {len(raw_features)} entries, '
                f"at most {MAX_OS_FEATURES} allowed"
            )
        for entry in raw_features:
            if not isinstance(entry, str):
                raise InvalidArgument(
                    'invalid platform: field "os.features" must be a list of strings, found '
                    + json_type(entry)
                )
        build = cls.of if normalize else cls
        return build(
            fields["os"],
            fields["architecture"],
            fields["variant"],
            fields["os.version"],
            tuple(raw_features),
        )


_DICT_KEYS = ("os", "architecture", "variant", "os.version", "os.features")


# --- the host ------------------------------------------------------------------------------


def _detect_host(
    sys_platform: str, machine: str, cpuinfo: str | None, *, is_64bit: bool = True
) -> Platform:
    """The normalised platform for the given interpreter platform, machine and cpuinfo."""
    if sys_platform.startswith("linux"):
        os = "linux"
    elif sys_platform in ("win32", "cygwin", "msys"):
        os = "windows"
    elif sys_platform.startswith("sunos"):
        os = "solaris"
    else:
        os = re.sub(r"\d+$", "", sys_platform.lower()) or "unknown"
    machine = machine.lower()
    variant = ""
    if machine in ("x86_64", "amd64", "x64", "em64t"):
        arch = "amd64"
    elif machine in ("i386", "i486", "i586", "i686", "x86"):
        arch = "386"
    elif machine in ("aarch64", "arm64") and is_64bit:
        arch = "arm64"
    elif machine.startswith(("arm", "aarch64")):
        # also a 32-bit interpreter on a 64-bit ARM kernel: it can only run 32-bit ARM code
        arch = "arm"
        variant = arm_variant(machine, cpuinfo)
    elif machine == "loongarch64":
        arch = "loong64"
    elif machine.startswith("mips"):
        arch = machine
    else:
        arch = machine or "unknown"
    if not TOKEN.fullmatch(os) or len(os) > MAX_FIELD_LENGTH:
        os = "unknown"
    if not TOKEN.fullmatch(arch) or len(arch) > MAX_FIELD_LENGTH:
        arch = "unknown"
    return Platform(os, arch, variant).normalized()


@functools.lru_cache(maxsize=1)
def default() -> Platform:
    """This host's platform (os, architecture and, on ARM, variant), normalised.

    On 64-bit ARM the implied ``v8`` variant is dropped, as normalisation does
    everywhere. The value is computed once per process.
    """
    cpuinfo: str | None = None
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read(1 << 20)
        except OSError:
            cpuinfo = None
    return _detect_host(sys.platform, _host.machine(), cpuinfo, is_64bit=sys.maxsize > 2**32)


def default_spec() -> Platform:
    """Alias of :func:`default` under containerd's name for readers coming from Go."""
    return default()


def default_string() -> str:
    """This host's platform as ``os/arch[/variant]``."""
    return default().format()


# --- matchers --------------------------------------------------------------------------------


@runtime_checkable
class Matcher(Protocol):
    """Decides which platforms are acceptable and which of two is preferred."""

    def match(self, platform: Platform) -> bool:
        """Whether ``platform`` is acceptable."""
        ...

    def less(self, a: Platform, b: Platform) -> bool:
        """True when ``a`` is preferred over ``b`` (a strict order: never both ways)."""
        ...


@functools.lru_cache(maxsize=4096)
def _key(platform: Platform) -> tuple[str, str, str]:
    # Matching compares the normalised triple only; os.version and os.features do not count.
    n = platform.normalized()
    return (n.os, n.architecture, n.variant)


def _keys(platforms: Iterable[Platform]) -> tuple[tuple[str, str, str], ...]:
    out: list[tuple[str, str, str]] = []
    for p in platforms:
        if not isinstance(p, Platform):
            raise InvalidArgument(
                f"expected a Platform, got {type(p).__name__}; use Platform.parse() for strings"
            )
        out.append(_key(p))
    return tuple(out)


def _as_platforms(keys: tuple[tuple[str, str, str], ...]) -> str:
    return ", ".join("/".join(part for part in k if part) for k in keys)


@attrs.frozen(repr=False)
class OrderedMatcher:
    """Matches any of its platforms, preferring earlier ones (see :func:`ordered`)."""

    keys: tuple[tuple[str, str, str], ...]

    def rank(self, platform: Platform) -> int | None:
        """Position of the first entry ``platform`` matches, or None when it matches none."""
        key = _key(platform)
        for i, k in enumerate(self.keys):
            if k == key:
                return i
        return None

    def match(self, platform: Platform) -> bool:
        """Whether ``platform`` matches one of the entries."""
        return self.rank(platform) is not None

    def less(self, a: Platform, b: Platform) -> bool:
        """True when ``a`` matches an earlier entry than ``b`` (or ``b`` matches none)."""
        ra = self.rank(a)
        if ra is None:
            return False
        rb = self.rank(b)
        return rb is None or ra < rb

    def __repr__(self) -> str:
        return f"ordered({_as_platforms(self.keys)})"


@attrs.frozen(repr=False)
class AnyMatcher:
    """Matches any of its platforms, all equally good (see :func:`any_of`)."""

    keys: frozenset[tuple[str, str, str]]

    def match(self, platform: Platform) -> bool:
        """Whether ``platform`` matches one of the entries."""
        return _key(platform) in self.keys

    def less(self, a: Platform, b: Platform) -> bool:
        """True only when ``a`` matches and ``b`` does not."""
        return self.match(a) and not self.match(b)

    def __repr__(self) -> str:
        return f"any_of({_as_platforms(tuple(sorted(self.keys)))})"


@attrs.frozen(repr=False)
class AllMatcher:
    """Matches every platform and prefers none (see :func:`all_platforms`)."""

    def match(self, platform: Platform) -> bool:
        """Always True."""
        return True

    def less(self, a: Platform, b: Platform) -> bool:
        """Always False: no platform is preferred."""
        return False

    def __repr__(self) -> str:
        return "all_platforms()"


def _fallbacks(p: Platform) -> list[Platform]:
    """``p`` followed by the platforms it can also run, best first (``p`` is normalised)."""
    out = [p]
    arch = p.architecture
    level = _variant_level(p.variant)
    if arch == "amd64":
        if level is not None and level > 1:
            out += [attrs.evolve(p, variant=f"v{n}") for n in range(level - 1, 0, -1)]
        out.append(attrs.evolve(p, architecture="386", variant=""))
    elif arch == "arm":
        if level is not None and level > 5:
            out += [attrs.evolve(p, variant=f"v{n}") for n in range(level - 1, 4, -1)]
    elif arch == "arm64":
        out += _fallbacks(attrs.evolve(p, architecture="arm", variant=p.variant or "v8"))
    return out


def _variant_level(variant: str) -> int | None:
    digits = variant[1:] if variant.startswith("v") else variant
    # As Go's Atoi: leading zeros are read ("v007" is 7). containerd would list every
    # lower variant of a huge number; beyond four digits no fallbacks are listed at all.
    if digits.isascii() and digits.isdigit() and len(digits.lstrip("0")) <= 4:
        return int(digits)
    return None


def only(platform: Platform) -> OrderedMatcher:
    """Match ``platform`` and the platforms it can also run, preferring the closest.

    ``linux/amd64`` also matches ``linux/386``; ``linux/arm/v7`` matches v6 and
    v5 (not v8); ``linux/arm64`` matches ``linux/arm/v8`` .. ``v5`` after itself.
    """
    _keys([platform])  # type check with a helpful message
    return ordered(*_fallbacks(platform.normalized().without_os_details()))


def only_strict(platform: Platform) -> OrderedMatcher:
    """Match exactly ``platform`` (after normalisation), with no fallbacks."""
    return ordered(platform)


def ordered(*platforms: Platform) -> OrderedMatcher:
    """Match any of ``platforms``, preferring them in the order given."""
    return OrderedMatcher(_keys(platforms))


def any_of(*platforms: Platform) -> AnyMatcher:
    """Match any of ``platforms`` with no preference among them."""
    return AnyMatcher(frozenset(_keys(platforms)))


def all_platforms() -> AllMatcher:
    """Match every platform."""
    return AllMatcher()


def default_matcher() -> OrderedMatcher:
    """:func:`only` for this host: what this machine can run, its own platform first."""
    return only(default())


def default_strict() -> OrderedMatcher:
    """:func:`only_strict` for this host."""
    return only_strict(default())


def sort_by_preference(matcher: Matcher, platforms: Iterable[Platform]) -> list[Platform]:
    """The ``platforms`` that ``matcher`` accepts, most preferred first.

    The sort is stable: platforms the matcher ranks equally keep their input order.
    """

    def compare(a: Platform, b: Platform) -> int:
        if matcher.less(a, b):
            return -1
        if matcher.less(b, a):
            return 1
        return 0

    accepted = [p for p in platforms if matcher.match(p)]
    return sorted(accepted, key=functools.cmp_to_key(compare))


# --- platform requests -------------------------------------------------------------------------

PlatformRequest: TypeAlias = Literal["all"] | str | Platform | Matcher | Sequence[str | Platform]
"""Which platforms of an image to act on: ``"all"``, one ``os/arch[/variant]`` string or
:class:`Platform`, a :class:`Matcher`, or a list of platforms (each matched with
:func:`only`). Where a call takes ``PlatformRequest | None``, its docstring says what
``None`` means there (this host for pulls, no filter for listings)."""


@attrs.frozen
class PlatformSelector:
    """A parsed :data:`PlatformRequest`: the matchers to apply, in order of preference.

    Build one with :meth:`of` once per operation; every later step (choosing index
    entries, checking a config, naming the request in an error) uses it.
    """

    matchers: tuple[Matcher, ...]
    take_all: bool = False
    label: str = ""

    @classmethod
    def of(
        cls,
        request: PlatformRequest | PlatformSelector | None,
        *,
        none: Literal["host", "all"] = "host",
    ) -> PlatformSelector:
        """Parse ``request``; ``None`` means ``none`` (this host's platforms, or all).

        Malformed requests raise :class:`InvalidArgument` naming what was wrong.
        """
        if isinstance(request, PlatformSelector):
            return request
        if request is None:
            request = "all" if none == "all" else None
        if request is None:
            return cls((default_matcher(),), False, default().format())
        if isinstance(request, str):
            if request == "all":
                return cls((all_platforms(),), True, "all")
            parsed = Platform.parse(request)
            return cls((only(parsed),), False, parsed.format())
        if isinstance(request, Platform):
            return cls((only(request),), False, request.format())
        if isinstance(request, Matcher):
            return cls((request,), False, repr(request))
        if isinstance(request, Sequence):
            found: list[Matcher] = []
            names: list[str] = []
            for item in request:
                parsed = Platform.parse(item) if isinstance(item, str) else item
                if not isinstance(parsed, Platform):
                    raise InvalidArgument(
                        f"platform list entries must be str or Platform, not {type(item).__name__}"
                    )
                found.append(only(parsed))
                names.append(parsed.format())
            if not found:
                raise InvalidArgument("platform list is empty; name at least one or pass 'all'")
            return cls(tuple(found), False, ", ".join(names))
        raise InvalidArgument(
            "platform must be None, 'all', 'os/arch[/variant]', a Platform, a Matcher or a "
            f"list of platforms, not {type(request).__name__}"
        )

    def match(self, platform: Platform) -> bool:
        """Whether any of the matchers accepts ``platform``."""
        return self.take_all or any(m.match(platform) for m in self.matchers)

    def __str__(self) -> str:
        return self.label
