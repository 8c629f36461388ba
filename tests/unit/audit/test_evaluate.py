"""Evaluation: facts -> policy input -> results; the CLI's exit codes; enclave containment in Python and in Rego."""

from __future__ import annotations

import ipaddress
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gapseal.audit.engines import load_policy_set
from gapseal.audit.engines.regopy_engine import RegopyEngine
from gapseal.audit.evaluate import (
    evaluate_facts,
    evaluate_hosts,
    host_input_from_bytes,
    in_enclave,
    policy_input,
)
from gapseal.audit.results import parse_results
from gapseal.cli import main
from gapseal.errors import AuditError
from gapseal.resources import policies_dir
from tests.opa_rest.facts_fixtures import LEAKS, compliant_facts, facts_bytes, leaky_facts, network

POLICY_SET = load_policy_set()
ENCLAVE = POLICY_SET.data["allowlist"]["enclave_networks"]


@pytest.fixture(scope="module")
def engine() -> RegopyEngine:
    e = RegopyEngine()
    e.load(POLICY_SET)
    return e


# ------------------------------------------------------------------------------------------------ results


def test_compliant_host_passes_every_rule(engine: RegopyEngine) -> None:
    results = evaluate_hosts([host_input_from_bytes(facts_bytes(compliant_facts()), "facts/host1.json")], engine)
    (h,) = results.hosts
    assert h.host == "host1"
    assert h.facts == "facts/host1.json"
    assert {r.status for r in h.rules} == {"pass"}
    assert [r.rule for r in h.rules] == sorted([r.id for r in POLICY_SET.rules] + ["WAIVER-EXPIRED"])
    assert results.summary.compliant
    assert results.summary.rules == 25
    assert results.engine.startswith("regopy ")
    assert results.policy_digest == POLICY_SET.digest


@pytest.mark.parametrize("leak", sorted(LEAKS))
def test_each_leak_trips_exactly_its_rule(engine: RegopyEngine, leak: str) -> None:
    _, rule = LEAKS[leak]
    results = evaluate_hosts([host_input_from_bytes(facts_bytes(leaky_facts(leak)), "facts/host2.json")], engine)
    bad = {r.rule: r for r in results.hosts[0].rules if r.status != "pass"}
    assert rule in bad
    # accept_public accepts 203.0.113.0/24, where the outside stand-in addresses are: EGRESS-003 sees them reachable
    expected = {
        "routes_unknown": {"EGRESS-001", "EGRESS-002"},
        "accept_public": {"EGRESS-003", "EGRESS-004"},
    }.get(leak, {rule})
    assert set(bad) == expected
    result = bad[rule]
    assert result.status == ("unknown" if leak == "routes_unknown" else "fail")
    assert result.findings
    assert result.evidence
    assert all(e.startswith("/") for e in result.evidence)
    assert result.controls == POLICY_SET.rule(rule).controls
    assert not results.summary.compliant


def test_finding_fields_for_a_default_route(engine: RegopyEngine) -> None:
    results = evaluate_hosts([host_input_from_bytes(facts_bytes(leaky_facts("default_route")), "f.json")], engine)
    (r,) = [r for r in results.hosts[0].rules if r.rule == "EGRESS-001"]
    assert r.status == "fail"
    assert r.severity == "high"
    assert r.title == "No default route"
    assert [f.model_dump() for f in r.findings] == [
        {
            "message": "default route 0.0.0.0/0 via 10.231.1.1 dev veth1 table main sends traffic for any "
            "destination off the host",
            "subject": "0.0.0.0/0 via 10.231.1.1 dev veth1 table main",
            "evidence": ("/routes/default_routes/0",),
            "unknown": False,
        }
    ]
    assert r.message == r.findings[0].message


def test_duplicate_hosts_are_rejected(engine: RegopyEngine) -> None:
    h = host_input_from_bytes(facts_bytes(compliant_facts("same")), "a.json")
    with pytest.raises(AuditError, match="two facts documents describe the same host: same"):
        evaluate_hosts([h, h], engine)


def test_evaluate_facts_names_facts_as_the_evidence_stores_them() -> None:
    results = evaluate_facts({"node-a": facts_bytes(compliant_facts("whatever"))})
    assert results.hosts[0].host == "node-a"
    assert results.hosts[0].facts == "facts/node-a.json"
    assert parse_results(results.to_json()) == results


# ------------------------------------------------------------------------------------------------ policy input


