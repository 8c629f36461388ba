"""The results of evaluating the policies on one or more hosts' facts: per host, per rule, one status.

Every rule of the policy set appears for every host, so a reader sees what passed as well as what failed:

- ``pass``: the rule produced no violation for the host;
- ``fail``: the rule produced at least one violation (each is a ``Finding``);
- ``unknown``: the rule could not be decided because a fact it needs was not collected; this is *not* compliant;
- ``waived``: every violation is covered by an unexpired waiver (the waiver is recorded with the result).

An expired waiver is itself a finding: it appears as the result of the rule ``WAIVER-EXPIRED`` on each host it names.
The evidence writer (OSCAL, HTML) builds on this document; ``load_results`` checks its kind and version.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gapseal.audit.site import SiteRecord
from gapseal.errors import AuditError

RESULTS_API_VERSION = "gapseal/v1"
RESULTS_KIND = "AuditResults"

Status = Literal["pass", "fail", "waived", "unknown"]
Severity = Literal["critical", "high", "medium", "low", "info"]

#: Status order from worst to best: the status of a group is the worst of its members.
STATUS_ORDER: tuple[Status, ...] = ("fail", "unknown", "waived", "pass")
SEVERITY_ORDER: tuple[Severity, ...] = ("critical", "high", "medium", "low", "info")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Finding(_Model):
    """One violation a rule reported: what is wrong, on which thing, and where in the facts it shows."""

    message: str = Field(description="What is wrong, naming the offending thing (route, socket, variable, file).")
    subject: str = Field(
        description="The offending thing itself, e.g. 'default via 10.0.0.1 dev eth0' or 'HTTP_PROXY'."
    )
    evidence: tuple[str, ...] = Field(
        default=(),
        description="JSON pointers (RFC 6901) into the host's facts document that show the violation, e.g. '/routes'.",
    )
    unknown: bool = Field(
        default=False, description="True when the violation is that a fact could not be collected (status unknown)."
    )


class WaiverRef(_Model):
    """The waiver that covers (or covered) a rule on a host, copied from the waivers file."""

    rule: str = Field(description="Rule id the waiver applies to.")
    hosts: str = Field(description="Host glob pattern of the waiver.")
    justification: str = Field(description="Why the deviation is accepted.")
    approver: str = Field(description="Who accepted the deviation.")
    expires: dt.date = Field(description="Last day the waiver is valid (inclusive).")


class RuleResult(_Model):
    """The outcome of one rule on one host."""

    rule: str = Field(description="Rule id, e.g. 'EGRESS-001' (stable across releases; waivers name it).")
    package: str = Field(description="Rego package that holds the rule, e.g. 'gapseal.egress'.")
    title: str = Field(description="Short title of the rule, from its METADATA.")
    description: str = Field(description="What the rule requires, from its METADATA.")
    severity: Severity = Field(description="Severity of a violation of this rule.")
    controls: tuple[str, ...] = Field(description="Control ids from the controls catalog this rule supports.")
    status: Status = Field(description="pass, fail, waived or unknown (unknown is not compliant).")
    message: str = Field(description="One-line summary: 'compliant', or the violations' messages joined.")
    remediation: str = Field(description="What to do to comply, from the rule's METADATA.")
    findings: tuple[Finding, ...] = Field(default=(), description="Every violation the rule reported on this host.")
    evidence: tuple[str, ...] = Field(
        default=(), description="Union of the findings' JSON pointers into the host's facts, sorted."
    )
    waiver: WaiverRef | None = Field(default=None, description="The waiver applied (status waived) or expired.")


class HostResults(_Model):
    """All rule results for one host."""

    host: str = Field(description="Host name as recorded in its facts.")
    facts: str = Field(description="Where the host's facts document is, relative to the results (e.g. 'facts/h.json').")
    facts_digest: str = Field(description="sha256 of the facts document's bytes as evaluated, 'sha256:<hex>'.")
    rules: tuple[RuleResult, ...] = Field(description="One result per rule, sorted by rule id.")

    @property
    def status(self) -> Status:
        """Worst status over the host's rules (``pass`` when it has none)."""
        return worst_status(r.status for r in self.rules)

    @property
    def compliant(self) -> bool:
        """True when no rule failed or is unknown (waived rules count as compliant)."""
        return self.status in ("pass", "waived")


class SeverityCount(_Model):
    """How many host-rule results of one severity did not pass, by status."""

    severity: Severity = Field(description="The rules' severity.")
    failed: int = Field(description="Host-rule pairs of this severity with status fail.")
    unknown: int = Field(description="Host-rule pairs of this severity with status unknown.")
    waived: int = Field(description="Host-rule pairs of this severity with status waived (not counted as passed).")
    passed: int = Field(default=0, description="Host-rule pairs of this severity with status pass.")


