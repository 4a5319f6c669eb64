"""The Windows spec defaults, checked against the OCI runtime-spec JSON schema.

The schema is the one Debian's golang-github-opencontainers-specs-dev ships; the Linux
default spec is validated the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libcontainerd.errors import InvalidArgument
from libcontainerd.oci import generate_spec, with_env, with_process_args
from libcontainerd.oci.windows import (
    DEFAULT_WINDOWS_CWD,
    generate_windows_spec,
    with_layer_folders,
    with_network_namespace,
)

SCHEMA_DIR = Path("/usr/share/gocode/src/github.com/opencontainers/runtime-spec/schema")
LAYERS = [
    r"C:\ProgramData\containerd\snapshots\1",
    r"C:\ProgramData\containerd\snapshots\2",
    r"C:\ProgramData\containerd\snapshots\scratch",
]
NETNS = "5f0d4b2c-1a2b-4c3d-8e9f-0a1b2c3d4e5f"
VOLUME = "\\\\?\\Volume{0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9}\\"


@pytest.fixture(scope="module")
def validator() -> Any:
    """A draft-04 validator of config.json with the schema's sibling files resolvable."""
    if not (SCHEMA_DIR / "config-schema.json").is_file():
        pytest.skip("install golang-github-opencontainers-specs-dev for the OCI schema")
    from jsonschema import Draft4Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    registry = Registry().with_resources(
        (path.name, Resource.from_contents(json.loads(path.read_text()), DRAFT4))
        for path in SCHEMA_DIR.glob("*.json")
    )
    schema = json.loads((SCHEMA_DIR / "config-schema.json").read_text())
    return Draft4Validator(schema, registry=registry)


def _errors(validator: Any, spec: dict[str, Any]) -> list[str]:
    return [f"{list(error.path)}: {error.message}" for error in validator.iter_errors(spec)]


def test_hyperv_default_validates(validator: Any) -> None:
    spec = generate_windows_spec(
        with_process_args("cmd", "/c", "echo hi"), layer_folders=LAYERS, network_namespace=NETNS
    )
    assert _errors(validator, spec) == []
    assert "linux" not in spec
    assert "mounts" not in spec
    assert "root" not in spec  # Hyper-V isolation: the runtime spec forbids it
    assert spec["windows"]["hyperv"] == {}
    assert spec["windows"]["layerFolders"] == LAYERS
    assert spec["windows"]["network"]["networkNamespace"] == NETNS
    assert spec["process"]["cwd"] == DEFAULT_WINDOWS_CWD


def test_process_isolation_validates(validator: Any) -> None:
    spec = generate_windows_spec(
        with_env(["A=1"]), layer_folders=LAYERS, isolation="process", root_path=VOLUME
    )
    assert _errors(validator, spec) == []
    assert spec["root"]["path"] == VOLUME
    assert "hyperv" not in spec["windows"]


def test_schema_catches_a_broken_windows_spec(validator: Any) -> None:
    """The check can fail: an empty layer list breaks the schema's minItems."""
    spec = generate_windows_spec(layer_folders=LAYERS)
    spec["windows"]["layerFolders"] = []
    assert _errors(validator, spec)


def test_linux_default_validates(validator: Any) -> None:
    spec = generate_spec(with_process_args("true"), container_id="c1", namespace="default")
    assert _errors(validator, spec) == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"layer_folders": []}, "non-empty"),
        ({"layer_folders": LAYERS, "isolation": "vm"}, "isolation"),
        ({"layer_folders": LAYERS, "isolation": "process"}, "root_path"),
        ({"layer_folders": LAYERS, "root_path": VOLUME}, "must not set root_path"),
        ({"layer_folders": ["relative\\dir"]}, "absolute Windows path"),
        ({"layer_folders": ["/linux/path"]}, "absolute Windows path"),
        ({"layer_folders": LAYERS, "network_namespace": "not-a-guid"}, "GUID"),
    ],
)
def test_bad_arguments_are_refused(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        generate_windows_spec(**arguments)


_segment = st.text(
    st.characters(codec="ascii", categories=("L", "N"), include_characters="._- "),
    min_size=1,
    max_size=12,
)


@given(drive=st.sampled_from("CDEZcdez"), parts=st.lists(_segment, max_size=5))
def test_drive_paths_are_accepted(drive: str, parts: list[str]) -> None:
    path = f"{drive}:\\" + "\\".join(parts)
    spec = generate_windows_spec(with_layer_folders([path]), layer_folders=[path])
    assert spec["windows"]["layerFolders"] == [path]


@given(path=st.text(max_size=30).filter(lambda text: text[1:3] != ":\\"))
def test_paths_without_a_drive_or_volume_are_refused(path: str) -> None:
    if path.startswith("\\\\?\\"):
        return
    with pytest.raises(InvalidArgument):
        with_layer_folders([path])


@given(guid=st.uuids(), braces=st.booleans(), upper=st.booleans())
def test_network_namespace_ids_are_normalised(guid: Any, braces: bool, upper: bool) -> None:
    text = str(guid).upper() if upper else str(guid)
    spec: dict[str, Any] = {}
    with_network_namespace(f"{{{text}}}" if braces else text)(spec)
    assert spec["windows"]["network"]["networkNamespace"] == str(guid)
