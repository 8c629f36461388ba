"""Routes and routing rules, IPv4 and IPv6, from ``ip -j``."""

from __future__ import annotations

import json
from typing import Any

from gapseal.audit.collectors._common import RawStore, Trace, try_network
from gapseal.audit.facts import Family, Route, RoutesFacts, RoutingRule

_NO_FORWARD_TYPES = {
    "local",
    "broadcast",
    "anycast",
    "multicast",
    "unreachable",
    "blackhole",
    "prohibit",
    "throw",
    "nat",
}


def parse_routes(data: Any, family: Family) -> list[Route]:
    """Turn ``ip -j route show table all`` output into ``Route`` facts (unparseable destinations skipped)."""
    routes: list[Route] = []
    if not isinstance(data, list):
        raise ValueError("ip -j route did not print a JSON array")
    for r in data:
        if not isinstance(r, dict):
            continue
        dst_text = str(r.get("dst", ""))
        dst = try_network(dst_text, family=family)
        if dst is None or dst.family != family:
            continue
        rtype = str(r.get("type", "unicast"))
        dev = r.get("dev")
        metric = r.get("metric")
        forwards = rtype == "unicast" and dev != "lo"
        routes.append(
            Route(
                family=family,
                table=str(r.get("table", "main")),
                type=rtype,
                dst=dst,
                is_default=dst.prefixlen == 0,
                gateway=r.get("gateway"),
                dev=dev,
                protocol=r.get("protocol"),
                scope=r.get("scope"),
                prefsrc=r.get("prefsrc"),
                metric=metric if isinstance(metric, int) else None,
                forwards=forwards,
            )
        )
    return routes


def parse_rules(data: Any, family: Family) -> list[RoutingRule]:
    """Turn ``ip -j rule`` output into ``RoutingRule`` facts."""
    if not isinstance(data, list):
        raise ValueError("ip -j rule did not print a JSON array")
    rules: list[RoutingRule] = []
    for r in data:
        if not isinstance(r, dict):
            continue
        action = str(r.get("action", "lookup" if "table" in r else "nop"))
        selector = {
            k: str(v)
            for k, v in sorted(r.items())
            if k not in {"priority", "table", "action", "flags"} and not isinstance(v, (list, dict))
        }
        rules.append(
            RoutingRule(
                family=family,
                priority=int(r.get("priority", 0)),
                table=str(r["table"]) if "table" in r else None,
                action=action,
                selector=selector,
            )
        )
    return rules


def collect_routes(store: RawStore) -> RoutesFacts:
    """Collect routes and rules of the collector's network namespace (both families)."""
    trace = Trace(store)
    routes: list[Route] = []
    rules: list[RoutingRule] = []
    problems: list[str] = []
    fam: Family
    for fam, flag in (("inet", "-4"), ("inet6", "-6")):
        out = trace.run(["ip", flag, "-j", "route", "show", "table", "all"])
        if not out.ok:
            problems.append(f"ip {flag} route: {out.error}")
        else:
            try:
                routes += parse_routes(json.loads(out.stdout or b"[]"), fam)
            except ValueError as e:
                problems.append(f"ip {flag} route: unparseable output: {e}")
        out = trace.run(["ip", flag, "-j", "rule", "show"])
        if not out.ok:
            problems.append(f"ip {flag} rule: {out.error}")
        else:
            try:
                rules += parse_rules(json.loads(out.stdout or b"[]"), fam)
            except ValueError as e:
                problems.append(f"ip {flag} rule: unparseable output: {e}")
    forwarding = [r for r in routes if r.forwards]
    return RoutesFacts(
        status="unknown" if problems else "ok",
        reason="; ".join(problems) or None,
        sources=trace.sources,
        routes=routes,
        rules=rules,
        default_routes=[r for r in forwarding if r.is_default],
        forwarding_routes=forwarding,
    )
