"""Build small, deterministic OCI images from files on this machine.

Tests, examples and users need images without a network. This module makes them from the
host's static busybox (Debian package ``busybox-static``):

* :func:`busybox_rootfs` writes a minimal root filesystem into a directory, ready to be an
  OCI runtime bundle's ``rootfs`` for runc or crun;
* :func:`build_image` writes an OCI image-layout directory holding an image of that rootfs
  (plus optional extra layers), for one platform or as a multi-platform index;
* :func:`write_layout_archive` and :func:`write_docker_archive` turn a layout into the tar
  archives that ``import`` code paths (``oci-archive`` and ``docker save`` formats) read;
* :func:`build_layer` makes one layer blob from a list of :class:`TarEntrySpec`; it writes
  whatever it is given, hostile entries included (absolute names, ``..``, symlinks that
  point outside the root, hardlinks, devices, whiteouts), so unpack code can be tested
  against them.

Everything is deterministic: the same inputs give byte-identical blobs and so identical
digests (entries sorted, mtimes and owners fixed, gzip written without name or time).

The files of every platform in a multi-platform image are the host's files: the other
entries serve platform *selection* tests; they cannot run on the host.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import types
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from libcontainerd.content.archive import REF_NAME_ANNOTATION, canonical_json
from libcontainerd.content.archive_export import (
    OCI_LAYOUT,
    oci_index_json,
    write_archive_file,
    write_oci_archive,
)
from libcontainerd.content.archive_export import (
    write_docker_archive as write_docker_tar,
)
from libcontainerd.content.directory import DirectoryContentStore
from libcontainerd.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from libcontainerd.testing.busybox import (
    busybox_entries,
    busybox_rootfs,
    find_busybox,
    with_parents,
)
from libcontainerd.testing.layers import (
    OPAQUE_WHITEOUT,
    Compression,
    EntryInput,
    LayerBlob,
    TarEntrySpec,
    build_layer,
    check_compression,
    sha256_hex_digest,
    whiteout,
)
from libcontainerd.types import descriptor as media
from libcontainerd.types import platform as platforms_mod
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.platform import Platform

__all__ = [
    "DEFAULT_CREATED",
    "DEFAULT_PATH_ENV",
    "OPAQUE_WHITEOUT",
    "BuiltImage",
    "ImageConfigSpec",
    "LayerBlob",
    "TarEntrySpec",
    "build_image",
    "build_layer",
    "busybox_rootfs",
    "find_busybox",
    "host_platform",
    "whiteout",
    "write_docker_archive",
    "write_layout_archive",
]

DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""The ``PATH`` every image gets unless its :class:`ImageConfigSpec` says otherwise."""

DEFAULT_CREATED = "1970-01-01T00:00:00Z"
"""The fixed creation time written into configs, so that digests do not change with time."""

MediaTypes = Literal["oci", "docker"]


# --------------------------------------------------------------------------------------
# Platforms
# --------------------------------------------------------------------------------------


def _parse_platform(text: str) -> Platform:
    if not isinstance(text, str):
        raise InvalidArgument(f"platform must be a string like 'linux/amd64', got {text!r}")
    return Platform.parse(text)


def host_platform() -> str:
    """This machine's platform as ``os/architecture[/variant]`` (e.g. ``linux/amd64``)."""
    return platforms_mod.default_string()


# --------------------------------------------------------------------------------------
# Image config and the built image
# --------------------------------------------------------------------------------------


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)):
        raise InvalidArgument(
            f"expected a sequence of strings, got the single string {value!r}; "
            "write ('sh', '-c', '...') rather than 'sh -c ...'"
        )
    out = tuple(value)
    for item in out:
        if not isinstance(item, str):
            raise InvalidArgument(f"expected strings, got {item!r}")
    return out


def _frozen_labels(value: Mapping[str, str] | None) -> Mapping[str, str]:
    labels = dict(value or {})
    for key, val in labels.items():
        if not isinstance(key, str) or not key or not isinstance(val, str):
            raise InvalidArgument(f"labels must map non-empty strings to strings: {key!r}")
    return types.MappingProxyType(dict(sorted(labels.items())))


_PORT_RE = re.compile(r"^([0-9]{1,5})(?:/(tcp|udp|sctp))?$")


