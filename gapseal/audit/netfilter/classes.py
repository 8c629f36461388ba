"""From one ruleset to every destination's answer: the classes of packets the rules cannot tell apart.

Every match the model knows compares a field with intervals (addresses, ports, uids) or names (interfaces). So the
values any rule names cut each field's range into cells whose members every rule treats alike; evaluating one packet
per combination of cells answers for all packets. Destination address and port cells are reported; the sender's
output interface, uid and gid are tried for every value a rule names (plus one no rule names) and the answer is
``accept`` if any sender gets through, ``unknown`` if any might, else ``drop``. Given the host's routes
(``gapseal.audit.netfilter.routing``), the output interface is the one the route to the destination uses wherever
that is known for sure.

For packets the host forwards (``Ruleset.forward()``), the sender is another host: the input interface takes the
place of the socket (every non-loopback interface a rule names, plus one no rule names), uid and gid do not exist.

``egress_classes`` returns the destination ranges (per family and protocol) whose answer is not ``drop``, with the
ports and the words that decided; ``probe_verdicts`` answers for named destinations (the documentation addresses that
stand for "anywhere outside"). A rule that may send a packet to another destination (dnat, redirect, dup, queue...)
makes every destination ``unknown``. Which destinations may be reached is policy: Rego decides, from these facts.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from gapseal.audit.netfilter.model import (
    Family,
    Interval,
    Match,
    Name,
    Opaque,
    Outcome,
    Packet,
    Protocol,
    Rule,
    Ruleset,
    Step,
    Uncertain,
    Verdict,
    VerdictMap,
)
from gapseal.audit.netfilter.routing import Routing

PROTOCOLS: tuple[Protocol, ...] = ("tcp", "udp", "icmp")
MAX_QUOTES = 8
"""Deciding rules quoted per class (the first ones met; the facts stay small on a large ruleset)."""
MAX_SENDERS = 64
"""Sender combinations (interface x uid x gid) tried per destination; beyond it they stay unfixed (unknown)."""
_DADDR = {"ip daddr", "ip6 daddr"}
_TOP = {"ip": 2**32 - 1, "ip6": 2**128 - 1}
_SPECIAL = {
    "ip": [Interval(0xE0000000, 0xEFFFFFFF), Interval(0xFFFFFFFF, 0xFFFFFFFF)],
    "ip6": [Interval(0xFF << 120, 2**128 - 1)],
}


@dataclass(frozen=True)
class DestinationClass:
    """Destinations ``first``..``last`` of one family and protocol, the ports given, with one answer."""

    family: Family
    protocol: Protocol
    first: int
    last: int
    ports: tuple[tuple[int, int], ...]
    """Port ranges (empty for icmp)."""
    verdict: Verdict
    decided_by: tuple[str, ...]

    def networks(self) -> list[str]:
        """The range as CIDRs."""
        make = ipaddress.IPv4Address if self.family == "ip" else ipaddress.IPv6Address
        return [str(n) for n in ipaddress.summarize_address_range(make(self.first), make(self.last))]


def _steps(ruleset: Ruleset, family: Family) -> Iterable[Step]:
    seen: set[int] = set()
    for bc in ruleset.output_chains(family):
        if id(bc.chains) in seen:
            continue
        seen.add(id(bc.chains))
        for rules in bc.chains.values():
            for rule in rules:
                yield from rule.steps


def _atoms(ruleset: Ruleset, family: Family, key: str) -> list[Interval | Name]:
    out: list[Interval | Name] = []
    for step in _steps(ruleset, family):
        if isinstance(step, Match):
            elements = step.elements
        elif isinstance(step, VerdictMap):
            elements = tuple(atoms for atoms, _ in step.entries)
        else:
            continue
        for i, k in enumerate(step.keys):
            if k == key:
                out += [e[i] for e in elements]
    return out


def _cuts(intervals: Iterable[Interval], lo: int, hi: int, extra: Iterable[int] = ()) -> list[int]:
    """The first value of every cell of [lo, hi] that ``intervals`` cut it into."""
    points = {lo, *extra}
    for iv in intervals:
        points.update(p for p in (iv.lo, iv.hi + 1) if lo <= p <= hi)
    return sorted(p for p in points if lo <= p <= hi)


def _cells(starts: Sequence[int], hi: int) -> list[tuple[int, int]]:
    return [(a, (starts[i + 1] - 1) if i + 1 < len(starts) else hi) for i, a in enumerate(starts)]


_Sender = tuple[str | None, int | None, int | None, str | None]
"""Output interface, uid, gid, and (forwarded packets) input interface."""


def _interfaces(ruleset: Ruleset, family: Family, key: str, *, always: bool = False) -> list[str | None]:
    """One interface name per cell the rules' names cut them into (never ``lo``), or [None] when no rule asks."""
    names = {
        (a.text[:-1] + "gs0" if a.text.endswith("*") else a.text)
        for a in _atoms(ruleset, family, key)
        if isinstance(a, Name)
    }
    return [*sorted(n for n in names if n != "lo"), "gapseal-any0"] if names or always else [None]


