"""Packet filtering: the nftables ruleset (``nft -j list ruleset``) and iptables (``iptables-save``) where present.

``firewall.egress`` holds what the kernel would do with NEW packets from this host, from every source netfilter runs:
nftables (JSON for the rules, the ``nft -a`` listing for quotes and table flags), the iptables-nft rules behind nft's
``xt`` expressions, and iptables-legacy tables (``gapseal.audit.netfilter`` evaluates them). ``firewall.forward``
holds the same for NEW packets the host would forward (whether it forwards at all is ``routes.ip_forwarding``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from typing import Any

from gapseal.audit import netfilter
from gapseal.audit.collectors._common import CommandOutput, RawStore, Trace, network, try_network
from gapseal.audit.facts import (
    EgressAnswer,
    Family,
    FirewallEgress,
    FirewallFacts,
    IptablesChain,
    IptablesFacts,
    Network,
    NftablesFacts,
    NftChain,
    NftRule,
)
from gapseal.audit.netfilter import nft as nft_model
from gapseal.audit.probes import DEFAULT_ROUTE_TARGETS

_VERDICTS = ("accept", "drop", "reject", "jump", "goto", "return", "continue", "queue")
_MAX_PORTS = 64


def _values(right: Any, sets: dict[str, list[Any]]) -> tuple[list[Any], bool]:
    """Flatten the right-hand side of a match to plain values; the flag is False when something was not understood."""
    if isinstance(right, str) and right.startswith("@"):
        if right[1:] in sets:
            return _values({"set": sets[right[1:]]}, sets)
        return [], False
    if isinstance(right, (str, int)):
        return [right], True
    if isinstance(right, dict):
        if "set" in right:
            out: list[Any] = []
            ok = True
            for item in right["set"]:
                vals, good = _values(item, sets)
                out += vals
                ok = ok and good
            return out, ok
        if "prefix" in right:
            p = right["prefix"]
            return [f"{p.get('addr')}/{p.get('len')}"], True
        if "range" in right and isinstance(right["range"], list) and len(right["range"]) == 2:
            lo, hi = right["range"]
            if isinstance(lo, int) and isinstance(hi, int):
                return [range(lo, hi + 1)], True
            return [f"{lo}-{hi}"], True
        if "elem" in right:
            return _values(right["elem"].get("val"), sets)
    if isinstance(right, list):
        return _values({"set": right}, sets)
    return [], False


def _networks(values: list[Any], family: Family | None) -> tuple[list[Network], bool]:
    nets: list[Network] = []
    ok = True
    for v in values:
        if isinstance(v, str) and "-" in v and "/" not in v:
            ok = False  # an address range: not reduced to networks here
            continue
        net = try_network(str(v), family=family)
        if net is None:
            ok = False
        else:
            nets.append(net)
    return nets, ok


def parse_rule(rule: dict[str, Any], sets: dict[str, list[Any]]) -> NftRule:
    """Extract verdict, addresses, ports and interfaces from one ``{"rule": ...}`` object of ``nft -j``."""
    verdict: str | None = None
    target: str | None = None
    daddr: list[Network] = []
    saddr: list[Network] = []
    dports: list[int] = []
    oif: list[str] = []
    iif: list[str] = []
    ct: list[str] = []
    icmpv6: list[str] = []
    negated = False
    unparsed = False
    for expr in rule.get("expr", []):
        if not isinstance(expr, dict):
            unparsed = True
            continue
        for v in _VERDICTS:
            if v in expr:
                verdict = v
                if v in {"jump", "goto"} and isinstance(expr[v], dict):
                    target = expr[v].get("target")
        if "match" not in expr:
            if not any(v in expr for v in _VERDICTS) and not any(k in expr for k in ("counter", "log", "limit")):
                unparsed = True
            continue
        m = expr["match"]
        op = m.get("op", "==")
        left = m.get("left", {})
        if op == "!=":
            negated = True
        elif op not in {"==", "in"}:
            unparsed = True
        values, ok = _values(m.get("right"), sets)
        unparsed = unparsed or not ok
        if isinstance(left, dict) and "payload" in left:
            proto = left["payload"].get("protocol")
            fld = left["payload"].get("field")
            fam: Family | None = "inet" if proto == "ip" else "inet6" if proto == "ip6" else None
            if fld in {"daddr", "saddr"} and fam is not None:
                nets, ok = _networks(values, fam)
                unparsed = unparsed or not ok
                if op != "!=":
                    (daddr if fld == "daddr" else saddr).extend(nets)
            elif proto == "icmpv6" and fld == "type":
                if op == "!=":
                    unparsed = True  # "every type but ..." cannot be bounded to the link
                icmpv6.extend(str(v) for v in values)
            elif fld == "dport":
                for v in values:
                    if isinstance(v, range):
                        if len(v) > _MAX_PORTS:
                            unparsed = True
                        dports.extend(list(v)[:_MAX_PORTS])
                    elif isinstance(v, int):
                        dports.append(v)
                    else:
                        unparsed = True
            elif fld not in {"sport"}:
                unparsed = True
        elif isinstance(left, dict) and "meta" in left:
            key = left["meta"].get("key")
            if key in {"oifname", "oif"}:
                oif.extend(str(v) for v in values)
            elif key in {"iifname", "iif"}:
                iif.extend(str(v) for v in values)
            elif key not in {"l4proto", "nfproto", "protocol"}:
                unparsed = True
        elif isinstance(left, dict) and "ct" in left and left["ct"].get("key") == "state":
            ct.extend(str(v) for v in values)
        else:
            unparsed = True
    handle = rule.get("handle")
    return NftRule(
        family=str(rule.get("family", "")),
        table=str(rule.get("table", "")),
        chain=str(rule.get("chain", "")),
        handle=handle if isinstance(handle, int) else None,
        verdict=verdict,
        target=target,
        daddr=daddr,
        saddr=saddr,
        dports=sorted(set(dports)),
        oifname=oif,
        iifname=iif,
        ct_state=ct,
        icmpv6_types=icmpv6,
        negated=negated,
        unparsed=unparsed,
        comment=rule.get("comment"),
    )


def parse_nft_ruleset(document: Any) -> tuple[list[NftChain], list[NftRule], dict[str, str], list[dict[str, Any]]]:
    """Parse ``nft -j list ruleset`` output into chains, rules, the per-family output policy and the raw array."""
    if not isinstance(document, dict) or not isinstance(document.get("nftables"), list):
        raise ValueError('nft -j output has no "nftables" array')
    items: list[dict[str, Any]] = [i for i in document["nftables"] if isinstance(i, dict)]
    sets: dict[tuple[str, str], dict[str, list[Any]]] = {}
    for i in items:
        if "set" in i:
            s = i["set"]
            elem = s.get("elem", [])
            sets.setdefault((s.get("family", ""), s.get("table", "")), {})[s.get("name", "")] = (
                elem if isinstance(elem, list) else [elem]
            )
    counts: dict[tuple[str, str, str], int] = {}
    rules: list[NftRule] = []
    for i in items:
        if "rule" in i:
            r = i["rule"]
            key = (r.get("family", ""), r.get("table", ""), r.get("chain", ""))
            counts[key] = counts.get(key, 0) + 1
            rules.append(parse_rule(r, sets.get((key[0], key[1]), {})))
    chains: list[NftChain] = []
    output_policy: dict[str, str] = {}
    for i in items:
        if "chain" in i:
            c = i["chain"]
            key = (c.get("family", ""), c.get("table", ""), c.get("name", ""))
            prio = c.get("prio")
            chain = NftChain(
                family=key[0],
                table=key[1],
                name=key[2],
                type=c.get("type"),
                hook=c.get("hook"),
                priority=prio if isinstance(prio, int) else None,
                policy=c.get("policy"),
                rule_count=counts.get(key, 0),
            )
            chains.append(chain)
            if chain.hook == "output" and chain.type == "filter" and chain.policy:
                prev = output_policy.get(chain.family)
                output_policy[chain.family] = "drop" if "drop" in (prev, chain.policy) else chain.policy
    return chains, rules, output_policy, items


def parse_iptables_save(text: str, family: Family) -> list[IptablesChain]:
    """Parse ``iptables-save`` / ``ip6tables-save`` output into chains with their policies and rules."""
    chains: dict[tuple[str, str], IptablesChain] = {}
    order: list[tuple[str, str]] = []
    rules: dict[tuple[str, str], list[str]] = {}
    table = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            parts = line[1:].split()
            name = parts[0]
            policy = parts[1] if len(parts) > 1 and parts[1] != "-" else None
            key = (table, name)
            chains[key] = IptablesChain(family=family, table=table, name=name, policy=policy)
            order.append(key)
            rules[key] = []
        elif line.startswith("-A "):
            name = line.split()[1]
            key = (table, name)
            if key not in chains:
                chains[key] = IptablesChain(family=family, table=table, name=name)
                order.append(key)
                rules[key] = []
            rules[key].append(line)
    return [chains[k].model_copy(update={"rules": rules[k]}) for k in order]


def collect_firewall(store: RawStore) -> FirewallFacts:
    """Collect nftables and iptables state of the collector's network namespace."""
    trace = Trace(store)
    nft_json: Any = None
    nft_notes: list[str] = []
    if shutil.which("nft") is None:
        trace.run(["nft", "-j", "list", "ruleset"])  # records "command not found" as the source's error
        nft = NftablesFacts(status="unknown", reason="nft not installed", present=False)
    else:
        try:
            nft_json, nft_notes = read_nft_document(trace.run)
        except ValueError as e:
            nft = NftablesFacts(status="unknown", reason=str(e), present=True)
        else:
            try:
                chains, rules, policy, items = parse_nft_ruleset(nft_json)
                nft = NftablesFacts(
                    status="ok", present=True, chains=chains, rules=rules, output_policy=policy, ruleset=items
                )
            except ValueError as e:
                nft = NftablesFacts(status="unknown", reason=f"nft: unparseable output: {e}", present=True)
    ipt: IptablesFacts
    if shutil.which("iptables-save") is None:
        ipt = IptablesFacts(status="ok", present=False, reason="iptables-save not installed")
    else:
        chains_ipt: list[IptablesChain] = []
        problems: list[str] = []
        fam: Family
        for fam, tool in (("inet", "iptables-save"), ("inet6", "ip6tables-save")):
            if shutil.which(tool) is None:
                continue
            out = trace.run([tool])
            if out.ok:
                chains_ipt += parse_iptables_save(out.text, fam)
            else:
                problems.append(f"{tool}: {out.error}")
        ipt = IptablesFacts(
            status="unknown" if problems else "ok", reason="; ".join(problems) or None, present=True, chains=chains_ipt
        )
    status = "unknown" if nft.status == "unknown" and (ipt.status == "unknown" or not ipt.present) else "ok"
    reason = None
    if status == "unknown":
        reason = "no firewall state could be read: " + "; ".join(x for x in (nft.reason, ipt.reason) if x)
    egress, forward = collect_egress_and_forward(trace, nft_json, nft.status == "ok" or not nft.present, nft_notes)
    return FirewallFacts(
        status=status,
        reason=reason,
        sources=trace.sources,
        nftables=nft,
        iptables=ipt,
        egress=egress,
        forward=forward,
    )


