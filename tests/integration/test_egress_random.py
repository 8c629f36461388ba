"""Randomised differential: the firewall evaluator against the kernel, on seeded random rulesets.

Each ruleset (nftables: tables of three families, dormant flags, base chains at several priorities and policies,
output and postrouting hooks, regular chains reached by jump/goto and only through verdict maps, named and anonymous
sets, intervals, concatenations, negations; iptables-nft and iptables-legacy with conntrack, multiport, owner,
addrtype; nftables and legacy tables together) is loaded into the lab host; real TCP, UDP and ICMP packets go to
enclave and outside addresses; for every packet, the evaluator's verdict must equal what the peer received.
A disagreement prints the seed and the ruleset. GAPSEAL_EGRESS_RANDOM sets the count (default 200).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from gapseal.audit import netfilter
from gapseal.audit.collectors.firewall import read_nft_document
from tests.integration.egress_lab import EgressLab, Probe, lab_requirements_missing

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(lab_requirements_missing()), reason=f"needs {lab_requirements_missing()}"),
]

COUNT = int(os.environ.get("GAPSEAL_EGRESS_RANDOM", "200"))
BASE_SEED = int(os.environ.get("GAPSEAL_EGRESS_SEED", "9204"))
LAB_INDEX = 201  # GAPSEAL_TEST_SUBNET's third octet for this module


@dataclass
class Generated:
    """One random ruleset: its kind, the text loaded, and how to load it."""

    kind: str
    nft: str | None = None
    ipt_nft: dict[str, str] | None = None
    legacy: dict[str, str] | None = None

    def show(self) -> str:
        """Everything loaded, for a failure message."""
        parts = [f"kind {self.kind}"]
        if self.nft:
            parts.append(self.nft)
        for label, texts in (("iptables-nft", self.ipt_nft), ("iptables-legacy", self.legacy)):
            for fam, text in (texts or {}).items():
                parts.append(f"# {label} {fam}\n{text}")
        return "\n".join(parts)


class NftGenerator:
    """Random nftables rulesets over the lab's addresses and ports."""

    def __init__(self, rng: random.Random, lab: EgressLab) -> None:
        self.rng = rng
        self.v4 = [*lab.enclave_v4, *lab.outside_v4]
        self.v6 = [*lab.enclave_v6, *lab.outside_v6]
        self.l4 = "tcp"

    def addr_expr(self, fam: str) -> str:
        r = self.rng
        pool = self.v4 if fam == "ip" else self.v6
        a = r.choice(pool)
        choice = r.random()
        if choice < 0.3:
            return a
        if choice < 0.5:
            return a.rsplit(".", 1)[0] + ".0/24" if fam == "ip" else a.rsplit(":", 1)[0] + ":0/112"
        if choice < 0.7:
            return "{ " + ", ".join(sorted(set(r.sample(pool, r.randint(1, 3))))) + " }"
        if fam == "ip":
            return (
                "198.51.100.0-198.51.100.5"
                if r.random() < 0.5
                else f"{a.rsplit('.', 1)[0]}.5-{a.rsplit('.', 1)[0]}.200"
            )
        return "2001:db8::-2001:db8::5"

    def port_expr(self) -> str:
        r = self.rng
        choice = r.random()
        if choice < 0.4:
            return str(r.choice([22, 53, 443, 80]))
        if choice < 0.7:
            return (
                "{ " + ", ".join(str(p) for p in sorted(set(r.sample([22, 53, 443, 80, 8080], r.randint(1, 3))))) + " }"
            )
        return r.choice(["20-60", "1-1000", "400-500"])

    def match(self, fam: str) -> str:
        r = self.rng
        fams = ["ip", "ip6"] if fam == "inet" else [fam]
        kind = r.choice(["daddr", "daddr", "proto_port", "proto", "ct", "oif", "uid", "neg", "th", "concat", "fib"])
        f = r.choice(fams)
        if kind == "daddr":
            return f"{f} daddr {self.addr_expr(f)}"
        if kind == "proto_port":
            return f"{self.l4} dport {self.port_expr()}"
        if kind == "proto":
            return f"meta l4proto {self.l4}"
        if kind == "ct":
            return r.choice(
                ["ct state established,related", "ct state new", "ct state { new, established }", "ct state invalid"]
            )
        if kind == "oif":
            return r.choice(['oifname "out0"', 'oifname "enc0"', 'oifname != "out0"', 'oifname "en*"'])
        if kind == "uid":
            return r.choice(["meta skuid 0", "meta skuid 1000", "meta skuid != 0", "meta skgid 0"])
        if kind == "neg":
            return f"{f} daddr != {self.addr_expr(f)}"
        if kind == "th":
            return f"meta l4proto {self.l4} th dport {self.port_expr()}"
        if kind == "fib":
            return r.choice(["fib daddr type local", "fib daddr type unicast", "fib daddr type != local"])
        a = r.choice(self.v4 if f == "ip" else self.v6)
        return f"{f} daddr . meta l4proto . th dport {{ {a} . {self.l4} . {r.choice([22, 53, 443])} }}"

    def rule(self, fam: str, targets: list[str], reject: bool = True) -> str:
        """A rule; ``reject`` only where the hook allows it (not in postrouting, nor chains it reaches)."""
        r = self.rng
        sub = r.choice(["ip", "ip6"]) if fam == "inet" else fam  # one address family per rule, as nft requires
        self.l4 = r.choice(["tcp", "udp"])  # one transport protocol per rule, too
        matches = [self.match(sub) for _ in range(r.choice([0, 1, 1, 2, 2, 3]))]
        if r.random() < 0.15:
            options: list[tuple[str, list[object]]] = [
                (f"{self.l4} dport", [22, 53, 443]),
                ("meta l4proto", ["tcp", "udp", "icmp"]),
            ]
            key, vals = r.choice(options)
            if key == "meta l4proto":
                matches = [m for m in matches if "l4proto" not in m and " dport " not in m]
            verdicts = ["accept", "drop", "continue", *(f"jump {t}" for t in targets), *(f"goto {t}" for t in targets)]
            elems = ", ".join(f"{v} : {r.choice(verdicts)}" for v in r.sample(vals, r.randint(1, len(vals))))
            return " ".join([*matches, f"{key} vmap {{ {elems} }}"])
        verdict = r.choice(["accept", "accept", "drop", "drop", "reject" if reject else "drop", "counter", "return", "continue",  # noqa: E501
                            *(f"jump {t}" for t in targets), *(f"goto {t}" for t in targets)])  # fmt: skip
        return " ".join([*matches, verdict])

    def ruleset(self) -> str:
        r = self.rng
        lines = ["flush ruleset"]
        for t in range(r.randint(1, 3)):
            fam = r.choice(["inet", "inet", "ip", "ip6"])
            lines.append(f"table {fam} t{t} {{")
            if r.random() < 0.2:
                lines.append("  flags dormant")
            regular = [f"c{t}_{i}" for i in range(r.randint(0, 3))]
            has_set = r.random() < 0.4
            if has_set:
                lines.append(f"  set s{t} {{ type {'ipv4_addr' if fam != 'ip6' else 'ipv6_addr'}; flags interval; "
                             f"elements = {{ {'198.51.100.0/29, 10.0.0.0/8' if fam != 'ip6' else '2001:db8::/125'} }} }}")  # fmt: skip  # noqa: E501
            for i, name in enumerate(regular):
                later = regular[i + 1 :]
                body = [self.rule(fam, later) for _ in range(r.randint(1, 3))]
                lines.append(f"  chain {name} {{")
                lines += [f"    {b}" for b in body]
                lines.append("  }")
            for b in range(r.randint(1, 2)):
                hook = "postrouting" if r.random() < 0.2 else "output"
                prio = r.choice([-150, -10, 0, 0, 10, 100])
                policy = r.choice(["accept", "drop", "drop"])
                lines.append(f"  chain b{b} {{")
                lines.append(f"    type filter hook {hook} priority {prio}; policy {policy};")
                for _ in range(r.randint(0, 5)):
                    rule = self.rule(fam, regular) if hook == "output" else self.rule(fam, [], reject=False)
                    if has_set and r.random() < 0.3:
                        rule = f"{'ip' if fam != 'ip6' else 'ip6'} daddr @s{t} {r.choice(['accept', 'drop'])}"
                    lines.append(f"    {rule}")
                lines.append("  }")
            lines.append("}")
        return "\n".join(lines) + "\n"


