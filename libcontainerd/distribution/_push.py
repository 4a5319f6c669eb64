"""Pushing: blob uploads (monolithic or chunked), cross-repository mounts, manifests.

Every function is a flow over a :class:`~libcontainerd.distribution._session.RegistrySession`
(see :mod:`libcontainerd.distribution._flow`). POST and PATCH requests are never
retried once they may have been processed.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from typing import BinaryIO

import httpx

from libcontainerd.distribution._fetch import ProgressCallback, blob_exists, whole_event
from libcontainerd.distribution._flow import Close, Flow
from libcontainerd.distribution._http import error_for
from libcontainerd.distribution._manifests import digest_of, verify
from libcontainerd.distribution._session import RegistrySession
from libcontainerd.errors import (
    DigestMismatch,
    InvalidArgument,
    NotFound,
    RegistryError,
    ResourceExhausted,
)
from libcontainerd.types import descriptor as media
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.digest import split_digest
from libcontainerd.types.progress import ProgressEvent, ProgressKind
from libcontainerd.types.reference import Reference

__all__ = ["mount_blob", "push_blob", "push_manifest", "push_scopes"]


def push_scopes(session: RegistrySession, ref: Reference) -> tuple[str, ...]:
    """The token scopes a push to ``ref``'s repository needs."""
    return (f"repository:{ref.path}:pull,push",)


def push_blob(
    session: RegistrySession,
    ref: Reference,
    descriptor: Descriptor,
    data: bytes | BinaryIO,
    progress: ProgressCallback | None = None,
    chunk_size: int | None = None,
) -> Flow[Descriptor]:
    """Upload a blob unless the repository has it: monolithic, or chunked when large.

    ``chunk_size`` forces a chunked upload in pieces of that size.
    """
    emit = progress or (lambda event: None)
    exists = yield from blob_exists(session, ref, descriptor.digest)
    if exists:
        emit(whole_event(ProgressKind.EXISTS, descriptor, ref))
        return descriptor
    response = yield from session.request(
        ref.domain, "POST", f"/v2/{ref.path}/blobs/uploads/", scopes=push_scopes(session, ref)
    )
    location = yield from upload_location(session, response, ref, descriptor.digest, (202,))
    yield from upload(session, ref, location, descriptor, data, emit, chunk_size)
    return descriptor


def mount_blob(
    session: RegistrySession,
    ref: Reference,
    descriptor: Descriptor,
    from_repository: str,
    data: bytes | BinaryIO | None = None,
    progress: ProgressCallback | None = None,
) -> Flow[bool]:
    """Mount a blob from another repository of the same registry.

    ``from_repository`` is a repository path in the same registry (``team/app``).
    Returns True when mounted; when the registry opens an upload instead (HTTP 202)
    the blob is uploaded from ``data`` (required then) and False is returned.
    """
    emit = progress or (lambda event: None)
    path = from_repository
    if path.startswith(f"{ref.domain}/"):
        path = path[len(ref.domain) + 1 :]
    elif "/" in path and ("." in path.split("/", 1)[0] or ":" in path.split("/", 1)[0]):
        raise InvalidArgument(
            f"cannot mount {descriptor.digest} from {from_repository!r} into {ref.name}: "
            "mounts only work within one registry; give the repository path"
        )
    source = Reference(ref.domain, path)
    scopes = (*push_scopes(session, ref), f"repository:{source.path}:pull")
    target = httpx.URL(f"/v2/{ref.path}/blobs/uploads/").copy_merge_params(
        {"mount": descriptor.digest, "from": source.path}
    )
    response = yield from session.request(ref.domain, "POST", str(target), scopes=scopes)
    if response.status_code == 201:
        yield Close(response)
        emit(whole_event(ProgressKind.EXISTS, descriptor, ref))
        return True
    location = yield from upload_location(session, response, ref, descriptor.digest, (202,))
    if data is None:
        raise NotFound(
            f"registry {ref.domain} could not mount {descriptor.digest} from "
            f"{source.path}; give the blob's data to upload it instead"
        )
    yield from upload(session, ref, location, descriptor, data, emit, None)
    return False


def upload_location(
    session: RegistrySession,
    response: httpx.Response,
    ref: Reference,
    digest: str,
    ok: Sequence[int],
) -> Flow[str]:
    """The upload URL a registry answered with (typed error for any other answer)."""
    if response.status_code not in ok:
        raise (yield from error_for(response, f"upload of blob {digest} to {ref.name}"))
    location = response.headers.get("Location", "")
    yield Close(response)
    if not location:
        raise RegistryError(
            f"registry {ref.domain} opened an upload for {digest} without a Location",
            status=response.status_code,
        )
    base = session.base_url(session.push_endpoint(ref.domain))
    return str(httpx.URL(base + "/").join(location))


