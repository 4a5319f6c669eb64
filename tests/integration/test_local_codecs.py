"""The local backend's file formats and filters, without containers (no root needed)."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcontainerd.errors import InvalidArgument
from libcontainerd.local._events import EventLog, LocalEventStream
from libcontainerd.local._monitor_protocol import control_address, read_exit, write_json_atomic
from libcontainerd.local._store import Layout, matches_filters
from libcontainerd.types.events import EventType

TEXT = st.text(alphabet=string.ascii_letters + string.digits + "._-/: ", min_size=1, max_size=20)
KEY = st.text(alphabet=string.ascii_letters + string.digits + "._-/", min_size=1, max_size=12)
LABELS = st.dictionaries(KEY, TEXT.map(str.strip).filter(bool), max_size=5)


@settings(max_examples=300)
@given(labels=LABELS, key=KEY, value=TEXT.map(str.strip).filter(bool))
def test_label_filter_matches_exactly_equal_values(
    labels: dict[str, str], key: str, value: str
) -> None:
    def lookup(field: str) -> str | None:
        return labels.get(field[len("labels.") :]) if field.startswith("labels.") else None

    assert matches_filters([f'labels."{key}"=={value}'], lookup) == (labels.get(key) == value)
    assert matches_filters([f"labels.{key}!={value}"], lookup) == (labels.get(key) != value)
    assert matches_filters([f"labels.{key}"], lookup) == (key in labels)
    # Filters are OR-ed, clauses inside one filter AND-ed.
    assert matches_filters(["labels.__none__", f"labels.{key}"], lookup) == (key in labels)
    assert not matches_filters([f"labels.{key},labels.__none__"], lookup)


def test_filter_errors_are_invalid_argument() -> None:
    with pytest.raises(InvalidArgument):
        matches_filters(["id~=("], lambda _k: "x")
    with pytest.raises(InvalidArgument):
        matches_filters("id==x", lambda _k: "x")
    with pytest.raises(InvalidArgument):
        matches_filters(["==x"], lambda _k: "x")


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from([EventType.TASK_START, EventType.TASK_EXIT, EventType.TASK_DELETE]),
            st.from_regex(r"[a-z0-9][a-z0-9-]{0,15}", fullmatch=True),
            st.integers(min_value=0, max_value=255),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_events_round_trip_in_order(
    tmp_path_factory: pytest.TempPathFactory, events: list[tuple[EventType, str, int]]
) -> None:
    path = tmp_path_factory.mktemp("events") / "ns.jsonl"
    log = EventLog(str(path), "ns")
    log.publish("/tasks/start", container_id="before-subscription")
    with LocalEventStream(str(path)) as stream:
        for kind, container_id, code in events:
            log.publish(kind.topic, container_id=container_id, exit_code=code)
        got = [stream.poll(1) for _ in events]
        assert stream.poll(0) is None
    assert [(e.type, e.container_id, e.exit_code) for e in got if e] == events
    assert all(e is not None and e.namespace == "ns" for e in got)


def test_event_filters_and_partial_lines(tmp_path: Path) -> None:
    path = tmp_path / "ns.jsonl"
    log = EventLog(str(path), "ns")
    with LocalEventStream(str(path), ["topic==/tasks/exit,container_id==b"]) as stream:
        log.publish("/tasks/exit", container_id="a", exit_code=1)
        with open(path, "ab") as f:  # a writer caught mid-line must not break readers
            f.write(b'{"topic": "/tasks/exit", "container_id": "b"')
            f.flush()
            assert stream.poll(0.05) is None
            f.write(b', "exit_code": 2}\n')
        event = stream.poll(1)
    assert event is not None and event.container_id == "b" and event.exit_code == 2


@settings(max_examples=200)
@given(code=st.integers(min_value=0, max_value=255), pid=st.integers(min_value=1))
def test_exit_record_round_trip(
    tmp_path_factory: pytest.TempPathFactory, code: int, pid: int
) -> None:
    directory = tmp_path_factory.mktemp("exit")
    assert read_exit(str(directory)) is None
    record = {"code": code, "pid": pid, "exited_at": "2026-01-01T00:00:00+00:00"}
    write_json_atomic(str(directory / "exit.json"), record)
    assert read_exit(str(directory)) == record
    assert [p.name for p in directory.iterdir()] == ["exit.json"]  # no temp files left
    assert json.loads((directory / "exit.json").read_text()) == record


@settings(max_examples=300)
@given(
    a=KEY.filter(lambda s: "/" not in s and "." not in s),
    b=KEY.filter(lambda s: "/" not in s and "." not in s),
)
def test_control_addresses_are_abstract_and_distinct(a: str, b: str) -> None:
    first, second = control_address("/x/" + a), control_address("/x/" + b)
    assert first.startswith(b"\0") and len(first) < 108
    assert (first == second) == (a == b)


def test_layout_separates_namespaces_and_rejects_bad_ids(tmp_path: Path) -> None:
    one = Layout(tmp_path / "root", tmp_path / "state", "one")
    two = Layout(tmp_path / "root", tmp_path / "state", "two")
    assert one.container_dir("c") != two.container_dir("c")
    assert one.task_dir("c") != two.task_dir("c")
    assert one.runtime_root("runc") != two.runtime_root("runc")
    assert one.runtime_root("/opt/x/runc") != one.runtime_root("runc")
    for bad in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(InvalidArgument):
            one.container_dir(bad)
    with pytest.raises(InvalidArgument):
        Layout(tmp_path / "root", tmp_path / "state", "../escape")
