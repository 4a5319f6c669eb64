"""Tests of the Platform value type and the platform matchers (containerd's rules)."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcontainerd.errors import InvalidArgument
from libcontainerd.types.platform import (
    MAX_FIELD_LENGTH,
    MAX_OS_FEATURES,
    Matcher,
    Platform,
    _detect_host,
    all_platforms,
    any_of,
    default,
    default_matcher,
    default_spec,
    default_strict,
    default_string,
    only,
    only_strict,
    ordered,
    sort_by_preference,
)

HOST = default()


def P(text: str) -> Platform:
    return Platform.parse(text)


def fill(template: str) -> str:
    """Substitute this host's defaults into an expected value."""
    return template.format(os=HOST.os, arch=HOST.architecture, host=HOST.format())


# --- the table: parse / format / normalise -------------------------------------------------------

PARSE_TABLE = [
    ("linux/amd64", "linux/amd64"),
    ("Linux/x86_64", "linux/amd64"),
    ("linux/x86-64", "linux/amd64"),
    ("LINUX/AMD64", "linux/amd64"),
    ("linux/amd64/v1", "linux/amd64"),
    ("linux/amd64/v3", "linux/amd64/v3"),
    ("linux/arm64", "linux/arm64"),
    ("linux/arm64/v8", "linux/arm64"),
    ("linux/arm64/8", "linux/arm64"),
    ("linux/aarch64", "linux/arm64"),
    ("linux/aarch64/v8", "linux/arm64"),
    ("linux/arm64/v9", "linux/arm64/v9"),
    ("linux/arm", "linux/arm/v7"),
    ("linux/arm/7", "linux/arm/v7"),
    ("linux/arm/v7", "linux/arm/v7"),
    ("linux/arm/6", "linux/arm/v6"),
    ("linux/arm/v5", "linux/arm/v5"),
    ("linux/arm/8", "linux/arm/v8"),
    ("linux/armhf", "linux/arm/v7"),
    ("linux/armel", "linux/arm/v6"),
    ("linux/i386", "linux/386"),
    ("linux/s390x", "linux/s390x"),
    ("linux/ppc64le", "linux/ppc64le"),
    ("windows/amd64", "windows/amd64"),
    ("macOS/arm64", "darwin/arm64"),
    ("freebsd/riscv64", "freebsd/riscv64"),
    # a lone os takes this host's architecture and variant
    ("linux", "linux/{arch}" + (f"/{HOST.variant}" if HOST.variant else "")),
    ("windows", "windows/{arch}" + (f"/{HOST.variant}" if HOST.variant else "")),
    ("macOS", "darwin/{arch}" + (f"/{HOST.variant}" if HOST.variant else "")),
    # a lone architecture takes this host's os
    ("aarch64", "{os}/arm64"),
    ("Aarch64", "{os}/arm64"),
    ("armel", "{os}/arm/v6"),
    ("armhf", "{os}/arm/v7"),
    ("arm", "{os}/arm/v7"),
    ("x86_64", "{os}/amd64"),
    ("i386", "{os}/386"),
    ("s390x", "{os}/s390x"),
    # two or three parts are taken as given, like containerd (no known-name check)
    ("plan9/custom-arch", "plan9/custom-arch"),
    ("linux/mips64le/r6", "linux/mips64le/r6"),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_TABLE)
def test_parse_table(text: str, expected: str) -> None:
    parsed = Platform.parse(text)
    assert parsed.format() == fill(expected)
    assert str(parsed) == fill(expected)
    assert parsed.normalized() == parsed  # parse always returns the normalised value
    assert Platform.parse(parsed.format()) == parsed


NORMALIZE_TABLE = [
    (Platform("linux", "x86_64"), Platform("linux", "amd64")),
    (Platform("linux", "amd64", "v1"), Platform("linux", "amd64")),
    (Platform("linux", "amd64", "v2"), Platform("linux", "amd64", "v2")),
    (Platform("linux", "aarch64"), Platform("linux", "arm64")),
    (Platform("linux", "arm64", "v8"), Platform("linux", "arm64")),
    (Platform("linux", "arm64", "8"), Platform("linux", "arm64")),
    (Platform("linux", "arm"), Platform("linux", "arm", "v7")),
    (Platform("linux", "arm", "5"), Platform("linux", "arm", "v5")),
    (Platform("linux", "armhf", "v6"), Platform("linux", "arm", "v7")),
    (Platform("linux", "armel"), Platform("linux", "arm", "v6")),
    (Platform("linux", "i386", "whatever"), Platform("linux", "386")),
    (Platform("macos", "amd64"), Platform("darwin", "amd64")),
    (
        Platform("windows", "amd64", "", "10.0.17763.1", ("win32k", "a", "win32k")),
        Platform("windows", "amd64", "", "10.0.17763.1", ("a", "win32k")),
    ),
]


