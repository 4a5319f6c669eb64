"""The error tree and its one mapping to and from gRPC status codes."""

from __future__ import annotations

import pytest

from libcontainerd import errors
from libcontainerd.errors import GrpcCode


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (GrpcCode.NOT_FOUND, errors.NotFound),
        (GrpcCode.ALREADY_EXISTS, errors.AlreadyExists),
        (GrpcCode.INVALID_ARGUMENT, errors.InvalidArgument),
        (GrpcCode.FAILED_PRECONDITION, errors.FailedPrecondition),
        (GrpcCode.UNAVAILABLE, errors.Unavailable),
        (GrpcCode.UNIMPLEMENTED, errors.Unimplemented),
        (GrpcCode.CANCELLED, errors.Canceled),
        (GrpcCode.DEADLINE_EXCEEDED, errors.DeadlineExceeded),
        (GrpcCode.PERMISSION_DENIED, errors.PermissionDenied),
        (GrpcCode.RESOURCE_EXHAUSTED, errors.ResourceExhausted),
        (GrpcCode.UNKNOWN, errors.Unknown),
        (GrpcCode.ABORTED, errors.Aborted),
        (GrpcCode.OUT_OF_RANGE, errors.OutOfRange),
        (GrpcCode.DATA_LOSS, errors.DataLoss),
        (GrpcCode.INTERNAL, errors.Internal),
    ],
)
def test_round_trip_keeps_kind_and_message(code: GrpcCode, kind: type[errors.Error]) -> None:
    error = errors.from_grpc_code(code, 'container "x": not found')
    assert type(error) is kind
    assert str(error) == 'container "x": not found'
    assert errors.to_grpc_code(error) is code


def test_unauthenticated_is_permission_denied() -> None:
    assert isinstance(errors.from_grpc_code(16, "no"), errors.PermissionDenied)


def test_unknown_numeric_code_is_unknown_with_the_number() -> None:
    error = errors.from_grpc_code(99, "odd")
    assert isinstance(error, errors.Unknown)
    assert "99" in str(error)


def test_ok_is_not_an_error() -> None:
    with pytest.raises(errors.InvalidArgument):
        errors.from_grpc_code(0, "fine")


def test_builtin_bases_let_callers_catch_naturally() -> None:
    assert issubclass(errors.InvalidArgument, ValueError)
    assert issubclass(errors.NotFound, LookupError)
    assert issubclass(errors.DeadlineExceeded, TimeoutError)
    assert issubclass(errors.PermissionDenied, PermissionError)
    assert issubclass(errors.Unavailable, ConnectionError)
    assert issubclass(errors.AuthenticationError, errors.RegistryError)
    assert issubclass(errors.DigestMismatch, errors.DataLoss)


def test_foreign_exception_maps_to_unknown() -> None:
    assert errors.to_grpc_code(RuntimeError("x")) is GrpcCode.UNKNOWN


def test_runtime_command_error_carries_its_command() -> None:
    error = errors.RuntimeCommandError(
        "runc start failed", command=["runc", "start", "x"], exit_code=1, stderr="boom"
    )
    assert error.command == ("runc", "start", "x")
    assert error.exit_code == 1
    assert error.stderr == "boom"


def test_no_builtin_is_shadowed() -> None:
    import builtins

    shadowed = [name for name in errors.__all__ if hasattr(builtins, name)]
    assert shadowed == []
