"""The shipped Rego policies: every Rego test passes on regopy, every rule is tested and annotated, exact catalog.

``gapseal policy test`` is exercised as a user runs it, including a tampered policy that must make it fail.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from gapseal.audit.controls import load_catalog
from gapseal.audit.engines import load_policy_set
from gapseal.audit.engines.interface import TestOutcome
from gapseal.audit.engines.regopy_engine import RegopyEngine
from gapseal.audit.evaluate import EXPIRED_WAIVER_META
from gapseal.cli import main
from gapseal.resources import policies_dir

POLICY_SET = load_policy_set()


@pytest.fixture(scope="module")
def outcomes() -> dict[str, TestOutcome]:
    engine = RegopyEngine()
    engine.load(POLICY_SET, include_tests=True)
    return {f"{o.test.package}.{o.test.name}": o for o in engine.run_tests()}


@pytest.mark.parametrize("name", [f"{t.package}.{t.name}" for t in POLICY_SET.tests])
def test_rego_test_passes_on_regopy(outcomes: dict[str, TestOutcome], name: str) -> None:
    outcome = outcomes[name]
    assert outcome.passed, f"{name} ({outcome.test.file}:{outcome.test.line}): {outcome.detail}"


@pytest.mark.parametrize("rule", [r.id for r in POLICY_SET.rules])
def test_every_rule_has_success_and_fail_tests(rule: str) -> None:
    token = rule.lower().replace("-", "_")
    names = [t.name for t in POLICY_SET.tests]
    assert any(n.startswith("test_success_") and token in n for n in names), f"no test_success_* for {rule}"
    fails = [n for n in names if n.startswith("test_fail_") and token in n]
    assert fails, f"no test_fail_* for {rule}"
    assert any("unknown" in n for n in fails), f"no test_fail_*_unknown for {rule}: unknown facts must fail it"


@pytest.mark.parametrize("rule", [r.id for r in POLICY_SET.rules])
def test_every_fail_test_asserts_whole_violation_objects(rule: str) -> None:
    """A fail test compares with fixtures.expect(...) objects (metadata + message + subject + evidence + unknown)."""
    token = rule.lower().replace("-", "_")
    for module in POLICY_SET.modules:
        for match in re.finditer(rf"^(test_fail_{token}\w*) if \{{(.*?)^\}}", module.source, re.MULTILINE | re.DOTALL):
            body = match.group(2)
            assert "fixtures.expect" in body or "count(" in body, f"{match.group(1)} asserts nothing specific"
    whole = [
        m
        for module in POLICY_SET.modules
        for m in re.finditer(rf"^test_fail_{token}\w* if \{{(.*?)^\}}", module.source, re.MULTILINE | re.DOTALL)
        if "fixtures.expect(" in m.group(1)
    ]
    assert whole, f"no test of {rule} asserts a whole violation object"


def _metadata_blocks() -> dict[str, dict[str, object]]:
    """Parse every METADATA block independently of the loader."""
    blocks: dict[str, dict[str, object]] = {}
    for path in sorted((policies_dir() / "gapseal").rglob("*.rego")):
        text = path.read_text()
        for match in re.finditer(r"^# METADATA\n((?:#.*\n)+)deny contains", text, re.MULTILINE):
            raw = "\n".join(line[2:] if line.startswith("# ") else line[1:] for line in match.group(1).splitlines())
            meta = yaml.safe_load(raw)
            blocks[meta["custom"]["id"]] = meta
    return blocks


def test_rule_metadata_in_data_matches_the_metadata_blocks() -> None:
    blocks = _metadata_blocks()
    assert set(blocks) == set(POLICY_SET.data["gapseal_rules"])
    for rule_id, meta in blocks.items():
        data = POLICY_SET.data["gapseal_rules"][rule_id]
        custom = meta["custom"]
        assert isinstance(custom, dict)
        assert data["title"] == meta["title"]
        assert data["description"] == " ".join(str(meta["description"]).split())
        assert data["severity"] == custom["severity"]
        assert data["remediation"] == " ".join(str(custom["remediation"]).split())
        assert data["controls"] == custom["controls"]
        assert data["rule"] == rule_id


def test_every_rule_names_controls_of_both_frameworks_or_a_justified_one() -> None:
    for rule in POLICY_SET.rules:
        frameworks = {c.split(":")[0] for c in rule.controls}
        assert frameworks == {"eu-ai-act", "hipaa"}, f"{rule.id} names only {frameworks}"


def test_catalog_names_the_controls_exactly() -> None:
    catalog = load_catalog()
    titles = {c.id: (c.reference, c.title) for f in catalog.frameworks for c in f.controls}
    assert "eu-ai-act:art-10" not in titles  # training-data governance: no gapseal rule is evidence for it
    assert titles["eu-ai-act:art-12"] == ("Regulation (EU) 2024/1689, Article 12", "Record-keeping")
    assert titles["eu-ai-act:art-15"] == (
        "Regulation (EU) 2024/1689, Article 15",
        "Accuracy, robustness and cybersecurity",
    )
    assert titles["eu-ai-act:art-19"] == ("Regulation (EU) 2024/1689, Article 19", "Automatically generated logs")
    assert titles["eu-ai-act:art-26(6)"] == (
        "Regulation (EU) 2024/1689, Article 26(6)",
        "Obligations of deployers of high-risk AI systems: keeping the logs",
    )
    assert titles["hipaa:164.312(a)(1)"] == ("45 CFR 164.312(a)(1)", "Access control")
    assert titles["hipaa:164.312(a)(2)(iv)"] == ("45 CFR 164.312(a)(2)(iv)", "Encryption and decryption")
    assert titles["hipaa:164.312(b)"] == ("45 CFR 164.312(b)", "Audit controls")
    assert "hipaa:164.312(c)(1)" not in titles  # ePHI integrity: gapseal checks software and models, not records
    assert titles["hipaa:164.308(a)(5)(ii)(B)"] == ("45 CFR 164.308(a)(5)(ii)(B)", "Protection from malicious software")
    assert titles["hipaa:164.312(d)"] == ("45 CFR 164.312(d)", "Person or entity authentication")
    assert titles["hipaa:164.312(e)(1)"] == ("45 CFR 164.312(e)(1)", "Transmission security")
    assert titles["hipaa:164.308(a)(1)(ii)(D)"] == (
        "45 CFR 164.308(a)(1)(ii)(D)",
        "Information system activity review",
    )


def test_every_catalog_control_is_supported_by_a_rule() -> None:
    used = {c for r in POLICY_SET.rules for c in r.controls} | set(EXPIRED_WAIVER_META.controls)
    assert load_catalog().ids() == used


def test_catalog_rejects_a_control_outside_its_framework(tmp_path: Path) -> None:
    from gapseal.audit.controls import parse_catalog
    from gapseal.errors import AuditError

    text = (policies_dir() / "controls.yaml").read_text().replace("id: hipaa:164.312(b)", "id: eu-ai-act:164.312(b)")
    with pytest.raises(AuditError, match="does not start with its framework id 'hipaa:'"):
        parse_catalog(text)
    with pytest.raises(AuditError, match="not a controls catalog"):
        parse_catalog("kind: Something\n")


# ------------------------------------------------------------------------------------------------ CLI


def test_policy_test_cli_reports_like_a_test_runner(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "test"]) == 0
    out = capsys.readouterr().out.splitlines()
    n = len(POLICY_SET.tests)
    assert out[-1] == f"{n} passed, 0 failed"
    assert sum(1 for line in out if line.startswith("PASS data.gapseal.")) == n
    assert (
        "PASS data.gapseal.egress_test.test_fail_egress_001_default_route (gapseal/egress/egress_test.rego:"
        in "\n".join(out)
    )


def test_policy_test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "test", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True
    assert doc["failed"] == 0
    assert doc["passed"] == len(doc["tests"]) == len(POLICY_SET.tests)
    assert doc["engine"].startswith("regopy ")


def test_policy_test_fails_on_a_tampered_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Weakening a rule (a default route is no longer reported) must make its Rego tests fail, exit 1."""
    root = tmp_path / "policies"
    shutil.copytree(policies_dir(), root)
    routes = root / "gapseal/egress/routes.rego"
    text = routes.read_text()
    weakened = text.replace(
        "\tnot route.gateway in data.allowlist.default_route_gateways\n",
        '\tnot route.gateway in data.allowlist.default_route_gateways\n\troute.dev == "never"\n',
        1,
    )
    assert weakened != text
    routes.write_text(weakened)
    assert main(["policy", "test", "--policies", str(root)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "FAIL data.gapseal.egress_test.test_fail_egress_001_default_route" in "\n".join(out)
    assert out[-1] == f"{len(POLICY_SET.tests) - 1} passed, 1 failed"


def test_policy_test_without_tests_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "policies"
    shutil.copytree(policies_dir(), root)
    for path in root.rglob("*_test.rego"):
        if "fixtures" not in path.name:
            path.unlink()
    assert main(["policy", "test", "--policies", str(root)]) == 1
    assert "no Rego tests found" in capsys.readouterr().err


def test_policy_test_rejects_an_unsupported_builtin_in_a_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "policies"
    shutil.copytree(policies_dir(), root)
    (root / "gapseal/logging/extra_test.rego").write_text(
        "package gapseal.logging_extra_test\n\n"
        'test_success_cidr if {\n\tnet.cidr_contains("10.0.0.0/8", "10.1.2.3")\n}\n'
    )
    assert main(["policy", "test", "--policies", str(root)]) == 1
    err = capsys.readouterr().err
    assert "builtin net.cidr_contains is not implemented by the regopy engine" in err
    assert "gapseal/logging/extra_test.rego:4" in err
