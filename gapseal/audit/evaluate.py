"""Evaluation: facts + policy data + waivers → ``Results``.

For each host, the facts document becomes the policy input:

- ``raw_outputs`` and ``firewall.nftables.ruleset`` are left out: they are raw bytes kept for the evidence, and the
  policies read the parsed fields (this keeps a 1000-rule firewall's input small enough for regopy);
- every network object (``{cidr, family, first, last, ...}``) gets ``enclave: true|false``, whether it lies inside an
  enclave network of ``data.allowlist`` — the same hex-bound comparison ``policies/gapseal/lib/net.rego`` makes,
  done here once because rego-cpp takes about half a millisecond per address for it.

Every rule of the policy set yields one ``RuleResult`` per host (``pass`` when it reported nothing), plus the
``WAIVER-EXPIRED`` rule that reports expired waivers naming the host.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gapseal.audit.engines.interface import PolicyEngine
from gapseal.audit.engines.policyset import PolicySet, RuleMeta
from gapseal.audit.facts import load_facts
from gapseal.audit.results import (
    RESULTS_API_VERSION,
    RESULTS_KIND,
    Finding,
    HostResults,
    Results,
    RuleResult,
    Status,
    summarise,
)
from gapseal.audit.waivers import EXPIRED_WAIVER_RULE, NO_WAIVERS, WaiverSet
from gapseal.errors import AuditError

#: Metadata of the rule the evaluator itself adds: an expired waiver is a finding.
EXPIRED_WAIVER_META = RuleMeta(
    id=EXPIRED_WAIVER_RULE,
    package="gapseal.waivers",
    title="Waivers are current",
    description=(
        "Every waiver that names the host is within its expiry date; an expired waiver no longer covers its rule "
        "and must be renewed (re-approved) or removed."
    ),
    severity="medium",
    remediation="Fix the waived finding, or have the approver renew the waiver with a new expiry date.",
    controls=("eu-ai-act:art-9", "hipaa:164.308(a)(8)", "hipaa:164.308(a)(1)(ii)(B)"),
    file="gapseal/audit/evaluate.py",
    line=0,
)

_INPUT_OMIT_TOP = ("raw_outputs",)


@dataclass(frozen=True)
class HostInput:
    """One host's facts, ready to evaluate."""

    host: str
    facts: Mapping[str, Any]
    """The facts document as JSON (a dict), already validated against the facts schema."""
    facts_ref: str
    """Where the facts are, as results should name them (e.g. ``facts/host1.json``)."""
    facts_digest: str
    """``sha256:<hex>`` of the facts bytes."""


def host_input_from_bytes(raw: bytes, ref: str, host: str | None = None) -> HostInput:
    """Validate a facts document (kind, schema version, fields) and wrap it for evaluation.

    ``host`` names the host in the results (an inventory name); by default the facts' own hostname.
    """
    facts = load_facts(raw, where=ref)
    document = facts.model_dump(mode="json")
    return HostInput(
        host=host or facts.host.hostname,
        facts=document,
        facts_ref=ref,
        facts_digest="sha256:" + hashlib.sha256(raw).hexdigest(),
    )


