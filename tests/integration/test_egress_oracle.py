"""Kernel oracle: named firewall scenarios through the whole audit path, held to what the kernel delivered.

Each scenario loads a ruleset into the egress lab's host namespace (tests/integration/egress_lab.py: the host, and a
peer namespace holding the enclave and the "outside" documentation addresses), sends real TCP, UDP and ICMP packets
from the host to every enclave and outside address, and records what the peer received. Then the real collector runs
inside the host namespace (``gapseal audit collect``), and the facts are evaluated with the shipped Rego policies by
regopy, as ``gapseal audit evaluate`` does. Two things must hold:

- per packet: the facts' egress answer (``firewall.egress.classes``) agrees with the kernel: a delivered packet is never
  ``drop``, an undelivered one never ``accept`` (``unknown`` only in the scenarios about rules gapseal does not
  understand);
- per scenario: the exact egress rule ids that fire, with their status. The lab host has routes to the outside by
  design (the firewall is what must stop the packets), so EGRESS-002 (a route outside the enclave) and EGRESS-005
  (route lookups find a path) fire in every scenario; the firewall rules EGRESS-003/004 are what each scenario decides.
  A scenario whose packets reached the outside never passes EGRESS-003/004 (zero false "compliant").

One lab for the module; the ruleset is flushed between scenarios.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pytest

from gapseal.audit.evaluate import evaluate_facts
from gapseal.audit.results import RuleResult
from tests.hosts.netns import SUBNET_PREFIX
from tests.integration.egress_lab import EgressLab, Probe, lab_requirements_missing

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(lab_requirements_missing()), reason=f"needs {lab_requirements_missing()}"),
]

REPO = Path(__file__).resolve().parents[2]
GAPSEAL = str(REPO / ".venv" / "bin" / "gapseal")
LAB_INDEX = 202  # the third octet of this module's enclave addresses (test_egress_random.py uses 201)
ENCLAVE_V4 = f"{SUBNET_PREFIX}.0.0/16"
ENCLAVE_V6 = "fd20:4::/32"
OUT = "198.51.100.0/24"
LAB_ROUTE_FINDINGS = {"EGRESS-002": "fail", "EGRESS-005": "fail"}
"""What the lab's routes (to 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/64) trip in every scenario."""
FIREWALL_RULES = ("EGRESS-003", "EGRESS-004")


def role_ruleset(*, dormant: bool = False) -> str:
    """The installer's egress lockdown, rendered from the egress role's template (enclave v4 and v6 allowed)."""
    template = (REPO / "playbooks/roles/egress/templates/egress.nft.j2").read_text()
    text: str = jinja2.Template(template, keep_trailing_newline=True).render(
        egress_table="gapseal_egress", egress_allow_v4=[ENCLAVE_V4], egress_allow_v6=[ENCLAVE_V6]
    )
    text = text.replace("@@GAPSEAL_DIGEST@@", "0" * 32)
    if dormant:
        head = "table inet gapseal_egress {\n"
        assert head in text  # noqa: S101 - the template's shape, checked before it is changed
        text = text.replace(head, head + "  flags dormant\n", 1)
    return text


def save(chain_policy: str, *rules: str) -> str:
    """An iptables-save filter table with OUTPUT's policy and rules."""
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", f":OUTPUT {chain_policy} [0:0]"]
    user = sorted({r.split()[1] for r in rules} - {"OUTPUT"})
    lines += [f":{name} - [0:0]" for name in user]
    return "\n".join([*lines, *rules, "COMMIT", ""])


def lockdown_save(family: str) -> str:
    """The usual iptables DROP lockdown recipe for ``family`` (ip or ip6)."""
    enclave = ENCLAVE_V4 if family == "ip" else ENCLAVE_V6
    return save(
        "DROP",
        "-A OUTPUT -o lo -j ACCEPT",
        "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        f"-A OUTPUT -d {enclave} -j ACCEPT",
    )


@dataclass(frozen=True)
class Scenario:
    """A ruleset, what the kernel is expected to do with it, and the firewall rule ids expected to fire."""

    name: str
    firewall: Mapping[str, str]
    """EGRESS-003/004 -> status expected when not ``pass``."""
    leaks: bool
    """Whether the kernel delivers some packet to an outside address (checked against the packets)."""
    nft: str | None = None
    iptables_nft: Mapping[str, str] = field(default_factory=dict)
    legacy: Mapping[str, str] = field(default_factory=dict)
    quoted: str | None = None
    """Text every firewall finding must quote (the rule gapseal does not understand)."""
    ports: tuple[int, ...] = (22, 53, 443)


