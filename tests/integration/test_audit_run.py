"""``gapseal audit run`` without an inventory: the auditor runs on the isolated host itself, then the evidence is
checked with ``gapseal evidence verify`` as an outsider would (the console scripts, in subprocesses).

Host 63 (10.231.63.0/30) is staged locked down (tests/integration/audit_staging.py); the CLI runs inside its network
namespace with ``ip netns exec``, auditing the prefix it was staged under.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gapseal.audit.results import Results
from gapseal.signing.keys import SigningKey, write_key_pair
from tests.hosts.netns import HostFleet
from tests.integration.audit_staging import StagedHost, stage_install
from tests.integration.test_audit_hosts import WAIVERS

pytestmark = pytest.mark.integration

BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"
GAPSEAL = str(BIN / "gapseal")


@pytest.fixture(scope="module")
def staged(host_fleet: HostFleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StagedHost]:
    s = stage_install(host_fleet.add(63), tmp_path_factory.mktemp("roots") / "host63")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_key_pair(SigningKey.generate(), tmp_path_factory.mktemp("auditor") / "AUDITOR", None)


def _run_in_host(staged: StagedHost, *argv: str) -> subprocess.CompletedProcess[str]:
    return staged.host.exec([GAPSEAL, *argv], timeout=120)


def test_local_audit_on_the_host_then_verify_offline(
    staged: StagedHost, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    waivers = tmp_path / "waivers.yaml"
    waivers.write_text(WAIVERS)
    out = tmp_path / "evidence"
    p = _run_in_host(
        staged, "audit", "run", "--root", str(staged.root), "--out", str(out), "--key", str(keys[0]),
        "--waivers", str(waivers), "--json",
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads(p.stdout)
    assert doc["compliant"] is True
    assert doc["timings"]["total"] < 30
    html = (out / "report.html").read_text()
    assert f"gapseal evidence verify evidence --key {keys[1]}" in html

    # an outsider, on another machine: only the directory and the public key
    v = subprocess.run([GAPSEAL, "evidence", "verify", str(out), "--key", str(keys[1])], capture_output=True, text=True)
    assert v.returncode == 0, v.stderr
    assert "audit verdict: compliant" in v.stdout

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    facts = next((copy / "facts").iterdir())
    facts.write_text(facts.read_text().replace('"status": "ok"', '"status": "unknown"', 1))
    v = subprocess.run(
        [GAPSEAL, "evidence", "verify", str(copy), "--key", str(keys[1])], capture_output=True, text=True
    )
    assert v.returncode == 1
    assert f"digest mismatch: facts/{facts.name}" in v.stderr

    # the same directory again: refused without --overwrite (usage error), accepted with it
    p = _run_in_host(staged, "audit", "run", "--root", str(staged.root), "--out", str(out), "--key", str(keys[0]))
    assert p.returncode == 2
    assert "already exists" in p.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--probe", "example.org:443"], 2, "is not an IP address"),
        (["--probe", "10.231.63.1"], 2, "a TCP probe needs a port"),
        (["--waivers", "/nonexistent/waivers.yaml"], 1, "waivers file /nonexistent/waivers.yaml does not exist"),
        (["--inventory", "/nonexistent/inventory.yml"], 1, "inventory /nonexistent/inventory.yml does not exist"),
    ],
)
def test_usage_errors_before_any_collection(
    keys: tuple[Path, Path],
    tmp_path: Path,
    args: list[str],
    code: int,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gapseal.cli import main

    out = tmp_path / "ev"
    assert main(["audit", "run", "--out", str(out), "--key", str(keys[0]), *args]) == code
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_public_key_given_as_signing_key_is_an_error(
    keys: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gapseal.cli import main

    rc = main(["audit", "run", "--out", str(tmp_path / "ev"), "--key", str(keys[1])])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "this is a public key" in err


def test_regopy_and_an_opa_server_reach_the_same_results_on_a_leaky_host(host_fleet: HostFleet, tmp_path: Path) -> None:
    """The same facts from a real leaky host (66), evaluated in-process and on an OPA server (OPA's own Go evaluator
    behind a loopback REST server, tests/opa_rest), give the same status and findings for every rule."""
    from gapseal.audit.engines import load_policy_set
    from gapseal.audit.evidence import WAIVERS_FILE, InputFile, write_evidence
    from gapseal.audit.facts import load_facts
    from gapseal.audit.run import _host_evidence, controls_from_catalog, evaluate
    from gapseal.audit.verify_evidence import verify_evidence
    from gapseal.audit.waivers import parse_waivers
    from tests.integration.audit_staging import (
        leak_altered_file,
        leak_default_route,
        leak_inference_without_switches,
        leak_proxy_variable,
        leak_wildcard_listener,
    )
    from tests.opa_rest.server import OpaRestServer

    staged = stage_install(host_fleet.add(66), tmp_path / "host66")
    try:
        for leak in (
            leak_default_route,
            leak_proxy_variable,
            leak_wildcard_listener,
            leak_inference_without_switches,
            leak_altered_file,
        ):
            leak(staged)
        p = staged.host.exec([GAPSEAL, "audit", "collect", "--root", str(staged.root)], timeout=120)
        assert p.returncode == 0, p.stderr
    finally:
        staged.stop()
    he = _host_evidence("host66", load_facts(p.stdout))
    policy_set = load_policy_set()
    waivers = parse_waivers(WAIVERS.encode())
    regopy = evaluate([he], policy_set, waivers=waivers)
    with OpaRestServer() as server:
        opa = evaluate([he], policy_set, waivers=waivers, opa_url=server.url)

    def outcome(results: Results) -> list[tuple[str, str, list[str]]]:
        return [(r.rule, r.status, sorted(f.message for f in r.findings)) for r in results.hosts[0].rules]

    assert outcome(regopy) == outcome(opa)
    assert regopy.engine != opa.engine
    failed = {r for r, s, _ in outcome(regopy) if s == "fail"}
    assert {"EGRESS-001", "EGRESS-006", "ACCESS-003", "TELEMETRY-001", "INTEGRITY-002"} <= failed

    key = SigningKey.generate()
    for name, results in (("regopy", regopy), ("opa", opa)):
        out = tmp_path / f"evidence-{name}"
        write_evidence(
            out,
            hosts=[he],
            results=results,
            controls=controls_from_catalog(policy_set.catalog),
            key=key,
            inputs=[InputFile(WAIVERS_FILE, WAIVERS.encode(), "The waivers file")],  # the results rest on it
        )
        assert verify_evidence(out, [key.public]).compliant is False
