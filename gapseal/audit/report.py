"""The HTML report: one self-contained page an auditor can open anywhere, offline (and its PDF print).

First who signed it (key id, fingerprint, trust-file name) and what was assessed (organisation, system, assessor from
the site file; per host its OS, kernel, addresses, collection time and installed bundle). Then the verdict with counts
by status and by severity (waived apart from passed), the changes since the previous evidence, each framework and
control (satisfied, not satisfied, unknown, waived or not assessed, as ``gapseal.audit.controls.assess_controls``
decides, with the rationale of every citation), each host's findings with remediation and, for every finding, the raw
evidence file behind it and the command that produced that file; last the evidence files with their SHA-256 and the
exact command that verifies the signature.

Everything from facts and results is escaped (Jinja2 autoescaping): facts are attacker-controlled strings. The page
loads nothing: inline CSS only, no scripts, fonts or images, and a Content-Security-Policy of ``default-src 'none'``
enforces it. Links to evidence files are relative, so they work wherever the directory is opened.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jinja2

from gapseal import __version__
from gapseal.audit.controls import ControlAssessment, ControlState, assess_controls, worst_control_state
from gapseal.audit.provenance import SourceLink, source_links
from gapseal.audit.results import STATUS_ORDER
from gapseal.audit.scope import NO_SCOPE, AuditScope, HostProfile, Signer

if TYPE_CHECKING:
    from gapseal.audit.changes import Changes
    from gapseal.audit.evidence import ControlInfo, EvidenceFile
    from gapseal.audit.facts import HostFacts
    from gapseal.audit.results import Finding, Results, RuleResult

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
    requires: str
    assessment: ControlAssessment
    rationales: tuple[tuple[str, str], ...]
    """(rule, why it is evidence for this control) for every rule that ran and cites it."""

    @property
    def status(self) -> ControlState:
        """The control's state."""
        return self.assessment.state


@dataclass(frozen=True)
class FrameworkRow:
    """One framework's block in the summary."""

    name: str
    controls: tuple[ControlRow, ...]

    @property
    def status(self) -> ControlState:
        """The worst state of its assessed controls (``not-assessed`` when none was)."""
        return worst_control_state(c.status for c in self.controls if c.status != "not-assessed")

    def count(self, state: str) -> int:
        """How many of its controls are in ``state``."""
        return sum(1 for c in self.controls if c.status == state)


def _frameworks(results: Results, controls: Mapping[str, ControlInfo]) -> list[FrameworkRow]:
    assessments = assess_controls(results, controls)
    by_framework: dict[str, list[ControlRow]] = {}
    # The catalog's order (frameworks and controls as the catalog lists them), then ids it lacks, sorted.
    for cid, a in assessments.items():
        info = controls.get(cid)
        row = ControlRow(
            id=cid,
            title=info.title if info else cid,
            requires=" ".join(info.requires.split()) if info else "",
            assessment=a,
            rationales=tuple((rule, info.rationale(rule) or "no rationale recorded") for rule in a.rules)
            if info
            else tuple((rule, "no rationale recorded") for rule in a.rules),
        )
        by_framework.setdefault(info.framework if info else OTHER_FRAMEWORK, []).append(row)
    return [
        FrameworkRow(name, tuple(rows))
        for name, rows in sorted(by_framework.items(), key=lambda kv: kv[0] == OTHER_FRAMEWORK)  # stable: Other last
    ]


@dataclass(frozen=True)
class FindingView:
    """One violation as the page shows it, with the raw evidence behind it."""

    finding: Finding
    sources: tuple[SourceLink, ...]


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
    signer: Signer | None = None,
    scope: AuditScope = NO_SCOPE,
    profiles: Sequence[HostProfile] = (),
    facts: Mapping[str, HostFacts] | None = None,
    changes: Changes | None = None,
    pdf_note: str | None = None,
) -> str:
    """Return the report page for ``results`` as one HTML string (UTF-8, self-contained)."""
    facts = facts or {}
    paths = {f.path for f in evidence_files}
    waivers_file = "inputs/waivers.yaml" if "inputs/waivers.yaml" in paths else None
    site_copy = "inputs/site.yaml" if "inputs/site.yaml" in paths else None
    bundles = sorted(
        {f"{p.bundle} ({p.manifest_digest})" if p.manifest_digest else str(p.bundle) for p in profiles if p.bundle}
    )
    profile_of = {p.host: p for p in profiles}

    def views(host: str, r: RuleResult) -> list[FindingView]:
        host_facts = facts.get(host)
        out = []
        for f in r.findings:
            links = source_links(host, host_facts, f.evidence) if host_facts is not None else ()
            out.append(FindingView(f, tuple(s for s in links if s.raw_file is None or s.raw_file in paths)))
        return out

    hosts = [
        {
            "name": h.host,
            "status": h.status,
            "compliant": h.compliant,
            "facts": h.facts,
            "facts_digest": h.facts_digest,
            "bundle": bundle_manifest_digests.get(h.host),
            "profile": profile_of.get(h.host),
            "issues": [
                {"rule": r, "views": views(h.host, r)}
                for r in sorted((r for r in h.rules if r.status != "pass"), key=_sort_key)
            ],
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
        signer=signer,
        scope=scope,
        changes=changes,
        pdf_note=pdf_note,
        waivers_file=waivers_file,
        site_copy=site_copy,
        bundles=bundles,
    )


_HREF = re.compile(r'(<a\b[^>]*?)\s+href="[^"]*"')


def printable(html: str) -> str:
    """The page as it is printed to PDF: links become plain text.

    Chromium turns every link into an absolute ``file://`` URI of the directory it printed from (the evidence's
    temporary directory), which would be dead and would leak a local path; the file names stay readable as text.
    Attribute values are escaped by the template, so a ``"`` never occurs inside one.
    """
    return _HREF.sub(r"\1", html)
