"""``Platform.parse`` and ``only`` / ``only_strict`` against a model of containerd's
``platforms.Parse``, ``Normalize`` and the ``Only`` fallback vector: components with '.',
a leading '_' or '-', numeric variants with leading zeros or many digits."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from libcontainerd.errors import InvalidArgument
from libcontainerd.types.platform import MAX_FIELD_LENGTH, Platform, only, only_strict

Key = tuple[str, str, str]


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        return "arm64", "" if variant in ("8", "v8") else variant
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


def _normalize(os: str, arch: str, variant: str) -> Key:
    os = os.lower()
    arch, variant = _normalize_arch(arch, variant)
    return ("darwin" if os == "macos" else os), arch, variant


def _upstream_parse(text: str) -> Key | None:
    """containerd's Parse of an os/arch[/variant] specifier, then Normalize."""
    if "*" in text:
        return None
    parts = text.split("/")
    if not all(re.fullmatch(r"[A-Za-z0-9_-]+", part) for part in parts):
        return None
    if len(parts) == 2:
        return _normalize(parts[0], parts[1], "")
    if len(parts) == 3:
        return _normalize(*parts)
    return None


def _atoi(text: str) -> int | None:
    return int(text) if re.fullmatch(r"[0-9]+", text) and len(text) < 19 else None


def _upstream_vector(key: Key) -> list[Key]:
    os, arch, variant = key
    vector = [key]
    level = _atoi(variant.removeprefix("v"))
    if arch == "amd64":
        if level is not None and level > 1:
            vector += [(os, arch, f"v{n}") for n in range(level - 1, 0, -1)]
        vector.append((os, "386", ""))
    elif arch == "arm":
        if level is not None and level > 5:
            vector += [(os, arch, f"v{n}") for n in range(level - 1, 4, -1)]
    elif arch == "arm64":
        vector += _upstream_vector((os, "arm", variant or "v8"))
    return vector


def _ours(text: str) -> Key | None:
    try:
        p = Platform.parse(text)
    except InvalidArgument:
        return None
    return p.os, p.architecture, p.variant


_component = st.text(alphabet="aZ09_-.x", min_size=1, max_size=MAX_FIELD_LENGTH)
_arch = (
    st.sampled_from(["amd64", "x86_64", "arm", "arm64", "aarch64", "armhf", "i386"]) | _component
)
_variant = (
    st.integers(min_value=0, max_value=300).map(lambda n: f"v{n}")
    | st.tuples(st.integers(0, 4), st.integers(0, 99)).map(lambda t: "v" + "0" * t[0] + str(t[1]))
    | _component
)


@given(os=_component | st.just("linux"), arch=_arch, variant=st.none() | _variant)
@example(os="linux", arch="amd64", variant="v1.2")
@example(os="_linux", arch="-arm", variant=None)
@example(os="linux", arch="arm", variant="v0007")
def test_parse_agrees_with_upstream(os: str, arch: str, variant: str | None) -> None:
    text = f"{os}/{arch}" + ("" if variant is None else f"/{variant}")
    assert _ours(text) == _upstream_parse(text), text


@settings(deadline=None)
@given(
    arch=st.sampled_from(["amd64", "arm", "arm64"]), variant=_variant.filter(lambda v: "." not in v)
)
@example(arch="arm", variant="v00008")
@example(arch="amd64", variant="v0004")
def test_only_lists_the_upstream_fallbacks(arch: str, variant: str) -> None:
    key = _upstream_parse(f"linux/{arch}/{variant}")
    if key is None:
        return
    matcher = only(Platform(*key))
    # containerd's Ordered normalises each entry of the vector (amd64/v1 is amd64).
    assert list(matcher.keys) == [_normalize(*k) for k in _upstream_vector(key)]
    strict = only_strict(Platform(*key))
    assert list(strict.keys) == [key]


def test_longer_components_are_a_documented_difference() -> None:
    """containerd has no length limit; this project bounds each component (see
    docs/upstream-differences.md)."""
    with pytest.raises(InvalidArgument, match="longer than"):
        Platform.parse("linux/" + "a" * (MAX_FIELD_LENGTH + 1))


def test_huge_variant_numbers_are_a_documented_difference() -> None:
    """containerd would list every lower variant (123450 of them here); this project
    lists none beyond four significant digits (see docs/upstream-differences.md)."""
    assert list(only(Platform("linux", "arm", "v123456")).keys) == [("linux", "arm", "v123456")]
    assert len(only(Platform("linux", "arm", "v00009999")).keys) == 9999 - 4
