"""The CNI protocol: run a plugin chain's ADD, CHECK and DEL as the CNI spec describes.

No maintained Python library implements the runtime side of CNI, so this is the small
invoker: each plugin is an executable found in the plugin directories, called with the
``CNI_*`` environment and its configuration (name, cniVersion, ``prevResult`` and the
``runtimeConfig`` of the capabilities it asked for) on stdin. ADD walks the chain in
order, each plugin receiving the previous result; DEL walks it backwards with the
cached ADD result; CHECK walks it in order with the cached result.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from libcontainerd.errors import DeadlineExceeded, FailedPrecondition, NotFound
from libcontainerd.network.conflist import NetworkConfigList

__all__ = [
    "DEFAULT_PLUGIN_DIRS",
    "CniResult",
    "PluginFailed",
    "RuntimeConf",
    "add_network",
    "check_network",
    "delete_network",
]

DEFAULT_PLUGIN_DIRS = (Path("/usr/lib/cni"), Path("/opt/cni/bin"))
"""Where Debian's containernetworking-plugins (and upstream's tarball) install the plugins."""

PLUGIN_TIMEOUT = 60.0


class PluginFailed(FailedPrecondition):
    """A CNI plugin reported an error (its CNI error code and message are attached)."""

    def __init__(self, message: str, *, plugin: str, command: str, code: int, details: str) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.command = command
        self.cni_code = code
        self.details = details


@attrs.frozen
class RuntimeConf:
    """What the runtime tells every plugin of a chain about the container.

    ``capabilities`` are runtime values (such as ``portMappings``) handed to the plugins
    that declare the capability in their configuration.
    """

    container_id: str
    netns: str
    ifname: str = "eth0"
    args: tuple[tuple[str, str], ...] = ()
    capabilities: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class CniResult:
    """A parsed CNI result (spec versions 0.3.0 to 1.0.0)."""

    raw: Mapping[str, Any] = attrs.field(eq=False, repr=False)
    addresses: tuple[str, ...] = ()
    """The container's addresses in CIDR form (``10.213.0.2/24``)."""
    gateways: tuple[str, ...] = ()
    interfaces: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def parse(cls, value: Mapping[str, Any]) -> CniResult:
        """Read the parts the SDK uses; the whole result is kept in ``raw``."""
        interfaces = tuple(i for i in value.get("interfaces") or () if isinstance(i, Mapping))
        addresses: list[str] = []
        gateways: list[str] = []
        for entry in value.get("ips") or ():
            if not isinstance(entry, Mapping) or not isinstance(entry.get("address"), str):
                continue
            index = entry.get("interface")
            # Only addresses of interfaces inside the container (those with a sandbox).
            if (
                isinstance(index, int)
                and 0 <= index < len(interfaces)
                and not interfaces[index].get("sandbox")
            ):
                continue
            addresses.append(entry["address"])
            if isinstance(entry.get("gateway"), str):
                gateways.append(entry["gateway"])
        return cls(dict(value), tuple(addresses), tuple(gateways), interfaces)

    @property
    def ips(self) -> tuple[str, ...]:
        """The container's addresses without prefix length."""
        return tuple(address.split("/", 1)[0] for address in self.addresses)


def find_plugin(kind: str, plugin_dirs: Sequence[Path]) -> Path:
    """The executable of plugin ``kind``; ``NotFound`` names the directories searched."""
    for directory in plugin_dirs:
        candidate = Path(directory) / kind
        if os.access(candidate, os.X_OK) and candidate.is_file():
            return candidate
    raise NotFound(
        f"CNI plugin {kind!r} not found in {', '.join(map(str, plugin_dirs))}; install the "
        "CNI plugins (Debian: containernetworking-plugins) or pass plugin_dirs="
    )


def _plugin_config(
    network: NetworkConfigList,
    plugin: Mapping[str, Any],
    runtime: RuntimeConf,
    prev_result: Mapping[str, Any] | None,
) -> dict[str, Any]:
    config = dict(plugin)
    config["name"] = network.name
    config["cniVersion"] = network.cni_version
    if prev_result is not None:
        config["prevResult"] = dict(prev_result)
    capabilities = plugin.get("capabilities")
    if isinstance(capabilities, Mapping):
        runtime_config = {
            key: value for key, value in runtime.capabilities.items() if capabilities.get(key)
        }
        if runtime_config:
            config["runtimeConfig"] = runtime_config
    return config


