"""Typed errors of libcontainerd and their mapping to and from gRPC status codes.

Every error the SDK raises is a subclass of :class:`Error`. The kinds follow
containerd's ``errdefs`` package, so code that handles a ``NotFound`` works the
same against either backend. Some kinds also derive from the builtin exception a
Python caller would naturally catch (``InvalidArgument`` is a ``ValueError``,
``DeadlineExceeded`` a ``TimeoutError``, ``NotFound`` a ``LookupError``).

The translation between gRPC status codes and these classes lives here and only
here; the codes are plain integers so this module needs no gRPC import.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

__all__ = [
    "Aborted",
    "AlreadyExists",
    "AuthenticationError",
    "Canceled",
    "DataLoss",
    "DeadlineExceeded",
    "DigestMismatch",
    "Error",
    "FailedPrecondition",
    "GrpcCode",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "RegistryError",
    "ResourceExhausted",
    "RuntimeCommandError",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "from_grpc_code",
    "to_grpc_code",
]


class GrpcCode(enum.IntEnum):
    """The canonical gRPC status codes (identical numbering in every gRPC implementation)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class Error(Exception):
    """Base class of every error raised by libcontainerd.

    ``message`` is the human text (for errors that came from containerd, its own
    message is kept verbatim); ``code`` is the matching gRPC status code.
    """

    code: GrpcCode = GrpcCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Unknown(Error):
    """An error whose kind could not be determined."""

    code = GrpcCode.UNKNOWN


class InvalidArgument(Error, ValueError):
    """The caller passed a value that is malformed or not allowed."""

    code = GrpcCode.INVALID_ARGUMENT


class NotFound(Error, LookupError):
    """The named object (container, task, image, blob, platform ...) does not exist."""

    code = GrpcCode.NOT_FOUND


class AlreadyExists(Error):
    """An object with that name or id exists already."""

    code = GrpcCode.ALREADY_EXISTS


class FailedPrecondition(Error):
    """The object is in a state that does not allow the operation (for example a running task)."""

    code = GrpcCode.FAILED_PRECONDITION


class Unavailable(Error, ConnectionError):
    """The daemon, runtime or registry could not be reached; retrying later may help."""

    code = GrpcCode.UNAVAILABLE


class Unimplemented(Error):
    """The operation is not implemented by this backend, runtime or platform."""

    code = GrpcCode.UNIMPLEMENTED


class Canceled(Error):
    """The operation was cancelled by the caller."""

    code = GrpcCode.CANCELLED


class DeadlineExceeded(Error, TimeoutError):
    """The operation did not complete before its timeout."""

    code = GrpcCode.DEADLINE_EXCEEDED


class PermissionDenied(Error, PermissionError):
    """The caller lacks the privilege or the credentials the operation needs."""

    code = GrpcCode.PERMISSION_DENIED


class ResourceExhausted(Error):
    """A limit was reached (message size, quota, rate limit)."""

    code = GrpcCode.RESOURCE_EXHAUSTED


class Aborted(Error):
    """The operation was aborted, typically by a concurrency conflict; it may be retried."""

    code = GrpcCode.ABORTED


class OutOfRange(Error):
    """An offset or index lies past the valid range."""

    code = GrpcCode.OUT_OF_RANGE


class DataLoss(Error):
    """Data was lost or corrupted."""

    code = GrpcCode.DATA_LOSS


class Internal(Error):
    """An invariant of the daemon or of this SDK was broken; please report it."""

    code = GrpcCode.INTERNAL


class RegistryError(Error):
    """An OCI registry answered with an error.

    ``status`` is the HTTP status (0 when no response arrived) and ``errors`` the
    ``code`` values of the registry's JSON error body, when it sent one.
    """

    def __init__(self, message: str, *, status: int = 0, errors: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.errors = tuple(errors)


class AuthenticationError(RegistryError, PermissionDenied):
    """The registry refused the credentials, or none were given where they are needed."""

    code = GrpcCode.UNAUTHENTICATED


class DigestMismatch(DataLoss):
    """Content did not match the digest (or size) it was announced with."""

    def __init__(self, message: str, *, expected: str = "", actual: str = "") -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class RuntimeCommandError(Error):
    """An OCI runtime command (runc, crun ...) failed.

    Carries the command line, its exit code and what it wrote to stderr so the
    message explains itself.
    """

    def __init__(
        self,
        message: str,
        *,
        command: Sequence[str] = (),
        exit_code: int | None = None,
        stderr: str = "",
    ) -> None:
        super().__init__(message)
        self.command = tuple(command)
        self.exit_code = exit_code
        self.stderr = stderr


_BY_CODE: dict[GrpcCode, type[Error]] = {
    GrpcCode.CANCELLED: Canceled,
    GrpcCode.UNKNOWN: Unknown,
    GrpcCode.INVALID_ARGUMENT: InvalidArgument,
    GrpcCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    GrpcCode.NOT_FOUND: NotFound,
    GrpcCode.ALREADY_EXISTS: AlreadyExists,
    GrpcCode.PERMISSION_DENIED: PermissionDenied,
    GrpcCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    GrpcCode.FAILED_PRECONDITION: FailedPrecondition,
    GrpcCode.ABORTED: Aborted,
    GrpcCode.OUT_OF_RANGE: OutOfRange,
    GrpcCode.UNIMPLEMENTED: Unimplemented,
    GrpcCode.INTERNAL: Internal,
    GrpcCode.UNAVAILABLE: Unavailable,
    GrpcCode.DATA_LOSS: DataLoss,
    GrpcCode.UNAUTHENTICATED: PermissionDenied,
}


def from_grpc_code(code: int, message: str) -> Error:
    """Build the typed error for a gRPC status ``code``, keeping the peer's ``message``.

    Unknown numeric codes map to :class:`Unknown`. ``code`` must not be OK (0).
    """
    try:
        kind = GrpcCode(code)
    except ValueError:
        return Unknown(f"{message} (gRPC status code {code})")
    if kind is GrpcCode.OK:
        raise InvalidArgument("gRPC status OK is not an error; do not convert it")
    return _BY_CODE[kind](message)


def to_grpc_code(error: BaseException) -> GrpcCode:
    """The gRPC status code that represents ``error`` (UNKNOWN for foreign exceptions)."""
    if isinstance(error, Error):
        return error.code
    return GrpcCode.UNKNOWN