@pytest.mark.parametrize(("given", "expected"), NORMALIZE_TABLE, ids=str)
def test_normalize_table(given: Platform, expected: Platform) -> None:
    assert given.normalized() == expected
    assert expected.normalized() == expected


def test_of_accepts_any_spelling_and_normalizes() -> None:
    assert Platform.of("Linux", "X86_64") == Platform("linux", "amd64")
    assert Platform.of("LINUX", "ARM", "7") == Platform("linux", "arm", "v7")
    assert Platform.of("windows", "amd64", "", "10.0", ["b", "a", "b"]).os_features == ("a", "b")


# --- the table: matching and ordering ------------------------------------------------------------

MATCH_TABLE = [
    # only(): containerd's fallbacks
    (only, "linux/amd64", "linux/amd64", True),
    (only, "linux/amd64", "linux/x86_64", True),
    (only, "linux/amd64", "linux/386", True),
    (only, "linux/amd64", "linux/amd64/v2", False),
    (only, "linux/amd64", "windows/amd64", False),
    (only, "linux/amd64/v3", "linux/amd64/v2", True),
    (only, "linux/amd64/v3", "linux/amd64/v1", True),
    (only, "linux/amd64/v3", "linux/amd64", True),
    (only, "linux/amd64/v3", "linux/amd64/v4", False),
    (only, "linux/amd64/v3", "linux/386", True),
    (only, "linux/arm64", "linux/arm64/v8", True),
    (only, "linux/arm64", "linux/aarch64", True),
    (only, "linux/arm64", "linux/arm/v8", True),
    (only, "linux/arm64", "linux/arm/v7", True),
    (only, "linux/arm64", "linux/arm", True),
    (only, "linux/arm64", "linux/arm/v5", True),
    (only, "linux/arm64", "linux/amd64", False),
    (only, "linux/arm/v7", "linux/arm/v7", True),
    (only, "linux/arm/v7", "linux/armhf", True),
    (only, "linux/arm/v7", "linux/arm/v6", True),
    (only, "linux/arm/v7", "linux/arm/v5", True),
    (only, "linux/arm/v7", "linux/arm/v8", False),
    (only, "linux/arm/v7", "linux/arm64", False),
    (only, "linux/arm/v6", "linux/arm/v7", False),
    (only, "linux/arm/v5", "linux/arm/v5", True),
    (only, "linux/s390x", "linux/s390x", True),
    (only, "linux/386", "linux/amd64", False),
    # only_strict(): no fallbacks, but still normalised
    (only_strict, "linux/amd64", "linux/amd64", True),
    (only_strict, "linux/amd64", "linux/x86_64", True),
    (only_strict, "linux/amd64", "linux/386", False),
    (only_strict, "linux/arm64", "linux/arm64/v8", True),
    (only_strict, "linux/arm64", "linux/arm/v8", False),
    (only_strict, "linux/arm/v7", "linux/arm/v6", False),
]


@pytest.mark.parametrize(("factory", "spec", "candidate", "expected"), MATCH_TABLE)
def test_match_table(factory: object, spec: str, candidate: str, expected: bool) -> None:
    assert callable(factory)
    matcher = factory(P(spec))
    assert isinstance(matcher, Matcher)
    assert matcher.match(Platform.of(*candidate.split("/"))) is expected


def test_match_ignores_os_version_and_features() -> None:
    plain = Platform("windows", "amd64")
    detailed = Platform("windows", "amd64", "", "10.0.20348.1", ("win32k",))
    assert only(plain).match(detailed)
    assert only(detailed).match(plain)
    assert only_strict(detailed).match(plain)