def _ports(value: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for port in _str_tuple(value):
        m = _PORT_RE.match(port)
        if not m or not 0 < int(m.group(1)) < 65536:
            raise InvalidArgument(
                f"exposed port {port!r} must look like '80', '80/tcp' or '53/udp'"
            )
        out.append(f"{int(m.group(1))}/{m.group(2) or 'tcp'}")
    return tuple(sorted(set(out)))


@attrs.frozen
class ImageConfigSpec:
    """What goes into the ``config`` object of an OCI image config.

    Sequences must be tuples or lists of strings (a bare string is refused so ``"sh -c x"``
    is not silently split into letters). ``env`` entries are ``KEY=value``; ``working_dir``
    is absolute; ``exposed_ports`` are ``"80"``, ``"80/tcp"`` or ``"53/udp"`` (normalized
    to ``port/proto``); ``labels`` is stored as a read-only mapping.
    """

    entrypoint: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    cmd: tuple[str, ...] = attrs.field(default=("sh",), converter=_str_tuple)
    env: tuple[str, ...] = attrs.field(default=(DEFAULT_PATH_ENV,), converter=_str_tuple)
    working_dir: str = "/"
    user: str = ""
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_labels, hash=False)
    exposed_ports: tuple[str, ...] = attrs.field(default=(), converter=_ports)
    stop_signal: str | None = None

    def __attrs_post_init__(self) -> None:
        for item in self.env:
            key, sep, _ = item.partition("=")
            if not sep or not key:
                raise InvalidArgument(f"env entry {item!r} must be KEY=value")
        if not isinstance(self.working_dir, str) or (
            self.working_dir and not self.working_dir.startswith("/")
        ):
            raise InvalidArgument(f"working_dir {self.working_dir!r} must be an absolute path")
        if not isinstance(self.user, str):
            raise InvalidArgument("user must be a string such as 'app' or '1000:1000'")
        if self.stop_signal is not None and (
            not isinstance(self.stop_signal, str) or not self.stop_signal
        ):
            raise InvalidArgument("stop_signal must be a signal name such as 'SIGTERM'")

    def to_oci(self) -> dict[str, Any]:
        """The ``config`` object as the image config JSON spells it (empty fields left out)."""
        out: dict[str, Any] = {}
        if self.user:
            out["User"] = self.user
        if self.exposed_ports:
            out["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        out["Env"] = list(self.env)
        if self.entrypoint:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            out["Cmd"] = list(self.cmd)
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        return out


def _frozen_map(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value))


@attrs.frozen
class BuiltImage:
    """An image written by :func:`build_image` into an OCI image-layout directory.

    ``target`` is the descriptor that ``index.json`` holds for this image (``mediaType``,
    ``digest``, ``size``, annotations and, for a single-platform image, ``platform``).
    ``index_digest`` is ``target["digest"]``: the digest of the **index blob** (image index
    or Docker manifest list) for a multi-platform image, or of the **manifest** for a
    single-platform one; it is what ``name@digest`` references resolve to.

    The per-platform mappings are keyed by the normalized platform string
    (``"linux/amd64"``, ``"linux/arm64/v8"``) in the order the platforms were given.
    ``layer_digests`` are blob (compressed) digests, ``diff_ids`` the uncompressed ones.
    """

    layout: Path
    index_digest: str
    manifest_digests: Mapping[str, str] = attrs.field(converter=_frozen_map, hash=False)
    config_digests: Mapping[str, str] = attrs.field(converter=_frozen_map, hash=False)
    layer_digests: Mapping[str, tuple[str, ...]] = attrs.field(converter=_frozen_map, hash=False)
    diff_ids: Mapping[str, tuple[str, ...]] = attrs.field(converter=_frozen_map, hash=False)
    ref_name: str
    target: Mapping[str, Any] = attrs.field(converter=_frozen_map, hash=False)
    media_types: MediaTypes = "oci"
    multi_platform: bool = False

    @property
    def platforms(self) -> tuple[str, ...]:
        """The image's platforms, normalized, in the order given to :func:`build_image`."""
        return tuple(self.manifest_digests)

    @property
    def reference(self) -> str:
        """The ``oci:`` transport reference of this image (``oci:<layout>:<ref_name>``)."""
        return f"oci:{self.layout}:{self.ref_name}"

    def blob_path(self, digest: str) -> Path:
        """Path of the blob ``digest`` inside the layout."""
        algorithm, _, encoded = digest.partition(":")
        if algorithm != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", encoded):
            raise InvalidArgument(f"{digest!r} is not a sha256 digest")
        return self.layout / "blobs" / "sha256" / encoded

    def read_json(self, digest: str) -> Any:
        """Parse the JSON blob ``digest`` (a manifest, index or config) from the layout."""
        return json.loads(self.blob_path(digest).read_bytes())


# --------------------------------------------------------------------------------------
# build_image
# --------------------------------------------------------------------------------------

