"""The image manifests containers are made from, remembered per image digest.

``new_container(image=)`` needs the image's manifest and config, which it reads through
containerd's content service (about three round trips). Content is addressed by digest
and verified when read, so what an image digest resolves to for this host never
changes while the image exists: it is read once per daemon, namespace and digest.
Removing an image drops its entry; the image record itself is still looked up for every
container, so a removed image is reported as missing as before.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from libcontainerd.remote._manifests import ImageManifest

__all__ = ["ManifestCache", "manifest_cache"]

_Key = tuple[str, str, str]


class ManifestCache:
    """A bounded, thread-safe map of (address, namespace, digest) to the host's manifest."""

    def __init__(self, capacity: int = 128) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[_Key, ImageManifest] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, address: str, namespace: str, digest: str) -> ImageManifest | None:
        """The remembered manifest of image ``digest``, or None."""
        key = (address, namespace, digest)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, address: str, namespace: str, digest: str, manifest: ImageManifest) -> None:
        """Remember ``manifest`` for image ``digest``; the least recently used entry goes."""
        with self._lock:
            self._entries[(address, namespace, digest)] = manifest
            self._entries.move_to_end((address, namespace, digest))
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def forget(self, address: str, namespace: str, digest: str) -> None:
        """Drop what is remembered for image ``digest`` (the image was removed or replaced)."""
        with self._lock:
            self._entries.pop((address, namespace, digest), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


manifest_cache = ManifestCache()
"""The process-wide cache every remote client shares (keyed by daemon address)."""