LEAKY = {"EGRESS-003": "fail", "EGRESS-004": "fail"}
UNKNOWN = {"EGRESS-003": "unknown", "EGRESS-004": "unknown"}
COMPLIANT: dict[str, str] = {}

SCENARIOS = [
    Scenario("role-lockdown", COMPLIANT, leaks=False, nft=role_ruleset()),
    Scenario("role-lockdown-dormant", LEAKY, leaks=True, nft=role_ruleset(dormant=True)),
    Scenario(
        "dormant-accept-table-beside-lockdown",
        COMPLIANT,
        leaks=False,
        nft=role_ruleset()
        + "table inet opened {\n  flags dormant\n"
        + "  chain out { type filter hook output priority -10; policy accept; accept; }\n}\n",
    ),
    Scenario(
        "accept-in-one-base-chain-drop-in-another",
        COMPLIANT,
        leaks=False,
        nft=f"""table inet wide {{
  chain out {{ type filter hook output priority 0; policy accept; accept; }}
}}
table inet lock {{
  chain out {{
    type filter hook output priority 10; policy drop;
    ip daddr {ENCLAVE_V4} accept
    ip6 daddr {ENCLAVE_V6} accept
  }}
}}
""",
    ),
    Scenario(
        "later-priority-accept-cannot-override-earlier-drop",
        COMPLIANT,
        leaks=False,
        nft=f"""table inet early {{
  chain out {{
    type filter hook output priority -100; policy accept;
    ip daddr != {ENCLAVE_V4} drop
    ip6 daddr != {ENCLAVE_V6} drop
  }}
}}
table inet late {{
  chain out {{ type filter hook output priority 100; policy accept; ip daddr {OUT} accept; accept; }}
}}
""",
    ),
    Scenario(
        "postrouting-drop-behind-output-accept",
        COMPLIANT,
        leaks=False,
        nft=f"""table inet t {{
  chain out {{ type filter hook output priority 0; policy accept; }}
  chain post {{
    type filter hook postrouting priority 0; policy drop;
    ip daddr {ENCLAVE_V4} accept
    ip6 daddr {ENCLAVE_V6} accept
  }}
}}
""",
    ),
    Scenario(
        "policy-accept-drop-only-some-ports",
        LEAKY,
        leaks=True,
        ports=(22, 53, 443, 8080),
        nft=f"""table inet t {{
  chain out {{
    type filter hook output priority 0; policy accept;
    ip daddr != {ENCLAVE_V4} tcp dport {{ 22, 443 }} drop
    ip6 daddr != {ENCLAVE_V6} tcp dport {{ 22, 443 }} drop
  }}
}}
""",
    ),
    Scenario(
        "vmap-to-regular-chain",
        COMPLIANT,
        leaks=False,
        nft=f"""table inet t {{
  chain enclave {{ tcp dport {{ 22, 443 }} accept; udp dport 53 accept; }}
  chain out {{
    type filter hook output priority 0; policy drop;
    ip daddr vmap {{ {ENCLAVE_V4} : jump enclave, {OUT} : drop }}
    ip6 daddr vmap {{ {ENCLAVE_V6} : goto enclave }}
  }}
}}
""",
    ),
    Scenario(
        "vmap-jump-opens-https-outside",
        LEAKY,
        leaks=True,
        nft=f"""table inet t {{
  chain web {{ tcp dport 443 accept; }}
  chain out {{
    type filter hook output priority 0; policy drop;
    ip daddr vmap {{ {ENCLAVE_V4} : accept, 198.51.100.0/24 : jump web, 203.0.113.0/24 : drop }}
    ip6 daddr {ENCLAVE_V6} accept
  }}
}}
""",
    ),
    Scenario(
        "named-and-interval-sets",
        COMPLIANT,
        leaks=False,
        nft=f"""table inet t {{
  set enclave4 {{ type ipv4_addr; flags interval; elements = {{ {ENCLAVE_V4}, 172.16.0.0-172.16.0.255 }} }}
  set enclave6 {{ type ipv6_addr; flags interval; elements = {{ {ENCLAVE_V6} }} }}
  set services {{ type inet_service; elements = {{ 22, 53, 443 }} }}
  chain out {{
    type filter hook output priority 0; policy drop;
    ip daddr @enclave4 tcp dport @services accept
    ip daddr @enclave4 udp dport @services accept
    ip6 daddr @enclave6 meta l4proto {{ tcp, udp, ipv6-icmp }} accept
    ip daddr @enclave4 icmp type echo-request accept
  }}
}}
""",
    ),
    Scenario(
        "interval-set-reaching-outside",
        LEAKY,
        leaks=True,
        nft=f"""table inet t {{
  set allowed {{ type ipv4_addr; flags interval; elements = {{ {ENCLAVE_V4}, 198.51.100.0-198.51.100.5 }} }}
  chain out {{
    type filter hook output priority 0; policy drop;
    ip daddr @allowed accept
    ip6 daddr {ENCLAVE_V6} accept
  }}
}}
""",
    ),
    Scenario(
        "concatenation-opens-one-outside-service",
        # 198.51.100.7 is not one of EGRESS-003's stand-in addresses: only the class rule sees it
        {"EGRESS-004": "fail"},
        leaks=True,
        nft=f"""table inet t {{
  set pairs {{ type ipv4_addr . inet_proto . inet_service; elements = {{ 198.51.100.7 . udp . 53 }} }}
  chain out {{
    type filter hook output priority 0; policy drop;
    ip daddr . meta l4proto . th dport {{ {SUBNET_PREFIX}.{LAB_INDEX}.1 . tcp . 22 }} accept
    ip daddr . meta l4proto . th dport @pairs accept
    ip6 daddr {ENCLAVE_V6} accept
  }}
}}
""",
    ),
    Scenario(
        "jump-goto-return",
        # goto: the end of "web" returns past "out"'s enclave accept to the policy, so tcp 443 to the enclave is
        # dropped too; return: 203.0.113.0/24 skips "web" and meets the enclave accept (no match) and the policy
        LEAKY,
        leaks=True,
        nft=f"""table inet t {{
  chain web {{ ip daddr {OUT} accept; }}
  chain classify {{
    ip daddr 203.0.113.0/24 return
    tcp dport 443 goto web
  }}
  chain out {{
    type filter hook output priority 0; policy drop;
    jump classify
    ip daddr {ENCLAVE_V4} accept
    ip6 daddr {ENCLAVE_V6} accept
  }}
}}
""",
    ),
    Scenario(
        "counters-logs-comments-are-no-ops",
        COMPLIANT,
        leaks=False,
        nft=f"""table inet t {{
  chain out {{
    type filter hook output priority 0; policy drop;
    counter log prefix "gapseal " comment "watch everything"
    ip daddr {ENCLAVE_V4} counter accept comment "enclave"
    ip6 daddr {ENCLAVE_V6} counter accept
    counter reject
  }}
}}
""",
    ),
    Scenario(
        "interface-lockdown-judged-by-the-route",
        # the enclave link is allowed by interface: the outside stand-ins route through out0, so they are dropped
        # (EGRESS-003 passes); destinations with no route at all are judged through every interface, enc0 included
        # (fail-closed: a route via enc0 would let them out), so EGRESS-004 still names them
        {"EGRESS-004": "fail"},
        leaks=False,
        nft="""table inet t {
  chain out {
    type filter hook output priority 0; policy drop;
    oifname "lo" accept
    oifname "enc0" accept
  }
}
""",
    ),
    Scenario(
        "interface-rule-opens-dns-outside",
        LEAKY,
        leaks=True,
        nft=f"""table inet t {{
  chain out {{
    type filter hook output priority 0; policy drop;
    oifname "out0" udp dport 53 accept
    ip daddr {ENCLAVE_V4} accept
    ip6 daddr {ENCLAVE_V6} accept
  }}
}}
""",
    ),
    Scenario(
        "iptables-nft-drop-lockdown",
        COMPLIANT,
        leaks=False,
        iptables_nft={"ip": lockdown_save("ip"), "ip6": lockdown_save("ip6")},
    ),
    Scenario(
        "iptables-nft-multiport-owner",
        LEAKY,
        leaks=True,
        iptables_nft={
            "ip": save(
                "DROP",
                "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
                f"-A OUTPUT -d {ENCLAVE_V4} -j ACCEPT",
                "-A OUTPUT -p udp -m multiport --dports 53,123 -m owner --uid-owner 0 -j ACCEPT",
            ),
            "ip6": lockdown_save("ip6"),
        },
    ),
    Scenario(
        "iptables-legacy-drop-lockdown",
        COMPLIANT,
        leaks=False,
        legacy={"ip": lockdown_save("ip"), "ip6": lockdown_save("ip6")},
    ),
    Scenario(
        "iptables-legacy-accept-policy",
        LEAKY,
        leaks=True,
        legacy={"ip": save("ACCEPT", "-A OUTPUT -d 203.0.113.0/24 -j DROP"), "ip6": save("ACCEPT")},
    ),
    Scenario(
        "iptables-legacy-user-chain-return",
        COMPLIANT,
        leaks=False,
        legacy={
            "ip": save(
                "DROP",
                "-A OUTPUT -j egress",
                f"-A egress ! -d {ENCLAVE_V4} -j RETURN",
                "-A egress -p tcp -m tcp --dport 1:1024 -j ACCEPT",
                "-A egress -p udp -m udp --dport 53 -j ACCEPT",
            ),
            "ip6": lockdown_save("ip6"),
        },
    ),
    Scenario(
        "nft-lockdown-with-legacy-accept",
        COMPLIANT,
        leaks=False,
        nft=role_ruleset(),
        legacy={"ip": save("ACCEPT", "-A OUTPUT -j ACCEPT"), "ip6": save("ACCEPT")},
    ),
    Scenario(
        "unknown-match-before-an-accept",
        UNKNOWN,
        leaks=False,
        quoted="dscp cs1",
        nft=f"""table inet t {{
  chain out {{
    type filter hook output priority 0; policy drop;
    ip daddr {ENCLAVE_V4} accept
    ip6 daddr {ENCLAVE_V6} accept
    ip dscp cs1 accept
    ip6 dscp cs1 accept
  }}
}}
""",
    ),
    Scenario(
        "unknown-statement-on-the-way-out",
        UNKNOWN,
        leaks=False,
        quoted="meta mark set",
        nft=f"""table inet t {{
  chain out {{
    type filter hook output priority 0; policy drop;
    ip daddr {ENCLAVE_V4} accept
    ip6 daddr {ENCLAVE_V6} accept
    meta mark set 0x00000007
  }}
}}
""",
    ),
    Scenario(
        "dnat-sends-enclave-addressed-traffic-outside",
        # the lockdown (priority -200) accepts packets to the enclave; nat output (-100) then rewrites the ones to
        # .10 towards 198.51.100.7, and the kernel delivers them outside: gapseal does not model where dnat sends a
        # packet, so every destination is unknown, quoting the rule (never a pass)
        UNKNOWN,
        leaks=True,
        quoted="dnat to 198.51.100.7",
        nft=f"""table inet lock {{
  chain out {{
    type filter hook output priority -200; policy drop;
    ip daddr {ENCLAVE_V4} accept
    ip6 daddr {ENCLAVE_V6} accept
  }}
}}
table ip nat {{
  chain out {{
    type nat hook output priority -100; policy accept;
    ip daddr {SUBNET_PREFIX}.{LAB_INDEX}.10 dnat to 198.51.100.7
  }}
}}
""",
    ),
    Scenario(
        "unknown-legacy-match-module",
        UNKNOWN,
        leaks=False,
        quoted="-m length",
        legacy={
            "ip": save("DROP", f"-A OUTPUT -d {ENCLAVE_V4} -j ACCEPT", "-A OUTPUT -m length --length 1:20 -j ACCEPT"),
            "ip6": save("DROP", f"-A OUTPUT -d {ENCLAVE_V6} -j ACCEPT", "-A OUTPUT -m length --length 1:20 -j ACCEPT"),
        },
    ),
    Scenario(
        "unknown-iptables-option-with-two-arguments",
        # the kernel lets every SYN out; gapseal does not model tcp flags (iptables-nft writes them as a native nft
        # expression): unknown for tcp, quoting the rule (never a pass); udp and icmp are still decided
        UNKNOWN,
        leaks=True,
        quoted="tcp flags & syn == syn",
        iptables_nft={
            "ip": save(
                "DROP", f"-A OUTPUT -d {ENCLAVE_V4} -j ACCEPT", "-A OUTPUT -p tcp -m tcp --tcp-flags SYN SYN -j ACCEPT"
            ),
            "ip6": save(
                "DROP", f"-A OUTPUT -d {ENCLAVE_V6} -j ACCEPT", "-A OUTPUT -p tcp -m tcp --tcp-flags SYN SYN -j ACCEPT"
            ),
        },
    ),
    Scenario(
        "ipv6-lockdown-separate-tables",
        COMPLIANT,
        leaks=False,
        nft=f"""table ip lock4 {{
  chain out {{ type filter hook output priority 0; policy drop; ip daddr {ENCLAVE_V4} accept; }}
}}
table ip6 lock6 {{
  chain out {{
    type filter hook output priority 0; policy drop;
    icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept
    ip6 daddr {ENCLAVE_V6} accept
  }}
}}
""",
    ),
    Scenario(
        "ipv4-only-lockdown-leaves-ipv6-open",
        LEAKY,
        leaks=True,
        nft=f"""table ip lock4 {{
  chain out {{ type filter hook output priority 0; policy drop; ip daddr {ENCLAVE_V4} accept; }}
}}
""",
    ),
    Scenario(
        "ipv6-accept-for-icmpv6-beyond-neighbour-discovery",
        # echo requests to 2001:db8::/32 leave: only ICMPv6 neighbour discovery belongs in a lockdown
        LEAKY,
        leaks=True,
        nft=f"""table inet t {{
  chain out {{
    type filter hook output priority 0; policy drop;
    meta l4proto ipv6-icmp accept
    ip daddr {ENCLAVE_V4} accept
    ip6 daddr {ENCLAVE_V6} accept
  }}
}}
""",
    ),
    Scenario(
        "ipv6-legacy-lockdown-missing",
        LEAKY,
        leaks=True,
        legacy={"ip": lockdown_save("ip"), "ip6": save("ACCEPT")},
    ),
]