def iptables_rules(rng: random.Random, fam: str, lab: EgressLab) -> str:
    """A random iptables-save filter table (a user chain, RETURNs, the usual modules)."""
    pool = [*lab.enclave_v4, *lab.outside_v4] if fam == "ip" else [*lab.enclave_v6, *lab.outside_v6]

    def rule(chain: str, jumps: bool) -> str:
        parts = [f"-A {chain}"]
        kinds = rng.sample(
            [rng.choice(["d", "notd"]), rng.choice(["p", "multi"]), "ct", "owner", "addrtype", "o", "comment"], 7
        )
        for kind in kinds[: rng.choice([0, 1, 1, 2])]:
            if kind == "d":
                parts.append(f"-d {rng.choice(pool)}")
            elif kind == "notd":
                parts.append(f"! -d {rng.choice(pool)}")
            elif kind == "p":
                proto = rng.choice(["tcp", "udp"])
                parts.append(f"-p {proto} -m {proto} --dport {rng.choice(['22', '53', '443', '20:60'])}")
            elif kind == "multi":
                parts.append(
                    f"-p {rng.choice(['tcp', 'udp'])} -m multiport --dports {rng.choice(['22,53', '443,1000:2000', '53'])}"  # noqa: E501
                )
            elif kind == "ct":
                parts.append(rng.choice(["-m conntrack --ctstate RELATED,ESTABLISHED", "-m state --state NEW",
                                         "-m conntrack --ctstate NEW,ESTABLISHED"]))  # fmt: skip
            elif kind == "owner":
                parts.append(
                    rng.choice(["-m owner --uid-owner 0", "-m owner --uid-owner 1000", "-m owner ! --uid-owner 0"])
                )
            elif kind == "addrtype":
                parts.append(rng.choice(["-m addrtype --dst-type LOCAL", "-m addrtype --dst-type UNICAST"]))
            elif kind == "o":
                parts.append(rng.choice(["-o out0", "-o enc0", "! -o out0", "-o en+"]))
            else:
                parts.append('-m comment --comment "gapseal test"')
        targets = ["ACCEPT", "ACCEPT", "DROP", "REJECT", "RETURN"] + (["X"] if jumps else [])
        parts.append(f"-j {rng.choice(targets)}")
        return " ".join(parts)

    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]",
             f":OUTPUT {rng.choice(['ACCEPT', 'DROP', 'DROP'])} [0:0]", ":X - [0:0]"]  # fmt: skip
    lines += [rule("X", False) for _ in range(rng.randint(0, 3))]
    lines += [rule("OUTPUT", True) for _ in range(rng.randint(0, 5))]
    return "\n".join([*lines, "COMMIT", ""])


