"""Kernel oracle for forwarding: packets a client behind the audited host sends through it, held to EGRESS-012.

The forward lab (tests/integration/egress_lab.py ``ForwardLab``) puts a ``client`` namespace (a container on a
bridge, a VM) behind the host; its only way anywhere is through the host. Each scenario sets the host's forwarding
sysctls and loads a ruleset whose *output* path is locked down (so EGRESS-003/004 pass and only forwarding can leak),
the client sends real TCP, UDP and ICMP packets to every enclave and outside address, and the peer records what the
kernel delivered. Then the real collector runs inside the host namespace and the facts are evaluated with the
shipped policies. Two things must hold:

- per packet: the facts agree with the kernel. A family whose forwarding is off (``routes.ip_forwarding``) forwards
  nothing; otherwise the answer is the forward path's (``firewall.forward.classes``): a delivered packet is never
  ``drop``, an undelivered one never ``accept`` (``unknown`` only in the scenario about a rule gapseal does not
  understand);
- per scenario: the exact egress rule ids that fire. The lab host's routes trip EGRESS-002/005 in every scenario (see
  test_egress_oracle.py); EGRESS-012 is what each scenario decides, and a scenario whose packets reached the outside
  never passes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gapseal.audit.evaluate import evaluate_facts
from tests.hosts.netns import SUBNET_PREFIX
from tests.integration.egress_lab import ForwardLab, lab_requirements_missing
from tests.integration.test_egress_oracle import GAPSEAL, LAB_ROUTE_FINDINGS, facts_verdict, role_ruleset

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(lab_requirements_missing()), reason=f"needs {lab_requirements_missing()}"),
]

LAB_INDEX = 203  # the third octet of this module's enclave addresses (202: test_egress_oracle.py, 201: random)
ENCLAVE_V4 = f"{SUBNET_PREFIX}.0.0/16"
ENCLAVE_V6 = "fd20:4::/32"

OUTPUT_LOCKDOWN = f"""table inet lock {{
  chain out {{
    type filter hook output priority 0; policy drop;
    oifname "lo" accept
    ct state established,related accept
    ip daddr {ENCLAVE_V4} accept
    ip6 daddr {ENCLAVE_V6} accept
  }}
}}
"""
"""The host's own packets go only to the enclave: EGRESS-003/004 pass in every scenario."""


def forward_chain(policy: str, *rules: str) -> str:
    """An nftables forward base chain with ``policy`` and ``rules``."""
    body = "".join(f"    {r}\n" for r in rules)
    head = f"    type filter hook forward priority 0; policy {policy};\n"
    return f"table inet forwarding {{\n  chain forward {{\n{head}{body}  }}\n}}\n"


def forward_save(policy: str, *rules: str) -> str:
    """An iptables-save filter table with FORWARD's policy and rules (INPUT and OUTPUT accept)."""
    lines = ["*filter", ":INPUT ACCEPT [0:0]", f":FORWARD {policy} [0:0]", ":OUTPUT ACCEPT [0:0]", *rules, "COMMIT"]
    return "\n".join([*lines, ""])


@dataclass(frozen=True)
class Scenario:
    """The host's forwarding settings and ruleset, whether the kernel forwards outside, and EGRESS-012's status."""

    name: str
    expected: str | None
    """EGRESS-012's status (None: pass)."""
    leaks: bool
    """Whether some packet of the client reaches an outside address (checked against the packets)."""
    ipv4: bool = False
    ipv6: bool = False
    ipv4_interfaces: Sequence[str] = ()
    nft: str = ""
    iptables_nft: Mapping[str, str] = field(default_factory=dict)
    legacy: Mapping[str, str] = field(default_factory=dict)
    quoted: tuple[str, ...] = ()
    """Every EGRESS-012 finding quotes one of these (the rules gapseal does not understand), each one is quoted."""


