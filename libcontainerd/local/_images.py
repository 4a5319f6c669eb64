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
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from libcontainerd.content import ContentStore, apply_layer, chain_ids, prepare_rootfs
from libcontainerd.content.rootfs import RootFSMode, release_rootfs
from libcontainerd.distribution import ProgressCallback, RegistryClient, select_platforms
from libcontainerd.errors import (
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from libcontainerd.shortcuts import ImageShortcuts
from libcontainerd.types import descriptor as media
from libcontainerd.types import platform as platforms
from libcontainerd.types.auth import Credentials
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.digest import split_digest, validate_digest
from libcontainerd.types.image import Image
from libcontainerd.types.platform import Matcher, Platform
from libcontainerd.types.reference import Reference

__all__ = ["LocalImageService", "PlatformRequest", "normalize_image_name"]

PlatformRequest = Platform | str | Matcher | Sequence[Platform | str] | None
"""``None`` (this host), ``"all"``, ``"os/arch[/variant]"``, a Platform, a Matcher or a list."""

_NAMESPACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MAX_JSON = 4 * 1024 * 1024
_FILTER_RE = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(==|!=|~=)?\s*(.*?)\s*$")


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


def _platform_key(p: Platform) -> str:
    return p.format()


def _matches(image_platforms: Sequence[Platform], wanted: PlatformRequest) -> bool:
    try:
        fake = [
            Descriptor(
                media_type=media.MEDIA_TYPE_OCI_MANIFEST,
                digest="sha256:" + "0" * 64,
                size=0,
                platform=p,
            )
            for p in image_platforms
        ]
        select_platforms(fake, wanted)
    except NotFound:
        return False
    return bool(image_platforms)


def _platform_text(wanted: PlatformRequest) -> str:
    if wanted is None:
        return platforms.default().format()
    if isinstance(wanted, Platform):
        return wanted.format()
    if isinstance(wanted, str):
        return wanted
    if isinstance(wanted, Sequence):
        return ", ".join(p.format() if isinstance(p, Platform) else str(p) for p in wanted)
    return repr(wanted)


class LocalImageService(ImageShortcuts):
    """Images of one namespace in the local backend's coalesced store (see module docs).

    ``registry_options`` are keyword arguments for every :class:`RegistryClient` this
    service makes (``docker_config``, ``insecure_hosts``, ``ca_file``, ``timeout`` ...).
    ``rootfs_mode`` is how :meth:`prepare_image_rootfs` builds root filesystems.
    """

    def __init__(
        self,
        root: Path | str,
        namespace: str,
        *,
        registry_options: Mapping[str, Any] | None = None,
        rootfs_mode: RootFSMode = "auto",
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
                platforms=self._present_platforms(target),
            )
            record = {
                "name": image.name,
                "target": target.to_dict(),
                "labels": dict(image.labels),
                "created_at": image.created_at.isoformat() if image.created_at else None,
                "updated_at": now.isoformat(),
                "platforms": [_platform_key(p) for p in image.platforms],
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

    def _read_json(self, digest: str) -> dict[str, Any]:
        with self.content.open(digest) as f:
            raw = f.read(_MAX_JSON + 1)
        if len(raw) > _MAX_JSON:
            raise DataLoss(f"blob {digest} is larger than a manifest or config may be")
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise DataLoss(f"blob {digest} is not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise DataLoss(f"blob {digest} is not a JSON object")
        return value

    def _children(self, desc: Descriptor) -> list[Descriptor]:
        doc = self._read_json(desc.digest)
        if media.is_index(desc.media_type):
            return [Descriptor.from_dict(m) for m in doc.get("manifests") or []]
        children = [Descriptor.from_dict(doc["config"])] if "config" in doc else []
        children += [Descriptor.from_dict(layer) for layer in doc.get("layers") or []]
        return children

    def _manifest_platform(self, desc: Descriptor) -> Platform:
        config = self._read_json(
            Descriptor.from_dict(self._read_json(desc.digest)["config"]).digest
        )
        return Platform.of(
            str(config.get("os") or "linux"),
            str(config.get("architecture") or "unknown"),
            str(config.get("variant") or ""),
        )

    def _local_manifests(self, target: Descriptor) -> list[Descriptor]:
        """The platform manifests under ``target`` whose content is present, with platform."""
        found: list[Descriptor] = []
        pending = [(target, 0)]
        while pending:
            desc, depth = pending.pop(0)
            if not self.content.exists(desc.digest) or depth > 8:
                continue
            if media.is_index(desc.media_type):
                pending += [(c, depth + 1) for c in self._children(desc)]
            elif media.is_manifest(desc.media_type):
                children = self._children(desc)
                if all(self.content.exists(c.digest) for c in children):
                    platform = desc.platform or self._manifest_platform(desc)
                    found.append(
                        Descriptor(
                            media_type=desc.media_type,
                            digest=desc.digest,
                            size=desc.size,
                            annotations=desc.annotations,
                            platform=platform,
                        )
                    )
        return found

    def _present_platforms(self, target: Descriptor) -> tuple[Platform, ...]:
        seen: dict[str, Platform] = {}
        for manifest in self._local_manifests(target):
            assert manifest.platform is not None
            seen.setdefault(_platform_key(manifest.platform), manifest.platform)
        return tuple(seen.values())

    def _reachable(self, target: Descriptor) -> tuple[set[str], set[str]]:
        """Blob digests and snapshot chain ids under ``target`` (present content only)."""
        blobs: set[str] = set()
        chains: set[str] = set()
        pending = [target]
        while pending:
            desc = pending.pop()
            if desc.digest in blobs:
                continue
            blobs.add(desc.digest)
            if not self.content.exists(desc.digest):
                continue
            if media.is_index(desc.media_type) or media.is_manifest(desc.media_type):
                children = self._children(desc)
                pending += children
                if media.is_manifest(desc.media_type):
                    with contextlib.suppress(NotFound, DataLoss, KeyError, TypeError):
                        chains.update(chain_ids(self._diff_ids(children[0])))
        return blobs, chains

    def _diff_ids(self, config: Descriptor) -> list[str]:
        diff_ids = self._read_json(config.digest).get("rootfs", {}).get("diff_ids") or []
        return [validate_digest(d) for d in diff_ids]

    def _snapshot_dir(self, chain: str) -> Path:
        return self._snapshots / split_digest(chain)[1]

    def _unpack(self, manifest: Descriptor) -> list[Path]:
        """Extract ``manifest``'s layers into shared snapshot dirs; returns them bottom first."""
        children = self._children(manifest)
        layers = children[1:]
        diff_ids = self._diff_ids(children[0])
        if len(diff_ids) != len(layers):
            raise DataLoss(
                f"manifest {manifest.digest} has {len(layers)} layers but its config lists "
                f"{len(diff_ids)} diff ids"
            )
        dirs: list[Path] = []
        for layer, diff_id, chain in zip(layers, diff_ids, chain_ids(diff_ids), strict=True):
            dest = self._snapshot_dir(chain)
            dirs.append(dest)
            if dest.is_dir():
                continue
            tmp = self._snapshots / f".{dest.name}.{secrets.token_hex(6)}.partial"
            tmp.mkdir(mode=0o755)
            try:
                os.chmod(tmp, 0o755)
                apply_layer(
                    self.content.path(layer.digest),
                    tmp,
                    media_type=layer.media_type,
                    whiteout_format="overlay",
                    expected_diff_id=diff_id,
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

    # -- ImageService ------------------------------------------------------------------

    def pull(
        self,
        ref: str,
        *,
        platform: PlatformRequest = None,
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
        options = dict(self._registry_options)
        if auth is not None:
            options["credentials"] = auth
        options.setdefault("docker_config", True)
        with _flock(self._gc_lock, fcntl.LOCK_SH):
            with RegistryClient(**options) as registry:
                result = registry.pull_graph(
                    parsed,
                    self.content,
                    platform=platform,
                    progress=progress,
                    max_concurrent=max_concurrent,
                )
            failure: BaseException | None = None
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
        platform: PlatformRequest = None,
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
            wanted = len(self._children(target))
            if len(self._local_manifests(target)) < wanted:
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
        self, filters: Sequence[str] = (), *, platform: PlatformRequest = None
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
        checks = [self._parse_filter(f) for f in filters]
        out: builtins.list[Image] = []
        for path in sorted((self._images / self.namespace).glob("*.json")):
            image = self._read_record(path)
            if image is None:
                continue
            if platform is not None and not _matches(image.platforms, platform):
                continue
            if checks and not any(check(image) for check in checks):
                continue
            out.append(image)
        return sorted(out, key=lambda i: i.name)

    @staticmethod
    def _parse_filter(text: str) -> Callable[[Image], bool]:
        clauses: builtins.list[Callable[[Image], bool]] = []
        for part in text.split(","):
            m = _FILTER_RE.match(part)
            if m is None or not m.group(1) or (m.group(2) is None and m.group(3)):
                raise InvalidArgument(
                    f"filter {text!r} is not field==value, field!=value, field~=regex or field"
                )
            field, op, value = m.group(1), m.group(2), m.group(3)
            if field not in ("name", "target.digest", "target.mediatype", "platform") and (
                not field.startswith("labels.")
            ):
                raise InvalidArgument(
                    f"filter field {field!r} is unknown; use name, target.digest, "
                    "target.mediatype, platform or labels.<key>"
                )
            clauses.append(_clause(field, op, value))
        return lambda image: all(c(image) for c in clauses)

    def get(self, ref: str, *, platform: PlatformRequest = None) -> Image:
        """The record ``ref``; with ``platform``, NotFound unless that platform is present."""
        name = normalize_image_name(ref)
        image = self._read_record(self._record_path(name))
        if image is None and name != ref:
            image = self._read_record(self._record_path(ref))
        if image is None:
            raise NotFound(f"image {ref!r} is not in namespace {self.namespace!r}; pull it first")
        if platform is not None and not _matches(image.platforms, platform):
            have = ", ".join(_platform_key(p) for p in image.platforms) or "none"
            raise NotFound(
                f"image {image.name} has no content for platform {_platform_text(platform)} "
                f"locally (it has {have}); pull it with that platform"
            )
        return image

    def _select(self, image: Image, platform: PlatformRequest) -> Descriptor:
        local = self._local_manifests(image.target)
        try:
            return select_platforms(local, platform)[0]
        except NotFound:
            have = ", ".join(_platform_key(p) for p in image.platforms) or "none"
            raise NotFound(
                f"image {image.name} has no content for platform {_platform_text(platform)} "
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
                b, c = self._reachable(target)
                blobs |= b
                chains |= c
            if extra is not None:
                blobs |= extra[0]
                chains |= extra[1]
            live_blobs: set[str] = set()
            live_chains: set[str] = set()
            for image in self._all_records():
                b, c = self._reachable(image.target)
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
        platform: PlatformRequest = None,
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
        from libcontainerd.local._archive import read_archive

        with contextlib.ExitStack() as stack:
            if isinstance(source, (str, Path)):
                try:
                    tar = stack.enter_context(tarfile.open(source, "r:*"))
                except FileNotFoundError:
                    raise NotFound(f"archive {source} does not exist") from None
                except tarfile.TarError as exc:
                    raise InvalidArgument(f"{source} is not a tar archive ({exc})") from None
            else:
                spool = stack.enter_context(tempfile.TemporaryFile(dir=self.root))
                shutil.copyfileobj(source, spool)
                spool.seek(0)
                try:
                    tar = stack.enter_context(tarfile.open(fileobj=spool, mode="r:*"))
                except tarfile.TarError as exc:
                    raise InvalidArgument(f"the archive is not a tar archive ({exc})") from None
            images: builtins.list[Image] = []
            replaced: builtins.list[Descriptor] = []
            failure: BaseException | None = None
            with _flock(self._gc_lock, fcntl.LOCK_SH):
                entries = read_archive(tar, self.content, platform, base_name)
                try:
                    if unpack and os.geteuid() == 0:
                        for _, _, manifests in entries:
                            for manifest in manifests:
                                self._unpack(manifest)
                    for name, target, _ in entries:
                        image, old = self._write_record(name, target)
                        images.append(image)
                        if old is not None:
                            replaced.append(old.target)
                except BaseException as exc:
                    failure = exc
        if failure is not None:
            self._collect([target for _, target, _ in entries])
            raise failure
        self._collect(replaced)
        return images

    def export_archive(
        self,
        refs: Sequence[str],
        dest: Path | str | IO[bytes],
        *,
        platform: PlatformRequest = None,
    ) -> None:
        """Write ``refs`` as one OCI image-layout tarball to ``dest`` (path or binary file).

        With ``platform`` each image is written as its manifest for that platform; without,
        as its root (an index keeps only the platforms present locally).
        """
        from libcontainerd.local._archive import write_layout_tar

        if isinstance(refs, str):
            refs = [refs]
        entries: builtins.list[tuple[Image, Descriptor]] = []
        for ref in refs:
            image = self.get(ref)
            target = self._select(image, platform) if platform is not None else image.target
            entries.append((image, target))
        if not entries:
            raise InvalidArgument("export_archive needs at least one image reference")
        if isinstance(dest, (str, Path)):
            dest = Path(dest)
            tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.tmp")
            try:
                with open(tmp, "wb") as f:
                    write_layout_tar(f, self.content, entries)
                os.rename(tmp, dest)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        else:
            write_layout_tar(dest, self.content, entries)

    # -- container root filesystems ----------------------------------------------------

    def prepare_image_rootfs(
        self,
        ref: str,
        container_dir: Path | str,
        *,
        platform: PlatformRequest = None,
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
            children = self._children(manifest)
            config = self._read_json(children[0].digest)
            blobs, chains = self._reachable(manifest)
            layers: builtins.list[Path]
            if os.geteuid() == 0:
                layers = self._unpack(manifest)
            else:
                layers = [self.content.path(layer.digest) for layer in children[1:]]
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


def _clause(field: str, op: str | None, value: str) -> Callable[[Image], bool]:
    if op == "~=":
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise InvalidArgument(f"filter regex {value!r} is invalid ({exc})") from None
    if field == "platform" and op in ("==", "!="):
        wanted = Platform.parse(value)

    def get(image: Image) -> builtins.list[str]:
        if field == "name":
            return [image.name]
        if field == "target.digest":
            return [image.target.digest]
        if field == "target.mediatype":
            return [image.target.media_type]
        if field == "platform":
            return [_platform_key(p) for p in image.platforms]
        key = field[len("labels.") :]
        return [image.labels[key]] if key in image.labels else []

    def check(image: Image) -> bool:
        values = get(image)
        if op is None:
            return bool(values)
        if field == "platform" and op in ("==", "!="):
            hit = _matches(image.platforms, wanted)
            return hit if op == "==" else not hit
        if op == "==":
            return value in values
        if op == "!=":
            return value not in values
        return any(pattern.search(v) for v in values)

    return check
