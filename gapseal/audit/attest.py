"""The evidence attestation: an in-toto Statement v1 over every evidence file, signed with the auditor's key.

Subjects are the evidence directory's files by relative POSIX path (``facts/h1.json``, ``report.html``, ...) with
their SHA-256; the attestation file itself is the only file not among them. The predicate says what the evidence
concludes and what it was measured against:

``summary``
    the results' counts and verdict (``compliant``), per host;
``bundle``
    the signed bundle manifest digest(s) the hosts were installed from (from each host's ``installed.json``);
``policies``
    the policy set digest and the engine that evaluated it;
``tool``
    gapseal's name and version;
``time``
    when the results were produced (UTC, RFC 3339);
``layout``
    the evidence directory layout version;
``signer``
    the signing key's id and OpenSSH fingerprint, and its name in the trust file given to ``audit run`` (what the
    signer says of itself: ``evidence verify`` checks the key id against the key that verified);
``scope``
    organisation, system and assessor from the site file, with its sha256 (all null without a site file);
``hosts``
    per host: OS, kernel, addresses, collection time and installed bundle;
``controls``
    how many controls are satisfied, not satisfied, unknown, waived and not assessed;
``report``
    whether a PDF print of the report was made, and why not;
``previous``
    the previous evidence compared with (``--previous``) and the counts of new, fixed and unchanged findings, or null.

The statement goes into a DSSE envelope inside a Sigstore bundle v0.3 (``gapseal.signing.attestation``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gapseal import __version__
from gapseal.signing.attestation import Subject, sign_statement

if TYPE_CHECKING:
    from gapseal.audit.changes import Changes
    from gapseal.audit.controls import ControlAssessment
    from gapseal.audit.evidence import EvidenceFile
    from gapseal.audit.report_pdf import PdfOutcome
    from gapseal.audit.results import Results
    from gapseal.audit.scope import AuditScope, HostProfile, Signer
    from gapseal.signing.keys import SigningKey

EVIDENCE_PREDICATE_TYPE = "https://gapseal.dev/attestation/audit-evidence/v1"
"""The predicate type of an evidence attestation; ``evidence verify`` accepts no other."""

EVIDENCE_LAYOUT = "gapseal-evidence/v1"
"""The evidence directory layout this gapseal writes and verifies."""


def _utc(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def build_predicate(
    results: Results,
    *,
    bundle_manifest_digests: Mapping[str, str | None],
    signer: Signer | None = None,
    scope: AuditScope | None = None,
    profiles: Sequence[HostProfile] = (),
    controls: Mapping[str, ControlAssessment] | None = None,
    pdf: PdfOutcome | None = None,
    changes: Changes | None = None,
) -> dict[str, Any]:
    """Return the attestation predicate for ``results``.

    ``bundle_manifest_digests`` maps each host to the bundle manifest digest its install record names (None when
    the host has no install record).
    """
    s = results.summary
    digests = sorted({d for d in bundle_manifest_digests.values() if d})
    extra: dict[str, Any] = {}
    if signer is not None:
        extra["signer"] = signer.as_data()
    if scope is not None:
        extra["scope"] = scope.as_data()
    if profiles:
        extra["hosts"] = [
            {
                "host": p.host,
                "os": p.os,
                "kernel": p.kernel,
                "addresses": list(p.addresses),
                "collected_at": _utc(p.collected_at),
                "bundle": {"name": p.bundle_name, "version": p.bundle_version, "manifest_digest": p.manifest_digest},
            }
            for p in profiles
        ]
    if controls is not None:
        states = ("satisfied", "not-satisfied", "unknown", "waived", "not-assessed")
        extra["controls"] = {st: sorted(c.id for c in controls.values() if c.state == st) for st in states}
    if pdf is not None:
        extra["report"] = {"html": "report.html", "pdf": pdf.as_data()}
    extra["previous"] = (
        None
        if changes is None
        else {
            **changes.previous.model_dump(mode="json"),
            "new": len(changes.new),
            "fixed": len(changes.fixed),
            "unchanged": len(changes.unchanged),
            "not_reassessed": len(changes.not_reassessed),
            "policy_changed": changes.policy_changed,
        }
    )
    return {
        **extra,
        "layout": EVIDENCE_LAYOUT,
        "summary": {
            "compliant": s.compliant,
            "hosts": s.hosts,
            "rules": s.rules,
            "passed": s.passed,
            "failed": s.failed,
            "waived": s.waived,
            "unknown": s.unknown,
            "by_severity": [c.model_dump(mode="json") for c in s.by_severity],
            "per_host": [
                {
                    "host": h.host,
                    "status": h.status,
                    "compliant": h.compliant,
                    "failed_rules": sorted(r.rule for r in h.rules if r.status in ("fail", "unknown")),
                }
                for h in results.hosts
            ],
        },
        "bundle": {
            "manifest_digests": digests,
            "per_host": {host: bundle_manifest_digests.get(host) for host in sorted(bundle_manifest_digests)},
        },
        "policies": {"digest": results.policy_digest, "engine": results.engine, "waivers": results.waivers_digest},
        "tool": {"name": "gapseal", "version": __version__},
        "time": _utc(results.generated),
    }


def sign_evidence(files: Sequence[EvidenceFile], predicate: Mapping[str, Any], key: SigningKey) -> bytes:
    """Sign a statement whose subjects are ``files`` and return the Sigstore bundle JSON bytes."""
    subjects = [Subject(name=f.path, sha256=f.sha256) for f in sorted(files, key=lambda f: f.path)]
    return sign_statement(subjects, EVIDENCE_PREDICATE_TYPE, predicate, key)
