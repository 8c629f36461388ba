"""The --opa-url engine: opa-python-client against a loopback server speaking OPA's REST API.

No ``opa`` executable is installable here, so the server is tests/opa_rest (OPA's Go evaluator from
opa-golib-python-bindings behind a small HTTP layer of ours, bound to 127.0.0.1). Everything gapseal sends goes
through the real ``opa-python-client``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gapseal.audit.engines import load_policy_set, make_engine
from gapseal.audit.engines.opa_server import OpaServerEngine, dependency_order
from gapseal.audit.engines.policyset import Module
from gapseal.audit.engines.regopy_engine import RegopyEngine
from gapseal.audit.evaluate import evaluate_hosts, host_input_from_bytes
from gapseal.audit.results import parse_results
from gapseal.cli import main
from gapseal.errors import AuditError
from tests.opa_rest.facts_fixtures import LEAKS, compliant_facts, facts_bytes, leaky_facts
from tests.opa_rest.server import OpaRestServer

pytestmark = pytest.mark.integration

POLICY_SET = load_policy_set()


@pytest.fixture
def server() -> Iterator[OpaRestServer]:
    with OpaRestServer() as srv:
        yield srv


def test_results_match_regopy(server: OpaRestServer) -> None:
    hosts = [
        host_input_from_bytes(facts_bytes(compliant_facts("h1")), "facts/h1.json"),
        host_input_from_bytes(facts_bytes(leaky_facts(*LEAKS, host="h2")), "facts/h2.json"),
    ]
    with make_engine(server.url) as opa:
        assert isinstance(opa, OpaServerEngine)
        opa.load(POLICY_SET)
        via_opa = evaluate_hosts(hosts, opa).model_dump(mode="json")
    local = RegopyEngine()
    local.load(POLICY_SET)
    via_regopy = evaluate_hosts(hosts, local).model_dump(mode="json")
    assert via_opa.pop("engine") == f"opa-server {server.url}"
    via_regopy.pop("engine")
    via_opa.pop("generated")
    via_regopy.pop("generated")
    assert via_opa == via_regopy
    # policies went up through the Policy API, data through the Data API; the query is the rule packages' parent
    # document (one POST per host), never a defaulted rule
    methods = {(m, p.split("?")[0]) for m, p in server.state.requests}
    assert ("PUT", "/v1/policies/gapseal/gapseal/lib/violation.rego") in methods
    assert ("PUT", "/v1/data/allowlist") in methods
    assert ("PUT", "/v1/data/gapseal_rules") in methods
    assert [p for m, p in server.state.requests if m == "POST"] == ["/v1/data/gapseal", "/v1/data/gapseal"]
    assert not any(p.endswith("/deny") for _, p in methods)


def test_policy_test_cli_on_the_server(
    server: OpaRestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The logging domain's Rego tests through the server (every test on OPA: test_opa_differential; each distinct
    query costs the bindings a fresh compile, so the whole suite over HTTP would take most of a minute)."""
    import shutil

    from gapseal.resources import policies_dir

    root = tmp_path / "policies"
    shutil.copytree(policies_dir(), root)
    for path in root.rglob("*_test.rego"):
        if path.name not in ("fixtures_test.rego", "retention_test.rego"):
            path.unlink()
    n = len(load_policy_set(root).tests)
    assert n >= 7
    assert main(["policy", "test", "--opa-url", server.url, "--policies", str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == f"opa-server {server.url}:"
    assert out[-1] == f"{n} passed, 0 failed"
    # a weakened rule fails its tests on the server too
    retention = root / "gapseal/logging/retention.rego"
    retention.write_text(retention.read_text().replace("\tseconds > 0\n", "\tseconds > 99999999999\n", 1))
    assert main(["policy", "test", "--opa-url", server.url, "--policies", str(root)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "FAIL data.gapseal.logging_test.test_fail_logging_002_one_week" in "\n".join(out)
    assert out[-1] == f"{n - 2} passed, 2 failed"


def test_audit_evaluate_cli_on_the_server(
    server: OpaRestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_bytes(facts_bytes(compliant_facts("good")))
    bad.write_bytes(facts_bytes(leaky_facts("default_route", "telemetry_on", host="bad")))
    assert main(["audit", "evaluate", str(good), "--opa-url", server.url]) == 0
    capsys.readouterr()
    assert main(["audit", "evaluate", str(good), str(bad), "--opa-url", server.url, "--json"]) == 3
    results = parse_results(capsys.readouterr().out)
    assert results.engine == f"opa-server {server.url}"
    failed = sorted(r.rule for h in results.hosts for r in h.rules if r.status == "fail")
    assert failed == ["EGRESS-001", "TELEMETRY-001"]


def test_reload_deletes_stale_gapseal_policies_only(server: OpaRestServer) -> None:
    server.state.policies["gapseal/old/removed.rego"] = "package gapseal.old\n\ndeny contains 1 if true\n"
    server.state.policies["site/other.rego"] = "package site.other\n\nx := 1\n"
    with make_engine(server.url) as opa:
        opa.load(POLICY_SET)
    assert "gapseal/old/removed.rego" not in server.state.policies
    assert "site/other.rego" in server.state.policies  # not ours: left alone
    assert set(server.state.policies) - {"site/other.rego"} == {"gapseal/" + m.path for m in POLICY_SET.policy_modules}


def test_server_compile_error_names_file_and_row(server: OpaRestServer) -> None:
    """OPA compiles on upload: a module calling an unknown function is refused there, loudly (scanner bypassed)."""
    module = Module(
        path="gapseal/x/x.rego",
        package="gapseal.x",
        is_test=False,
        source='package gapseal.x\n\ndeny contains v if {\n\tv := no_such.builtin("x")\n}\n',
    )
    engine = OpaServerEngine(server.url)
    with pytest.raises(AuditError) as err:
        engine._load([module], {})
    assert "upload gapseal/x/x.rego failed" in err.value.message
    assert "gapseal/gapseal/x/x.rego:4 undefined function no_such.builtin" in err.value.message
    assert err.value.where == server.url


def test_unsupported_builtin_is_refused_before_upload(server: OpaRestServer, tmp_path: Path) -> None:
    import shutil

    from gapseal.resources import policies_dir

    root = tmp_path / "policies"
    shutil.copytree(policies_dir(), root)
    path = root / "gapseal/logging/retention.rego"
    path.write_text(path.read_text().replace("\tis_number(seconds)\n", "\tis_number(seconds)\n\tprint(seconds)\n", 1))
    engine = OpaServerEngine(server.url)
    with pytest.raises(AuditError, match="builtin print is not implemented by the opa-server engine") as err:
        engine.load(load_policy_set(root))
    assert err.value.where is not None
    assert err.value.where.startswith("gapseal/logging/retention.rego:")
    assert server.state.requests == []  # nothing was sent


def test_unreachable_server_is_an_error_naming_the_url(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    facts = tmp_path / "h.json"
    facts.write_bytes(facts_bytes(compliant_facts("h")))
    assert main(["audit", "evaluate", str(facts), "--opa-url", url, "--json"]) == 1
    err = json.loads(capsys.readouterr().out)
    assert err["ok"] is False
    assert err["where"] == url
    assert "OPA server: cannot list policies failed" in err["message"] or "OPA server:" in err["message"]


def test_dependency_order_uploads_imported_packages_first() -> None:
    ordered = [m.package for m in dependency_order(POLICY_SET.modules)]
    assert ordered.index("gapseal.lib") < ordered.index("gapseal.egress")
    assert ordered.index("gapseal.egress") < ordered.index("gapseal.egress_test")
    assert ordered.index("gapseal.fixtures") < ordered.index("gapseal.egress_test")
