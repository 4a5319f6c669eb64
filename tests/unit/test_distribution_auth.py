"""WWW-Authenticate parsing and the bearer token cache."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcontainerd.distribution import Challenge, TokenCache, parse_www_authenticate
from libcontainerd.errors import InvalidArgument


def test_bearer_challenge() -> None:
    (challenge,) = parse_www_authenticate(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:team/app:pull,push"'
    )
    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.example.com/token"
    assert challenge.service == "registry.example.com"
    assert challenge.scope == "repository:team/app:pull,push"


def test_basic_challenge_and_case() -> None:
    (challenge,) = parse_www_authenticate('BASIC Realm="basic-realm"')
    assert challenge == Challenge("basic", {"realm": "basic-realm"})


def test_several_challenges_spaces_and_escapes() -> None:
    header = (
        'Basic realm="a \\"quoted\\" realm" , Bearer  realm = "https://r/t" ,'
        " service=svc, error=insufficient_scope"
    )
    basic, bearer = parse_www_authenticate(header)
    assert basic.realm == 'a "quoted" realm'
    assert bearer.realm == "https://r/t"
    assert bearer.service == "svc"
    assert bearer.params["error"] == "insufficient_scope"


def test_token68_and_bare_scheme() -> None:
    negotiate, basic = parse_www_authenticate("Negotiate abc/def==, Basic")
    assert negotiate.scheme == "negotiate" and negotiate.token68 == "abc/def=="
    assert basic == Challenge("basic")


def test_first_duplicate_parameter_wins() -> None:
    (challenge,) = parse_www_authenticate('Bearer realm="one", realm="two"')
    assert challenge.realm == "one"


@pytest.mark.parametrize(
    "header",
    [
        'Bearer realm="unterminated',
        'Bearer realm=,service="x"',
        '"quoted-scheme"',
        "Bearer realm=a b=c",
        "Bear(er realm=x",
        "x" * 20_000,
    ],
)
def test_malformed_headers_are_invalid_argument(header: str) -> None:
    with pytest.raises(InvalidArgument, match="WWW-Authenticate"):
        parse_www_authenticate(header)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_parser_never_raises_anything_else(header: str) -> None:
    try:
        challenges = parse_www_authenticate(header)
    except InvalidArgument:
        return
    for challenge in challenges:
        assert challenge.scheme == challenge.scheme.lower()


_TOKEN = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-._~+", min_size=1, max_size=12
)
_VALUE = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30
)


@settings(max_examples=300, deadline=None)
@given(scheme=_TOKEN, params=st.dictionaries(_TOKEN, _VALUE, min_size=1, max_size=5))
def test_round_trip_of_quoted_parameters(scheme: str, params: dict[str, str]) -> None:
    lowered: dict[str, str] = {}
    for key, value in params.items():
        lowered.setdefault(key.lower(), value)

    def quote(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    header = f"{scheme} " + ", ".join(f"{k}={quote(v)}" for k, v in params.items())
    (challenge,) = parse_www_authenticate(header)
    assert challenge.scheme == scheme.lower()
    assert dict(challenge.params) == lowered


def test_token_cache_expiry_and_keys() -> None:
    cache = TokenCache()
    cache.put("realm", "svc", "repository:a:pull", "t1", 60)
    assert cache.get("realm", "svc", "repository:a:pull") == "t1"
    assert cache.get("realm", "svc", "repository:b:pull") is None
    assert cache.get("other", "svc", "repository:a:pull") is None
    cache.put("realm", "svc", "short", "t2", 0.01)
    time.sleep(0.02)
    assert cache.get("realm", "svc", "short") is None
    cache.clear()
    assert cache.get("realm", "svc", "repository:a:pull") is None
