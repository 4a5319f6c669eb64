"""Content shared by the backends: the content protocol, blob stores, the archive codec,
safe layer unpacking and root filesystems.

* :mod:`~libcontainerd.content.protocol` is what every blob store offers
  (:class:`BlobSink`, :class:`BlobSource`, :class:`BlobStore`, :class:`BlobWriter`);
  the local store below and the remote backend's store over containerd implement it.
* :class:`ContentStore` keeps blobs by digest (``blobs/<alg>/<hex>``) with resumable,
  verified writes and per-blob labels.
* :func:`apply_layer` extracts a layer tar (plain, gzip or zstd) onto a directory without
  ever writing outside it, honouring OCI whiteouts.
* :func:`prepare_rootfs` turns a stack of layers into a container root filesystem (an
  overlay mount when possible, else a copy); :func:`chain_id` names a layer stack.
"""

from __future__ import annotations

from libcontainerd.content.directory import DirectoryContentStore
from libcontainerd.content.protocol import BlobInfo, BlobSink, BlobSource, BlobStore, BlobWriter
from libcontainerd.content.rootfs import (
    RootFS,
    chain_id,
    chain_ids,
    extract_layer_dir,
    mount_overlay,
    overlay_supported,
    prepare_rootfs,
    release_rootfs,
    unmount,
)
from libcontainerd.content.store import ContentStore, ContentWriter, IngestStatus
from libcontainerd.content.unpack import LayerResult, apply_layer, zstd_available

__all__ = [
    "BlobInfo",
    "BlobSink",
    "BlobSource",
    "BlobStore",
    "BlobWriter",
    "ContentStore",
    "ContentWriter",
    "DirectoryContentStore",
    "IngestStatus",
    "LayerResult",
    "RootFS",
    "apply_layer",
    "chain_id",
    "chain_ids",
    "extract_layer_dir",
    "mount_overlay",
    "overlay_supported",
    "prepare_rootfs",
    "release_rootfs",
    "unmount",
    "zstd_available",
]
