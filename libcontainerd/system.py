"""Which backend a client would get on this host, and why.

``new_client()`` asks :func:`decide_backend` and follows its answer; callers can
ask the same question to log the decision (``explain()``) or to know whether a
containerd is in use (``containerd_in_use()``).

The rules, first match wins:

1. an explicit ``backend=`` argument;
2. the ``LIBCONTAINERD_BACKEND`` environment variable;
3. an explicit ``address=`` argument, then ``CONTAINERD_ADDRESS``: remote;
4. a containerd that answers health checks at the platform's default address: remote;
5. otherwise local, the embedded default that needs no daemon.

On Windows remote is chosen only when all three of ``experimental=True``, a
non-empty ``LIBCONTAINERD_WINDOWS_CONTAINERD_RUNTIME`` and a named-pipe address
are given; anything less selects local (and an explicit ``backend="remote"``
without them is refused).
"""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Mapping

import attrs

from libcontainerd.address import AddressKind, default_address, parse_address, resolve_address
from libcontainerd.errors import FailedPrecondition, InvalidArgument

__all__ = [
    "BACKEND_ENV",
    "CONTAINERD_ADDRESS_ENV",
    "WINDOWS_RUNTIME_ENV",
    "BackendDecision",
    "Rule",
    "WindowsGuard",
    "containerd_answers",
    "containerd_in_use",
    "decide_backend",
    "explain",
    "windows_guard",
]

BACKEND_ENV = "LIBCONTAINERD_BACKEND"
CONTAINERD_ADDRESS_ENV = "CONTAINERD_ADDRESS"
WINDOWS_RUNTIME_ENV = "LIBCONTAINERD_WINDOWS_CONTAINERD_RUNTIME"
_BACKENDS = ("local", "remote")
_PROBE_TIMEOUT = 0.5


class Rule(enum.Enum):
    """The selection rule that decided the backend."""

    EXPLICIT_BACKEND = "explicit backend argument"
    BACKEND_ENVIRONMENT = f"{BACKEND_ENV} environment variable"
    EXPLICIT_ADDRESS = "explicit address argument"
    ADDRESS_ENVIRONMENT = f"{CONTAINERD_ADDRESS_ENV} environment variable"
    DEFAULT_ADDRESS_ANSWERS = "a containerd answers at the default address"
    EMBEDDED_DEFAULT = "no containerd found: embedded default"
    WINDOWS_GUARD = "Windows: remote needs experimental, the runtime variable and a pipe"


@attrs.frozen
class BackendDecision:
    """The chosen backend, the rule that chose it, and the address remote would dial.

    ``missing`` names the parts of the Windows guard that kept remote from being chosen
    (empty elsewhere, and when the guard is open).
    """

    backend: str
    rule: Rule
    address: str | None = None
    missing: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        """A sentence for logs: what was chosen and why."""
        where = f" at {self.address}" if self.address else ""
        lacking = f" (missing: {'; '.join(self.missing)})" if self.missing else ""
        return f"backend {self.backend}{where}: {self.rule.value}{lacking}"


MISSING_EXPERIMENTAL = "experimental=True"
MISSING_RUNTIME = f"a non-empty {WINDOWS_RUNTIME_ENV}"
MISSING_PIPE = "a named-pipe address (npipe:////./pipe/<name>)"


@attrs.frozen
class WindowsGuard:
    """The three parts Windows needs before it uses containerd, as this caller gave them."""

    experimental: bool
    runtime: str
    address: str | None

    @property
    def pipe(self) -> bool:
        """Whether ``address`` names a named pipe."""
        if not self.address:
            return False
        try:
            return parse_address(self.address).kind is AddressKind.NPIPE
        except InvalidArgument:
            return False

    @property
    def missing(self) -> tuple[str, ...]:
        """What is still missing, in the order the guard lists its parts."""
        parts = (
            (self.experimental, MISSING_EXPERIMENTAL),
            (bool(self.runtime), MISSING_RUNTIME),
            (self.pipe, MISSING_PIPE),
        )
        return tuple(name for present, name in parts if not present)

    @property
    def open(self) -> bool:
        """Whether all three parts are there, so remote may be chosen."""
        return not self.missing


def windows_guard(
    address: str | None = None,
    *,
    experimental: bool = False,
    environ: Mapping[str, str] | None = None,
) -> WindowsGuard:
    """The Windows guard for these arguments (``address`` falls back to ``CONTAINERD_ADDRESS``).

    Works on any host, so a caller can report what a Windows host would be missing.
    """
    env = os.environ if environ is None else environ
    return WindowsGuard(
        experimental=experimental,
        runtime=env.get(WINDOWS_RUNTIME_ENV, "").strip(),
        address=address or env.get(CONTAINERD_ADDRESS_ENV) or None,
    )


