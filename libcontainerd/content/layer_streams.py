"""The byte streams of a layer: decompression recognised by magic, hashing and size caps."""

from __future__ import annotations

import gzip
import hashlib
import importlib
import zlib
from typing import Any, BinaryIO, cast

from libcontainerd.errors import DataLoss, Error, InvalidArgument, ResourceExhausted, Unimplemented

__all__ = ["CHUNK", "HashingReader", "Prefixed", "decompressed", "zstd_available", "zstd_module"]

CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def zstd_available() -> bool:
    """Whether zstd-compressed layers can be read (the optional ``zstandard`` module)."""
    try:
        importlib.import_module("zstandard")
    except ImportError:
        return False
    return True


def zstd_module() -> Any:
    """The ``zstandard`` module, or :class:`Unimplemented` saying how to install it."""
    try:
        return importlib.import_module("zstandard")
    except ImportError:
        raise Unimplemented(
            "this layer is zstd-compressed and the optional 'zstandard' package is not "
            "installed; install it (pip install zstandard) to unpack zstd layers"
        ) from None


class Prefixed:
    """A reader that yields ``head`` and then the rest of ``raw`` (to sniff magic bytes)."""

    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self._head = head
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes (all with -1), the sniffed head first."""
        if self._head:
            if size is None or size < 0:
                data, self._head = self._head + self._raw.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._raw.read(size)


class HashingReader:
    """Hashes and counts what passes through; turns decoder failures into DataLoss."""

    def __init__(self, source: Any, max_size: int | None = None) -> None:
        self._source = source
        self._max_size = max_size
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes, hashing and counting them."""
        try:
            data: bytes = self._source.read(size)
        except Error:
            raise
        except (OSError, EOFError, zlib.error, ValueError) as exc:
            raise DataLoss(
                f"layer data is corrupt or truncated ({exc}); fetch the layer again"
            ) from exc
        self.hash.update(data)
        self.size += len(data)
        if self._max_size is not None and self.size > self._max_size:
            raise ResourceExhausted(
                f"layer is larger than {self._max_size} bytes uncompressed (max_size); it is "
                "a decompression bomb or needs a larger max_size"
            )
        return data

    def drain(self) -> None:
        """Read (and hash) what is left."""
        while self.read(CHUNK):
            pass


def decompressed(raw: BinaryIO, compression: str | None) -> Any:
    """A reader of ``raw`` decompressed (gzip or zstd, recognised by magic bytes)."""
    head = b""
    while len(head) < 4:
        more = raw.read(4 - len(head))
        if not more:
            break
        head += more
    source = Prefixed(head, raw)
    if head.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=cast(Any, source), mode="rb")
    if head.startswith(_ZSTD_MAGIC) or compression == "zstd":
        # A zstd media type with the module missing is refused before any byte is used.
        module = zstd_module()
        if not head.startswith(_ZSTD_MAGIC):
            raise InvalidArgument("the layer's media type says zstd but the data is not zstd")
        return module.ZstdDecompressor().stream_reader(source, read_across_frames=True)
    # Media types that claim gzip over plain tar exist in the wild; the data decides.
    return source
