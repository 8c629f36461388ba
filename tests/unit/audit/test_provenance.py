"""Which raw file and command back a finding (gapseal.audit.provenance)."""

from __future__ import annotations

import hashlib

from gapseal.audit.facts import DnsFacts, HostFacts, Nameserver, RawOutput, ResolvedFacts, Source
from gapseal.audit.provenance import describe_source, raw_path, source_links
from tests.unit.audit.evidence_fixtures import make_facts

RESOLV = b"nameserver 203.0.113.53\n"
RESOLVED = b"[Resolve]\nDNS=10.206.9.53\n"


def _facts() -> HostFacts:
    base = make_facts("h1").facts
    sources = [
        Source(
            kind="file",
            path="/etc/resolv.conf",
            sha256=hashlib.sha256(RESOLV).hexdigest(),
            size=len(RESOLV),
            stored=True,
        ),
        Source(
            kind="file",
            path="/etc/systemd/resolved.conf",
            sha256=hashlib.sha256(RESOLVED).hexdigest(),
            size=len(RESOLVED),
            stored=True,
        ),
        Source(kind="command", argv=["resolvectl", "dns"], error="resolvectl: not found"),
    ]
    dns = DnsFacts(
        resolved=ResolvedFacts(present=True),
        nameservers=[Nameserver(address="203.0.113.53", address_class="documentation", origin="resolv.conf")],
        sources=sources,
    )
    raw = {
        f"sha256:{hashlib.sha256(b).hexdigest()}": RawOutput(encoding="utf-8", content=b.decode(), size=len(b))
        for b in (RESOLV, RESOLVED)
    }
    return base.model_copy(update={"dns": dns, "raw_outputs": raw})


def test_a_fact_that_names_its_file_links_only_that_file() -> None:
    (link,) = source_links("h1", _facts(), ["/dns/nameservers/0"])
    assert link.command == "read /etc/resolv.conf"
    assert link.raw_file == raw_path("h1", hashlib.sha256(RESOLV).hexdigest())
    assert link.note is None


def test_a_fact_that_names_no_source_links_every_source_of_its_domain() -> None:
    links = source_links("h1", _facts(), ["/dns/resolved"])
    assert [x.command for x in links] == ["read /etc/resolv.conf", "read /etc/systemd/resolved.conf", "resolvectl dns"]
    assert links[2].raw_file is None
    assert links[2].note == "not read: resolvectl: not found"


def test_pointers_outside_the_domains_link_nothing() -> None:
    assert source_links("h1", _facts(), ["/raw_outputs", "/__class__", "/", "", "/dns/nameservers/9"]) != ()
    assert source_links("h1", _facts(), ["/raw_outputs", "/__class__", "/", ""]) == ()


def test_describe_source() -> None:
    assert describe_source(Source(kind="command", argv=["ip", "-j", "route", "show", "table", "all"])) == (
        "ip -j route show table all"
    )
    assert describe_source(Source(kind="command", argv=["sh", "-c", "a b"])) == "sh -c 'a b'"
    assert describe_source(Source(kind="directory", path="/etc/apt")) == "list /etc/apt"
    assert describe_source(Source(kind="socket")) == "socket call (no bytes read)"
