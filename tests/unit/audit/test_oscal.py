"""OSCAL 1.1 Assessment Results: validated by NIST's model (through compliance-trestle 3.x, OSCAL 1.1.3)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from trestle.oscal import OSCAL_VERSION as TRESTLE_OSCAL_VERSION
from trestle.oscal.assessment_results import AssessmentResults, Model

from gapseal.audit.evidence import EvidenceFile
from gapseal.audit.oscal import OSCAL_VERSION, build_assessment_results, control_token
from gapseal.audit.results import Results

from .evidence_fixtures import CONTROLS, compliant_rules, leaky_rules, make_facts, make_results


def _files(results: Results) -> list[EvidenceFile]:
    files = [
        EvidenceFile(h.facts, h.facts_digest.removeprefix("sha256:"), 10, "application/json", "facts", h.host)
        for h in results.hosts
    ]
    files.append(EvidenceFile("results.json", "ef" * 32, 20, "application/json", "results"))
    return files


@pytest.fixture
def results() -> Results:
    return make_results([(make_facts("h1"), leaky_rules()), (make_facts("h2"), compliant_rules())])


@pytest.fixture
def doc(results: Results) -> dict[str, Any]:
    return build_assessment_results(results, controls=CONTROLS, evidence_files=_files(results))


def _all_uuids(node: Any) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "uuid" and isinstance(v, str):
                out.append(v)
            else:
                out.extend(_all_uuids(v))
    elif isinstance(node, list):
        for v in node:
            out.extend(_all_uuids(v))
    return out


def test_validates_against_the_oscal_1_1_assessment_results_model(doc: dict[str, Any]) -> None:
    assert TRESTLE_OSCAL_VERSION.startswith("1.1.")
    assert doc["assessment-results"]["metadata"]["oscal-version"] == OSCAL_VERSION
    model = Model.parse_obj(doc)  # the whole document, top-level "assessment-results" key included
    assert len(model.assessment_results.results) == 1
    assert isinstance(model.assessment_results, AssessmentResults)


def test_invalid_document_is_rejected_by_the_model(doc: dict[str, Any]) -> None:
    """The validator is not a rubber stamp: a finding without a target fails."""
    bad = json.loads(json.dumps(doc))
    del bad["assessment-results"]["results"][0]["findings"][0]["target"]
    with pytest.raises(Exception, match="target"):
        AssessmentResults.parse_obj(bad["assessment-results"])


def test_same_results_give_byte_identical_document(results: Results) -> None:
    a = build_assessment_results(results, controls=CONTROLS, evidence_files=_files(results))
    b = build_assessment_results(results, controls=CONTROLS, evidence_files=_files(results))
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_uuids_are_unique_v5(doc: dict[str, Any]) -> None:
    ids = _all_uuids(doc)
    assert len(ids) == len(set(ids))
    assert all(uuid.UUID(i).version == 5 for i in ids)


def test_different_results_give_different_document_uuid(results: Results) -> None:
    other = make_results([(make_facts("h1"), compliant_rules())])
    a = build_assessment_results(results, controls=CONTROLS, evidence_files=_files(results))
    b = build_assessment_results(other, controls=CONTROLS, evidence_files=_files(other))
    assert a["assessment-results"]["uuid"] != b["assessment-results"]["uuid"]


def test_findings_per_control_with_target_status(doc: dict[str, Any]) -> None:
    findings = doc["assessment-results"]["results"][0]["findings"]
    by_target = {f["target"]["target-id"]: f["target"]["status"]["state"] for f in findings}
    assert by_target == {
        "eu-ai-act-art-12": "not-satisfied",  # waived on h2, passed on h1: a waiver never satisfies
        "eu-ai-act-art-15": "not-satisfied",  # EGRESS-001 failed on h1
        "hipaa-164.312-b": "not-satisfied",  # waived on h2
        "hipaa-164.312-c-1": "not-satisfied",  # INTEGRITY-001 unknown on h1: unknown is not compliant
        "hipaa-164.312-e-1": "not-satisfied",
    }
    gapseal_state = {
        f["target"]["target-id"]: {p["name"]: p["value"] for p in f["props"]}["control-status"] for f in findings
    }
    assert gapseal_state == {
        "eu-ai-act-art-12": "waived",
        "eu-ai-act-art-15": "not-satisfied",
        "hipaa-164.312-b": "waived",
        "hipaa-164.312-c-1": "unknown",
        "hipaa-164.312-e-1": "not-satisfied",
    }
    reasons = {f["target"]["target-id"]: f["target"]["status"]["reason"] for f in findings}
    assert reasons["eu-ai-act-art-12"] == "other"
    assert reasons["eu-ai-act-art-15"] == "fail"
    titles = {f["target"]["target-id"]: f["title"] for f in findings}
    assert titles["hipaa-164.312-e-1"] == "HIPAA 45 CFR 164.312(e)(1) Transmission security"


def test_observations_have_host_subject_and_hashed_evidence_links(doc: dict[str, Any]) -> None:
    ar = doc["assessment-results"]
    result = ar["results"][0]
    items = {i["uuid"]: i for i in result["local-definitions"]["inventory-items"]}
    resources = {r["uuid"]: r for r in ar["back-matter"]["resources"]}
    obs = {o["title"]: o for o in result["observations"]}
    o = obs["EGRESS-001 on h1: fail"]
    assert o["subjects"][0]["type"] == "inventory-item"
    assert items[o["subjects"][0]["subject-uuid"]]["props"][0]["value"] == "h1"
    links = [e["href"] for e in o["relevant-evidence"]]
    targets = [resources[h.removeprefix("#")]["rlinks"][0] for h in links]
    assert [t["href"] for t in targets] == ["facts/h1.json", "results.json"]
    assert all(re.fullmatch(r"[0-9a-f]{64}", t["hashes"][0]["value"]) for t in targets)
    assert targets[0]["hashes"][0]["algorithm"] == "SHA-256"
    assert "/routes" in o["relevant-evidence"][0]["description"]
    assert len(result["observations"]) == 6  # 2 hosts x 3 rules


def test_waiver_is_a_deviation_approved_risk_with_deadline(doc: dict[str, Any]) -> None:
    risks = doc["assessment-results"]["results"][0]["risks"]
    waived = [r for r in risks if r["status"] == "deviation-approved"]
    assert len(waived) == 1
    assert waived[0]["deadline"] == "2027-01-31T23:59:59Z"
    assert "central log host pending" in waived[0]["description"]
    assert {p["name"]: p["value"] for p in waived[0]["props"]}["waiver-approver"] == "ciso@example.org"
    open_risks = sorted(r["title"] for r in risks if r["status"] == "open")
    assert open_risks == ["EGRESS-001 on h1: title of EGRESS-001", "INTEGRITY-001 on h1: title of INTEGRITY-001"]


def test_import_ap_points_at_the_policy_set_resource(doc: dict[str, Any], results: Results) -> None:
    ar = doc["assessment-results"]
    href = ar["import-ap"]["href"]
    plan = next(r for r in ar["back-matter"]["resources"] if f"#{r['uuid']}" == href)
    assert results.policy_digest in plan["description"]


@pytest.mark.parametrize(
    ("control", "token"),
    [
        ("hipaa-164.312(a)(2)(iv)", "hipaa-164.312-a-2-iv"),
        ("HIPAA 164.308(a)(1)(ii)(D)", "HIPAA-164.308-a-1-ii-D"),
        ("eu-ai-act-art-15", "eu-ai-act-art-15"),
        ("15", "c-15"),
    ],
)
def test_control_token(control: str, token: str) -> None:
    assert control_token(control) == token