ORDER_TABLE = [
    (
        only(P("linux/arm64")),
        ["linux/arm/v5", "linux/arm/v7", "linux/arm64", "linux/arm/v8", "linux/amd64"],
        ["linux/arm64", "linux/arm/v8", "linux/arm/v7", "linux/arm/v5"],
    ),
    (
        only(P("linux/amd64/v3")),
        ["linux/386", "linux/amd64", "linux/amd64/v4", "linux/amd64/v3", "linux/amd64/v2"],
        ["linux/amd64/v3", "linux/amd64/v2", "linux/amd64", "linux/386"],
    ),
    (
        only(P("linux/arm/v7")),
        ["linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/arm/v8"],
        ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"],
    ),
    (
        ordered(P("linux/s390x"), P("linux/amd64"), P("windows/amd64")),
        ["windows/amd64", "linux/amd64", "linux/arm64", "linux/s390x"],
        ["linux/s390x", "linux/amd64", "windows/amd64"],
    ),
    (
        # any_of has no preference: stable input order among the matches
        any_of(P("linux/s390x"), P("linux/amd64")),
        ["linux/amd64", "linux/arm64", "linux/s390x"],
        ["linux/amd64", "linux/s390x"],
    ),
    (
        all_platforms(),
        ["linux/arm64", "windows/amd64", "linux/amd64"],
        ["linux/arm64", "windows/amd64", "linux/amd64"],
    ),
]


@pytest.mark.parametrize(("matcher", "candidates", "expected"), ORDER_TABLE, ids=repr)
def test_order_table(matcher: Matcher, candidates: list[str], expected: list[str]) -> None:
    got = sort_by_preference(matcher, [P(c) for c in candidates])
    assert [p.format() for p in got] == expected


def test_less_follows_preference() -> None:
    m = only(P("linux/arm64"))
    assert m.less(P("linux/arm64"), P("linux/arm/v7"))
    assert not m.less(P("linux/arm/v7"), P("linux/arm64"))
    assert m.less(P("linux/arm/v7"), P("linux/amd64"))  # a match beats a non-match
    assert not m.less(P("linux/amd64"), P("linux/s390x"))  # two non-matches: no preference
    assert not m.less(P("linux/arm64"), P("linux/aarch64"))  # equal after normalising
    a = any_of(P("linux/amd64"), P("linux/s390x"))
    assert a.less(P("linux/amd64"), P("linux/arm64"))
    assert not a.less(P("linux/amd64"), P("linux/s390x"))
    assert not a.less(P("linux/s390x"), P("linux/amd64"))
    assert not all_platforms().less(P("linux/amd64"), P("linux/arm64"))
    assert all_platforms().match(P("plan9/whatever"))


def test_ordered_and_any_of_with_nothing_match_nothing() -> None:
    assert not ordered().match(P("linux/amd64"))
    assert not any_of().match(P("linux/amd64"))


def test_matchers_reject_strings_clearly() -> None:
    with pytest.raises(InvalidArgument, match=r"Platform\.parse"):
        ordered("linux/amd64")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="expected a Platform"):
        only("linux/amd64")  # type: ignore[arg-type]


def test_matcher_repr_lists_the_platforms() -> None:
    assert repr(only(P("linux/arm/v7"))) == "ordered(linux/arm/v7, linux/arm/v6, linux/arm/v5)"
    assert repr(all_platforms()) == "all_platforms()"


# --- the host ------------------------------------------------------------------------------------


def test_default_is_this_host() -> None:
    assert HOST == default_spec() == HOST.normalized()
    assert default_string() == HOST.format()
    assert default_matcher().match(HOST)
    assert default_strict().match(HOST)
    if HOST.architecture == "amd64":
        assert default_matcher().match(Platform(HOST.os, "386"))
        assert not default_strict().match(Platform(HOST.os, "386"))


ARM_CPUINFO_V7 = "processor\t: 0\nmodel name\t: ARMv7 Processor rev 4 (v7l)\nCpu architecture: 7\n"
ARM_CPUINFO_V6 = "model name\t: ARMv6-compatible processor rev 7 (v6l)\nCPU architecture: 7\n"

HOST_TABLE = [
    ("linux", "x86_64", None, True, "linux/amd64"),
    ("linux", "i686", None, False, "linux/386"),
    ("linux", "aarch64", "CPU architecture: 8\n", True, "linux/arm64"),
    ("linux", "aarch64", "CPU architecture: 8\n", False, "linux/arm/v8"),
    ("linux", "armv7l", ARM_CPUINFO_V7, False, "linux/arm/v7"),
    ("linux", "armv7l", ARM_CPUINFO_V6, False, "linux/arm/v6"),
    ("linux", "armv6l", None, False, "linux/arm/v6"),
    ("linux", "armv7l", "CPU architecture: 5TE\n", False, "linux/arm/v5"),
    ("linux", "ppc64le", None, True, "linux/ppc64le"),
    ("linux", "s390x", None, True, "linux/s390x"),
    ("linux", "loongarch64", None, True, "linux/loong64"),
    ("win32", "AMD64", None, True, "windows/amd64"),
    ("win32", "ARM64", None, True, "windows/arm64"),
    ("darwin", "arm64", None, True, "darwin/arm64"),
    ("freebsd14", "amd64", None, True, "freebsd/amd64"),
    ("linux", "", None, True, "linux/unknown"),
]


