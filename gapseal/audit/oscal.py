"""OSCAL 1.1 Assessment Results from an audit's results: the machine-readable form an assessor's tools import.

The document follows NIST OSCAL 1.1.3 (``assessment-results``):

- ``metadata``: gapseal as the tool party, the assessor and the organisation from the site file as parties, the
  signer (key id, OpenSSH fingerprint, trust-file name) and the scope (system, site file digest) as props, the audit
  time as ``last-modified``;
- ``import-ap``: points at a back-matter resource describing the assessment plan, i.e. the policy set by digest
  (gapseal has no separate assessment-plan document; the policies are the plan);
- ``results[0]``: one result for the run, with the hosts as inventory items (OS, kernel, addresses, collection time,
  installed bundle), gapseal as the tool component, ``reviewed-controls`` listing every control the policies support,
  one observation per host and rule (subject: the host; relevant evidence: the raw files behind the finding with the
  command that produced each, the host's facts file and the results file, each a back-matter resource with its
  SHA-256), one finding per control, and one risk per waiver (status ``deviation-approved`` with the waiver's expiry
  as deadline; an expired waiver's risk is ``open``) and per failing or unknown rule (status ``open``);
- a control's finding follows ``gapseal.audit.controls.assess_controls``: only ``satisfied`` is OSCAL ``satisfied``;
  ``waived``, ``unknown`` and ``not-assessed`` are ``not-satisfied`` with reason ``other``, the gapseal state in the
  ``control-status`` prop and the counts (passed, failed, unknown, waived apart) beside it;
- ``back-matter``: one resource per evidence file, with its relative path and SHA-256.

Every UUID is a UUIDv5 derived from the document's seed and the object's identity, so the same results produce the
same document byte for byte.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gapseal import __version__
from gapseal.audit.controls import ControlAssessment, assess_controls
from gapseal.audit.provenance import source_links
from gapseal.canonical import canonical_json

if TYPE_CHECKING:
    from gapseal.audit.changes import Changes
    from gapseal.audit.evidence import ControlInfo, EvidenceFile
    from gapseal.audit.facts import HostFacts
    from gapseal.audit.results import Results, RuleResult
    from gapseal.audit.scope import AuditScope, HostProfile, Signer

OSCAL_VERSION = "1.1.3"
"""The OSCAL release whose Assessment Results model this module writes."""

GAPSEAL_NS = "https://gapseal.invalid/ns/oscal"
"""Namespace of gapseal's own OSCAL properties (``ns`` on every non-core prop)."""

_UUID_ROOT = uuid.uuid5(uuid.NAMESPACE_URL, GAPSEAL_NS)
_TOKEN_BAD = re.compile(r"[^A-Za-z0-9_.\-]")


def control_token(control_id: str) -> str:
    """Map a catalog control id to an OSCAL token (``164.312(a)(1)`` becomes ``164.312-a-1``).

    OSCAL control ids are tokens (no spaces, no parentheses); the original id is kept in the finding's title.
    """
    token = _TOKEN_BAD.sub("-", control_id).strip("-")
    token = re.sub(r"-{2,}", "-", token)
    if not token or not (token[0].isalpha() or token[0] == "_"):
        token = f"c-{token}"
    return token


def _timestamp(value: dt.datetime) -> str:
    """RFC 3339 with an explicit offset, as OSCAL's date-time-with-timezone requires."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _deadline(day: dt.date) -> str:
    """End of the waiver's last valid day, UTC."""
    return _timestamp(dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=dt.UTC))


def _prop(name: str, value: str) -> dict[str, str]:
    # OSCAL string values may not start or end with whitespace, nor span lines.
    return {"name": name, "ns": GAPSEAL_NS, "value": " ".join(value.split()) or "-"}


class _Ids:
    """Deterministic UUIDv5 per object, all under the document's seed."""

    def __init__(self, seed: str) -> None:
        self._root = uuid.uuid5(_UUID_ROOT, seed)

    def __call__(self, *parts: str) -> str:
        return str(uuid.uuid5(self._root, "\x1f".join(parts)))