def _sender_values(
    ruleset: Ruleset, family: Family
) -> tuple[list[str | None], list[int | None], list[int | None], list[str | None]]:
    """The output interfaces, uids, gids and input interfaces the rules tell apart (one value per cell)."""
    oifs = _interfaces(ruleset, family, "meta oifname")
    if ruleset.path == "forward":  # no socket; arriving on any interface but loopback
        return oifs, [None], [None], _interfaces(ruleset, family, "meta iifname", always=True)
    dims: list[list[int | None]] = []
    for key in ("meta skuid", "meta skgid"):
        ivs = [a for a in _atoms(ruleset, family, key) if isinstance(a, Interval)]
        dims.append(list(_cuts(ivs, 0, 2**32 - 1)) if ivs else [None])
    return oifs, dims[0], dims[1], [None]


def _combine(
    oifs: Sequence[str | None],
    uids: Sequence[int | None],
    gids: Sequence[int | None],
    iifs: Sequence[str | None] = (None,),
) -> list[_Sender]:
    combos = list(itertools.product(oifs, uids, gids, iifs))
    if len(combos) > MAX_SENDERS:
        return [(None, None, None, None)]
    return combos


def _address_cuts(ruleset: Ruleset, family: Family, extra: Iterable[int]) -> list[int]:
    ivs = [a for a in _atoms(ruleset, family, f"{family} daddr") if isinstance(a, Interval)]
    if _atoms(ruleset, family, "fib daddr type") or ruleset.path == "forward":
        ivs += _SPECIAL[family]
        ivs += [Interval(a, a) for f, a in ruleset.context.local_addresses if f == family]
    return _cuts(ivs, 0, _TOP[family], extra)


def _port_cells(ruleset: Ruleset, family: Family, protocol: Protocol) -> list[tuple[int, int] | None]:
    if protocol == "icmp":
        return [None]
    ivs = [a for k in (f"{protocol} dport", "th dport") for a in _atoms(ruleset, family, k) if isinstance(a, Interval)]
    return list(_cells(_cuts(ivs, 1, 65535), 65535))


_Group = tuple[Verdict, tuple[str, ...], tuple[tuple[int, int], ...]]


