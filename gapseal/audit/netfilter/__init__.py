"""Firewall semantics as the kernel evaluates them.

The one question egress auditing asks: "can a NEW packet from this host to address A, protocol P, port X leave?".
The same model answers it for packets the host *forwards* (``Ruleset.forward()``: arriving on any non-loopback
interface, through the prerouting, forward and postrouting hooks): a host that routes for containers or VMs is a way
out its output chain never sees.

- ``model``: the ruleset model (base chains per hook with priority and policy, rules as steps) and its evaluation;
- ``nft``: ``nft -j list ruleset`` (+ ``nft -a list ruleset``) into the model; ``iptables``: iptables-save text
  (legacy tables as base chains of their own; iptables-nft rules for nft's ``xt`` expressions);
- ``classes``: every destination's answer, as classes of destinations the rules cannot tell apart;
- ``routing``: the output interface the route to each destination uses (``ip -j route``/``rule``), where known.

``build_ruleset`` is the one entry point that puts the sources of one host together.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from gapseal.audit.netfilter import iptables, nft
from gapseal.audit.netfilter.classes import DestinationClass, answer, egress_classes, probe_verdicts
from gapseal.audit.netfilter.model import BaseChain, Context, Family, Outcome, Packet, Ruleset
from gapseal.audit.netfilter.routing import Routing, routing_from_ip

__all__ = [
    "BaseChain",
    "Context",
    "DestinationClass",
    "Family",
    "Outcome",
    "Packet",
    "Routing",
    "Ruleset",
    "answer",
    "build_ruleset",
    "egress_classes",
    "packet",
    "probe_verdicts",
    "routing_from_ip",
]


def build_ruleset(
    *,
    nft_json: Any = None,
    nft_listing: str | None = None,
    iptables_nft: Mapping[Family, str] | None = None,
    iptables_legacy: Mapping[Family, str] | None = None,
    local_addresses: Iterable[str] = (),
) -> Ruleset:
    """The ruleset of one host from what its tools printed (each source optional).

    ``nft_json``: parsed ``nft -j list ruleset``; ``nft_listing``: ``nft -a list ruleset`` text (rule quotes, table
    flags); ``iptables_nft`` / ``iptables_legacy``: ``ip(6)tables-nft-save`` / ``ip(6)tables-legacy-save`` text by
    family. Raises ``ValueError`` for output that is not what the tool prints.
    """
    ruleset = Ruleset()
    xt: dict[tuple[str, str, str], list[Any]] = {}
    for fam, text in (iptables_nft or {}).items():
        for (table, chain), rules in iptables.rules_by_chain(text, fam).items():
            xt[(fam, table, chain)] = rules
    if nft_json is not None:
        chains, notes = nft.base_chains(nft_json, nft_listing, xt)
        ruleset.base_chains += chains
        ruleset.notes += notes
    for fam, text in (iptables_legacy or {}).items():
        tool = "iptables-legacy" if fam == "ip" else "ip6tables-legacy"
        ruleset.base_chains += iptables.legacy_base_chains(text, fam, tool)
    local: set[tuple[Family, int]] = set()
    for a in local_addresses:
        ip = ipaddress.ip_address(a)
        local.add(("ip" if ip.version == 4 else "ip6", int(ip)))
    ruleset.context = Context(frozenset(local))
    return ruleset


def packet(
    address: str, protocol: str, port: int | None = None, *, oifname: str | None = None, skuid: int | None = None
) -> Packet:
    """A packet to ``address`` (text), e.g. ``packet("198.51.100.7", "tcp", 443, oifname="eth0")``."""
    ip = ipaddress.ip_address(address)
    if protocol not in {"tcp", "udp", "icmp"}:
        raise ValueError(f"protocol {protocol!r}: expected tcp, udp or icmp")
    return Packet("ip" if ip.version == 4 else "ip6", int(ip), protocol, port, oifname=oifname, skuid=skuid)  # type: ignore[arg-type]
