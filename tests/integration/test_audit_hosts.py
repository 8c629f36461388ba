"""``gapseal audit run -i`` on real namespace hosts through Ansible: a locked-down host passes, a leaky one fails.

Hosts 60 (compliant) and 61 (leaky) live in 10.231.60.0/30 and 10.231.61.0/30 (the auditor's range). Both are
staged by hand (tests/integration/audit_staging.py): a gapseal install record with real files and digests, the
egress lockdown ruleset in the host's own nftables, key-only sshd settings, persistent journald. The leaky host then
gets exactly five leaks, and the audit must report exactly the rules that catch them (six: the default route is
caught both as a route and by the route-lookup probes), with their control ids, exit 3, and the
HTML report must show them. Nothing is sent anywhere but between the controller and these namespaces.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gapseal.audit.verify_evidence import verify_evidence
from gapseal.signing.keys import SigningKey, load_public_key, write_key_pair
from tests.hosts.netns import HostFleet
from tests.integration.audit_staging import (
    StagedHost,
    leak_altered_file,
    leak_default_route,
    leak_inference_without_switches,
    leak_proxy_variable,
    leak_wildcard_listener,
    stage_install,
)

pytestmark = pytest.mark.integration

COMPLIANT, LEAKY = 60, 61
GAPSEAL = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "gapseal")

# The test machine cannot stage dm-crypt volumes: the one deviation both hosts carry is waived, with an expiry.
WAIVERS = """\
apiVersion: gapseal/v1
kind: Waivers
waivers:
  - rule: ENCRYPTION-001
    hosts: "*"
    justification: "test machine: no dm-crypt for the tmpfs-backed model directory"
    approver: "auditor@example.org"
    expires: "2099-12-31"
"""

# rule -> the leak it must catch. The default route is caught twice, as it should be: as a route (EGRESS-001) and by
# the egress probes, whose route lookups towards documentation addresses now find a path (EGRESS-005).
EXPECTED_LEAKS = {
    "EGRESS-001": "default route via the veth",
    "EGRESS-005": "route lookups to 203.0.113.0/24 etc. succeed through that default route",
    "EGRESS-006": "https_proxy in /etc/environment",
    "ACCESS-003": "listener on 0.0.0.0:18080",
    "TELEMETRY-001": "llama.cpp without LLAMA_OFFLINE",
    "INTEGRITY-002": "config.json altered after install",
}


@pytest.fixture(scope="module")
def auditor_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("auditor")
    return write_key_pair(SigningKey.generate(), d / "auditor", None)


@pytest.fixture(scope="module")
def hosts(host_fleet: HostFleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, StagedHost]]:
    roots = tmp_path_factory.mktemp("roots")
    staged = {i: stage_install(host_fleet.add(i), roots / f"host{i}") for i in (COMPLIANT, LEAKY)}
    leaky = staged[LEAKY]
    try:
        leak_default_route(leaky)
        leak_proxy_variable(leaky)
        leak_wildcard_listener(leaky)
        leak_inference_without_switches(leaky)
        leak_altered_file(leaky)
        yield staged
    finally:
        for s in staged.values():
            s.stop()


def _inventory(fleet: HostFleet, staged: StagedHost, path: Path) -> Path:
    doc = fleet.inventory(
        [staged.host],
        host_vars={staged.host.name: {"gapseal_root": str(staged.root), "gapseal_executable": GAPSEAL}},
    )
    path.write_text(yaml.safe_dump(doc))
    return path


def _audit(
    fleet: HostFleet,
    staged: StagedHost,
    key: Path,
    tmp: Path,
    capsys: pytest.CaptureFixture[str],
    *extra: str,
) -> tuple[int, dict[str, Any], Path]:
    from gapseal.cli import main

    waivers = tmp / "waivers.yaml"
    waivers.write_text(WAIVERS)
    out = tmp / "evidence"
    argv = ["audit", "run", "-i", str(_inventory(fleet, staged, tmp / "inventory.yml")), "--out", str(out)]
    argv += ["--key", str(key), "--waivers", str(waivers), "--json", *extra]
    rc = main(argv)
    captured = capsys.readouterr()
    assert captured.out, captured.err
    return rc, json.loads(captured.out), out


def test_locked_down_host_audits_compliant(
    host_fleet: HostFleet,
    hosts: dict[int, StagedHost],
    auditor_key: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, doc, out = _audit(host_fleet, hosts[COMPLIANT], auditor_key[0], tmp_path, capsys)
    assert doc["findings"] == []
    assert rc == 0
    assert doc["compliant"] is True
    v = verify_evidence(out, [load_public_key(auditor_key[1])])
    assert v.compliant is True
    assert "facts/host60.json" in v.files
    html = (out / "report.html").read_text()
    # ENCRYPTION-001 is waived (WAIVERS): the verdict counts it separately, never as satisfied
    assert "COMPLIANT: no rule failed and nothing is unknown on 1 host(s); 1 waived." in html


def test_leaky_host_yields_exactly_its_leaks(
    host_fleet: HostFleet,
    hosts: dict[int, StagedHost],
    auditor_key: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # one active probe, named by the auditor: TCP to the controller's side of the host's own link (port 9, closed)
    probe = f"{hosts[LEAKY].host.gateway}:9"
    rc, doc, out = _audit(host_fleet, hosts[LEAKY], auditor_key[0], tmp_path, capsys, "--probe", probe)
    facts = json.loads((out / "facts/host61.json").read_text())
    active = [p for p in facts["probes"]["probes"] if p["active"]]
    assert [(p["kind"], p["target"]) for p in active] == [("tcp_connect", probe)]
    found = {f["rule"]: f for f in doc["findings"]}
    assert sorted(found) == sorted(EXPECTED_LEAKS), json.dumps(doc["findings"], indent=1)
    assert rc == 3
    assert all(f["status"] == "fail" for f in found.values())

    # the control ids come from each rule's METADATA; the report and OSCAL carry the same
    from gapseal.audit.engines.policyset import load_policy_set

    policy = load_policy_set()
    for rule_id, f in found.items():
        assert f["controls"] == list(policy.rule(rule_id).controls), rule_id
        assert f["controls"], rule_id

    results = json.loads((out / "results.json").read_text())
    (h,) = results["hosts"]
    assert {r["rule"] for r in h["rules"] if r["status"] == "fail"} == set(EXPECTED_LEAKS)
    assert "/routes" in " ".join(next(r for r in h["rules"] if r["rule"] == "EGRESS-001")["evidence"])

    html = (out / "report.html").read_text()
    assert "NOT COMPLIANT: 6 failed and 0 unknown rule result(s) on 1 host(s)." in html
    for rule_id in EXPECTED_LEAKS:
        assert f'data-rule="{rule_id}"' in html
    for control in {c for f in found.values() for c in f["controls"]}:
        assert control in html

    from trestle.oscal.assessment_results import Model

    oscal_doc = json.loads((out / "assessment-results.json").read_text())
    Model.parse_obj(oscal_doc)  # the real document is valid OSCAL 1.1.3 Assessment Results
    oscal = oscal_doc["assessment-results"]
    states = {}
    for f in oscal["results"][0]["findings"]:
        props = {p["name"]: p["value"] for p in f["props"]}
        states[props["control-id"]] = (f["target"]["status"]["state"], props["control-status"])
    failing = {c for f in found.values() for c in f["controls"]}
    # only what no rule failed can be satisfied; a waived rule (ENCRYPTION-001 here) never satisfies its controls,
    # and controls only the waiver-expiry rule cites are not assessed (gapseal.audit.controls.assess_controls)
    assert {c for c, (state, _) in states.items() if state == "satisfied"}.isdisjoint(failing)
    assert all(states[c] == ("not-satisfied", "not-satisfied") for c in failing)
    assert states["hipaa:164.312(a)(2)(iv)"] == ("not-satisfied", "waived")
    assert states["hipaa:164.308(a)(8)"] == ("not-satisfied", "not-assessed")

    v = verify_evidence(out, [load_public_key(auditor_key[1])])
    assert v.compliant is False


def test_unreachable_host_is_an_error_naming_it(
    host_fleet: HostFleet, auditor_key: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A host that cannot be audited is never a silent gap in the evidence: exit 1, the host named, nothing written."""
    from gapseal.cli import main

    down = host_fleet.add(64, start_sshd=False)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        yaml.safe_dump(host_fleet.inventory([down], host_vars={down.name: {"gapseal_executable": GAPSEAL}}))
    )
    out = tmp_path / "evidence"
    rc = main(["audit", "run", "-i", str(inventory), "--out", str(out), "--key", str(auditor_key[0])])
    err = capsys.readouterr().err
    assert rc == 1
    assert "cannot audit host host64 (unreachable)" in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".evidence")]


