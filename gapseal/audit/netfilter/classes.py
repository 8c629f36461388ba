"""From one ruleset to every destination's answer: the classes of packets the rules cannot tell apart.

Every match the model knows compares a field with intervals (addresses, ports, uids) or names (interfaces). So the
values any rule names cut each field's range into cells whose members every rule treats alike; evaluating one packet
per combination of cells answers for all packets. Destination address and port cells are reported; the sender's
output interface, uid and gid are tried for every value a rule names (plus one no rule names) and the answer is
``accept`` if any sender gets through, ``unknown`` if any might, else ``drop``.

``egress_classes`` returns the destination ranges (per family and protocol) whose answer is not ``drop``, with the
ports and the words that decided; ``probe_verdicts`` answers for named destinations (the documentation addresses that
stand for "anywhere outside"). Which destinations may be reached is policy: Rego decides, from these facts.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gapseal.audit.netfilter.model import (
    Family,
    Interval,
    Match,
    Name,
    Outcome,
    Packet,
    Protocol,
    Ruleset,
    Step,
    Verdict,
    VerdictMap,
)

PROTOCOLS: tuple[Protocol, ...] = ("tcp", "udp", "icmp")
MAX_QUOTES = 8
"""Deciding rules quoted per class (the first ones met; the facts stay small on a large ruleset)."""
MAX_SENDERS = 64
"""Sender combinations (interface x uid x gid) tried per destination; beyond it they stay unfixed (unknown)."""
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


def _senders(ruleset: Ruleset, family: Family) -> list[tuple[str | None, int | None, int | None]]:
    names = {
        (a.text[:-1] + "gs0" if a.text.endswith("*") else a.text)
        for a in _atoms(ruleset, family, "meta oifname")
        if isinstance(a, Name)
    }
    oifs: list[str | None] = [*sorted(n for n in names if n != "lo"), "gapseal-any0"] if names else [None]
    dims: list[list[int | None]] = []
    for key in ("meta skuid", "meta skgid"):
        ivs = [a for a in _atoms(ruleset, family, key) if isinstance(a, Interval)]
        dims.append(list(_cuts(ivs, 0, 2**32 - 1)) if ivs else [None])
    combos = list(itertools.product(oifs, dims[0], dims[1]))
    if len(combos) > MAX_SENDERS:
        return [(None, None, None)]
    return combos


def _address_cuts(ruleset: Ruleset, family: Family, extra: Iterable[int]) -> list[int]:
    ivs = [a for a in _atoms(ruleset, family, f"{family} daddr") if isinstance(a, Interval)]
    if _atoms(ruleset, family, "fib daddr type"):
        ivs += _SPECIAL[family]
        ivs += [Interval(a, a) for f, a in ruleset.context.local_addresses if f == family]
    return _cuts(ivs, 0, _TOP[family], extra)


def _port_cells(ruleset: Ruleset, family: Family, protocol: Protocol) -> list[tuple[int, int] | None]:
    if protocol == "icmp":
        return [None]
    ivs = [a for k in (f"{protocol} dport", "th dport") for a in _atoms(ruleset, family, k) if isinstance(a, Interval)]
    return list(_cells(_cuts(ivs, 1, 65535), 65535))


def answer(ruleset: Ruleset, family: Family, address: int, protocol: Protocol, port: int | None) -> Outcome:
    """The answer for one destination over every sender the rules tell apart (any accept wins, then unknown)."""
    unknown: list[str] = []
    drop: Outcome | None = None
    senders = _senders(ruleset, family)
    for oif, uid, gid in senders:
        packet = Packet(family, address, protocol, port, oifname=oif, skuid=uid, skgid=gid)
        outcome = ruleset.evaluate(packet)
        if outcome.verdict == "accept":
            if len(senders) > 1:
                return Outcome("accept", (*outcome.decided_by, f"(a packet from {packet.describe()})"))
            return outcome
        if outcome.verdict == "unknown":
            unknown += outcome.decided_by
        elif drop is None:
            drop = outcome
    if unknown:
        return Outcome("unknown", tuple(dict.fromkeys(unknown)))
    assert drop is not None  # noqa: S101 - senders is never empty
    return drop


def _port_groups(
    ruleset: Ruleset, family: Family, address: int, protocol: Protocol
) -> list[tuple[Verdict, tuple[str, ...], tuple[tuple[int, int], ...]]]:
    groups: dict[Verdict, list[tuple[int, int]]] = {}
    deciders: dict[Verdict, dict[str, None]] = {}
    for cell in _port_cells(ruleset, family, protocol):
        outcome = answer(ruleset, family, address, protocol, cell[0] if cell else None)
        ranges = groups.setdefault(outcome.verdict, [])
        deciders.setdefault(outcome.verdict, {}).update(dict.fromkeys(outcome.decided_by))
        if cell is None:
            continue
        if ranges and ranges[-1][1] + 1 == cell[0]:
            ranges[-1] = (ranges[-1][0], cell[1])
        else:
            ranges.append(cell)
    return [(v, tuple(list(deciders[v])[:MAX_QUOTES]), tuple(r)) for v, r in groups.items()]


def egress_classes(ruleset: Ruleset, families: Sequence[Family] = ("ip", "ip6")) -> list[DestinationClass]:
    """Every destination class whose answer is not ``drop``, adjacent ranges with the same answer merged."""
    out: list[DestinationClass] = []
    for family in families:
        cells = _cells(_address_cuts(ruleset, family, ()), _TOP[family])
        for protocol in PROTOCOLS:
            merged: list[DestinationClass] = []
            for lo, hi in cells:
                for verdict, by, ports in _port_groups(ruleset, family, lo, protocol):
                    if verdict == "drop":
                        continue
                    prev = next((m for m in reversed(merged) if m.last + 1 == lo and
                                 (m.verdict, m.decided_by, m.ports) == (verdict, by, ports)), None)  # fmt: skip
                    if prev is not None:
                        merged[merged.index(prev)] = DestinationClass(family, protocol, prev.first, hi, ports,
                                                                      verdict, by)  # fmt: skip
                    else:
                        merged.append(DestinationClass(family, protocol, lo, hi, ports, verdict, by))
            out += merged
    return out


def probe_verdicts(ruleset: Ruleset, addresses: Sequence[str]) -> list[DestinationClass]:
    """The answer for each address (tcp, udp, icmp; ports grouped by answer), drops included."""
    out: list[DestinationClass] = []
    for text in addresses:
        ip = ipaddress.ip_address(text)
        family: Family = "ip" if ip.version == 4 else "ip6"
        for protocol in PROTOCOLS:
            for verdict, by, ports in _port_groups(ruleset, family, int(ip), protocol):
                out.append(DestinationClass(family, protocol, int(ip), int(ip), ports, verdict, by))
    return out