def test_policy_input_omits_raw_bytes_and_annotates_networks() -> None:
    facts = leaky_facts("accept_public")
    facts["raw_outputs"] = {"sha256:" + "0" * 64: {"encoding": "utf-8", "content": "x", "size": 1}}
    document = policy_input(facts, POLICY_SET.data)
    assert "raw_outputs" not in document
    assert "ruleset" not in document["firewall"]["nftables"]
    assert "ruleset" in facts["firewall"]["nftables"]  # the facts themselves are untouched
    daddr = [n for r in document["firewall"]["nftables"]["rules"] for n in r["daddr"]]
    assert {n["cidr"]: n["enclave"] for n in daddr} == {"10.231.1.0/30": True, "203.0.113.0/24": False}
    assert document["routes"]["forwarding_routes"][0]["dst"]["enclave"] is True


# ------------------------------------------------------------------------------------------------ containment


def _truth(cidr: str) -> bool:
    net = ipaddress.ip_network(cidr)
    return any(
        net.version == e.version and net.subnet_of(e)  # type: ignore[arg-type]
        for e in (ipaddress.ip_network(x["cidr"]) for x in ENCLAVE)
    )


v4 = st.builds(
    lambda a, p: str(ipaddress.ip_network((a, p), strict=False)), st.integers(0, 2**32 - 1), st.integers(0, 32)
)
v6 = st.builds(
    lambda a, p: str(ipaddress.ip_network((a, p), strict=False)), st.integers(0, 2**128 - 1), st.integers(0, 128)
)
near = st.sampled_from(
    [
        "10.0.0.0/8",
        "10.255.255.255/32",
        "11.0.0.0/32",
        "9.255.255.255/32",
        "172.15.255.255/32",
        "172.16.0.0/12",
        "172.32.0.0/32",
        "192.168.255.0/24",
        "192.169.0.0/16",
        "0.0.0.0/0",
        "fe80::/10",
        "fec0::/10",
        "fe7f::/16",
        "fc00::/7",
        "fe00::/8",
        "::/0",
        "10.0.0.0/7",
        "169.254.169.254/32",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cidr=st.one_of(v4, v6, near))
def test_python_containment_matches_ipaddress(cidr: str) -> None:
    assert in_enclave(network(cidr), ENCLAVE) == _truth(cidr)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cidr=st.one_of(v4, v6, near))
def test_rego_containment_matches_python(engine: RegopyEngine, cidr: str) -> None:
    """lib.in_enclave without the evaluator's annotation (the hex comparison in Rego) agrees with Python.

    Observed through EGRESS-002, which flags a forwarding route whose destination is outside the enclave
    (link-local destinations are exempt by design).
    """
    net = network(cidr)
    route = {"family": net["family"], "table": "main", "type": "unicast", "dst": net, "is_default": False}
    document = engine.query_document("gapseal.egress", {"routes": {"status": "ok", "forwarding_routes": [route]}})
    flagged = any(v["rule"] == "EGRESS-002" for v in document["deny"])
    if net["address_class"] == "link_local":
        assert not flagged
    else:
        assert (not flagged) == in_enclave(net, ENCLAVE) == _truth(cidr)


# ------------------------------------------------------------------------------------------------ CLI


def write(tmp_path: Path, name: str, document: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_bytes(facts_bytes(document))
    return path


def test_cli_compliant_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "evaluate", str(write(tmp_path, "h1", compliant_facts("h1")))]) == 0
    out = capsys.readouterr().out
    assert "COMPLIANT: 1 host(s), 25 rule(s): 25 passed, 0 failed, 0 unknown, 0 waived (regopy" in out


def test_cli_findings_exit_3_and_name_controls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    leaky = write(tmp_path, "h2", leaky_facts("default_route", "proxy_variable", host="h2"))
    assert main(["audit", "evaluate", str(leaky)]) == 3
    out = capsys.readouterr().out
    assert "h2: FAIL EGRESS-001 (high) No default route [eu-ai-act:art-15, hipaa:164.312(e)(1)]" in out
    assert "    - proxy variable HTTPS_PROXY=http://proxy.example:3128 is set in /etc/environment:1" in out
    assert "NOT COMPLIANT: 1 host(s), 25 rule(s): 23 passed, 2 failed, 0 unknown, 0 waived" in out


