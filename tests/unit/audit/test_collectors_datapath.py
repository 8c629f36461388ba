"""The datapath collector's parsing and judgement: links, ways out, bridges, packet sockets (real namespaces in
tests/integration/test_egress_bypass.py)."""

from __future__ import annotations

import json

import pytest

from gapseal.audit.collectors.datapath import (
    _attached,
    _bridges,
    _Netns,
    parse_links,
    parse_packet_sockets,
    to_netlink,
    way_out,
)
from gapseal.audit.facts import NetLink

HOST, CHILD, OTHER = "net:[1]", "net:[2]", "net:[3]"

# `ip -j -d link show` inside a container namespace: a macvlan on the host's eth0 (peer id 0 = the host) and a veth.
CHILD_LINKS = json.dumps([
    {"ifindex": 1, "ifname": "lo", "link_type": "loopback"},
    {"ifindex": 5, "ifname": "mv0", "link_index": 2, "link_netnsid": 0, "link_type": "ether",
     "linkinfo": {"info_kind": "macvlan", "info_data": {"mode": "bridge"}}},
    {"ifindex": 6, "ifname": "eth0", "link": "veth9", "link_type": "ether", "linkinfo": {"info_kind": "veth"}},
])  # fmt: skip

PACKET = """sk               RefCnt Type Proto  Iface R Rmem   User   Inode
ffff8f3a41c0e000 3      3    0003   2     1 0      0      23817
ffff8f3a41c0f000 3      2    0800   0     1 0      0      23818
"""


def link(name: str, kind: str | None, **fields: object) -> NetLink:
    return NetLink.model_validate({"name": name, "ifindex": 2, "kind": kind, "link_type": "ether", **fields})


def test_links_resolve_their_peer_namespace_through_the_peer_ids() -> None:
    links = [to_netlink(x, {0: HOST}) for x in parse_links(CHILD_LINKS)]
    assert [(x.name, x.kind, x.peer_netns, x.lower) for x in links] == [
        ("lo", None, None, None),
        ("mv0", "macvlan", HOST, None),
        ("eth0", "veth", None, "veth9"),
    ]
    unresolved = to_netlink(parse_links(CHILD_LINKS)[1], {})
    assert unresolved.peer_netns is None
    assert unresolved.peer_unresolved


@pytest.mark.parametrize("text", ["{}", "[1]", '[{"ifindex": 1}]'])
def test_links_that_are_not_ip_link_output_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a list of links"):
        parse_links(text)


@pytest.mark.parametrize(
    ("netlink", "expected"),
    [
        (link("lo", None, link_type="loopback"), None),
        (link("br0", "bridge"), None),
        (link("d0", "dummy"), None),
        (link("eth0", "veth", peer_netns=HOST), None),
        (link("eth0", "veth", peer_netns=OTHER), "eth0 (veth to net:[3])"),
        (link("eth0", "veth", peer_unresolved=True), "eth0 (veth to a namespace that could not be identified)"),
        (link("mv0", "macvlan", peer_netns=HOST), "mv0 (macvlan on a device of net:[1])"),
        (link("vl5", "vlan", lower="eth1"), "vl5 (vlan on eth1)"),
        (link("enp2s0", None), "enp2s0 (physical device)"),
        (link("tun0", "tun"), "tun0 (tun)"),
    ],
)
def test_way_out_of_a_child_namespace(netlink: NetLink, expected: str | None) -> None:
    assert way_out(netlink, CHILD, {HOST}) == expected


def test_a_bridge_port_is_an_uplink_unless_it_is_a_veth_into_a_contained_namespace() -> None:
    links = [
        link("br0", "bridge"),
        link("enp1s0", None, master="br0"),
        link("veth0", "veth", master="br0", peer_netns=CHILD),
        link("veth1", "veth", master="br0", peer_netns=OTHER),
        link("podman0", "bridge"),
        link("veth2", "veth", master="podman0", peer_netns=CHILD),
    ]
    bridges = _bridges(links, {HOST, CHILD})
    assert [(b.name, b.uplink_ports, b.other_ports) for b in bridges] == [
        ("br0", ["enp1s0", "veth1"], ["veth0"]),
        ("podman0", [], ["veth2"]),
    ]


def test_packet_sockets_are_parsed_with_type_protocol_and_interface_index() -> None:
    assert parse_packet_sockets(PACKET) == [(23817, "raw", "0003", 2), (23818, "dgram", "0800", 0)]


def test_namespaces_of_the_host_from_a_namespace_that_is_not_the_initial_one() -> None:
    """Audited ``net:[1]`` hangs off the initial ``net:[9]`` (its uplink's peer).

    ``net:[2]`` holds a macvlan on its NIC, ``net:[4]`` sits behind ``net:[2]``; ``net:[3]`` is another host of the
    machine, linked only to the initial one.
    """
    own_links = [link("up0", "veth", peer_netns="net:[9]")]
    links_of = {
        "net:[2]": [link("mv0", "macvlan", peer_netns=HOST), link("v4", "veth", peer_netns="net:[4]")],
        "net:[3]": [link("eth0", "veth", peer_netns="net:[9]")],
        "net:[4]": [link("eth0", "veth", peer_netns=CHILD)],
        "net:[9]": [link("up0r", "veth", peer_netns=HOST), link("eth0r", "veth", peer_netns=OTHER)],
    }
    others = {ident: _Netns(ident=ident, fd=-1, path="") for ident in links_of}
    assert _attached(HOST, "net:[9]", own_links, links_of, others) == {"net:[2]", "net:[4]"}
    assert _attached(HOST, HOST, own_links, links_of, others) == set(others)  # from the initial one: every namespace
