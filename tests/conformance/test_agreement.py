"""Behaviour both backends must agree on: spec plus image, event callbacks that raise, and
hostile spec input staying a typed error (sync and async, every backend)."""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from conformance_support import Env, unique_id
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libcontainerd.errors import Error
from libcontainerd.oci import (
    DEFAULT_PATH_ENV,
    generate_spec,
    with_cwd,
    with_env,
    with_privileged,
    with_process_args,
)
from libcontainerd.types.stdio import PipedIO

PRINT_ENV_AND_CWD = ("sh", "-c", 'echo "FOO=$FOO"; pwd')


@pytest.fixture
def image_name(client: Any, tmp_path: Path) -> str:
    """An image with ``Env FOO=bar`` and ``WorkingDir /tmp`` imported into the client."""
    from libcontainerd.testing.image_builder import (
        ImageConfigSpec,
        build_image,
        write_layout_archive,
    )

    name = f"example.com/agree/env-{secrets.token_hex(4)}:v1"
    config = ImageConfigSpec(env=(DEFAULT_PATH_ENV, "FOO=bar"), working_dir="/tmp")
    build_image(tmp_path / "oci", config=config, ref_name=name)
    archive = write_layout_archive(tmp_path / "oci", tmp_path / "image.tar")
    (image,) = client.images.import_archive(archive)
    return str(image.name)


def _output(env: Env, client: Any, image: str, *opts: Any) -> bytes:
    cid = unique_id()
    spec = generate_spec(*opts, container_id=cid, namespace=env.namespace)
    options = env.backend.runtime_options or None
    container = client.new_container(cid, spec, image=image, runtime_options=options)
    task = container.new_task(stdio=PipedIO(stdin=False))
    task.start()
    out = bytes(task.io.stdout.read())
    assert task.wait(timeout=30).code == 0
    task.delete()
    container.delete()
    return out


def test_spec_plus_image_image_fills_the_defaults(env: Env, client: Any, image_name: str) -> None:
    """The image's env and working directory fill what the spec leaves at its defaults."""
    out = _output(env, client, image_name, with_process_args(*PRINT_ENV_AND_CWD))
    assert out == b"FOO=bar\n/tmp\n"


def test_spec_plus_image_spec_wins_where_set(env: Env, client: Any, image_name: str) -> None:
    """What the spec sets itself (env, cwd) wins over the image."""
    out = _output(
        env,
        client,
        image_name,
        with_process_args(*PRINT_ENV_AND_CWD),
        with_env({"FOO": "mine"}),
        with_cwd("/var"),
    )
    assert out == b"FOO=mine\n/var\n"


def test_privileged_container_gets_the_callers_bounding_set(env: Env, client: Any) -> None:
    """with_privileged() runs on this host and grants exactly the caller's bounding set."""
    container = env.container(
        client, with_process_args("sh", "-c", "grep CapBnd /proc/self/status"), with_privileged()
    )
    task = container.new_task(stdio=PipedIO(stdin=False))
    task.start()
    out = bytes(task.io.stdout.read()).decode()
    assert task.wait(timeout=30).code == 0
    task.delete()
    container.delete()
    host = next(
        line
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("CapBnd")
    )
    assert out.split() == host.split()


def test_on_event_callback_error_is_logged_and_does_not_end_it(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """A raising callback is logged with its event, and later events still arrive."""
    caplog.set_level(logging.ERROR, logger="libcontainerd")
    seen: list[Any] = []
    failed: list[str] = []

    def callback(event: Any) -> None:
        seen.append(event)
        if not failed and event.container_id:
            failed.append(event.container_id)
            raise RuntimeError("callback failure on purpose")

    client = env.new_client(on_event=callback)
    deadline = time.monotonic() + 20
    # The remote subscription starts asynchronously: create containers until it delivers.
    while not failed and time.monotonic() < deadline:
        env.container(client, with_process_args("true"))
        time.sleep(0.3)
    assert failed, "no event reached the callback"
    last = env.container(client, with_process_args("true"))
    while time.monotonic() < deadline and not any(e.container_id == last.id for e in seen):
        time.sleep(0.05)
    assert any(e.container_id == last.id for e in seen), "the subscription ended"
    records = [r for r in caplog.records if r.exc_info and "on_event" in r.getMessage()]
    assert records, "the callback's exception was not logged"
    assert failed[0] in records[0].getMessage()
    assert "callback failure on purpose" in str(records[0].exc_info[1])


# ------------------------------------------------------------------ hostile specs

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
_anything = _json | st.sets(st.integers(), max_size=2) | st.binary(max_size=4) | st.just(object())
_PATHS = [
    (),
    ("process",),
    ("process", "args"),
    ("process", "env"),
    ("process", "user"),
    ("process", "user", "uid"),
    ("process", "terminal"),
    ("process", "capabilities"),
    ("root",),
    ("root", "path"),
    ("mounts",),
    ("linux",),
    ("linux", "resources"),
    ("linux", "resources", "memory"),
    ("linux", "namespaces"),
    ("annotations",),
    ("hostname",),
]


def _replace(spec: Any, path: tuple[str, ...], value: Any) -> Any:
    if not path:
        return value
    target = spec
    for key in path[:-1]:
        target = target.setdefault(key, {}) if isinstance(target, dict) else target
    if isinstance(target, dict):
        target[path[-1]] = value
    return spec


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=st.sampled_from(_PATHS), value=_anything)
def test_hostile_specs_raise_only_typed_errors(
    env: Env, client: Any, path: tuple[str, ...], value: Any
) -> None:
    """Any shape or type anywhere in a spec is accepted or refused with an Error."""
    cid = unique_id()
    spec = _replace(env.spec(cid, with_process_args("true")), path, value)
    try:
        container = client.new_container(cid, spec)
    except Error:
        return
    container.delete()


_HOSTILE_CALLS = {
    "labels-not-str": lambda env, c, cid: env.container(
        c, with_process_args("true"), labels={1: 2}
    ),
    "labels-a-string": lambda env, c, cid: env.container(
        c, with_process_args("true"), labels="a=b"
    ),
    "runtime-options-a-string": lambda env, c, cid: c.new_container(
        cid, env.spec(cid, with_process_args("true")), runtime_options="x"
    ),
    "runtime-not-a-string": lambda env, c, cid: c.new_container(
        cid, env.spec(cid, with_process_args("true")), runtime=5
    ),
    "container-id-not-a-string": lambda env, c, cid: c.new_container(
        5, env.spec(cid, with_process_args("true"))
    ),
    "load-none": lambda env, c, cid: c.load_container(None),
    "filters-not-strings": lambda env, c, cid: c.containers([5]),
    "stdio-a-string": lambda env, c, cid: env.container(c, with_process_args("true")).new_task(
        stdio="piped"
    ),
}


@pytest.mark.parametrize("call", sorted(_HOSTILE_CALLS))
def test_hostile_arguments_raise_only_typed_errors(env: Env, client: Any, call: str) -> None:
    """Wrong types in the other arguments of the public API are typed errors too."""
    with pytest.raises(Error):
        _HOSTILE_CALLS[call](env, client, unique_id())
