"""The results document: statuses, summary, parsing with kind/version checks, JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gapseal.audit.evaluate import evaluate_facts
from gapseal.audit.results import load_results, parse_results, results_json_schema, summarise, worst_status
from gapseal.errors import AuditError
from tests.opa_rest.facts_fixtures import compliant_facts, facts_bytes, leaky_facts


@pytest.fixture(scope="module")
def results_json() -> str:
    results = evaluate_facts(
        {"a": facts_bytes(compliant_facts("a")), "b": facts_bytes(leaky_facts("default_route", "routes_unknown"))}
    )
    return results.to_json()


def test_round_trip(results_json: str, tmp_path: Path) -> None:
    results = parse_results(results_json)
    assert results.to_json() == results_json
    path = tmp_path / "results.json"
    path.write_text(results_json)
    assert load_results(path) == results


def test_statuses_and_summary(results_json: str) -> None:
    results = parse_results(results_json)
    a, b = results.hosts
    assert a.status == "pass"
    assert a.compliant
    # routes not collected: every rule reading them is unknown (not compliant), none passes
    statuses = {r.rule: r.status for r in b.rules}
    assert statuses["EGRESS-001"] == "unknown"
    assert statuses["EGRESS-002"] == "unknown"
    assert b.status == "unknown"
    assert not b.compliant
    summary = results.summary.model_dump()
    by_severity = summary.pop("by_severity")
    assert sum(s["passed"] for s in by_severity) == 48
    assert sum(s["unknown"] for s in by_severity) == 2
    assert summary == {
        "hosts": 2,
        "rules": 25,
        "passed": 48,
        "failed": 0,
        "waived": 0,
        "unknown": 2,
        "compliant": False,
    }
    assert summarise(results.hosts) == results.summary


def test_worst_status_order() -> None:
    assert worst_status([]) == "pass"
    assert worst_status(["pass", "waived"]) == "waived"
    assert worst_status(["waived", "unknown", "pass"]) == "unknown"
    assert worst_status(["unknown", "fail"]) == "fail"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(kind="Results"), "not a results document"),
        (lambda d: d.update(api_version="gapseal/v2"), "not a results document"),
        (lambda d: d["hosts"][0]["rules"][0].update(status="ok"), "invalid results document"),
        (lambda d: d["hosts"][0]["rules"][0].update(extra=1), "invalid results document"),
        (lambda d: d["summary"].pop("compliant"), "invalid results document"),
    ],
    ids=["wrong-kind", "wrong-version", "unknown-status", "extra-field", "missing-field"],
)
def test_tampered_results_are_rejected(results_json: str, mutate: object, message: str) -> None:
    assert callable(mutate)
    document = json.loads(results_json)
    mutate(document)
    with pytest.raises(AuditError, match=message):
        parse_results(json.dumps(document), where="results.json")


def test_not_json_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="results are not valid JSON"):
        parse_results("{")
    with pytest.raises(AuditError, match="cannot read results"):
        load_results(tmp_path / "results.json")


def test_json_schema_describes_every_field() -> None:
    schema: dict[str, Any] = results_json_schema()
    rule = schema["$defs"]["RuleResult"]
    assert set(rule["required"]) >= {"rule", "title", "severity", "controls", "status", "message", "remediation"}
    assert all("description" in p for p in rule["properties"].values())
