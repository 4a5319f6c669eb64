"""Tests for digest validation and computation."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcontainerd.errors import InvalidArgument
from libcontainerd.types.digest import (
    Digest,
    compute_digest,
    is_valid_digest,
    sha256_digest,
    sha512_digest,
    split_digest,
    validate_digest,
)

SHA256_EMPTY = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_sha256_of_empty_input() -> None:
    assert sha256_digest(b"") == SHA256_EMPTY
    assert validate_digest(SHA256_EMPTY) == SHA256_EMPTY


def test_sha512() -> None:
    value = sha512_digest(b"abc")
    assert value == "sha512:" + hashlib.sha512(b"abc").hexdigest()
    assert split_digest(value) == ("sha512", hashlib.sha512(b"abc").hexdigest())


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "no ':'"),
        ("sha256", "no ':'"),
        ("sha256:", "hex digits"),
        ("sha256:" + "a" * 63, "64 hex digits, this one has 63"),
        ("sha256:" + "a" * 65, "this one has 65"),
        ("sha256:" + "A" * 64, "lowercase"),
        ("sha256:" + "g" * 64, "hex digits"),
        ("sha512:" + "a" * 64, "128 hex digits"),
        ("sha384:" + "a" * 96, "'sha384' is not supported"),
        ("md5:" + "a" * 32, "'md5' is not supported"),
        ("SHA256:" + "a" * 64, "not an algorithm name"),
        (":" + "a" * 64, "not an algorithm name"),
        ("sha256:" + "a" * 63 + "\n", "hex digits"),
        ("sha256:" + "a" * 1000, "characters long"),
    ],
)
def test_invalid_digests(value: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_digest(value)
    assert fragment in str(info.value)
    assert not is_valid_digest(value)


@pytest.mark.parametrize("value", [None, 5, b"sha256:aa"])
def test_non_str_digest(value: object) -> None:
    with pytest.raises(InvalidArgument, match="must be a str"):
        validate_digest(value)


def test_compute_digest_refuses_unknown_algorithm_and_non_bytes() -> None:
    with pytest.raises(InvalidArgument, match="not supported"):
        compute_digest(b"", "md5")
    with pytest.raises(InvalidArgument, match="must be bytes"):
        compute_digest("text", "sha256")  # type: ignore[arg-type]


def test_digest_value() -> None:
    d = Digest.parse(SHA256_EMPTY)
    assert str(d) == SHA256_EMPTY
    assert d.algorithm == "sha256"
    assert d.short() == "e3b0c44298fc"
    assert d.verify(b"")
    assert not d.verify(b"x")
    assert Digest.from_bytes(b"") == d
    with pytest.raises(InvalidArgument):
        Digest("sha256", "abc")
    with pytest.raises(InvalidArgument):
        Digest("md5", "a" * 32)


@settings(max_examples=300)
@given(st.binary(max_size=256), st.sampled_from(["sha256", "sha512"]))
def test_computed_digests_validate_and_round_trip(data: bytes, algorithm: str) -> None:
    value = compute_digest(data, algorithm)
    assert validate_digest(value) == value
    assert str(Digest.parse(value)) == value
    assert Digest.parse(value).verify(data)


@settings(max_examples=400)
@given(st.text(max_size=200))
def test_arbitrary_text_only_raises_invalid_argument(value: str) -> None:
    try:
        validate_digest(value)
    except InvalidArgument:
        assert not is_valid_digest(value)
        return
    algorithm, encoded = value.split(":")
    assert algorithm in ("sha256", "sha512")
    assert len(encoded) == {"sha256": 64, "sha512": 128}[algorithm]
    assert set(encoded) <= set("0123456789abcdef")


@settings(max_examples=200)
@given(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64), st.integers(0, 63))
def test_any_uppercase_hex_digit_is_refused(encoded: str, position: int) -> None:
    value = "sha256:" + encoded
    assert is_valid_digest(value)
    changed = encoded[:position] + encoded[position].upper() + encoded[position + 1 :]
    if changed != encoded:
        assert not is_valid_digest("sha256:" + changed)