# ------------------------------------------------------------------------------------------------ egress


def _family(fam: netfilter.Family) -> Family:
    return "inet" if fam == "ip" else "inet6"


def _ports(ranges: tuple[tuple[int, int], ...]) -> list[str]:
    return [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges]


def egress_answers(classes: list[netfilter.DestinationClass]) -> list[EgressAnswer]:
    """The evaluator's classes as facts."""
    return [
        EgressAnswer(
            family=_family(c.family),
            protocol=c.protocol,
            destinations=[network(n) for n in c.networks()],
            ports=_ports(c.ports),
            verdict=c.verdict,
            # regopy (rego-cpp) emits a string holding '"' unescaped and breaks its own output: quote with "'"
            decided_by=[q.replace('"', "'") for q in c.decided_by],
        )
        for c in classes
    ]


def _save_output(trace: Trace, tool: str, notes: list[str]) -> str | None:
    if shutil.which(tool) is None:
        return None
    out = trace.run([tool])
    if not out.ok:
        notes.append(f"{tool}: {out.error}")
        return None
    return out.text


def _local_addresses(trace: Trace, notes: list[str]) -> list[str]:
    out = trace.run(["ip", "-j", "addr", "show"])
    try:
        links = json.loads(out.stdout or b"[]") if out.ok else []
    except ValueError:
        links = []
    if not out.ok or not isinstance(links, list):
        notes.append(f"ip addr: {out.error or 'unparseable output'} (fib/addrtype 'local' matches cover loopback only)")
    addresses = ["127.0.0.1", "::1"]
    for link in links if isinstance(links, list) else []:
        for a in link.get("addr_info", []) if isinstance(link, dict) else []:
            if isinstance(a, dict) and isinstance(a.get("local"), str):
                addresses.append(a["local"].split("%")[0])
    return addresses


