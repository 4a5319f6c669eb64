"""``Reference.parse`` against a model of docker's ``ParseNormalizedNamed`` (the grammar in
containerd's ``reference/docker`` package), on the inputs where hand-written parsers drift:
components with '.', leading '_' or '-', long components, first elements that look like a
host but are not."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from libcontainerd.errors import InvalidArgument
from libcontainerd.types.reference import Reference

# The grammar, transcribed from the upstream regular expressions.
_ALNUM = r"[a-z0-9]+"
# Upstream writes the dash run as [-]*; an empty separator only splits an alphanumeric run,
# so -+ is the same language without the exponential backtracking of Python's engine.
_SEPARATOR = r"(?:[._]|__|-+)"
_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
_REFERENCE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?")
_ANCHORED_NAME = re.compile(rf"(?:({_DOMAIN})/)?({_COMPONENT}(?:/{_COMPONENT})*)")
DIGEST = "sha256:" + "a" * 64


def _upstream(text: str) -> tuple[str, str, str] | None:
    """(name, tag, digest) as docker normalises ``text``, or None when it refuses it."""
    if re.fullmatch(r"[a-f0-9]{64}", text):
        return None
    slash = text.find("/")
    if slash == -1 or (not any(c in text[:slash] for c in ".:") and text[:slash] != "localhost"):
        domain, remainder = "docker.io", text
    else:
        domain, remainder = text[:slash], text[slash + 1 :]
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in remainder:
        remainder = "library/" + remainder
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        return None
    match = _REFERENCE.fullmatch(f"{domain}/{remainder}")
    if match is None or len(match.group(1)) > 255:
        return None
    name, tag, digest = match.group(1), match.group(2) or "", match.group(3) or ""
    if digest and digest != DIGEST:
        return None  # only the one digest the strategy makes is in the model's scope
    return name, tag, digest


def _ours(text: str) -> tuple[str, str, str] | None:
    try:
        ref = Reference.parse(text)
    except InvalidArgument:
        return None
    tag = "" if ref.tag == "latest" and not re.search(r":latest(@|$)", text) else ref.tag
    return ref.name, tag, ref.digest


_pieces = st.sampled_from(
    [
        "a",
        "b0",
        "_",
        "__",
        "-",
        "--",
        ".",
        "x.y",
        "my_registry.com",
        "localhost",
        "docker.io",
        "index.docker.io",
        "A",
        "5000",
        ":",
        "/",
        "Reg.Example.com",
    ]
)
_text = st.lists(_pieces, min_size=1, max_size=8).map("".join)


@settings(max_examples=400)
@given(text=_text, tag=st.sampled_from(["", ":v1", ":_x", ":-x", ":.x"]), digest=st.booleans())
@example(text="my_registry.com/team", tag="", digest=False)
@example(text="my_registry.com:5000/team", tag="", digest=False)
@example(text="a/_b", tag="", digest=False)
@example(text="a/b.c_d--e", tag="", digest=False)
@example(text="x" * 100 + "/" + "y" * 100, tag="", digest=False)
@example(text="a" * 256, tag="", digest=False)
def test_parse_agrees_with_upstream(text: str, tag: str, digest: bool) -> None:
    full = text + tag + (f"@{DIGEST}" if digest else "")
    assert _ours(full) == _upstream(full), full


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("my_registry.com/team", "my_registry.com/team"),
        ("my_registry.com/team/app:v1", "my_registry.com/team/app"),
        ("a" * 100 + "/b", "docker.io/" + "a" * 100 + "/b"),
    ],
)
def test_upstream_accepted_examples(text: str, name: str) -> None:
    assert Reference.parse(text).name == name


@pytest.mark.parametrize(
    "text", ["my_registry.com:5000/team", "_a/b", "a/-b", "a/b.", "My_registry.com/team"]
)
def test_upstream_refused_examples(text: str) -> None:
    with pytest.raises(InvalidArgument):
        Reference.parse(text)
