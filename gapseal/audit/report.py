"""The HTML report: one self-contained page an auditor can open anywhere, offline.

Summary first (compliant or not; per framework and per control), then each host's findings with remediation, the
evidence files with their SHA-256, and the exact command that verifies the signature. Everything from facts and
results is escaped (Jinja2 autoescaping): facts are attacker-controlled strings. The page loads nothing: inline CSS
only, no scripts, fonts or images, and a Content-Security-Policy of ``default-src 'none'`` enforces it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jinja2

from gapseal import __version__
from gapseal.audit.results import STATUS_ORDER, Status, worst_status

if TYPE_CHECKING:
    from gapseal.audit.evidence import ControlInfo, EvidenceFile
    from gapseal.audit.results import Results, RuleResult

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; font-src 'none'; script-src 'none'; "
    "connect-src 'none'; base-uri 'none'; form-action 'none'"
)
"""The page's CSP: nothing may load or connect; only the inline stylesheet applies."""

OTHER_FRAMEWORK = "Other"


@dataclass(frozen=True)
class ControlRow:
    """One control's line in the summary."""

    id: str
    title: str
    status: Status
    rules: tuple[str, ...]
    failing: tuple[str, ...]
    """``host: rule`` for every failing or unknown result that supports the control."""


@dataclass(frozen=True)
class FrameworkRow:
    """One framework's block in the summary."""

    name: str
    status: Status
    controls: tuple[ControlRow, ...]

    @property
    def compliant(self) -> bool:
        """True when every control of the framework is satisfied (pass or waived)."""
        return self.status in ("pass", "waived")


def _frameworks(results: Results, controls: Mapping[str, ControlInfo]) -> list[FrameworkRow]:
    rules_by_control: dict[str, list[tuple[str, RuleResult]]] = {}
    for h in results.hosts:
        for r in h.rules:
            for c in r.controls:
                rules_by_control.setdefault(c, []).append((h.host, r))
    by_framework: dict[str, list[ControlRow]] = {}
    # The catalog's order (frameworks and controls as the catalog lists them), then ids it lacks, sorted.
    for cid in [*controls, *sorted(set(rules_by_control) - set(controls))]:
        info = controls.get(cid)
        pairs = rules_by_control.get(cid, [])
        statuses = [r.status for _, r in pairs]
        row = ControlRow(
            id=cid,
            title=info.title if info else cid,
            status=worst_status(statuses) if statuses else "unknown",
            rules=tuple(sorted({r.rule for _, r in pairs})),
            failing=tuple(f"{h}: {r.rule}" for h, r in pairs if r.status in ("fail", "unknown")),
        )
        by_framework.setdefault(info.framework if info else OTHER_FRAMEWORK, []).append(row)
    return [
        FrameworkRow(name, worst_status(c.status for c in rows), tuple(rows))
        for name, rows in sorted(by_framework.items(), key=lambda kv: kv[0] == OTHER_FRAMEWORK)  # stable: Other last
    ]


def _sort_key(r: RuleResult) -> tuple[int, str]:
    return (STATUS_ORDER.index(r.status), r.rule)


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("gapseal.audit", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_report(
    results: Results,
    *,
    controls: Mapping[str, ControlInfo],
    evidence_files: Sequence[EvidenceFile],
    bundle_manifest_digests: Mapping[str, str | None],
    verify_command: str,
) -> str:
    """Return the report page for ``results`` as one HTML string (UTF-8, self-contained)."""
    hosts = [
        {
            "name": h.host,
            "status": h.status,
            "compliant": h.compliant,
            "facts": h.facts,
            "facts_digest": h.facts_digest,
            "bundle": bundle_manifest_digests.get(h.host),
            "issues": sorted((r for r in h.rules if r.status != "pass"), key=_sort_key),
            "passed": sorted((r for r in h.rules if r.status == "pass"), key=lambda r: r.rule),
        }
        for h in results.hosts
    ]
    template = _ENV.get_template("report.html.j2")
    return template.render(
        csp=CONTENT_SECURITY_POLICY,
        results=results,
        summary=results.summary,
        frameworks=_frameworks(results, controls),
        controls=controls,
        hosts=hosts,
        files=sorted(evidence_files, key=lambda f: f.path),
        verify_command=verify_command,
        version=__version__,
        generated=results.generated.isoformat(),
    )