@pytest.fixture(scope="module")
def lab() -> Iterator[EgressLab]:
    with EgressLab(LAB_INDEX) as lab:
        yield lab


@pytest.fixture(scope="module")
def audit_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty host root: only the live state of the namespace (routes, firewall) is under test."""
    return tmp_path_factory.mktemp("oracle-root")


def load(lab: EgressLab, scenario: Scenario) -> None:
    """Replace the lab host's firewall with the scenario's."""
    lab.reset()
    lab.load(scenario.nft, scenario.iptables_nft, scenario.legacy)


def facts_verdict(egress: Mapping[str, Any], probe: Probe) -> str:
    """The facts' answer for ``probe``: the class holding it (accept or unknown), else drop."""
    ip = ipaddress.ip_address(probe.address)
    family = "inet" if ip.version == 4 else "inet6"
    for answer in egress["classes"]:
        if answer["family"] != family or answer["protocol"] != probe.protocol:
            continue
        if not any(int(d["first"], 16) <= int(ip) <= int(d["last"], 16) for d in answer["destinations"]):
            continue
        if probe.port is not None and not any(
            int(lo) <= probe.port <= int(hi or lo) for lo, _, hi in (p.partition("-") for p in answer["ports"])
        ):
            continue
        return str(answer["verdict"])
    return "drop"


