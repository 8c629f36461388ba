"""iptables-save text (``ip(6)tables-legacy-save`` and the iptables-nft variants) into the model.

Legacy tables are base chains of their own: each built-in chain hooks where the kernel's xtables table registers it
(raw -300, mangle -150, nat -100 on OUTPUT and +100 on POSTROUTING, filter 0, security 50) with its policy. A legacy
``OUTPUT DROP`` is as final as an nftables drop. For iptables-nft, the same parser turns each ``-A`` line into the
rule ``nft -j`` shows only as ``xt`` expressions.

Understood: ``-d/-s``, ``-p``, ``-o/-i`` (``+`` wildcards), ``-m tcp/udp --dport/--sport``, ``-m multiport``,
``-m conntrack --ctstate``, ``-m state --state``, ``-m owner --uid-owner/--gid-owner``, ``-m addrtype --dst-type``,
``-m icmp/icmp6`` types, ``-m comment``, ``!`` negations; targets ACCEPT, DROP, REJECT, RETURN, LOG/NFLOG (no-ops),
SNAT/MASQUERADE (no-op for filtering), user chains (``-j``) and ``-g``. Anything else quotes the line as
``Uncertain`` (a match) or ``Opaque`` (a target).
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field

from gapseal.audit.netfilter.model import (
    PROTO_NUMBERS,
    REWRITING_TARGETS,
    Atom,
    BaseChain,
    Family,
    Interval,
    Jump,
    Match,
    Name,
    Opaque,
    Rule,
    Step,
    Terminal,
    Uncertain,
)

LEGACY_HOOKS: dict[tuple[str, str], int] = {
    ("raw", "PREROUTING"): -300,
    ("mangle", "PREROUTING"): -150,
    ("nat", "PREROUTING"): -100,
    ("raw", "OUTPUT"): -300,
    ("mangle", "OUTPUT"): -150,
    ("nat", "OUTPUT"): -100,
    ("filter", "OUTPUT"): 0,
    ("security", "OUTPUT"): 50,
    ("mangle", "POSTROUTING"): -150,
    ("nat", "POSTROUTING"): 100,
    ("mangle", "FORWARD"): -150,
    ("filter", "FORWARD"): 0,
    ("security", "FORWARD"): 50,
}
"""(table, built-in chain) -> priority, for the hooks a packet leaving or crossing the host passes."""

_NOOP_TARGETS = {"LOG", "NFLOG", "ULOG", "SNAT", "MASQUERADE", "ACCEPT", "DROP", "REJECT", "RETURN"}
_ADDR_TYPES = {"LOCAL": "local", "UNICAST": "unicast", "MULTICAST": "multicast", "BROADCAST": "broadcast"}


@dataclass
class SavedTable:
    """One ``*table`` section: chain policies (None for user chains) and ``-A`` lines per chain, in order."""

    name: str
    policies: dict[str, str | None] = field(default_factory=dict)
    lines: dict[str, list[str]] = field(default_factory=dict)


def parse_save(text: str) -> list[SavedTable]:
    """Split iptables-save output into tables; raises ``ValueError`` on a line it cannot place."""
    tables: list[SavedTable] = []
    current: SavedTable | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            current = SavedTable(line[1:])
            tables.append(current)
        elif current is None:
            raise ValueError(f"iptables-save line outside a table: {line!r}")
        elif line.startswith(":"):
            parts = line[1:].split()
            if not parts:
                raise ValueError(f"iptables-save chain line without a name: {line!r}")
            policy = parts[1] if len(parts) > 1 and parts[1] != "-" else None
            if policy not in {None, "ACCEPT", "DROP"}:
                raise ValueError(f"iptables-save chain {parts[0]}: policy {policy!r} is not ACCEPT or DROP")
            current.policies[parts[0]] = policy
            current.lines.setdefault(parts[0], [])
        elif line.startswith("-A "):
            chain = line.split()[1]
            current.lines.setdefault(chain, []).append(line)
        else:
            raise ValueError(f"unexpected iptables-save line: {line!r}")
    return tables


def _ports(text: str) -> tuple[Atom, ...]:
    out: list[Atom] = []
    for part in text.split(","):
        lo, _, hi = part.partition(":")
        out.append(Interval(int(lo or 0), int(hi or 65535) if _ else int(lo)))
    return tuple(out)


def _address(text: str, family: Family) -> Atom:
    net = ipaddress.ip_network(text, strict=False)
    if (net.version == 4) != (family == "ip"):
        raise ValueError(f"address {text} of the other family")
    return Interval(int(net.network_address), int(net.broadcast_address))


def _iface(text: str) -> Atom:
    return Name(text[:-1] + "*" if text.endswith("+") else text)


def _ids(text: str) -> tuple[Atom, ...]:
    lo, _, hi = text.partition("-")
    if not lo.isdigit() or (hi and not hi.isdigit()):
        raise ValueError(f"owner {text!r} is not numeric")
    return (Interval(int(lo), int(hi or lo)),)


def _names_rewriting_target(line: str) -> bool:
    """For a line gapseal could not parse: whether any of its words is a target that sends packets elsewhere."""
    return any(word.strip("'\"") in REWRITING_TARGETS for word in line.split())


def parse_rule(line: str, family: Family, chains: frozenset[str] = frozenset()) -> Rule:
    """One ``-A CHAIN ...`` line as a model rule quoting the line; ``chains``: the table's chain names."""
    quote = line
    try:
        words = shlex.split(line)
    except ValueError:
        return Rule((Uncertain(quote), Opaque(quote, rewrites=_names_rewriting_target(line))), quote)
    steps: list[Step] = []
    proto: str | None = None
    module: str | None = None
    negate = False
    target: Step | None = None
    # iptables-save prints the target last: where a word is not understood (its option's arity unknown), the rest of
    # the matches is skipped to the last -j/-g, so an option's arguments are never read as the target
    jumps = [k for k, w in enumerate(words) if w in {"-j", "--jump", "-g", "--goto"}]
    i = 2
    try:
        while i < len(words):
            w = words[i]
            arg = words[i + 1] if i + 1 < len(words) else ""
            if w == "!":
                negate = True
                i += 1
                continue
            used = 2
            skip = False
            m: Match | Uncertain | None = None
            if w in {"-d", "--destination", "-s", "--source"}:
                key = f"{family} {'daddr' if w in {'-d', '--destination'} else 'saddr'}"
                m = Match((key,), tuple((_address(a, family),) for a in arg.split(",")), negate)
            elif w in {"-p", "--protocol"}:
                proto = {"ipv6-icmp": "icmp", "icmpv6": "icmp"}.get(arg, arg)
                number = (
                    PROTO_NUMBERS["icmpv6" if proto == "icmp" and family == "ip6" else proto]
                    if proto in PROTO_NUMBERS
                    else int(arg)
                )
                m = Match(("meta l4proto",), ((Interval(number, number),),), negate)
            elif w in {"-o", "--out-interface", "-i", "--in-interface"}:
                key = "meta oifname" if w in {"-o", "--out-interface"} else "meta iifname"
                m = Match((key,), ((_iface(arg),),), negate)
            elif w in {"-m", "--match"}:
                module = arg
                if arg not in {
                    "tcp",
                    "udp",
                    "multiport",
                    "conntrack",
                    "state",
                    "owner",
                    "addrtype",
                    "comment",
                    "icmp",
                    "icmp6",
                }:
                    m, skip = Uncertain(quote), True  # a match module the model does not know
            elif w == "--comment":
                pass
            elif w in {"--dport", "--destination-port", "--sport", "--source-port"} and module in {"tcp", "udp"}:
                dst = w in {"--dport", "--destination-port"}
                m = Match((f"{module} {'dport' if dst else 'sport'}",), tuple((a,) for a in _ports(arg)), negate)
            elif (
                w in {"--dports", "--destination-ports", "--sports", "--source-ports", "--ports"}
                and module == "multiport"
            ):
                if proto not in {"tcp", "udp"} or w == "--ports":
                    m = Uncertain(quote)
                else:
                    which = "dport" if "d" in w.split("-")[2][:1] else "sport"
                    m = Match((f"{proto} {which}",), tuple((a,) for a in _ports(arg)), negate)
            elif w in {"--ctstate", "--state"} and module in {"conntrack", "state"}:
                m = Match(("ct state",), tuple((Name(s.lower()),) for s in arg.split(",")), negate)
            elif w in {"--uid-owner", "--gid-owner"} and module == "owner":
                m = Match((f"meta sk{'uid' if w == '--uid-owner' else 'gid'}",), (_ids(arg),), negate)
            elif w == "--dst-type" and module == "addrtype":
                if any(t not in _ADDR_TYPES for t in arg.split(",")):
                    m = Uncertain(quote)
                else:
                    m = Match(("fib daddr type",), tuple((Name(_ADDR_TYPES[t]),) for t in arg.split(",")), negate)
            elif w in {"--icmp-type", "--icmpv6-type"} and module in {"icmp", "icmp6"}:
                m = Match((f"{'icmp' if family == 'ip' else 'icmpv6'} type",), ((Name(arg),),), negate)
            elif w in {"-j", "--jump", "-g", "--goto"}:
                if arg in {"ACCEPT", "DROP", "RETURN"}:
                    target = Terminal({"ACCEPT": "accept", "DROP": "drop", "RETURN": "return"}[arg])  # type: ignore[arg-type]
                elif arg == "REJECT":
                    target = Terminal("drop")
                elif arg in chains:
                    target = Jump(arg, goto=w in {"-g", "--goto"})
                elif arg in _NOOP_TARGETS:
                    target = None
                else:  # DNAT, MARK, CONNMARK, NFQUEUE, CT, TEE...: not modelled
                    target = Opaque(quote, rewrites=arg in REWRITING_TARGETS)
                i += 2
                while i < len(words) and words[i].startswith("--"):  # the target's own options
                    i += 2
                continue
            elif w.startswith("--") and module in {
                "tcp",
                "udp",
                "conntrack",
                "state",
                "owner",
                "addrtype",
                "icmp",
                "icmp6",
            }:
                m, skip = Uncertain(quote), True  # an option of a known module that the model does not use
            else:
                m, skip = Uncertain(quote), True
            if m is not None:
                steps.append(m)
            negate = False
            if skip:
                later = [k for k in jumps if k > i]
                i = later[-1] if later else len(words)
                continue
            i += used
    except (ValueError, KeyError, IndexError):
        return Rule((Uncertain(quote), Opaque(quote, rewrites=_names_rewriting_target(line))), quote)
    if target is not None:
        steps.append(target)
    return Rule(tuple(steps), quote)


def rules_by_chain(text: str, family: Family) -> dict[tuple[str, str], list[Rule]]:
    """Every table's chains as model rules, keyed (table, chain)."""
    return {
        (t.name, chain): [parse_rule(line, family, frozenset(t.lines)) for line in lines]
        for t in parse_save(text)
        for chain, lines in t.lines.items()
    }


def legacy_base_chains(text: str, family: Family, tool: str) -> list[BaseChain]:
    """The base chains of iptables-legacy tables (``tool`` names the source in labels)."""
    out: list[BaseChain] = []
    for t in parse_save(text):
        names = frozenset(t.lines)
        chains = {chain: tuple(parse_rule(line, family, names) for line in lines) for chain, lines in t.lines.items()}
        for chain, policy in t.policies.items():
            prio = LEGACY_HOOKS.get((t.name, chain))
            if prio is None or policy is None:
                continue
            out.append(
                BaseChain(
                    label=f"{tool} {t.name} {chain}",
                    families=frozenset({family}),
                    hook=chain.lower(),
                    priority=prio,
                    policy="drop" if policy == "DROP" else "accept",
                    chain=chain,
                    chains=chains,
                )
            )
    return out