_REF_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_REF_NAME_RE = re.compile(rf"^{_REF_COMPONENT}(?:/{_REF_COMPONENT})*$")


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256_hex_digest(data), "size": len(data), **extra}


def build_image(
    layout: Path,
    *,
    platforms: Sequence[str] | None = None,
    config: ImageConfigSpec | None = None,
    extra_files: Mapping[str, EntryInput] | None = None,
    extra_layers: Sequence[Mapping[str, EntryInput] | LayerBlob] = (),
    ref_name: str = "latest",
    multi_platform_index: bool | None = None,
    compression: Compression = "gzip",
    media_types: MediaTypes = "oci",
    busybox: Path | str | None = None,
    created: str = DEFAULT_CREATED,
    annotations: Mapping[str, str] | None = None,
) -> BuiltImage:
    """Build a busybox image into the OCI image-layout directory ``layout``.

    Layers, bottom to top: the :func:`busybox_rootfs` tree; ``extra_files`` (path ->
    bytes or :class:`TarEntrySpec`, missing parent directories added) as a second layer
    when given; then each of ``extra_layers``, either a file mapping like ``extra_files`` or
    a :class:`LayerBlob` from :func:`build_layer` inserted verbatim (the way to put a
    hostile layer into an image). Paths in mappings are relative to the image root; a
    leading ``/`` is dropped and ``..`` refused. Files under ``usr/bin`` land in ``bin``
    (``usr/bin`` is a symlink to it), so prefer ``bin/`` paths.

    ``platforms`` (default: :func:`host_platform`) are ``os/arch[/variant]`` strings; each
    gets its own config and manifest over the same layers. ``multi_platform_index``
    (default: more than one platform) writes an image index (Docker manifest list with
    ``media_types="docker"``) and points ``index.json`` at it; otherwise ``index.json``
    points straight at the single manifest, with its ``platform``. ``media_types="docker"``
    uses Docker schema 2 media types for manifests, configs and layers (``index.json``
    itself is always an OCI index, as the layout requires; note that some readers, such as
    skopeo 1.9's ``oci:`` transport, only follow ``index.json`` entries with OCI media
    types, so use ``"docker"`` for registry pushes and archives rather than layout reads).
    ``ref_name`` becomes the ``org.opencontainers.image.ref.name`` annotation;
    ``annotations`` are added to the manifests (and index). ``created`` is the fixed
    creation time written into configs.

    ``layout`` may be missing, an empty directory, or an existing OCI layout, to which the
    image is added (an entry with the same ref name is replaced). The output is
    deterministic: the same arguments give the same digests. Blobs are written before
    ``index.json`` is atomically replaced, so a failure never leaves a half-updated index.
    """
    layout = Path(layout)
    config = ImageConfigSpec() if config is None else config
    if not isinstance(config, ImageConfigSpec):
        raise InvalidArgument(f"config must be an ImageConfigSpec, got {type(config).__name__}")
    check_compression(compression)
    if media_types not in ("oci", "docker"):
        raise InvalidArgument(f"media_types must be 'oci' or 'docker', got {media_types!r}")
    if not isinstance(ref_name, str) or not _REF_NAME_RE.match(ref_name):
        raise InvalidArgument(
            f"ref_name {ref_name!r} is not a valid OCI ref name "
            "(letters, digits and -._:@+ separators, '/'-separated components)"
        )
    extra_annotations = dict(annotations or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in extra_annotations.items()):
        raise InvalidArgument("annotations must map strings to strings")
    if isinstance(platforms, str):
        raise InvalidArgument(f"platforms must be a sequence of strings, e.g. [{platforms!r}]")
    parsed = [_parse_platform(p) for p in (platforms or [host_platform()])]
    keys = [p.format() for p in parsed]
    if len(set(keys)) != len(keys):
        raise InvalidArgument(f"platforms {list(platforms or [])!r} name a platform twice")
    multi = len(parsed) > 1 if multi_platform_index is None else bool(multi_platform_index)
    if not multi and len(parsed) > 1:
        raise InvalidArgument(
            f"{len(parsed)} platforms need an index; drop multi_platform_index=False"
        )
    existing = _existing_index(layout)

    docker = media_types == "docker"
    config_type = media.MEDIA_TYPE_DOCKER_CONFIG if docker else media.MEDIA_TYPE_OCI_CONFIG
    manifest_type = media.MEDIA_TYPE_DOCKER_MANIFEST if docker else media.MEDIA_TYPE_OCI_MANIFEST
    index_type = media.MEDIA_TYPE_DOCKER_MANIFEST_LIST if docker else media.MEDIA_TYPE_OCI_INDEX
    blobs: dict[str, bytes] = {}

    # Layers are shared by every platform: build them once.
    base = busybox_entries(busybox)
    seen: dict[str, TarEntrySpec] = dict(base)
    layers: list[tuple[LayerBlob, str]] = [(build_layer(base, compression=compression), "busybox")]
    file_layers: list[tuple[Mapping[str, EntryInput] | LayerBlob, str]] = []
    if extra_files:
        file_layers.append((extra_files, "extra files"))
    file_layers.extend((layer, f"extra layer {i}") for i, layer in enumerate(extra_layers, 1))
    for item, what in file_layers:
        if isinstance(item, LayerBlob):
            layers.append((item, f"{what} (prebuilt)"))
            continue
        if not isinstance(item, Mapping):
            raise InvalidArgument(
                f"{what} must be a mapping of paths or a LayerBlob, got {type(item).__name__}"
            )
        entries = with_parents(item, seen)
        seen.update(entries)
        layers.append((build_layer(entries, compression=compression), what))

    layer_descs: list[dict[str, Any]] = []
    for blob, _ in layers:
        if blob.compressed:
            layer_type = (
                media.MEDIA_TYPE_DOCKER_LAYER_GZIP if docker else media.MEDIA_TYPE_OCI_LAYER_GZIP
            )
        else:
            layer_type = media.MEDIA_TYPE_DOCKER_LAYER if docker else media.MEDIA_TYPE_OCI_LAYER
        blobs[blob.digest] = blob.data
        layer_descs.append({"mediaType": layer_type, "digest": blob.digest, "size": len(blob.data)})
    diff_ids = tuple(blob.diff_id for blob, _ in layers)
    layer_digests = tuple(blob.digest for blob, _ in layers)
    history = [
        {"created": created, "created_by": f"libcontainerd.testing.image_builder: {what}"}
        for _, what in layers
    ]

    manifest_descs: list[dict[str, Any]] = []
    manifest_digests: dict[str, str] = {}
    config_digests: dict[str, str] = {}
    for plat, key in zip(parsed, keys, strict=True):
        config_json: dict[str, Any] = {
            "created": created,
            "architecture": plat.architecture,
            "os": plat.os,
            **({"variant": plat.variant} if plat.variant else {}),
            "config": config.to_oci(),
            "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
            "history": history,
        }
        config_bytes = canonical_json(config_json)
        config_desc = _descriptor(config_type, config_bytes)
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": config_desc,
            "layers": layer_descs,
        }
        if extra_annotations and not docker:
            manifest["annotations"] = extra_annotations
        manifest_bytes = canonical_json(manifest)
        blobs[config_desc["digest"]] = config_bytes
        blobs[sha256_hex_digest(manifest_bytes)] = manifest_bytes
        manifest_descs.append(
            _descriptor(manifest["mediaType"], manifest_bytes, platform=plat.to_dict())
        )
        manifest_digests[key] = sha256_hex_digest(manifest_bytes)
        config_digests[key] = config_desc["digest"]

    ref_annotations = {**extra_annotations, REF_NAME_ANNOTATION: ref_name}
    if multi:
        index: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": index_type,
            "manifests": manifest_descs,
        }
        if extra_annotations and not docker:
            index["annotations"] = extra_annotations
        index_bytes = canonical_json(index)
        blobs[sha256_hex_digest(index_bytes)] = index_bytes
        target = _descriptor(index["mediaType"], index_bytes, annotations=ref_annotations)
    else:
        target = {**manifest_descs[0], "annotations": ref_annotations}

    _write_layout(layout, blobs, target, existing)
    return BuiltImage(
        layout=layout,
        index_digest=target["digest"],
        manifest_digests=manifest_digests,
        config_digests=config_digests,
        layer_digests=dict.fromkeys(keys, layer_digests),
        diff_ids=dict.fromkeys(keys, diff_ids),
        ref_name=ref_name,
        target=target,
        media_types=media_types,
        multi_platform=multi,
    )


