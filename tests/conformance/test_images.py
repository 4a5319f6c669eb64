"""Image archives and registry settings behave alike on every backend (issue 8, point 4).

One codec serves both backends, so an archive is named the same way everywhere (like
``ctr images import --base-name``), and both accept the same ``registry={...}`` option.
"""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path
from typing import Any

import pytest
from conformance_support import Env

from libcontainerd.errors import InvalidArgument, NotFound
from libcontainerd.testing.image_builder import (
    BuiltImage,
    build_image,
    write_docker_archive,
    write_layout_archive,
)


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """An image whose index entry carries only a tag as its ref name."""
    return build_image(tmp_path_factory.mktemp("conf-images") / "layout", ref_name="v1")


def _remove(client: Any, *names: str) -> None:
    for name in names:
        with contextlib.suppress(NotFound):
            client.images.remove(name)


def test_import_names_like_ctr_base_name(client: Any, tagged: BuiltImage, tmp_path: Path) -> None:
    archive = write_layout_archive(tagged.layout, tmp_path / "tagged.tar")
    base = f"example.com/conformance/import-{secrets.token_hex(3)}"
    (named,) = client.images.import_archive(archive, base_name=base)
    (unnamed,) = client.images.import_archive(archive)
    try:
        assert named.name == f"{base}:v1"
        assert named.target.digest == tagged.index_digest
        # Without a base name a bare tag names nothing: both backends use the digest.
        assert unnamed.name == tagged.index_digest
        assert client.images.get(f"{base}:v1").target.digest == tagged.index_digest
    finally:
        _remove(client, named.name, unnamed.name)


def test_docker_archive_names_from_repo_tags(
    client: Any, tagged: BuiltImage, tmp_path: Path
) -> None:
    tag = f"example.com/conformance/docker-{secrets.token_hex(3)}:7"
    archive = write_docker_archive(tagged, tmp_path / "docker.tar", repo_tag=tag)
    (image,) = client.images.import_archive(archive, base_name="example.com/ignored")
    try:
        assert image.name == tag
    finally:
        _remove(client, image.name)


def test_registry_option_is_accepted(env: Env, tmp_path: Path) -> None:
    hosts = tmp_path / "certs.d"
    hosts.mkdir()
    registry = {
        "insecure_hosts": ["127.0.0.1:5999"],
        "max_retries": 1,
        "hosts_dir": str(hosts),
        "docker_config": False,
    }
    client = env.new_client(options={"registry": registry})
    assert client.images.list() is not None


def test_unknown_registry_setting_is_refused(env: Env) -> None:
    with pytest.raises(InvalidArgument, match="no_such_setting"):
        env.new_client(options={"registry": {"no_such_setting": 1}})
