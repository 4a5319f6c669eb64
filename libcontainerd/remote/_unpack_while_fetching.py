"""Unpacking a pull's layers while the later ones are still downloading.

The registry client reports the manifests of a pull before it downloads any blob
(``on_manifests``) and reports every stored blob through its progress events.
:class:`UnpackWhileFetching` starts one thread per pull that, for each image manifest,
waits for the config, reads it, and applies each layer as soon as that layer is stored
(layers are downloaded in manifest order, so the bottom ones arrive first). containerd
decompresses and writes one layer while the next ones are fetched, instead of after
all of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from libcontainerd.remote._content import RemoteContentStore
from libcontainerd.remote._unpack import unpack_image
from libcontainerd.types import descriptor as media
from libcontainerd.types.progress import ProgressEvent, ProgressKind

if TYPE_CHECKING:  # the registry client (httpx) is imported only by a pull
    from libcontainerd.distribution import Manifest

__all__ = ["UnpackWhileFetching"]

_STORED = (ProgressKind.DONE, ProgressKind.EXISTS)


class _Aborted(Exception):
    """The pull failed: the unpacker stops waiting for blobs that will not come."""


class UnpackWhileFetching:
    """The unpacker of one pull; :meth:`finish` returns what it unpacked.

    Pass :meth:`observe` (wrapping the caller's callback) as the pull's progress and
    :meth:`start` as its ``on_manifests``.
    """

    def __init__(
        self,
        store: RemoteContentStore,
        snapshotter: str,
        progress: Callable[[ProgressEvent], Any] | None = None,
    ) -> None:
        self._store = store
        self._snapshotter = snapshotter
        self._progress = progress
        self._changed = threading.Condition()
        self._stored: set[str] = set()
        self._fetched = False  # every blob that will be stored is stored
        self._aborted = False
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.unpacked: dict[str, str] = {}
        """Manifest digest -> chain id of its top layer, for each manifest unpacked."""

    def observe(self, event: ProgressEvent) -> None:
        """The pull's progress callback: note stored blobs, then tell the caller."""
        if event.kind in _STORED:
            with self._changed:
                self._stored.add(event.digest)
                self._changed.notify_all()
        if self._progress is not None:
            self._progress(event)

    def start(self, manifests: Sequence[Manifest]) -> None:
        """Begin unpacking the image manifests among ``manifests`` (in a thread)."""
        images = [m for m in manifests if media.is_manifest(m.descriptor.media_type)]
        if images and self._thread is None:
            self._thread = threading.Thread(
                target=self._run, args=(images,), name="unpack-while-fetching", daemon=True
            )
            self._thread.start()

    def _wait(self, digest: str) -> None:
        with self._changed:
            while digest not in self._stored and not self._fetched:
                if self._aborted:
                    raise _Aborted
                self._changed.wait()
            if self._aborted:
                raise _Aborted

    def _run(self, images: Sequence[Manifest]) -> None:
        try:
            for manifest in images:
                config = manifest.content.get("config")
                digest = config.get("digest") if isinstance(config, Mapping) else None
                if not isinstance(digest, str):
                    return  # malformed: the unpack after the pull reports it
                self._wait(digest)
                chain = unpack_image(
                    self._store,
                    manifest.content,
                    self._store.read_json(digest),
                    snapshotter=self._snapshotter,
                    ready=self._wait,
                )
                self.unpacked[manifest.descriptor.digest] = chain
        except _Aborted:
            pass
        except BaseException as error:  # raised to the caller by finish()
            self._error = error

    def _stop(self, *, aborted: bool) -> None:
        with self._changed:
            self._fetched = True
            self._aborted = aborted
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join()

    def finish(self) -> dict[str, str]:
        """The pull stored everything: wait for the unpacker; raise what it raised."""
        self._stop(aborted=False)
        if self._error is not None:
            raise self._error
        return self.unpacked

    def abort(self) -> None:
        """The pull failed: stop the unpacker (after the layer it is applying) and wait."""
        self._stop(aborted=True)
