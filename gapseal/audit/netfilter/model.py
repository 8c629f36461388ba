"""The ruleset model and its evaluation: "can a NEW packet from this host to A, protocol P, port X leave?".

A ``Ruleset`` is what netfilter runs for a locally generated packet: every *active* base chain on the ``output``
hook, then every one on ``postrouting``, each with its priority and policy, from every source (nftables tables,
iptables-nft tables, iptables-legacy tables). The packet leaves only if **every** base chain accepts it: a drop
in any base chain is final, an accept only ends that chain. Inside a chain, rules run in order; ``jump`` returns,
``goto`` does not, ``return`` (or the end of a regular chain) goes back to the caller, the end of a base chain
applies its policy.

A rule is a list of steps: matches (``Match``), no-op statements (counter, log, comments, snat/masquerade), a
verdict, a verdict map (``VerdictMap``), or an ``Opaque`` step gapseal does not understand. Three-valued logic
keeps the answer honest: a match whose outcome cannot be known for the packet (a field the packet does not fix,
like the source port, or an expression gapseal does not model) is evaluated *both ways*; if the two branches end
in different verdicts the answer is ``unknown`` and names the rule, never a guess. An opaque statement ends its
branch in ``unknown``.

Packets carry the fields a rule may test: family, destination address, layer-4 protocol, destination port, and the
sending socket's output interface, uid and gid (``None`` when the caller does not fix them: then every value any
rule names is tried, see ``gapseal.audit.netfilter.classes``). The packet is NEW (conntrack state ``new``,
direction ``original``), its mark is 0, it has no input interface.

The same model answers for packets the host *forwards* (``Ruleset.path == "forward"``): then the base chains run are
those on ``prerouting``, ``forward`` and ``postrouting`` (hook then priority order), the packet arrives on an input
interface (``Packet.iifname``, None: not fixed) and has no sending socket (``meta skuid``/``skgid`` never match), and a
packet addressed to one of the host's own addresses is delivered locally, not forwarded (a drop on this path).
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal, TypeAlias

Verdict = Literal["accept", "drop", "unknown"]
Protocol = Literal["tcp", "udp", "icmp"]
Family = Literal["ip", "ip6"]
PacketPath = Literal["output", "forward"]

PROTO_NUMBERS: Final = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132, "dccp": 33, "udplite": 136}
REWRITING_TARGETS: Final = frozenset({"DNAT", "REDIRECT", "TPROXY", "NETMAP", "TEE", "NFQUEUE", "QUEUE"})
"""xtables targets that may send a packet (or a copy) elsewhere than its destination (see ``Opaque.rewrites``)."""
MAX_JUMP_DEPTH: Final = 64
"""Deeper than the kernel allows (it refuses loops and limits jump depth): beyond it the answer is ``unknown``."""
MAX_BRANCHES: Final = 4096
"""Branch budget per evaluation: a ruleset full of opaque matches yields ``unknown`` rather than a long wait."""


class _Absent:
    """A field the packet does not have (``tcp dport`` of a UDP packet): a match on it never matches."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()
Value: TypeAlias = int | str | _Absent | None
"""A packet field's value: a number or name, ``ABSENT``, or ``None`` when the packet does not fix it."""


@dataclass(frozen=True)
class Packet:
    """A NEW packet this host sends."""

    family: Family
    daddr: int
    """Destination address as an integer."""
    protocol: Protocol
    """``icmp`` is ICMPv6 for ``ip6`` (an echo request)."""
    dport: int | None = None
    """Destination port (tcp/udp); None for icmp."""
    oifname: str | None = None
    """Output interface; None: not fixed (the caller enumerates)."""
    skuid: int | None = None
    """The sending socket's uid; None: not fixed."""
    skgid: int | None = None
    """The sending socket's gid; None: not fixed."""
    forwarded: bool = False
    """A packet another host (a container, a VM) sent through this one: no socket, an input interface."""
    iifname: str | None = None
    """Input interface of a forwarded packet; None: not fixed."""
    hook: str | None = None
    """The hook whose base chain is running (set by ``Ruleset.evaluate``): a forwarded packet has no output
    interface yet on ``prerouting`` (its input interface is still known on ``postrouting``)."""

    @property
    def address(self) -> str:
        """The destination as text."""
        return str(ipaddress.ip_address(self.daddr) if self.family == "ip" else ipaddress.IPv6Address(self.daddr))

    def describe(self) -> str:
        """E.g. ``tcp 198.51.100.7 port 443``."""
        text = f"{self.protocol} {self.address}" + (f" port {self.dport}" if self.dport is not None else "")
        fields = (("iifname", self.iifname), ("oifname", self.oifname), ("skuid", self.skuid), ("skgid", self.skgid))
        extra = [f"{k} {v}" for k, v in fields]
        return " ".join([text, *(e for e in extra if not e.endswith(" None"))])


