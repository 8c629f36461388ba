"""A complete evidence directory for the "evidence an auditor trusts" tests: named signer, site scope, hosts with real
route sources and raw outputs, a waivers file, a comparison with a previous run. Built from real models."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from gapseal.audit.changes import PreviousRun, compare_results
from gapseal.audit.evidence import SITE_FILE, WAIVERS_FILE, HostEvidence, InputFile, WrittenEvidence, write_evidence
from gapseal.audit.facts import Network, RawOutput, Route, RoutesFacts, Source
from gapseal.audit.results import Finding, Results, WaiverRef
from gapseal.audit.run import controls_from_catalog
from gapseal.audit.scope import Signer, signer_of
from gapseal.audit.site import SiteRecord, SiteScope
from gapseal.signing.keys import SigningKey
from tests.unit.audit.evidence_fixtures import NOW, make_facts, make_results, rule

ROUTE_ARGV = ["ip", "-j", "route", "show", "table", "all"]
ROUTE_OUTPUT = b'[{"type":"local","dst":"10.206.7.2","table":"local"}]\n'
SITE_BYTES = b"""apiVersion: gapseal/v1
kind: Site
scope: {organisation: Example Clinic, system: radiology-llm, assessor: J. Doe}
"""
WAIVERS_BYTES = b"""apiVersion: gapseal/v1
kind: Waivers
waivers:
  - {rule: LOGGING-001, hosts: "*", justification: central log host pending, approver: ciso, expires: 2027-01-31}
