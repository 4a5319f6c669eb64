"""The network layer's parsers: published ports, resolv.conf, conflists and CNI results."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libcontainerd.errors import InvalidArgument
from libcontainerd.network import (
    CniResult,
    DnsConfig,
    NetworkConfigList,
    PortMapping,
    ResolvConf,
    bridge_conflist,
    parse_ports,
)
from libcontainerd.network.conflist import load_conflists
from libcontainerd.network.files import hosts_file

ports = st.integers(min_value=1, max_value=65535)
protocols = st.sampled_from(["tcp", "udp", "sctp"])
host_ips = st.one_of(
    st.just(""),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
mappings = st.builds(PortMapping, ports, ports, protocols, host_ips)


@given(mappings)
def test_port_mapping_round_trips_through_text(mapping: PortMapping) -> None:
    assert PortMapping.parse(str(mapping)) == mapping


@given(mappings)
def test_port_mapping_round_trips_through_cni(mapping: PortMapping) -> None:
    assert PortMapping.from_cni(json.loads(json.dumps(mapping.to_cni()))) == mapping


@given(st.text(max_size=30))
def test_port_parser_accepts_or_raises_invalid_argument(text: str) -> None:
    try:
        parsed = PortMapping.parse(text)
    except InvalidArgument:
        return
    assert 1 <= parsed.host_port <= 65535 and 1 <= parsed.container_port <= 65535


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080:80/tcp", PortMapping(8080, 80, "tcp", "127.0.0.1")),
        ("9000:9000/udp", PortMapping(9000, 9000, "udp", "")),
        ("8080:80", PortMapping(8080, 80, "tcp", "")),
        ("[::1]:8443:443", PortMapping(8443, 443, "tcp", "::1")),
    ],
)
def test_port_examples(text: str, expected: PortMapping) -> None:
    assert PortMapping.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "80",
        "0:80",
        "70000:80",
        "a:80",
        "1.2.3:80:80",
        "80:80/icmp",
        "80:80/",
        "[::1:80:80",
        ":80:80",
    ],
)
def test_port_errors_say_how_to_write_one(text: str) -> None:
    with pytest.raises(InvalidArgument):
        PortMapping.parse(text)


def test_duplicate_host_ports_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="twice"):
        parse_ports(["8080:80", "8080:81/tcp"])
    with pytest.raises(InvalidArgument, match="list"):
        parse_ports("8080:80")  # type: ignore[arg-type]


servers = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))
words = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="#;"),
    min_size=1,
    max_size=20,
)
resolv_confs = st.builds(
    ResolvConf,
    st.lists(servers, max_size=4).map(tuple),
    st.lists(words, max_size=6).map(tuple),
    st.lists(words, max_size=3).map(tuple),
)


@given(resolv_confs)
def test_resolv_conf_round_trips(conf: ResolvConf) -> None:
    assert ResolvConf.parse(conf.render()) == conf


@given(st.text(max_size=200))
def test_resolv_conf_parser_never_fails(text: str) -> None:
    parsed = ResolvConf.parse(text)
    for server in parsed.nameservers:
        ipaddress.ip_address(server.split("%", 1)[0])


def test_loopback_nameservers_are_dropped_and_dns_overrides() -> None:
    host = ResolvConf.parse(
        "# comment\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\n"
        "domain a.test\nsearch b.test c.test\noptions ndots:2\n"
    )
    assert host == ResolvConf(("127.0.0.53", "10.0.0.2", "::1"), ("b.test", "c.test"), ("ndots:2",))
    assert host.without_loopback().nameservers == ("10.0.0.2",)
    custom = host.with_custom(DnsConfig(servers=["10.9.9.9"], search=["x.test"]))
    assert custom == ResolvConf(("10.9.9.9",), ("x.test",), ("ndots:2",))
    with pytest.raises(InvalidArgument):
        DnsConfig(servers=["not-an-ip"])
    with pytest.raises(InvalidArgument):
        DnsConfig.of("10.0.0.1")  # type: ignore[arg-type]


def test_hosts_file_names_the_container() -> None:
    text = hosts_file("web", ["10.213.0.2"])
    assert "127.0.0.1\tlocalhost\n" in text and text.endswith("10.213.0.2\tweb\n")
    assert hosts_file("solo", []).endswith("127.0.0.1\tsolo\n")
    assert hosts_file("h", ["1.2.3.4"], base="1.1.1.1 x\n").splitlines() == [
        "1.1.1.1 x",
        "1.2.3.4\th",
    ]


def test_bridge_recipe_and_conflist_loading(tmp_path: Path) -> None:
    config = bridge_conflist("net1", bridge="lcd-net1", subnet="10.213.5.0/24", ipam_dir=tmp_path)
    assert config.types == ("bridge", "portmap", "firewall", "loopback")
    assert config.owned and config.bridge == "lcd-net1" and config.subnets == ("10.213.5.0/24",)
    assert config.supports("portMappings")
    (tmp_path / "a.conflist").write_text(json.dumps(config.to_json()))
    (tmp_path / "broken.conflist").write_text("{")
    single = {"cniVersion": "0.4.0", "name": "single", "type": "bridge", "bridge": "x0"}
    (tmp_path / "b.conf").write_text(json.dumps(single))
    found = load_conflists(tmp_path)
    assert sorted(found) == ["net1", "single"]
    assert found["single"].types == ("bridge",) and not found["single"].owned
    for bad in ({"name": "x", "plugins": []}, {"name": "bad name", "plugins": [{"type": "a"}]}):
        with pytest.raises(InvalidArgument):
            NetworkConfigList.from_json(bad)
    with pytest.raises(InvalidArgument):
        bridge_conflist("n", bridge="much-too-long-name", subnet="10.0.0.0/24", ipam_dir=tmp_path)


def test_cni_result_keeps_only_addresses_inside_the_container() -> None:
    result = CniResult.parse(
        {
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "br"}, {"name": "veth"}, {"name": "eth0", "sandbox": "/ns"}],
            "ips": [
                {"interface": 2, "address": "10.213.0.2/24", "gateway": "10.213.0.1"},
                {"interface": 0, "address": "10.213.0.1/24"},
            ],
        }
    )
    assert result.ips == ("10.213.0.2",) and result.gateways == ("10.213.0.1",)


def test_network_exports_are_documented_and_backend_free() -> None:
    import ast
    import inspect

    import libcontainerd.network as network

    assert network.__doc__
    for name in network.__all__:
        value = getattr(network, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__doc__, name
    for path in Path(network.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(("libcontainerd.local", "libcontainerd.remote"))


def test_network_settings_from_a_dict(tmp_path: Path) -> None:
    from libcontainerd.network import NetworkSettings

    settings = NetworkSettings.of({"config_dir": str(tmp_path), "plugin_dirs": "/x"})
    assert settings.config_dir == tmp_path and settings.plugin_dirs == (Path("/x"),)
    assert NetworkSettings.of(None) == NetworkSettings()
    with pytest.raises(InvalidArgument, match="unknown network setting"):
        NetworkSettings.of({"bridge": "x"})
    with pytest.raises(InvalidArgument):
        NetworkSettings.of({"plugin_dirs": 5})
    with pytest.raises(InvalidArgument):
        NetworkSettings.of("/etc/cni")  # type: ignore[arg-type]