def _existing_index(layout: Path) -> list[dict[str, Any]] | None:
    """The manifests of an existing layout at ``layout``, or ``None`` for a new one."""
    if not layout.exists():
        return None
    if not layout.is_dir():
        raise FailedPrecondition(f"{layout} exists and is not a directory")
    if not any(layout.iterdir()):
        return None
    marker, index = layout / "oci-layout", layout / "index.json"
    if not marker.is_file() or not index.is_file():
        raise FailedPrecondition(
            f"{layout} is neither empty nor an OCI image layout (no oci-layout/index.json); "
            "choose an empty or missing directory"
        )
    try:
        data = json.loads(index.read_bytes())
        manifests = data["manifests"]
        if not isinstance(manifests, list):
            raise TypeError("manifests is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise FailedPrecondition(
            f"{index} is not a valid image index ({exc}); fix or remove it"
        ) from exc
    return manifests


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_layout(
    layout: Path,
    blobs: Mapping[str, bytes],
    target: Mapping[str, Any],
    existing: list[dict[str, Any]] | None,
) -> None:
    created = not layout.exists()
    try:
        blob_dir = layout / "blobs" / "sha256"
        blob_dir.mkdir(parents=True, exist_ok=True)
        for digest in sorted(blobs):
            path = blob_dir / digest.partition(":")[2]
            if not path.exists():
                _atomic_write(path, blobs[digest])
        if existing is None:
            _atomic_write(layout / "oci-layout", OCI_LAYOUT)
            manifests: list[dict[str, Any]] = []
        else:
            ref = target["annotations"][REF_NAME_ANNOTATION]
            manifests = [
                m for m in existing if (m.get("annotations") or {}).get(REF_NAME_ANNOTATION) != ref
            ]
        manifests.append(dict(target))
        _atomic_write(layout / "index.json", oci_index_json(manifests))
    except BaseException:
        # A new layout is removed again (an empty directory the caller made is kept, empty);
        # an existing one keeps its old index.json, plus at most some unreferenced blobs.
        if created:
            shutil.rmtree(layout, ignore_errors=True)
        elif existing is None:
            for child in ("blobs", "oci-layout", "index.json"):
                with contextlib.suppress(FileNotFoundError):
                    if (layout / child).is_dir():
                        shutil.rmtree(layout / child)
                    else:
                        (layout / child).unlink()
        raise