def document_seed(results: Results) -> str:
    """Return the seed of the document's UUIDs: the digest of the results' canonical JSON."""
    return hashlib.sha256(canonical_json(results.model_dump(mode="json"))).hexdigest()


def build_assessment_results(
    results: Results,
    *,
    controls: Mapping[str, ControlInfo],
    evidence_files: Sequence[EvidenceFile],
    started: dt.datetime | None = None,
    title: str = "gapseal audit: air-gap, telemetry, residency and integrity controls",
    signer: Signer | None = None,
    scope: AuditScope | None = None,
    profiles: Sequence[HostProfile] = (),
    facts: Mapping[str, HostFacts] | None = None,
    changes: Changes | None = None,
) -> dict[str, Any]:
    """Return the OSCAL 1.1 ``assessment-results`` document (a JSON-compatible dict) for ``results``.

    ``controls`` maps every control id a rule names to its catalog entry; ``evidence_files`` are the files the
    observations link to (facts, raw outputs, inputs, results), each with its SHA-256. ``signer``, ``scope`` and
    ``profiles`` name who signed, what was assessed and each host; ``facts`` (per host) lets each observation link the
    raw files behind its finding; ``changes`` is the comparison with a previous run.
    """
    ids = _Ids(document_seed(results))
    finished = results.generated
    begun = started or finished
    tool_uuid = ids("component", "gapseal")
    party_uuid = ids("party", "gapseal")
    plan_uuid = ids("resource", "assessment-plan")
    facts = facts or {}
    profile_of = {p.host: p for p in profiles}

    resources: list[dict[str, Any]] = [
        {
            "uuid": plan_uuid,
            "title": "gapseal policy set (assessment plan)",
            "description": (
                "The Rego policies, data files and controls catalog gapseal evaluated; "
                f"policy set digest {results.policy_digest}; engine {results.engine}."
            ),
            "props": [_prop("policy-digest", results.policy_digest), _prop("engine", results.engine)],
        }
    ]
    resource_by_path: dict[str, str] = {}
    for ef in sorted(evidence_files, key=lambda f: f.path):
        rid = ids("evidence", ef.path)
        resource_by_path[ef.path] = rid
        resources.append(
            {
                "uuid": rid,
                "title": ef.path,
                "description": ef.description,
                "props": [_prop("evidence-size", str(ef.size))],
                "rlinks": [
                    {
                        "href": ef.path,
                        "media-type": ef.media_type,
                        "hashes": [{"algorithm": "SHA-256", "value": ef.sha256}],
                    }
                ],
            }
        )

    host_uuid = {h.host: ids("host", h.host) for h in results.hosts}
    inventory = [
        {
            "uuid": host_uuid[h.host],
            "description": f"Audited host {h.host}",
            "props": [
                _prop("host-name", h.host),
                _prop("facts-digest", h.facts_digest),
                *_profile_props(profile_of.get(h.host)),
            ],
        }
        for h in results.hosts
    ]

    observations: list[dict[str, Any]] = []
    risks: list[dict[str, Any]] = []
    obs_by_control: dict[str, list[str]] = {}
    risks_by_control: dict[str, list[str]] = {}
    results_rid = resource_by_path.get("results.json")
    waivers_rid = resource_by_path.get("inputs/waivers.yaml")
    for h in results.hosts:
        facts_rid = resource_by_path.get(h.facts)
        profile = profile_of.get(h.host)
        collected = profile.collected_at if profile is not None else finished
        host_facts = facts.get(h.host)
        for r in h.rules:
            oid = ids("observation", h.host, r.rule)
            raw: list[dict[str, Any]] = []
            if host_facts is not None and r.status != "pass":
                for link in source_links(h.host, host_facts, r.evidence):
                    entry: dict[str, Any] = {
                        "description": f"{link.command} ({link.domain}): {link.note or 'raw output'}."
                    }
                    if link.raw_file is not None and link.raw_file in resource_by_path:
                        entry = {
                            "href": f"#{resource_by_path[link.raw_file]}",
                            "description": f"Output of {link.command} ({link.domain}).",
                        }
                    raw.append(entry)
            if waivers_rid is not None and (r.waiver is not None or r.rule == "WAIVER-EXPIRED") and r.status != "pass":
                raw.append({"href": f"#{waivers_rid}", "description": "The waivers file this audit applied."})
            observations.append(
                _observation(
                    oid, h.host, host_uuid[h.host], r, facts_rid, results_rid, tool_uuid, collected, h.facts, raw
                )
            )
            risk = _risk(ids, h.host, r, oid, tool_uuid)
            for c in r.controls:
                obs_by_control.setdefault(c, []).append(oid)
                if risk is not None:
                    risks_by_control.setdefault(c, []).append(risk["uuid"])
            if risk is not None:
                risks.append(risk)

    assessments = assess_controls(results, controls)
    control_ids = sorted(assessments)
    findings = [
        _finding(
            ids("finding", cid),
            cid,
            controls.get(cid),
            assessments[cid],
            obs_by_control.get(cid, []),
            risks_by_control.get(cid, []),
            tool_uuid,
        )
        for cid in control_ids
    ]
    states = [a.state for a in assessments.values()]

    result: dict[str, Any] = {
        "uuid": ids("result", "run"),
        "title": "gapseal audit run",
        "description": (
            f"{results.summary.hosts} host(s), {results.summary.rules} rule(s): {results.summary.passed} passed, "
            f"{results.summary.failed} failed, {results.summary.waived} waived, {results.summary.unknown} unknown. "
            + ("Compliant." if results.compliant else "Not compliant.")
        ),
        "start": _timestamp(begun),
        "end": _timestamp(finished),
        "props": [
            _prop("compliant", "true" if results.compliant else "false"),
            *[
                _prop(f"controls-{st}", str(states.count(st)))
                for st in ("satisfied", "not-satisfied", "unknown", "waived", "not-assessed")
            ],
            *[
                _prop(f"{c.severity}-{k}", str(getattr(c, k)))
                for c in results.summary.by_severity
                for k in ("failed", "unknown", "waived")
            ],
            *(
                [
                    _prop("previous-attestation-sha256", changes.previous.attestation_sha256),
                    _prop("findings-new", str(len(changes.new))),
                    _prop("findings-fixed", str(len(changes.fixed))),
                    _prop("findings-unchanged", str(len(changes.unchanged))),
                    _prop("findings-not-reassessed", str(len(changes.not_reassessed))),
                ]
                if changes is not None
                else []
            ),
        ],
        "local-definitions": {
            "components": [
                {
                    "uuid": tool_uuid,
                    "type": "software",
                    "title": "gapseal",
                    "description": f"gapseal {__version__}: fact collectors and Rego policy evaluation.",
                    "props": [_prop("version", __version__)],
                    "status": {"state": "operational"},
                }
            ],
            **({"inventory-items": inventory} if inventory else {}),
        },
        "reviewed-controls": {
            "control-selections": [
                {
                    "description": "Every control the gapseal policies support.",
                    **(
                        {"include-controls": [{"control-id": control_token(c)} for c in control_ids]}
                        if control_ids
                        else {"include-all": {}}
                    ),
                }
            ]
        },
    }
    if observations:
        result["observations"] = observations
    if risks:
        result["risks"] = risks
    if findings:
        result["findings"] = findings

    return {
        "assessment-results": {
            "uuid": ids("assessment-results"),
            "metadata": _metadata(ids, title, finished, party_uuid, signer, scope, profiles),
            "import-ap": {"href": f"#{plan_uuid}", "remarks": "The assessment plan is the signed gapseal policy set."},
            "results": [result],
            "back-matter": {"resources": resources},
        }
    }


