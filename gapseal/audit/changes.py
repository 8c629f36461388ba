"""What changed since the last audit: new, fixed and unchanged findings against a previous evidence directory.

``gapseal audit run --previous DIR`` verifies DIR first (the same offline check as ``gapseal evidence verify``, with
the auditor's own public key and any trust file given) and only then reads its ``results.json``: a comparison with
evidence nobody can vouch for would be worthless. The comparison is written as ``changes.json`` (kind
``AuditChanges``), signed with the rest of the evidence, and shown in the report.

A finding is one violation of a rule on a host whose result is ``fail``, ``unknown`` or ``waived``; it is known by
(host, rule, subject), so a message that words the same problem differently does not make it new. A finding present
in both runs is ``unchanged`` even when its status moved (say from fail to waived); both statuses are recorded. A
finding of a host this run did not audit is not "fixed": it is listed apart, as not reassessed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from gapseal.audit.results import Results, Severity, Status, load_results
from gapseal.errors import AuditError, EvidenceError, check_input

if TYPE_CHECKING:
    from gapseal.signing.keys import VerifyingKey

CHANGES_KIND = "AuditChanges"

_FINDING_STATUSES = ("fail", "unknown", "waived")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ChangedFinding(_Model):
    """One finding and how it stands in each run."""

    host: str = Field(description="Host name.")
    rule: str = Field(description="Rule id.")
    subject: str = Field(description="The offending thing the finding names.")
    message: str = Field(description="The finding's message (the current one; the previous one for fixed findings).")
    severity: Severity = Field(description="The rule's severity.")
    previous_status: Status | None = Field(description="Status in the previous run (None: the finding is new).")
    status: Status | None = Field(description="Status in this run (None: the finding is fixed).")


class PreviousRun(_Model):
    """The evidence this run is compared with."""

    path: str = Field(description="The previous evidence directory as given on the command line.")
    attestation_sha256: str = Field(description="sha256 of its attestation file (verified before reading).")
    generated: dt.datetime = Field(description="When the previous results were produced.")
    signer_key_id: str = Field(description="The key that verified the previous evidence.")
    policy_digest: str | None = Field(default=None, description="The policy set digest the previous run used.")


class Changes(_Model):
    """The comparison document (``changes.json``)."""

    api_version: Literal["gapseal/v1"] = Field(description="Schema version of this document.")
    kind: Literal["AuditChanges"] = Field(description="Document kind.")
    previous: PreviousRun = Field(description="What was compared against.")
    new: tuple[ChangedFinding, ...] = Field(description="Findings present now and not in the previous run.")
    fixed: tuple[ChangedFinding, ...] = Field(description="Findings of the previous run that are gone now.")
    unchanged: tuple[ChangedFinding, ...] = Field(description="Findings present in both runs.")
    policy_changed: bool = Field(
        default=False,
        description="The two runs used different policy sets: a finding may be new or fixed because a rule changed.",
    )
    not_reassessed: tuple[ChangedFinding, ...] = Field(
        default=(), description="Findings of the previous run on hosts this run did not audit (not fixed: unknown)."
    )

    def to_json(self) -> str:
        """Serialise to indented JSON (the form written to ``changes.json``)."""
        return self.model_dump_json(indent=2) + "\n"


def _findings(results: Results) -> dict[tuple[str, str, str], ChangedFinding]:
    out: dict[tuple[str, str, str], ChangedFinding] = {}
    for h in results.hosts:
        for r in h.rules:
            if r.status not in _FINDING_STATUSES:
                continue
            items = [(f.subject or f.message, f.message) for f in r.findings] or [(r.message, r.message)]
            for subject, message in items:
                out.setdefault(
                    (h.host, r.rule, subject),
                    ChangedFinding(
                        host=h.host,
                        rule=r.rule,
                        subject=subject,
                        message=message,
                        severity=r.severity,
                        previous_status=None,
                        status=r.status,
                    ),
                )
    return out


def compare_results(previous: Results, current: Results, previous_run: PreviousRun) -> Changes:
    """Compare the findings of ``current`` with those of ``previous``."""
    before, now = _findings(previous), _findings(current)
    audited = {h.host for h in current.hosts}
    new = [now[k] for k in sorted(set(now) - set(before))]
    gone = [
        before[k].model_copy(update={"previous_status": before[k].status, "status": None})
        for k in sorted(set(before) - set(now))
    ]
    fixed = [c for c in gone if c.host in audited]
    not_reassessed = [c for c in gone if c.host not in audited]
    unchanged = [
        now[k].model_copy(update={"previous_status": before[k].status}) for k in sorted(set(now) & set(before))
    ]
    return Changes(
        api_version="gapseal/v1",
        kind=CHANGES_KIND,
        previous=previous_run,
        new=tuple(new),
        fixed=tuple(fixed),
        unchanged=tuple(unchanged),
        not_reassessed=tuple(not_reassessed),
        policy_changed=previous.policy_digest != current.policy_digest,
    )


@dataclass(frozen=True)
class PreviousEvidence:
    """A previous evidence directory that verified, and its results."""

    run: PreviousRun
    results: Results


def load_previous(path: Path, trusted_keys: Sequence[VerifyingKey]) -> PreviousEvidence:
    """Verify the evidence at ``path`` with ``trusted_keys`` and read its results; raise naming what is wrong."""
    from gapseal.audit.evidence import ATTESTATION_FILE, RESULTS_FILE
    from gapseal.audit.verify_evidence import verify_evidence

    check_input(path, "previous evidence", want="directory", hint="name the evidence directory of the last audit")
    try:
        verified = verify_evidence(path, trusted_keys)
    except EvidenceError as e:
        raise AuditError(
            f"the previous evidence does not verify: {e.message}",
            where=str(path),
            hint="compare only with evidence signed by a key you trust (the auditor key, or one in --trust)",
        ) from e
    if RESULTS_FILE not in verified.files:
        raise AuditError("the previous evidence has no results.json to compare with", where=str(path))
    results = load_results(path / RESULTS_FILE)
    run = PreviousRun(
        path=str(path),
        attestation_sha256=hashlib.sha256((path / ATTESTATION_FILE).read_bytes()).hexdigest(),
        generated=results.generated,
        signer_key_id=verified.signer_key_id,
        policy_digest=results.policy_digest,
    )
    return PreviousEvidence(run=run, results=results)
