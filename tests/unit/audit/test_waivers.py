"""Waivers: parsing (bad files named after the failure), matching, expiry, and their effect on results."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gapseal.audit.engines import load_policy_set
from gapseal.audit.engines.regopy_engine import RegopyEngine
from gapseal.audit.evaluate import HostInput, evaluate_hosts, host_input_from_bytes
from gapseal.audit.results import Results, RuleResult
from gapseal.audit.waivers import EXPIRED_WAIVER_RULE, load_waivers, parse_waivers
from gapseal.cli import main
from gapseal.errors import AuditError
from tests.opa_rest.facts_fixtures import compliant_facts, facts_bytes, leaky_facts

TODAY = dt.date(2026, 11, 23)

GOOD = b"""\
apiVersion: gapseal/v1
kind: Waivers
waivers:
  - rule: TELEMETRY-001
    hosts: "lab-*"
    justification: Lab hosts serve synthetic prompts only; egress is blocked upstream.
    approver: Jane Doe (CISO)
    expires: 2026-12-31
  - rule: ACCESS-003
    hosts: "lab-2"
    justification: Port 8000 is the model API for the enclave.
    approver: Jane Doe (CISO)
    expires: 2026-11-22
"""


@pytest.fixture(scope="module")
def engine() -> RegopyEngine:
    e = RegopyEngine()
    e.load(load_policy_set())
    return e


def host(name: str, *leaks: str) -> HostInput:
    document = leaky_facts(*leaks, host=name) if leaks else compliant_facts(name)
    return host_input_from_bytes(facts_bytes(document), f"facts/{name}.json")


def rule_of(results: Results, host_name: str, rule: str) -> RuleResult:
    for h in results.hosts:
        if h.host == host_name:
            for r in h.rules:
                if r.rule == rule:
                    return r
    raise AssertionError(f"no {rule} on {host_name}")


def test_good_file_parses() -> None:
    waivers = parse_waivers(GOOD)
    assert [w.rule for w in waivers.waivers] == ["TELEMETRY-001", "ACCESS-003"]
    assert waivers.waivers[0].expires == dt.date(2026, 12, 31)
    assert waivers.digest is not None
    assert waivers.digest.startswith("sha256:")


def test_waiver_matches_by_rule_and_host_glob() -> None:
    w = parse_waivers(GOOD).waivers[0]
    assert w.matches("TELEMETRY-001", "lab-1")
    assert not w.matches("TELEMETRY-001", "prod-1")
    assert not w.matches("TELEMETRY-002", "lab-1")
    assert not w.matches("TELEMETRY-001", "LAB-1")  # case-sensitive


def test_expiry_day_is_inclusive() -> None:
    w = parse_waivers(GOOD).waivers[1]  # expires 2026-11-22
    assert not w.expired(dt.date(2026, 11, 22))
    assert w.expired(dt.date(2026, 11, 23))


def test_waived_rule_records_the_waiver(engine: RegopyEngine) -> None:
    results = evaluate_hosts([host("lab-1", "telemetry_on")], engine, waivers=parse_waivers(GOOD), today=TODAY)
    r = rule_of(results, "lab-1", "TELEMETRY-001")
    assert r.status == "waived"
    assert r.waiver is not None
    assert r.waiver.approver == "Jane Doe (CISO)"
    assert r.message.startswith("waived until 2026-12-31 (Lab hosts serve synthetic prompts only")
    assert len(r.findings) == 1  # the finding is kept, only its status changes
    assert results.summary.compliant
    assert results.summary.waived == 1
    assert results.waivers_digest == parse_waivers(GOOD).digest


def test_waiver_for_another_host_does_not_apply(engine: RegopyEngine) -> None:
    results = evaluate_hosts([host("prod-1", "telemetry_on")], engine, waivers=parse_waivers(GOOD), today=TODAY)
    assert rule_of(results, "prod-1", "TELEMETRY-001").status == "fail"
    assert not results.summary.compliant


def test_waiver_covers_unknown_status_too(engine: RegopyEngine) -> None:
    text = GOOD.replace(b"rule: TELEMETRY-001", b"rule: EGRESS-001")
    results = evaluate_hosts([host("lab-1", "routes_unknown")], engine, waivers=parse_waivers(text), today=TODAY)
    assert rule_of(results, "lab-1", "EGRESS-001").status == "waived"
    assert rule_of(results, "lab-1", "EGRESS-002").status == "unknown"


def test_expired_waiver_is_a_finding_and_no_longer_waives(engine: RegopyEngine) -> None:
    results = evaluate_hosts(
        [host("lab-2", "listen_all"), host("lab-3")], engine, waivers=parse_waivers(GOOD), today=TODAY
    )
    assert rule_of(results, "lab-2", "ACCESS-003").status == "fail"
    expired = rule_of(results, "lab-2", EXPIRED_WAIVER_RULE)
    assert expired.status == "fail"
    assert [f.message for f in expired.findings] == [
        "waiver for ACCESS-003 on hosts 'lab-2' (approved by Jane Doe (CISO)) expired on 2026-11-22"
    ]
    assert expired.controls == ("eu-ai-act:art-9", "hipaa:164.308(a)(8)", "hipaa:164.308(a)(1)(ii)(B)")
    # a host the expired waiver does not name is unaffected
    assert rule_of(results, "lab-3", EXPIRED_WAIVER_RULE).status == "pass"


def test_waiver_for_unknown_rule_is_rejected(engine: RegopyEngine) -> None:
    text = GOOD.replace(b"rule: TELEMETRY-001", b"rule: TELEMETRY-009")
    with pytest.raises(AuditError, match="waiver #1 names unknown rule TELEMETRY-009"):
        evaluate_hosts([host("lab-1")], engine, waivers=parse_waivers(text, where="w.yaml"), today=TODAY)


BAD_FILES = {
    "wrong-kind": (b"apiVersion: gapseal/v1\nkind: Exceptions\nwaivers: []\n", "not a waivers file"),
    "wrong-version": (b"apiVersion: gapseal/v2\nkind: Waivers\nwaivers: []\n", "not a waivers file"),
    "snake-case-api-version": (
        b"api_version: gapseal/v1\nkind: Waivers\nwaivers: []\n",
        "'api_version' is spelled 'apiVersion' in every gapseal file",
    ),
    "not-yaml": (b"apiVersion: [gapseal\n", "waivers file is not valid YAML"),
    "missing-approver": (
        GOOD.replace(b"    approver: Jane Doe (CISO)\n", b"", 1),
        "waivers.0.approver: Field required",
    ),
    "blank-justification": (
        GOOD.replace(b"Lab hosts serve synthetic prompts only; egress is blocked upstream.", b'"   "'),
        "waivers.0.justification: Value error, must not be blank",
    ),
    "bad-date": (GOOD.replace(b"2026-12-31", b"end of year"), "waivers.0.expires"),
    "unknown-field": (GOOD.replace(b"    approver: Jane", b"    ticket: SEC-1\n    approver: Jane", 1), "ticket"),
    "bad-rule-id": (GOOD.replace(b"rule: TELEMETRY-001", b"rule: telemetry"), "does not look like 'EGRESS-001'"),
    "waives-expired-rule": (
        GOOD.replace(b"rule: TELEMETRY-001", b"rule: WAIVER-EXPIRED"),
        "WAIVER-EXPIRED cannot be waived",
    ),
    "empty-host-pattern": (GOOD.replace(b'hosts: "lab-*"', b'hosts: ""'), "waivers.0.hosts"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_waivers_file_is_rejected(tmp_path: Path, name: str) -> None:
    text, message = BAD_FILES[name]
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(text)
    with pytest.raises(AuditError) as err:
        load_waivers(path)
    assert message in err.value.message
    assert err.value.where == str(path)


def test_missing_waivers_file(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="cannot read waivers file"):
        load_waivers(tmp_path / "nope.yaml")


def test_cli_waivers_turn_findings_into_waived(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    facts = tmp_path / "lab-1.json"
    facts.write_bytes(facts_bytes(leaky_facts("telemetry_on", host="lab-1")))
    waivers = tmp_path / "waivers.yaml"
    waivers.write_bytes(GOOD.replace(b"2026-12-31", b"2099-12-31").replace(b"2026-11-22", b"2099-11-22"))
    assert main(["audit", "evaluate", str(facts)]) == 3
    capsys.readouterr()
    assert main(["audit", "evaluate", str(facts), "--waivers", str(waivers)]) == 0
    out = capsys.readouterr().out
    assert "lab-1: WAIVED TELEMETRY-001" in out
    assert "COMPLIANT: 1 host(s)" in out


def test_cli_bad_waivers_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    facts = tmp_path / "lab-1.json"
    facts.write_bytes(facts_bytes(compliant_facts("lab-1")))
    waivers = tmp_path / "waivers.yaml"
    waivers.write_bytes(BAD_FILES["missing-approver"][0])
    assert main(["audit", "evaluate", str(facts), "--waivers", str(waivers)]) == 1
    assert "invalid waivers file: waivers.0.approver: Field required" in capsys.readouterr().err
    assert main(["audit", "evaluate", str(facts), "--waivers", str(tmp_path / "missing.yaml")]) == 1  # bad input