def upload(
    session: RegistrySession,
    ref: Reference,
    location: str,
    descriptor: Descriptor,
    data: bytes | BinaryIO,
    emit: ProgressCallback,
    chunk_size: int | None,
) -> Flow[None]:
    """Upload ``data`` to an open upload session: in one PUT, or PATCH chunks then PUT."""
    stream: BinaryIO = io.BytesIO(data) if isinstance(data, bytes) else data
    scopes = push_scopes(session, ref)
    digest = descriptor.digest
    size = descriptor.size

    def report(done: int) -> None:
        emit(
            ProgressEvent(
                ProgressKind.UPLOADING, digest, descriptor.media_type, done, size, str(ref)
            )
        )

    report(0)
    if chunk_size is None and size <= session.chunk_threshold:
        body = stream.read(size + 1)
        if len(body) != size:
            raise DigestMismatch(
                f"blob {digest} has {len(body)} bytes locally, its descriptor says {size}",
                expected=digest,
            )
        verify(body, descriptor, f"local blob {digest}")
        put_url = str(httpx.URL(location).copy_merge_params({"digest": digest}))
        response = yield from session.request(
            ref.domain,
            "PUT",
            put_url,
            headers={"Content-Type": "application/octet-stream"},
            content=body,
            scopes=scopes,
        )
    else:
        piece = chunk_size or 8 * 1024 * 1024
        if piece <= 0:
            raise InvalidArgument(f"chunk_size must be positive, got {piece}")
        offset = 0
        hasher = hashlib.new(split_digest(digest)[0])
        while offset < size:
            chunk = stream.read(min(piece, size - offset))
            if not chunk:
                raise DigestMismatch(
                    f"local blob {digest} ended after {offset} of {size} bytes",
                    expected=digest,
                )
            hasher.update(chunk)
            response = yield from session.request(
                ref.domain,
                "PATCH",
                location,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                },
                content=chunk,
                scopes=scopes,
                retry=False,
            )
            location = yield from upload_location(session, response, ref, digest, (202,))
            offset += len(chunk)
            report(offset)
        actual = f"{split_digest(digest)[0]}:{hasher.hexdigest()}"
        if actual != digest:
            raise DigestMismatch(
                f"local blob {digest} does not match its digest (it hashes to {actual})",
                expected=digest,
                actual=actual,
            )
        put_url = str(httpx.URL(location).copy_merge_params({"digest": digest}))
        response = yield from session.request(
            ref.domain, "PUT", put_url, scopes=scopes, retry=False
        )
    if response.status_code not in (201, 204):
        raise (yield from error_for(response, f"upload of blob {digest} to {ref.name}"))
    yield Close(response)
    report(size)
    emit(whole_event(ProgressKind.DONE, descriptor, ref))


def push_manifest(
    session: RegistrySession,
    ref: Reference,
    data: bytes,
    media_type: str,
    *,
    by_digest: bool = False,
) -> Flow[Descriptor]:
    """PUT a manifest or index under ``ref``'s tag (or its digest when ``by_digest``)."""
    media.validate_media_type(media_type)
    if len(data) > session.max_manifest_size:
        raise ResourceExhausted(
            f"manifest is {len(data)} bytes, more than the {session.max_manifest_size} limit"
        )
    digest = digest_of(data, ref.digest or "sha256:")
    if ref.digest and digest != ref.digest:
        raise DigestMismatch(
            f"manifest hashes to {digest}, not to the digest in {ref}",
            expected=ref.digest,
            actual=digest,
        )
    target = digest if by_digest or not ref.tag else ref.tag
    response = yield from session.request(
        ref.domain,
        "PUT",
        f"/v2/{ref.path}/manifests/{target}",
        headers={"Content-Type": media_type},
        content=data,
        scopes=push_scopes(session, ref),
    )
    if response.status_code not in (200, 201, 202, 204):
        raise (yield from error_for(response, f"push of manifest {target} to {ref.name}"))
    announced = response.headers.get("Docker-Content-Digest", "").strip()
    yield Close(response)
    if (
        announced
        and announced.split(":", 1)[0] == digest.split(":", 1)[0]
        and (announced != digest)
    ):
        raise RegistryError(
            f"registry {ref.domain} stored the manifest under {announced}, expected {digest}",
            status=response.status_code,
        )
    return Descriptor(media_type=media_type, digest=digest, size=len(data))
