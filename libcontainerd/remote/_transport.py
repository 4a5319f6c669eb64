"""The gRPC connection to containerd: channel, namespace metadata, deadlines, error mapping.

Every call the remote backend makes goes through :class:`Transport`, so this is the
one place where a ``grpc.RpcError`` becomes a typed :mod:`libcontainerd.errors`
exception (:func:`translate_rpc_error`), keeping containerd's own message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

import grpc

from libcontainerd.remote._npipe import open_pipe_relay, relay_channel_options

from ..address import AddressKind, default_address, parse_address
from ..errors import Error, InvalidArgument, Unavailable, from_grpc_code
from ._pb.containerd.services.containers.v1 import containers_pb2_grpc
from ._pb.containerd.services.events.v1 import events_pb2_grpc
from ._pb.containerd.services.introspection.v1 import introspection_pb2_grpc
from ._pb.containerd.services.leases.v1 import leases_pb2_grpc
from ._pb.containerd.services.namespaces.v1 import namespace_pb2_grpc
from ._pb.containerd.services.tasks.v1 import tasks_pb2_grpc
from ._pb.containerd.services.version.v1 import version_pb2_grpc

__all__ = [
    "DEFAULT_UNARY_TIMEOUT",
    "KNOWN_OPTIONS",
    "MAX_MESSAGE_BYTES",
    "NAMESPACE_HEADER",
    "NO_TIMEOUT",
    "RECONNECT_WINDOW",
    "REGISTRY_OPTION_KEYS",
    "TLS_OPTIONS",
    "Backoff",
    "ResponseStream",
    "Transport",
    "is_locked_message",
    "translate_rpc_error",
]

NAMESPACE_HEADER = "containerd-namespace"
"""The gRPC metadata key containerd reads the namespace of a call from."""

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Send and receive limit for one message (containerd's own client uses the same)."""

DEFAULT_UNARY_TIMEOUT = 30.0
"""Deadline of a unary call when the client was given no ``timeout``."""

TLS_OPTIONS = frozenset({"tls_ca", "tls_cert", "tls_key"})
"""Backend options that secure the gRPC connection (``tcp://`` addresses only)."""

REGISTRY_OPTION_KEYS = frozenset(
    {
        "ca_file",
        "client_cert",
        "credentials",
        "docker_config",
        "insecure_hosts",
        "max_retries",
        "retry",
        "timeout",
    }
)
"""Keys of the ``registry={...}`` backend option, handed to every
:class:`~libcontainerd.distribution.RegistryClient` the image service creates."""

KNOWN_OPTIONS = TLS_OPTIONS | {"registry"}
"""Backend options the remote client understands: ``tls_ca``, ``tls_cert``, ``tls_key``
(paths or PEM bytes) and ``registry`` (a dict of :data:`REGISTRY_OPTION_KEYS`)."""

RECONNECT_WINDOW = 20.0
"""How long idempotent calls and event subscriptions keep retrying while containerd is
unreachable (for instance while it restarts) before ``Unavailable`` reaches the caller."""

_FIRST_RETRY_DELAY = 0.05
_MAX_RETRY_DELAY = 1.0

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class _NoTimeout:
    """Marker for calls that must not have a deadline (streams, Wait)."""

    def __repr__(self) -> str:
        return "NO_TIMEOUT"


NO_TIMEOUT = _NoTimeout()
"""Pass as ``timeout=`` for calls that may legitimately block forever."""


def translate_rpc_error(error: grpc.RpcError, *, address: str = "") -> Error:
    """The typed error for a failed call, with containerd's message kept verbatim."""
    code_method = getattr(error, "code", None)
    details_method = getattr(error, "details", None)
    code = code_method() if callable(code_method) else None
    message = details_method() if callable(details_method) else None
    text = message or str(error) or "containerd call failed"
    number = code.value[0] if isinstance(code, grpc.StatusCode) else 2
    if number == 0:
        number = 2
    result = from_grpc_code(number, text)
    # containerd also answers UNAVAILABLE for a busy resource ("ref ... locked"): the
    # daemon is up then, so the hint about reaching it would mislead.
    if isinstance(result, Unavailable) and address and not is_locked_message(text):
        result = Unavailable(f"{text} (containerd at {address}: is it running?)")
    return result


def is_locked_message(text: str) -> bool:
    """Whether an ``Unavailable`` message says a resource is held by another writer."""
    return " locked" in text


def _read_option_file(options: Mapping[str, Any], name: str) -> bytes | None:
    value = options.get(name)
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if not isinstance(value, (str, Path)):
        raise InvalidArgument(f"option {name} must be a path or PEM bytes, not {type(value)}")
    try:
        return Path(value).read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"option {name}: cannot read {value}: {exc.strerror}") from None


def _check_options(options: Mapping[str, Any]) -> None:
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        raise InvalidArgument(
            f"unknown option(s) for the remote backend: {', '.join(unknown)}; "
            f"known options are {', '.join(sorted(KNOWN_OPTIONS))}"
        )
    if (options.get("tls_cert") is None) != (options.get("tls_key") is None):
        raise InvalidArgument("tls_cert and tls_key must be given together (client certificate)")
    registry = options.get("registry")
    if registry is not None:
        if not isinstance(registry, Mapping):
            raise InvalidArgument(
                f"option registry must be a dict of registry client settings "
                f"({', '.join(sorted(REGISTRY_OPTION_KEYS))}), not {type(registry).__name__}"
            )
        bad = sorted(str(key) for key in set(registry) - REGISTRY_OPTION_KEYS)
        if bad:
            raise InvalidArgument(
                f"unknown key(s) in option registry: {', '.join(bad)}; known keys are "
                f"{', '.join(sorted(REGISTRY_OPTION_KEYS))}"
            )