def _invoke(
    command: str,
    network: NetworkConfigList,
    plugin: Mapping[str, Any],
    runtime: RuntimeConf,
    prev_result: Mapping[str, Any] | None,
    plugin_dirs: Sequence[Path],
) -> dict[str, Any] | None:
    kind = str(plugin["type"])
    executable = find_plugin(kind, plugin_dirs)
    env = {key: value for key, value in os.environ.items() if not key.startswith("CNI_")}
    env.update(
        CNI_COMMAND=command,
        CNI_CONTAINERID=runtime.container_id,
        CNI_NETNS=runtime.netns,
        CNI_IFNAME=runtime.ifname,
        CNI_ARGS=";".join(f"{key}={value}" for key, value in runtime.args),
        CNI_PATH=os.pathsep.join(str(d) for d in plugin_dirs),
    )
    stdin = json.dumps(_plugin_config(network, plugin, runtime, prev_result)).encode()
    try:
        done = subprocess.run(
            [str(executable)],
            input=stdin,
            env=env,
            capture_output=True,
            timeout=PLUGIN_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DeadlineExceeded(
            f"CNI plugin {kind} ({command}) on network {network.name!r} did not answer within "
            f"{PLUGIN_TIMEOUT:.0f}s"
        ) from None
    if done.returncode != 0:
        code, message, details = 999, done.stderr.decode(errors="replace").strip(), ""
        try:
            error = json.loads(done.stdout)
            code = int(error.get("code", code))
            message = str(error.get("msg") or message)
            details = str(error.get("details") or "")
        except (ValueError, AttributeError, TypeError):
            message = message or done.stdout.decode(errors="replace").strip()
        raise PluginFailed(
            f"CNI plugin {kind} failed {command} for container {runtime.container_id} on "
            f"network {network.name!r}: {message}{' (' + details + ')' if details else ''} "
            f"[CNI error {code}]",
            plugin=kind,
            command=command,
            code=code,
            details=details,
        )
    if command != "ADD":
        return None
    try:
        result = json.loads(done.stdout)
    except ValueError:
        raise PluginFailed(
            f"CNI plugin {kind} printed no JSON result for ADD on network {network.name!r}",
            plugin=kind,
            command=command,
            code=999,
            details=done.stdout.decode(errors="replace")[:200],
        ) from None
    if not isinstance(result, dict):
        raise PluginFailed(
            f"CNI plugin {kind} printed a result that is not an object",
            plugin=kind,
            command=command,
            code=999,
            details="",
        )
    return result


def add_network(
    network: NetworkConfigList, runtime: RuntimeConf, plugin_dirs: Sequence[Path]
) -> CniResult:
    """Run ADD through the chain; on a failure the plugins already run are deleted again."""
    result: dict[str, Any] | None = None
    for index, plugin in enumerate(network.plugins):
        try:
            result = _invoke("ADD", network, plugin, runtime, result, plugin_dirs)
        except BaseException:
            partial = attrs.evolve(network, plugins=network.plugins[:index])
            with contextlib.suppress(Exception):  # the ADD error is the one to report
                delete_network(partial, runtime, plugin_dirs, result)
            raise
    assert result is not None
    return CniResult.parse(result)


def check_network(
    network: NetworkConfigList,
    runtime: RuntimeConf,
    plugin_dirs: Sequence[Path],
    prev_result: Mapping[str, Any],
) -> None:
    """Run CHECK through the chain (spec 0.4.0 and later; earlier versions have no CHECK)."""
    if _version(network.cni_version) < (0, 4, 0):
        return
    for plugin in network.plugins:
        _invoke("CHECK", network, plugin, runtime, prev_result, plugin_dirs)


def delete_network(
    network: NetworkConfigList,
    runtime: RuntimeConf,
    plugin_dirs: Sequence[Path],
    prev_result: Mapping[str, Any] | None,
) -> None:
    """Run DEL through the chain backwards; every plugin runs, the first failure is raised."""
    first: BaseException | None = None
    for plugin in reversed(network.plugins):
        try:
            _invoke("DEL", network, plugin, runtime, prev_result, plugin_dirs)
        except (PluginFailed, NotFound, DeadlineExceeded) as error:
            first = first or error
    if first is not None:
        raise first


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(".")[:3])
    except ValueError:
        return (0, 0, 0)
