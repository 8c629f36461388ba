"""Differential test: every policy fixture evaluated by regopy (rego-cpp) and by OPA's own Go evaluator
(opa-golib-python-bindings) must give identical results.

Fixtures: the input of every Rego test (``input_*`` rules), the Python facts fixtures (compliant, each leak, all
leaks, a 300-rule firewall), and every Rego test's verdict.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gapseal.audit.engines import load_policy_set
from gapseal.audit.engines.regopy_engine import RegopyEngine
from gapseal.audit.evaluate import evaluate_hosts, host_input_from_bytes, policy_input
from tests.opa_rest.facts_fixtures import LEAKS, compliant_facts, facts_bytes, firewall_facts, leaky_facts
from tests.opa_rest.golib_engine import GolibEngine

pytestmark = pytest.mark.integration

POLICY_SET = load_policy_set()


@pytest.fixture(scope="module")
def regopy_engine() -> RegopyEngine:
    engine = RegopyEngine()
    engine.load(POLICY_SET, include_tests=True)
    return engine


@pytest.fixture(scope="module")
def opa_engine() -> GolibEngine:
    engine = GolibEngine()
    engine.load(POLICY_SET, include_tests=True)
    return engine


def canonical(by_package: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """Violations as sorted canonical JSON strings per package (a deny set has no order)."""
    return {p: sorted(json.dumps(v, sort_keys=True) for v in vs) for p, vs in sorted(by_package.items())}


REGO_INPUTS = [(t.package, t.input_rule) for t in POLICY_SET.tests if t.input_rule is not None]

PY_FIXTURES: dict[str, dict[str, Any]] = {
    "compliant": compliant_facts(),
    "all-leaks": leaky_facts(*LEAKS),
    "firewall-300": firewall_facts(300),
    **{f"leak-{name}": leaky_facts(name) for name in sorted(LEAKS)},
}


@pytest.mark.parametrize(("package", "rule"), REGO_INPUTS, ids=[f"{p}.{r}" for p, r in REGO_INPUTS])
def test_rego_fixture_inputs_evaluate_identically(
    regopy_engine: RegopyEngine, opa_engine: GolibEngine, package: str, rule: str
) -> None:
    document = opa_engine.query_document(f"{package}.{rule}", {})
    assert regopy_engine.query_document(f"{package}.{rule}", {}) == document  # the fixture itself agrees
    assert canonical(regopy_engine.evaluate(document)) == canonical(opa_engine.evaluate(document))


@pytest.mark.parametrize("name", sorted(PY_FIXTURES))
@pytest.mark.parametrize("annotated", [True, False], ids=["evaluator-input", "raw-facts"])
def test_facts_fixtures_evaluate_identically(
    regopy_engine: RegopyEngine, opa_engine: GolibEngine, name: str, annotated: bool
) -> None:
    facts = PY_FIXTURES[name]
    document = policy_input(facts, POLICY_SET.data) if annotated else {k: v for k, v in facts.items()}
    ours, theirs = canonical(regopy_engine.evaluate(document)), canonical(opa_engine.evaluate(document))
    assert ours == theirs
    if name.startswith("leak-") or name == "all-leaks":
        assert any(ours.values()), "a leaky fixture produced no violation at all"


def test_results_documents_are_identical_apart_from_the_engine(
    regopy_engine: RegopyEngine, opa_engine: GolibEngine
) -> None:
    hosts = [
        host_input_from_bytes(facts_bytes(compliant_facts("h1")), "facts/h1.json"),
        host_input_from_bytes(facts_bytes(leaky_facts(*LEAKS, host="h2")), "facts/h2.json"),
    ]
    a = evaluate_hosts(hosts, regopy_engine).model_dump(mode="json")
    b = evaluate_hosts(hosts, opa_engine).model_dump(mode="json")
    for doc in (a, b):
        doc.pop("engine")
        doc.pop("generated")
    assert a == b


def test_every_rego_test_passes_on_opa(opa_engine: GolibEngine) -> None:
    failed = [f"{o.test.name}: {o.detail}" for o in opa_engine.run_tests() if not o.passed]
    assert failed == []


def test_a_module_rego_cpp_accepts_is_rejected_by_opa() -> None:
    """Known gap the differential test covers: rego-cpp parses `x ==` + newline + `v := ...` without complaint."""
    from gapseal.audit.engines.policyset import Module
    from gapseal.errors import AuditError

    module = Module(
        path="gapseal/x/x.rego",
        package="gapseal.x",
        is_test=False,
        source='package gapseal.x\n\ndeny contains v if {\n\tinput.flag ==\n\tv := "leak"\n}\n',
    )
    engine = GolibEngine()
    with pytest.raises(AuditError, match="OPA rejected the policies"):
        engine._load([module], {})