SCENARIOS = [
    Scenario("forwarding-off", None, leaks=False),
    Scenario("forwarding-on-no-forward-chain", "fail", leaks=True, ipv4=True, ipv6=True),
    Scenario(
        "ipv4-forwarding-on-the-client-link-only",
        "fail",
        leaks=True,
        ipv4_interfaces=("ctr0",),
    ),
    Scenario(
        "forwarding-on-nft-forward-policy-drop",
        None,
        leaks=False,
        ipv4=True,
        ipv6=True,
        nft=forward_chain("drop", f"ip daddr {ENCLAVE_V4} accept", f"ip6 daddr {ENCLAVE_V6} accept"),
    ),
    Scenario(
        # what `gapseal install` loads (playbooks/roles/egress): a host that forwards stays locked down
        "forwarding-on-gapseal-egress-role-lockdown",
        None,
        leaks=False,
        ipv4=True,
        ipv6=True,
        nft=role_ruleset(),
    ),
    Scenario(
        "forwarding-on-iptables-nft-forward-accept-one-cidr",
        "fail",
        leaks=True,
        ipv4=True,
        ipv6=True,
        iptables_nft={
            "ip": forward_save("DROP", "-A FORWARD -d 198.51.100.0/24 -j ACCEPT"),
            "ip6": forward_save("DROP"),
        },
    ),
    Scenario(
        "forwarding-on-legacy-forward-drop",
        None,
        leaks=False,
        ipv4=True,
        ipv6=True,
        legacy={"ip": forward_save("DROP"), "ip6": forward_save("DROP")},
    ),
    Scenario(
        "forwarding-on-rule-not-understood",
        "unknown",
        leaks=False,
        ipv4=True,
        ipv6=True,
        nft=forward_chain(
            "drop", f"ip daddr {ENCLAVE_V4} accept", f"ip6 daddr {ENCLAVE_V6} accept", "ip dscp cs1 accept"
        ),
        quoted=("dscp cs1",),
    ),
    Scenario(
        # routing has not run on prerouting: an oifname match there never matches, so nothing is dropped
        "forwarding-on-oifname-drop-in-prerouting-never-matches",
        "fail",
        leaks=True,
        ipv4=True,
        ipv6=True,
        nft="""table inet pre {
  chain pre {
    type filter hook prerouting priority 0; policy accept;
    oifname "out0" drop
  }
}
""",
    ),
    Scenario(
        # the forward chain accepts only the enclave, but prerouting's dnat sends packets addressed to .10 to
        # 198.51.100.7 and accepts what it rewrote: the kernel forwards them outside; gapseal does not model where
        # dnat sends a packet, so every destination is unknown, quoting the rule (never a pass)
        "forwarding-on-dnat-in-prerouting",
        "unknown",
        leaks=True,
        ipv4=True,
        nft=f"""table ip nat {{
  chain pre {{
    type nat hook prerouting priority -100; policy accept;
    ip daddr {SUBNET_PREFIX}.{LAB_INDEX}.10 dnat to 198.51.100.7
  }}
}}
"""
        + forward_chain("drop", f"ip daddr {ENCLAVE_V4} accept", "ip daddr 198.51.100.7 ct status dnat accept"),
        quoted=("dnat to 198.51.100.7", "ct status dnat"),
    ),
]


@pytest.fixture(scope="module")
def lab() -> Iterator[ForwardLab]:
    with ForwardLab(LAB_INDEX) as lab:
        yield lab


@pytest.fixture(scope="module")
def audit_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty host root: only the live state of the namespace (sysctls, routes, firewall) is under test."""
    return tmp_path_factory.mktemp("forward-oracle-root")


def load(lab: ForwardLab, scenario: Scenario) -> None:
    """Replace the lab host's forwarding settings and firewall with the scenario's."""
    lab.reset()
    lab.set_forwarding()  # every interface back to off before the scenario's own settings
    lab.set_forwarding(ipv4=scenario.ipv4, ipv6=scenario.ipv6, ipv4_interfaces=scenario.ipv4_interfaces)
    lab.load(OUTPUT_LOCKDOWN + scenario.nft, scenario.iptables_nft, scenario.legacy)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_forwarding_verdict_matches_the_kernel(lab: ForwardLab, audit_root: Path, scenario: Scenario) -> None:
    load(lab, scenario)
    probes = lab.probes()
    delivered, _ = lab.send(probes)
    enclave = {*lab.enclave_v4, *lab.enclave_v6}
    leaked = [f"{proto} {address} {port}" for proto, address, port, _ in lab.last_seen if address not in enclave]
    assert bool(leaked) == scenario.leaks, f"the kernel forwarded to the outside: {leaked or 'nothing'}"

    facts_file = audit_root.parent / f"{scenario.name}.facts.json"
    lab.run([GAPSEAL, "audit", "collect", "--root", str(audit_root), "--out", str(facts_file), "--overwrite"])
    raw = facts_file.read_bytes()
    document = json.loads(raw)
    forwarding, forward = document["routes"]["ip_forwarding"], document["firewall"]["forward"]
    assert forwarding["status"] == "ok", forwarding.get("reason")
    assert forward["status"] == "ok", forward.get("reason")

    wrong = []
    for probe in probes:
        kernel = "accept" if probe.key in delivered else "drop"
        family = "inet6" if ":" in probe.address else "inet"
        facts = facts_verdict(forward, probe) if forwarding[family] else "drop"
        if facts != kernel and not (facts == "unknown" and scenario.expected == "unknown"):
            wrong.append(f"{probe.protocol} {probe.address} port {probe.port}: facts {facts}, kernel {kernel}")
    assert not wrong, "\n".join(wrong)

    results = evaluate_facts({scenario.name: raw})
    (host,) = results.hosts
    rules = {r.rule: r for r in host.rules}
    fired = {r.rule: r.status for r in host.rules if r.rule.startswith("EGRESS-") and r.status != "pass"}
    expected = {**LAB_ROUTE_FINDINGS, **({"EGRESS-012": scenario.expected} if scenario.expected else {})}
    assert fired == expected, {k: rules[k].message for k in fired}
    if leaked:  # zero false "compliant": a host that forwarded packets outside never passes EGRESS-012
        assert rules["EGRESS-012"].status != "pass"
    if scenario.quoted:
        messages = [f.message for f in rules["EGRESS-012"].findings]
        assert all(any(q in m for q in scenario.quoted) for m in messages), messages
        assert all(any(q in m for m in messages) for q in scenario.quoted), messages
