"""The local backend's image service: one content store and one image store for all platforms.

Everything lives under the backend's ``root``::

    content/                     blobs of every namespace (:class:`ContentStore`)
    snapshots/<chain-id hex>/    one extracted layer each (overlay whiteouts), shared by
                                 every image whose layer stack has that prefix
    images/<namespace>/<h>.json  one record per image name (``h`` = sha256 of the name)
    rootfs-refs/<h>.json         what a prepared container root filesystem uses
    gc.lock                      shared by pulls/imports/prepares, exclusive for collection

The store is *coalesced*: an image record names its root descriptor and lists every
platform whose content is present locally; pulling another platform of the same image adds
to that record, and lookups filter by platform instead of there being a store per OS.

Blobs and snapshots are collected when an image is removed (or a container root filesystem
released) and nothing else (no image in any namespace, no prepared root filesystem) reaches
them. Writers of content hold ``gc.lock`` shared, collection holds it exclusively, so a
collection never deletes what a concurrent pull is about to reference. Records are written
to a temporary file and renamed into place, so a crash leaves either the old or the new one.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from libcontainerd.content import ContentStore, prepare_rootfs
from libcontainerd.content.archive import import_images, open_archive
from libcontainerd.content.archive_export import (
    named_entry,
    write_archive_file,
    write_oci_archive,
)
from libcontainerd.content.recording import RecordingSink
from libcontainerd.content.rootfs import RootFSMode, release_rootfs
from libcontainerd.content.unpack import DEFAULT_MAX_SIZE
from libcontainerd.distribution import ProgressCallback, RegistryClient
from libcontainerd.errors import DataLoss, FailedPrecondition, InvalidArgument, NotFound
from libcontainerd.local._image_filters import has_platform, parse_filter
from libcontainerd.local._image_graph import (
    children,
    local_manifests,
    present_platforms,
    reachable,
    read_json,
)
from libcontainerd.local._snapshots import snapshot_dir, unpack_layers
from libcontainerd.shortcuts import ImageShortcuts
from libcontainerd.types import descriptor as media
from libcontainerd.types.auth import Credentials
from libcontainerd.types.descriptor import Descriptor, select_platforms
from libcontainerd.types.image import Image
from libcontainerd.types.platform import Platform, PlatformRequest, PlatformSelector
from libcontainerd.types.reference import Reference

__all__ = ["LocalImageService", "normalize_image_name"]

_NAMESPACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def normalize_image_name(ref: str) -> str:
    """The stored name for ``ref``: the normalised reference when it is one, else ``ref``."""
    if not isinstance(ref, str) or not ref:
        raise InvalidArgument(f"an image reference must be a non-empty str, got {ref!r}")
    try:
        return str(Reference.parse(ref))
    except InvalidArgument:
        return ref


def _name_key(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _atomic_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _flock(path: Path, mode: int) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)


class LocalImageService(ImageShortcuts):
    """Images of one namespace in the local backend's coalesced store (see module docs).

    ``registry_options`` are keyword arguments for every :class:`RegistryClient` this
    service makes (``docker_config``, ``insecure_hosts``, ``ca_file``, ``timeout``,
    ``hosts_dir`` ...: the backend's ``registry={...}`` option). ``max_layer_size`` caps
    how many bytes one layer may decompress to when it is unpacked (a decompression bomb
    stops there with :class:`ResourceExhausted`).
    ``rootfs_mode`` is how :meth:`prepare_image_rootfs` builds root filesystems.
    """

    def __init__(
        self,
        root: Path | str,
        namespace: str,
        *,
        registry_options: Mapping[str, Any] | None = None,
        rootfs_mode: RootFSMode = "auto",
        max_layer_size: int | None = DEFAULT_MAX_SIZE,
    ) -> None:
        if not isinstance(namespace, str) or not re.fullmatch(
            r"[A-Za-z0-9][A-Za-z0-9._-]*", namespace
        ):
            raise InvalidArgument(
                f"namespace {namespace!r} must be letters, digits, '.', '_' or '-'"
            )
        self.root = Path(root)
        self.namespace = namespace
        self.content = ContentStore(self.root / "content")
        self._snapshots = self.root / "snapshots"
        self._images = self.root / "images"
        self._refs = self.root / "rootfs-refs"
        for directory in (self._snapshots, self._images / namespace, self._refs):
            directory.mkdir(parents=True, exist_ok=True)
        self._gc_lock = self.root / "gc.lock"
        self._records_lock = self._images / ".records.lock"
        self._registry_options = dict(registry_options or {})
        self._rootfs_mode = rootfs_mode
        if max_layer_size is not None and (
            isinstance(max_layer_size, bool)
            or not isinstance(max_layer_size, int)
            or max_layer_size < 1
        ):
            raise InvalidArgument(
                f"max_layer_size must be a positive int of bytes (or None), got {max_layer_size!r}"
            )
        self._max_layer_size = max_layer_size

    def __repr__(self) -> str:
        return f"LocalImageService({str(self.root)!r}, {self.namespace!r})"

    # -- records -----------------------------------------------------------------------

    def _record_path(self, name: str, namespace: str | None = None) -> Path:
        return self._images / (namespace or self.namespace) / f"{_name_key(name)}.json"

    @staticmethod
    def _to_image(data: Mapping[str, Any]) -> Image:
        def when(value: object) -> _dt.datetime | None:
            return _dt.datetime.fromisoformat(value) if isinstance(value, str) else None

        return Image(
            name=data["name"],
            target=Descriptor.from_dict(data["target"]),
            labels=data.get("labels") or {},
            created_at=when(data.get("created_at")),
            updated_at=when(data.get("updated_at")),
            platforms=tuple(Platform.parse(p) for p in data.get("platforms", ())),
        )

    def _read_record(self, path: Path) -> Image | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return self._to_image(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            raise DataLoss(f"image record {path} is corrupt ({exc}); delete it") from None

    def _all_records(self) -> Iterator[Image]:
        """Every image record of every namespace (collection must see them all)."""
        for ns_dir in sorted(p for p in self._images.iterdir() if p.is_dir()):
            for path in sorted(ns_dir.glob("*.json")):
                image = self._read_record(path)
                if image is not None:
                    yield image

    def _write_record(
        self, name: str, target: Descriptor, labels: Mapping[str, str] | None = None
    ) -> tuple[Image, Image | None]:
        """Create or update the record ``name``; returns (new, replaced-with-other-target)."""
        path = self._record_path(name)
        with _flock(self._records_lock, fcntl.LOCK_EX):
            old = self._read_record(path)
            now = _now()
            merged = dict(old.labels) if old is not None else {}
            merged.update(labels or {})
            image = Image(
                name=name,
                target=target,
                labels=merged,
                created_at=old.created_at if old is not None else now,
                updated_at=now,
                platforms=present_platforms(self.content, target),
            )
            record = {
                "name": image.name,
                "target": target.to_dict(),
                "labels": dict(image.labels),
                "created_at": image.created_at.isoformat() if image.created_at else None,
                "updated_at": now.isoformat(),
                "platforms": [p.format() for p in image.platforms],
            }
            _atomic_json(path, record)
        replaced = old if old is not None and old.target.digest != target.digest else None
        return image, replaced

    def put_record(
        self, name: str, target: Descriptor, labels: Mapping[str, str] | None = None
    ) -> Image:
        """Create the record ``name`` pointing at ``target`` (content already stored), or
        repoint it; content only the old target used is collected."""
        with _flock(self._gc_lock, fcntl.LOCK_SH):
            image, replaced = self._write_record(name, target, labels)
        if replaced is not None:
            self._collect([replaced.target])
        return image

    # -- content graph -----------------------------------------------------------------

    def _snapshot_dir(self, chain: str) -> Path:
        return snapshot_dir(self._snapshots, chain)

    def _unpack(self, manifest: Descriptor) -> list[Path]:
        """Extract ``manifest``'s layers into shared snapshot dirs; returns them bottom first."""
        return unpack_layers(
            self.content, self._snapshots, manifest, max_layer_size=self._max_layer_size
        )

    # -- ImageService ------------------------------------------------------------------

    def pull(
        self,
        ref: str,
        *,
        platform: PlatformRequest | None = None,
        progress: ProgressCallback | None = None,
        auth: Credentials | None = None,
        unpack: bool = True,
        max_concurrent: int = 3,
    ) -> Image:
        """Pull ``ref`` for ``platform`` (default: this host; ``"all"`` for every one).

        Blobs go into the shared content store; the record ``ref`` then lists every
        platform present locally, including ones pulled before. With ``unpack`` (and
        root, which overlay whiteouts need) the pulled layers are extracted into snapshots.
        """
        parsed = Reference.parse(ref)
        selector = PlatformSelector.of(platform)
        options = dict(self._registry_options)
        if auth is not None:
            options["credentials"] = auth
        options.setdefault("docker_config", True)
        sink = RecordingSink(self.content)
        failure: BaseException | None = None
        with _flock(self._gc_lock, fcntl.LOCK_SH):
            try:
                with RegistryClient(**options) as registry:
                    result = registry.pull_graph(
                        parsed,
                        sink,
                        platform=selector,
                        progress=progress,
                        max_concurrent=max_concurrent,
                    )
            except BaseException as exc:
                failure = exc
        if failure is not None:
            # Corrupt, short, overlong or interrupted: nothing of this pull stays behind
            # (the writers removed their partial files; committed blobs go here).
            self._collect([], (sink.committed, set()))
            raise failure
        with _flock(self._gc_lock, fcntl.LOCK_SH):
            try:
                if unpack and os.geteuid() == 0:
                    for desc in result.manifests:
                        if media.is_manifest(desc.media_type):
                            self._unpack(desc)
                image, replaced = self._write_record(str(parsed), result.target)
            except BaseException as exc:
                failure = exc
        if failure is not None:
            # Nothing names this content (unless another image shares it): take it back.
            self._collect([result.target])
            raise failure
        if replaced is not None:
            self._collect([replaced.target])
        return image

    def push(
        self,
        ref: str,
        *,
        source: str | None = None,
        platform: PlatformRequest | None = None,
        progress: ProgressCallback | None = None,
        auth: Credentials | None = None,
    ) -> Descriptor:
        """Push the local image ``source`` (default ``ref``) to ``ref``'s registry.

        ``platform`` pushes just that platform's manifest; without it the whole image is
        pushed, which needs every platform's content locally.
        """
        image = self.get(source or ref)
        target = image.target
        if platform is not None:
            target = self._select(image, platform)
        elif media.is_index(target.media_type):
            wanted = len(children(self.content, target))
            if len(local_manifests(self.content, target)) < wanted:
                raise FailedPrecondition(
                    f"image {image.name} has content for {len(image.platforms)} of {wanted} "
                    "platforms locally; pull it with platform='all' or pass platform="
                )
        options = dict(self._registry_options)
        if auth is not None:
            options["credentials"] = auth
        options.setdefault("docker_config", True)
        with RegistryClient(**options) as registry:
            return registry.push_graph(
                Reference.parse(ref), self.content, target, progress=progress
            )

    def list(
        self, filters: Sequence[str] = (), *, platform: PlatformRequest | None = None
    ) -> builtins.list[Image]:
        """Image records of this namespace, sorted by name.

        ``filters`` are alternatives (any may match); each is a comma-separated list of
        clauses that must all match: ``field==value``, ``field!=value``, ``field~=regex``
        or ``field`` (present). Fields: ``name``, ``target.digest``,
        ``target.mediatype``, ``labels.<key>`` and ``platform`` (``platform==linux/arm64``
        matches images with content for that platform, as ``platform=`` does).
        """
        if isinstance(filters, str):
            filters = [filters]
        checks = [parse_filter(f) for f in filters]
        selector = None if platform is None else PlatformSelector.of(platform)
        out: builtins.list[Image] = []
        for path in sorted((self._images / self.namespace).glob("*.json")):
            image = self._read_record(path)
            if image is None:
                continue
            if selector is not None and not has_platform(image, selector):
                continue
            if checks and not any(check(image) for check in checks):
                continue
            out.append(image)
        return sorted(out, key=lambda i: i.name)

    def get(self, ref: str, *, platform: PlatformRequest | None = None) -> Image:
        """The record ``ref``; with ``platform``, NotFound unless that platform is present."""
        name = normalize_image_name(ref)
        image = self._read_record(self._record_path(name))
        if image is None and name != ref:
            image = self._read_record(self._record_path(ref))
        if image is None:
            raise NotFound(f"image {ref!r} is not in namespace {self.namespace!r}; pull it first")
        selector = None if platform is None else PlatformSelector.of(platform)
        if selector is not None and not has_platform(image, selector):
            have = ", ".join(p.format() for p in image.platforms) or "none"
            raise NotFound(
                f"image {image.name} has no content for platform {selector.label} "
                f"locally (it has {have}); pull it with that platform"
            )
        return image

    def _select(self, image: Image, platform: PlatformRequest | None) -> Descriptor:
        local = local_manifests(self.content, image.target)
        selector = PlatformSelector.of(platform)
        try:
            return select_platforms(local, selector)[0]
        except NotFound:
            have = ", ".join(p.format() for p in image.platforms) or "none"
            raise NotFound(
                f"image {image.name} has no content for platform {selector.label} "
                f"locally (it has {have}); pull it with that platform"
            ) from None

    def remove(self, ref: str, *, sync: bool = False) -> None:
        """Remove the record ``ref``, then every blob and snapshot nothing else uses.

        Collection always completes before returning; ``sync`` is accepted for the
        interface's sake.
        """
        image = self.get(ref)
        path = self._record_path(image.name)
        with _flock(self._records_lock, fcntl.LOCK_EX), contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self._collect([image.target])

    def _collect(
        self, targets: Sequence[Descriptor], extra: tuple[set[str], set[str]] | None = None
    ) -> None:
        """Delete the blobs and snapshots of ``targets`` (plus ``extra``) nothing reaches.

        Callers must not hold the collection lock.
        """
        if not targets and extra is None:
            return
        with _flock(self._gc_lock, fcntl.LOCK_EX):
            blobs: set[str] = set()
            chains: set[str] = set()
            for target in targets:
                b, c = reachable(self.content, target)
                blobs |= b
                chains |= c
            if extra is not None:
                blobs |= extra[0]
                chains |= extra[1]
            live_blobs: set[str] = set()
            live_chains: set[str] = set()
            for image in self._all_records():
                b, c = reachable(self.content, image.target)
                live_blobs |= b
                live_chains |= c
            for ref_path in self._refs.glob("*.json"):
                with contextlib.suppress(ValueError, OSError):
                    data = json.loads(ref_path.read_bytes())
                    live_blobs |= set(data.get("blobs", ()))
                    live_chains |= set(data.get("chains", ()))
            for chain in sorted(chains - live_chains):
                shutil.rmtree(self._snapshot_dir(chain), ignore_errors=True)
            for digest in sorted(blobs - live_blobs):
                with contextlib.suppress(NotFound):
                    self.content.delete(digest)

    # -- archives ----------------------------------------------------------------------

    def import_archive(
        self,
        source: Path | str | IO[bytes],
        *,
        platform: PlatformRequest | None = None,
        base_name: str | None = None,
        unpack: bool = True,
    ) -> builtins.list[Image]:
        """Import an OCI image-layout tarball (``oci-archive``) or a ``docker save`` tarball.

        Images are named from the ``io.containerd.image.name`` annotation, else a full
        reference in ``org.opencontainers.image.ref.name``; a bare tag there becomes
        ``<base_name>:<tag>``, or the manifest digest without ``base_name``. Docker archives
        use their ``RepoTags``. ``platform`` (default: everything in the archive) limits the
        platforms imported. Blobs are verified against their digests.
        """
        images: builtins.list[Image] = []
        replaced: builtins.list[Descriptor] = []
        failure: BaseException | None = None
        with (
            open_archive(source, spool_dir=self.root) as archive,
            _flock(self._gc_lock, fcntl.LOCK_SH),
        ):
            found = import_images(archive, self.content, platform, base_name=base_name)
            try:
                if unpack and os.geteuid() == 0:
                    for item in found:
                        for manifest in item.manifests:
                            self._unpack(manifest)
                for item in found:
                    image, old = self._write_record(item.name, item.target)
                    images.append(image)
                    if old is not None:
                        replaced.append(old.target)
            except BaseException as exc:
                failure = exc
        if failure is not None:
            self._collect([item.target for item in found])
            raise failure
        self._collect(replaced)
        return images

    def export_archive(
        self,
        refs: Sequence[str],
        dest: Path | str | IO[bytes],
        *,
        platform: PlatformRequest | None = None,
    ) -> None:
        """Write ``refs`` as one OCI image-layout tarball to ``dest`` (path or binary file).

        With ``platform`` each image is written as its manifest for that platform; without,
        as its root (an index keeps only the platforms present locally).
        """
        if isinstance(refs, str):
            refs = [refs]
        entries: builtins.list[dict[str, Any]] = []
        for ref in refs:
            image = self.get(ref)
            target = self._select(image, platform) if platform is not None else image.target
            entries.append(named_entry(image.name, target))
        if not entries:
            raise InvalidArgument("export_archive needs at least one image reference")
        write_archive_file(dest, lambda out: write_oci_archive(out, self.content, entries))

    # -- container root filesystems ----------------------------------------------------

    def prepare_image_rootfs(
        self,
        ref: str,
        container_dir: Path | str,
        *,
        platform: PlatformRequest | None = None,
    ) -> tuple[Path, dict[str, Any]]:
        """Build ``container_dir/rootfs`` from image ``ref`` (overlay when possible, else copy).

        Returns the root filesystem path and the image config (the whole config JSON, ready
        for ``oci.with_image_config(config, rootfs=path)``). The image's blobs and layers
        stay in the store until :meth:`release_image_rootfs`, even if the image is removed.
        """
        container_dir = Path(container_dir)
        image = self.get(ref)
        manifest = self._select(image, platform)
        ref_path = self._refs / f"{_name_key(str(container_dir.resolve()))}.json"
        if ref_path.exists():
            raise FailedPrecondition(
                f"{container_dir} has an image root filesystem already; release it first"
            )
        with _flock(self._gc_lock, fcntl.LOCK_SH):
            parts = children(self.content, manifest)
            config = read_json(self.content, parts[0].digest)
            blobs, chains = reachable(self.content, manifest)
            layers: builtins.list[Path]
            if os.geteuid() == 0:
                layers = self._unpack(manifest)
            else:
                layers = [self.content.path(layer.digest) for layer in parts[1:]]
            if not layers:
                raise FailedPrecondition(f"image {image.name} has no layers to make a rootfs of")
            _atomic_json(
                ref_path,
                {
                    "container_dir": str(container_dir.resolve()),
                    "image": image.name,
                    "namespace": self.namespace,
                    "blobs": sorted(blobs),
                    "chains": sorted(chains),
                },
            )
            try:
                rootfs = prepare_rootfs(layers, container_dir, mode=self._rootfs_mode)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(ref_path)
                raise
        return rootfs.path, config

    def release_image_rootfs(self, container_dir: Path | str) -> None:
        """Unmount and delete ``container_dir``'s root filesystem and drop its content hold.

        Content of images removed meanwhile is collected now. Safe to call twice.
        """
        container_dir = Path(container_dir)
        ref_path = self._refs / f"{_name_key(str(container_dir.resolve()))}.json"
        release_rootfs(container_dir)
        try:
            data = json.loads(ref_path.read_bytes())
        except FileNotFoundError:
            return
        except ValueError:
            data = {}
        with contextlib.suppress(FileNotFoundError):
            os.unlink(ref_path)
        blobs = {str(b) for b in data.get("blobs", ())}
        chains = {str(c) for c in data.get("chains", ())}
        self._collect([], (blobs, chains))

    def image_rootfs_users(self) -> builtins.list[str]:
        """Container directories whose root filesystem holds image content."""
        out: builtins.list[str] = []
        for path in sorted(self._refs.glob("*.json")):
            with contextlib.suppress(ValueError, OSError):
                out.append(str(json.loads(path.read_bytes())["container_dir"]))
        return out