def generate(seed: int, lab: EgressLab) -> Generated:
    """The ruleset of ``seed``: mostly nftables; iptables-nft, iptables-legacy and mixtures too."""
    rng = random.Random(seed)
    kind = rng.choices(["nft", "iptables-nft", "legacy", "nft+legacy"], weights=[6, 2, 2, 2])[0]
    g = Generated(kind)
    if "nft" in kind and kind != "iptables-nft":
        g.nft = NftGenerator(rng, lab).ruleset()
    if kind == "iptables-nft":
        g.ipt_nft = {fam: iptables_rules(rng, fam, lab) for fam in ("ip", "ip6")}
    if "legacy" in kind:
        g.legacy = {fam: iptables_rules(rng, fam, lab) for fam in ("ip", "ip6")}
    return g


def load(lab: EgressLab, g: Generated) -> None:
    """Replace the lab host's firewall with ``g``."""
    lab.reset()
    lab.load(g.nft, g.ipt_nft, g.legacy)


def read_ruleset(lab: EgressLab) -> netfilter.Ruleset:
    """What the auditor reads on the host, evaluated."""
    saves: dict[str, dict[netfilter.Family, str]] = {"nft": {}, "legacy": {}}
    for kind in ("nft", "legacy"):
        for fam, prefix in (("ip", "iptables"), ("ip6", "ip6tables")):
            saves[kind][fam] = lab.run([f"{prefix}-{kind}-save"])  # type: ignore[index]
    document, _ = read_nft_document(lab.command)
    return netfilter.build_ruleset(
        nft_json=document,
        nft_listing=lab.run(["nft", "-a", "list", "ruleset"]),
        iptables_nft=saves["nft"],
        iptables_legacy=saves["legacy"],
        local_addresses=["127.0.0.1", "::1", *lab.host_addresses],
    )


def verdict_for(ruleset: netfilter.Ruleset, lab: EgressLab, probe: Probe) -> str:
    """The evaluator's verdict for ``probe`` sent by root through the interface the route picks."""
    p = netfilter.packet(probe.address, probe.protocol, probe.port, oifname=lab.oif(probe.address), skuid=0)
    p = netfilter.Packet(p.family, p.daddr, p.protocol, p.dport, oifname=p.oifname, skuid=0, skgid=0)
    return ruleset.evaluate(p).verdict


@pytest.fixture(scope="module")
def lab() -> Iterator[EgressLab]:
    with EgressLab(LAB_INDEX) as lab:
        yield lab


def test_random_rulesets_agree_with_the_kernel(lab: EgressLab) -> None:
    """Every packet of every random ruleset: evaluator accept <=> the peer received it; never unknown."""
    disagreements: list[str] = []
    kinds: dict[str, int] = {}
    packets = 0
    for n in range(COUNT):
        seed = BASE_SEED + n
        g = generate(seed, lab)
        kinds[g.kind] = kinds.get(g.kind, 0) + 1
        load(lab, g)
        ruleset = read_ruleset(lab)
        probes = lab.probes()
        delivered, _ = lab.send(probes)
        packets += len(probes)
        wrong = []
        for probe in probes:
            verdict = verdict_for(ruleset, lab, probe)
            kernel = "accept" if probe.key in delivered else "drop"
            if verdict != kernel:
                wrong.append(
                    f"  {probe.protocol} {probe.address} port {probe.port}: evaluator {verdict}, kernel {kernel}"
                )
        if wrong:
            disagreements.append(f"seed {seed}:\n{g.show()}\n" + "\n".join(wrong[:10]))
    print(f"\nrandom rulesets: {COUNT} ({kinds}), packets: {packets}, disagreements: {len(disagreements)}")
    assert not disagreements, "\n\n".join(disagreements[:3])
