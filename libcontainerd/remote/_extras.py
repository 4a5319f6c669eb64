"""Remote-only extras: namespaces, introspection and leases (not part of the Client contract)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence

import attrs
from google.protobuf import empty_pb2, field_mask_pb2

from libcontainerd.errors import InvalidArgument, NotFound
from libcontainerd.remote._convert import to_datetime
from libcontainerd.remote._pb.containerd.services.introspection.v1 import introspection_pb2
from libcontainerd.remote._pb.containerd.services.leases.v1 import leases_pb2
from libcontainerd.remote._pb.containerd.services.namespaces.v1 import namespace_pb2
from libcontainerd.remote._transport import Transport
from libcontainerd.types.identifiers import frozen_str_mapping, validate_identifier

__all__ = ["Introspection", "Lease", "Leases", "NamespaceInfo", "Namespaces", "Plugin"]


def _labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    result = dict(frozen_str_mapping(labels))
    if any(not key for key in result):
        raise InvalidArgument("label keys must not be empty")
    return result


@attrs.frozen
class NamespaceInfo:
    """A containerd namespace and its labels."""

    name: str
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=frozen_str_mapping)


@attrs.frozen
class Plugin:
    """A plugin loaded (or not) by containerd; ``init_error`` is set when it failed."""

    type: str
    id: str
    requires: tuple[str, ...] = ()
    exports: Mapping[str, str] = attrs.field(factory=dict, converter=frozen_str_mapping)
    capabilities: tuple[str, ...] = ()
    init_error: str = ""


@attrs.frozen
class Lease:
    """A lease: while it exists, the resources added to it are not garbage collected."""

    id: str
    created_at: _dt.datetime | None = None
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=frozen_str_mapping)


class Namespaces:
    """containerd's namespaces service."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(self, name: str, labels: Mapping[str, str] | None = None) -> NamespaceInfo:
        """Create namespace ``name``; ``AlreadyExists`` when it exists."""
        validate_identifier(name, kind="namespace")
        request = namespace_pb2.CreateNamespaceRequest(
            namespace=namespace_pb2.Namespace(name=name, labels=_labels(labels))
        )
        response = self._t.call(self._t.namespaces.Create, request)
        return NamespaceInfo(response.namespace.name, dict(response.namespace.labels))

    def list(self) -> list[NamespaceInfo]:
        """Every namespace."""
        response = self._t.call(self._t.namespaces.List, namespace_pb2.ListNamespacesRequest())
        return [NamespaceInfo(ns.name, dict(ns.labels)) for ns in response.namespaces]

    def get(self, name: str) -> NamespaceInfo:
        """One namespace; ``NotFound`` when absent."""
        validate_identifier(name, kind="namespace")
        # containerd's Get answers with empty labels for a missing namespace, so look it up.
        for namespace in self.list():
            if namespace.name == name:
                return namespace
        raise NotFound(f"namespace {name!r} does not exist; create it first")

    def set_labels(self, name: str, labels: Mapping[str, str]) -> NamespaceInfo:
        """Merge ``labels`` into the namespace's labels (an empty value removes one)."""
        validate_identifier(name, kind="namespace")
        values = _labels(labels)
        request = namespace_pb2.UpdateNamespaceRequest(
            namespace=namespace_pb2.Namespace(name=name, labels=values),
            update_mask=field_mask_pb2.FieldMask(paths=[f"labels.{k}" for k in values]),
        )
        self._t.call(self._t.namespaces.Update, request)
        # containerd 1.6 echoes the request rather than the stored labels: read them back.
        return self.get(name)

    def delete(self, name: str) -> None:
        """Delete an empty namespace; ``FailedPrecondition`` while it holds objects."""
        validate_identifier(name, kind="namespace")
        self._t.call(self._t.namespaces.Delete, namespace_pb2.DeleteNamespaceRequest(name=name))


class Introspection:
    """containerd's introspection service."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def plugins(self, filters: Sequence[str] = ()) -> list[Plugin]:
        """The plugins containerd knows, optionally filtered (``type==...``, ``id==...``)."""
        response = self._t.call(
            self._t.introspection.Plugins,
            introspection_pb2.PluginsRequest(filters=list(filters)),
        )
        return [
            Plugin(
                type=p.type,
                id=p.id,
                requires=tuple(p.requires),
                exports=dict(p.exports),
                capabilities=tuple(p.capabilities),
                init_error=p.init_err.message if p.HasField("init_err") else "",
            )
            for p in response.plugins
        ]

    def server_uuid(self) -> str:
        """The daemon's persistent unique id."""
        return self._t.call(self._t.introspection.Server, empty_pb2.Empty()).uuid


class Leases:
    """containerd's leases service (in the client's namespace)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(self, lease_id: str, labels: Mapping[str, str] | None = None) -> Lease:
        """Create a lease; ``AlreadyExists`` when the id is taken."""
        validate_identifier(lease_id, kind="lease id")
        response = self._t.call(
            self._t.leases.Create, leases_pb2.CreateRequest(id=lease_id, labels=_labels(labels))
        )
        return _lease(response.lease)

    def list(self, filters: Sequence[str] = ()) -> list[Lease]:
        """Every lease, optionally filtered."""
        response = self._t.call(self._t.leases.List, leases_pb2.ListRequest(filters=list(filters)))
        return [_lease(item) for item in response.leases]

    def delete(self, lease_id: str, *, sync: bool = False) -> None:
        """Delete a lease; ``sync`` waits for the garbage collection it allows."""
        validate_identifier(lease_id, kind="lease id")
        self._t.call(self._t.leases.Delete, leases_pb2.DeleteRequest(id=lease_id, sync=sync))


def _lease(item: leases_pb2.Lease) -> Lease:
    created = to_datetime(item.created_at) if item.HasField("created_at") else None
    return Lease(item.id, created, dict(item.labels))
