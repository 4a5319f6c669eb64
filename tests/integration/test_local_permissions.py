"""Setuid files and device nodes from image layers are out of reach of other host users.

Issue #8, point 7 (the class of Docker's CVE-2021-41091): the local backend's root and
state directories are private (0700), so an unprivileged user (uid 65534 here) cannot
reach a layer's setuid binary or device node through the snapshot or the container's
root filesystem, even when the directory holding the root is world-readable.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import libcontainerd
from libcontainerd.local._runtime import find_runtime
from libcontainerd.testing.image_builder import TarEntrySpec, build_image, write_docker_archive

NOBODY = 65534

pytestmark = [
    pytest.mark.runtime,
    pytest.mark.skipif(
        os.geteuid() != 0 or find_runtime("runc") is None, reason="needs root and runc"
    ),
]


@pytest.fixture
def open_base() -> Iterator[Path]:
    """A directory every user may traverse (unlike pytest's 0700 tmp_path)."""
    base = Path(tempfile.mkdtemp(prefix="lcd-perm-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _as_nobody(paths: list[str]) -> dict[str, str]:
    """How each path looks to uid 65534: ``reachable`` or ``denied`` (``stat`` as that user)."""
    stat_binary = shutil.which("stat") or "/usr/bin/stat"
    results = {}
    for path in paths:
        proc = subprocess.run(
            [stat_binary, "--", path],
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            capture_output=True,
            timeout=30,
            cwd="/",
            check=False,
        )
        if proc.returncode == 0:
            results[path] = "reachable"
        elif b"Permission denied" in proc.stderr:
            results[path] = "denied"
        else:
            results[path] = proc.stderr.decode(errors="replace")
    return results


def _dangerous(top: Path) -> list[str]:
    found = []
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            if mode & stat.S_ISUID or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                found.append(path)
    return found


def test_layer_setuid_files_and_devices_are_unreachable(open_base: Path) -> None:
    built = build_image(
        open_base / "layout",
        extra_files={
            "bin/suid-tool": TarEntrySpec(content=b"#!/bin/sh\necho root\n", mode=0o4755),
            "dev/fake-null": TarEntrySpec(kind="char", devmajor=1, devminor=3, mode=0o666),
        },
    )
    archive = write_docker_archive(built, open_base / "image.tar", repo_tag="example.com/perm:1")
    root, state = open_base / "root", open_base / "state"
    client = libcontainerd.new_client(backend="local", root=root, state=state)
    with client:
        client.images.import_archive(archive)
        container = client.new_container("perm-check", image="example.com/perm:1")
        try:
            dangerous = _dangerous(root)
            # The layer's files are there (in the snapshot and the container's rootfs)...
            assert any(p.endswith("suid-tool") for p in dangerous), dangerous
            assert any(p.endswith("fake-null") for p in dangerous), dangerous
            # ...and none of them is reachable by another user.
            seen = _as_nobody([*dangerous, str(open_base / "image.tar")])
            assert seen.pop(str(open_base / "image.tar")) == "reachable"  # the probe works
            assert set(seen.values()) == {"denied"}, seen
            for top in (root, state):
                assert stat.S_IMODE(top.stat().st_mode) == 0o700
        finally:
            container.delete()


def test_existing_world_readable_root_is_made_private(open_base: Path) -> None:
    root, state = open_base / "root", open_base / "state"
    for path in (root, state):
        path.mkdir(mode=0o755)
        path.chmod(0o755)
    libcontainerd.new_client(backend="local", root=root, state=state).close()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
