"""Spec validation at the boundary, the spec-plus-image rule, and the spec options that
follow containerd: with_privileged's bounding set, with_mounts' required fields."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libcontainerd.errors import InvalidArgument, Unavailable
from libcontainerd.oci import (
    ALL_CAPABILITIES,
    DEFAULT_PATH_ENV,
    MAX_SPEC_DEPTH,
    bounding_capabilities,
    generate_spec,
    spec_with_image,
    validate_process,
    validate_spec,
    with_mounts,
    with_privileged,
    with_process_args,
    with_uid_gid,
)

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)
_anything = st.recursive(
    _json | st.binary(max_size=3) | st.sets(st.integers(), max_size=2) | st.just(object()),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=6) | st.integers(), inner, max_size=3)
        | st.tuples(inner)
    ),
    max_leaves=20,
)
_KEYS = ["process", "root", "mounts", "linux", "hostname", "annotations", "hooks", "x"]


@given(st.dictionaries(st.sampled_from(_KEYS), _anything, max_size=5))
def test_random_specs_are_accepted_as_json_or_refused_typed(spec: dict[str, Any]) -> None:
    try:
        checked = validate_spec(spec)
    except InvalidArgument:
        return
    json.dumps(checked, allow_nan=False)  # what is accepted is JSON data
    assert isinstance(checked["process"], dict)


@given(_anything)
def test_random_process_values_are_typed(process: Any) -> None:
    spec = generate_spec(with_process_args("true"))
    spec["process"]["user"] = process
    try:
        validate_spec(spec)
    except InvalidArgument as error:
        assert "process.user" in str(error)


@given(_anything)
def test_random_exec_processes_are_typed(process: Any) -> None:
    try:
        checked = validate_process(process)
    except InvalidArgument:
        return
    assert checked["args"] and all(isinstance(a, str) for a in checked["args"])


def test_deep_nesting_is_refused_without_recursion_error() -> None:
    deep: Any = {}
    for _ in range(100_000):
        deep = {"a": deep}
    spec = generate_spec(with_process_args("true"))
    spec["annotations_extra"] = deep
    with pytest.raises(InvalidArgument, match="nested more than"):
        validate_spec(spec)
    shallow = generate_spec(with_process_args("true"))
    nested: Any = "x"
    for _ in range(MAX_SPEC_DEPTH - 2):
        nested = [nested]
    shallow["x"] = nested
    validate_spec(shallow)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("process",), "sh", "process"),
        (("process", "user", "uid"), "0", "process.user.uid"),
        (("process", "args"), "sh -c x", "process.args"),
        (("process", "terminal"), 1, "process.terminal"),
        (("linux", "resources", "memory"), {"limit": "1g"}, "linux.resources.memory.limit"),
        (("mounts",), [{"destination": 5}], "mounts[0].destination"),
        (("x",), float("nan"), "x"),
        (("x",), 2**70, "x"),
    ],
)
def test_wrong_types_name_the_field(path: tuple[str, ...], value: Any, field: str) -> None:
    spec = generate_spec(with_process_args("true"))
    target = spec
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(InvalidArgument) as caught:
        validate_spec(spec)
    assert field in str(caught.value)


# ------------------------------------------------------------------ spec plus image

IMAGE = {"config": {"Env": ["PATH=/opt/bin", "FOO=bar"], "WorkingDir": "/tmp", "Cmd": ["sh"]}}


def test_image_fills_what_the_spec_leaves_at_defaults() -> None:
    spec = generate_spec()
    result = spec_with_image(spec, IMAGE, root_path="rootfs")
    process = result["process"]
    assert process["args"] == ["sh"]
    assert process["env"] == ["PATH=/opt/bin", "FOO=bar"]
    assert process["cwd"] == "/tmp"
    assert result["root"]["path"] == "rootfs"
    assert spec["process"]["args"] == []  # the caller's spec is not modified


def test_what_the_spec_sets_wins_over_the_image() -> None:
    spec = generate_spec(with_process_args("echo", "hi"), with_uid_gid(1000, 1000))
    spec["process"]["env"] = [DEFAULT_PATH_ENV, "FOO=mine"]
    spec["process"]["cwd"] = "/var"
    config = {"config": {**IMAGE["config"], "User": "2000"}}
    process = spec_with_image(spec, config, root_path="/r")["process"]
    assert process["args"] == ["echo", "hi"]
    assert process["env"] == ["PATH=/opt/bin", "FOO=mine"]
    assert process["cwd"] == "/var"
    assert process["user"]["uid"] == 1000


def test_image_user_applies_to_a_root_spec() -> None:
    config = {"config": {"User": "2000:3000"}}
    process = spec_with_image(generate_spec(), config, root_path="rootfs")["process"]
    assert (process["user"]["uid"], process["user"]["gid"]) == (2000, 3000)


# ------------------------------------------------------------------ options as containerd


def test_privileged_grants_the_bounding_set() -> None:
    spec = generate_spec(with_privileged())
    caps = spec["process"]["capabilities"]
    assert caps["bounding"] == bounding_capabilities()
    assert set(caps["bounding"]) <= set(ALL_CAPABILITIES)
    for mount in spec["mounts"]:
        if mount["type"] in ("sysfs", "cgroup"):
            assert "ro" not in mount["options"]
    assert spec["linux"]["maskedPaths"] == [] and "seccomp" not in spec["linux"]


def test_bounding_capabilities_reads_capbnd(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000501\n")
    assert bounding_capabilities(status) == ["CAP_CHOWN", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE"]
    status.write_text("Name:\tx\n")
    with pytest.raises(Unavailable):
        bounding_capabilities(status)
    with pytest.raises(Unavailable):
        bounding_capabilities(tmp_path / "missing")


@pytest.mark.parametrize(
    "mount",
    [
        {"destination": "/data", "source": "/srv"},
        {"destination": "/data", "type": "bind"},
        {"destination": "/data", "type": "", "source": "/srv"},
    ],
)
def test_mounts_need_type_and_source(mount: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument, match="has no"):
        with_mounts([mount])


def test_spec_with_image_leaves_the_callers_spec_alone() -> None:
    """The completed spec is built from copies of every dict and list of the caller's."""
    spec = generate_spec(with_process_args("sh"))
    before = json.loads(json.dumps(spec))
    result = spec_with_image(spec, IMAGE, root_path="rootfs")
    result["process"]["env"].append("EXTRA=1")
    result["linux"]["maskedPaths"].append("/x")
    result["mounts"][0]["options"].append("ro")
    assert spec == before
