"""Builders for the evidence tests: real HostFacts and Results models with small, hand-picked contents."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

from gapseal.audit.evidence import ControlInfo, HostEvidence
from gapseal.audit.facts import (
    AuditdFacts,
    CollectorInfo,
    DnsFacts,
    FirewallFacts,
    HostFacts,
    HostInfo,
    IntegrityFacts,
    IptablesFacts,
    JournaldFacts,
    LoggingFacts,
    NftablesFacts,
    ProbesFacts,
    ProcessesFacts,
    ProxyFacts,
    RawOutput,
    ResolvedFacts,
    RoutesFacts,
    SocketsFacts,
    SshFacts,
    StorageFacts,
    TelemetryFacts,
)
from gapseal.audit.results import Finding, HostResults, Results, RuleResult, WaiverRef, summarise

NOW = dt.datetime(2026, 11, 23, 16, 0, 0, tzinfo=dt.UTC)
HOSTILE = '<script>alert("x")</script><img src="http://203.0.113.9/p.png">'

CONTROLS: dict[str, ControlInfo] = {
    c.id: c
    for c in (
        ControlInfo("eu-ai-act-art-15", "EU AI Act", "Article 15 Accuracy, robustness and cybersecurity"),
        ControlInfo("eu-ai-act-art-12", "EU AI Act", "Article 12 Record-keeping"),
        ControlInfo("hipaa-164.312(e)(1)", "HIPAA", "45 CFR 164.312(e)(1) Transmission security"),
        ControlInfo("hipaa-164.312(c)(1)", "HIPAA", "45 CFR 164.312(c)(1) Integrity"),
        ControlInfo("hipaa-164.312(b)", "HIPAA", "45 CFR 164.312(b) Audit controls"),
    )
}


def make_facts(host: str, *, raw: Sequence[bytes] = (), manifest_digest: str | None = None) -> HostEvidence:
    """Return a minimal but valid facts document for ``host`` with ``raw`` stored as raw outputs."""
    raw_outputs = {}
    for data in raw:
        try:
            raw_outputs["sha256:" + hashlib.sha256(data).hexdigest()] = RawOutput(
                encoding="utf-8", content=data.decode("utf-8"), size=len(data)
            )
        except UnicodeDecodeError:
            import base64

            raw_outputs["sha256:" + hashlib.sha256(data).hexdigest()] = RawOutput(
                encoding="base64", content=base64.b64encode(data).decode(), size=len(data)
            )
    facts = HostFacts(
        collected_at=NOW,
        collector=CollectorInfo(version="0.1.0"),
        host=HostInfo(hostname=host, root="/", netns=None, kernel="6.1.0"),
        routes=RoutesFacts(),
        firewall=FirewallFacts(
            nftables=NftablesFacts(status="ok", present=True), iptables=IptablesFacts(status="ok", present=False)
        ),
        dns=DnsFacts(resolved=ResolvedFacts(present=False)),
        processes=ProcessesFacts(),
        proxy=ProxyFacts(),
        sockets=SocketsFacts(),
        probes=ProbesFacts(),
        telemetry=TelemetryFacts(),
        storage=StorageFacts(),
        integrity=IntegrityFacts(
            record_path="/var/lib/gapseal/installed.json",
            record_present=manifest_digest is not None,
            manifest_digest=manifest_digest,
        ),
        ssh=SshFacts(),
        logging=LoggingFacts(
            journald=JournaldFacts(present=True, storage="persistent", persistent=True),
            auditd=AuditdFacts(present=False),
        ),
        raw_outputs=raw_outputs,
    )
    return HostEvidence(host=host, facts_bytes=facts.to_json().encode("utf-8"), facts=facts)


def rule(
    name: str,
    status: str,
    controls: tuple[str, ...],
    *,
    message: str = "compliant",
    findings: tuple[Finding, ...] = (),
    waiver: WaiverRef | None = None,
) -> RuleResult:
    """A rule result with plausible metadata."""
    return RuleResult(
        rule=name,
        package="gapseal." + name.split("-")[0].lower(),
        title=f"title of {name}",
        description=f"description of {name}",
        severity="high",
        controls=controls,
        status=status,
        message=message,
        remediation=f"remediation of {name}",
        findings=findings,
        evidence=tuple(sorted({p for f in findings for p in f.evidence})),
        waiver=waiver,
    )


def compliant_rules() -> tuple[RuleResult, ...]:
    """Every rule passing (one waived)."""
    return (
        rule("EGRESS-001", "pass", ("eu-ai-act-art-15", "hipaa-164.312(e)(1)")),
        rule("INTEGRITY-001", "pass", ("hipaa-164.312(c)(1)", "eu-ai-act-art-15")),
        rule(
            "LOGGING-001",
            "waived",
            ("eu-ai-act-art-12", "hipaa-164.312(b)"),
            message="journald retention unset",
            findings=(
                Finding(message="journald MaxRetentionSec unset", subject="MaxRetentionSec", evidence=("/logging",)),
            ),
            waiver=WaiverRef(
                rule="LOGGING-001",
                hosts="*",
                justification="central log host pending",
                approver="ciso@example.org",
                expires=dt.date(2027, 1, 31),
            ),
        ),
    )


def leaky_rules() -> tuple[RuleResult, ...]:
    """A failing egress rule whose message carries hostile markup, and an unknown one."""
    return (
        rule(
            "EGRESS-001",
            "fail",
            ("eu-ai-act-art-15", "hipaa-164.312(e)(1)"),
            message=f"default route via 10.231.60.1 {HOSTILE}",
            findings=(
                Finding(message=f"default route {HOSTILE}", subject="default via 10.231.60.1", evidence=("/routes",)),
            ),
        ),
        rule("INTEGRITY-001", "unknown", ("hipaa-164.312(c)(1)", "eu-ai-act-art-15"), message="no install record"),
        rule("LOGGING-001", "pass", ("eu-ai-act-art-12", "hipaa-164.312(b)")),
    )


def make_results(hosts: Sequence[tuple[HostEvidence, tuple[RuleResult, ...]]]) -> Results:
    """A results document over ``hosts`` whose facts digests match the facts bytes."""
    host_results = tuple(
        HostResults(
            host=he.host,
            facts=f"facts/{he.host}.json",
            facts_digest="sha256:" + hashlib.sha256(he.facts_bytes).hexdigest(),
            rules=rules,
        )
        for he, rules in sorted(hosts, key=lambda p: p[0].host)
    )
    return Results(
        api_version="gapseal/v1",
        kind="AuditResults",
        generated=NOW,
        engine="regopy 1.0.0",
        policy_digest="sha256:" + "ab" * 32,
        waivers_digest=None,
        hosts=host_results,
        summary=summarise(host_results),
    )
