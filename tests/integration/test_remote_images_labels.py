"""The garbage-collection labels the remote image service puts on manifests (no daemon)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from libcontainerd.content.archive import image_name
from libcontainerd.remote._gc_labels import child_gc_labels
from libcontainerd.remote._unpack import image_chain_id, snapshot_gc_label
from libcontainerd.types import descriptor as media

_digests = st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex())


@settings(max_examples=200)
@given(config=_digests, layers=st.lists(_digests, max_size=6))
def test_manifest_labels_name_config_and_layers(config: str, layers: list[str]) -> None:
    manifest = {
        "schemaVersion": 2,
        "mediaType": media.MEDIA_TYPE_OCI_MANIFEST,
        "config": {"mediaType": media.MEDIA_TYPE_OCI_CONFIG, "digest": config, "size": 1},
        "layers": [
            {"mediaType": media.MEDIA_TYPE_OCI_LAYER_GZIP, "digest": d, "size": 1} for d in layers
        ],
    }
    labels = child_gc_labels(media.MEDIA_TYPE_OCI_MANIFEST, json.dumps(manifest).encode())
    expected = {"containerd.io/gc.ref.content.config": config}
    expected.update({f"containerd.io/gc.ref.content.l.{i}": d for i, d in enumerate(layers)})
    assert labels == expected


@settings(max_examples=200)
@given(children=st.lists(_digests, max_size=6))
def test_index_labels_name_manifests(children: list[str]) -> None:
    index = {
        "schemaVersion": 2,
        "manifests": [
            {"mediaType": media.MEDIA_TYPE_DOCKER_MANIFEST, "digest": d, "size": 1}
            for d in children
        ],
    }
    labels = child_gc_labels(media.MEDIA_TYPE_DOCKER_MANIFEST_LIST, json.dumps(index).encode())
    assert labels == {f"containerd.io/gc.ref.content.m.{i}": d for i, d in enumerate(children)}


@settings(max_examples=200)
@given(data=st.binary(max_size=200))
def test_garbage_or_blobs_get_no_labels(data: bytes) -> None:
    assert child_gc_labels(media.MEDIA_TYPE_OCI_LAYER_GZIP, data) == {}
    labels = child_gc_labels(media.MEDIA_TYPE_OCI_MANIFEST, data)
    assert all(key.startswith("containerd.io/gc.ref.content.") for key in labels)


def test_chain_id_and_snapshot_label() -> None:
    one = "sha256:" + "1" * 64
    assert image_chain_id({"rootfs": {"diff_ids": [one]}}) == one
    assert image_chain_id({"rootfs": {"diff_ids": []}}) == ""
    assert snapshot_gc_label("overlayfs") == "containerd.io/gc.ref.snapshot.overlayfs"


def test_archive_entry_names() -> None:
    assert image_name({"io.containerd.image.name": "x/y:z"}) == "x/y:z"
    assert image_name({"org.opencontainers.image.ref.name": "busybox/a:1"}) == (
        "docker.io/busybox/a:1"
    )
    # One naming rule on both backends (issue 8, point 4): a bare tag names nothing
    # without a base name (the importer then uses the digest), like ctr's --base-name.
    assert image_name({"org.opencontainers.image.ref.name": "latest"}) is None
    assert image_name({"org.opencontainers.image.ref.name": "latest"}, "example.com/a") == (
        "example.com/a:latest"
    )
    assert image_name({}) is None


@settings(max_examples=200)
@given(
    document=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(["config", "layers", "manifests", "digest", "mediaType"]),
                inner,
                max_size=4,
            )
        ),
        max_leaves=20,
    )
)
def test_any_json_shape_is_tolerated(document: object) -> None:
    data = json.dumps(document).encode()
    for media_type in (media.MEDIA_TYPE_OCI_MANIFEST, media.MEDIA_TYPE_OCI_INDEX):
        labels = child_gc_labels(media_type, data)
        assert all(isinstance(v, str) for v in labels.values())
