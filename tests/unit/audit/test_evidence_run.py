"""audit run's pieces that need no host: the catalog view, facts from a module result, early refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from gapseal.audit.run import AuditRunRequest, _facts_from_result, controls_from_catalog, run_audit
from gapseal.errors import AuditError, UsageError
from gapseal.signing.keys import SigningKey

from .evidence_fixtures import make_facts


def test_controls_from_the_shipped_catalog() -> None:
    controls = controls_from_catalog()
    assert controls["hipaa:164.312(e)(1)"].framework == "HIPAA"
    assert controls["eu-ai-act:art-15"].framework == "EU AI Act"
    assert "Article 15" in controls["eu-ai-act:art-15"].title
    assert "Accuracy, robustness and cybersecurity" in controls["eu-ai-act:art-15"].title


def test_facts_from_module_result_dict_or_string() -> None:
    he = make_facts("h1")
    as_dict = _facts_from_result("h1", {"facts": he.facts.model_dump(mode="json")})
    as_text = _facts_from_result("h1", {"ansible_facts": {"gapseal_audit_facts": he.facts.to_json()}})
    assert as_dict == as_text == he.facts


def test_module_result_without_facts_is_an_error_naming_the_host() -> None:
    with pytest.raises(AuditError, match="returned no facts for h9") as info:
        _facts_from_result("h9", {"changed": False})
    assert info.value.where == "h9"


def test_module_result_with_wrong_kind_is_refused() -> None:
    with pytest.raises(AuditError, match="not a gapseal facts document"):
        _facts_from_result("h1", {"facts": {"kind": "something-else"}})


def test_existing_evidence_dir_refused_before_collecting(tmp_path: Path) -> None:
    out = tmp_path / "ev"
    out.mkdir()
    with pytest.raises(UsageError, match="evidence directory already exists"):
        run_audit(AuditRunRequest(out_dir=out, key=SigningKey.generate(), root=tmp_path / "nonexistent"))


def test_bad_probe_refused_before_collecting(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is not an IP address"):
        run_audit(AuditRunRequest(out_dir=tmp_path / "ev", key=SigningKey.generate(), probes=("example.org:443",)))
    assert not (tmp_path / "ev").exists()


def test_waiver_for_an_unknown_rule_refused_before_collecting(tmp_path: Path) -> None:
    waivers = tmp_path / "waivers.yaml"
    waivers.write_text(
        "apiVersion: gapseal/v1\nkind: Waivers\nwaivers:\n  - rule: EGRESS-999\n    hosts: '*'\n"
        "    justification: typo\n    approver: a@example.org\n    expires: '2099-01-01'\n"
    )
    request = AuditRunRequest(out_dir=tmp_path / "ev", key=SigningKey.generate(), waivers=waivers)
    with pytest.raises(AuditError, match="names unknown rule EGRESS-999"):
        run_audit(request)
    assert not (tmp_path / "ev").exists()


def test_bad_site_file_refused_before_collecting(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("apiVersion: gapseal/v1\nkind: Site\nscope: {organisation: O, system: S}\n")
    request = AuditRunRequest(out_dir=tmp_path / "ev", key=SigningKey.generate(), site=site)
    with pytest.raises(AuditError, match=r"site file is invalid: scope.assessor: Field required"):
        run_audit(request)
    assert not (tmp_path / "ev").exists()


def test_site_file_digest_or_defaults_recorded_in_results(tmp_path: Path) -> None:
    """A local audit (an empty root) without a site file records that the defaults applied; with one, its sha256 and
    scope, and its allowlist changes the policy digest (the site data is part of what the verdict rests on)."""
    import hashlib
    import json

    from gapseal.audit.site import DEFAULTS_NOTE

    root = tmp_path / "root"
    root.mkdir()
    plain = run_audit(AuditRunRequest(out_dir=tmp_path / "ev1", key=SigningKey.generate(), root=root))
    assert (plain.site.source, plain.site.note, plain.site.sha256) == ("defaults", DEFAULTS_NOTE, None)
    stored = json.loads((tmp_path / "ev1" / "results.json").read_text())
    assert stored["site"]["source"] == "defaults"

    site = tmp_path / "site.yaml"
    site.write_text(
        "apiVersion: gapseal/v1\nkind: Site\nscope: {organisation: O, system: S, assessor: A}\n"
        "allowlist:\n  ntp_servers: [ntp.enclave]\n"
    )
    with_site = run_audit(AuditRunRequest(out_dir=tmp_path / "ev2", key=SigningKey.generate(), root=root, site=site))
    digest = "sha256:" + hashlib.sha256(site.read_bytes()).hexdigest()
    assert (with_site.site.source, with_site.site.sha256) == ("file", digest)
    stored = json.loads((tmp_path / "ev2" / "results.json").read_text())
    assert stored["site"]["sha256"] == digest
    assert stored["site"]["scope"] == {"organisation": "O", "system": "S", "assessor": "A", "description": None}
    assert with_site.results.policy_digest != plain.results.policy_digest
