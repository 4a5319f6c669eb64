"""Tests for image reference parsing and normalisation."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from libcontainerd.errors import InvalidArgument
from libcontainerd.types.reference import MAX_NAME_LENGTH, Reference

D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "0123456789abcdef" * 4
D512 = "sha512:" + "b" * 128

# (input, domain, path, tag, digest, str, familiar)
VALID = [
    (
        "busybox",
        "docker.io",
        "library/busybox",
        "latest",
        "",
        "docker.io/library/busybox:latest",
        "busybox:latest",
    ),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", "", None, "busybox:1.36"),
    ("library/busybox", "docker.io", "library/busybox", "latest", "", None, "busybox:latest"),
    ("docker.io/busybox", "docker.io", "library/busybox", "latest", "", None, "busybox:latest"),
    (
        "index.docker.io/library/busybox:x",
        "docker.io",
        "library/busybox",
        "x",
        "",
        "docker.io/library/busybox:x",
        "busybox:x",
    ),
    (
        "user/app",
        "docker.io",
        "user/app",
        "latest",
        "",
        "docker.io/user/app:latest",
        "user/app:latest",
    ),
    ("docker.io/library/a/b", "docker.io", "library/a/b", "latest", "", None, "library/a/b:latest"),
    (
        "localhost/app",
        "localhost",
        "app",
        "latest",
        "",
        "localhost/app:latest",
        "localhost/app:latest",
    ),
    (
        "localhost:5000/a/b:t",
        "localhost:5000",
        "a/b",
        "t",
        "",
        "localhost:5000/a/b:t",
        "localhost:5000/a/b:t",
    ),
    ("127.0.0.1:5000/app", "127.0.0.1:5000", "app", "latest", "", None, None),
    ("[::1]:5000/app:v1", "[::1]:5000", "app", "v1", "", "[::1]:5000/app:v1", None),
    (
        "registry.example.com/team/svc/api:v1.2-rc_3",
        "registry.example.com",
        "team/svc/api",
        "v1.2-rc_3",
        "",
        None,
        None,
    ),
    ("Registry.Example.COM/app", "Registry.Example.COM", "app", "latest", "", None, None),
    ("example.com:443/app", "example.com:443", "app", "latest", "", None, None),
    (
        f"busybox@{D1}",
        "docker.io",
        "library/busybox",
        "",
        D1,
        f"docker.io/library/busybox@{D1}",
        f"busybox@{D1}",
    ),
    (
        f"busybox:1@{D1}",
        "docker.io",
        "library/busybox",
        "1",
        D1,
        f"docker.io/library/busybox:1@{D1}",
        f"busybox:1@{D1}",
    ),
    (f"localhost:5000/a@{D512}", "localhost:5000", "a", "", D512, None, None),
    ("a_b__c--d/e.f", "docker.io", "a_b__c--d/e.f", "latest", "", None, None),
    ("localhost:5000", "docker.io", "library/localhost", "5000", "", None, "localhost:5000"),
    ("busybox:UPPER_tag", "docker.io", "library/busybox", "UPPER_tag", "", None, None),
    ("busybox:" + "t" * 128, "docker.io", "library/busybox", "t" * 128, "", None, None),
    ("0/1", "docker.io", "0/1", "latest", "", None, "0/1:latest"),
]


@pytest.mark.parametrize(
    ("text", "domain", "path", "tag", "digest", "full", "familiar"),
    VALID,
    ids=[case[0][:40] for case in VALID],
)
def test_valid_references(
    text: str,
    domain: str,
    path: str,
    tag: str,
    digest: str,
    full: str | None,
    familiar: str | None,
) -> None:
    ref = Reference.parse(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert ref.name == f"{domain}/{path}"
    assert ref.locator == ref.name
    if full is not None:
        assert str(ref) == full
    if familiar is not None:
        assert ref.familiar() == familiar
    assert Reference.parse(str(ref)) == ref
    assert Reference.parse(ref.familiar()) == ref


INVALID = [
    ("", "must not be empty"),
    ("Busybox", "must be lowercase"),
    ("docker.io/Library/busybox", "must be lowercase"),
    ("localhost:5000/App:v1", "must be lowercase"),
    ("a//b", "empty component"),
    ("a/", "empty component"),
    ("/a", "empty component"),
    (":tag", "name is empty"),
    ("busybox:", "tag ''"),
    ("busybox:-x", "tag '-x'"),
    ("busybox:.x", "tag '.x'"),
    ("busybox:" + "t" * 129, "tag"),
    ("busybox@", "nothing follows '@'"),
    ("busybox@sha256:abc", "64 hex digits"),
    ("busybox@sha256:" + "A" * 64, "lowercase"),
    ("busybox@sha384:" + "a" * 96, "not supported"),
    ("a" * 64, "image id"),
    ("-busybox", "path component"),
    ("busy..box", "path component"),
    ("busybox_", "path component"),
    ("a b", "path component"),
    ("a\0b", "path component"),
    ("-bad.example.com/app", "registry host"),
    ("example.com:port/app", "registry host"),
    ("a@b@" + D1, "not valid"),
    ("example.com/" + "a" * (MAX_NAME_LENGTH - len("example.com/") + 1), "maximum 255"),
    ("x" * 2000, "characters long"),
]


@pytest.mark.parametrize(("text", "fragment"), INVALID, ids=[c[0][:30] for c in INVALID])
def test_invalid_references(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        Reference.parse(text)
    assert fragment in str(info.value)


@pytest.mark.parametrize("value", [None, 3, b"busybox"])
def test_non_str_reference(value: object) -> None:
    with pytest.raises(InvalidArgument, match="must be a str"):
        Reference.parse(value)  # type: ignore[arg-type]


def test_name_at_limit_is_accepted() -> None:
    path = "a" * (MAX_NAME_LENGTH - len("example.com/"))
    ref = Reference.parse(f"example.com/{path}")
    assert len(ref.name) == MAX_NAME_LENGTH


def test_with_tag_and_digest_keep_the_other_part() -> None:
    ref = Reference.parse("busybox")
    tagged = ref.with_tag("1.36")
    assert str(tagged) == "docker.io/library/busybox:1.36"
    both = tagged.with_digest(D1)
    assert str(both) == f"docker.io/library/busybox:1.36@{D1}"
    assert both.with_tag("x").digest == D1
    assert str(both.without_tag()) == f"docker.io/library/busybox@{D1}"
    assert both.object == f"1.36@{D1}"
    with pytest.raises(InvalidArgument):
        ref.with_tag("bad tag")
    with pytest.raises(InvalidArgument):
        ref.with_digest("sha256:nope")


def test_distribution_source_label() -> None:
    ref = Reference.parse("localhost:5000/team/app:v1")
    assert ref.distribution_source_label() == (
        "containerd.io/distribution.source.localhost:5000",
        "team/app",
    )


def test_direct_construction_validates_but_does_not_normalise() -> None:
    ref = Reference("docker.io", "busybox")
    assert str(ref) == "docker.io/busybox"
    assert ref.familiar_name() == "busybox"
    with pytest.raises(InvalidArgument):
        Reference("", "busybox")
    with pytest.raises(InvalidArgument):
        Reference("docker.io", "Busybox")
    with pytest.raises(InvalidArgument):
        Reference("docker.io", "busybox", tag="a b")
    with pytest.raises(InvalidArgument):
        Reference("docker.io", "busybox", digest="sha256:0")


def test_references_are_hashable_values() -> None:
    assert {Reference.parse("busybox"), Reference.parse("docker.io/library/busybox:latest")} == {
        Reference.parse("busybox")
    }


# ------------------------------------------------------------------ properties


@settings(max_examples=500)
@given(st.text(max_size=300))
def test_arbitrary_text_only_raises_invalid_argument(text: str) -> None:
    try:
        ref = Reference.parse(text)
    except InvalidArgument:
        return
    assert "\0" not in str(ref)
    assert not text.startswith(".")
    assert len(ref.name) <= MAX_NAME_LENGTH
    assert ref.tag or ref.digest
    assert Reference.parse(str(ref)) == ref


_GRAMMAR_CHARS = "abcAB09._-/:@[]"


@settings(max_examples=500)
@given(st.text(alphabet=_GRAMMAR_CHARS, max_size=60))
def test_grammar_like_text_only_raises_invalid_argument(text: str) -> None:
    try:
        ref = Reference.parse(text)
    except InvalidArgument:
        return
    assert Reference.parse(str(ref)) == ref


@settings(max_examples=300)
@given(st.text(max_size=60), st.text(max_size=60))
def test_nul_and_leading_dot_never_pass(left: str, right: str) -> None:
    for text in (left + "\0" + right, "." + left):
        with pytest.raises(InvalidArgument):
            Reference.parse(text)


@settings(max_examples=200)
@given(st.integers(min_value=MAX_NAME_LENGTH + 1, max_value=600))
def test_names_over_the_limit_are_refused(length: int) -> None:
    with pytest.raises(InvalidArgument):
        Reference.parse("example.com/" + "a" * (length - len("example.com/")))


_alnum_lower = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6)
_separator = st.sampled_from([".", "_", "__", "-", "--"])


@st.composite
def _components(draw: st.DrawFn) -> str:
    head = draw(_alnum_lower)
    rest = draw(st.lists(st.tuples(_separator, _alnum_lower), max_size=3))
    return head + "".join(sep + run for sep, run in rest)


_label = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,6}[A-Za-z0-9])?", fullmatch=True)


@st.composite
def _domains(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["dotted", "localhost", "ipv6", "port"]))
    if kind == "localhost":
        host = "localhost"
    elif kind == "ipv6":
        host = "[" + draw(st.sampled_from(["::1", "fe80::1", "2001:db8::2"])) + "]"
    else:
        host = ".".join(draw(st.lists(_label, min_size=2, max_size=3)))
    if kind in ("port", "ipv6", "localhost") and draw(st.booleans()):
        host += f":{draw(st.integers(1, 65535))}"
    return host


_tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_digests = st.one_of(
    st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map("sha256:".__add__),
    st.text(alphabet="0123456789abcdef", min_size=128, max_size=128).map("sha512:".__add__),
)


@st.composite
def _references(draw: st.DrawFn) -> Reference:
    domain = draw(_domains())
    path = "/".join(draw(st.lists(_components(), min_size=1, max_size=4)))
    assume(len(domain) + 1 + len(path) <= MAX_NAME_LENGTH)
    # parse() folds these into docker.io and adds "library/": not a stored form.
    assume(domain.lower() not in ("docker.io", "index.docker.io"))
    tag = draw(st.one_of(st.just(""), _tags))
    digest = draw(st.one_of(st.just(""), _digests))
    if not tag and not digest:
        tag = "latest"
    return Reference(domain, path, tag, digest)


@settings(max_examples=400)
@given(_references())
def test_parse_str_round_trip(ref: Reference) -> None:
    assert Reference.parse(str(ref)) == ref


@settings(max_examples=300)
@given(_references())
def test_docker_hub_familiar_round_trip(ref: Reference) -> None:
    first = ref.path.split("/")[0]
    # A familiar name whose first part looks like a host is read as a registry, by docker too.
    assume("." not in first and first != "localhost")
    hub = Reference("docker.io", ref.path, ref.tag, ref.digest)
    if "/" not in hub.path:
        hub = Reference("docker.io", "library/" + hub.path, ref.tag, ref.digest)
    assert Reference.parse(hub.familiar()) == hub
    assert Reference.parse(str(hub)) == hub
