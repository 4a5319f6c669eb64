"""gRPC health checking (``grpc.health.v1.Health/Check``), shared by every caller.

The protocol is tiny: an empty request asks about the whole server, and the answer's
field 1 is a status enum (1 = SERVING). It is spoken here with raw bytes so that the
backend selection in :mod:`libcontainerd.system` needs no generated modules.
"""

from __future__ import annotations

import enum

import grpc

__all__ = ["HEALTH_CHECK_METHOD", "HealthStatus", "check_health", "decode_health_response"]

HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check"


class HealthStatus(enum.IntEnum):
    """The serving states of the gRPC health protocol."""

    UNKNOWN = 0
    SERVING = 1
    NOT_SERVING = 2
    SERVICE_UNKNOWN = 3


def decode_health_response(data: bytes) -> HealthStatus | None:
    """The status in a ``HealthCheckResponse``; None when the bytes are not one."""
    if not data:
        return HealthStatus.UNKNOWN  # proto3 leaves a zero enum off the wire
    if len(data) == 2 and data[0] == 0x08 and data[1] < 0x80:
        try:
            return HealthStatus(data[1])
        except ValueError:
            return None
    return None


def check_health(channel: grpc.Channel, timeout: float) -> HealthStatus | None:
    """Ask the server behind ``channel``; None when it did not answer within ``timeout``."""
    check = channel.unary_unary(
        HEALTH_CHECK_METHOD,
        request_serializer=None,
        response_deserializer=None,
    )
    try:
        reply = check(b"", timeout=timeout)
    except grpc.RpcError:
        return None
    return decode_health_response(bytes(reply)) if isinstance(reply, bytes) else None
