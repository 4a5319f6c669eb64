"""Resolving references and fetching manifests and blobs, with resume and verification.

Every function is a flow over a :class:`~libcontainerd.distribution._session.RegistrySession`
(see :mod:`libcontainerd.distribution._flow`). Blobs stream into a
:class:`~libcontainerd.content.protocol.BlobSink`; a dropped download resumes with
``Range`` from the bytes already received, and nothing is committed unverified.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TypeAlias

import attrs
import httpx

from libcontainerd.content.protocol import BlobSink
from libcontainerd.distribution._flow import Close, Flow, Read, Sleep
from libcontainerd.distribution._http import (
    content_range_start,
    error_for,
    read_body,
    transport_error,
)
from libcontainerd.distribution._manifests import (
    GENERIC_TYPES,
    MANIFEST_ACCEPT,
    SCHEMA1,
    Manifest,
    base_type,
    digest_of,
    json_object,
    manifest_media_type,
    verify,
)
from libcontainerd.distribution._session import RegistrySession
from libcontainerd.distribution.hosts import RegistryHost
from libcontainerd.errors import (
    DigestMismatch,
    NotFound,
    RegistryError,
    Unavailable,
    Unimplemented,
)
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.digest import split_digest
from libcontainerd.types.progress import ProgressEvent, ProgressKind
from libcontainerd.types.reference import Reference

__all__ = [
    "ProgressCallback",
    "blob_exists",
    "fetch_blob",
    "fetch_manifest",
    "resolve",
    "store_bytes",
    "whole_event",
]

ProgressCallback: TypeAlias = Callable[[ProgressEvent], None]


def whole_event(kind: ProgressKind, descriptor: Descriptor, ref: Reference) -> ProgressEvent:
    """A progress event for all of ``descriptor``'s bytes (stored, existing, pushed)."""
    size = descriptor.size
    return ProgressEvent(kind, descriptor.digest, descriptor.media_type, size, size, str(ref))


def resolve(session: RegistrySession, ref: Reference) -> Flow[tuple[Descriptor, bytes | None]]:
    """Resolve ``ref`` to the descriptor of its manifest or index.

    Returns the manifest bytes too when they had to be fetched to verify the digest
    (a tag), so callers do not fetch them twice. With ``hosts.toml`` mirrors, a tag
    is resolved on the hosts with the ``resolve`` capability and a digest on those
    with ``pull``, in order, the server last.
    """
    capability = "pull" if ref.digest else "resolve"
    return (
        yield from session.on_hosts(
            ref.domain, capability, lambda host: resolve_at(session, ref, host)
        )
    )


def resolve_at(
    session: RegistrySession, ref: Reference, endpoint: RegistryHost
) -> Flow[tuple[Descriptor, bytes | None]]:
    """Resolve ``ref`` on one host (HEAD first; GET when the digest must be checked)."""
    target = ref.digest or ref.tag
    path = f"/v2/{ref.path}/manifests/{target}"
    scopes = (f"repository:{ref.path}:pull",)
    headers = {"Accept": MANIFEST_ACCEPT}
    response = yield from session.request(
        ref.domain, "HEAD", path, endpoint=endpoint, headers=headers, scopes=scopes
    )
    status = response.status_code
    yield Close(response)
    if status == 404:
        raise NotFound(f"image {ref} not found in registry {endpoint.host}")
    if status == 200 and ref.digest:
        header_digest = response.headers.get("Docker-Content-Digest", "")
        content_type = base_type(response.headers.get("Content-Type"))
        length = response.headers.get("Content-Length", "")
        if content_type in SCHEMA1:
            raise Unimplemented(
                f"image {ref} is a Docker schema 1 manifest ({content_type}), which is "
                "not supported; push it again with a current tool"
            )
        if (
            length.isdigit()
            and content_type not in GENERIC_TYPES
            and header_digest in ("", ref.digest)
            and int(length) <= session.max_manifest_size
        ):
            # The digest is the one asked for: the bytes will be checked on fetch.
            return Descriptor(media_type=content_type, digest=ref.digest, size=int(length)), None
    data, content_type, header_digest = yield from get_manifest(session, ref, target, "", endpoint)
    digest = digest_of(data, ref.digest or header_digest or "sha256:")
    if ref.digest and digest != ref.digest:
        raise DigestMismatch(
            f"registry {ref.domain} sent a manifest for {ref} whose digest is {digest}",
            expected=ref.digest,
            actual=digest,
        )
    if header_digest and digest_of(data, header_digest) != header_digest:
        raise DigestMismatch(
            f"registry {ref.domain} announced digest {header_digest} for {ref} but the "
            "bytes it sent do not match it",
            expected=header_digest,
            actual=digest_of(data, header_digest),
        )
    media_type = manifest_media_type(content_type, data, f"manifest of {ref}")
    return Descriptor(media_type=media_type, digest=digest, size=len(data)), data


