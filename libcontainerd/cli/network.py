"""``libcontainerd network ls|create|rm`` and the networking options of ``libcontainerd run``.

The command's ``run`` defaults to ``--network bridge`` (like docker and nerdctl), while
the SDK's ``new_container`` defaults to no network beyond loopback: a library should not
change a host's firewall unless asked.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from libcontainerd.cli.output import make_client
from libcontainerd.cli.run_extensions import RunRequest, register_run_extension
from libcontainerd.network import DnsConfig, NetworkSettings
from libcontainerd.network.settings import DEFAULT_CONFIG_DIR, DEFAULT_STATE_DIR

__all__ = [
    "RUN_DEFAULT_NETWORK",
    "NetworkRunExtension",
    "add_run_arguments",
    "client_options",
    "register",
    "run_kwargs",
]

RUN_DEFAULT_NETWORK = "bridge"
"""The network ``libcontainerd run`` uses without ``--network``."""


def _add_settings_arguments(parser: Any) -> None:
    parser.add_argument(
        "--cni-config-dir",
        default=None,
        help=f"directory of CNI network configurations (default {DEFAULT_CONFIG_DIR})",
    )
    parser.add_argument(
        "--network-state-dir",
        default=None,
        help=f"where namespaces, leases and cached results live (default {DEFAULT_STATE_DIR})",
    )


def client_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``new_client`` keyword arguments the parsed networking options ask for."""
    settings: dict[str, Any] = {}
    if getattr(args, "cni_config_dir", None):
        settings["config_dir"] = args.cni_config_dir
    if getattr(args, "network_state_dir", None):
        settings["state_dir"] = args.network_state_dir
    return {"network": NetworkSettings.of(settings)} if settings else {}


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--network``, ``-p/--publish``, ``--dns``, ``--dns-search`` and ``--hostname``."""
    _add_run_options(parser.add_argument_group("networking"))


def _add_run_options(group: Any) -> None:
    group.add_argument(
        "--network",
        default=RUN_DEFAULT_NETWORK,
        help="none, host, bridge (the default) or the name of a CNI network",
    )
    group.add_argument(
        "-p",
        "--publish",
        action="append",
        default=[],
        metavar="[IP:]HOST_PORT:CONTAINER_PORT[/PROTO]",
        help="publish a container port on the host (repeatable)",
    )
    group.add_argument(
        "--dns", action="append", default=[], metavar="IP", help="a DNS server (repeatable)"
    )
    group.add_argument(
        "--dns-search", action="append", default=[], metavar="DOMAIN", help="a search domain"
    )
    group.add_argument("--hostname", default=None, help="the container's host name")
    _add_settings_arguments(group)


def run_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The ``new_container`` keyword arguments for the parsed ``run`` networking options."""
    dns = None
    if args.dns or args.dns_search:
        dns = DnsConfig(servers=tuple(args.dns), search=tuple(args.dns_search))
    return {
        "network": args.network,
        "ports": list(args.publish) or None,
        "dns": dns,
        "hostname": args.hostname,
    }


class NetworkRunExtension:
    """The networking options of ``libcontainerd run`` (registered when this module loads)."""

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        """Add ``--network``, ``-p``, ``--dns``, ``--dns-search`` and ``--hostname``."""
        _add_run_options(group)

    def apply(self, args: argparse.Namespace, request: RunRequest) -> None:
        """Pass the networking options to ``new_client`` and ``new_container``."""
        request.container_options.update(run_kwargs(args))
        request.client_options.update(client_options(args))


register_run_extension(NetworkRunExtension())


def _client(args: argparse.Namespace) -> Any:
    return make_client(args, **client_options(args))


def _ls(args: argparse.Namespace) -> int:
    with _client(args) as client:
        networks = client.networks.list()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": n.name,
                        "plugins": list(n.plugins),
                        "bridge": n.bridge,
                        "subnets": list(n.subnets),
                        "owned": n.owned,
                        "path": str(n.path) if n.path else None,
                    }
                    for n in networks
                ]
            )
        )
        return 0
    print(f"{'NAME':<20} {'BRIDGE':<16} {'SUBNET':<20} PLUGINS")
    for n in networks:
        subnet = ",".join(n.subnets) or "-"
        print(f"{n.name:<20} {n.bridge or '-':<16} {subnet:<20} {','.join(n.plugins)}")
    return 0


def _create(args: argparse.Namespace) -> int:
    with _client(args) as client:
        network = client.networks.create(
            args.name, subnet=args.subnet, gateway=args.gateway, bridge=args.bridge
        )
    print(f"{network.name} {network.bridge} {','.join(network.subnets)}")
    return 0


def _rm(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for name in args.names:
            client.networks.remove(name)
            print(name)
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``network`` command (``ls``, ``create``, ``rm``) to a command line's subparsers."""
    network: argparse.ArgumentParser = subparsers.add_parser(
        "network", help="list, create and remove CNI networks"
    )
    commands = network.add_subparsers(dest="network_command", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        _add_settings_arguments(parser)

    ls = commands.add_parser("ls", help="list networks")
    ls.add_argument("--json", action="store_true")
    common(ls)
    ls.set_defaults(handler=_ls)

    create = commands.add_parser("create", help="create a bridge network")
    create.add_argument("name")
    create.add_argument("--subnet", help="e.g. 10.213.5.0/24 (default: a free 10.213.N.0/24)")
    create.add_argument("--gateway")
    create.add_argument("--bridge", help="the bridge device (default lcd-<name>)")
    common(create)
    create.set_defaults(handler=_create)

    rm = commands.add_parser("rm", help="remove networks created by libcontainerd")
    rm.add_argument("names", nargs="+")
    common(rm)
    rm.set_defaults(handler=_rm)
    return network