def _routing(trace: Trace, notes: list[str]) -> netfilter.Routing | None:
    """The routes and rules of this namespace, so a rule naming an interface is tried only where routes lead.

    None (with a note) when they cannot be read: then every interface a rule names is tried, the cautious answer.
    """
    routes: dict[netfilter.Family, Any] = {}
    rules: dict[netfilter.Family, Any] = {}
    fam: netfilter.Family
    for fam, flag in (("ip", "-4"), ("ip6", "-6")):
        for store, argv in ((routes, ["route", "show", "table", "all"]), (rules, ["rule", "show"])):
            out = trace.run(["ip", flag, "-j", *argv])
            try:
                store[fam] = json.loads(out.stdout or b"[]") if out.ok else None
            except ValueError:
                store[fam] = None
            if store[fam] is None:
                notes.append(f"ip {flag} {argv[0]}: {out.error or 'unparseable output'} (every interface is tried)")
    try:
        routing = netfilter.routing_from_ip(
            {f: v for f, v in routes.items() if v is not None and rules[f] is not None},
            {f: v for f, v in rules.items() if v is not None and routes[f] is not None},
        )
    except ValueError as e:
        notes.append(f"routes: {e} (every interface a rule names is tried)")
        return None
    for f in ("ip", "ip6"):
        if f in routes and f not in routing.tables and routes[f] is not None and rules[f] is not None:
            notes.append(f"{f} policy routing beyond the default rules: every interface a rule names is tried")
    return routing