class _Analysis:
    """One family of one ruleset: senders and port cells (computed once), and restricted rulesets.

    A restricted ruleset keeps only the rules that can match a given destination address, so a 1000-rule chain
    costs the few rules per address cell that matter.
    """

    def __init__(self, ruleset: Ruleset, family: Family, routing: Routing | None = None) -> None:
        self.ruleset = ruleset
        self.family = family
        self.oifs, self.uids, self.gids, self.iifs = _sender_values(ruleset, family)
        self.senders = _combine(self.oifs, self.uids, self.gids, self.iifs)
        # the route decides the output interface where it is known, and only matters when a rule names one
        self.routing = routing if routing is not None and self.oifs != [None] else None
        self.ports = {p: _port_cells(ruleset, family, p) for p in PROTOCOLS}
        self._guards: dict[int, tuple[str, tuple[Interval, ...]] | None] = {}

    def _guard(self, rule: Rule) -> tuple[str, tuple[Interval, ...]] | None:
        """The destination networks a rule needs (its first plain daddr match, side-effect-free steps before it)."""
        key = id(rule)
        if key not in self._guards:
            guard = None
            for step in rule.steps:
                if isinstance(step, Match) and len(step.keys) == 1 and step.keys[0] in _DADDR and not step.negate:
                    ivs = tuple(e[0] for e in step.elements if isinstance(e[0], Interval))
                    if len(ivs) == len(step.elements):
                        guard = (step.keys[0], ivs)
                    break
                if not isinstance(step, (Match, Uncertain)):
                    break
            self._guards[key] = guard
        return self._guards[key]

    def _keeps(self, rule: Rule, address: int) -> bool:
        guard = self._guard(rule)
        if guard is None:
            return True
        key, ivs = guard
        return key == f"{self.family} daddr" and any(iv.lo <= address <= iv.hi for iv in ivs)

    def restricted(self, address: int) -> Ruleset:
        """The ruleset without the rules that cannot match ``address`` (same answers for every packet to it)."""
        return next(self.sweep([(address, address)]))[1]

    def sweep(self, cells: Sequence[tuple[int, int]]) -> Iterator[tuple[tuple[int, int], Ruleset]]:
        """For each cell (ascending, not overlapping any guard's edge): the ruleset restricted to it.

        A sweep over the guards' edges keeps the set of guarded rules that contain the cell, so each cell costs
        the rules that can match it, not the whole chain.
        """
        own = f"{self.family} daddr"
        tables: dict[int, dict[str, tuple[list[int], list[tuple[int, int, int]], tuple[Rule, ...]]]] = {}
        bases = self.ruleset.output_chains(self.family)
        for bc in bases:
            if id(bc.chains) in tables:
                continue
            per_chain = {}
            for name, rules in bc.chains.items():
                free: list[int] = []
                events: list[tuple[int, int, int]] = []  # (position, +1 add / -1 remove, rule index)
                for i, rule in enumerate(rules):
                    guard = self._guard(rule)
                    if guard is None:
                        free.append(i)
                    elif guard[0] == own:
                        for iv in guard[1]:
                            events += [(iv.lo, 1, i), (iv.hi + 1, -1, i)]
                events.sort()
                per_chain[name] = (free, events, rules)
            tables[id(bc.chains)] = per_chain
        positions = {(key, name): 0 for key, chains in tables.items() for name in chains}
        actives: dict[tuple[int, str], dict[int, int]] = {k: {} for k in positions}
        for cell in cells:
            views: dict[int, dict[str, tuple[Rule, ...]]] = {}
            for key, chains in tables.items():
                view = {}
                for name, (free, events, rules) in chains.items():
                    pos, active = positions[(key, name)], actives[(key, name)]
                    while pos < len(events) and events[pos][0] <= cell[0]:
                        _, delta, i = events[pos]
                        active[i] = active.get(i, 0) + delta
                        if not active[i]:
                            del active[i]
                        pos += 1
                    positions[(key, name)] = pos
                    keep = sorted([*free, *active]) if active else free
                    view[name] = tuple(rules[i] for i in keep)
                views[key] = view
            restricted = [replace(bc, chains=views[id(bc.chains)]) for bc in bases]
            yield cell, Ruleset(restricted, self.ruleset.context, path=self.ruleset.path)

    def route_cuts(self) -> list[int]:
        """Where the route (so the output interface) may change, when routes decide the interface."""
        return self.routing.boundaries(self.family) if self.routing is not None else []

    def senders_for(self, address: int) -> list[_Sender]:
        """The senders to try for ``address``: through the route's interfaces where known, else every one."""
        if self.routing is not None:
            devices = self.routing.output_interfaces(self.family, address)
            if devices is not None:
                return _combine(devices, self.uids, self.gids, self.iifs)
        return self.senders

    def answer(self, ruleset: Ruleset, address: int, protocol: Protocol, port: int | None) -> Outcome:
        """The answer over every sender the rules tell apart (any accept wins, then unknown)."""
        unknown: list[str] = []
        drop: Outcome | None = None
        senders = self.senders_for(address)
        forwarded = self.ruleset.path == "forward"
        for oif, uid, gid, iif in senders:
            packet = Packet(
                self.family, address, protocol, port, oifname=oif, skuid=uid, skgid=gid, forwarded=forwarded,
                iifname=iif,
            )  # fmt: skip
            outcome = ruleset.evaluate(packet)
            if outcome.verdict == "accept":
                if len(senders) > 1 or oif is not None or iif is not None:
                    sender = "a forwarded packet:" if forwarded else "a packet from"
                    return Outcome("accept", (*outcome.decided_by, f"({sender} {packet.describe()})"))
                return outcome
            if outcome.verdict == "unknown":
                unknown += outcome.decided_by
            elif drop is None:
                drop = outcome
        if unknown:
            return Outcome("unknown", tuple(dict.fromkeys(unknown)))
        assert drop is not None  # noqa: S101 - senders is never empty
        return drop

    def port_groups(self, ruleset: Ruleset, address: int, protocol: Protocol) -> list[_Group]:
        """The ports of ``protocol`` to ``address`` grouped by answer (the first deciding quotes of each)."""
        groups: dict[Verdict, list[tuple[int, int]]] = {}
        deciders: dict[Verdict, dict[str, None]] = {}
        for cell in self.ports[protocol]:
            outcome = self.answer(ruleset, address, protocol, cell[0] if cell else None)
            ranges = groups.setdefault(outcome.verdict, [])
            deciders.setdefault(outcome.verdict, {}).update(dict.fromkeys(outcome.decided_by))
            if cell is None:
                continue
            if ranges and ranges[-1][1] + 1 == cell[0]:
                ranges[-1] = (ranges[-1][0], cell[1])
            else:
                ranges.append(cell)
        return [(v, tuple(list(deciders[v])[:MAX_QUOTES]), tuple(r)) for v, r in groups.items()]