def containerd_answers(address: str, timeout: float = _PROBE_TIMEOUT) -> bool:
    """True when a containerd at ``address`` answers a gRPC health check within ``timeout``."""
    try:
        parsed = parse_address(address)
    except InvalidArgument:
        return False
    if parsed.kind is AddressKind.NPIPE:
        return False  # probing a pipe needs the remote transport's relay
    if parsed.kind is AddressKind.UNIX and not os.path.exists(parsed.path):
        return False
    import grpc  # deferred: only this probe needs gRPC here

    from libcontainerd._health import HealthStatus, check_health

    with grpc.insecure_channel(parsed.target) as channel:
        return check_health(channel, timeout) is HealthStatus.SERVING


def _check_backend_name(value: str, source: str) -> str:
    name = value.strip().lower()
    if name not in _BACKENDS:
        raise InvalidArgument(f"{source} is {value!r}; use 'local' or 'remote'")
    return name


def _remote_address(backend: str, address: str | None, env: Mapping[str, str]) -> str | None:
    # remote dials the explicit address, else CONTAINERD_ADDRESS, else the default socket.
    return resolve_address(address, environ=env) if backend == "remote" else address


def decide_backend(
    backend: str | None = None,
    *,
    address: str | None = None,
    experimental: bool = False,
    environ: Mapping[str, str] | None = None,
    host_os: str | None = None,
    probe_address: str | None = None,
) -> BackendDecision:
    """Apply the selection rules and return the decision (no connection is kept).

    ``environ``, ``host_os`` and ``probe_address`` default to this process's
    environment, this host's OS and containerd's default address; tests and
    callers who embed their own daemon may override them.
    """
    env = os.environ if environ is None else environ
    os_name = host_os or ("windows" if sys.platform == "win32" else "linux")
    if os_name == "windows":
        return _decide_windows(backend, address, experimental, env)

    if backend is not None:
        name = _check_backend_name(backend, "backend")
        return BackendDecision(name, Rule.EXPLICIT_BACKEND, _remote_address(name, address, env))
    if env.get(BACKEND_ENV):
        name = _check_backend_name(env[BACKEND_ENV], BACKEND_ENV)
        return BackendDecision(name, Rule.BACKEND_ENVIRONMENT, _remote_address(name, address, env))
    if address is not None:
        return BackendDecision("remote", Rule.EXPLICIT_ADDRESS, address)
    if env.get(CONTAINERD_ADDRESS_ENV):
        return BackendDecision("remote", Rule.ADDRESS_ENVIRONMENT, env[CONTAINERD_ADDRESS_ENV])
    probe = probe_address or default_address(os_name)
    if containerd_answers(probe):
        return BackendDecision("remote", Rule.DEFAULT_ADDRESS_ANSWERS, probe)
    return BackendDecision("local", Rule.EMBEDDED_DEFAULT)


def _decide_windows(
    backend: str | None, address: str | None, experimental: bool, env: Mapping[str, str]
) -> BackendDecision:
    guard = windows_guard(address, experimental=experimental, environ=env)
    wanted = backend or env.get(BACKEND_ENV)
    if wanted is not None and _check_backend_name(wanted, "backend") == "remote" and not guard.open:
        raise FailedPrecondition(
            "the remote backend on Windows needs experimental=True, a non-empty "
            f"{WINDOWS_RUNTIME_ENV} and a named-pipe address (npipe:////./pipe/<name>); "
            f"missing: {'; '.join(guard.missing)}"
        )
    if guard.open:
        return BackendDecision("remote", Rule.WINDOWS_GUARD, guard.address)
    rule = Rule.EXPLICIT_BACKEND if backend else Rule.WINDOWS_GUARD
    return BackendDecision("local", rule, missing=guard.missing)


def explain(
    backend: str | None = None, *, address: str | None = None, experimental: bool = False
) -> str:
    """The decision :func:`decide_backend` would make for these arguments, as a sentence."""
    return decide_backend(backend, address=address, experimental=experimental).reason


def containerd_in_use(
    backend: str | None = None, *, address: str | None = None, experimental: bool = False
) -> bool:
    """True when a client made with these arguments would talk to containerd."""
    decision = decide_backend(backend, address=address, experimental=experimental)
    return decision.backend == "remote"