def get_manifest(
    session: RegistrySession, ref: Reference, target: str, media_type: str, endpoint: RegistryHost
) -> Flow[tuple[bytes, str, str]]:
    """GET manifest ``target`` of ``ref`` from ``endpoint``: (bytes, content type, digest)."""
    path = f"/v2/{ref.path}/manifests/{target}"
    accept = MANIFEST_ACCEPT if not media_type else f"{media_type}, {MANIFEST_ACCEPT}"
    response = yield from session.request(
        ref.domain,
        "GET",
        path,
        endpoint=endpoint,
        headers={"Accept": accept},
        scopes=(f"repository:{ref.path}:pull",),
    )
    if response.status_code != 200:
        what = f"manifest {target} of {ref.domain}/{ref.path}"
        if response.status_code == 404:
            yield Close(response)
            raise NotFound(f"image {ref.domain}/{ref.path}@{target} not found")
        raise (yield from error_for(response, what))
    content_type = response.headers.get("Content-Type", "")
    header_digest = response.headers.get("Docker-Content-Digest", "").strip()
    data = yield from read_body(
        response, session.max_manifest_size, f"manifest {target} of {ref.domain}/{ref.path}"
    )
    return data, content_type, header_digest


def fetch_manifest(
    session: RegistrySession, ref: Reference, descriptor: Descriptor | None
) -> Flow[Manifest]:
    """Fetch and verify the manifest ``descriptor`` (resolving ``ref`` when None)."""
    data: bytes | None = None
    if descriptor is None:
        descriptor, data = yield from resolve(session, ref)
    if data is None:
        wanted = descriptor

        def attempt(endpoint: RegistryHost) -> Flow[bytes]:
            fetched, _, _ = yield from get_manifest(
                session, ref, wanted.digest, wanted.media_type, endpoint
            )
            verify(fetched, wanted, f"manifest {wanted.digest} of {ref.name}")
            return fetched

        data = yield from session.on_hosts(ref.domain, "pull", attempt)
    content = json_object(data, f"manifest {descriptor.digest} of {ref.name}")
    media_type = manifest_media_type(
        descriptor.media_type, data, f"manifest {descriptor.digest} of {ref.name}"
    )
    if base_type(media_type) != base_type(descriptor.media_type):
        descriptor = attrs.evolve(descriptor, media_type=media_type)
    return Manifest(descriptor=descriptor, data=data, content=content)


def blob_exists(
    session: RegistrySession, ref: Reference, digest: str, endpoint: RegistryHost | None = None
) -> Flow[bool]:
    """Whether the repository of ``ref`` has the blob ``digest``.

    Asks ``endpoint``, by default the host pushes go to (mirrors are not asked).
    """
    split_digest(digest)
    response = yield from session.request(
        ref.domain,
        "HEAD",
        f"/v2/{ref.path}/blobs/{digest}",
        endpoint=endpoint or session.push_endpoint(ref.domain),
        scopes=(f"repository:{ref.path}:pull",),
    )
    status = response.status_code
    yield Close(response)
    if status == 200:
        return True
    if status == 404:
        return False
    raise RegistryError(
        f"checking blob {digest} in {ref.name}: registry answered HTTP {status}",
        status=status,
    )


def fetch_blob(
    session: RegistrySession,
    ref: Reference,
    descriptor: Descriptor,
    sink: BlobSink,
    progress: ProgressCallback | None = None,
) -> Flow[Descriptor]:
    """Stream blob ``descriptor`` into ``sink``, verifying size and digest on the way.

    A dropped connection resumes with ``Range`` from the bytes already received
    (hashing continues where it stopped). Nothing is committed unless verified.
    """
    emit = progress or (lambda event: None)
    digest = descriptor.digest
    split_digest(digest)  # refuse a malformed digest before any traffic
    if sink.exists(digest):
        emit(whole_event(ProgressKind.EXISTS, descriptor, ref))
        return descriptor
    return (
        yield from session.on_hosts(
            ref.domain,
            "pull",
            lambda host: fetch_blob_at(session, ref, descriptor, sink, emit, host),
        )
    )


