"""``new_container`` once for both backends: its arguments, their checks, its documentation.

Each backend's client inherits :class:`NewContainerFront` and implements only
``_create_container``, which receives a :class:`ContainerRequest` whose values have
already passed the checks every backend makes (id, spec, labels, runtime name), so the
two cannot drift apart in what they accept or in what they say about bad input.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from libcontainerd._backend_rules import check_labels, check_runtime_name
from libcontainerd.errors import InvalidArgument
from libcontainerd.oci.validate import validate_spec
from libcontainerd.types.aliases import Spec
from libcontainerd.types.identifiers import validate_identifier

if TYPE_CHECKING:
    from libcontainerd.network import DnsConfig, PortMapping

__all__ = ["ContainerRequest", "NewContainerFront"]

C = TypeVar("C", covariant=True)


@attrs.frozen(kw_only=True)
class ContainerRequest:
    """The checked arguments of one ``new_container`` call.

    ``spec`` is validated (or ``None`` when an image provides it), ``labels`` checked,
    ``runtime`` a checked name or ``None`` for the backend's default; the network
    arguments are passed on as given, for the client's networks to plan.
    """

    container_id: str
    spec: Spec | None
    image: str | None
    runtime: str | None
    runtime_options: Mapping[str, Any] | None
    labels: dict[str, str]
    extensions: Mapping[str, Any] | None
    network: str | None
    ports: Sequence[str | PortMapping] | None
    dns: DnsConfig | Sequence[str] | None
    hostname: str | None


class NewContainerFront(abc.ABC, Generic[C]):
    """The ``new_container`` of a client; ``C`` is the backend's container handle."""

    def new_container(
        self,
        container_id: str,
        spec: Mapping[str, Any] | None = None,
        *,
        image: str | None = None,
        runtime: str | None = None,
        runtime_options: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
        network: str | None = None,
        ports: Sequence[str | PortMapping] | None = None,
        dns: DnsConfig | Sequence[str] | None = None,
        hostname: str | None = None,
    ) -> C:
        """Create a container from ``spec`` and/or ``image``; return its handle.

        ``spec`` is an OCI runtime spec (see :func:`libcontainerd.oci.generate_spec`)
        whose ``root.path`` names a root filesystem; with ``image`` the container's root
        filesystem is prepared from that image, and the image's config fills what the
        spec leaves at its defaults (without ``spec``, the spec comes from the image).
        ``runtime`` and ``runtime_options`` choose the OCI runtime; ``extensions`` are
        opaque JSON values kept with the container. ``network`` is ``"none"`` (loopback
        only), ``"host"``, ``"bridge"`` or a CNI network's name; without any of
        ``network``, ``ports``, ``dns`` and ``hostname`` the spec's own network namespace
        is kept and no files are generated. Bad input raises ``InvalidArgument`` before
        anything is made; a taken id raises ``AlreadyExists``.
        """
        validate_identifier(container_id, kind="container id")
        if spec is None and image is None:
            raise InvalidArgument(
                "new_container needs a spec (see libcontainerd.oci.generate_spec), an image, "
                "or both"
            )
        request = ContainerRequest(
            container_id=container_id,
            spec=None if spec is None else validate_spec(spec),
            image=image,
            runtime=check_runtime_name(runtime),
            runtime_options=runtime_options,
            labels=check_labels(labels),
            extensions=extensions,
            network=network,
            ports=ports,
            dns=dns,
            hostname=hostname,
        )
        return self._create_container(request)

    @abc.abstractmethod
    def _create_container(self, request: ContainerRequest) -> C:
        """Make the container ``request`` describes, leaving nothing behind on failure."""