def _metadata(
    ids: _Ids,
    title: str,
    finished: dt.datetime,
    tool_party: str,
    signer: Signer | None,
    scope: AuditScope | None,
    profiles: Sequence[HostProfile] = (),
) -> dict[str, Any]:
    """Metadata: tool, assessor and organisation as parties; signer, scope and installed bundles as props."""
    parties: list[dict[str, Any]] = [{"uuid": tool_party, "type": "organization", "name": "gapseal"}]
    roles = [{"id": "assessor", "title": "Assessor"}]
    responsible = [{"role-id": "assessor", "party-uuids": [tool_party]}]
    props: list[dict[str, str]] = []
    if scope is not None and scope.stated:
        if scope.assessor:
            assessor = ids("party", "assessor", scope.assessor)
            parties.append({"uuid": assessor, "type": "person", "name": " ".join(scope.assessor.split())})
            responsible = [{"role-id": "assessor", "party-uuids": [assessor, tool_party]}]
        if scope.organisation:
            org = ids("party", "organisation", scope.organisation)
            parties.append({"uuid": org, "type": "organization", "name": " ".join(scope.organisation.split())})
            roles.append({"id": "system-owner", "title": "System owner"})
            responsible.append({"role-id": "system-owner", "party-uuids": [org]})
        props += [_prop(k, v) for k, v in (("system", scope.system), ("scope-description", scope.description)) if v]
        props += [_prop("site-file", scope.site_file or "-"), _prop("site-digest", scope.site_digest or "-")]
    elif scope is not None:
        props.append(_prop("scope", scope.note))
    bundles = {(p.bundle_name, p.bundle_version, p.manifest_digest) for p in profiles if p.bundle_name is not None}
    for name, version, digest in sorted(bundles, key=str):
        props.append(_prop("bundle", f"{name} {version or '-'} {digest or '-'}"))
    if signer is not None:
        props += [_prop("signer-key-id", signer.key_id), _prop("signer-fingerprint", signer.fingerprint)]
        if signer.name is not None:
            props.append(_prop("signer-name", signer.name))
    metadata: dict[str, Any] = {
        "title": title,
        "last-modified": _timestamp(finished),
        "version": __version__,
        "oscal-version": OSCAL_VERSION,
        "roles": roles,
        "parties": parties,
        "responsible-parties": responsible,
    }
    if props:
        metadata["props"] = props
    return metadata