"""
TRUST_NAME = "clinic-auditor-2026"
CONTROL_E1 = "hipaa:164.312(e)(1)"
CONTROL_B = "hipaa:164.312(b)"
CONTROL_EVAL = "hipaa:164.308(a)(8)"


def _hex(address: str) -> str:
    return "".join(f"{int(p):02x}" for p in address.split("."))


def host_with_routes(host: str, address: str, *, os_name: str = "Debian GNU/Linux 12 (bookworm)") -> HostEvidence:
    """A host whose routes domain was read by ``ip -j route show table all``, stored as a raw output."""
    base = make_facts(host, raw=[ROUTE_OUTPUT], manifest_digest="sha256:" + "cd" * 32).facts
    digest = hashlib.sha256(ROUTE_OUTPUT).hexdigest()
    local = Route(
        family="inet",
        table="local",
        type="local",
        dst=Network(
            cidr=f"{address}/32", family="inet", prefixlen=32, first=_hex(address), last=_hex(address),
            address_class="private",
        ),
        is_default=False,
        dev="veth0",
        forwards=False,
    )  # fmt: skip
    routes = RoutesFacts(
        routes=[local],
        sources=[
            Source(kind="command", argv=ROUTE_ARGV, exit_code=0, sha256=digest, size=len(ROUTE_OUTPUT), stored=True)
        ],
    )
    env = Source(kind="procfs", path="/proc/812/environ", sha256="ef" * 32, size=10, stored=False)
    facts = base.model_copy(
        update={
            "host": base.host.model_copy(update={"os": os_name, "kernel": "6.1.0-28-amd64"}),
            "routes": routes,
            "proxy": base.proxy.model_copy(update={"sources": [env]}),
            "integrity": base.integrity.model_copy(update={"bundle_name": "clinic", "bundle_version": "1.4.0"}),
            "raw_outputs": {
                f"sha256:{digest}": RawOutput(encoding="utf-8", content=ROUTE_OUTPUT.decode(), size=len(ROUTE_OUTPUT))
            },
        }
    )
    return HostEvidence(host=host, facts_bytes=facts.to_json().encode("utf-8"), facts=facts)


def results_for(h1: HostEvidence, h2: HostEvidence, *, fixed_egress: bool = False) -> Results:
    """h1 leaks (a default route, a proxy) unless ``fixed_egress``; h2 has a waived logging rule."""
    leak = Finding(message="default route via 10.206.7.1", subject="default via 10.206.7.1", evidence=("/routes",))
    proxy = Finding(message="HTTPS_PROXY set", subject="HTTPS_PROXY", evidence=("/proxy/settings/0",))
    waiver = WaiverRef(
        rule="LOGGING-001", hosts="*", justification="central log host pending", approver="ciso",
        expires=dt.date(2027, 1, 31),
    )  # fmt: skip
    h1_rules = (
        rule("EGRESS-001", "pass", ("eu-ai-act:art-15", CONTROL_E1))
        if fixed_egress
        else rule("EGRESS-001", "fail", ("eu-ai-act:art-15", CONTROL_E1), message=leak.message, findings=(leak,)),
        rule("EGRESS-006", "fail", ("eu-ai-act:art-15", CONTROL_E1), message=proxy.message, findings=(proxy,)),
        rule("LOGGING-001", "pass", ("eu-ai-act:art-12", CONTROL_B)),
        rule("WAIVER-EXPIRED", "pass", ("eu-ai-act:art-9", CONTROL_EVAL)),
    )
    journald = Finding(message="journal is volatile", subject="Storage=volatile", evidence=("/logging",))
    h2_rules = (
        rule("EGRESS-001", "pass", ("eu-ai-act:art-15", CONTROL_E1)),
        rule("EGRESS-006", "pass", ("eu-ai-act:art-15", CONTROL_E1)),
        rule("LOGGING-001", "waived", ("eu-ai-act:art-12", CONTROL_B), findings=(journald,), waiver=waiver),
        rule("WAIVER-EXPIRED", "pass", ("eu-ai-act:art-9", CONTROL_EVAL)),
    )
    base = make_results([(h1, h1_rules), (h2, h2_rules)])
    site = SiteRecord(
        source="file",
        path="site.yaml",
        sha256="sha256:" + hashlib.sha256(SITE_BYTES).hexdigest(),
        scope=SiteScope(organisation="Example Clinic", system="radiology-llm", assessor="J. Doe"),
    )
    return base.model_copy(
        update={"site": site, "waivers_digest": "sha256:" + hashlib.sha256(WAIVERS_BYTES).hexdigest()}
    )


@dataclass(frozen=True)
class Full:
    """A written full evidence directory and what built it."""

    written: WrittenEvidence
    key: SigningKey
    signer: Signer
    results: Results

    @property
    def path(self) -> Path:
        return self.written.path


def write_full(out: Path, key: SigningKey, *, pdf: bool = False) -> Full:
    """Write the full evidence (previous run: h1 also had EGRESS-001 fixed and a since-removed ACCESS-003 finding)."""
    h1, h2 = host_with_routes("h1", "10.206.7.2"), host_with_routes("h2", "10.206.8.2")
    results = results_for(h1, h2)
    previous = results_for(h1, h2, fixed_egress=True)
    gone = Finding(message="sshd listens on 0.0.0.0", subject="tcp 0.0.0.0 port 22", evidence=("/sockets",))
    prev_h1 = previous.hosts[0].model_copy(
        update={
            "rules": (*previous.hosts[0].rules, rule("ACCESS-003", "fail", ("hipaa:164.312(a)(1)",), findings=(gone,)))
        }
    )
    previous = previous.model_copy(
        update={"hosts": (prev_h1, previous.hosts[1]), "generated": NOW - dt.timedelta(days=30)}
    )
    run = PreviousRun(
        path="ev-2026-10", attestation_sha256="ab" * 32, generated=previous.generated, signer_key_id=key.key_id
    )
    signer = signer_of(key.public, {key.key_id: TRUST_NAME}, "trust.yaml")
    written = write_evidence(
        out,
        hosts=[h1, h2],
        results=results,
        controls=controls_from_catalog(),
        key=key,
        signer=signer,
        inputs=[
            InputFile(SITE_FILE, SITE_BYTES, "The site file"),
            InputFile(WAIVERS_FILE, WAIVERS_BYTES, "The waivers file"),
        ],
        changes=compare_results(previous, results, run),
        pdf=pdf,
    )
    return Full(written, key, signer, results)


def copy_evidence(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