@pytest.mark.parametrize(("sys_platform", "machine", "cpuinfo", "is_64bit", "expected"), HOST_TABLE)
def test_host_detection(
    sys_platform: str, machine: str, cpuinfo: str | None, is_64bit: bool, expected: str
) -> None:
    assert _detect_host(sys_platform, machine, cpuinfo, is_64bit=is_64bit).format() == expected


# --- invalid input -------------------------------------------------------------------------------

INVALID_PARSE = [
    ("", "empty string"),
    ("linux//v7", 'invalid platform "linux//v7": empty architecture; expected os/arch[/variant]'),
    ("/amd64", "empty os"),
    ("linux/amd64/", "empty variant"),
    ("linux/amd64/v8/x", "too many '/'-separated parts (4)"),
    ("foo", 'invalid platform "foo": unknown operating system or architecture'),
    ("*", "wildcards are not supported"),
    ("linux/*", "wildcards are not supported"),
    ("linux/x86 64", 'architecture "x86 64" may only contain'),
    ("linux /amd64", 'os "linux " may only contain'),
    ("linux/amd64\n", "may only contain"),
    ("linux/\u212a", "may only contain"),  # the Kelvin sign lowers to an ASCII "k"
    ("linux/amd64.x", "may only contain"),  # no dot in a containerd specifier
    ("linux/" + "a" * (MAX_FIELD_LENGTH + 1), "architecture is longer than 64 characters"),
]


@pytest.mark.parametrize(("text", "message"), INVALID_PARSE)
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        Platform.parse(text)
    assert message in str(info.value)


def test_parse_rejects_non_string() -> None:
    with pytest.raises(InvalidArgument, match="must be a string"):
        Platform.parse(b"linux/amd64")  # type: ignore[arg-type]


INVALID_CONSTRUCT = [
    (dict(os="", architecture="amd64"), "empty os"),
    (dict(os="linux", architecture=""), "empty architecture"),
    (dict(os="Linux", architecture="amd64"), 'os "Linux": must be lowercase'),
    (dict(os="linux", architecture="amd64/v2"), "contains '/'"),
    (dict(os="linux", architecture="amd64", variant="v/2"), 'variant "v/2": contains'),
    (dict(os="linux", architecture="a" * 65), "longer than 64 characters"),
    (dict(os="linux", architecture="amd 64"), "must be lowercase letters"),
    (dict(os="linux", architecture="."), "not starting with '.'"),
    (dict(os=None, architecture="amd64"), "must be a string"),
    (dict(os="windows", architecture="amd64", os_version="10 0"), "os.version"),
    (dict(os="windows", architecture="amd64", os_version="1" * 129), "longer than 128"),
    (dict(os="windows", architecture="amd64", os_features="win32k"), "must be a list"),
    (dict(os="windows", architecture="amd64", os_features=("",)), "must not be empty"),
    (dict(os="windows", architecture="amd64", os_features=(1,)), "must be a string"),
    (dict(os="windows", architecture="amd64", os_features=("a b",)), "os.features entry"),
    (
        dict(os="windows", architecture="amd64", os_features=("f",) * (MAX_OS_FEATURES + 1)),
        "at most 32",
    ),
]


