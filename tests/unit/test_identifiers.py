"""Tests for the identifier rule and the shared validation helpers."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcontainerd.errors import InvalidArgument
from libcontainerd.types.identifiers import (
    MAX_IDENTIFIER_LENGTH,
    frozen_mapping,
    frozen_str_mapping,
    is_valid_identifier,
    safe_repr,
    to_utc,
    validate_identifier,
)

VALID = [
    "a",
    "A",
    "0",
    "abc",
    "my-container",
    "my_container.v2",
    "a.b_c-d",
    "Mixed.Case-09",
    "1.2.3",
    "x" * MAX_IDENTIFIER_LENGTH,
]

INVALID = [
    "",
    "../x",
    "a/b",
    "/abs",
    ".hidden",
    "trailing.",
    "-lead",
    "trail-",
    "_lead",
    "a..b",
    "a--b",
    "a._b",
    "a b",
    "tab\there",
    "nul\0byte",
    "new\nline",
    "caf\u00e9",
    "\u0661\u0662",  # Arabic-Indic digits are not ASCII digits
    "x" * (MAX_IDENTIFIER_LENGTH + 1),
    "a:b",
    "a@b",
]


@pytest.mark.parametrize("value", VALID)
def test_valid_identifiers_are_returned(value: str) -> None:
    assert validate_identifier(value) == value
    assert is_valid_identifier(value)


@pytest.mark.parametrize("value", INVALID)
def test_invalid_identifiers_are_refused(value: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_identifier(value)
    assert not is_valid_identifier(value)


@pytest.mark.parametrize("value", [None, 1, b"abc", ["a"], 1.5])
def test_non_str_is_invalid_argument(value: object) -> None:
    with pytest.raises(InvalidArgument, match="must be a str"):
        validate_identifier(value, kind="container id")
    assert not is_valid_identifier(value)


def test_message_names_kind_value_and_rule() -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_identifier("../x", kind="container id")
    message = str(info.value)
    assert message.startswith("container id '../x' is not valid")
    assert "ASCII letters and digits" in message


def test_message_escapes_control_characters_and_truncates() -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_identifier("evil\nFAKE LOG LINE\0" + "x" * 500, kind="exec id")
    message = str(info.value)
    assert "\n" not in message and "\0" not in message
    assert len(message) < 400
    assert "519 characters" in message


def test_empty_and_too_long_messages() -> None:
    with pytest.raises(InvalidArgument, match="namespace must not be empty"):
        validate_identifier("", kind="namespace")
    with pytest.raises(InvalidArgument, match="77 characters long"):
        validate_identifier("a" * 77)


def test_invalid_argument_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        validate_identifier("a/b")


@settings(max_examples=400)
@given(st.text(max_size=120))
def test_arbitrary_text_only_raises_invalid_argument(value: str) -> None:
    try:
        result = validate_identifier(value)
    except InvalidArgument:
        assert not is_valid_identifier(value)
        return
    assert result == value
    assert is_valid_identifier(value)
    assert "/" not in value and "\0" not in value
    assert not value.startswith(".")
    assert 0 < len(value) <= MAX_IDENTIFIER_LENGTH
    assert value.isascii() and value[0].isalnum() and value[-1].isalnum()


@settings(max_examples=200)
@given(st.one_of(st.integers(), st.binary(), st.none(), st.lists(st.text()), st.floats()))
def test_arbitrary_non_str_only_raises_invalid_argument(value: object) -> None:
    with pytest.raises(InvalidArgument):
        validate_identifier(value)


_ALNUM = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    min_size=1,
    max_size=8,
)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.sampled_from("._-"), _ALNUM), max_size=8), _ALNUM)
def test_generated_valid_identifiers_are_accepted(parts: list[tuple[str, str]], head: str) -> None:
    value = head + "".join(sep + run for sep, run in parts)
    if len(value) <= MAX_IDENTIFIER_LENGTH:
        assert validate_identifier(value) == value
    else:
        with pytest.raises(InvalidArgument):
            validate_identifier(value)


@settings(max_examples=300)
@given(st.text(max_size=40), st.text(max_size=40))
def test_slash_nul_and_leading_dot_never_pass(left: str, right: str) -> None:
    for value in (left + "/" + right, left + "\0" + right, "." + left):
        with pytest.raises(InvalidArgument):
            validate_identifier(value)


def test_safe_repr_survives_broken_repr() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("boom")

    assert safe_repr(Broken()) == "<Broken object>"


def test_frozen_mappings_are_read_only_copies() -> None:
    source = {"a": "1"}
    frozen = frozen_str_mapping(source)
    source["a"] = "2"
    assert frozen == {"a": "1"}
    with pytest.raises(TypeError):
        frozen["b"] = "x"  # type: ignore[index]
    with pytest.raises(InvalidArgument):
        frozen_str_mapping({"a": 1})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgument):
        frozen_mapping({1: "a"})  # type: ignore[dict-item]
    assert frozen_mapping(None) == {}


def test_to_utc_converts_and_refuses_naive() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    value = to_utc(dt.datetime(2024, 1, 1, 12, tzinfo=plus_two))
    assert value == dt.datetime(2024, 1, 1, 10, tzinfo=dt.timezone.utc)
    assert value.tzinfo is dt.timezone.utc
    with pytest.raises(InvalidArgument, match="no time zone"):
        to_utc(dt.datetime(2024, 1, 1))