def answer(
    ruleset: Ruleset,
    family: Family,
    address: int,
    protocol: Protocol,
    port: int | None,
    routing: Routing | None = None,
) -> Outcome:
    """The answer for one destination over every sender the rules tell apart (any accept wins, then unknown)."""
    return _Analysis(ruleset, family, routing).answer(ruleset, address, protocol, port)


def rewriting_rules(ruleset: Ruleset, family: Family) -> list[str]:
    """The rules of running base chains' tables that may send a packet of ``family`` elsewhere than its destination.

    With such a rule (dnat, redirect, tproxy, dup, queue...), traffic addressed inside the enclave may reach any
    destination, so every destination's answer is at best ``unknown``.
    """
    quotes: dict[str, None] = {}
    seen: set[int] = set()
    for bc in ruleset.output_chains(family):
        if bc.active is False or id(bc.chains) in seen:
            continue
        seen.add(id(bc.chains))
        for rules in bc.chains.values():
            for rule in rules:
                if any(isinstance(step, Opaque) and step.rewrites for step in rule.steps):
                    quotes[rule.quote] = None
    return list(quotes)


def _anywhere(family: Family, protocol: Protocol, quotes: Sequence[str]) -> DestinationClass:
    ports = () if protocol == "icmp" else ((1, 65535),)
    return DestinationClass(family, protocol, 0, _TOP[family], ports, "unknown", tuple(quotes[:MAX_QUOTES]))


def egress_classes(
    ruleset: Ruleset, families: Sequence[Family] = ("ip", "ip6"), routing: Routing | None = None
) -> list[DestinationClass]:
    """Every destination class whose answer is not ``drop``.

    ``routing``: the host's routes; where they fix a destination's output interface only that interface is tried.
    Adjacent ranges with the same answer and ports merge (their deciding quotes joined, the first ``MAX_QUOTES``).
    Where a rule may send packets to another destination (``rewriting_rules``), one more class per protocol says
    every destination of the family is ``unknown``, quoting those rules (the classes then overlap).
    """
    out: list[DestinationClass] = []
    for family in families:
        analysis = _Analysis(ruleset, family, routing)
        cells = _cells(_address_cuts(ruleset, family, analysis.route_cuts()), _TOP[family])
        per_protocol: dict[Protocol, list[DestinationClass]] = {p: [] for p in PROTOCOLS}
        for (lo, hi), restricted in analysis.sweep(cells):
            for protocol in PROTOCOLS:
                merged = per_protocol[protocol]
                for verdict, by, ports in analysis.port_groups(restricted, lo, protocol):
                    if verdict == "drop":
                        continue
                    prev = next((i for i in range(len(merged) - 1, -1, -1) if merged[i].last + 1 == lo and
                                 (merged[i].verdict, merged[i].ports) == (verdict, ports)), None)  # fmt: skip
                    if prev is not None:
                        m = merged[prev]
                        quotes = tuple(dict.fromkeys((*m.decided_by, *by)))[:MAX_QUOTES]
                        merged[prev] = replace(m, last=hi, decided_by=quotes)
                    else:
                        merged.append(DestinationClass(family, protocol, lo, hi, ports, verdict, by))
        rewriting = rewriting_rules(ruleset, family)
        for protocol in PROTOCOLS:
            out += per_protocol[protocol]
            if rewriting:
                out.append(_anywhere(family, protocol, rewriting))
    return out


def probe_verdicts(
    ruleset: Ruleset, addresses: Sequence[str], routing: Routing | None = None
) -> list[DestinationClass]:
    """The answer for each address (tcp, udp, icmp; ports grouped by answer), drops included."""
    out: list[DestinationClass] = []
    analyses: dict[Family, _Analysis] = {}
    for text in addresses:
        ip = ipaddress.ip_address(text)
        family: Family = "ip" if ip.version == 4 else "ip6"
        analysis = analyses.setdefault(family, _Analysis(ruleset, family, routing))
        restricted = analysis.restricted(int(ip))
        rewriting = tuple(rewriting_rules(ruleset, family)[:MAX_QUOTES])
        for protocol in PROTOCOLS:
            for verdict, by, ports in analysis.port_groups(restricted, int(ip), protocol):
                if verdict == "drop" and rewriting:  # a packet addressed elsewhere may be sent here
                    verdict, by = "unknown", rewriting
                out.append(DestinationClass(family, protocol, int(ip), int(ip), ports, verdict, by))
    return out
