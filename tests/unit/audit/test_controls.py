"""The controls catalog's rationales and the per-control verdict (issue 9, honest control mapping)."""

from __future__ import annotations

import re

import pytest

from gapseal.audit.controls import assess_controls, control_state, load_catalog, parse_catalog
from gapseal.audit.engines import load_policy_set
from gapseal.audit.evaluate import EXPIRED_WAIVER_META
from gapseal.errors import AuditError
from gapseal.resources import policies_dir
from tests.unit.audit.evidence_fixtures import make_facts, make_results, rule

POLICY_SET = load_policy_set()
CATALOG = POLICY_SET.catalog
CITED = {r.id: r.controls for r in POLICY_SET.rules} | {EXPIRED_WAIVER_META.id: EXPIRED_WAIVER_META.controls}


def test_every_citation_of_every_rule_has_a_rationale_and_no_rationale_is_stray() -> None:
    assert CATALOG.citation_problems(CITED) == []


def test_every_rationale_quotes_words_of_its_control() -> None:
    requires = {c.id: " ".join(c.requires.split()) for f in CATALOG.frameworks for c in f.controls}
    for rule_id, cited in CATALOG.citations.items():
        for control_id, rationale in cited.items():
            quotes = re.findall(r'"([^"]+)"', rationale)
            assert quotes, (rule_id, control_id)
            for q in quotes:
                for part in q.split("..."):
                    assert part.strip() in requires[control_id], (rule_id, control_id, part)


def test_no_egress_rule_cites_training_data_governance() -> None:
    """EU AI Act Art. 10 governs training, validation and testing data: no evidence of anything gapseal checks."""
    assert "eu-ai-act:art-10" not in CATALOG.ids()
    assert not any("eu-ai-act:art-10" in controls for controls in CITED.values())


def test_hipaa_integrity_of_ephi_is_not_claimed_for_software_integrity() -> None:
    assert not any(c.startswith("hipaa:164.312(c)") for controls in CITED.values() for c in controls)
    for rule_id in ("INTEGRITY-001", "INTEGRITY-002"):
        assert set(CITED[rule_id]) == {"eu-ai-act:art-15", "hipaa:164.308(a)(5)(ii)(B)"}


def test_egress_rules_cite_transmission_security_and_cybersecurity() -> None:
    for rule_id, controls in CITED.items():
        if rule_id.startswith("EGRESS-"):
            assert "hipaa:164.312(e)(1)" in controls, rule_id
            assert "eu-ai-act:art-15" in controls, rule_id


def test_log_retention_cites_the_articles_that_require_six_months() -> None:
    assert {"eu-ai-act:art-19", "eu-ai-act:art-26(6)"} <= set(CITED["LOGGING-002"])
    assert "six months" in CATALOG.control("eu-ai-act:art-19").requires
    assert "six months" in CATALOG.control("eu-ai-act:art-26(6)").requires


def _catalog_text() -> str:
    return (policies_dir() / "controls.yaml").read_text()


def test_catalog_refuses_a_rationale_that_quotes_words_the_control_does_not_say() -> None:
    text = _catalog_text().replace('"confidentiality attacks".\'', '"exfiltration is forbidden".\'', 1)
    with pytest.raises(AuditError, match=r"'exfiltration is forbidden' is not in the words of eu-ai-act:art-15"):
        parse_catalog(text)


def test_catalog_refuses_a_rationale_that_quotes_nothing() -> None:
    text = re.sub(r"(    hipaa:164.312\(d\): )'[^\n]*'", r"\1'Because it is about logins.'", _catalog_text(), count=1)
    with pytest.raises(AuditError, match=r"quotes nothing of what the control requires"):
        parse_catalog(text)


def test_catalog_refuses_a_rationale_for_a_control_it_does_not_list() -> None:
    text = _catalog_text().replace("  EGRESS-001:\n", "  EGRESS-001:\n    eu-ai-act:art-10: '\"x\"'\n", 1)
    with pytest.raises(AuditError, match=r"citations.EGRESS-001.eu-ai-act:art-10: no control"):
        parse_catalog(text)


def test_citation_problems_name_a_missing_and_a_stray_rationale() -> None:
    cited = dict(CITED)
    cited["EGRESS-001"] = ("eu-ai-act:art-15", "hipaa:164.312(a)(1)")
    cited.pop("ACCESS-003")
    assert CATALOG.citation_problems(cited) == [
        "EGRESS-001 cites hipaa:164.312(a)(1) without a rationale in controls.yaml",
        "controls.yaml gives a rationale for EGRESS-001 -> hipaa:164.312(e)(1), which the rule does not cite",
        "controls.yaml gives rationales for ACCESS-003, which is no rule of the policy set",
    ]


def test_the_shipped_catalog_loads() -> None:
    assert load_catalog().ids() == CATALOG.ids()


@pytest.mark.parametrize(
    ("counts", "state"),
    [
        ((3, 0, 0, 0), "satisfied"),
        ((3, 1, 0, 0), "not-satisfied"),
        ((3, 1, 1, 1), "not-satisfied"),
        ((3, 0, 1, 0), "unknown"),
        ((3, 0, 0, 1), "waived"),
        ((0, 0, 0, 1), "waived"),
        ((0, 0, 0, 0), "not-assessed"),
    ],
)
def test_control_state_from_counts(counts: tuple[int, int, int, int], state: str) -> None:
    assert control_state(*counts) == state


def test_a_waived_rule_never_makes_a_control_satisfied() -> None:
    h1, h2 = make_facts("h1"), make_facts("h2")
    results = make_results(
        [
            (h1, (rule("EGRESS-001", "pass", ("hipaa:164.312(e)(1)",)),)),
            (h2, (rule("EGRESS-001", "waived", ("hipaa:164.312(e)(1)",)),)),
        ]
    )
    a = assess_controls(results, ["hipaa:164.312(e)(1)"])["hipaa:164.312(e)(1)"]
    assert (a.state, a.passed, a.waived, a.waived_on) == ("waived", 1, 1, ("h2: EGRESS-001",))


def test_a_control_whose_only_evidence_is_the_waiver_expiry_rule_is_not_assessed() -> None:
    h1 = make_facts("h1")
    results = make_results([(h1, (rule("WAIVER-EXPIRED", "pass", ("hipaa:164.308(a)(8)",)),))])
    a = assess_controls(results, ["hipaa:164.308(a)(8)", "eu-ai-act:art-12"])
    assert a["hipaa:164.308(a)(8)"].state == "not-assessed"
    assert a["hipaa:164.308(a)(8)"].rules == ("WAIVER-EXPIRED",)
    assert a["eu-ai-act:art-12"].state == "not-assessed"  # no rule cites it at all
    assert a["eu-ai-act:art-12"].rules == ()


def test_an_expired_waiver_still_fails_the_controls_it_cites() -> None:
    h1 = make_facts("h1")
    results = make_results([(h1, (rule("WAIVER-EXPIRED", "fail", ("hipaa:164.308(a)(8)",)),))])
    a = assess_controls(results, ["hipaa:164.308(a)(8)"])["hipaa:164.308(a)(8)"]
    assert (a.state, a.failing) == ("not-satisfied", ("h1: WAIVER-EXPIRED",))
