"""The gRPC connection to containerd: channel, deadlines, fail-fast, error mapping.

Every call the remote backend makes goes through :class:`Transport`, so this is the
one place where a ``grpc.RpcError`` becomes a typed :mod:`libcontainerd.errors`
exception (:func:`translate_rpc_error`), keeping containerd's own message.

Calls fail fast: while containerd is unreachable a call raises ``Unavailable`` within
about a second (:data:`RECONNECT_GRACE`), reads included. A caller who wants to wait for
containerd says so with ``wait_ready=`` (seconds, per client or per call) or
:meth:`Transport.wait_ready`. Only a ``Wait`` that was already waiting when containerd
went away keeps waiting across the outage (``keep_waiting``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

import grpc

from libcontainerd._health import HEALTH_CHECK_METHOD
from libcontainerd.address import AddressKind, default_address, parse_address
from libcontainerd.errors import (
    DeadlineExceeded,
    Error,
    InvalidArgument,
    Unavailable,
    from_grpc_code,
)
from libcontainerd.remote._services import (
    NAMESPACE_HEADER,
    NamespaceInterceptor,
    Services,
    direct_methods,
)
from libcontainerd.types.registry_options import REGISTRY_OPTION_KEYS, check_registry_option

__all__ = [
    "DEFAULT_UNARY_TIMEOUT",
    "KNOWN_OPTIONS",
    "MAX_MESSAGE_BYTES",
    "NAMESPACE_HEADER",
    "NO_TIMEOUT",
    "RECONNECT_GRACE",
    "REGISTRY_OPTION_KEYS",
    "TLS_OPTIONS",
    "Backoff",
    "ResponseStream",
    "Transport",
    "is_locked_message",
    "translate_rpc_error",
]

_log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Send and receive limit for one message (containerd's own client uses the same)."""

DEFAULT_UNARY_TIMEOUT = 30.0
"""Deadline of a unary call when the client was given no ``timeout``."""

RECONNECT_GRACE = 0.75
"""How long a call that found the connection broken waits for one reconnect attempt
before ``Unavailable`` reaches the caller (when the caller did not ask to wait)."""

TLS_OPTIONS = frozenset({"tls_ca", "tls_cert", "tls_key"})
"""Backend options that secure the gRPC connection (``tcp://`` addresses only)."""

KNOWN_OPTIONS = TLS_OPTIONS | {"registry", "wait_ready", "managed", "network"}
"""Backend options the remote client understands: ``tls_ca``, ``tls_cert``, ``tls_key``
(paths or PEM bytes), ``registry`` (a dict of :data:`REGISTRY_OPTION_KEYS`),
``wait_ready`` (seconds each call waits for an unreachable containerd; default: fail fast)
and ``managed`` (start and supervise a private containerd, see
:mod:`libcontainerd.remote.supervisor`)."""

_FIRST_RETRY_DELAY = 0.05
_MAX_RETRY_DELAY = 2.0
# How long one readiness probe may block; a longer wait is made of several probes.
_PROBE_SLICE = 1.0

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
    check_registry_option(options.get("registry"))


def is_unavailable(error: grpc.RpcError) -> bool:
    """Whether ``error`` means containerd could not be reached (worth retrying)."""
    code = getattr(error, "code", None)
    return callable(code) and code() == grpc.StatusCode.UNAVAILABLE


def _details(error: grpc.RpcError) -> str:
    details = getattr(error, "details", None)
    text = details() if callable(details) else None
    return text if isinstance(text, str) else ""


def _never_sent(error: grpc.RpcError) -> bool:
    """Whether the call failed before reaching containerd (so repeating it is safe)."""
    return is_unavailable(error) and "failed to connect" in _details(error)


class Backoff:
    """Capped exponential retry pacing: 50 ms doubling up to ``cap`` seconds, forever."""

    def __init__(self, cap: float = _MAX_RETRY_DELAY) -> None:
        self._cap = cap
        self._delay = _FIRST_RETRY_DELAY

    def next_delay(self) -> float:
        """Seconds to sleep before the next attempt."""
        delay = self._delay
        self._delay = min(self._delay * 2, self._cap)
        return delay

    def reset(self) -> None:
        """Start again from the shortest delay (after a success)."""
        self._delay = _FIRST_RETRY_DELAY


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


