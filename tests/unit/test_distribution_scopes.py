"""Token scopes are merged per resource, whatever order a registry lists actions in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from libcontainerd.distribution._tokens import merge_scopes

ACTIONS = st.lists(st.sampled_from(["pull", "push", "delete", "*"]), min_size=1, max_size=4)
NAMES = st.sampled_from(["library/busybox", "team/app", "a/b/c"])


def test_actions_in_either_order_give_one_scope() -> None:
    assert merge_scopes(["repository:x:pull", "repository:x:push,pull"]) == [
        "repository:x:pull,push"
    ]
    assert merge_scopes(["repository:x:pull,push"]) == merge_scopes(["repository:x:push,pull"])


def test_resources_stay_apart_and_odd_scopes_are_kept() -> None:
    merged = merge_scopes(["repository:a:pull", "repository:b:push", "registry:catalog:*", "odd"])
    assert merged == ["odd", "registry:catalog:*", "repository:a:pull", "repository:b:push"]


@given(st.lists(st.tuples(NAMES, ACTIONS), min_size=1, max_size=6), st.randoms())
def test_merge_is_order_independent_and_keeps_every_action(
    entries: list[tuple[str, list[str]]], random: object
) -> None:
    scopes = [f"repository:{name}:{','.join(actions)}" for name, actions in entries]
    shuffled = list(scopes)
    random.shuffle(shuffled)  # type: ignore[attr-defined]
    merged = merge_scopes(scopes)
    assert merged == merge_scopes(shuffled)
    by_name = {s.rsplit(":", 1)[0]: set(s.rsplit(":", 1)[1].split(",")) for s in merged}
    assert len(by_name) == len(merged)
    for name, actions in entries:
        assert set(actions) <= by_name[f"repository:{name}"]