@dataclass(frozen=True)
class Context:
    """Host facts some matches need: the host's own addresses (``fib daddr type local``, ``addrtype LOCAL``)."""

    local_addresses: frozenset[tuple[Family, int]] = frozenset()


def field_value(packet: Packet, key: str, ctx: Context) -> Value:
    """The value of field ``key`` (e.g. ``ip daddr``, ``tcp dport``, ``meta skuid``) for ``packet``."""
    fam, proto = packet.family, packet.protocol
    l4 = PROTO_NUMBERS["icmpv6" if proto == "icmp" and fam == "ip6" else proto]
    if key in {"ip daddr", "ip6 daddr"}:
        return packet.daddr if key.startswith(fam + " ") else ABSENT
    if key in {"ip saddr", "ip6 saddr"}:
        return None if key.startswith(fam + " ") else ABSENT
    if key in {"ip protocol", "ip6 nexthdr"}:
        return l4 if key.startswith(fam + " ") else ABSENT
    if key == "meta l4proto":
        return l4
    if key in {"meta nfproto", "meta protocol"}:
        return {"ip": "ipv4", "ip6": "ipv6"}[fam] if key == "meta nfproto" else fam
    if key in {"tcp dport", "udp dport"}:
        return packet.dport if proto == key[:3] and packet.dport is not None else ABSENT
    if key in {"tcp sport", "udp sport"}:
        return None if proto == key[:3] else ABSENT  # an ephemeral port: not fixed
    if key == "th dport":
        return packet.dport if proto in {"tcp", "udp"} else None
    if key == "th sport":
        return None
    if key in {"icmp type", "icmpv6 type"}:
        own = "icmp type" if fam == "ip" else "icmpv6 type"
        return "echo-request" if proto == "icmp" and key == own else ABSENT
    if key == "meta oifname":
        if packet.forwarded and packet.hook == "prerouting":
            return ABSENT  # routing has not run yet: nft's expression breaks the rule (iptables refuses -o there)
        return packet.oifname
    if key in {"meta iifname", "meta iif"}:
        if packet.forwarded:
            return packet.iifname if key == "meta iifname" else None  # iif compares an index: not modelled
        return ABSENT  # a locally generated packet has no input interface: the expression breaks the rule
    if key in {"meta skuid", "meta skgid"}:
        if packet.forwarded:
            return ABSENT  # a forwarded packet has no socket: the expression breaks the rule
        return packet.skuid if key == "meta skuid" else packet.skgid
    if key in {"meta mark", "ct mark"}:
        return 0
    if key == "ct state":
        return "new"
    if key == "ct direction":
        return "original"
    if key == "fib daddr type":
        if (fam, packet.daddr) in ctx.local_addresses:
            return "local"
        ip = ipaddress.ip_address(packet.daddr) if fam == "ip" else ipaddress.IPv6Address(packet.daddr)
        if ip.is_multicast:
            return "multicast"
        if fam == "ip" and packet.daddr == 0xFFFFFFFF:
            return "broadcast"
        return "unicast"
    return None


# --------------------------------------------------------------------------------------------------- rule steps


@dataclass(frozen=True)
class Interval:
    """A closed integer interval (addresses, ports, uids, protocol numbers)."""

    lo: int
    hi: int


@dataclass(frozen=True)
class Name:
    """A name (interface, ct state, address type); ``*`` at the end is a prefix wildcard, as nft and iptables use."""

    text: str


Atom: TypeAlias = Interval | Name