def _check_wait(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise InvalidArgument(
            f"wait_ready={value!r} must be a number of seconds >= 0 (or None: fail fast)"
        )
    return float(value)


class Transport:
    """One channel to containerd, the service stubs, bound to a namespace."""

    def __init__(
        self,
        address: str | None,
        namespace: str,
        *,
        timeout: float | None = None,
        wait_ready: float | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        """Open (lazily; gRPC connects on first use) a channel to ``address``.

        ``wait_ready`` is how many seconds each call waits for an unreachable containerd
        to come back before it raises ``Unavailable``; None (the default) fails fast.
        """
        opts = dict(options or {})
        _check_options(opts)
        parsed = parse_address(address or default_address())
        self.address = str(parsed)
        self.namespace = namespace
        self.timeout = timeout if timeout is not None else DEFAULT_UNARY_TIMEOUT
        self.wait_ready_default = _check_wait(
            wait_ready if wait_ready is not None else opts.get("wait_ready")
        )
        channel_options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # gRPC's default reconnect backoff grows to two minutes; a restarted local
            # daemon is back within seconds, and a call that finds the connection broken
            # waits for one reconnect attempt: keep attempts well inside RECONNECT_GRACE.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 300),
            # The SDK decides about retries itself (see call()).
            ("grpc.enable_retries", 0),
        ]
        tls = any(opts.get(name) is not None for name in TLS_OPTIONS)
        if tls and parsed.kind is not AddressKind.TCP:
            raise InvalidArgument("TLS options only apply to tcp:// addresses")
        target, self._relay = parsed.target, None
        if parsed.kind is AddressKind.NPIPE:  # grpcio cannot dial a pipe: relay to it
            # Loaded only here: the pipe modules are dead weight for socket addresses.
            from libcontainerd.remote._npipe import open_pipe_relay, relay_channel_options

            self._relay = open_pipe_relay(parsed.path)
            target = self._relay.target
            channel_options = relay_channel_options(channel_options)
        if tls:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read_option_file(opts, "tls_ca"),
                private_key=_read_option_file(opts, "tls_key"),
                certificate_chain=_read_option_file(opts, "tls_cert"),
            )
            raw = grpc.secure_channel(target, credentials, channel_options)
        else:
            raw = grpc.insecure_channel(target, channel_options)
        self.channel: grpc.Channel = grpc.intercept_channel(raw, NamespaceInterceptor(namespace))
        self.services = Services(self.channel)
        """Every service stub, created once for this client."""
        # call() and stream() name the namespace themselves, so they use each stub's
        # twin on the plain channel: grpc's interceptor chain costs about a quarter of
        # a unary call's client CPU.
        self.direct_channel: grpc.Channel = raw
        """The channel without the namespace interceptor (calls name the namespace)."""
        self.direct_services = Services(raw)
        """The same stubs on the channel without the namespace interceptor: every call
        made through them must carry the namespace header itself."""
        self._direct = direct_methods(self.services, self.direct_services)
        self.tasks = self.services.tasks
        self.containers = self.services.containers
        self.events = self.services.events
        self.namespaces = self.services.namespaces
        self.version = self.services.version
        self.introspection = self.services.introspection
        self.leases = self.services.leases
        self._deferred: list[Callable[[], object]] = []
        self._deferred_lock = threading.Lock()
        self._closed = False
        self._probe = self.channel.unary_unary(
            HEALTH_CHECK_METHOD, request_serializer=None, response_deserializer=None
        )

    def after_reconnect(self, cleanup: Callable[[], object]) -> None:
        """Run ``cleanup`` once containerd answers again (after the next successful call).

        For clean-ups that failed because containerd was away, such as deleting the
        lease of a pull it interrupted; errors of ``cleanup`` are logged, not raised.
        """
        with self._deferred_lock:
            self._deferred.append(cleanup)

    def _run_deferred(self) -> None:
        with self._deferred_lock:
            pending, self._deferred = self._deferred, []
        for cleanup in pending:
            try:
                cleanup()
            except Error as error:
                _log.info("clean-up after reconnecting failed: %s", error)

    def _metadata(self, namespace: str | None) -> tuple[tuple[str, str], ...]:
        return ((NAMESPACE_HEADER, self.namespace if namespace is None else namespace),)

    def direct(self, method: Any) -> Any:
        """The plain-channel twin of a stub method of :attr:`services` (else ``method``).

        A caller of the twin passes the namespace header itself.
        """
        return self._direct.get(method, method)

    def connected(self, timeout: float) -> bool:
        """Whether containerd answers within ``timeout`` seconds (waiting for it to come up).

        Any answer counts, even an error status: a server that answers is reachable.
        """
        end = time.monotonic() + max(timeout, 0.0)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return False
            if self._closed:
                return False
            try:
                self._probe(b"", timeout=min(left, _PROBE_SLICE), wait_for_ready=True)
                return True
            except ValueError:
                return False  # grpc's answer once the channel is closed
            except grpc.RpcError as error:
                code = error.code() if callable(getattr(error, "code", None)) else None
                if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    return code is not grpc.StatusCode.CANCELLED
                if code is grpc.StatusCode.UNAVAILABLE:
                    # Answered at once without a connection (channel shut down): pace it.
                    time.sleep(min(0.05, max(left, 0.0)))

    def wait_ready(self, timeout: float) -> None:
        """Block until containerd answers, or raise ``Unavailable`` after ``timeout`` s."""
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise InvalidArgument(f"timeout {timeout!r} must be a number of seconds >= 0")
        if not self.connected(timeout):
            raise Unavailable(
                f"containerd at {self.address} did not answer within {timeout} s: is it "
                "running? Start it (or wait longer with wait_ready=<seconds>)"
            )

    def call(
        self,
        method: grpc.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        *,
        timeout: float | _NoTimeout | None = None,
        namespace: str | None = None,
        idempotent: bool = False,
        wait_ready: float | None = None,
        keep_waiting: bool = False,
    ) -> Resp:
        """Run a unary call; ``timeout=None`` means the client's default deadline.

        When the connection is broken, a call that is safe to repeat (``idempotent``, or
        one gRPC never sent) is tried once more after waiting up to ``wait_ready`` seconds
        (default: the client's ``wait_ready``, else :data:`RECONNECT_GRACE`) for containerd
        to answer; otherwise ``Unavailable`` is raised. ``keep_waiting`` (for ``Wait``
        calls that were already waiting) waits for containerd as long as the deadline allows.
        """
        end: float | None
        if isinstance(timeout, _NoTimeout):
            end = None
        else:
            end = time.monotonic() + (self.timeout if timeout is None else timeout)
        metadata = self._metadata(namespace)
        direct = self._direct.get(method, method)
        wait = _check_wait(wait_ready)
        if wait is None:
            wait = self.wait_ready_default
        ready_for = RECONNECT_GRACE if wait is None else max(wait, RECONNECT_GRACE)
        retried = False
        logged = False
        while True:
            remaining = None if end is None else end - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded(f"containerd call did not finish in time ({self.address})")
            try:
                response: Resp = direct(
                    request, timeout=remaining, metadata=metadata, wait_for_ready=retried
                )
            except grpc.RpcError as error:
                if not is_unavailable(error) or is_locked_message(_details(error)):
                    raise translate_rpc_error(error, address=self.address) from None
                if keep_waiting:
                    if not logged:
                        _log.warning(
                            "containerd at %s unreachable; waiting for it to come back",
                            self.address,
                        )
                        logged = True
                    limit = _PROBE_SLICE if remaining is None else min(remaining, _PROBE_SLICE)
                    self.connected(limit)
                    retried = True
                    continue
                if retried or not (idempotent or _never_sent(error)):
                    raise translate_rpc_error(error, address=self.address) from None
                budget = ready_for if remaining is None else min(ready_for, remaining)
                if not self.connected(budget):
                    raise translate_rpc_error(error, address=self.address) from None
                retried = True
                continue
            if self._deferred:
                self._run_deferred()
            return response

    def stream(
        self,
        method: grpc.UnaryStreamMultiCallable[Req, Resp],
        request: Req,
        *,
        namespace: str | None = None,
    ) -> ResponseStream[Resp]:
        """Start a server-streaming call (no deadline)."""
        try:
            call = self.direct(method)(request, metadata=self._metadata(namespace))
        except grpc.RpcError as error:
            raise translate_rpc_error(error, address=self.address) from None
        return ResponseStream(call, self.address)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (no call can be made any more)."""
        return self._closed

    def close(self) -> None:
        """Close the channel; pending calls fail with ``Canceled``."""
        self._closed = True
        self.channel.close()
        if self._relay is not None:
            self._relay.close()
