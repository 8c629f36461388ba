"""The forward path: packets another host sends through this one (no kernel: hand-written ``nft -j``/iptables-save)."""

from __future__ import annotations

from typing import Any

import pytest

from gapseal.audit import netfilter
from gapseal.audit.netfilter.model import Packet

ACCEPT: dict[str, Any] = {"accept": None}
DROP: dict[str, Any] = {"drop": None}
Chain = tuple[str, str, str, list[list[Any]]]
"""A base chain: name, hook, policy, rules (nft -j expressions)."""


def match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def daddr(family: str = "ip") -> dict[str, Any]:
    return {"payload": {"protocol": family, "field": "daddr"}}


def prefix(addr: str, length: int) -> dict[str, Any]:
    return {"prefix": {"addr": addr, "len": length}}


def table(*chains: Chain, family: str = "inet") -> list[Any]:
    """nft -j items of one table ``t``: chains as (name, hook, policy, rules)."""
    items: list[Any] = [{"table": {"family": family, "name": "t", "handle": 1}}]
    handle = 10
    for name, hook, policy, rules in chains:
        items.append({"chain": {"family": family, "table": "t", "name": name, "handle": 2, "type": "filter",
                                "hook": hook, "prio": 0, "policy": policy}})  # fmt: skip
        for r in rules:
            handle += 1
            items.append({"rule": {"family": family, "table": "t", "chain": name, "handle": handle, "expr": r}})
    return items


def forward_ruleset(*chains: Chain, **kw: Any) -> netfilter.Ruleset:
    return netfilter.build_ruleset(nft_json={"nftables": table(*chains)}, **kw).forward()


def verdicts(ruleset: netfilter.Ruleset, address: str) -> set[str]:
    return {c.verdict for c in netfilter.probe_verdicts(ruleset, [address])}


LOCKED_OUTPUT: Chain = ("out", "output", "drop", [])


def test_no_forward_chain_forwards_everything_even_with_output_locked() -> None:
    rs = forward_ruleset(LOCKED_OUTPUT)
    assert verdicts(rs, "198.51.100.7") == {"accept"}
    assert verdicts(rs, "2001:db8::7") == {"accept"}
    decided = netfilter.probe_verdicts(rs, ["198.51.100.7"])[0].decided_by
    assert decided == (
        "no active base chain on the prerouting, forward or postrouting hooks for ip packets",
        "(a forwarded packet: tcp 198.51.100.7 port 1 iifname gapseal-any0)",
    )
    # the output path of the same ruleset is still locked
    out = netfilter.build_ruleset(nft_json={"nftables": table(LOCKED_OUTPUT)})
    assert verdicts(out, "198.51.100.7") == {"drop"}


def test_forward_policy_drop_drops_every_destination() -> None:
    rs = forward_ruleset(LOCKED_OUTPUT, ("fwd", "forward", "drop", []))
    assert netfilter.egress_classes(rs) == []


def test_an_output_accept_does_not_open_the_forward_path() -> None:
    rs = forward_ruleset(("out", "output", "accept", [[ACCEPT]]), ("fwd", "forward", "drop", []))
    assert netfilter.egress_classes(rs) == []


def test_forward_accept_for_one_network_opens_only_it() -> None:
    rs = forward_ruleset(("fwd", "forward", "drop", [[match(daddr(), prefix("198.51.100.0", 24)), ACCEPT]]))
    classes = netfilter.egress_classes(rs)
    assert {(c.family, tuple(c.networks()), c.verdict) for c in classes} == {("ip", ("198.51.100.0/24",), "accept")}


def test_input_interface_rules_are_tried_for_every_interface_but_loopback() -> None:
    lo_only = forward_ruleset(("fwd", "forward", "drop", [[match(meta("iifname"), "lo"), ACCEPT]]))
    assert netfilter.egress_classes(lo_only) == []  # nothing arriving on lo is forwarded
    podman = forward_ruleset(("fwd", "forward", "drop", [[match(meta("iifname"), "podman*"), ACCEPT]]))
    (answer, *_) = netfilter.probe_verdicts(podman, ["203.0.113.1"])
    assert answer.verdict == "accept"
    assert "(a forwarded packet: tcp 203.0.113.1" in answer.decided_by[-1]
    assert "iifname podmangs0" in answer.decided_by[-1]