def test_cli_json_is_the_results_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = [
        str(write(tmp_path, "a", compliant_facts("a"))),
        str(write(tmp_path, "b", leaky_facts("altered_file", host="b"))),
    ]
    assert main(["audit", "evaluate", *paths, "--json"]) == 3
    results = parse_results(capsys.readouterr().out)
    assert [h.host for h in results.hosts] == ["a", "b"]
    assert results.hosts[0].facts == paths[0]
    assert results.summary.failed == 1
    (bad,) = [r for r in results.hosts[1].rules if r.status == "fail"]
    assert bad.rule == "INTEGRITY-002"


def test_cli_site_data_narrows_the_enclave(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    facts = write(tmp_path, "h1", compliant_facts("h1"))
    site = tmp_path / "site.yaml"
    site.write_text("allowlist:\n  enclave: [10.99.0.0/16]\n")
    assert main(["audit", "evaluate", str(facts), "--data", str(site)]) == 3
    out = capsys.readouterr().out
    assert "route 10.231.1.0/30 via - dev veth1 table main leads to 10.231.1.0/30, outside the enclave" in out
    assert "tcp to 10.231.1.0/30 port 22 (outside the enclave) leaves the host: accepted by nftables" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "facts are not valid JSON"),
        (b'{"kind": "gapseal.audit.facts", "schema_version": 99}', "unsupported facts schema_version 99"),
        (b'{"kind": "other"}', "not a gapseal facts document"),
    ],
    ids=["not-json", "future-schema", "wrong-kind"],
)
def test_cli_bad_facts_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    assert main(["audit", "evaluate", str(path)]) == 1
    assert message in capsys.readouterr().err


def test_cli_facts_missing_a_field_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = compliant_facts("h1")
    del document["firewall"]
    path = tmp_path / "h1.json"
    path.write_text(json.dumps(document))
    assert main(["audit", "evaluate", str(path)]) == 1
    assert "facts do not match schema v1" in capsys.readouterr().err


def test_cli_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "evaluate", str(tmp_path / "missing.json")]) == 1  # a missing input is exit 1
    facts = write(tmp_path, "h1", compliant_facts("h1"))
    assert main(["audit", "evaluate", str(facts), "--opa-url", "ftp://127.0.0.1:1"]) == 2
    (tmp_path / "list.yaml").write_text("- 1\n")
    assert main(["audit", "evaluate", str(facts), "--data", str(tmp_path / "list.yaml")]) == 2
    assert main(["audit", "evaluate"]) == 2
    capsys.readouterr()


def test_malformed_violation_from_a_policy_is_an_error(tmp_path: Path) -> None:
    """A rule whose violation lacks the unknown flag or names another rule is refused, not counted."""
    root = tmp_path / "policies"
    shutil.copytree(policies_dir(), root)
    path = root / "gapseal/logging/retention.rego"
    text = path.read_text()
    path.write_text(
        text
        + '\ndeny contains {"rule": "LOGGING-001", "message": "m", "subject": "s", "evidence": ["/x"]} if {\n'
        + '\tinput.logging.status == "ok"\n\tlib.violation("LOGGING-001", "", "", []) != null\n}\n'
    )
    with pytest.raises(AuditError, match="a violation of LOGGING-001 lacks the unknown flag"):
        evaluate_facts({"h1": facts_bytes(compliant_facts("h1"))}, policies=root)


def test_violation_from_an_unregistered_rule_is_an_error(tmp_path: Path) -> None:
    """A clause that relabels a violation with an id no METADATA declares is refused at evaluation."""
    root = tmp_path / "policies"
    shutil.copytree(policies_dir(), root)
    path = root / "gapseal/logging/retention.rego"
    path.write_text(
        path.read_text()
        + '\ndeny contains w if {\n\tinput.logging.status == "ok"\n'
        + '\tv := lib.violation("LOGGING-001", "m", "s", [])\n\tw := object.union(v, {"rule": "LOGGING-404"})\n}\n'
    )
    with pytest.raises(AuditError, match="a violation names an unregistered rule 'LOGGING-404'"):
        evaluate_facts({"h1": facts_bytes(compliant_facts("h1"))}, policies=root)


def test_each_host_is_evaluated_on_its_own_facts(engine: RegopyEngine) -> None:
    """Alternating compliant and leaky hosts through one engine: no host may see another's input."""
    hosts = [
        host_input_from_bytes(
            facts_bytes(leaky_facts("proxy_variable", host=f"h{i}") if i % 2 else compliant_facts(f"h{i}")),
            f"facts/h{i}.json",
        )
        for i in range(8)
    ]
    results = evaluate_hosts(hosts, engine)
    assert [(h.host, h.status) for h in results.hosts] == [(f"h{i}", "fail" if i % 2 else "pass") for i in range(8)]
