"""Destination classes and the routes that pick the output interface (no kernel: hand-written ``nft -j``/``ip -j``)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from gapseal.audit import netfilter
from gapseal.audit.netfilter.classes import MAX_QUOTES, DestinationClass

ACCEPT: dict[str, Any] = {"accept": None}


def match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def daddr(family: str = "ip") -> dict[str, Any]:
    return {"payload": {"protocol": family, "field": "daddr"}}


def prefix(addr: str, length: int) -> dict[str, Any]:
    return {"prefix": {"addr": addr, "len": length}}


def lockdown(*rules: list[Any], policy: str = "drop", **kw: Any) -> netfilter.Ruleset:
    items: list[Any] = [
        {"table": {"family": "inet", "name": "t", "handle": 1}},
        {"chain": {"family": "inet", "table": "t", "name": "out", "handle": 2, "type": "filter", "hook": "output",
                   "prio": 0, "policy": policy}},
    ]  # fmt: skip
    items += [{"rule": {"family": "inet", "table": "t", "chain": "out", "handle": 10 + i, "expr": r}}
              for i, r in enumerate(rules)]  # fmt: skip
    return netfilter.build_ruleset(nft_json={"nftables": items}, **kw)


def summary(classes: list[DestinationClass]) -> set[tuple[str, str, tuple[str, ...], tuple[tuple[int, int], ...], str]]:
    return {(c.family, c.protocol, tuple(c.networks()), c.ports, c.verdict) for c in classes}


ENCLAVE_RULES = ([match(daddr(), prefix("10.0.0.0", 8)), ACCEPT], [match(daddr("ip6"), prefix("fd00::", 8)), ACCEPT])


def test_a_lockdown_accepts_only_its_allowlist() -> None:
    classes = netfilter.egress_classes(lockdown(*ENCLAVE_RULES))
    every_port = ((1, 65535),)
    assert summary(classes) == {
        ("ip", "tcp", ("10.0.0.0/8",), every_port, "accept"),
        ("ip", "udp", ("10.0.0.0/8",), every_port, "accept"),
        ("ip", "icmp", ("10.0.0.0/8",), (), "accept"),
        ("ip6", "tcp", ("fd00::/8",), every_port, "accept"),
        ("ip6", "udp", ("fd00::/8",), every_port, "accept"),
        ("ip6", "icmp", ("fd00::/8",), (), "accept"),
    }
    # without the nft -a listing a rule is quoted as its JSON
    (quote,) = classes[0].decided_by
    assert quote.startswith('nftables inet t out: [{"match":{"left":{"payload":{"field":"daddr","protocol":"ip"}}')
    assert quote.endswith('{"accept":null}] # handle 10')


def test_a_drop_for_some_ports_leaves_the_others_open() -> None:
    tcp = {"payload": {"protocol": "tcp", "field": "dport"}}
    classes = netfilter.egress_classes(lockdown([match(tcp, {"set": [22, 443]}), {"drop": None}], policy="accept"))
    tcp_v4 = [c for c in classes if (c.family, c.protocol) == ("ip", "tcp")]
    assert [(c.networks(), c.ports) for c in tcp_v4] == [(["0.0.0.0/0"], ((1, 21), (23, 442), (444, 65535)))]
    assert {(c.family, c.protocol) for c in classes} == {(f, p) for f in ("ip", "ip6") for p in ("tcp", "udp", "icmp")}


def test_probe_verdicts_include_drops() -> None:
    rs = lockdown(*ENCLAVE_RULES)
    answers = netfilter.probe_verdicts(rs, ["198.51.100.1", "10.1.1.1"])
    assert [(ipaddress.ip_address(a.first), a.protocol, a.verdict) for a in answers] == [
        (ipaddress.ip_address("198.51.100.1"), p, "drop") for p in ("tcp", "udp", "icmp")
    ] + [(ipaddress.ip_address("10.1.1.1"), p, "accept") for p in ("tcp", "udp", "icmp")]
    assert answers[0].decided_by == ("nftables inet t out: policy drop",)


def test_any_sender_that_gets_through_makes_the_class_accept() -> None:
    rs = lockdown([match({"meta": {"key": "skuid"}}, 1000), ACCEPT])
    (answer,) = [a for a in netfilter.probe_verdicts(rs, ["198.51.100.1"]) if a.protocol == "udp"]
    assert answer.verdict == "accept"
    assert answer.decided_by[-1] == "(a packet from udp 198.51.100.1 port 1 skuid 1000)"


def test_quotes_per_class_are_bounded() -> None:
    rules = [[match(daddr(), prefix(f"10.0.{i}.0", 24)), {"counter": None}, ACCEPT] for i in range(MAX_QUOTES + 4)]
    rs = lockdown(*rules)
    classes = [c for c in netfilter.egress_classes(rs) if (c.family, c.protocol) == ("ip", "tcp")]
    assert [c.networks() for c in classes] == [["10.0.0.0/21", "10.0.8.0/22"]]
    assert len(classes[0].decided_by) == MAX_QUOTES


# --------------------------------------------------------------------------------------------------- routes

DEFAULT_RULES_V4 = [{"priority": 0, "src": "all", "table": "local"}, {"priority": 32766, "src": "all", "table": "main"},
                    {"priority": 32767, "src": "all", "table": "default"}]  # fmt: skip
DEFAULT_RULES_V6 = DEFAULT_RULES_V4[:2]
# ip -j route show table all in the egress lab's host (enc0: the enclave, out0: the outside)
ROUTES_V4 = [
    {"dst": "10.209.202.0/24", "dev": "enc0", "protocol": "kernel", "scope": "link", "flags": []},
    {"dst": "198.51.100.0/24", "dev": "out0", "protocol": "kernel", "scope": "link", "flags": []},
    {"dst": "203.0.113.0/24", "gateway": "198.51.100.1", "dev": "out0", "flags": []},
    {"dst": "192.0.2.0/24", "flags": [], "nexthops": [{"gateway": "198.51.100.1", "dev": "out0"},
                                                     {"gateway": "10.209.202.1", "dev": "enc0"}]},
    {"type": "unreachable", "dst": "198.18.0.0/15", "flags": []},
    {"dst": "default", "gateway": "10.209.202.1", "dev": "enc0", "table": "default", "flags": []},
    {"type": "local", "dst": "10.209.202.2", "dev": "enc0", "table": "local", "scope": "host", "flags": []},
    {"type": "local", "dst": "127.0.0.0/8", "dev": "lo", "table": "local", "scope": "host", "flags": []},
]  # fmt: skip
ROUTES_V6 = [
    {"dst": "fd20:4:ca::/64", "dev": "enc0", "protocol": "kernel", "metric": 256, "flags": []},
    {"dst": "2001:db8::/64", "dev": "out0", "protocol": "kernel", "metric": 256, "flags": []},
    {"dst": "2001:db8::/64", "dev": "out1", "metric": 1024, "flags": []},
    {"type": "local", "dst": "::1", "dev": "lo", "table": "local", "metric": 0, "flags": []},
]


def lab_routing() -> netfilter.Routing:
    return netfilter.routing_from_ip(
        {"ip": ROUTES_V4, "ip6": ROUTES_V6}, {"ip": DEFAULT_RULES_V4, "ip6": DEFAULT_RULES_V6}
    )


@pytest.mark.parametrize(
    ("address", "interfaces"),
    [
        ("10.209.202.1", ("enc0",)),
        ("198.51.100.7", ("out0",)),
        ("203.0.113.1", ("out0",)),
        ("192.0.2.1", ("enc0", "out0")),  # multipath: every hop's interface
        ("8.8.8.8", ("enc0",)),  # main has no route: the default table's default route
        ("198.18.0.1", None),  # unreachable: not known for sure
        ("10.209.202.2", None),  # the host's own address (local table): it does not leave
        ("fd20:4:ca::1", ("enc0",)),
        ("2001:db8::7", ("out0", "out1")),  # equal prefixes, other metrics: both
        ("2001:db8:1::1", None),  # no route
    ],
)
def test_output_interfaces(address: str, interfaces: tuple[str, ...] | None) -> None:
    ip = ipaddress.ip_address(address)
    family: netfilter.Family = "ip" if ip.version == 4 else "ip6"
    assert lab_routing().output_interfaces(family, int(ip)) == interfaces


def test_policy_routing_leaves_the_family_out() -> None:
    rules = [*DEFAULT_RULES_V4, {"priority": 100, "src": "all", "fwmark": "0x1", "table": "200"}]
    routing = netfilter.routing_from_ip({"ip": ROUTES_V4}, {"ip": rules})
    assert routing.output_interfaces("ip", int(ipaddress.ip_address("198.51.100.7"))) is None
    assert "ip" not in routing.tables


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ({"ip": {"dst": "default"}}, "did not print a JSON array"),
        ({"ip": ["default"]}, "is not a route"),
        ({"ip": [{"dst": "2001:db8::/64", "dev": "x"}]}, "of the other family"),
        ({"ip": [{"dst": "10.0.0.0/33", "dev": "x"}]}, "10.0.0.0/33"),
        ({"ip": [{"dst": None, "dev": "x"}]}, "route destination None"),
    ],
    ids=["not-an-array", "not-an-object", "other-family", "bad-prefix", "no-destination"],
)
def test_malformed_routes_are_clear_errors(routes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        netfilter.routing_from_ip(routes, {"ip": DEFAULT_RULES_V4})  # type: ignore[arg-type]


def test_malformed_rules_mean_every_interface_is_tried() -> None:
    for rules in ([{"priority": [0], "src": "all", "table": "local"}], ["x"], []):
        assert "ip" not in netfilter.routing_from_ip({"ip": ROUTES_V4}, {"ip": rules}).tables


def test_an_interface_rule_is_judged_through_the_route() -> None:
    """``oifname "enc0" accept``: routed outside destinations are dropped; unrouted ones may leave via enc0."""
    rs = lockdown(
        [match({"meta": {"key": "oifname"}}, "lo"), ACCEPT], [match({"meta": {"key": "oifname"}}, "enc0"), ACCEPT]
    )
    routing = netfilter.routing_from_ip({"ip": ROUTES_V4[:3]}, {"ip": DEFAULT_RULES_V6})
    probes = netfilter.probe_verdicts(rs, ["198.51.100.1", "203.0.113.1", "10.209.202.1", "8.8.8.8"], routing)
    verdicts = {(str(ipaddress.ip_address(a.first)), a.protocol): a.verdict for a in probes}
    assert {v for (addr, _), v in verdicts.items() if addr in {"198.51.100.1", "203.0.113.1"}} == {"drop"}
    assert {v for (addr, _), v in verdicts.items() if addr in {"10.209.202.1", "8.8.8.8"}} == {"accept"}
    udp = [c for c in netfilter.egress_classes(rs, ("ip",), routing) if c.protocol == "udp"]

    def holding(address: str) -> list[DestinationClass]:
        return [c for c in udp if c.first <= int(ipaddress.ip_address(address)) <= c.last]

    assert holding("198.51.100.7") == []
    assert holding("203.0.113.7") == []
    (enclave,) = holding("10.209.202.7")
    assert "(a packet from udp 10.209.202.0 port 1 oifname enc0)" in enclave.decided_by
    # without the routes every interface a rule names is tried: the outside is (wrongly, but cautiously) accepted
    without = netfilter.probe_verdicts(rs, ["198.51.100.1"])
    assert {a.verdict for a in without} == {"accept"}


# --------------------------------------------------------------------------------------------------- rewrites


def nat_ruleset(statement: dict[str, Any], *, dormant: bool = False) -> netfilter.Ruleset:
    """A lockdown allowing 10.0.0.0/8 at priority -200, then a nat chain rewriting packets to 10.9.9.9."""
    table: dict[str, Any] = {"family": "ip", "name": "nat", "handle": 5}
    if dormant:
        table["flags"] = ["dormant"]
    items: list[Any] = [
        {"table": {"family": "ip", "name": "lock", "handle": 1}},
        {"chain": {"family": "ip", "table": "lock", "name": "out", "handle": 2, "type": "filter", "hook": "output",
                   "prio": -200, "policy": "drop"}},
        {"rule": {"family": "ip", "table": "lock", "chain": "out", "handle": 3,
                  "expr": [match(daddr(), prefix("10.0.0.0", 8)), ACCEPT]}},
        {"table": table},
        {"chain": {"family": "ip", "table": "nat", "name": "out", "handle": 6, "type": "nat", "hook": "output",
                   "prio": -100, "policy": "accept"}},
        {"rule": {"family": "ip", "table": "nat", "chain": "out", "handle": 7,
                  "expr": [match(daddr(), "10.9.9.9"), statement]}},
    ]  # fmt: skip
    return netfilter.build_ruleset(nft_json={"nftables": items})


DNAT = {"dnat": {"addr": "198.51.100.7"}}


def test_a_rule_that_rewrites_the_destination_makes_every_destination_unknown() -> None:
    """Accepted as addressed to the enclave, then sent to the outside by dnat: never a pass."""
    rs = nat_ruleset(DNAT)
    anywhere = [c for c in netfilter.egress_classes(rs, ("ip",)) if c.networks() == ["0.0.0.0/0"]]
    assert [(c.protocol, c.verdict) for c in anywhere] == [("tcp", "unknown"), ("udp", "unknown"), ("icmp", "unknown")]
    (quote,) = anywhere[0].decided_by
    assert quote.startswith("nftables ip nat out: ")
    assert quote.endswith('{"dnat":{"addr":"198.51.100.7"}}] # handle 7')
    assert {a.verdict for a in netfilter.probe_verdicts(rs, ["198.51.100.1"])} == {"unknown"}


@pytest.mark.parametrize(
    "statement",
    [{"redirect": {"port": 8080}}, {"tproxy": {"port": 1}}, {"dup": {"addr": "198.51.100.7"}}, {"queue": {"num": 1}},
     {"mangle": {"key": {"payload": {"protocol": "ip", "field": "daddr"}}, "value": "198.51.100.7"}},
     {"xt": {"type": "target", "name": "DNAT"}}],
    ids=["redirect", "tproxy", "dup", "queue", "payload-rewrite", "xt-dnat"],
)  # fmt: skip
def test_every_rewriting_statement_counts(statement: dict[str, Any]) -> None:
    assert {a.verdict for a in netfilter.probe_verdicts(nat_ruleset(statement), ["198.51.100.1"])} == {"unknown"}


def test_a_mark_or_a_dormant_rewrite_sends_nothing_elsewhere() -> None:
    mark = {"mangle": {"key": {"meta": {"key": "mark"}}, "value": 1}}
    assert {a.verdict for a in netfilter.probe_verdicts(nat_ruleset(mark), ["198.51.100.1"])} == {"drop"}
    assert {a.verdict for a in netfilter.probe_verdicts(nat_ruleset(DNAT, dormant=True), ["198.51.100.1"])} == {"drop"}
    assert not [c for c in netfilter.egress_classes(nat_ruleset(mark), ("ip",)) if c.networks() == ["0.0.0.0/0"]]


@pytest.mark.parametrize(
    "line",
    ["-A OUTPUT -d 10.9.9.9/32 -p tcp -j DNAT --to-destination 198.51.100.7",
     "-A OUTPUT -d 10.9.9.9/32 -j TEE --gateway 198.51.100.1",
     '-A OUTPUT -m comment --comment "unbalanced -j DNAT --to-destination 198.51.100.7'],
    ids=["dnat", "tee", "unparseable-line-naming-dnat"],
)  # fmt: skip
def test_legacy_rewriting_targets_count(line: str) -> None:
    nat = "\n".join(["*nat", *(f":{c} ACCEPT [0:0]" for c in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")),
                     line, "COMMIT", ""])  # fmt: skip
    lockdown_v4 = "\n".join(["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT DROP [0:0]",
                             "-A OUTPUT -d 10.0.0.0/8 -j ACCEPT", "COMMIT", ""])  # fmt: skip
    rs = netfilter.build_ruleset(iptables_legacy={"ip": lockdown_v4 + nat})
    (anywhere,) = [
        c for c in netfilter.egress_classes(rs, ("ip",)) if c.networks() == ["0.0.0.0/0"] and c.protocol == "udp"
    ]
    assert (anywhere.verdict, anywhere.decided_by) == ("unknown", (line,))
