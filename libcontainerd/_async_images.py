"""The asyncio twin of a blocking image service, shared by both backends."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from libcontainerd._async_runner import Runner
from libcontainerd.async_shortcuts import AsyncImageShortcuts
from libcontainerd.client import ImageService, PlatformRequest, ProgressCallback
from libcontainerd.types.auth import Credentials
from libcontainerd.types.descriptor import Descriptor
from libcontainerd.types.image import Image

__all__ = ["AsyncImageServiceFacade"]


class AsyncImageServiceFacade(AsyncImageShortcuts):
    """The asyncio twin of a blocking :class:`~libcontainerd.client.ImageService`.

    ``service`` is called on a pool thread for each operation, so a backend may build its
    image service lazily without blocking the event loop. Keyword arguments beyond the
    contract are passed through to the backend.
    """

    def __init__(self, service: Callable[[], ImageService], run: Runner) -> None:
        self._service = service
        self._run = run

    @property
    def sync(self) -> ImageService:
        """The blocking image service this one drives."""
        return self._service()

    async def pull(
        self,
        ref: str,
        *,
        platform: PlatformRequest | None = None,
        progress: ProgressCallback | None = None,
        auth: Credentials | None = None,
        unpack: bool = True,
        **options: Any,
    ) -> Image:
        """Pull ``ref`` for ``platform`` (default: this host) and, by default, unpack it."""
        return await self._run(
            lambda: self._service().pull(
                ref, platform=platform, progress=progress, auth=auth, unpack=unpack, **options
            )
        )

    async def push(
        self,
        ref: str,
        *,
        source: str | None = None,
        platform: PlatformRequest | None = None,
        progress: ProgressCallback | None = None,
        auth: Credentials | None = None,
        **options: Any,
    ) -> Descriptor:
        """Push the local image ``source`` (default: ``ref``) to ``ref``'s registry."""
        return await self._run(
            lambda: self._service().push(
                ref, source=source, platform=platform, progress=progress, auth=auth, **options
            )
        )

    async def list(self, filters: Sequence[str] = (), **options: Any) -> builtins.list[Image]:
        """Every image record, optionally filtered."""
        return await self._run(lambda: self._service().list(filters, **options))

    async def get(self, ref: str, **options: Any) -> Image:
        """One image record; ``NotFound`` when absent."""
        return await self._run(lambda: self._service().get(ref, **options))

    async def remove(self, ref: str, *, sync: bool = False) -> None:
        """Remove an image record; ``sync`` waits for garbage collection."""
        await self._run(lambda: self._service().remove(ref, sync=sync))

    async def import_archive(
        self,
        source: Path | str | IO[bytes],
        *,
        platform: PlatformRequest | None = None,
        **options: Any,
    ) -> builtins.list[Image]:
        """Import an OCI image-layout or docker-archive tarball."""
        return await self._run(
            lambda: self._service().import_archive(source, platform=platform, **options)
        )

    async def export_archive(
        self,
        refs: Sequence[str],
        dest: Path | str | IO[bytes],
        *,
        platform: PlatformRequest | None = None,
        **options: Any,
    ) -> None:
        """Write the images ``refs`` into an OCI image-layout tarball."""
        await self._run(
            lambda: self._service().export_archive(refs, dest, platform=platform, **options)
        )