def load_host_input(path: Path, ref: str | None = None) -> HostInput:
    """Read and validate the facts file at ``path``."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise AuditError(f"cannot read facts: {e.strerror}", where=str(path)) from e
    return host_input_from_bytes(raw, ref or str(path))


def policy_input(facts: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """The policy input for ``facts``: raw bytes left out, every network annotated with ``enclave``."""
    enclave = data.get("allowlist", {}).get("enclave_networks", [])
    document = {k: v for k, v in facts.items() if k not in _INPUT_OMIT_TOP}
    firewall = document.get("firewall")
    if isinstance(firewall, dict) and isinstance(firewall.get("nftables"), dict):
        nftables = {k: v for k, v in firewall["nftables"].items() if k != "ruleset"}
        document["firewall"] = {**firewall, "nftables": nftables}
    annotated: dict[str, Any] = _annotate(document, enclave)
    return annotated


def _annotate(value: Any, enclave: Sequence[Mapping[str, Any]]) -> Any:
    if isinstance(value, dict):
        out = {k: _annotate(v, enclave) for k, v in value.items()}
        if _is_network(value):
            out["enclave"] = in_enclave(value, enclave)
        return out
    if isinstance(value, list):
        return [_annotate(v, enclave) for v in value]
    return value


def _is_network(value: Mapping[str, Any]) -> bool:
    return all(isinstance(value.get(k), str) for k in ("cidr", "family", "first", "last"))


def in_enclave(network: Mapping[str, Any], enclave: Sequence[Mapping[str, Any]]) -> bool:
    """Whether ``network`` lies inside one enclave network: same family, equal widths, hex bounds within.

    This is exactly ``lib.contained`` in ``policies/gapseal/lib/net.rego`` (a unit test holds them together).
    """
    first, last = network.get("first"), network.get("last")
    if not isinstance(first, str) or not isinstance(last, str):
        return False
    for e in enclave:
        if (
            e.get("family") == network.get("family")
            and len(first) == len(e["first"])
            and len(last) == len(e["last"])
            and e["first"] <= first
            and last <= e["last"]
        ):
            return True
    return False


def evaluate_hosts(
    hosts: Sequence[HostInput],
    engine: PolicyEngine,
    *,
    waivers: WaiverSet = NO_WAIVERS,
    today: dt.date | None = None,
    now: dt.datetime | None = None,
) -> Results:
    """Evaluate every host with ``engine`` (policies already loaded) and apply ``waivers``."""
    policy_set = engine.policy_set
    now = now or dt.datetime.now(dt.UTC).replace(microsecond=0)
    today = today or now.date()
    waivers.check_rules(r.id for r in policy_set.rules)
    names = [h.host for h in hosts]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise AuditError(f"two facts documents describe the same host: {', '.join(duplicates)}")
    results = [_evaluate_host(h, engine, policy_set, waivers, today) for h in sorted(hosts, key=lambda h: h.host)]
    return Results(
        api_version=RESULTS_API_VERSION,
        kind=RESULTS_KIND,
        generated=now,
        engine=engine.description,
        policy_digest=policy_set.digest,
        waivers_digest=waivers.digest,
        hosts=tuple(results),
        summary=summarise(results),
    )


def _evaluate_host(
    host: HostInput, engine: PolicyEngine, policy_set: PolicySet, waivers: WaiverSet, today: dt.date
) -> HostResults:
    by_package = engine.evaluate(policy_input(host.facts, policy_set.data))
    findings: dict[str, list[Finding]] = {r.id: [] for r in policy_set.rules}
    for package, violations in by_package.items():
        for violation in violations:
            rule, finding = _finding(violation, package, policy_set, host.host)
            findings[rule].append(finding)
    rules = [_rule_result(meta, findings[meta.id], host.host, waivers, today) for meta in policy_set.rules]
    expired = waivers.expired_for(host.host, today)
    expired_findings = [
        Finding(
            message=(
                f"waiver for {w.rule} on hosts {w.hosts!r} (approved by {w.approver}) expired on "
                f"{w.expires.isoformat()}"
            ),
            subject=f"waiver {w.rule} {w.hosts}",
        )
        for w in sorted(expired, key=lambda w: (w.rule, w.hosts, w.expires))
    ]
    rules.append(_rule_result(EXPIRED_WAIVER_META, expired_findings, host.host, NO_WAIVERS, today))
    return HostResults(
        host=host.host,
        facts=host.facts_ref,
        facts_digest=host.facts_digest,
        rules=tuple(sorted(rules, key=lambda r: r.rule)),
    )


def _finding(violation: Mapping[str, Any], package: str, policy_set: PolicySet, host: str) -> tuple[str, Finding]:
    rule = violation.get("rule")
    where = f"host {host}, package {package}"
    known = {r.id: r for r in policy_set.rules}
    if not isinstance(rule, str) or rule not in known:
        raise AuditError(f"a violation names an unregistered rule {rule!r}", where=where)
    if known[rule].package != package:
        raise AuditError(f"rule {rule} reported from package {package}, not {known[rule].package}", where=where)
    message, subject = violation.get("message"), violation.get("subject")
    evidence, unknown = violation.get("evidence"), violation.get("unknown")
    if not isinstance(message, str) or not message or not isinstance(subject, str):
        raise AuditError(f"a violation of {rule} lacks a message or subject: {violation!r}", where=where)
    if not isinstance(evidence, list) or not all(isinstance(e, str) and e.startswith("/") for e in evidence):
        raise AuditError(f"a violation of {rule} has malformed evidence pointers: {evidence!r}", where=where)
    if not isinstance(unknown, bool):
        raise AuditError(f"a violation of {rule} lacks the unknown flag", where=where)
    return rule, Finding(message=message, subject=subject, evidence=tuple(evidence), unknown=unknown)


def _rule_result(meta: RuleMeta, findings: list[Finding], host: str, waivers: WaiverSet, today: dt.date) -> RuleResult:
    findings = sorted(set(findings), key=lambda f: (f.message, f.subject, f.evidence))
    status: Status
    if not findings:
        status, message = "pass", "compliant"
    else:
        status = "fail" if any(not f.unknown for f in findings) else "unknown"
        message = "; ".join(f.message for f in findings[:5])
        if len(findings) > 5:
            message += f"; and {len(findings) - 5} more"
    waiver = None
    if status != "pass":
        active = waivers.active_for(meta.id, host, today)
        if active is not None:
            status, waiver = "waived", active.ref()
            message = f"waived until {active.expires.isoformat()} ({active.justification}): {message}"
    return RuleResult(
        rule=meta.id,
        package=meta.package,
        title=meta.title,
        description=meta.description,
        severity=meta.severity,
        controls=meta.controls,
        status=status,
        message=message,
        remediation=meta.remediation,
        findings=tuple(findings),
        evidence=tuple(sorted({e for f in findings for e in f.evidence})),
        waiver=waiver,
    )


def evaluate_facts(
    facts: Mapping[str, bytes],
    *,
    opa_url: str | None = None,
    waivers: Path | WaiverSet | None = None,
    policies: Path | None = None,
    data_override: Mapping[str, Any] | None = None,
    today: dt.date | None = None,
    now: dt.datetime | None = None,
) -> Results:
    """Evaluate the facts bytes of each host (``{host: bytes}``) with the shipped (or given) policies.

    The results name each host's facts ``facts/<host>.json`` (``gapseal.audit.evidence.facts_path``), the place the
    evidence directory stores them. ``opa_url`` selects the OPA server engine; ``waivers`` is a waivers file or set.
    """
    from gapseal.audit.engines import load_policy_set, make_engine
    from gapseal.audit.evidence import facts_path
    from gapseal.audit.waivers import load_waivers

    waiver_set = load_waivers(waivers) if isinstance(waivers, Path) else (waivers or NO_WAIVERS)
    policy_set = load_policy_set(policies, data_override=data_override)
    hosts = [host_input_from_bytes(raw, facts_path(host), host=host) for host, raw in sorted(facts.items())]
    with make_engine(opa_url) as engine:
        engine.load(policy_set)
        return evaluate_hosts(hosts, engine, waivers=waiver_set, today=today, now=now)