def _atom_matches(atom: Atom, value: int | str) -> bool:
    if isinstance(atom, Interval):
        return isinstance(value, int) and atom.lo <= value <= atom.hi
    if not isinstance(value, str):
        return False
    if atom.text.endswith("*"):
        return fnmatch.fnmatchcase(value, atom.text.replace("[", "[[]"))
    return atom.text == value


def _lookup(elements: Iterable[tuple[Atom, ...]], values: Sequence[Value]) -> bool | None:
    """Whether some element matches every value: True, False, or None when that depends on an unfixed value."""
    result: bool | None = False
    for element in elements:
        hit: bool | None = True
        for a, v in zip(element, values, strict=True):
            if v is None:
                hit = None
            elif isinstance(v, _Absent) or not _atom_matches(a, v):
                hit = False
                break
        if hit:
            return True
        if hit is None:
            result = None
    return result


@dataclass(frozen=True)
class Match:
    """``keys`` (one, or several for a concatenation) compared against ``elements``.

    It matches when some element matches every key (``negate``: when none does). A key the packet lacks
    (``ABSENT``) makes the match false either way, as nft's implicit protocol dependency and a broken expression do.
    """

    keys: tuple[str, ...]
    elements: tuple[tuple[Atom, ...], ...]
    negate: bool = False

    def test(self, packet: Packet, ctx: Context) -> bool | None:
        """True, False, or None when the packet does not fix a field the match needs."""
        values = [field_value(packet, k, ctx) for k in self.keys]
        if any(isinstance(v, _Absent) for v in values):
            return False
        hit = _lookup(self.elements, values)
        return None if hit is None else hit != self.negate


@dataclass(frozen=True)
class Uncertain:
    """A match gapseal cannot decide (``limit rate``, an unmodelled expression): both outcomes are explored."""

    what: str


@dataclass(frozen=True)
class Jump:
    """``jump``/``goto`` to a regular chain of the same table."""

    target: str
    goto: bool = False


@dataclass(frozen=True)
class Terminal:
    """A verdict step: ``accept``, ``drop`` (reject counts as drop: nothing leaves), ``return``, ``continue``."""

    verdict: Literal["accept", "drop", "return", "continue"]


@dataclass(frozen=True)
class Opaque:
    """A statement gapseal does not model (queue, dnat, mark set, dup, notrack...): its branch ends ``unknown``."""

    what: str
    rewrites: bool = False
    """It may send the packet (or a copy) to another destination than the one it was addressed to (dnat, redirect,
    tproxy, dup, fwd, queue to a program, a payload rewrite of the address or port): then traffic addressed inside
    the enclave may reach any destination (see ``gapseal.audit.netfilter.classes``)."""


@dataclass(frozen=True)
class VerdictMap:
    """``KEY vmap { element : verdict, ... }``; no element matching means the rule stops (next rule)."""

    keys: tuple[str, ...]
    entries: tuple[tuple[tuple[Atom, ...], Jump | Terminal | Opaque], ...]


Step: TypeAlias = Match | Uncertain | Jump | Terminal | Opaque | VerdictMap


@dataclass(frozen=True)
class Rule:
    """One rule: its steps in order and the text that quotes it (the ruleset's own words)."""

    steps: tuple[Step, ...]
    quote: str


@dataclass(frozen=True)
class BaseChain:
    """A base chain on a hook: where evaluation starts."""

    label: str
    """Who it is, e.g. ``nftables inet gapseal output`` or ``iptables-legacy filter OUTPUT``."""
    families: frozenset[Family]
    """The packet families it sees (``inet`` tables: both)."""
    hook: str
    priority: int
    policy: Literal["accept", "drop"]
    chain: str
    """Name of the chain in ``chains``."""
    chains: dict[str, tuple[Rule, ...]]
    """Every chain of its table, by name (regular chains are reached only through jumps and verdict maps)."""
    active: bool | None = True
    """False in a dormant table; None when the table's flags could not be read (then it may or may not run)."""


# --------------------------------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Outcome:
    """The answer for one packet: the verdict and the words that decided it (rules quoted, or a chain's policy)."""

    verdict: Verdict
    decided_by: tuple[str, ...]


