"""Layer snapshots of the local store: one extracted layer per chain id, shared by images.

A layer is extracted into a temporary directory beside its final place and renamed into
place when complete, so a snapshot directory is either whole or absent; two clients
extracting the same layer at once keep one result.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from libcontainerd.content import ContentStore, apply_layer, chain_ids
from libcontainerd.content.unpack import DEFAULT_MAX_SIZE
from libcontainerd.errors import DataLoss
from libcontainerd.local._image_graph import children, diff_ids
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.digest import split_digest

__all__ = ["snapshot_dir", "unpack_layers"]


def snapshot_dir(snapshots: Path, chain: str) -> Path:
    """The directory of the snapshot with chain id ``chain``."""
    return snapshots / split_digest(chain)[1]


def unpack_layers(
    content: ContentStore,
    snapshots: Path,
    manifest: Descriptor,
    *,
    max_layer_size: int | None = DEFAULT_MAX_SIZE,
) -> list[Path]:
    """Extract ``manifest``'s layers into shared snapshot dirs; returns them bottom first."""
    found = children(content, manifest)
    layers = found[1:]
    layer_ids = diff_ids(content, found[0])
    if len(layer_ids) != len(layers):
        raise DataLoss(
            f"manifest {manifest.digest} has {len(layers)} layers but its config lists "
            f"{len(layer_ids)} diff ids"
        )
    dirs: list[Path] = []
    for layer, diff_id, chain in zip(layers, layer_ids, chain_ids(layer_ids), strict=True):
        dest = snapshot_dir(snapshots, chain)
        dirs.append(dest)
        if dest.is_dir():
            continue
        tmp = snapshots / f".{dest.name}.{secrets.token_hex(6)}.partial"
        tmp.mkdir(mode=0o755)
        try:
            os.chmod(tmp, 0o755)
            apply_layer(
                content.path(layer.digest),
                tmp,
                media_type=layer.media_type,
                whiteout_format="overlay",
                expected_diff_id=diff_id,
                max_size=max_layer_size,
            )
            try:
                os.rename(tmp, dest)
            except OSError:
                if not dest.is_dir():
                    raise
                # Another client extracted the same layer meanwhile: keep theirs.
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dirs