@pytest.mark.parametrize(("kwargs", "message"), INVALID_CONSTRUCT)
def test_constructor_rejects(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        Platform(**kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


# --- dict form -----------------------------------------------------------------------------------


def test_to_dict_and_back() -> None:
    p = Platform("windows", "amd64", "", "10.0.17763.1879", ("win32k",))
    assert p.to_dict() == {
        "os": "windows",
        "architecture": "amd64",
        "os.version": "10.0.17763.1879",
        "os.features": ["win32k"],
    }
    assert Platform.from_dict(p.to_dict()) == p
    assert Platform("linux", "arm", "v7").to_dict() == {
        "os": "linux",
        "architecture": "arm",
        "variant": "v7",
    }
    # values are kept as stored unless asked to normalise
    assert Platform.from_dict({"os": "linux", "architecture": "arm64", "variant": "v8"}).variant
    assert Platform.from_dict(
        {"os": "Linux", "architecture": "aarch64", "variant": "v8"}, normalize=True
    ) == Platform("linux", "arm64")


INVALID_DICT: list[tuple[object, str]] = [
    ([], "expected a JSON object"),
    ({"os": "linux"}, 'field "architecture" is missing or empty'),
    ({"architecture": "amd64"}, 'field "os" is missing or empty'),
    ({"os": "linux", "architecture": "amd64", "OS": "x"}, 'unknown field "OS"'),
    ({"os": 1, "architecture": "amd64"}, 'field "os" must be a string, not a number'),
    ({"os": "linux", "architecture": None}, 'field "architecture" must be a string, not null'),
    ({"os": "linux", "architecture": "amd64", "variant": True}, "not a boolean"),
    ({"os": "l", "architecture": "a", "os.features": "x"}, "must be a list of strings"),
    ({"os": "l", "architecture": "a", "os.features": [{}]}, "found an object"),
    ({"os": "l", "architecture": "a", "os.version": []}, "not an array"),
    ({"os": "Linux", "architecture": "amd64"}, "must be lowercase"),
]


@pytest.mark.parametrize(("data", "message"), INVALID_DICT)
def test_from_dict_is_strict(data: object, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        Platform.from_dict(data)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_platform_is_a_hashable_frozen_value() -> None:
    p = P("linux/amd64")
    assert {p: 1}[Platform("linux", "amd64")] == 1
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        p.os = "windows"  # type: ignore[misc]


# --- properties ----------------------------------------------------------------------------------

_TOKEN = st.one_of(
    st.sampled_from(
        [
            "linux",
            "windows",
            "darwin",
            "amd64",
            "x86_64",
            "arm",
            "arm64",
            "aarch64",
            "armhf",
            "armel",
            "i386",
            "386",
            "v1",
            "v5",
            "v6",
            "v7",
            "v8",
            "7",
            "8",
            "s390x",
        ]
    ),
    st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,63}", fullmatch=True),
)
_OPAQUE = st.from_regex(r"[A-Za-z0-9_.+:-]{1,64}", fullmatch=True)

platforms = st.builds(
    Platform,
    os=_TOKEN,
    architecture=_TOKEN,
    variant=st.one_of(st.just(""), _TOKEN),
    os_version=st.one_of(st.just(""), st.from_regex(r"[A-Za-z0-9_.+:-]{1,128}", fullmatch=True)),
    os_features=st.lists(_OPAQUE, max_size=MAX_OS_FEATURES).map(tuple),
)
# What an os/arch[/variant] specifier can carry: containerd's Parse takes no '.'.
simple_platforms = st.builds(
    Platform, os=_TOKEN, architecture=_TOKEN, variant=st.one_of(st.just(""), _TOKEN)
).filter(lambda p: "." not in p.format())


@settings(max_examples=300)
@given(simple_platforms)
def test_parse_format_round_trip(p: Platform) -> None:
    n = p.normalized()
    assert Platform.parse(n.format()) == n
    assert Platform.parse(p.format()) == n


@settings(max_examples=300)
@given(platforms)
def test_normalize_is_idempotent_and_dict_round_trips(p: Platform) -> None:
    n = p.normalized()
    assert n.normalized() == n
    assert Platform.from_dict(p.to_dict()) == p
    assert Platform.from_dict(p.to_dict(), normalize=True) == n


@settings(max_examples=200)
@given(simple_platforms, st.lists(simple_platforms, max_size=8))
def test_only_matches_itself_and_orders_strictly(p: Platform, others: list[Platform]) -> None:
    m = only(p)
    assert m.match(p)
    assert only_strict(p).match(p)
    for a in [p, *others]:
        assert not m.less(a, a)
        for b in others:
            assert not (m.less(a, b) and m.less(b, a))
    ranked = sort_by_preference(m, [*others, p])
    assert ranked[0].normalized().without_os_details() == p.normalized()
    assert all(m.match(x) for x in ranked)


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_parse_raises_only_invalid_argument(text: str) -> None:
    try:
        result = Platform.parse(text)
    except InvalidArgument:
        return
    assert result == result.normalized()