INSTALLED = 65


def test_host_installed_by_gapseal_install_audits_compliant(
    host_fleet: HostFleet,
    auditor_key: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The real chain: a signed bundle, `gapseal install` (egress lockdown included) onto host 65, then the audit.

    Only sshd's settings and journald's retention (the host's base OS, not gapseal's install) are staged by hand,
    plus the same dm-crypt waiver as above.
    """
    from gapseal.cli import main
    from tests.bundles import make_bundle, make_keys
    from tests.fixtures.hardware.fakebin import install_fake_tools

    monkeypatch.setenv("GAPSEAL_STATE_DIR", str(tmp_path / "state"))
    keys = make_keys(tmp_path / "signer")
    bundle = make_bundle(tmp_path / "b", keys)
    host = host_fleet.add(INSTALLED, extra_path=[install_fake_tools(tmp_path / "tools", "none")])
    root = tmp_path / "root65"
    inventory = tmp_path / "install.yml"
    inventory.write_text(
        yaml.safe_dump(
            host_fleet.inventory(
                [host],
                host_vars={
                    host.name: {"gapseal_root": str(root), "egress_allow": [f"{host.gateway}/32"]},
                },
            )
        )
    )
    rc = main(
        ["install", str(tmp_path / "b" / "bundle"), "-i", str(inventory), "--key", str(keys.public_path), "--quiet"]
    )
    capsys.readouterr()
    assert rc == 0
    ruleset = host.exec(["nft", "list", "ruleset"], check=True).stdout
    assert "policy drop" in ruleset  # the installer's egress role locked the host down

    # the host's base OS: key-only sshd forwarding nothing, persistent journald kept a year (not gapseal's to install)
    from tests.integration.audit_staging import _write

    _write(
        root / "etc/ssh/sshd_config",
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        f"PermitEmptyPasswords no\nPubkeyAuthentication yes\nListenAddress {host.address}\n"
        "DisableForwarding yes\nPermitTunnel no\n",
    )
    _write(root / "etc/systemd/journald.conf", "[Journal]\nStorage=persistent\nMaxRetentionSec=1year\n")
    (root / "var/log/journal").mkdir(parents=True, exist_ok=True)

    staged = StagedHost(host, root)
    (tmp_path / "audit").mkdir()
    rc, doc, out = _audit(host_fleet, staged, auditor_key[0], tmp_path / "audit", capsys)
    assert doc["findings"] == []
    assert rc == 0
    v = verify_evidence(out, [load_public_key(auditor_key[1])])
    assert v.predicate["bundle"]["manifest_digests"] == [bundle.manifest_digest]
