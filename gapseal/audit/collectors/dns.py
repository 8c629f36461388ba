"""Name resolution: resolv.conf, nsswitch.conf, systemd-resolved, and the DNS servers networkd gives each link.

Read: ``/etc/resolv.conf``, ``/etc/nsswitch.conf``, ``resolved.conf`` and its drop-ins, resolved's upstream list
``/run/systemd/resolve/resolv.conf``, networkd ``.network`` ``DNS=`` and the runtime per-link state.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from gapseal.audit.collectors._common import (
    RawStore,
    Trace,
    address_class,
    parse_ini_sections,
    strip_comment,
    unreadable,
)
from gapseal.audit.collectors._networkd import network_servers
from gapseal.audit.facts import DnsFacts, Nameserver, ResolvedFacts


def _nameserver(text: str, origin: str) -> Nameserver | None:
    addr = text.strip()
    if addr.startswith("["):  # resolved.conf allows [addr]:port and addr#name
        addr = addr[1:].split("]", 1)[0]
    addr = addr.split("#", 1)[0].split("%", 1)[0]
    if addr.count(":") == 1:  # IPv4 with a :port suffix
        addr = addr.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None
    return Nameserver(address=str(ip), address_class=address_class(ip), origin=origin)


def parse_resolv_conf(text: str) -> tuple[list[Nameserver], list[str], list[str]]:
    """Return nameservers, search domains and options of a resolv.conf (last ``search`` wins, as in glibc)."""
    servers: list[Nameserver] = []
    search: list[str] = []
    options: list[str] = []
    for raw in text.splitlines():
        line = raw.split(";", 1)[0]
        line = strip_comment(line)
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "nameserver" and len(parts) > 1:
            ns = _nameserver(parts[1], "resolv.conf")
            if ns is not None:
                servers.append(ns)
        elif parts[0] in {"search", "domain"}:
            search = parts[1:]
        elif parts[0] == "options":
            options += parts[1:]
    return servers, search, options


def parse_nsswitch_hosts(text: str) -> list[str]:
    """Return the sources of the ``hosts:`` database (``files``, ``dns``, ``[NOTFOUND=return]``...)."""
    for raw in text.splitlines():
        line = strip_comment(raw)
        if line.startswith("hosts:"):
            return line.split(":", 1)[1].split()
    return []


def collect_dns(store: RawStore, root: Path) -> DnsFacts:
    """Collect the resolver configuration under ``root``."""
    trace = Trace(store)
    etc = root / "etc"
    resolv = etc / "resolv.conf"
    target = None
    if resolv.is_symlink():
        target = os.readlink(resolv)
    text = trace.read_text(resolv)
    servers: list[Nameserver] = []
    search: list[str] = []
    options: list[str] = []
    if text is not None:
        servers, search, options = parse_resolv_conf(text)
    nss = trace.read_text(etc / "nsswitch.conf")
    hosts = parse_nsswitch_hosts(nss) if nss is not None else []
    settings: dict[str, str] = {}
    files = [etc / "systemd" / "resolved.conf"]
    for d in (
        root / "usr/lib/systemd/resolved.conf.d",
        etc / "systemd/resolved.conf.d",
        root / "run/systemd/resolved.conf.d",
    ):
        files += trace.listdir(d, "*.conf")
    present = False
    for f in files:
        content = trace.read_text(f, record_missing=f == files[0])
        if content is None:
            continue
        present = True
        settings.update(parse_ini_sections(content).get("Resolve", {}))
    for key, origin in (("DNS", "resolved.conf:DNS"), ("FallbackDNS", "resolved.conf:FallbackDNS")):
        for item in settings.get(key, "").split():
            ns = _nameserver(item, origin)
            if ns is not None:
                servers.append(ns)
    for link in network_servers(trace, root):  # networkd DNS= and per-link servers (resolvectl, DHCP)
        if link.kind == "DNS":
            ns = _nameserver(link.value, f"{link.origin}:{link.location}")
            if ns is not None:
                servers.append(ns)
    upstream = root / "run/systemd/resolve/resolv.conf"  # resolved's upstream servers, whatever set them
    up_text = trace.read_text(upstream, record_missing=False)
    if up_text is not None:
        for ns in parse_resolv_conf(up_text)[0]:
            servers.append(ns.model_copy(update={"origin": f"resolved-upstream:{upstream}"}))
    status = "ok"
    reason = None
    if text is None and not present:
        reason = f"{resolv} not found: the resolver falls back to a nameserver on localhost"
    problems = unreadable(trace)
    if problems:  # a resolver file that exists but cannot be read may name any server
        status, reason = "unknown", "; ".join(problems)
    return DnsFacts(
        status=status,
        reason=reason,
        sources=trace.sources,
        resolv_conf_present=text is not None,
        resolv_conf_target=target,
        nameservers=servers,
        search=search,
        options=options,
        nsswitch_hosts=hosts,
        resolved=ResolvedFacts(present=present, settings=dict(sorted(settings.items()))),
    )
