"""Container networking with CNI, shared by both backends.

``new_container(..., network=, ports=, dns=, hostname=)`` gives a container one of:

* ``"none"`` - loopback only (the SDK's default when no argument is given);
* ``"host"`` - the host's network namespace;
* ``"bridge"`` - the SDK's default bridge network, created on first use;
* the name of any CNI network in the configuration directory (``/etc/cni/net.d``).

``client.networks`` creates, lists and removes networks; :class:`NetworkSettings` (the
``network=`` client option) says where configurations, plugins and state live.
"""

from libcontainerd.network.attachments import (
    LABEL_HOSTNAME,
    LABEL_IPS,
    LABEL_NETWORK,
    LABEL_PORTS,
    NetworkStatus,
)
from libcontainerd.network.cni import CniResult, PluginFailed, RuntimeConf
from libcontainerd.network.conflist import NetworkConfigList, bridge_conflist
from libcontainerd.network.files import DnsConfig, ResolvConf
from libcontainerd.network.networks import Network
from libcontainerd.network.ports import PortMapping, parse_ports
from libcontainerd.network.service import Networks
from libcontainerd.network.settings import NetworkSettings

__all__ = [
    "LABEL_HOSTNAME",
    "LABEL_IPS",
    "LABEL_NETWORK",
    "LABEL_PORTS",
    "CniResult",
    "DnsConfig",
    "Network",
    "NetworkConfigList",
    "NetworkSettings",
    "NetworkStatus",
    "Networks",
    "PluginFailed",
    "PortMapping",
    "ResolvConf",
    "RuntimeConf",
    "bridge_conflist",
    "parse_ports",
]
