"""Helpers for tests of libcontainerd and of programs that use it.

* :mod:`~libcontainerd.testing.image_builder`: OCI images and root filesystems built
  from files on this machine (busybox from Debian's busybox-static), no download;
* :mod:`~libcontainerd.testing.containerd_daemon`: a private containerd in a temp dir;
* :mod:`~libcontainerd.testing.registry`: a private OCI registry on 127.0.0.1;
* :mod:`~libcontainerd.testing.pytest_plugin`: pytest fixtures over the above
  (enable with ``pytest_plugins = ["libcontainerd.testing.pytest_plugin"]``).
"""

from __future__ import annotations

from libcontainerd.testing.containerd_daemon import ContainerdDaemon, start_containerd
from libcontainerd.testing.image_builder import (
    BuiltImage,
    ImageConfigSpec,
    TarEntrySpec,
    build_image,
    build_layer,
    busybox_rootfs,
    write_docker_archive,
    write_layout_archive,
)
from libcontainerd.testing.registry import Registry, TokenAuth, start_registry

__all__ = [
    "BuiltImage",
    "ContainerdDaemon",
    "ImageConfigSpec",
    "Registry",
    "TarEntrySpec",
    "TokenAuth",
    "build_image",
    "build_layer",
    "busybox_rootfs",
    "start_containerd",
    "start_registry",
    "write_docker_archive",
    "write_layout_archive",
]
