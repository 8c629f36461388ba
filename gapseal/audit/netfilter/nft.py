"""nftables (``nft -j list ruleset``, with ``nft -a list ruleset`` for quotes and table flags) into the model.

What is read: tables with their flags (``dormant`` switches a table off), base chains on every hook with type,
priority and policy, regular chains, named sets and verdict maps (intervals, prefixes, concatenations), and each
rule's expressions. Counters, log and comments are no-ops; ``reject`` drops; a match on something the model does not
know becomes ``Uncertain`` and a statement it does not know (``queue``, ``dnat``, ``meta mark set``...) ``Opaque``,
both quoting the rule, so an unmodelled rule can only make an answer ``unknown``, never a pass.

Rules that iptables-nft wrote carry ``xt`` expressions whose options ``nft -j`` does not print; they are evaluated
from the same rule in ``iptables-nft-save`` (same table, chain and position), parsed by
``gapseal.audit.netfilter.iptables``.

nft 1.0.6 prints a dormant table's flags in JSON wrongly (the table's name instead of ``dormant``); the text listing
is right, so a table's flags come from the text when the JSON does not say plainly.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Any

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
    VerdictMap,
)

FAMILIES: dict[str, frozenset[Family]] = {
    "ip": frozenset({"ip"}),
    "ip6": frozenset({"ip6"}),
    "inet": frozenset({"ip", "ip6"}),
}
"""Table families whose chains see IP packets of this host (arp, bridge and netdev tables do not filter them
here: a drop there could only make gapseal's answer more cautious, never an accept)."""
OTHER_FAMILIES = frozenset({"arp", "bridge", "netdev"})
"""The other table families nft knows; any family outside both is an error (not what nft prints)."""

ADDRESS_KEYS = {"ip daddr": "ip", "ip saddr": "ip", "ip6 daddr": "ip6", "ip6 saddr": "ip6"}
NUMBER_KEYS = {
    "tcp dport", "udp dport", "th dport", "tcp sport", "udp sport", "th sport",
    "meta skuid", "meta skgid", "meta mark", "ct mark", "ip protocol", "ip6 nexthdr", "meta l4proto",
}  # fmt: skip
NAME_KEYS = {
    "meta oifname", "meta iifname", "meta iif", "ct state", "ct direction", "fib daddr type", "meta nfproto",
    "meta protocol", "icmp type", "icmpv6 type",
}  # fmt: skip
_ICMP_NAMES = {("icmp type", 8): "echo-request", ("icmpv6 type", 128): "echo-request"}
_NOOPS = {"counter", "log", "snat", "masquerade", "nftrace", "ct helper"}
_REWRITES = {"dnat", "redirect", "tproxy", "dup", "fwd", "queue"}
"""Statements that may send a packet (or a copy) elsewhere than its destination; a payload rewrite too."""
_OPAQUE_TABLE_FLAGS = {"owner", "persist"}


class UnsupportedError(ValueError):
    """An expression or value the model does not cover."""


# --------------------------------------------------------------------------------------------------- keys and values


def key_of(expr: Any) -> tuple[str, ...]:
    """The model's field names for a left-hand side (several for a concatenation)."""
    if isinstance(expr, dict) and len(expr) == 1:
        ((kind, body),) = expr.items()
        if kind == "concat" and isinstance(body, list) and body:
            return tuple(k for part in body for k in key_of(part))
        if kind == "payload" and isinstance(body, dict) and "protocol" in body:
            key = f"{body['protocol']} {body.get('field')}"
            if key in ADDRESS_KEYS or key in NUMBER_KEYS or key in NAME_KEYS:
                return (key,)
        if kind == "meta" and isinstance(body, dict):
            key = {"oif": "meta oifname"}.get(str(body.get("key")), f"meta {body.get('key')}")
            if key in NUMBER_KEYS or key in NAME_KEYS:
                return (key,)
        if kind == "ct" and isinstance(body, dict) and set(body) == {"key"}:
            key = f"ct {body['key']}"
            if key in NUMBER_KEYS or key in NAME_KEYS:
                return (key,)
        if (
            kind == "fib"
            and isinstance(body, dict)
            and body.get("result") == "type"
            and body.get("flags")
            in (
                ["daddr"],
                "daddr",
            )
        ):
            return ("fib daddr type",)
    raise UnsupportedError(f"expression {json.dumps(expr, sort_keys=True)}")


def _address(text: Any, family: str) -> int:
    if not isinstance(text, str):
        raise UnsupportedError(f"address {text!r}")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError as e:
        raise UnsupportedError(f"address {text!r}") from e
    if (ip.version == 4) != (family == "ip"):
        raise UnsupportedError(f"address {text!r} of the other family")
    return int(ip)


def _number(value: Any, key: str) -> int:
    if isinstance(value, bool):
        raise UnsupportedError(f"value {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if value.isdigit():
            return int(value)
        if key in {"ip protocol", "ip6 nexthdr", "meta l4proto"}:
            name = {"ipv6-icmp": "icmpv6"}.get(value, value)
            if name in PROTO_NUMBERS:
                return PROTO_NUMBERS[name]
    raise UnsupportedError(f"value {value!r} for {key}")


def atom(value: Any, key: str) -> Atom:
    """One element of a right-hand side, for ``key``."""
    if isinstance(value, dict) and "elem" in value and isinstance(value["elem"], dict):
        return atom(value["elem"].get("val"), key)
    if key in ADDRESS_KEYS:
        fam = ADDRESS_KEYS[key]
        if isinstance(value, dict) and isinstance(value.get("prefix"), dict):
            p = value["prefix"]
            try:
                net = ipaddress.ip_network(f"{p.get('addr')}/{p.get('len')}", strict=False)
            except ValueError as e:
                raise UnsupportedError(f"prefix {p!r}") from e
            if (net.version == 4) != (fam == "ip"):
                raise UnsupportedError(f"prefix {p!r} of the other family")
            return Interval(int(net.network_address), int(net.broadcast_address))
        if isinstance(value, dict) and isinstance(value.get("range"), list) and len(value["range"]) == 2:
            return Interval(_address(value["range"][0], fam), _address(value["range"][1], fam))
        a = _address(value, fam)
        return Interval(a, a)
    if key in NUMBER_KEYS:
        if isinstance(value, dict) and isinstance(value.get("range"), list) and len(value["range"]) == 2:
            return Interval(_number(value["range"][0], key), _number(value["range"][1], key))
        n = _number(value, key)
        return Interval(n, n)
    if key in NAME_KEYS:
        if isinstance(value, int) and not isinstance(value, bool):
            return Name(_ICMP_NAMES.get((key, value), str(value)))
        if isinstance(value, str):
            return Name(value)
    raise UnsupportedError(f"value {json.dumps(value, sort_keys=True)} for {key}")


def elements(right: Any, keys: tuple[str, ...], sets: Mapping[str, list[Any]]) -> list[tuple[Atom, ...]]:
    """Every element of a right-hand side (a value, list, anonymous set or ``@named`` set) as atoms per key."""
    if isinstance(right, str) and right.startswith("@"):
        if right[1:] not in sets:
            raise UnsupportedError(f"set {right} not in the ruleset")
        return elements({"set": sets[right[1:]]}, keys, {})  # a set's elements never name another set
    if isinstance(right, dict) and "set" in right:
        items = right["set"] if isinstance(right["set"], list) else [right["set"]]
        return [e for item in items for e in elements(item, keys, sets)]
    if isinstance(right, list) and len(keys) == 1:
        return [e for item in right for e in elements(item, keys, sets)]
    if isinstance(right, dict) and "elem" in right and isinstance(right["elem"], dict):
        return elements(right["elem"].get("val"), keys, sets)
    if len(keys) > 1:
        if not (
            isinstance(right, dict) and isinstance(right.get("concat"), list) and len(right["concat"]) == len(keys)
        ):
            raise UnsupportedError(f"concatenation value {json.dumps(right, sort_keys=True)}")
        return [tuple(atom(v, k) for v, k in zip(right["concat"], keys, strict=True))]
    return [(atom(right, keys[0]),)]


def _bound(keys: tuple[str, ...]) -> int:
    key = keys[0]
    if key in ADDRESS_KEYS:
        return 2**32 - 1 if ADDRESS_KEYS[key] == "ip" else 2**128 - 1
    return 2**32 - 1


def match_step(m: Mapping[str, Any], sets: Mapping[str, list[Any]]) -> Match:
    """One ``{"match": ...}`` expression."""
    keys = key_of(m.get("left"))
    op = m.get("op", "==")
    right = m.get("right")
    if not isinstance(op, str):
        raise UnsupportedError(f"operator {json.dumps(op, sort_keys=True)}")
    if op in {"<", ">", "<=", ">="}:
        if len(keys) != 1 or keys[0] in NAME_KEYS:
            raise UnsupportedError(f"comparison {op} on {keys}")
        (a,) = elements(right, keys, sets)
        v = a[0]
        if not isinstance(v, Interval) or v.lo != v.hi:
            raise UnsupportedError(f"comparison {op} with a range")
        top = _bound(keys)
        lo, hi = {"<": (0, v.lo - 1), "<=": (0, v.lo), ">": (v.lo + 1, top), ">=": (v.lo, top)}[op]
        return Match(keys, ((Interval(lo, hi),),))
    if op not in {"==", "in", "!="}:
        raise UnsupportedError(f"operator {op}")
    return Match(keys, tuple(elements(right, keys, sets)), negate=op == "!=")


def _verdict(value: Any) -> Jump | Terminal | Opaque:
    if isinstance(value, dict) and len(value) == 1:
        ((kind, body),) = value.items()
        if kind in {"accept", "drop", "return", "continue"}:
            return Terminal(kind)
        if kind in {"jump", "goto"} and isinstance(body, dict) and isinstance(body.get("target"), str):
            return Jump(body["target"], goto=kind == "goto")
    return Opaque(f"verdict {json.dumps(value, sort_keys=True)}")


def vmap_step(v: Mapping[str, Any], sets: Mapping[str, list[Any]], maps: Mapping[str, list[Any]]) -> VerdictMap:
    """One ``{"vmap": {"key": ..., "data": ...}}`` expression."""
    keys = key_of(v.get("key"))
    data = v.get("data")
    if isinstance(data, str) and data.startswith("@"):
        if data[1:] not in maps:
            raise UnsupportedError(f"verdict map {data} not in the ruleset")
        pairs = maps[data[1:]]
    elif isinstance(data, dict) and isinstance(data.get("set"), list):
        pairs = data["set"]
    else:
        raise UnsupportedError(f"verdict map data {json.dumps(data, sort_keys=True)}")
    entries = []
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise UnsupportedError(f"verdict map element {json.dumps(pair, sort_keys=True)}")
        for atoms in elements(pair[0], keys, sets):
            entries.append((atoms, _verdict(pair[1])))
    return VerdictMap(keys, tuple(entries))


def rule_steps(
    exprs: list[Any], sets: Mapping[str, list[Any]], maps: Mapping[str, list[Any]], quote: str
) -> tuple[Step, ...]:
    """A rule's expressions as model steps (unknown matches ``Uncertain``, unknown statements ``Opaque``)."""
    steps: list[Step] = []
    for expr in exprs:
        if not isinstance(expr, dict) or len(expr) != 1:
            steps.append(Opaque(quote))
            continue
        ((kind, body),) = expr.items()
        try:
            if kind == "match" and isinstance(body, dict):
                steps.append(match_step(body, sets))
            elif kind == "vmap" and isinstance(body, dict):
                steps.append(vmap_step(body, sets, maps))
            elif kind in {"accept", "drop", "return", "continue", "jump", "goto"}:
                steps.append(_verdict(expr))
            elif kind == "reject":
                steps.append(Terminal("drop"))
            elif kind in _NOOPS:
                continue
            elif kind in {"limit", "quota", "ct count"}:
                steps.append(Uncertain(quote))  # true for some packets, false for others
            else:
                steps.append(Opaque(quote, rewrites=_rewrites(kind, body)))
        except UnsupportedError:
            if kind == "match" and isinstance(body, dict):
                steps += implied_matches(body.get("left"))
            steps.append(Uncertain(quote) if kind == "match" else Opaque(quote))
    return tuple(steps)


def _rewrites(kind: str, body: Any) -> bool:
    """Whether a statement may send the packet elsewhere (a ``mangle`` of anything but a mark or priority too)."""
    if kind in _REWRITES:
        return True
    if kind == "mangle":
        key = body.get("key") if isinstance(body, dict) else None
        return not (isinstance(key, dict) and set(key) <= {"meta", "ct"})  # meta/ct mark, priority: no new address
    if kind == "xt":
        name = body.get("name") if isinstance(body, dict) else None
        return (
            isinstance(body, dict)
            and body.get("type") == "target"
            and isinstance(name, str)
            and name in REWRITING_TARGETS
        )
    return False


def implied_matches(expr: Any) -> list[Match]:
    """The protocol a header field implies (nft adds the dependency and ``nft -j`` leaves it out).

    ``tcp flags & syn == syn`` only ever matches TCP packets: the kernel rule carries ``meta l4proto tcp``, so an
    expression gapseal does not model still tells which packets it can concern.
    """
    out: list[Match] = []
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack += node
        elif isinstance(node, dict):
            body = node.get("payload")
            protocol = body.get("protocol") if isinstance(body, dict) else None
            if not isinstance(protocol, str):
                stack += list(node.values())
            elif protocol in {"ip", "ip6"}:
                out.append(Match(("meta nfproto",), ((Name("ipv4" if protocol == "ip" else "ipv6"),),)))
            elif protocol in PROTO_NUMBERS:
                n = PROTO_NUMBERS[protocol]
                out.append(Match(("meta l4proto",), ((Interval(n, n),),)))
    return list(dict.fromkeys(out))


# --------------------------------------------------------------------------------------------------- text listing


_TABLE_RE = re.compile(r"^table (\S+) (\S+) \{")
_CHAIN_RE = re.compile(r"^chain (\S+) \{")
_RULE_RE = re.compile(r"^(.*?)\s*# handle (\d+)$")


def parse_listing(text: str) -> tuple[dict[tuple[str, str, str, int], str], dict[tuple[str, str], bool]]:
    """From ``nft -a list ruleset``: each rule's text by (family, table, chain, handle), and each table's dormancy."""
    quotes: dict[tuple[str, str, str, int], str] = {}
    dormant: dict[tuple[str, str], bool] = {}
    table: tuple[str, str] | None = None
    chain: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if m := _TABLE_RE.match(line):
            table, chain = (m.group(1), m.group(2)), None
            dormant[table] = False
        elif table is None:
            continue
        elif m := _CHAIN_RE.match(line):
            chain = m.group(1)
        elif line == "}" or re.match(r"^(set|map|flowtable) \S+ \{", line):
            chain = None  # a chain (or a named object at table level) ends
        elif chain is None and line.startswith("flags ") and "dormant" in line[6:].replace(",", " ").split():
            dormant[table] = True
        elif chain is not None and (m := _RULE_RE.match(line)):
            quotes[(table[0], table[1], chain, int(m.group(2)))] = m.group(1)
    return quotes, dormant


def _table_active(flags: Any, listed: bool | None) -> bool | None:
    """True/False when the table's flags say plainly; None when they cannot be read (it may be dormant)."""
    if listed is not None:
        return not listed
    if flags is None:
        return True
    names = flags if isinstance(flags, list) else [flags]
    if all(isinstance(n, str) for n in names):
        if "dormant" in names:
            return False
        if set(names) <= _OPAQUE_TABLE_FLAGS:
            return True
    return None


# --------------------------------------------------------------------------------------------------- the ruleset


def base_chains(
    document: Any,
    listing: str | None = None,
    xt_rules: Mapping[tuple[str, str, str], list[Rule]] | None = None,
) -> tuple[list[BaseChain], list[str]]:
    """Every base chain of an ``nft -j list ruleset`` document (with the listing's quotes and flags when given).

    ``xt_rules``: the iptables-nft rules by (family, table, chain), for rules with ``xt`` expressions.
    Raises ``ValueError`` when the document is not nft's JSON.
    """
    if not isinstance(document, dict) or not isinstance(document.get("nftables"), list):
        raise ValueError('nft -j output has no "nftables" array')
    items = [i for i in document["nftables"] if isinstance(i, dict)]
    quotes, dormant = parse_listing(listing) if listing is not None else ({}, {})
    notes: list[str] = []
    sets: dict[tuple[str, str], dict[str, list[Any]]] = {}
    maps: dict[tuple[str, str], dict[str, list[Any]]] = {}
    tables: dict[tuple[str, str], bool | None] = {}
    for item in items:
        if isinstance(item.get("table"), dict):
            t = item["table"]
            key = (str(t.get("family")), str(t.get("name")))
            tables[key] = _table_active(t.get("flags"), dormant.get(key) if listing is not None else None)
        for kind, store in (("set", sets), ("map", maps)):
            if isinstance(item.get(kind), dict):
                s = item[kind]
                elem = s.get("elem", [])
                store.setdefault((str(s.get("family")), str(s.get("table"))), {})[str(s.get("name"))] = (
                    elem if isinstance(elem, list) else [elem]
                )
    rules: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    chains: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item.get("rule"), dict):
            r = item["rule"]
            rules.setdefault((str(r.get("family")), str(r.get("table")), str(r.get("chain"))), []).append(r)
        if isinstance(item.get("chain"), dict):
            chains.append(item["chain"])
    compiled: dict[tuple[str, str], dict[str, tuple[Rule, ...]]] = {}
    for (fam, table, chain), rs in rules.items():
        compiled.setdefault((fam, table), {})[chain] = tuple(
            _rule(r, i, rs, (xt_rules or {}).get((fam, table, chain)), sets.get((fam, table), {}),
                  maps.get((fam, table), {}), quotes)
            for i, r in enumerate(rs)
        )  # fmt: skip
    out: list[BaseChain] = []
    for c in chains:
        fam, table, name = str(c.get("family")), str(c.get("table")), str(c.get("name"))
        if "hook" not in c:
            if any(k in c for k in ("type", "prio", "policy")):
                raise ValueError(f"nftables {fam} {table} {name}: a base chain with no hook")
            continue
        if fam not in FAMILIES and fam not in OTHER_FAMILIES:
            raise ValueError(f"nftables {fam} {table} {name}: unknown table family {c.get('family')!r}")
        if not isinstance(c["hook"], str) or c.get("policy", "accept") not in ("accept", "drop"):
            raise ValueError(
                f"nftables {fam} {table} {name}: hook {c['hook']!r} policy {c.get('policy')!r} is not what nft prints"
            )
        if fam not in FAMILIES:
            notes.append(f"nftables {fam} {table} {name}: {fam} tables do not filter this host's IP packets here")
            continue
        prio, policy = c.get("prio"), c.get("policy", "accept")
        label = f"nftables {fam} {table} {name}"
        table_chains = {**{n: () for n in _chain_names(chains, fam, table)}, **compiled.get((fam, table), {})}
        out.append(
            BaseChain(
                label=label,
                families=FAMILIES[fam],
                hook=str(c["hook"]),
                priority=prio if isinstance(prio, int) else 0,
                policy="drop" if policy == "drop" else "accept",
                chain=name,
                chains=table_chains,
                active=tables.get((fam, table)),
            )
        )
    return out, notes


def _chain_names(chains: list[dict[str, Any]], fam: str, table: str) -> list[str]:
    return [str(c.get("name")) for c in chains if c.get("family") == fam and c.get("table") == table]


def _rule(
    r: Mapping[str, Any],
    index: int,
    siblings: list[dict[str, Any]],
    xt: list[Rule] | None,
    sets: Mapping[str, list[Any]],
    maps: Mapping[str, list[Any]],
    quotes: Mapping[tuple[str, str, str, int], str],
) -> Rule:
    fam, table, chain = str(r.get("family")), str(r.get("table")), str(r.get("chain"))
    handle = r.get("handle")
    raw = r.get("expr")
    exprs: list[Any] = raw if isinstance(raw, list) else []
    text = quotes.get((fam, table, chain, handle)) if isinstance(handle, int) else None
    if text is None:
        text = json.dumps(exprs, sort_keys=True, separators=(",", ":"))
    quote = f"nftables {fam} {table} {chain}: {text} # handle {handle}"
    if any(isinstance(e, dict) and "xt" in e for e in exprs):
        if xt is not None and len(xt) == len(siblings):
            return Rule(xt[index].steps, f"{xt[index].quote} (iptables-nft, {quote})")
        rewrites = any(_rewrites("xt", e["xt"]) for e in exprs if isinstance(e, dict) and "xt" in e)
        return Rule((Uncertain(quote), Opaque(quote, rewrites)), quote)  # options of an xt match are not in nft's JSON
    return Rule(rule_steps(exprs, sets, maps, quote), quote)
