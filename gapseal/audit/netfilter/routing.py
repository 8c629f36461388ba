"""Which interface a NEW packet to an address leaves through, from the host's routing table (``ip -j``).

A rule that names an output interface (``oifname "enc0" accept``) matters only for packets routed through it. With
the routing table, the evaluator tries the interfaces the route to each destination uses instead of every interface
a rule names; it falls back to trying them all (the cautious answer) wherever the route cannot be known for sure:

- policy routing other than the kernel's default rules (``local``, ``main``, ``default`` lookups from all): marks,
  uids, sources or VRFs could pick another table;
- a destination the ``local`` table holds (the host's own addresses, broadcast, multicast): it does not leave;
- a route that is not a plain unicast one (unreachable, blackhole, prohibit, throw...), or no route at all;
- output that is not what ``ip -j`` prints.

Equal-prefix routes (several metrics, multipath next hops) give the union of their interfaces.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gapseal.audit.netfilter.model import Family

_DEFAULT_RULES = {(0, "local"), (32766, "main"), (32767, "default")}
_RULE_KEYS = {"priority", "src", "table", "flags"}


@dataclass(frozen=True)
class Route:
    """A route of one table: destinations ``first``..``last`` and the interfaces it sends through."""

    first: int
    last: int
    prefixlen: int
    devices: tuple[str, ...]
    """Empty for a route that is not plain unicast through an interface (the answer is then unknown)."""


@dataclass(frozen=True)
class Routing:
    """The tables a locally generated packet's route comes from, per family (``local`` first, then the others)."""

    local: Mapping[Family, tuple[Route, ...]]
    tables: Mapping[Family, tuple[tuple[Route, ...], ...]]
    """Per family, the tables after ``local`` in lookup order (``main``, ``default``)."""

    def boundaries(self, family: Family) -> list[int]:
        """Every route's first address and the one after its last (where the answer may change)."""
        routes = [*self.local.get(family, ()), *(r for t in self.tables.get(family, ()) for r in t)]
        return sorted({p for r in routes for p in (r.first, r.last + 1)})

    def output_interfaces(self, family: Family, address: int) -> tuple[str, ...] | None:
        """The interfaces a packet to ``address`` leaves through; None when that cannot be known for sure."""
        if family not in self.tables or any(r.first <= address <= r.last for r in self.local.get(family, ())):
            return None
        for table in self.tables[family]:
            covering = [r for r in table if r.first <= address <= r.last]
            if not covering:
                continue
            longest = max(r.prefixlen for r in covering)
            best = [r for r in covering if r.prefixlen == longest]
            if any(not r.devices for r in best):
                return None
            return tuple(sorted({d for r in best for d in r.devices}))
        return None


def _network(dst: Any, family: Family) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if dst == "default":
        return ipaddress.ip_network("0.0.0.0/0" if family == "ip" else "::/0")
    if not isinstance(dst, str):
        raise ValueError(f"route destination {dst!r}")
    net = ipaddress.ip_network(dst, strict=False)
    if (net.version == 4) != (family == "ip"):
        raise ValueError(f"route destination {dst} of the other family")
    return net


def _devices(route: Mapping[str, Any]) -> tuple[str, ...]:
    if route.get("type", "unicast") != "unicast":
        return ()
    hops = route.get("nexthops")
    if hops is None:
        hops = [route]
    if not isinstance(hops, list) or not hops:
        return ()
    devices = [h.get("dev") if isinstance(h, dict) else None for h in hops]
    if not all(isinstance(d, str) and d for d in devices):
        return ()  # a hop without an interface (e.g. a nexthop object id): not known for sure
    return tuple(sorted(set(devices)))  # type: ignore[arg-type]


def _priority(rule: Any) -> int:
    priority = rule.get("priority") if isinstance(rule, dict) else None
    return priority if isinstance(priority, int) and not isinstance(priority, bool) else -1


def _is_default_rule(rule: Any) -> bool:
    """One of the kernel's default rules (``from all lookup local|main|default`` at its usual priority)."""
    if not isinstance(rule, dict) or set(rule) - _RULE_KEYS or rule.get("src") != "all" or rule.get("flags"):
        return False
    priority, table = rule.get("priority"), rule.get("table")
    if isinstance(priority, bool) or not isinstance(priority, int) or not isinstance(table, str):
        return False
    return (priority, table) in _DEFAULT_RULES


def routing_from_ip(routes: Mapping[Family, Any], rules: Mapping[Family, Any]) -> Routing:
    """From parsed ``ip -4/-6 -j route show table all`` and ``ip -4/-6 -j rule show`` output, per family.

    A family whose rules are not the kernel's defaults is left out (every interface is tried for it). Raises
    ``ValueError`` for output that is not what ``ip -j`` prints.
    """
    local: dict[Family, tuple[Route, ...]] = {}
    tables: dict[Family, tuple[tuple[Route, ...], ...]] = {}
    for family in ("ip", "ip6"):
        fam_routes, fam_rules = routes.get(family), rules.get(family)
        if fam_routes is None or fam_rules is None:
            continue
        if not isinstance(fam_routes, list) or not isinstance(fam_rules, list):
            raise ValueError("ip -j route/rule did not print a JSON array")
        ordered = sorted(fam_rules, key=_priority)
        if not ordered or not all(_is_default_rule(r) for r in ordered) or ordered[0]["table"] != "local":
            continue
        order = [str(r["table"]) for r in ordered]
        by_table: dict[str, list[Route]] = {}
        for r in fam_routes:
            if not isinstance(r, dict):
                raise ValueError(f"ip -j route: {r!r} is not a route")
            try:
                net = _network(r.get("dst"), family)
            except ValueError as e:
                raise ValueError(f"ip -j route: {e}") from e
            route = Route(int(net.network_address), int(net.broadcast_address), net.prefixlen, _devices(r))
            by_table.setdefault(str(r.get("table", "main")), []).append(route)
        local[family] = tuple(by_table.get("local", ()))
        tables[family] = tuple(tuple(by_table.get(name, ())) for name in order[1:])
    return Routing(local, tables)