def firewall_findings(rule: RuleResult) -> list[str]:
    """The messages of a rule's findings."""
    return [f.message for f in rule.findings]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_audit_verdict_matches_the_kernel(lab: EgressLab, audit_root: Path, scenario: Scenario) -> None:
    load(lab, scenario)
    probes = lab.probes(ports=scenario.ports)
    delivered, _ = lab.send(probes)
    # every frame the host sent that reached an outside address, whatever it was sent to (a rewritten destination
    # included); the peer's own replies (to the host's addresses) are not the host's traffic
    ours = {*lab.enclave_v4, *lab.enclave_v6, *lab.host_addresses}
    leaked = [f"{proto} {address} {port}" for proto, address, port, _ in lab.last_seen if address not in ours]
    assert bool(leaked) == scenario.leaks, f"the kernel delivered to the outside: {leaked or 'nothing'}"

    facts_file = audit_root.parent / f"{scenario.name}.facts.json"
    lab.run([GAPSEAL, "audit", "collect", "--root", str(audit_root), "--out", str(facts_file), "--overwrite"])
    raw = facts_file.read_bytes()
    egress = json.loads(raw)["firewall"]["egress"]
    assert egress["status"] == "ok", egress.get("reason")

    wrong = []
    for probe in probes:
        kernel = "accept" if probe.key in delivered else "drop"
        facts = facts_verdict(egress, probe)
        if facts != kernel and not (facts == "unknown" and scenario.firewall == UNKNOWN):
            wrong.append(f"{probe.protocol} {probe.address} port {probe.port}: facts {facts}, kernel {kernel}")
    assert not wrong, "\n".join(wrong)

    results = evaluate_facts({scenario.name: raw})
    (host,) = results.hosts
    rules = {r.rule: r for r in host.rules}
    fired = {r.rule: r.status for r in host.rules if r.rule.startswith("EGRESS-") and r.status != "pass"}
    assert fired == {**LAB_ROUTE_FINDINGS, **scenario.firewall}, {k: rules[k].message for k in fired}
    if leaked:  # zero false "compliant": a host whose packets reached the outside never passes the firewall rules
        assert {rules[r].status for r in FIREWALL_RULES} != {"pass"}
    if scenario.quoted is not None:
        for rule_id in FIREWALL_RULES:
            messages = firewall_findings(rules[rule_id])
            assert messages, rule_id
            assert all(scenario.quoted in m for m in messages), messages