def fetch_blob_at(
    session: RegistrySession,
    ref: Reference,
    descriptor: Descriptor,
    sink: BlobSink,
    emit: ProgressCallback,
    endpoint: RegistryHost,
) -> Flow[Descriptor]:
    """Download blob ``descriptor`` from one host, resuming dropped transfers."""
    digest = descriptor.digest
    algorithm, _ = split_digest(digest)
    writer = sink.writer(descriptor)
    committed = False
    try:
        hasher = hashlib.new(algorithm)
        received = 0
        failures = 0
        path = f"/v2/{ref.path}/blobs/{digest}"
        scopes = (f"repository:{ref.path}:pull",)

        def report(kind: ProgressKind) -> None:
            emit(
                ProgressEvent(
                    kind, digest, descriptor.media_type, received, descriptor.size, str(ref)
                )
            )

        report(ProgressKind.DOWNLOADING)
        while True:
            headers = {"Range": f"bytes={received}-"} if received else {}
            response = yield from session.request(
                ref.domain, "GET", path, endpoint=endpoint, headers=headers, scopes=scopes
            )
            if response.status_code == 404:
                yield Close(response)
                raise NotFound(f"blob {digest} not found in {ref.name}")
            if response.status_code not in (200, 206):
                raise (yield from error_for(response, f"blob {digest} of {ref.name}"))
            interrupted = False
            try:
                if response.status_code == 200 and received:
                    # The server ignored the Range: start again from byte 0.
                    writer.truncate()
                    hasher = hashlib.new(algorithm)
                    received = 0
                elif response.status_code == 206:
                    start = content_range_start(response.headers.get("Content-Range"))
                    if start != received:
                        raise RegistryError(
                            f"registry {ref.domain} answered the range request for blob "
                            f"{digest} from byte {received} with bytes from {start}",
                            status=206,
                        )
                while True:
                    try:
                        chunk: bytes = yield Read(response)
                    except httpx.TransportError as error:
                        failures += 1
                        if failures > session.retry.max_retries:
                            raise transport_error(ref.domain, error, failures) from error
                        interrupted = True
                        break
                    if not chunk:
                        break
                    received += len(chunk)
                    if received > descriptor.size:
                        raise DigestMismatch(
                            f"blob {digest} of {ref.name} is larger than the "
                            f"{descriptor.size} bytes its descriptor announces",
                            expected=digest,
                        )
                    hasher.update(chunk)
                    writer.write(chunk)
                    report(ProgressKind.DOWNLOADING)
            finally:
                yield Close(response)
            if not interrupted and received < descriptor.size:
                # The body ended early without an error: treat it as a drop.
                failures += 1
                if failures > session.retry.max_retries:
                    raise Unavailable(
                        f"blob {digest} of {ref.name}: the registry keeps ending the "
                        f"download early ({received} of {descriptor.size} bytes)"
                    )
                interrupted = True
            if interrupted:
                yield Sleep(session.retry.delay(failures - 1))
                continue
            break
        report(ProgressKind.VERIFYING)
        actual = f"{algorithm}:{hasher.hexdigest()}"
        if actual != digest:
            raise DigestMismatch(
                f"blob {digest} of {ref.name} does not match its digest (got {actual}); "
                "nothing was stored",
                expected=digest,
                actual=actual,
            )
        writer.commit()
        committed = True
        report(ProgressKind.DONE)
        return descriptor
    finally:
        if not committed:
            writer.abort()


def store_bytes(
    session: RegistrySession,
    sink: BlobSink,
    descriptor: Descriptor,
    data: bytes,
    ref: Reference,
    emit: ProgressCallback,
) -> None:
    """Write already verified ``data`` (a manifest) into ``sink`` unless it is there."""
    if sink.exists(descriptor.digest):
        emit(whole_event(ProgressKind.EXISTS, descriptor, ref))
        return
    # ``data`` was verified against ``descriptor`` when it was fetched: no second hash.
    writer = sink.writer(descriptor)
    try:
        writer.write(data)
        writer.commit()
    finally:
        writer.abort()
    emit(whole_event(ProgressKind.DONE, descriptor, ref))
