"""The engine layer: policy-set loading and its checks, the builtin scanner, the regopy engine, engine selection."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from gapseal.audit.engines import load_policy_set, make_engine
from gapseal.audit.engines.builtins import PORTABLE_BUILTINS, blank_strings_and_comments
from gapseal.audit.engines.interface import Undefined
from gapseal.audit.engines.regopy_engine import RegopyEngine
from gapseal.errors import AuditError, UsageError
from gapseal.resources import policies_dir

GOOD_RULE = """\
package gapseal.extra

import data.gapseal.lib

# METADATA
# title: Extra rule
# description: A rule used by the engine tests.
# custom:
#   id: EXTRA-001
#   severity: low
#   remediation: Nothing to do.
#   controls: [hipaa:164.312(b)]
deny contains violation if {
	input.logging.status == "ok"
	input.flag == true
	violation := lib.violation("EXTRA-001", "flag is set", "flag", ["/flag"])
}

deny contains violation if {
	not input.logging.status == "ok"
	violation := lib.unknown("EXTRA-001", "logging")
}
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the shipped policies the test may edit."""
    root = tmp_path / "policies"
    shutil.copytree(policies_dir(), root)
    return root


def add_module(root: Path, rel: str, source: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


# ------------------------------------------------------------------------------------------------ policy set


def test_shipped_policy_set_loads_every_domain() -> None:
    ps = load_policy_set()
    assert ps.rule_packages == (
        "gapseal.access",
        "gapseal.egress",
        "gapseal.encryption",
        "gapseal.integrity",
        "gapseal.logging",
        "gapseal.residency",
        "gapseal.telemetry",
    )
    assert len(ps.rules) == 24
    assert set(ps.data["gapseal_rules"]) == {r.id for r in ps.rules}
    assert ps.digest.startswith("sha256:")
    assert len(ps.digest) == 71
    assert all(not m.is_test for m in ps.policy_modules)
    assert len(ps.tests) >= 2 * len(ps.rules)


def test_enclave_networks_are_derived_with_hex_bounds() -> None:
    nets = {n["cidr"]: n for n in load_policy_set().data["allowlist"]["enclave_networks"]}
    assert nets["10.0.0.0/8"] == {
        "cidr": "10.0.0.0/8",
        "family": "inet",
        "prefixlen": 8,
        "first": "0a000000",
        "last": "0affffff",
    }
    assert nets["fe80::/10"]["first"] == "fe80" + "0" * 28
    assert nets["fe80::/10"]["last"] == "febf" + "f" * 28


def test_data_override_merges_and_changes_the_digest() -> None:
    base = load_policy_set()
    site = load_policy_set(data_override={"allowlist": {"enclave": ["10.20.0.0/16"], "log_hosts": ["10.9.9.9"]}})
    assert [n["cidr"] for n in site.data["allowlist"]["enclave_networks"]] == ["10.20.0.0/16", "10.9.9.9/32"]
    assert site.data["allowlist"]["resolvers"] == []  # untouched keys stay
    assert site.digest != base.digest
    assert load_policy_set().digest == base.digest


def test_digest_covers_policy_edits(tree: Path) -> None:
    before = load_policy_set(tree).digest
    path = tree / "gapseal/logging/retention.rego"
    path.write_text(path.read_text() + "\n# a comment changes the bytes\n")
    assert load_policy_set(tree).digest != before


def test_an_extra_rule_is_picked_up(tree: Path) -> None:
    add_module(tree, "gapseal/extra/extra.rego", GOOD_RULE)
    ps = load_policy_set(tree)
    rule = ps.rule("EXTRA-001")
    assert (rule.package, rule.file, rule.severity, rule.controls) == (
        "gapseal.extra",
        "gapseal/extra/extra.rego",
        "low",
        ("hipaa:164.312(b)",),
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(
            lambda s: s.replace("# METADATA\n", ""),
            "deny rule has no METADATA block",
            id="deny-rule-without-metadata",
        ),
        pytest.param(
            lambda s: s.replace("#   remediation: Nothing to do.\n", ""),
            "METADATA lacks 'custom.remediation'",
            id="missing-remediation",
        ),
        pytest.param(
            lambda s: s.replace("# title: Extra rule\n", ""),
            "METADATA lacks 'title'",
            id="missing-title",
        ),
        pytest.param(
            lambda s: s.replace("hipaa:164.312(b)", "hipaa:164.999(z)"),
            "unknown control id(s) hipaa:164.999(z) in rule EXTRA-001",
            id="unknown-control",
        ),
        pytest.param(
            lambda s: s.replace("severity: low", "severity: catastrophic"),
            "severity 'catastrophic' is not one of",
            id="bad-severity",
        ),
        pytest.param(
            lambda s: s.replace("id: EXTRA-001", "id: extra_1"),
            "rule id 'extra_1' does not look like 'EGRESS-001'",
            id="bad-rule-id",
        ),
        pytest.param(
            lambda s: s.replace("EXTRA-001", "LOGGING-001"),
            "rule id LOGGING-001 is used twice",
            id="duplicate-rule-id",
        ),
        pytest.param(
            lambda s: s.split("deny contains violation if {\n\tnot input")[0],
            "rule EXTRA-001 has no unknown clause",
            id="no-unknown-clause",
        ),
        pytest.param(
            lambda s: s.replace('lib.violation("EXTRA-001"', 'lib.violation("EXTRA-002"'),
            "rule body does not build its violation with its own id 'EXTRA-001'",
            id="body-uses-another-id",
        ),
        pytest.param(
            lambda s: s.replace("# custom:\n", "# custom: [\n"),
            "METADATA is not valid YAML",
            id="metadata-not-yaml",
        ),
    ],
)
def test_malformed_rules_are_rejected_with_file_and_line(tree: Path, edit: object, message: str) -> None:
    assert callable(edit)
    add_module(tree, "gapseal/extra/extra.rego", edit(GOOD_RULE))
    with pytest.raises(AuditError) as err:
        load_policy_set(tree)
    assert message in err.value.message
    assert err.value.where is not None
    assert "gapseal/extra/extra.rego:" in err.value.where or "gapseal/logging" in err.value.where


def test_data_file_must_be_a_mapping(tree: Path) -> None:
    (tree / "data/broken.yaml").write_text("- just\n- a list\n")
    with pytest.raises(AuditError, match="data file must hold a mapping") as err:
        load_policy_set(tree)
    assert err.value.where == "data/broken.yaml"


def test_enclave_entry_with_host_bits_is_rejected() -> None:
    with pytest.raises(AuditError, match=r"data.allowlist.enclave entry '10.1.2.3/8' is not a network"):
        load_policy_set(data_override={"allowlist": {"enclave": ["10.1.2.3/8"]}})


def test_reserved_data_key_is_rejected(tree: Path) -> None:
    (tree / "data/gapseal_rules.yaml").write_text("x: 1\n")
    with pytest.raises(AuditError, match="reserved for rule metadata"):
        load_policy_set(tree)


def test_missing_policies_directory(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="no policies found"):
        load_policy_set(tmp_path)


# ------------------------------------------------------------------------------------------------ builtin scanner


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ('net.cidr_contains("10.0.0.0/8", "10.1.1.1")', "builtin net.cidr_contains is not implemented by the regopy"),
        ('print("x")', "builtin print is not implemented by the regopy engine"),
        ("rego.metadata.rule()", "builtin rego.metadata.rule is not implemented by the regopy engine"),
        ("format_int(5, 2)", "builtin format_int is not on gapseal's portable list"),
        ('time.parse_rfc3339_ns("2026-01-01T00:00:00Z")', "builtin time.parse_rfc3339_ns is not on gapseal's portable"),
        ('to_number("0x10")', "builtin to_number is not on gapseal's portable list"),
        ('lib.no_such_helper("x")', "call to undefined function lib.no_such_helper"),
    ],
)
def test_unsupported_call_fails_before_evaluation_naming_builtin_file_and_line(
    tree: Path, call: str, message: str
) -> None:
    source = GOOD_RULE.replace("\tinput.flag == true\n", f"\tinput.flag == true\n\tx := {call}\n\tx != null\n")
    add_module(tree, "gapseal/extra/extra.rego", source)
    engine = RegopyEngine()
    with pytest.raises(AuditError) as err:
        engine.load(load_policy_set(tree))
    assert message in err.value.message
    assert err.value.where == "gapseal/extra/extra.rego:16"


def test_regopy_really_returns_undefined_for_an_unknown_builtin() -> None:
    """Why the scanner exists: without it, regopy drops the violation silently (the rule passes)."""
    import regopy

    interpreter = regopy.Interpreter()
    interpreter.add_module(
        "p.rego",
        'package p\n\ndeny contains "leak" if {\n\tinside := net.cidr_contains("10.0.0.0/8", "203.0.113.1")\n'
        "\tinside == false\n}\n",
    )
    assert not interpreter.is_builtin("net.cidr_contains")
    output = str(interpreter.query("data.p.deny"))
    assert '"leak"' not in output  # OPA would report the leak; rego-cpp does not


def test_calls_inside_strings_and_comments_are_not_calls(tree: Path) -> None:
    source = GOOD_RULE.replace('"flag is set"', '"net.cidr_contains(x) is only text"').replace(
        "# title: Extra rule", "# title: Extra rule mentioning print(x)"
    )
    source += '\n# net.cidr_contains("10.0.0.0/8", x) in a comment\nraw := `format_int(5, 2)`\n'
    add_module(tree, "gapseal/extra/extra.rego", source)
    RegopyEngine().load(load_policy_set(tree))


def test_blanking_keeps_lines_and_columns() -> None:
    source = 'a := "x(#)"\n# c(\nb := `r(\n)`\n'
    blanked = blank_strings_and_comments(source)
    assert len(blanked) == len(source)
    assert blanked.count("\n") == source.count("\n")
    assert "(" not in blanked.replace(":= ", "")


def test_every_portable_builtin_is_implemented_by_regopy() -> None:
    engine = RegopyEngine()
    missing = sorted(b for b in PORTABLE_BUILTINS if not engine.supports_builtin(b))
    assert missing == []


def test_shipped_policies_pass_the_scanner_with_test_modules() -> None:
    RegopyEngine().load(load_policy_set(), include_tests=True)


# ------------------------------------------------------------------------------------------------ regopy engine


def test_regopy_engine_queries_package_documents() -> None:
    engine = RegopyEngine()
    engine.load(load_policy_set())
    document = engine.query_document("gapseal.logging", {"logging": {"status": "ok", "journald": {"persistent": True}}})
    assert document == {"deny": []}
    with pytest.raises(Undefined):
        engine.query_document("gapseal.no_such_package", {})
    with pytest.raises(AuditError, match="not a document path"):
        engine.query_document("gapseal.logging; x := 1", {})


def test_regopy_engine_reports_every_package() -> None:
    engine = RegopyEngine()
    engine.load(load_policy_set())
    out = engine.evaluate({})
    assert set(out) == set(engine.policy_set.rule_packages)
    # nothing was collected: every rule reports its facts as unknown, none passes
    assert {v["rule"] for vs in out.values() for v in vs} == {r.id for r in engine.policy_set.rules}
    assert all(v["unknown"] for vs in out.values() for v in vs)


def test_regopy_syntax_error_names_the_file(tree: Path) -> None:
    add_module(tree, "gapseal/extra/extra.rego", GOOD_RULE.replace('"flag is set"', '"flag is set'))
    with pytest.raises(AuditError, match="regopy rejected the policy") as err:
        RegopyEngine().load(load_policy_set(tree))
    assert err.value.where == "gapseal/extra/extra.rego"


def test_engine_without_policies() -> None:
    with pytest.raises(AuditError, match="no policies loaded"):
        RegopyEngine().evaluate({})


def test_conflicting_rule_values_are_an_error_not_undefined(tree: Path) -> None:
    add_module(tree, "gapseal/extra/conflict.rego", "package gapseal.conflict\n\nx := 1\n\nx := 2\n")
    engine = RegopyEngine()
    engine.load(load_policy_set(tree))
    with pytest.raises(AuditError, match="regopy failed to evaluate data.gapseal.conflict"):
        engine.query_document("gapseal.conflict", {})


# ------------------------------------------------------------------------------------------------ engine choice


def test_make_engine_picks_regopy_by_default() -> None:
    assert isinstance(make_engine(None), RegopyEngine)
    assert make_engine(None).description.startswith("regopy ")


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1:8181", "127.0.0.1:8181", "http://127.0.0.1:8181/v1/data", "http://u:p@127.0.0.1:8181", "http://"],
)
def test_bad_opa_url_is_a_usage_error(url: str) -> None:
    with pytest.raises(UsageError, match="--opa-url"):
        make_engine(url)
