"""containerd's gRPC services on one channel: one stub per service, namespace added once.

Every call needs the ``containerd-namespace`` metadata. :class:`NamespaceInterceptor`
adds it to each call made through the channel unless the call already names a
namespace, so no module builds that header itself; :class:`Services` creates each
service stub once per client.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from libcontainerd.remote._pb.containerd.services.containers.v1 import containers_pb2_grpc
from libcontainerd.remote._pb.containerd.services.content.v1 import content_pb2_grpc
from libcontainerd.remote._pb.containerd.services.diff.v1 import diff_pb2_grpc
from libcontainerd.remote._pb.containerd.services.events.v1 import events_pb2_grpc
from libcontainerd.remote._pb.containerd.services.images.v1 import images_pb2_grpc
from libcontainerd.remote._pb.containerd.services.introspection.v1 import (
    introspection_pb2_grpc,
)
from libcontainerd.remote._pb.containerd.services.leases.v1 import leases_pb2_grpc
from libcontainerd.remote._pb.containerd.services.namespaces.v1 import namespace_pb2_grpc
from libcontainerd.remote._pb.containerd.services.snapshots.v1 import snapshots_pb2_grpc
from libcontainerd.remote._pb.containerd.services.tasks.v1 import tasks_pb2_grpc
from libcontainerd.remote._pb.containerd.services.version.v1 import version_pb2_grpc

if TYPE_CHECKING:  # the stubs make these generic; at runtime they are plain classes
    _UnaryUnary = grpc.UnaryUnaryClientInterceptor[Any, Any]
    _UnaryStream = grpc.UnaryStreamClientInterceptor[Any, Any]
    _StreamUnary = grpc.StreamUnaryClientInterceptor[Any, Any]
    _StreamStream = grpc.StreamStreamClientInterceptor[Any, Any]
else:
    _UnaryUnary = grpc.UnaryUnaryClientInterceptor
    _UnaryStream = grpc.UnaryStreamClientInterceptor
    _StreamUnary = grpc.StreamUnaryClientInterceptor
    _StreamStream = grpc.StreamStreamClientInterceptor

__all__ = [
    "NAMESPACE_HEADER",
    "NamespaceInterceptor",
    "Services",
    "direct_methods",
    "with_namespace",
]

NAMESPACE_HEADER = "containerd-namespace"
"""The gRPC metadata key containerd reads the namespace of a call from."""


def with_namespace(
    metadata: Sequence[tuple[str, str | bytes]] | None, namespace: str
) -> list[tuple[str, str | bytes]]:
    """``metadata`` plus the namespace header, unless it already names a namespace."""
    items = list(metadata or ())
    if not any(key == NAMESPACE_HEADER for key, _ in items):
        items.append((NAMESPACE_HEADER, namespace))
    return items


class _CallDetails(grpc.ClientCallDetails):
    """The details of one call with its metadata replaced."""

    def __init__(
        self, details: grpc.ClientCallDetails, metadata: list[tuple[str, str | bytes]]
    ) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = tuple(metadata)
        self.credentials = details.credentials
        self.wait_for_ready = details.wait_for_ready
        self.compression = details.compression


class NamespaceInterceptor(
    _UnaryUnary,
    _UnaryStream,
    _StreamUnary,
    _StreamStream,
):
    """Adds the client's namespace to every call that does not carry one."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _CallDetails(details, with_namespace(details.metadata, self.namespace))

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        """Unary calls."""
        return continuation(self._details(details), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        """Server streams (event subscriptions, content reads)."""
        return continuation(self._details(details), request)

    def intercept_stream_unary(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, requests: Any
    ) -> Any:
        """Client streams."""
        return continuation(self._details(details), requests)

    def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, requests: Any
    ) -> Any:
        """Bidirectional streams (content writes)."""
        return continuation(self._details(details), requests)


class Services:
    """The stub of every containerd service the SDK uses, created once per channel."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.containers = containers_pb2_grpc.ContainersStub(channel)
        self.content = content_pb2_grpc.ContentStub(channel)
        self.diff = diff_pb2_grpc.DiffStub(channel)
        self.events = events_pb2_grpc.EventsStub(channel)
        self.images = images_pb2_grpc.ImagesStub(channel)
        self.introspection = introspection_pb2_grpc.IntrospectionStub(channel)
        self.leases = leases_pb2_grpc.LeasesStub(channel)
        self.namespaces = namespace_pb2_grpc.NamespacesStub(channel)
        self.snapshots = snapshots_pb2_grpc.SnapshotsStub(channel)
        self.tasks = tasks_pb2_grpc.TasksStub(channel)
        self.version = version_pb2_grpc.VersionStub(channel)


def direct_methods(intercepted: Services, plain: Services) -> dict[Any, Any]:
    """Each stub method of ``intercepted`` mapped to the same method of ``plain``.

    Stub methods are the public attributes of the generated stubs (one multi-callable
    per RPC); both sets were made by the same constructors, so the names line up.
    """
    twins: dict[Any, Any] = {}
    for service, stub in vars(intercepted).items():
        twin = getattr(plain, service)
        for name, method in vars(stub).items():
            if not name.startswith("_"):
                twins[method] = getattr(twin, name)
    return twins