# --------------------------------------------------------------------------------------
# Archives
# --------------------------------------------------------------------------------------


def write_layout_archive(layout: Path, archive: Path) -> Path:
    """Write the OCI layout directory ``layout`` as an uncompressed tar at ``archive``.

    The archive holds ``oci-layout``, ``index.json`` and the blobs its images need at
    its top level (the ``oci-archive`` format), sorted, with fixed mtimes and owners, so
    it is deterministic. The file appears atomically; returns ``archive``.
    """
    layout = Path(layout)
    if not (layout / "oci-layout").is_file() or not (layout / "index.json").is_file():
        raise NotFound(f"{layout} is not an OCI image layout (no oci-layout or index.json)")
    manifests = _existing_index(layout) or []
    store = DirectoryContentStore(layout)
    write_archive_file(archive, lambda out: write_oci_archive(out, store, manifests))
    return Path(archive)


_REPO_TAG_RE = re.compile(
    r"^(?P<repo>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?::[0-9]+)?"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?$"
)


def write_docker_archive(
    built: BuiltImage, archive: Path, *, repo_tag: str, platform: str | None = None
) -> Path:
    """Write one platform of ``built`` as a ``docker save`` archive at ``archive``.

    The tar holds ``manifest.json`` (``[{"Config", "RepoTags", "Layers"}]``), the config
    as ``<config hex>.json``, each layer uncompressed as ``<diff_id hex>/layer.tar`` and a
    ``repositories`` file. ``repo_tag`` is ``name[:tag]`` (``:latest`` when no tag).
    ``platform`` picks the manifest of a multi-platform image; it defaults to the only
    platform, else the host's. Returns ``archive``, written atomically.
    """
    m = _REPO_TAG_RE.match(repo_tag) if isinstance(repo_tag, str) else None
    if m is None:
        raise InvalidArgument(
            f"repo_tag {repo_tag!r} must be a lower-case repository with an optional tag, "
            "e.g. 'example.com/busybox:1' (digests are not allowed in docker archives)"
        )
    repo, tag = m.group("repo"), m.group("tag") or "latest"
    if platform is None:
        if len(built.manifest_digests) == 1:
            key = next(iter(built.manifest_digests))
        else:
            key = host_platform()
    else:
        key = _parse_platform(platform).format()
    if key not in built.manifest_digests:
        raise NotFound(
            f"image has no platform {key!r}; pass platform= one of "
            f"{', '.join(built.manifest_digests)}"
        )
    digest = built.manifest_digests[key]
    data = built.blob_path(digest).read_bytes()
    manifest = Descriptor(media_type=json.loads(data)["mediaType"], digest=digest, size=len(data))
    store = DirectoryContentStore(built.layout)
    write_archive_file(
        archive, lambda out: write_docker_tar(out, store, manifest, [f"{repo}:{tag}"])
    )
    return Path(archive)