def is_unavailable(error: grpc.RpcError) -> bool:
    """Whether ``error`` means containerd could not be reached (worth retrying)."""
    code = getattr(error, "code", None)
    return callable(code) and code() == grpc.StatusCode.UNAVAILABLE


class Backoff:
    """Bounded retry pacing: doubling delays until :data:`RECONNECT_WINDOW` is spent."""

    def __init__(self, window: float = RECONNECT_WINDOW, *, until: float | None = None) -> None:
        now = time.monotonic()
        self._give_up = now + window if until is None else min(until, now + window)
        self._delay = _FIRST_RETRY_DELAY

    def next_delay(self) -> float | None:
        """Seconds to sleep before the next attempt, or ``None`` once the window is spent."""
        left = self._give_up - time.monotonic()
        if left <= 0:
            return None
        delay = min(self._delay, left)
        self._delay = min(self._delay * 2, _MAX_RETRY_DELAY)
        return delay


class ResponseStream(Generic[Resp]):
    """A server stream whose errors are translated; ``cancel()`` ends it from any thread."""

    def __init__(self, call: Any, address: str) -> None:
        self._call = call
        self._address = address
        self._cancelled = threading.Event()

    def __iter__(self) -> Iterator[Resp]:
        return self

    def __next__(self) -> Resp:
        try:
            return next(self._call)  # type: ignore[no-any-return]
        except grpc.RpcError as error:
            if self._cancelled.is_set():
                raise StopIteration from None
            raise translate_rpc_error(error, address=self._address) from None

    def cancel(self) -> None:
        """Stop the stream; a pending ``next()`` ends with ``StopIteration``."""
        self._cancelled.set()
        self._call.cancel()


class Transport:
    """One channel to containerd plus the service stubs, bound to a namespace."""

    def __init__(
        self,
        address: str | None,
        namespace: str,
        *,
        timeout: float | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        """Open (lazily; gRPC connects on first use) a channel to ``address``."""
        opts = dict(options or {})
        _check_options(opts)
        parsed = parse_address(address or default_address())
        self.address = str(parsed)
        self.namespace = namespace
        self.timeout = timeout if timeout is not None else DEFAULT_UNARY_TIMEOUT
        channel_options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # gRPC's default reconnect backoff grows to two minutes; a restarted local
            # daemon is back within seconds, so keep reconnect attempts frequent.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        tls = any(opts.get(name) is not None for name in TLS_OPTIONS)
        if tls and parsed.kind is not AddressKind.TCP:
            raise InvalidArgument("TLS options only apply to tcp:// addresses")
        target, self._relay = parsed.target, None
        if parsed.kind is AddressKind.NPIPE:  # grpcio cannot dial a pipe: relay to it
            self._relay = open_pipe_relay(parsed.path)
            target = self._relay.target
            channel_options = relay_channel_options(channel_options)
        if tls:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read_option_file(opts, "tls_ca"),
                private_key=_read_option_file(opts, "tls_key"),
                certificate_chain=_read_option_file(opts, "tls_cert"),
            )
            self.channel = grpc.secure_channel(target, credentials, channel_options)
        else:
            self.channel = grpc.insecure_channel(target, channel_options)
        self.tasks = tasks_pb2_grpc.TasksStub(self.channel)
        self.containers = containers_pb2_grpc.ContainersStub(self.channel)
        self.events = events_pb2_grpc.EventsStub(self.channel)
        self.namespaces = namespace_pb2_grpc.NamespacesStub(self.channel)
        self.version = version_pb2_grpc.VersionStub(self.channel)
        self.introspection = introspection_pb2_grpc.IntrospectionStub(self.channel)
        self.leases = leases_pb2_grpc.LeasesStub(self.channel)

    def _metadata(self, namespace: str | None) -> tuple[tuple[str, str], ...]:
        return ((NAMESPACE_HEADER, self.namespace if namespace is None else namespace),)

    def call(
        self,
        method: grpc.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        *,
        timeout: float | _NoTimeout | None = None,
        namespace: str | None = None,
        idempotent: bool = False,
    ) -> Resp:
        """Run a unary call; ``timeout=None`` means the client's default deadline.

        An ``idempotent`` call (a read, or ``Wait``) that finds containerd unreachable is
        retried within the same deadline for up to :data:`RECONNECT_WINDOW` seconds, so
        it survives a daemon restart.
        """
        end: float | None
        if isinstance(timeout, _NoTimeout):
            end = None
        else:
            end = time.monotonic() + (self.timeout if timeout is None else timeout)
        metadata = self._metadata(namespace)
        backoff: Backoff | None = None
        while True:
            remaining = None if end is None else max(end - time.monotonic(), 0.001)
            try:
                return method(request, timeout=remaining, metadata=metadata)
            except grpc.RpcError as error:
                if not (idempotent and is_unavailable(error)):
                    raise translate_rpc_error(error, address=self.address) from None
                backoff = backoff or Backoff(until=end)
                delay = backoff.next_delay()
                if delay is None:
                    raise translate_rpc_error(error, address=self.address) from None
            time.sleep(delay)

    def stream(
        self,
        method: grpc.UnaryStreamMultiCallable[Req, Resp],
        request: Req,
        *,
        namespace: str | None = None,
    ) -> ResponseStream[Resp]:
        """Start a server-streaming call (no deadline)."""
        try:
            call = method(request, metadata=self._metadata(namespace))
        except grpc.RpcError as error:
            raise translate_rpc_error(error, address=self.address) from None
        return ResponseStream(call, self.address)

    def close(self) -> None:
        """Close the channel; pending calls fail with ``Canceled``."""
        self.channel.close()
        if self._relay is not None:
            self._relay.close()
