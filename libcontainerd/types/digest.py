"""Content digests of the form ``algorithm:hex`` as used by OCI images and containerd.

Only the two algorithms the OCI image specification registers are accepted:
``sha256`` (64 lowercase hex digits) and ``sha512`` (128). Other algorithms
(including ``sha384``, which some Go tools also know) are refused with a clear
message rather than passed on to fail later in a registry or content store.
"""

from __future__ import annotations

import hashlib
import re

import attrs

from libcontainerd.errors import InvalidArgument
from libcontainerd.types.identifiers import safe_repr

__all__ = [
    "SHA256",
    "SHA512",
    "SUPPORTED_ALGORITHMS",
    "Digest",
    "compute_digest",
    "is_valid_digest",
    "sha256_digest",
    "sha512_digest",
    "split_digest",
    "validate_digest",
]

SHA256 = "sha256"
SHA512 = "sha512"

_HEX_LENGTHS: dict[str, int] = {SHA256: 64, SHA512: 128}
SUPPORTED_ALGORITHMS: tuple[str, ...] = tuple(_HEX_LENGTHS)
"""Algorithms accepted by :func:`validate_digest`, preferred first."""

# The image-spec grammar for an algorithm name; used only to word the error well.
_ALGORITHM_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*")
_LOWER_HEX_RE = re.compile(r"[0-9a-f]+")
_ANY_HEX_RE = re.compile(r"[0-9a-fA-F]+")

# A sha512 digest is 135 characters; anything far longer is not worth scanning.
_MAX_DIGEST_TEXT = 256


def _refuse(value: object, reason: str) -> InvalidArgument:
    return InvalidArgument(
        f"digest {safe_repr(value)} is not valid: {reason}; expected 'sha256:' followed by "
        "64 lowercase hex digits (or 'sha512:' and 128)"
    )


def split_digest(value: object) -> tuple[str, str]:
    """Validate ``value`` and return its ``(algorithm, hex)`` parts."""
    if not isinstance(value, str):
        raise InvalidArgument(f"digest must be a str, not {type(value).__name__}")
    if len(value) > _MAX_DIGEST_TEXT:
        raise _refuse(value, f"it is {len(value)} characters long")
    algorithm, sep, encoded = value.partition(":")
    if not sep:
        raise _refuse(value, "it has no ':' between algorithm and hex value")
    if algorithm not in _HEX_LENGTHS:
        if _ALGORITHM_RE.fullmatch(algorithm) is None:
            raise _refuse(value, f"{safe_repr(algorithm)} is not an algorithm name")
        raise _refuse(
            value,
            f"algorithm {safe_repr(algorithm)} is not supported "
            f"(supported: {', '.join(SUPPORTED_ALGORITHMS)})",
        )
    if _LOWER_HEX_RE.fullmatch(encoded) is None:
        if _ANY_HEX_RE.fullmatch(encoded) is not None:
            raise _refuse(value, "the hex value must be lowercase")
        raise _refuse(value, "the part after ':' must be hex digits")
    expected = _HEX_LENGTHS[algorithm]
    if len(encoded) != expected:
        raise _refuse(
            value, f"a {algorithm} value has {expected} hex digits, this one has {len(encoded)}"
        )
    return algorithm, encoded


def validate_digest(value: object) -> str:
    """Return ``value`` if it is a valid digest, else raise :class:`InvalidArgument`."""
    split_digest(value)
    assert isinstance(value, str)  # split_digest refused every other type
    return value


def is_valid_digest(value: object) -> bool:
    """Whether ``value`` is a valid digest string (never raises)."""
    try:
        split_digest(value)
    except InvalidArgument:
        return False
    return True


def compute_digest(data: bytes, algorithm: str = SHA256) -> str:
    """The digest of ``data`` with ``algorithm`` (``sha256`` or ``sha512``)."""
    if algorithm not in _HEX_LENGTHS:
        raise InvalidArgument(
            f"digest algorithm {safe_repr(algorithm)} is not supported "
            f"(supported: {', '.join(SUPPORTED_ALGORITHMS)})"
        )
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidArgument(f"data to digest must be bytes, not {type(data).__name__}")
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def sha256_digest(data: bytes) -> str:
    """The ``sha256:<hex>`` digest of ``data``."""
    return compute_digest(data, SHA256)


def sha512_digest(data: bytes) -> str:
    """The ``sha512:<hex>`` digest of ``data``."""
    return compute_digest(data, SHA512)


def _check_algorithm(instance: Digest, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in _HEX_LENGTHS:
        raise InvalidArgument(
            f"digest algorithm {safe_repr(value)} is not supported "
            f"(supported: {', '.join(SUPPORTED_ALGORITHMS)})"
        )


def _check_encoded(instance: Digest, attribute: attrs.Attribute[str], value: str) -> None:
    split_digest(f"{instance.algorithm}:{value}")


@attrs.frozen(order=True)
class Digest:
    """A parsed digest; ``str(d)`` gives back the ``algorithm:hex`` text."""

    algorithm: str = attrs.field(validator=_check_algorithm)
    encoded: str = attrs.field(validator=_check_encoded)

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``algorithm:hex`` text, refusing anything :func:`validate_digest` refuses."""
        algorithm, encoded = split_digest(text)
        return cls(algorithm, encoded)

    @classmethod
    def from_bytes(cls, data: bytes, algorithm: str = SHA256) -> Digest:
        """The digest of ``data``."""
        return cls.parse(compute_digest(data, algorithm))

    def verify(self, data: bytes) -> bool:
        """Whether ``data`` hashes to this digest."""
        return compute_digest(data, self.algorithm) == str(self)

    def short(self, length: int = 12) -> str:
        """The first ``length`` hex digits, the way tools abbreviate image ids."""
        return self.encoded[:length]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"