def read_nft_document(run: Callable[[list[str]], CommandOutput]) -> tuple[Any, list[str]]:
    """``nft -j list ruleset``, parsed; raises ``ValueError`` naming the problem.

    nft 1.0.6 prints broken JSON for a table with flags (``dormant``): then the tables are read one by one
    (``nft -j list table``), a dormant table (known from the ``nft -a`` listing) left out with a note: it runs nothing.
    """
    out = run(["nft", "-j", "list", "ruleset"])
    if not out.ok:
        raise ValueError(f"nft: {out.error}")
    try:
        return json.loads(out.stdout), []
    except ValueError as e:
        first_error = e
    listing = run(["nft", "-a", "list", "ruleset"])
    if not listing.ok:
        raise ValueError(f"nft: unparseable output: {first_error}; nft -a list ruleset: {listing.error}")
    _, dormant = nft_model.parse_listing(listing.text)
    items: list[Any] = []
    notes: list[str] = []
    for (fam, name), is_dormant in dormant.items():
        if is_dormant:
            notes.append(f"nftables {fam} {name}: table is dormant (left out: it runs nothing; nft -j cannot print it)")
            continue
        table = run(["nft", "-j", "list", "table", fam, name])
        try:
            doc = json.loads(table.stdout) if table.ok else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("nftables"), list):
            raise ValueError(f"nft: unparseable output for table {fam} {name}: {table.error or first_error}")
        items += [i for i in doc["nftables"] if isinstance(i, dict) and "metainfo" not in i]
    return {"nftables": items}, notes