def test_a_socket_match_never_matches_a_forwarded_packet() -> None:
    uid = forward_ruleset(("fwd", "forward", "drop", [[match(meta("skuid"), 0), ACCEPT]]))
    assert netfilter.egress_classes(uid) == []


def test_a_rule_not_understood_is_unknown_and_quoted() -> None:
    limit = {"limit": {"rate": 10, "per": "second"}}
    rs = forward_ruleset(("fwd", "forward", "drop", [[limit, ACCEPT]]))
    classes = netfilter.egress_classes(rs)
    assert classes
    assert {c.verdict for c in classes} == {"unknown"}
    assert all("limit" in " ".join(c.decided_by) for c in classes)


def test_dnat_in_prerouting_makes_every_destination_unknown() -> None:
    items = table(("fwd", "forward", "drop", [[match(daddr(), prefix("10.0.0.0", 8)), ACCEPT]]))
    items += [
        {"chain": {"family": "inet", "table": "t", "name": "pre", "handle": 3, "type": "nat", "hook": "prerouting",
                   "prio": -100, "policy": "accept"}},
        {"rule": {"family": "inet", "table": "t", "chain": "pre", "handle": 99,
                  "expr": [{"dnat": {"family": "ip", "addr": "10.1.1.1"}}]}},
    ]  # fmt: skip
    rs = netfilter.build_ruleset(nft_json={"nftables": items}).forward()
    assert verdicts(rs, "198.51.100.7") == {"unknown"}
    # the output path does not run prerouting: still only the enclave rule decides there
    out = netfilter.build_ruleset(nft_json={"nftables": items})
    assert verdicts(out, "198.51.100.7") == {"accept"}  # no output chain at all


def test_packets_to_the_hosts_own_addresses_are_not_forwarded() -> None:
    rs = forward_ruleset(LOCKED_OUTPUT, local_addresses=["198.51.100.2"])
    own = [c for c in netfilter.egress_classes(rs) if c.family == "ip" and c.first <= 0xC6336402 <= c.last]
    assert own == []


LEGACY_FORWARD_DROP = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
LEGACY_NAT_DNAT = (
    "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
    "-A PREROUTING -p tcp -j DNAT --to-destination 10.1.1.1\nCOMMIT\n"
)


def test_legacy_forward_drop_is_final() -> None:
    rs = netfilter.build_ruleset(iptables_legacy={"ip": LEGACY_FORWARD_DROP}).forward()
    assert verdicts(rs, "198.51.100.7") == {"drop"}


def test_legacy_prerouting_dnat_is_unknown() -> None:
    rs = netfilter.build_ruleset(iptables_legacy={"ip": LEGACY_FORWARD_DROP + LEGACY_NAT_DNAT}).forward()
    assert verdicts(rs, "198.51.100.7") == {"unknown"}


def test_a_packet_on_the_wrong_path_is_refused() -> None:
    rs = forward_ruleset(LOCKED_OUTPUT)
    with pytest.raises(ValueError, match="local packet on the forward path"):
        rs.evaluate(Packet("ip", 1, "tcp", 80))


def test_prerouting_knows_no_output_interface_postrouting_still_knows_the_input() -> None:
    # as the kernel does (checked in the forward lab): oifname in prerouting never matches, iifname in postrouting does
    pre = forward_ruleset(("pre", "prerouting", "accept", [[match(meta("oifname"), "gapseal-any0"), DROP]]))
    assert verdicts(pre, "198.51.100.7") == {"accept"}
    post = forward_ruleset(("post", "postrouting", "accept", [[match(meta("iifname"), "ctr0"), DROP]]))
    assert verdicts(post, "198.51.100.7") == {"accept"}  # a packet arriving on another interface
    (answer, *_) = netfilter.probe_verdicts(post, ["198.51.100.7"])
    assert "iifname gapseal-any0" in answer.decided_by[-1]
    both = [[match(meta("iifname"), "ctr0"), DROP], [match(meta("iifname"), "ctr0", "!="), DROP]]
    assert verdicts(forward_ruleset(("post", "postrouting", "accept", both)), "198.51.100.7") == {"drop"}
