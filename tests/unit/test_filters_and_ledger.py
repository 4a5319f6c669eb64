"""The shared containerd filter matcher, and the exit ledger's exactly-once rules."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcontainerd.errors import InvalidArgument
from libcontainerd.filters import matches_filters, parse_filter
from libcontainerd.remote._reconcile import ExitLedger, event_lookup
from libcontainerd.types.events import Event, EventType

_field = st.from_regex(r"[a-z][a-z0-9_.]{0,15}", fullmatch=True)
_value = st.from_regex(r"[A-Za-z0-9_/.:-]{0,20}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(_field, _value, max_size=4), key=_field, value=_value)
def test_equality_and_presence_match_like_containerd(
    fields: dict[str, str], key: str, value: str
) -> None:
    lookup = fields.get
    assert matches_filters([f'{key}=="{value}"'], lookup) == (fields.get(key) == value)
    assert matches_filters([f"{key}!={value}"], lookup) == (fields.get(key) != value)
    assert matches_filters([key], lookup) == (key in fields)
    # Clauses of one filter are AND-ed, filters are OR-ed.
    both = matches_filters([f"{key}=={value},{key}"], lookup)
    assert both == (fields.get(key) == value)
    either = matches_filters([f"{key}=={value}", key], lookup)
    assert either == (key in fields)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=40))
def test_any_text_parses_or_is_invalid_argument(text: str) -> None:
    try:
        clauses = parse_filter(text)
    except InvalidArgument:
        return
    for key, op, _ in clauses:
        assert key and op in ("", "==", "!=", "~=")


def test_bad_regexp_and_single_string_are_invalid() -> None:
    with pytest.raises(InvalidArgument, match="regular expression"):
        matches_filters(["topic~=("], lambda _key: "x")
    with pytest.raises(InvalidArgument, match="sequence"):
        matches_filters("topic==x", lambda _key: "x")


def _exit(cid: str, pid: int, code: int, exec_id: str = "", *, rebuilt: bool = False) -> Event:
    return Event(
        type=EventType.TASK_EXIT,
        namespace="ns",
        container_id=cid,
        process_id=exec_id,
        pid=pid,
        exit_code=code,
        reconstructed=rebuilt,
    )


def test_ledger_admits_each_exit_once() -> None:
    ledger = ExitLedger("ns", dt.datetime.now(dt.timezone.utc))
    start = Event(type=EventType.TASK_START, namespace="ns", container_id="c", pid=7)
    assert ledger.admit(start)
    assert ledger.admit(_exit("c", 7, 3))
    assert not ledger.admit(_exit("c", 7, 3))  # a shim's re-send
    assert ledger.admit(_exit("c", 8, 3))  # the next task of the same container
    assert ledger.admit(_exit("c", 9, 0, "e1"))
    delete = Event(type=EventType.TASK_DELETE, namespace="ns", container_id="c", pid=8)
    assert ledger.admit(delete) and not ledger.admit(delete)


@settings(max_examples=100, deadline=None)
@given(
    exits=st.lists(
        st.tuples(st.sampled_from("abc"), st.integers(1, 5), st.integers(0, 255)), max_size=30
    )
)
def test_ledger_never_admits_a_duplicate(exits: list[tuple[str, int, int]]) -> None:
    ledger = ExitLedger("ns", dt.datetime.now(dt.timezone.utc))
    admitted = [(cid, pid) for cid, pid, code in exits if ledger.admit(_exit(cid, pid, code))]
    assert len(admitted) == len(set(admitted)) == len({(c, p) for c, p, _ in exits})


def test_event_lookup_knows_containerd_fields() -> None:
    event = _exit("c1", 42, 5, rebuilt=True)
    lookup = event_lookup(event)
    assert matches_filters(['topic=="/tasks/exit",event.container_id=="c1"'], lookup)
    assert matches_filters(["namespace==ns,exit_status==5,event.pid==42"], lookup)
    assert not matches_filters(['event.container_id=="c2"'], lookup)
    assert event.reconstructed
