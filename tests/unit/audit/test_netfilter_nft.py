"""The nftables side of the firewall evaluator, on hand-written ``nft -j`` documents (no kernel).

The JSON shapes are those nft 1.0.6 prints (captured from real rulesets); every construct the evaluator claims to
understand has a case, and every malformed or unmodelled input ends in a clear error or ``unknown``, never a pass.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from gapseal.audit import netfilter
from gapseal.audit.netfilter import nft

ACCEPT: dict[str, Any] = {"accept": None}
DROP: dict[str, Any] = {"drop": None}
RETURN: dict[str, Any] = {"return": None}
OUTSIDE = "198.51.100.7"
ENCLAVE = "10.1.2.3"


def payload(protocol: str, field: str) -> dict[str, Any]:
    return {"payload": {"protocol": protocol, "field": field}}


def meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def prefix(addr: str, length: int) -> dict[str, Any]:
    return {"prefix": {"addr": addr, "len": length}}


def table(name: str = "t", family: str = "inet", **extra: Any) -> dict[str, Any]:
    return {"table": {"family": family, "name": name, "handle": 1, **extra}}


def base(name: str = "out", policy: str = "drop", prio: int = 0, hook: str = "output", **kw: Any) -> dict[str, Any]:
    fam, tab = kw.get("family", "inet"), kw.get("table", "t")
    return {"chain": {"family": fam, "table": tab, "name": name, "handle": 2, "type": "filter", "hook": hook,
                      "prio": prio, "policy": policy}}  # fmt: skip


def regular(name: str, table_name: str = "t", family: str = "inet") -> dict[str, Any]:
    return {"chain": {"family": family, "table": table_name, "name": name, "handle": 3}}


_handles = iter(range(10, 100000))


def rule(chain: str, *expr: Any, table_name: str = "t", family: str = "inet") -> dict[str, Any]:
    return {
        "rule": {"family": family, "table": table_name, "chain": chain, "handle": next(_handles), "expr": list(expr)}
    }


def ruleset(*items: Any, listing: str | None = None, local: tuple[str, ...] = ()) -> netfilter.Ruleset:
    return netfilter.build_ruleset(nft_json={"nftables": list(items)}, nft_listing=listing, local_addresses=local)


def verdict(rs: netfilter.Ruleset, address: str, protocol: str = "tcp", port: int | None = 443, **kw: Any) -> str:
    return rs.evaluate(netfilter.packet(address, protocol, port if protocol != "icmp" else None, **kw)).verdict


def lockdown(*rules: Any, policy: str = "drop") -> netfilter.Ruleset:
    """One inet table, one output chain with ``policy``, the given rules in it."""
    return ruleset(table(), base(policy=policy), *(rule("out", *r) for r in rules))


# --------------------------------------------------------------------------------------------------- base chains


def test_empty_ruleset_accepts_everything() -> None:
    rs = ruleset()
    outcome = rs.evaluate(netfilter.packet(OUTSIDE, "tcp", 443))
    assert outcome.verdict == "accept"
    assert "no active base chain" in outcome.decided_by[0]


def test_policy_drop_drops_and_says_so() -> None:
    rs = lockdown([match(payload("ip", "daddr"), prefix("10.0.0.0", 8)), ACCEPT])
    assert verdict(rs, ENCLAVE) == "accept"
    outcome = rs.evaluate(netfilter.packet(OUTSIDE, "udp", 53))
    assert outcome == netfilter.Outcome("drop", ("nftables inet t out: policy drop",))


def test_a_drop_in_any_base_chain_is_final() -> None:
    rs = ruleset(
        table("wide"), base(table="wide", policy="accept"), rule("out", ACCEPT, table_name="wide"),
        table("lock"), base(table="lock", prio=10),
        rule("out", match(payload("ip", "daddr"), prefix("10.0.0.0", 8)), ACCEPT, table_name="lock"),
    )  # fmt: skip
    assert verdict(rs, OUTSIDE) == "drop"
    assert verdict(rs, ENCLAVE) == "accept"


def test_a_later_priority_accept_cannot_override_an_earlier_drop() -> None:
    rs = ruleset(
        table("early"), base(table="early", policy="accept", prio=-100),
        rule("out", match(payload("ip", "daddr"), prefix("198.51.100.0", 24)), DROP, table_name="early"),
        table("late"), base(table="late", policy="accept", prio=100), rule("out", ACCEPT, table_name="late"),
    )  # fmt: skip
    assert verdict(rs, OUTSIDE) == "drop"
    assert verdict(rs, "203.0.113.1") == "accept"


def test_postrouting_chains_count_and_input_chains_do_not() -> None:
    rs = ruleset(table(), base("post", hook="postrouting"), base("in", hook="input", policy="drop"))
    assert verdict(rs, OUTSIDE) == "drop"
    rs = ruleset(table(), base("in", hook="input", policy="drop"))
    assert verdict(rs, OUTSIDE) == "accept"


def test_table_family_decides_which_packets_a_chain_sees() -> None:
    rs = ruleset(table(family="ip"), base(family="ip"))
    assert verdict(rs, OUTSIDE) == "drop"
    assert verdict(rs, "2001:db8::1") == "accept"


def test_arp_bridge_and_netdev_tables_are_noted_not_evaluated() -> None:
    rs = ruleset(table(family="netdev"), base(family="netdev", hook="egress"))
    assert verdict(rs, OUTSIDE) == "accept"
    assert rs.notes == ["nftables netdev t out: netdev tables do not filter this host's IP packets here"]


# --------------------------------------------------------------------------------------------------- dormant tables


def test_dormant_table_runs_nothing() -> None:
    rs = ruleset(table(flags=["dormant"]), base())
    outcome = rs.evaluate(netfilter.packet(OUTSIDE, "tcp", 443))
    assert outcome == netfilter.Outcome("accept", ("nftables inet t out: table is dormant",))


def test_dormant_flag_as_nft_106_prints_it_is_read_from_the_listing() -> None:
    # nft 1.0.6 prints a dormant table's flags as its name ("flags": "t"); the text listing says "flags dormant"
    listing = "table inet t { # handle 1\n\tflags dormant\n\n\tchain out { # handle 2\n\t}\n}\n"
    assert verdict(ruleset(table(flags="t"), base(), listing=listing), OUTSIDE) == "accept"
    awake = "table inet t { # handle 1\n\tchain out { # handle 2\n\t}\n}\n"
    assert verdict(ruleset(table(flags="t"), base(), listing=awake), OUTSIDE) == "drop"


def test_unreadable_table_flags_without_listing_are_unknown_never_a_drop() -> None:
    rs = ruleset(table(flags="t"), base())
    outcome = rs.evaluate(netfilter.packet(OUTSIDE, "tcp", 443))
    assert outcome.verdict == "unknown"
    assert "nftables inet t out: table flags unreadable (it may be dormant)" in outcome.decided_by


# --------------------------------------------------------------------------------------------------- rule steps


def test_ct_state_established_related_does_not_accept_new_packets() -> None:
    rs = lockdown([match({"ct": {"key": "state"}}, ["established", "related"], op="in"), ACCEPT])
    assert verdict(rs, OUTSIDE) == "drop"
    rs = lockdown([match({"ct": {"key": "state"}}, {"set": ["new", "established"]}, op="in"), ACCEPT])
    assert verdict(rs, OUTSIDE) == "accept"


def test_ports_ranges_and_comparisons() -> None:
    rs = lockdown(
        [match(payload("tcp", "dport"), {"range": [1000, 2000]}), {"counter": {"packets": 0, "bytes": 0}}, ACCEPT],
        [match(payload("udp", "dport"), 1024, op=">"), ACCEPT],
    )
    assert verdict(rs, OUTSIDE, "tcp", 1500) == "accept"
    assert verdict(rs, OUTSIDE, "tcp", 2001) == "drop"
    assert verdict(rs, OUTSIDE, "udp", 1025) == "accept"
    assert verdict(rs, OUTSIDE, "udp", 1024) == "drop"
    assert verdict(rs, OUTSIDE, "icmp") == "drop"


def test_a_port_match_never_matches_the_other_protocol() -> None:
    rs = lockdown([match(payload("tcp", "dport"), 53), ACCEPT])
    assert verdict(rs, OUTSIDE, "udp", 53) == "drop"


def test_negation() -> None:
    rs = lockdown([match(payload("ip", "daddr"), prefix("10.0.0.0", 8), op="!="), DROP], policy="accept")
    assert verdict(rs, OUTSIDE) == "drop"
    assert verdict(rs, ENCLAVE) == "accept"


def test_named_interval_set() -> None:
    elem = [prefix("10.0.0.0", 8), {"range": ["198.51.100.1", "198.51.100.5"]}]
    s4 = {"set": {"family": "inet", "name": "s4", "table": "t", "type": "ipv4_addr", "handle": 3,
                  "flags": ["interval"], "elem": elem}}  # fmt: skip
    rs = ruleset(table(), s4, base(), rule("out", match(payload("ip", "daddr"), "@s4"), ACCEPT))
    assert verdict(rs, ENCLAVE) == "accept"
    assert verdict(rs, "198.51.100.5") == "accept"
    assert verdict(rs, "198.51.100.6") == "drop"


def test_named_concatenation_set() -> None:
    pairs = {"set": {"family": "inet", "name": "pairs", "table": "t", "handle": 4,
                     "type": ["ipv4_addr", "inet_proto", "inet_service"],
                     "elem": [{"concat": [OUTSIDE, "udp", 53]}]}}  # fmt: skip
    left = {"concat": [payload("ip", "daddr"), meta("l4proto"), payload("th", "dport")]}
    rs = ruleset(table(), pairs, base(), rule("out", match(left, "@pairs"), ACCEPT))
    assert verdict(rs, OUTSIDE, "udp", 53) == "accept"
    assert verdict(rs, OUTSIDE, "tcp", 53) == "drop"
    assert verdict(rs, OUTSIDE, "udp", 54) == "drop"
    assert verdict(rs, "198.51.100.8", "udp", 53) == "drop"


def test_anonymous_concatenation() -> None:
    left = {"concat": [payload("ip", "daddr"), meta("l4proto"), payload("th", "dport")]}
    rs = lockdown([match(left, {"set": [{"concat": ["10.1.1.1", "tcp", 22]}]}), ACCEPT])
    assert verdict(rs, "10.1.1.1", "tcp", 22) == "accept"
    assert verdict(rs, "10.1.1.1", "tcp", 23) == "drop"


def test_named_verdict_map_jumps_to_a_regular_chain_and_returns() -> None:
    vm = {"map": {"family": "inet", "name": "vm", "table": "t", "type": "ipv4_addr", "handle": 5, "map": "verdict",
                  "flags": ["interval"], "elem": [[prefix("10.0.0.0", 8), {"jump": {"target": "c1"}}],
                                                  [prefix("198.51.100.0", 24), DROP]]}}  # fmt: skip
    rs = ruleset(
        table(), vm, regular("c1"), base(policy="accept"),
        rule("c1", match(payload("tcp", "dport"), {"set": [22, 443]}), ACCEPT), rule("c1", RETURN),
        rule("out", {"vmap": {"key": payload("ip", "daddr"), "data": "@vm"}}),
        rule("out", match(payload("ip", "daddr"), prefix("10.0.0.0", 8)), DROP),
    )  # fmt: skip
    assert verdict(rs, ENCLAVE, "tcp", 443) == "accept"
    assert verdict(rs, ENCLAVE, "tcp", 80) == "drop"  # c1 returns, the next rule of out drops
    assert verdict(rs, OUTSIDE) == "drop"
    assert verdict(rs, "203.0.113.1") == "accept"  # no element: the vmap rule does nothing


def test_anonymous_verdict_map_with_goto() -> None:
    vmap = {
        "vmap": {"key": payload("ip6", "daddr"), "data": {"set": [[prefix("fd00::", 8), {"goto": {"target": "c1"}}]]}}
    }
    rs = ruleset(
        table(), regular("c1"), base(),
        rule("c1", match(payload("tcp", "dport"), 22), ACCEPT),
        rule("out", vmap), rule("out", match(payload("ip6", "daddr"), prefix("fd00::", 8)), ACCEPT),
    )  # fmt: skip
    assert verdict(rs, "fd00::1", "tcp", 22) == "accept"
    assert verdict(rs, "fd00::1", "tcp", 80) == "drop"  # goto: c1's end returns past out's accept to the policy
    assert verdict(rs, "2001:db8::1", "tcp", 22) == "drop"


def test_jump_returns_goto_does_not() -> None:
    for kind, expected in (("jump", "accept"), ("goto", "drop")):
        rs = ruleset(
            table(), regular("c1"), base(),
            rule("c1", match(payload("tcp", "dport"), 22), DROP),
            rule("out", {kind: {"target": "c1"}}), rule("out", ACCEPT),
        )  # fmt: skip
        assert verdict(rs, OUTSIDE, "tcp", 80) == expected, kind
        assert verdict(rs, OUTSIDE, "tcp", 22) == "drop", kind


def test_return_in_a_base_chain_applies_its_policy() -> None:
    rs = lockdown([RETURN], [ACCEPT])
    assert verdict(rs, OUTSIDE) == "drop"


def test_continue_and_counter_only_rules_go_on() -> None:
    rs = lockdown([{"counter": None}], [{"continue": None}], [{"log": {"prefix": "x"}}], [ACCEPT])
    assert verdict(rs, OUTSIDE) == "accept"


def test_reject_drops() -> None:
    rs = lockdown([{"reject": None}], policy="accept")
    assert verdict(rs, OUTSIDE) == "drop"


def test_output_interface_and_uid_left_open_are_both_explored() -> None:
    rs = lockdown([match(meta("oifname"), "enc0"), ACCEPT])
    assert verdict(rs, OUTSIDE) == "unknown"
    assert verdict(rs, OUTSIDE, oifname="enc0") == "accept"
    assert verdict(rs, OUTSIDE, oifname="out0") == "drop"
    rs = lockdown([match(meta("skuid"), 1000), ACCEPT])
    assert verdict(rs, OUTSIDE, skuid=1000) == "accept"
    assert verdict(rs, OUTSIDE, skuid=0) == "drop"


def test_interface_wildcard() -> None:
    rs = lockdown([match(meta("oifname"), "en*"), ACCEPT])
    assert verdict(rs, OUTSIDE, oifname="enc0") == "accept"
    assert verdict(rs, OUTSIDE, oifname="out0") == "drop"


def test_fib_daddr_type_local_uses_the_hosts_addresses() -> None:
    items = (table(), base(), rule("out", match({"fib": {"result": "type", "flags": ["daddr"]}}, "local"), ACCEPT))
    rs = ruleset(*items, local=("127.0.0.1", "198.51.100.2"))
    assert verdict(rs, "198.51.100.2") == "accept"
    assert verdict(rs, OUTSIDE) == "drop"


def test_icmpv6_neighbour_discovery_accept_does_not_accept_echo_requests() -> None:
    rs = lockdown([match(payload("icmpv6", "type"), {"set": ["nd-neighbor-solicit", "nd-neighbor-advert"]}), ACCEPT])
    assert verdict(rs, "2001:db8::1", "icmp") == "drop"
    rs = lockdown([match(meta("l4proto"), "ipv6-icmp"), ACCEPT])
    assert verdict(rs, "2001:db8::1", "icmp") == "accept"
    assert verdict(rs, OUTSIDE, "icmp") == "drop"


# --------------------------------------------------------------------------------------------------- not understood


def test_unmodelled_match_is_unknown_and_quoted_from_the_listing() -> None:
    listing = "table inet t { # handle 1\n\tchain out { # handle 2\n\t\tip dscp cs1 accept # handle 777\n\t}\n}\n"
    items = [table(), base(), {"rule": {"family": "inet", "table": "t", "chain": "out", "handle": 777,
                                        "expr": [match(payload("ip", "dscp"), "cs1"), ACCEPT]}}]  # fmt: skip
    outcome = ruleset(*items, listing=listing).evaluate(netfilter.packet(OUTSIDE, "tcp", 443))
    assert outcome == netfilter.Outcome("unknown", ("nftables inet t out: ip dscp cs1 accept # handle 777",))


def test_unmodelled_header_match_still_implies_its_protocol() -> None:
    # iptables-nft's "-p tcp -m tcp --tcp-flags SYN SYN" as nft -j prints it: the l4proto dependency left out
    flags = match({"&": [payload("tcp", "flags"), "syn"]}, "syn")
    rs = lockdown([flags, ACCEPT])
    assert verdict(rs, OUTSIDE, "tcp", 443) == "unknown"
    assert verdict(rs, OUTSIDE, "udp", 53) == "drop"
    assert verdict(rs, OUTSIDE, "icmp") == "drop"
    rs = lockdown([match(payload("ip6", "dscp"), "cs1"), ACCEPT])
    assert verdict(rs, "2001:db8::1") == "unknown"
    assert verdict(rs, OUTSIDE) == "drop"


def test_unmodelled_statement_is_unknown_quoted_as_json_without_listing() -> None:
    rs = lockdown([{"mangle": {"key": meta("mark"), "value": 7}}])
    outcome = rs.evaluate(netfilter.packet(OUTSIDE, "tcp", 443))
    assert outcome.verdict == "unknown"
    assert '"mangle"' in outcome.decided_by[0]


def test_unmodelled_rule_after_a_final_drop_does_not_matter() -> None:
    rs = lockdown([DROP], [{"queue": {"num": 1}}])
    assert verdict(rs, OUTSIDE) == "drop"


def test_rate_limit_explores_both_ways() -> None:
    rs = lockdown([{"limit": {"rate": 10, "per": "second"}}, ACCEPT])
    assert verdict(rs, OUTSIDE) == "unknown"


def test_xt_rule_without_iptables_save_is_unknown() -> None:
    rs = lockdown([{"xt": {"type": "match", "name": "conntrack"}}, {"counter": None}, ACCEPT])
    assert verdict(rs, OUTSIDE) == "unknown"


def test_xt_rule_is_read_from_iptables_nft_save() -> None:
    doc = {"nftables": [
        table("filter", family="ip"), base("OUTPUT", family="ip", table="filter"),
        rule("OUTPUT", match(meta("oifname"), "lo"), ACCEPT, table_name="filter", family="ip"),
        rule("OUTPUT", {"xt": {"type": "match", "name": "conntrack"}}, ACCEPT, table_name="filter", family="ip"),
    ]}  # fmt: skip
    save = ("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT DROP [0:0]\n-A OUTPUT -o lo -j ACCEPT\n"
            "-A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\nCOMMIT\n")  # fmt: skip
    rs = netfilter.build_ruleset(nft_json=doc, iptables_nft={"ip": save})
    outcome = rs.evaluate(netfilter.packet(OUTSIDE, "tcp", 443, oifname="out0"))
    assert outcome == netfilter.Outcome("drop", ("nftables ip filter OUTPUT: policy drop",))


def test_jump_to_a_missing_chain_is_unknown() -> None:
    rs = lockdown([{"jump": {"target": "nowhere"}}])
    outcome = rs.evaluate(netfilter.packet(OUTSIDE, "tcp", 443))
    assert outcome.verdict == "unknown"
    assert "jump to a chain that is not in the ruleset: nowhere" in outcome.decided_by[0]


def test_reference_to_a_missing_set_or_map_is_unknown() -> None:
    assert verdict(lockdown([match(payload("ip", "daddr"), "@gone"), ACCEPT]), OUTSIDE) == "unknown"
    assert verdict(lockdown([{"vmap": {"key": payload("ip", "daddr"), "data": "@gone"}}]), OUTSIDE) == "unknown"


def test_jump_loop_ends_in_unknown_not_a_hang() -> None:
    rs = ruleset(table(), regular("a"), regular("b"), base(),
                 rule("a", {"jump": {"target": "b"}}), rule("b", {"jump": {"target": "a"}}),
                 rule("out", {"jump": {"target": "a"}}))  # fmt: skip
    assert verdict(rs, OUTSIDE) == "unknown"


# --------------------------------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], 'nft -j output has no "nftables" array'),
        ({"nftables": {}}, 'nft -j output has no "nftables" array'),
        ({"nftables": [table(), base(policy="allow")]}, "policy 'allow' is not what nft prints"),
        ({"nftables": [table(), {"chain": {"family": "inet", "table": "t", "name": "out", "type": "filter"}}]},
         "a base chain with no hook"),
        ({"nftables": [table(family="inet7"), base(family="inet7")]}, "unknown table family 'inet7'"),
    ],
    ids=["not-an-object", "nftables-not-an-array", "unknown-policy", "base-chain-without-hook", "unknown-family"],
)  # fmt: skip
def test_malformed_documents_are_clear_errors(document: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        netfilter.build_ruleset(nft_json=document)


@pytest.mark.parametrize(
    "expr",
    [
        "accept",
        {"match": "x"},
        {"match": {"op": "==", "left": {"payload": "ip"}, "right": 1}},
        {"match": {"op": "==", "left": payload("ip", "daddr"), "right": {"prefix": {"addr": "bogus", "len": 8}}}},
        {"match": {"op": "==", "left": payload("ip", "daddr"), "right": {"prefix": {"addr": "10.0.0.0", "len": 99}}}},
        {"match": {"op": "==", "left": payload("ip", "daddr"), "right": "2001:db8::1"}},
        {"match": {"op": "==", "left": payload("tcp", "dport"), "right": True}},
        {"match": {"op": "==", "left": payload("tcp", "dport"), "right": {"range": [1]}}},
        {"match": {"op": "~", "left": payload("tcp", "dport"), "right": 1}},
        {"match": {"op": ">", "left": payload("tcp", "dport"), "right": {"range": [1, 2]}}},
        {"vmap": {"key": payload("ip", "daddr"), "data": {"set": [[OUTSIDE]]}}},
        {"vmap": {"key": payload("ip", "daddr"), "data": {"set": [[OUTSIDE, {"drop": None, "x": 1}]]}}},
        {"jump": "c1"},
        {"accept": None, "drop": None},
    ],
    ids=["string", "match-not-object", "payload-not-object", "bad-prefix", "prefix-too-long", "other-family",
         "boolean-port", "short-range", "unknown-operator", "comparison-with-range", "vmap-pair-short",
         "vmap-verdict-two-keys", "jump-without-target", "two-verdicts-in-one"],
)  # fmt: skip
def test_malformed_expressions_are_unknown_never_a_pass(expr: Any) -> None:
    rs = lockdown([expr, ACCEPT])
    assert verdict(rs, OUTSIDE) == "unknown"


def test_mutated_documents_never_raise_anything_but_value_error() -> None:
    """Every node of a real document replaced by junk: a clear ValueError or an evaluation, never a traceback."""
    import random

    document: dict[str, Any] = {"nftables": [
        table(), base(), regular("c1"),
        {"set": {"family": "inet", "name": "s", "table": "t", "type": "ipv4_addr", "flags": ["interval"],
                 "elem": [prefix("10.0.0.0", 8), {"range": ["198.51.100.1", "198.51.100.5"]}]}},
        {"map": {"family": "inet", "name": "vm", "table": "t", "type": "ipv4_addr", "map": "verdict",
                 "elem": [[prefix("10.0.0.0", 8), {"jump": {"target": "c1"}}]]}},
        rule("c1", match(payload("tcp", "dport"), {"set": [22, {"range": [80, 90]}]}), ACCEPT),
        rule("out", match(payload("ip", "daddr"), "@s"), ACCEPT),
        rule("out", {"vmap": {"key": payload("ip", "daddr"), "data": "@vm"}}),
        rule("out", match({"concat": [payload("ip", "daddr"), meta("l4proto")]},
                          {"set": [{"concat": ["10.0.0.1", "udp"]}]}), ACCEPT),
        rule("out", match({"ct": {"key": "state"}}, ["established", "related"], op="in"), ACCEPT),
        rule("out", match(meta("oifname"), "lo"), {"counter": None}, ACCEPT),
    ]}  # fmt: skip
    import copy
    import json

    junk: list[Any] = [None, 0, -1, 2**70, "", "x", "@s", [], {}, {"x": 1}, True, 1.5, [None], {"set": None}]
    rng = random.Random(9)

    def nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        out = [path]
        if isinstance(value, dict):
            for k, v in value.items():
                out += nodes(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                out += nodes(v, (*path, i))
        return out

    paths = [p for p in nodes(document) if p]
    for _ in range(600):
        mutated = copy.deepcopy(document)
        path = rng.choice(paths)
        parent: Any = mutated
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = copy.deepcopy(rng.choice(junk))
        try:
            rs = netfilter.build_ruleset(nft_json=mutated)
            netfilter.egress_classes(rs)
            netfilter.probe_verdicts(rs, ["198.51.100.1", "2001:db8::1"])
        except ValueError:
            pass
        except Exception as e:  # pragma: no cover - the failure message names the mutation
            pytest.fail(f"{type(e).__name__}: {e} after setting {path} in {json.dumps(mutated)[:400]}")


def test_listing_quotes_and_flags() -> None:
    listing = (
        "table inet t { # handle 1\n\tflags dormant\n\tset s { # handle 3\n\t\ttype ipv4_addr\n\t}\n"
        "\tchain out { # handle 2\n\t\ttype filter hook output priority filter; policy drop;\n"
        '\t\toifname "lo" accept # handle 4\n\t}\n}\ntable ip u { # handle 5\n}\n'
    )
    quotes, dormant = nft.parse_listing(listing)
    assert quotes == {("inet", "t", "out", 4): 'oifname "lo" accept'}
    assert dormant == {("inet", "t"): True, ("ip", "u"): False}