def _profile_props(profile: HostProfile | None) -> list[dict[str, str]]:
    """An inventory item's props: OS, kernel, addresses, collection time, installed bundle."""
    if profile is None:
        return []
    props = [
        _prop("os", profile.os or "not recorded"),
        _prop("kernel", profile.kernel),
        _prop("collected", _timestamp(profile.collected_at)),
    ]
    props += [_prop("address", a) for a in profile.addresses]
    if profile.bundle_name is not None:
        props += [_prop("bundle-name", profile.bundle_name), _prop("bundle-version", profile.bundle_version or "-")]
    if profile.manifest_digest is not None:
        props.append(_prop("bundle-manifest-digest", profile.manifest_digest))
    return props


def _observation(
    oid: str,
    host: str,
    host_uuid: str,
    r: RuleResult,
    facts_rid: str | None,
    results_rid: str | None,
    tool_uuid: str,
    collected: dt.datetime,
    facts_path: str,
    raw: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    evidence: list[dict[str, Any]] = list(raw)
    if facts_rid is not None:
        pointers = ", ".join(r.evidence) if r.evidence else "the whole document"
        evidence.append({"href": f"#{facts_rid}", "description": f"Facts of {host} ({facts_path}): {pointers}."})
    if results_rid is not None:
        evidence.append({"href": f"#{results_rid}", "description": f"Result of rule {r.rule} on {host}."})
    obs: dict[str, Any] = {
        "uuid": oid,
        "title": f"{r.rule} on {host}: {r.status}",
        "description": f"{r.title}. {r.message}",
        "props": [
            _prop("rule-id", r.rule),
            _prop("rule-status", r.status),
            _prop("severity", r.severity),
            _prop("policy-package", r.package),
        ],
        "methods": ["TEST"],
        "types": ["finding"] if r.status in ("fail", "unknown") else ["control-objective"],
        "origins": [{"actors": [{"type": "tool", "actor-uuid": tool_uuid}]}],
        "subjects": [{"subject-uuid": host_uuid, "type": "inventory-item", "title": host}],
        "collected": _timestamp(collected),
    }
    if evidence:
        obs["relevant-evidence"] = evidence
    return obs


def _risk(ids: _Ids, host: str, r: RuleResult, oid: str, tool_uuid: str) -> dict[str, Any] | None:
    if r.status == "pass":
        return None
    risk: dict[str, Any] = {
        "uuid": ids("risk", host, r.rule),
        "title": f"{r.rule} on {host}: {r.title}",
        "description": r.description or r.title,
        "statement": r.message,
        "props": [_prop("rule-id", r.rule), _prop("severity", r.severity)],
        "origins": [{"actors": [{"type": "tool", "actor-uuid": tool_uuid}]}],
        "related-observations": [{"observation-uuid": oid}],
    }
    w = r.waiver
    if w is not None:
        risk["props"] += [_prop("waiver-approver", w.approver), _prop("waiver-expires", w.expires.isoformat())]
        risk["deadline"] = _deadline(w.expires)
    if r.status == "waived" and w is not None:
        risk["status"] = "deviation-approved"
        risk["description"] = f"Waived until {w.expires.isoformat()} by {w.approver}: {w.justification}"
    elif w is not None:
        risk["status"] = "open"
        risk["description"] = f"Waiver by {w.approver} expired on {w.expires.isoformat()}: {w.justification}"
    else:
        risk["status"] = "open"
        risk["description"] = f"{r.description or r.title} Remediation: {r.remediation}"
    return risk


def _finding(
    fid: str,
    control_id: str,
    info: ControlInfo | None,
    assessment: ControlAssessment,
    observation_uuids: list[str],
    risk_uuids: list[str],
    tool_uuid: str,
) -> dict[str, Any]:
    a = assessment
    counts = f"{a.passed} passed, {a.failed} failed, {a.unknown} unknown, {a.waived} waived"
    reason_text = {
        "satisfied": f"Satisfied: every rule that is evidence for this control passed on every host ({counts}).",
        "not-satisfied": f"Not satisfied: a supporting rule failed ({counts}).",
        "unknown": f"Not satisfied: a supporting rule could not be decided ({counts}).",
        "waived": f"Not satisfied: a supporting rule is waived, an accepted deviation ({counts}).",
        "not-assessed": "Not assessed: no rule that is evidence for this control ran"
        + (f" (cited only by {', '.join(a.rules)}, whose passing assesses nothing)." if a.rules else "."),
    }[a.state]
    title = f"{info.framework} {info.title}" if info is not None else control_id
    finding: dict[str, Any] = {
        "uuid": fid,
        "title": title,
        "description": f"{control_id}: {reason_text}",
        "props": [_prop("control-id", control_id)]
        + ([_prop("framework", info.framework)] if info is not None else [])
        + [
            _prop("control-status", a.state),
            _prop("results-passed", str(a.passed)),
            _prop("results-failed", str(a.failed)),
            _prop("results-unknown", str(a.unknown)),
            _prop("results-waived", str(a.waived)),
        ],
        "origins": [{"actors": [{"type": "tool", "actor-uuid": tool_uuid}]}],
        "target": {
            "type": "objective-id",
            "target-id": control_token(control_id),
            "title": title,
            "status": {
                "state": "satisfied" if a.state == "satisfied" else "not-satisfied",
                "reason": {"satisfied": "pass", "not-satisfied": "fail"}.get(a.state, "other"),
            },
        },
    }
    if info is not None and (info.requires or info.rationales):
        lines = [f"Requires: {' '.join(info.requires.split())}"] if info.requires else []
        lines += [f"{rule}: {why}" for rule, why in info.rationales if rule in a.rules]
        if lines:
            finding["remarks"] = "\n\n".join(lines)
    if observation_uuids:
        finding["related-observations"] = [{"observation-uuid": o} for o in observation_uuids]
    if risk_uuids:
        finding["related-risks"] = [{"risk-uuid": u} for u in risk_uuids]
    return finding