def collect_egress(
    trace: Trace,
    nft_json: Any,
    nft_readable: bool,
    probe_addresses: tuple[str, ...] = (),
    notes: list[str] | None = None,
) -> FirewallEgress:
    """Evaluate every netfilter source of this namespace for NEW outgoing packets (``gapseal.audit.netfilter``).

    ``nft_readable``: nft ran (or is absent). When it failed the answer is ``unknown``: a ruleset that cannot be
    read cannot be evaluated, even though the other sources could only add drops.
    """
    return collect_egress_and_forward(trace, nft_json, nft_readable, notes, probe_addresses)[0]


def collect_egress_and_forward(
    trace: Trace,
    nft_json: Any,
    nft_readable: bool,
    notes: list[str] | None = None,
    probe_addresses: tuple[str, ...] = (),
) -> tuple[FirewallEgress, FirewallEgress]:
    """``collect_egress``, and the same ruleset evaluated for NEW packets the host would forward.

    A forwarded packet arrives on any non-loopback interface and runs the prerouting, forward and postrouting
    hooks (``netfilter.Ruleset.forward``); the route to its destination decides its output interface, as for
    the host's own packets.
    """
    if not nft_readable:
        unread = FirewallEgress(status="unknown", reason="the nftables ruleset could not be read")
        return unread, unread
    notes = list(notes or [])
    listing = None
    if nft_json is not None:
        out = trace.run(["nft", "-a", "list", "ruleset"])
        listing = out.text if out.ok else None
        if listing is None:
            notes.append(f"nft -a list ruleset: {out.error} (rules quoted as JSON; dormant flags from JSON only)")
    ipt_nft: dict[netfilter.Family, str] = {}
    legacy: dict[netfilter.Family, str] = {}
    for fam, prefix in (("ip", "iptables"), ("ip6", "ip6tables")):
        text = _save_output(trace, f"{prefix}-nft-save", notes)
        if text is not None:
            ipt_nft[fam] = text  # type: ignore[index]
        text = _save_output(trace, f"{prefix}-legacy-save", notes)
        if text is not None:
            legacy[fam] = text  # type: ignore[index]
    routing = _routing(trace, notes)
    try:
        ruleset = netfilter.build_ruleset(
            nft_json=nft_json,
            nft_listing=listing,
            iptables_nft=ipt_nft,
            iptables_legacy=legacy,
            local_addresses=_local_addresses(trace, notes),
        )
        targets = probe_addresses or DEFAULT_ROUTE_TARGETS
        answers = []
        for path_ruleset in (ruleset, ruleset.forward()):
            answers.append(
                FirewallEgress(
                    status="ok",
                    base_chains=[describe_base_chain(bc) for bc in ruleset.base_chains],
                    notes=notes + ruleset.notes,
                    probes=egress_answers(netfilter.probe_verdicts(path_ruleset, targets, routing)),
                    classes=egress_answers(netfilter.egress_classes(path_ruleset, routing=routing)),
                )
            )
    except ValueError as e:
        failed = FirewallEgress(status="unknown", reason=f"the ruleset could not be evaluated: {e}", notes=notes)
        return failed, failed
    return answers[0], answers[1]


def describe_base_chain(bc: netfilter.BaseChain) -> str:
    """E.g. ``nftables inet gapseal output: hook output priority 0 policy drop``."""
    state = {True: "", False: " (table dormant: not run)", None: " (table flags unreadable)"}[bc.active]
    return f"{bc.label}: hook {bc.hook} priority {bc.priority} policy {bc.policy}{state}"
