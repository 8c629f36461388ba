"""The evidence attestation: in-toto Statement v1 over every file, verified with the real signing module."""

from __future__ import annotations

import json

import pytest

from gapseal.audit.attest import EVIDENCE_LAYOUT, EVIDENCE_PREDICATE_TYPE, build_predicate, sign_evidence
from gapseal.audit.evidence import EvidenceFile
from gapseal.errors import SignatureError
from gapseal.signing.attestation import verify_statement
from gapseal.signing.keys import SigningKey

from .evidence_fixtures import compliant_rules, leaky_rules, make_facts, make_results


def test_predicate_content() -> None:
    results = make_results([(make_facts("h1"), leaky_rules()), (make_facts("h2"), compliant_rules())])
    p = build_predicate(results, bundle_manifest_digests={"h1": "sha256:" + "cd" * 32, "h2": None})
    assert p["layout"] == EVIDENCE_LAYOUT
    assert p["summary"]["compliant"] is False
    assert (p["summary"]["failed"], p["summary"]["unknown"], p["summary"]["waived"]) == (1, 1, 1)
    assert p["summary"]["per_host"][0] == {
        "host": "h1",
        "status": "fail",
        "compliant": False,
        "failed_rules": ["EGRESS-001", "INTEGRITY-001"],
    }
    assert p["bundle"] == {
        "manifest_digests": ["sha256:" + "cd" * 32],
        "per_host": {"h1": "sha256:" + "cd" * 32, "h2": None},
    }
    assert p["policies"]["digest"] == results.policy_digest
    assert p["tool"]["name"] == "gapseal"
    assert p["time"] == "2026-11-23T16:00:00Z"
    json.dumps(p)  # JSON-serialisable as is


def test_signed_statement_names_every_file_and_verifies() -> None:
    key = SigningKey.generate()
    files = [
        EvidenceFile("report.html", "11" * 32, 1, "text/html", "r"),
        EvidenceFile("facts/h1.json", "22" * 32, 1, "application/json", "f", "h1"),
    ]
    bundle = sign_evidence(files, {"layout": EVIDENCE_LAYOUT}, key)
    v = verify_statement(bundle, [key.public], allowed_predicate_types=[EVIDENCE_PREDICATE_TYPE])
    assert [(s.name, s.sha256) for s in v.subjects] == [("facts/h1.json", "22" * 32), ("report.html", "11" * 32)]
    assert v.signer_key_id == key.key_id
    with pytest.raises(SignatureError):
        verify_statement(bundle, [SigningKey.generate().public], allowed_predicate_types=[EVIDENCE_PREDICATE_TYPE])
