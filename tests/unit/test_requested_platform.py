"""Tests of the X-Requested-Platform header and platform parameter codecs."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcontainerd.errors import InvalidArgument
from libcontainerd.types.platform import (
    MAX_FIELD_LENGTH,
    MAX_OS_FEATURES,
    MAX_OS_VERSION_LENGTH,
    Platform,
    default,
)
from libcontainerd.types.requested_platform import (
    MAX_HEADER_LENGTH,
    REQUESTED_PLATFORM_HEADER,
    decode_platform_parameter,
    decode_requested_platform_header,
    encode_platform_parameter,
    encode_requested_platform_header,
)

HOST = default()


def test_header_name() -> None:
    assert REQUESTED_PLATFORM_HEADER == "X-Requested-Platform"


# --- header: encoding ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "encoded"),
    [
        (Platform("linux", "amd64"), '{"os":"linux","architecture":"amd64"}'),
        (
            Platform("linux", "arm", "v7"),
            '{"os":"linux","architecture":"arm","variant":"v7"}',
        ),
        (
            Platform("windows", "amd64", "", "10.0.17763.1879", ("win32k",)),
            '{"os":"windows","architecture":"amd64","os.version":"10.0.17763.1879",'
            '"os.features":["win32k"]}',
        ),
    ],
)
def test_encode_header(platform: Platform, encoded: str) -> None:
    assert encode_requested_platform_header(platform) == encoded
    assert decode_requested_platform_header(encoded) == platform
    assert decode_requested_platform_header(encoded.encode()) == platform


def test_largest_valid_platform_fits_the_header_limit() -> None:
    big = Platform(
        "o" * MAX_FIELD_LENGTH,
        "a" * MAX_FIELD_LENGTH,
        "v" * MAX_FIELD_LENGTH,
        "1" * MAX_OS_VERSION_LENGTH,
        tuple(f"{i:02d}".ljust(MAX_FIELD_LENGTH, "f") for i in range(MAX_OS_FEATURES)),
    )
    encoded = encode_requested_platform_header(big)
    assert len(encoded.encode()) <= MAX_HEADER_LENGTH
    assert decode_requested_platform_header(encoded) == big


# --- header: decoding ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('{"os":"Linux","architecture":"x86_64"}', Platform("linux", "amd64")),
        ('{"architecture":"aarch64","os":"linux","variant":"v8"}', Platform("linux", "arm64")),
        ('{"os":"linux","architecture":"armhf"}', Platform("linux", "arm", "v7")),
        ('  {"os": "linux", "architecture": "arm"}\t', Platform("linux", "arm", "v7")),
        ('{"os":"linux","architecture":"amd64","variant":""}', Platform("linux", "amd64")),
        (
            '{"os":"windows","architecture":"amd64","os.features":["b","a","b"],"os.version":""}',
            Platform("windows", "amd64", os_features=("a", "b")),
        ),
    ],
)
def test_decode_header_normalizes(value: str, expected: Platform) -> None:
    assert decode_requested_platform_header(value) == expected


INVALID_HEADERS: list[tuple[str | bytes, str]] = [
    ("", "the value is empty"),
    ("   ", "the value is empty"),
    ("linux/amd64", "not valid JSON"),
    ("[]", "the JSON value is an array, not an object"),
    ('"linux"', "is a string, not an object"),
    ("null", "is null, not an object"),
    ("1", "is a number"),
    ("true", "is a boolean"),
    ("NaN", "NaN is not valid JSON"),
    ('{"os":"linux","architecture":Infinity}', "Infinity is not valid JSON"),
    ('{"os":"linux"}', 'field "architecture" is missing or empty'),
    ('{"architecture":"amd64"}', 'field "os" is missing or empty'),
    ('{"os":"","architecture":"amd64"}', 'field "os" is missing or empty'),
    ('{"os":"linux","architecture":"amd64","Variant":"v1"}', 'unknown field "Variant"'),
    ('{"os":"linux","architecture":"amd64","os":"windows"}', 'field "os" appears more than once'),
    ('{"os":["linux"],"architecture":"amd64"}', 'field "os" must be a string, not an array'),
    ('{"os":"linux","architecture":null}', 'field "architecture" must be a string, not null'),
    ('{"os":"windows","architecture":"amd64","os.version":10}', 'field "os.version" must be'),
    ('{"os":"windows","architecture":"amd64","os.features":"win32k"}', '"os.features" must be'),
    ('{"os":"windows","architecture":"amd64","os.features":[1]}', "found a number"),
    ('{"os":"linux/amd64","architecture":"amd64"}', "contains '/'"),
    ('{"os":"linux","architecture":"x86 64"}', 'architecture "x86 64"'),
    ('{"os":"linux","architecture":"\\u212a"}', "architecture"),
    ('{"os":"' + "l" * 65 + '","architecture":"amd64"}', "longer than 64 characters"),
    ('{"os":"linux","architecture":"amd64"} x', "not valid JSON"),
    ("[" * 3000, "nested too deeply"),
    ("x" * (MAX_HEADER_LENGTH + 1), "at most 4096"),
    ("\u00e9" * (MAX_HEADER_LENGTH // 2 + 1), "bytes long, at most 4096 allowed"),
    ("\ud800", "unpaired surrogate"),
    (b"\xff\xfe{}", "not valid UTF-8"),
    (b"x" * (MAX_HEADER_LENGTH + 1), "at most 4096"),
]


@pytest.mark.parametrize(("value", "message"), INVALID_HEADERS)
def test_decode_header_rejects(value: str | bytes, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        decode_requested_platform_header(value)
    text = str(info.value)
    assert text.startswith("invalid X-Requested-Platform header: ")
    assert message in text


def test_decode_header_rejects_other_types() -> None:
    with pytest.raises(InvalidArgument, match="expected str or bytes"):
        decode_requested_platform_header({"os": "linux"})  # type: ignore[arg-type]


# --- parameter -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("linux/amd64", "linux/amd64"),
        ("Linux/x86_64", "linux/amd64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm", "linux/arm/v7"),
        ("windows/amd64", "windows/amd64"),
        ("linux", HOST.format().replace(HOST.os, "linux", 1)),
        ("armel", f"{HOST.os}/arm/v6"),
    ],
)
def test_decode_parameter(value: str, expected: str) -> None:
    assert decode_platform_parameter(value).format() == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "the value is empty; omit the parameter"),
        ("linux//v7", 'invalid platform parameter "linux//v7": empty architecture'),
        ("foo", "unknown operating system or architecture"),
        ("linux/amd64/v1/x", "too many"),
        ("linux/amd64?", "may only contain"),
        ("l" * 200, "at most 194 allowed"),
        ('{"os":"linux","architecture":"amd64"}', "may only contain"),
    ],
)
def test_decode_parameter_rejects(value: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        decode_platform_parameter(value)
    assert message in str(info.value)
    assert str(info.value).startswith("invalid platform parameter")


def test_encode_parameter_refuses_to_drop_os_details() -> None:
    p = Platform("windows", "amd64", "", "10.0.20348.1", ("win32k",))
    with pytest.raises(InvalidArgument, match="X-Requested-Platform header"):
        encode_platform_parameter(p)
    assert encode_platform_parameter(p, lossy=True) == "windows/amd64"
    assert encode_platform_parameter(Platform("linux", "arm", "v6")) == "linux/arm/v6"


# --- properties ----------------------------------------------------------------------------------

_TOKEN = st.one_of(
    st.sampled_from(["linux", "windows", "amd64", "x86_64", "arm", "arm64", "aarch64", "v8", "7"]),
    st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,63}", fullmatch=True),
)
platforms = st.builds(
    Platform,
    os=_TOKEN,
    architecture=_TOKEN,
    variant=st.one_of(st.just(""), _TOKEN),
    os_version=st.one_of(
        st.just(""),
        st.from_regex(rf"[A-Za-z0-9_.+:-]{{1,{MAX_OS_VERSION_LENGTH}}}", fullmatch=True),
    ),
    os_features=st.lists(
        st.from_regex(r"[A-Za-z0-9_.+:-]{1,64}", fullmatch=True), max_size=MAX_OS_FEATURES
    ).map(tuple),
)
# What an os/arch[/variant] specifier can carry: containerd's Parse takes no '.'.
simple_platforms = st.builds(
    Platform, os=_TOKEN, architecture=_TOKEN, variant=st.one_of(st.just(""), _TOKEN)
).filter(lambda p: "." not in p.format())


@settings(max_examples=300)
@given(platforms)
def test_header_round_trips_every_platform(p: Platform) -> None:
    encoded = encode_requested_platform_header(p)
    assert len(encoded.encode()) <= MAX_HEADER_LENGTH
    assert decode_requested_platform_header(encoded) == p.normalized()
    assert decode_requested_platform_header(encoded.encode()) == p.normalized()
    n = p.normalized()
    assert decode_requested_platform_header(encode_requested_platform_header(n)) == n


@settings(max_examples=300)
@given(simple_platforms)
def test_parameter_round_trips(p: Platform) -> None:
    assert decode_platform_parameter(encode_platform_parameter(p)) == p.normalized()


def _only_invalid_argument_from_both(value: str | bytes) -> None:
    for decode in (decode_requested_platform_header, decode_platform_parameter):
        try:
            result = decode(value)  # type: ignore[arg-type]
        except InvalidArgument:
            continue
        assert isinstance(result, Platform)
        assert result == result.normalized()


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_decoders_take_any_text(value: str) -> None:
    _only_invalid_argument_from_both(value)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_decoders_take_any_bytes(value: bytes) -> None:
    _only_invalid_argument_from_both(value)


_KEYS = st.sampled_from(["os", "architecture", "variant", "os.version", "os.features"])
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["linux", "amd64", "Linux", "x86_64", "arm", "v7", "win32k"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.one_of(_KEYS, st.text(max_size=8)), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=400)
@given(json_values)
def test_header_decoder_takes_any_json(value: object) -> None:
    text = json.dumps(value)
    _only_invalid_argument_from_both(text)
    _only_invalid_argument_from_both(text.encode("utf-8", "surrogatepass"))


@settings(max_examples=300)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "os": json_values,
            "architecture": json_values,
            "variant": json_values,
            "os.version": json_values,
            "os.features": json_values,
        },
    )
)
def test_header_decoder_takes_any_values_under_the_right_keys(value: dict[str, object]) -> None:
    _only_invalid_argument_from_both(json.dumps(value))
