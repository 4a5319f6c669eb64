"""Walking an image graph: pull a reference's graph into a sink, push one from a source.

A pull fetches the manifests the platform request selects, downloads the blobs under
them a few at a time, and stores manifests only after every blob below them, so a
store never holds a manifest whose content is missing. A push uploads blobs first,
then child manifests by digest, then the root under the reference's tag.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

from libcontainerd.content.protocol import BlobSink, BlobSource
from libcontainerd.distribution._fetch import (
    ProgressCallback,
    fetch_blob,
    fetch_manifest,
    store_bytes,
    whole_event,
)
from libcontainerd.distribution._flow import Flow, Parallel
from libcontainerd.distribution._manifests import (
    MAX_GRAPH_DEPTH,
    NON_DISTRIBUTABLE,
    Manifest,
    PullResult,
    base_type,
    children_of,
    json_object,
    verify,
)
from libcontainerd.distribution._push import push_blob, push_manifest
from libcontainerd.distribution._session import RegistrySession
from libcontainerd.errors import InvalidArgument, NotFound, RegistryError, ResourceExhausted
from libcontainerd.types import descriptor as media
from libcontainerd.types.descriptor import Descriptor, select_platforms
from libcontainerd.types.platform import PlatformRequest, PlatformSelector
from libcontainerd.types.progress import ProgressEvent, ProgressKind
from libcontainerd.types.reference import Reference

__all__ = ["pull_graph", "push_graph"]


def pull_graph(
    session: RegistrySession,
    ref: Reference,
    sink: BlobSink,
    platform: PlatformRequest | PlatformSelector | None,
    progress: ProgressCallback | None,
    max_concurrent: int,
    on_manifests: Callable[[Sequence[Manifest]], None] | None = None,
) -> Flow[PullResult]:
    """Resolve ``ref`` and store its whole graph (for the wanted platforms) in ``sink``.

    Blobs are downloaded ``max_concurrent`` at a time, each manifest's config and
    layers in manifest order; manifests are stored only after every blob under them,
    so the store never holds a manifest whose content is missing. ``on_manifests`` is
    called once with every manifest and index fetched, before the first blob download
    (so a caller can unpack layers as they arrive); it must not block.
    """
    if max_concurrent < 1:
        raise InvalidArgument(f"max_concurrent must be at least 1, got {max_concurrent}")
    emit = progress or (lambda event: None)
    selector = PlatformSelector.of(platform)  # parsed once; a bad one fails before any traffic
    root = yield from fetch_manifest(session, ref, None)
    emit(
        ProgressEvent(
            ProgressKind.RESOLVED,
            root.descriptor.digest,
            root.descriptor.media_type,
            0,
            root.descriptor.size,
            str(ref),
        )
    )
    manifests: list[Manifest] = []
    blobs: dict[str, Descriptor] = {}
    pending: list[tuple[Manifest, int]] = [(root, 0)]
    while pending:
        manifest, depth = pending.pop(0)
        manifests.append(manifest)
        media_type = manifest.descriptor.media_type
        children = manifest.children()
        if media.is_index(media_type):
            if depth >= MAX_GRAPH_DEPTH:
                raise RegistryError(f"image {ref} nests indexes more than 8 deep")
            wanted = [c for c in children if media.is_index(c.media_type)]
            platform_entries = [c for c in children if not media.is_index(c.media_type)]
            if platform_entries:
                try:
                    wanted += select_platforms(platform_entries, selector)
                except NotFound as error:
                    raise NotFound(f"image {ref}: {error}") from None
            for child in wanted:
                fetched = yield from fetch_manifest(session, ref, child)
                pending.append((fetched, depth + 1))
        else:
            for child in children:
                if base_type(child.media_type) in NON_DISTRIBUTABLE and child.urls:
                    continue  # foreign layers are fetched from their own URLs, if ever
                blobs.setdefault(child.digest, child)
    if on_manifests is not None:
        on_manifests(tuple(manifests))
    for blob in blobs.values():
        emit(
            ProgressEvent(
                ProgressKind.WAITING, blob.digest, blob.media_type, 0, blob.size, str(ref)
            )
        )
    yield Parallel(
        [fetch_blob(session, ref, blob, sink, progress) for blob in blobs.values()],
        max_concurrent,
    )
    for manifest in reversed(manifests):
        store_bytes(session, sink, manifest.descriptor, manifest.data, ref, emit)
    return PullResult(
        reference=str(ref),
        target=root.descriptor,
        manifests=tuple(m.descriptor for m in manifests),
        blobs=tuple(blobs.values()),
    )


def push_graph(
    session: RegistrySession,
    ref: Reference,
    source: BlobSource,
    descriptor: Descriptor,
    progress: ProgressCallback | None,
    max_concurrent: int,
) -> Flow[Descriptor]:
    """Push ``descriptor`` and everything under it from ``source`` to ``ref``.

    Blobs first (those the registry has are skipped), then child manifests by
    digest, then the root under ``ref``'s tag.
    """
    if max_concurrent < 1:
        raise InvalidArgument(f"max_concurrent must be at least 1, got {max_concurrent}")
    emit = progress or (lambda event: None)
    order: list[tuple[Descriptor, bytes]] = []
    blobs: dict[str, Descriptor] = {}
    pending: list[tuple[Descriptor, int]] = [(descriptor, 0)]
    while pending:
        current, depth = pending.pop(0)
        if depth > MAX_GRAPH_DEPTH:
            raise InvalidArgument(f"image graph under {descriptor.digest} is too deep")
        with source.open_blob(current.digest) as handle:
            data = handle.read(session.max_manifest_size + 1)
        if len(data) > session.max_manifest_size:
            raise ResourceExhausted(f"manifest {current.digest} is larger than the limit")
        verify(data, current, f"local manifest {current.digest}")
        content = json_object(data, f"local manifest {current.digest}")
        order.append((current, data))
        for child in children_of(current.media_type, content):
            if media.is_index(child.media_type) or media.is_manifest(child.media_type):
                pending.append((child, depth + 1))
            else:
                blobs.setdefault(child.digest, child)

    def upload(blob: Descriptor) -> Flow[Descriptor]:
        handle = source.open_blob(blob.digest)
        try:
            return (yield from push_blob(session, ref, blob, handle, progress))
        finally:
            handle.close()

    yield Parallel([upload(blob) for blob in blobs.values()], max_concurrent)
    for current, data in reversed(order[1:]):
        yield from push_manifest(session, ref, data, current.media_type, by_digest=True)
        emit(whole_event(ProgressKind.DONE, current, ref))
    root_desc, root_data = order[0]
    pushed = yield from push_manifest(session, ref, root_data, root_desc.media_type)
    emit(whole_event(ProgressKind.DONE, pushed, ref))
    return attrs.evolve(
        root_desc, digest=pushed.digest, size=pushed.size, media_type=pushed.media_type
    )
