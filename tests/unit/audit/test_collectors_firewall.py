"""The firewall collector's egress facts from recorded command outputs (no kernel: ``Trace.run`` reads a table)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gapseal.audit.collectors._common import CommandOutput, RawStore, Trace
from gapseal.audit.collectors.firewall import collect_egress, read_nft_document

LOCKDOWN = {"nftables": [
    {"table": {"family": "inet", "name": "t", "handle": 1}},
    {"chain": {"family": "inet", "table": "t", "name": "out", "handle": 2, "type": "filter", "hook": "output",
               "prio": 0, "policy": "drop"}},
    {"rule": {"family": "inet", "table": "t", "chain": "out", "handle": 3,
              "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "enc0"}},
                       {"accept": None}]}},
]}  # fmt: skip
LISTING = 'table inet t { # handle 1\n\tchain out { # handle 2\n\t\toifname "enc0" accept # handle 3\n\t}\n}\n'
RULES = [{"priority": 0, "src": "all", "table": "local"}, {"priority": 32766, "src": "all", "table": "main"}]
ROUTES_V4 = [{"dst": "10.9.0.0/24", "dev": "enc0", "flags": []}, {"dst": "198.51.100.0/24", "dev": "out0", "flags": []},
             {"dst": "203.0.113.0/24", "gateway": "198.51.100.1", "dev": "out0", "flags": []}]  # fmt: skip
ROUTES_V6 = [{"dst": "2001:db8::/64", "dev": "out0", "metric": 256, "flags": []}]
EMPTY_SAVE = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"


def ok(data: Any) -> CommandOutput:
    raw = data if isinstance(data, bytes) else (data.encode() if isinstance(data, str) else json.dumps(data).encode())
    return CommandOutput([], raw, b"", 0, None)


FAILED = CommandOutput([], b"", b"boom", 1, "exit 1: boom")


class RecordedTrace(Trace):
    """A trace whose commands answer from ``outputs`` (argv joined by spaces); anything else fails."""

    def __init__(self, outputs: dict[str, CommandOutput]) -> None:
        super().__init__(RawStore())
        self.outputs = outputs
        self.asked: list[str] = []

    def run(
        self, argv: list[str], *, store: bool = True, timeout: float = 0, pass_fds: tuple[int, ...] = ()
    ) -> CommandOutput:
        key = " ".join(argv)
        self.asked.append(key)
        return self.outputs.get(key, FAILED)


def host(**overrides: CommandOutput) -> RecordedTrace:
    outputs = {
        "nft -a list ruleset": ok(LISTING),
        "ip -j addr show": ok([{"ifname": "enc0", "addr_info": [{"local": "10.9.0.2"}]}]),
        "ip -4 -j route show table all": ok(ROUTES_V4),
        "ip -6 -j route show table all": ok(ROUTES_V6),
        "ip -4 -j rule show": ok(RULES),
        "ip -6 -j rule show": ok(RULES),
        **{f"{t}-{k}-save": ok(EMPTY_SAVE) for t in ("iptables", "ip6tables") for k in ("nft", "legacy")},
    }
    outputs.update({k.replace("_", " "): v for k, v in overrides.items()})
    return RecordedTrace(outputs)


def probe_verdicts(trace: RecordedTrace, document: Any = LOCKDOWN) -> dict[tuple[str, str], str]:
    egress = collect_egress(trace, document, True)
    assert egress.status == "ok", egress.reason
    return {(p.destinations[0].cidr, p.protocol): p.verdict for p in egress.probes}


def test_interface_rules_are_judged_through_the_route() -> None:
    verdicts = probe_verdicts(host())
    assert set(verdicts.values()) == {"drop"}  # 203.0.113.1, 198.51.100.1 and 2001:db8::1 route through out0


def test_policy_routing_means_every_interface_is_tried() -> None:
    rules = [*RULES, {"priority": 100, "src": "all", "fwmark": "0x1", "table": "200"}]
    trace = host(**{"ip_-4_-j_rule_show": ok(rules)})
    egress = collect_egress(trace, LOCKDOWN, True)
    v4 = {p.protocol: p.verdict for p in egress.probes if p.family == "inet"}
    assert set(v4.values()) == {"accept"}  # enc0 is tried for them too
    assert "ip policy routing beyond the default rules: every interface a rule names is tried" in egress.notes


def test_unreadable_routes_mean_every_interface_is_tried() -> None:
    egress = collect_egress(host(**{"ip_-6_-j_route_show_table_all": FAILED}), LOCKDOWN, True)
    v6 = {p.verdict for p in egress.probes if p.family == "inet6"}
    assert v6 == {"accept"}
    assert "ip -6 route: exit 1: boom (every interface is tried)" in egress.notes


def test_malformed_routes_mean_every_interface_is_tried() -> None:
    egress = collect_egress(host(**{"ip_-4_-j_route_show_table_all": ok([{"dst": 7}])}), LOCKDOWN, True)
    assert {p.verdict for p in egress.probes} == {"accept"}
    assert "routes: ip -j route: route destination 7 (every interface a rule names is tried)" in egress.notes


def test_rules_are_quoted_from_the_listing() -> None:
    egress = collect_egress(host(**{"ip_-4_-j_rule_show": FAILED}), LOCKDOWN, True)
    quotes = {q for p in egress.probes if p.verdict == "accept" for q in p.decided_by}
    assert "nftables inet t out: oifname 'enc0' accept # handle 3" in quotes  # double quotes as single (regopy)


def test_unreadable_nft_is_unknown() -> None:
    egress = collect_egress(host(), None, False)
    assert (egress.status, egress.reason) == ("unknown", "the nftables ruleset could not be read")


def test_a_ruleset_that_cannot_be_evaluated_is_unknown_with_the_reason() -> None:
    bad = json.loads(json.dumps(LOCKDOWN))
    bad["nftables"][1]["chain"]["policy"] = "allow"
    egress = collect_egress(host(), bad, True)
    assert egress.status == "unknown"
    assert egress.reason is not None
    assert "policy 'allow' is not what nft prints" in egress.reason
    assert egress.probes == []


def test_malformed_iptables_save_is_unknown() -> None:
    egress = collect_egress(
        host(**{"iptables-legacy-save": ok("*filter\n:OUTPUT DRP [0:0]\nCOMMIT\n")}), LOCKDOWN, True
    )
    assert egress.status == "unknown"
    assert "policy 'DRP' is not ACCEPT or DROP" in (egress.reason or "")


# --------------------------------------------------------------------------------------------------- nft 1.0.6 JSON


def test_nft_document_is_read_in_one_go_when_it_parses() -> None:
    trace = host(**{"nft_-j_list_ruleset": ok(LOCKDOWN)})
    assert read_nft_document(trace.run) == (LOCKDOWN, [])


def test_broken_json_is_read_table_by_table_leaving_dormant_tables_out() -> None:
    listing = "table inet t { # handle 1\n}\ntable inet off { # handle 2\n\tflags dormant\n}\n"
    trace = host(**{
        "nft_-j_list_ruleset": ok(b'{"nftables": [{"table": {"flags": "o'),
        "nft_-a_list_ruleset": ok(listing),
        "nft_-j_list_table_inet_t": ok({"nftables": [{"metainfo": {"version": "1.0.6"}}, *LOCKDOWN["nftables"]]}),
    })  # fmt: skip
    document, notes = read_nft_document(trace.run)
    assert document == LOCKDOWN
    assert notes == ["nftables inet off: table is dormant (left out: it runs nothing; nft -j cannot print it)"]
    assert "nft -j list table inet off" not in trace.asked


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"nft_-j_list_ruleset": FAILED}, "nft: exit 1: boom"),
        ({"nft_-j_list_ruleset": ok(b"{"), "nft_-a_list_ruleset": FAILED}, "nft -a list ruleset: exit 1: boom"),
        ({"nft_-j_list_ruleset": ok(b"{"), "nft_-j_list_table_inet_t": ok(b"[")},
         "nft: unparseable output for table inet t"),
    ],
    ids=["nft-fails", "listing-fails", "table-unparseable"],
)  # fmt: skip
def test_unreadable_nft_output_is_a_clear_error(overrides: dict[str, CommandOutput], message: str) -> None:
    trace = host(**overrides)
    with pytest.raises(ValueError, match=message):
        read_nft_document(trace.run)