@dataclass(frozen=True)
class _Path:
    """One branch through a chain: how it ended and what decided it."""

    end: Literal["accept", "drop", "unknown", "return"]
    by: str
    assumed: tuple[str, ...] = ()


class _Budget:
    def __init__(self) -> None:
        self.left = MAX_BRANCHES

    def spend(self) -> bool:
        self.left -= 1
        return self.left >= 0


@dataclass
class Ruleset:
    """Every base chain of the host, from every source; see the module docstring."""

    base_chains: list[BaseChain] = field(default_factory=list)
    context: Context = field(default_factory=Context)
    notes: list[str] = field(default_factory=list)
    """What was read and what was left out (e.g. a table on another hook)."""
    path: PacketPath = "output"
    """Which packets it answers for: ``output`` (this host's own) or ``forward`` (through it); see ``forward``."""

    def forward(self) -> Ruleset:
        """The same ruleset answering for packets the host forwards (prerouting, forward, postrouting)."""
        return replace(self, path="forward")

    def output_chains(self, family: Family) -> list[BaseChain]:
        """The base chains a packet of ``family`` on this ruleset's path traverses, in hook then priority order."""
        order = _HOOK_ORDER[self.path]
        chosen = [c for c in self.base_chains if c.hook in order and family in c.families]
        return sorted(chosen, key=lambda c: (order[c.hook], c.priority))

    def evaluate(self, packet: Packet) -> Outcome:
        """Whether ``packet`` (all fields fixed by the caller, or None where any value is possible) leaves."""
        if self.path == "forward" and (packet.family, packet.daddr) in self.context.local_addresses:
            return Outcome("drop", (f"{packet.address} is this host's own address: delivered, not forwarded",))
        if (self.path == "forward") != packet.forwarded:
            raise ValueError(f"a {'forwarded' if packet.forwarded else 'local'} packet on the {self.path} path")
        chains = self.output_chains(packet.family)
        maybe_accept: list[str] = []
        uncertain: list[str] = []
        for bc in chains:
            paths = _run_base(bc, replace(packet, hook=bc.hook) if packet.forwarded else packet, self.context)
            ends = {p.end for p in paths}
            if bc.active is None:
                ends.add("accept")  # a table whose flags are unreadable may be dormant
            if ends == {"drop"}:
                return Outcome("drop", tuple(dict.fromkeys(p.by for p in paths)))
            if ends == {"accept"}:
                maybe_accept += dict.fromkeys(p.by for p in paths)
                continue
            for p in paths:
                if p.end == "unknown":
                    uncertain.append(p.by)
                uncertain += p.assumed
            if bc.active is None:
                uncertain.append(f"{bc.label}: table flags unreadable (it may be dormant)")
            if not any(p.end == "unknown" or p.assumed for p in paths) and bc.active is not None:
                uncertain += [p.by for p in paths]
        if uncertain:
            return Outcome("unknown", tuple(dict.fromkeys(uncertain)))
        if not chains:
            hooks = "output hook" if self.path == "output" else "prerouting, forward or postrouting hooks"
            return Outcome("accept", (f"no active base chain on the {hooks} for {packet.family} packets",))
        return Outcome("accept", tuple(dict.fromkeys(maybe_accept)))


_HOOK_ORDER: Final[dict[str, dict[str, int]]] = {
    "output": {"output": 0, "postrouting": 1},
    "forward": {"prerouting": 0, "forward": 1, "postrouting": 2},
}


def _run_base(bc: BaseChain, packet: Packet, ctx: Context) -> list[_Path]:
    if bc.active is False:
        return [_Path("accept", f"{bc.label}: table is dormant")]
    budget = _Budget()
    policy = f"{bc.label}: policy {bc.policy}"
    out: list[_Path] = []
    for p in _run_chain(bc, bc.chain, 0, packet, ctx, 0, budget):
        out.append(_Path(bc.policy, policy, p.assumed) if p.end == "return" else p)
    return out


def _assume(paths: Iterable[_Path], *quotes: str) -> list[_Path]:
    return [replace(p, assumed=(*quotes, *p.assumed)) for p in paths]