class Summary(_Model):
    """Counts over every host and rule."""

    hosts: int = Field(description="Number of hosts evaluated.")
    rules: int = Field(description="Number of distinct rules evaluated.")
    passed: int = Field(description="Host-rule pairs with status pass.")
    failed: int = Field(description="Host-rule pairs with status fail.")
    waived: int = Field(description="Host-rule pairs with status waived.")
    unknown: int = Field(description="Host-rule pairs with status unknown.")
    compliant: bool = Field(description="True when nothing failed and nothing is unknown.")
    by_severity: tuple[SeverityCount, ...] = Field(
        default=(), description="The same counts per severity, critical first (every severity listed)."
    )


class Results(_Model):
    """The results document (``results.json``)."""

    api_version: Literal["gapseal/v1"] = Field(description="Schema version of this document.")
    kind: Literal["AuditResults"] = Field(description="Document kind.")
    generated: dt.datetime = Field(description="When the evaluation ran (UTC).")
    engine: str = Field(description="Policy engine used, e.g. 'regopy 1.5.2' or 'opa-server http://127.0.0.1:8181'.")
    policy_digest: str = Field(
        description="sha256 over the policy set (every .rego, the data files and the catalog), 'sha256:<hex>'."
    )
    waivers_digest: str | None = Field(default=None, description="sha256 of the waivers file used, if any.")
    site: SiteRecord | None = Field(
        default=None,
        description="The site data the verdict rests on: the site file's path, sha256 and scope, or the defaults.",
    )
    hosts: tuple[HostResults, ...] = Field(description="Per-host results, sorted by host name.")
    summary: Summary = Field(description="Counts and the overall verdict.")

    @property
    def compliant(self) -> bool:
        """True when every host is compliant."""
        return self.summary.compliant

    def to_json(self) -> str:
        """Serialise to indented JSON (the form written to ``results.json``)."""
        return self.model_dump_json(indent=2) + "\n"


def worst_status(statuses: Iterable[Status]) -> Status:
    """Return the worst of ``statuses`` in the order fail, unknown, waived, pass (``pass`` when empty)."""
    ranks = [STATUS_ORDER.index(s) for s in statuses]
    return STATUS_ORDER[min(ranks)] if ranks else "pass"


def summarise(hosts: Iterable[HostResults]) -> Summary:
    """Count statuses over ``hosts`` and decide compliance."""
    hosts = list(hosts)
    pairs = [r for h in hosts for r in h.rules]
    counts = {s: sum(1 for r in pairs if r.status == s) for s in STATUS_ORDER}
    by_severity = tuple(
        SeverityCount(
            severity=sev,
            failed=sum(1 for r in pairs if r.severity == sev and r.status == "fail"),
            unknown=sum(1 for r in pairs if r.severity == sev and r.status == "unknown"),
            waived=sum(1 for r in pairs if r.severity == sev and r.status == "waived"),
            passed=sum(1 for r in pairs if r.severity == sev and r.status == "pass"),
        )
        for sev in SEVERITY_ORDER
    )
    return Summary(
        hosts=len(hosts),
        rules=len({r.rule for r in pairs}),
        passed=counts["pass"],
        failed=counts["fail"],
        waived=counts["waived"],
        unknown=counts["unknown"],
        compliant=counts["fail"] == 0 and counts["unknown"] == 0,
        by_severity=by_severity,
    )


def parse_results(text: str | bytes, *, where: str = "results") -> Results:
    """Parse and validate a results document, checking its kind and version."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise AuditError(f"results are not valid JSON: {e}", where=where) from e
    if not isinstance(raw, dict) or raw.get("kind") != RESULTS_KIND or raw.get("api_version") != RESULTS_API_VERSION:
        raise AuditError(
            f"not a results document: expected kind {RESULTS_KIND!r} and api_version {RESULTS_API_VERSION!r}",
            where=where,
        )
    try:
        return Results.model_validate(raw)
    except ValidationError as e:
        raise AuditError(f"invalid results document: {e}", where=where) from e


def load_results(path: Path) -> Results:
    """Read and validate ``results.json`` at ``path``."""
    try:
        text = path.read_bytes()
    except OSError as e:
        raise AuditError(f"cannot read results: {e.strerror}", where=str(path)) from e
    return parse_results(text, where=str(path))


def results_json_schema() -> dict[str, object]:
    """Return the JSON Schema of the results document (published beside the facts schema)."""
    return Results.model_json_schema()
