"""Routes and routing rules, IPv4 and IPv6, from ``ip -j``; the forwarding sysctls from ``/proc/sys/net``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gapseal.audit.collectors._common import RawStore, Trace, try_network
from gapseal.audit.facts import Family, ForwardingSetting, IpForwarding, Route, RoutesFacts, RoutingRule, Source

PROC_NET = Path("/proc/sys/net")

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


_SYSCTL_BYTES = 64
"""A sysctl file is read in one small read: procfs refuses a read as large as ``Trace.read`` asks (ENOMEM)."""


def _setting(trace: Trace, family: Family, path: Path, interface: str) -> ForwardingSetting:
    value: int | None = None
    try:
        with path.open("rb") as f:
            data: bytes | None = f.read(_SYSCTL_BYTES)
    except OSError as e:
        data = None
        trace.sources.append(Source(kind="procfs", path=str(path), error=e.strerror or str(e)))
    else:
        assert data is not None  # noqa: S101 - just read
        digest = trace.store.put(data)
        trace.sources.append(Source(kind="procfs", path=str(path), sha256=digest, size=len(data), stored=True))
    if data is not None:
        try:
            value = int(data.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            value = None
    return ForwardingSetting(family=family, interface=interface, path=str(path), value=value)


def collect_ip_forwarding(trace: Trace, proc_net: Path = PROC_NET) -> IpForwarding:
    """Read the forwarding sysctls of the collector's network namespace (see ``IpForwarding``).

    A setting that decides and cannot be read leaves its family ``null`` (unknown), never "off".
    """
    settings: list[ForwardingSetting] = []
    problems: list[str] = []
    known: dict[Family, bool | None] = {}
    interfaces: dict[str, list[str]] = {}
    fam: Family
    for fam, version in (("inet", "ipv4"), ("inet6", "ipv6")):
        conf = proc_net / version / "conf"
        if fam == "inet6" and not (proc_net / version).exists() and (proc_net / "ipv4").is_dir():
            known[fam] = False  # a kernel without IPv6 (ipv6.disable=1) forwards no IPv6 packet
            interfaces[fam] = []
            continue
        entries = trace.listdir(conf)
        names = [e.name for e in entries]
        if not names:
            problems.append(f"{conf}: not readable or empty")
            known[fam] = None
            continue
        if "all" not in names:
            names.append("all")  # read (and fail) so the gap is recorded
        per_if = {n: _setting(trace, fam, conf / n / "forwarding", n) for n in sorted(names)}
        settings += per_if.values()
        unread = [s for s in per_if.values() if s.value is None]
        problems += [f"{s.path}: not readable" for s in unread]
        if fam == "inet":  # the input interface's own setting decides
            deciding = [s for n, s in per_if.items() if n not in {"all", "default", "lo"}]
        else:  # net.ipv6.conf.all.forwarding decides for every interface
            deciding = [per_if["all"]]
        devices = [n for n in per_if if n not in {"all", "default", "lo"}]
        if fam == "inet":
            interfaces[fam] = [n for n in devices if (per_if[n].value or 0) > 0]
        else:
            interfaces[fam] = devices if (per_if["all"].value or 0) > 0 else []
        if any((s.value or 0) > 0 for s in deciding):
            known[fam] = True
        elif any(s.value is None for s in deciding):
            known[fam] = None
        else:
            known[fam] = False
    return IpForwarding(
        status="ok" if all(v is not None for v in known.values()) else "unknown",
        reason="; ".join(problems) or None,
        inet=known["inet"],
        inet6=known["inet6"],
        interfaces=interfaces,
        settings=settings,
    )


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
        ip_forwarding=collect_ip_forwarding(trace),
    )