def _run_chain(
    bc: BaseChain, name: str, start: int, packet: Packet, ctx: Context, depth: int, budget: _Budget
) -> list[_Path]:
    """Run chain ``name`` from rule ``start``; a ``return`` path means "back to the caller"."""
    if depth > MAX_JUMP_DEPTH or not budget.spend():
        return [_Path("unknown", f"{bc.label}: chains nested beyond {MAX_JUMP_DEPTH} or too many branches")]
    rules = bc.chains.get(name)
    if rules is None:
        return [_Path("unknown", f"{bc.label}: jump to a chain that is not in the ruleset: {name}")]
    for index in range(start, len(rules)):
        rule = rules[index]

        def rest(i: int = index) -> list[_Path]:
            return _run_chain(bc, name, i + 1, packet, ctx, depth, budget)

        result = _run_steps(bc, rule, 0, packet, ctx, depth, budget, rest)
        if result is not None:
            return result
    return [_Path("return", f"{bc.label}: end of chain {name}")]


def _run_steps(
    bc: BaseChain,
    rule: Rule,
    i: int,
    packet: Packet,
    ctx: Context,
    depth: int,
    budget: _Budget,
    rest: Callable[[], list[_Path]],
) -> list[_Path] | None:
    """Run ``rule`` from step ``i``. None: the rule did not match (the caller goes on with the next rule)."""
    steps = rule.steps
    while i < len(steps):
        step = steps[i]
        if isinstance(step, (Match, Uncertain)):
            hit = step.test(packet, ctx) if isinstance(step, Match) else None
            if hit is False:
                return None
            if hit is None:
                if not budget.spend():
                    return [_Path("unknown", rule.quote)]
                matched = _run_steps(bc, rule, i + 1, packet, ctx, depth, budget, rest)
                return _assume((matched if matched is not None else rest()) + rest(), rule.quote)
        elif isinstance(step, VerdictMap):
            return _run_vmap(bc, rule, step, packet, ctx, depth, budget, rest)
        elif isinstance(step, (Jump, Terminal, Opaque)):
            return _run_verdict(bc, rule, step, packet, ctx, depth, budget, rest)
        i += 1
    return rest()  # a rule without a verdict (counter, log): on to the next rule


def _run_verdict(
    bc: BaseChain,
    rule: Rule,
    step: Jump | Terminal | Opaque,
    packet: Packet,
    ctx: Context,
    depth: int,
    budget: _Budget,
    rest: Callable[[], list[_Path]],
) -> list[_Path]:
    if isinstance(step, Opaque):
        return [_Path("unknown", rule.quote)]
    if isinstance(step, Terminal):
        if step.verdict == "continue":
            return rest()
        if step.verdict == "return":
            return [_Path("return", rule.quote)]
        return [_Path(step.verdict, rule.quote)]
    out: list[_Path] = []
    for p in _run_chain(bc, step.target, 0, packet, ctx, depth + 1, budget):
        if p.end != "return":
            out.append(p)
        elif step.goto:
            out.append(p)  # goto: the called chain's end returns from this chain too
        else:
            out += _assume(rest(), *p.assumed) if p.assumed else rest()
    return out


def _run_vmap(
    bc: BaseChain,
    rule: Rule,
    vmap: VerdictMap,
    packet: Packet,
    ctx: Context,
    depth: int,
    budget: _Budget,
    rest: Callable[[], list[_Path]],
) -> list[_Path]:
    values = [field_value(packet, k, ctx) for k in vmap.keys]
    if any(isinstance(v, _Absent) for v in values):
        return rest()
    maybe: list[Jump | Terminal | Opaque] = []
    for atoms, target in vmap.entries:
        hit = _lookup([atoms], values)
        if hit and not maybe:
            return _run_verdict(bc, rule, target, packet, ctx, depth, budget, rest)
        if hit is not False:
            maybe.append(target)
            if hit:
                break
    if not maybe:
        return rest()
    # the key depends on an unfixed value: every element it may hit (and a miss) is explored
    out = [p for target in maybe for p in _run_verdict(bc, rule, target, packet, ctx, depth, budget, rest)]
    return _assume(out + rest(), rule.quote)


def interval_atoms(values: Sequence[Atom]) -> list[Interval]:
    """The intervals among ``values`` (for boundary collection)."""
    return [v for v in values if isinstance(v, Interval)]
