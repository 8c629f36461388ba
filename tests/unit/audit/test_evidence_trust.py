"""Evidence an auditor trusts (issue 11): the signer and scope are named, every finding links the raw file and command
behind it, counts by severity with waived apart, control states, changes since the previous evidence, and every claim
the attestation makes about them is checked by ``evidence verify`` (tamper tests)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from trestle.oscal.assessment_results import AssessmentResults

from gapseal.audit.attest import sign_evidence
from gapseal.audit.changes import load_previous
from gapseal.audit.evidence import ATTESTATION_FILE, SITE_FILE, WAIVERS_FILE, EvidenceFile, InputFile, write_evidence
from gapseal.audit.scope import ssh_fingerprint
from gapseal.audit.verify_evidence import verify_evidence
from gapseal.errors import AuditError, EvidenceError
from gapseal.signing.keys import SigningKey
from tests.unit.audit.evidence_full import (
    CONTROL_B,
    CONTROL_E1,
    CONTROL_EVAL,
    ROUTE_ARGV,
    SITE_BYTES,
    TRUST_NAME,
    WAIVERS_BYTES,
    Full,
    copy_evidence,
    host_with_routes,
    results_for,
    write_full,
)


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Full:
    return write_full(tmp_path_factory.mktemp("full") / "ev", SigningKey.generate())


@pytest.fixture
def ev(full: Full, tmp_path: Path) -> Path:
    return copy_evidence(full.path, tmp_path / "ev")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hrefs += [v or "" for k, v in attrs if tag == "a" and k == "href"]


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def _html(full: Full) -> str:
    return (full.path / "report.html").read_text()


def _oscal(full: Full) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((full.path / "assessment-results.json").read_text())
    return doc


def _props(obj: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in obj.get("props", []):
        out.setdefault(p["name"], []).append(p["value"])
    return out


# ------------------------------------------------------------------------------------------------ signer and scope


def test_fingerprint_is_what_ssh_keygen_prints(tmp_path: Path) -> None:
    key = SigningKey.generate()
    pem = tmp_path / "k.pub"
    pem.write_bytes(key.public.pem())
    ssh = subprocess.run(["ssh-keygen", "-i", "-m", "PKCS8", "-f", str(pem)], capture_output=True, check=True)
    (tmp_path / "k.ssh").write_bytes(ssh.stdout)
    out = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(tmp_path / "k.ssh")], capture_output=True, text=True, check=True
    )
    assert out.stdout.split()[1] == ssh_fingerprint(key.public)


def test_report_names_the_signer_and_the_scope(full: Full) -> None:
    text = _text(_html(full))
    assert f"Signer {TRUST_NAME} (the name trust file trust.yaml gives this key)" in text
    assert f"Key id {full.key.key_id}" in text
    assert f"Fingerprint {ssh_fingerprint(full.key.public)}" in text
    assert "Organisation Example Clinic System radiology-llm Assessor J. Doe" in text
    assert "Site file site.yaml , kept as inputs/site.yaml sha256:" in text
    assert "Bundle clinic 1.4.0 (sha256:" + "cd" * 32 + ")" in text


def test_report_profiles_every_host(full: Full) -> None:
    text = _text(_html(full))
    assert "h1 Debian GNU/Linux 12 (bookworm) 6.1.0-28-amd64 10.206.7.2 2026-11-23T16:00:00+00:00 clinic 1.4.0" in text
    assert "h2 Debian GNU/Linux 12 (bookworm) 6.1.0-28-amd64 10.206.8.2" in text


def test_oscal_names_signer_scope_and_hosts(full: Full) -> None:
    ar = _oscal(full)["assessment-results"]
    meta = _props(ar["metadata"])
    assert meta["signer-key-id"] == [full.key.key_id]
    assert meta["signer-fingerprint"] == [ssh_fingerprint(full.key.public)]
    assert meta["signer-name"] == [TRUST_NAME]
    assert meta["system"] == ["radiology-llm"]
    assert meta["bundle"] == ["clinic 1.4.0 sha256:" + "cd" * 32]
    parties = {p["name"]: p["type"] for p in ar["metadata"]["parties"]}
    assert parties == {"gapseal": "organization", "J. Doe": "person", "Example Clinic": "organization"}
    items = {_props(i)["host-name"][0]: _props(i) for i in ar["results"][0]["local-definitions"]["inventory-items"]}
    assert items["h1"]["os"] == ["Debian GNU/Linux 12 (bookworm)"]
    assert items["h1"]["kernel"] == ["6.1.0-28-amd64"]
    assert items["h1"]["address"] == ["10.206.7.2"]
    assert items["h1"]["collected"] == ["2026-11-23T16:00:00Z"]
    assert (items["h1"]["bundle-name"], items["h1"]["bundle-version"]) == (["clinic"], ["1.4.0"])


def test_oscal_stays_valid(full: Full) -> None:
    AssessmentResults.parse_obj(_oscal(full)["assessment-results"])


def test_attestation_records_signer_scope_hosts_controls_and_previous(full: Full) -> None:
    p: Any = full.written.predicate
    assert p["signer"] == {
        "key_id": full.key.key_id,
        "fingerprint": ssh_fingerprint(full.key.public),
        "name": TRUST_NAME,
        "trust_file": "trust.yaml",
    }
    assert p["scope"]["organisation"] == "Example Clinic"
    assert [h["host"] for h in p["hosts"]] == ["h1", "h2"]
    assert p["previous"]["new"] == 1
    assert CONTROL_EVAL in p["controls"]["not-assessed"]
    assert CONTROL_B in p["controls"]["waived"]


# ------------------------------------------------------------------------------------------------ findings and evidence


def test_every_finding_links_an_existing_raw_file_and_its_command(full: Full) -> None:
    html = _html(full)
    parser = _Links()
    parser.feed(html)
    raw = sorted(set(re.findall(r'<a class="raw" href="([^"]+)"', html)))  # links from findings
    assert raw == [
        "raw/h1/sha256-" + hashlib.sha256(b'[{"type":"local","dst":"10.206.7.2","table":"local"}]\n').hexdigest()
    ]
    assert all((full.path / h).is_file() for h in parser.hrefs if not h.startswith("#"))
    row = html[html.index('data-rule="EGRESS-001"') :].split("</tr>")[0]
    assert f'<a class="raw" href="{raw[0]}">' in row
    assert f'<code class="cmd">{" ".join(ROUTE_ARGV)}</code>' in row


def test_a_source_that_was_not_stored_is_named_with_its_digest_and_why(full: Full) -> None:
    row = _html(full).split('data-rule="EGRESS-006"')[1].split("</tr>")[0]
    assert "hashed, not stored (the source may hold secrets), sha256 efefefefefefefef…" in row
    assert "read /proc/812/environ" in row


def test_waived_finding_links_the_waivers_file(full: Full) -> None:
    row = _html(full).split('data-rule="LOGGING-001"')[1].split("</tr>")[0]
    assert '<a href="inputs/waivers.yaml">inputs/waivers.yaml</a>' in row


def test_oscal_observation_links_the_raw_file_resource(full: Full) -> None:
    ar = _oscal(full)["assessment-results"]
    resources = {r["uuid"]: r for r in ar["back-matter"]["resources"]}
    obs = {o["title"]: o for o in ar["results"][0]["observations"]}
    ev = obs["EGRESS-001 on h1: fail"]["relevant-evidence"]
    linked = [resources[e["href"][1:]] for e in ev if "href" in e]
    raw = [r for r in linked if r["title"].startswith("raw/h1/")]
    assert len(raw) == 1
    assert raw[0]["rlinks"][0]["hashes"][0]["value"] == raw[0]["title"].split("sha256-")[1]
    assert any(e["description"] == f"Output of {' '.join(ROUTE_ARGV)} (routes)." for e in ev)


# ------------------------------------------------------------------------------------------------ counts and controls


def test_counts_by_severity_with_waived_apart_from_passed(full: Full) -> None:
    s = full.results.summary
    high = next(c for c in s.by_severity if c.severity == "high")
    assert (high.failed, high.unknown, high.waived, high.passed) == (2, 0, 1, 5)
    assert (s.passed, s.waived) == (5, 1)
    row = _html(full).split('data-severity="high">')[1].split("</tr>")[0]
    assert _text(row) == "high 2 0 1 5"


def test_control_states_in_report_and_oscal(full: Full) -> None:
    html = _html(full)
    states = dict(re.findall(r'data-control="([^"]+)" data-status="([^"]+)"', html))
    assert states[CONTROL_E1] == "not-satisfied"
    assert states[CONTROL_B] == "waived"  # passed on h1, waived on h2: never satisfied
    assert states[CONTROL_EVAL] == "not-assessed"  # only the waiver-expiry rule cites it
    assert states["hipaa:164.312(d)"] == "not-assessed"  # no rule of these results cites it
    findings = {
        f["target"]["target-id"]: (f["target"]["status"]["state"], _props(f)["control-status"][0])
        for f in _oscal(full)["assessment-results"]["results"][0]["findings"]
    }
    assert findings["hipaa-164.312-b"] == ("not-satisfied", "waived")
    assert findings["hipaa-164.308-a-8"] == ("not-satisfied", "not-assessed")
    assert findings["hipaa-164.312-e-1"] == ("not-satisfied", "not-satisfied")


def test_control_rationales_are_shown(full: Full) -> None:
    row = _html(full).split(f'data-control="{CONTROL_E1}"')[1].split("</tr>")[0]
    assert "EGRESS-001" in row
    assert "technical security measures to guard against unauthorized access" in row


# ---------------------------------------------------------------------------------------------- changes since last run


def test_changes_new_fixed_unchanged(full: Full) -> None:
    doc = json.loads((full.path / "changes.json").read_text())
    assert [(c["host"], c["rule"]) for c in doc["new"]] == [("h1", "EGRESS-001")]
    assert [(c["host"], c["rule"], c["status"]) for c in doc["fixed"]] == [("h1", "ACCESS-003", None)]
    assert [(c["host"], c["rule"]) for c in doc["unchanged"]] == [("h1", "EGRESS-006"), ("h2", "LOGGING-001")]
    text = _text(_html(full))
    assert "1 new , 1 fixed , 2 unchanged finding(s)" in text


def test_previous_evidence_must_verify(full: Full, tmp_path: Path) -> None:
    prev = copy_evidence(full.path, tmp_path / "prev")
    assert load_previous(prev, [full.key.public]).results.hosts[0].host == "h1"
    with pytest.raises(AuditError, match="previous evidence does not verify: .*signature does not verify"):
        load_previous(prev, [SigningKey.generate().public])
    (prev / "results.json").write_text((prev / "results.json").read_text().replace('"fail"', '"pass"'))
    with pytest.raises(AuditError, match="previous evidence does not verify: digest mismatch: results.json"):
        load_previous(prev, [full.key.public])


# ------------------------------------------------------------------------------------------------ tamper tests


def _resign(ev: Path, key: SigningKey, edit: Any) -> None:
    """Re-sign a statement over the files as they are, with ``edit`` applied to the predicate (a careless signer)."""
    att = json.loads((ev / ATTESTATION_FILE).read_text())
    predicate = json.loads(base64.b64decode(att["dsseEnvelope"]["payload"]))["predicate"]
    edit(predicate)
    files = [
        EvidenceFile(p.relative_to(ev).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest(), 0, "", "")
        for p in sorted(ev.rglob("*"))
        if p.is_file() and p.name != ATTESTATION_FILE
    ]
    (ev / ATTESTATION_FILE).write_bytes(sign_evidence(files, predicate, key))


@pytest.mark.parametrize(
    ("rel", "message"),
    [
        ("changes.json", "digest mismatch: changes.json"),
        ("inputs/site.yaml", "digest mismatch: inputs/site.yaml"),
        ("inputs/waivers.yaml", "digest mismatch: inputs/waivers.yaml"),
    ],
)
def test_edited_new_file_is_caught(ev: Path, full: Full, rel: str, message: str) -> None:
    with (ev / rel).open("ab") as f:
        f.write(b"\n")
    with pytest.raises(EvidenceError, match=re.escape(message)):
        verify_evidence(ev, [full.key.public])


def test_removed_changes_file_is_caught(ev: Path, full: Full) -> None:
    (ev / "changes.json").unlink()
    with pytest.raises(EvidenceError, match="missing file: changes.json"):
        verify_evidence(ev, [full.key.public])


def test_claimed_signer_must_be_the_key_that_signed(ev: Path, full: Full) -> None:
    other = SigningKey.generate()
    _resign(ev, full.key, lambda p: p["signer"].update(key_id=other.key_id))
    with pytest.raises(EvidenceError, match="attestation names signer key .* but key .* signed it"):
        verify_evidence(ev, [full.key.public])


def test_swapped_site_file_is_caught_even_when_resigned(ev: Path, full: Full) -> None:
    (ev / "inputs/site.yaml").write_bytes(b"apiVersion: gapseal/v1\nkind: Site\nscope: {organisation: Other}\n")
    _resign(ev, full.key, lambda p: None)
    with pytest.raises(EvidenceError, match="inputs/site.yaml is not the site file the audit used"):
        verify_evidence(ev, [full.key.public])


def test_swapped_waivers_file_is_caught_even_when_resigned(ev: Path, full: Full) -> None:
    (ev / "inputs/waivers.yaml").write_bytes(b"waivers: []\n")
    _resign(ev, full.key, lambda p: None)
    with pytest.raises(EvidenceError, match="inputs/waivers.yaml is not the waivers file the audit applied"):
        verify_evidence(ev, [full.key.public])


def test_a_claimed_pdf_must_be_there(ev: Path, full: Full) -> None:
    _resign(ev, full.key, lambda p: p.update(report={"html": "report.html", "pdf": {"made": True}}))
    with pytest.raises(EvidenceError, match=r"missing file: report.pdf \(a PDF was made\)"):
        verify_evidence(ev, [full.key.public])


def test_a_pdf_the_attestation_denies_is_refused(ev: Path, full: Full) -> None:
    (ev / "report.pdf").write_bytes(b"%PDF-1.4 forged")
    _resign(ev, full.key, lambda p: p.update(report={"html": "report.html", "pdf": {"made": False}}))
    with pytest.raises(EvidenceError, match=r"unexpected file: report.pdf \(the attestation says no PDF was made\)"):
        verify_evidence(ev, [full.key.public])


def test_a_comparison_without_changes_file_is_refused(ev: Path, full: Full) -> None:
    (ev / "changes.json").unlink()
    _resign(ev, full.key, lambda p: None)
    with pytest.raises(EvidenceError, match=r"missing file: changes.json \(a comparison was made\)"):
        verify_evidence(ev, [full.key.public])


def test_pristine_full_evidence_verifies(ev: Path, full: Full) -> None:
    v = verify_evidence(ev, [full.key.public])
    assert "inputs/site.yaml" in v.files
    assert "changes.json" in v.files


# ------------------------------------------------------------------------------------------------ PDF without Chromium


def test_without_chromium_no_pdf_is_made_and_that_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A PATH without chromium (a real absence, nothing mocked): the HTML is kept and says why there is no PDF."""
    bare = tmp_path / "bin"
    bare.mkdir()
    monkeypatch.setenv("PATH", str(bare))
    key = SigningKey.generate()
    h1, h2 = host_with_routes("h1", "10.206.7.2"), host_with_routes("h2", "10.206.8.2")
    inputs = [InputFile(SITE_FILE, SITE_BYTES, "site"), InputFile(WAIVERS_FILE, WAIVERS_BYTES, "waivers")]
    written = write_evidence(
        tmp_path / "ev", hosts=[h1, h2], results=results_for(h1, h2), controls={}, key=key, inputs=inputs, pdf=True
    )
    assert written.pdf is not None
    assert written.pdf.made is False
    assert "chromium is not installed" in (written.pdf.reason or "")
    assert not (tmp_path / "ev/report.pdf").exists()
    assert "no PDF was made: chromium is not installed" in (tmp_path / "ev/report.html").read_text()
    predicate: Any = written.predicate
    assert predicate["report"]["pdf"]["made"] is False
    monkeypatch.undo()
    assert verify_evidence(tmp_path / "ev", [key.public]).compliant is False
    from gapseal.cli import main

    (tmp_path / "aud.pub").write_bytes(key.public.pem())
    capsys.readouterr()
    assert main(["evidence", "verify", str(tmp_path / "ev"), "--key", str(tmp_path / "aud.pub")]) == 0
    assert (
        "report.pdf: chromium is not installed (Debian package 'chromium'): no PDF was made" in capsys.readouterr().out
    )


def test_cli_warns_and_keeps_the_html_without_chromium(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gapseal.audit import report_pdf

    monkeypatch.setattr(report_pdf, "CHROMIUM_NAMES", ("no-such-chromium-206",))
    assert shutil.which("no-such-chromium-206") is None
    from gapseal.cli import main
    from gapseal.signing.keys import write_key_pair

    priv, _ = write_key_pair(SigningKey.generate(), tmp_path / "aud", None)
    root = tmp_path / "root"
    root.mkdir()
    rc = main(["audit", "run", "--root", str(root), "--out", str(tmp_path / "ev"), "--key", str(priv), "-q"])
    assert rc in (0, 3)
    err = capsys.readouterr().err
    assert "warning: chromium is not installed (Debian package 'chromium'): no PDF was made" in err
    assert (tmp_path / "ev/report.html").is_file()
    assert not (tmp_path / "ev/report.pdf").exists()


def test_writer_refuses_evidence_without_the_site_file_the_results_rest_on(tmp_path: Path) -> None:
    h1, h2 = host_with_routes("h1", "10.206.7.2"), host_with_routes("h2", "10.206.8.2")
    with pytest.raises(AuditError, match="the results rest on site file site.yaml .* but it is not given"):
        write_evidence(
            tmp_path / "ev", hosts=[h1, h2], results=results_for(h1, h2), controls={}, key=SigningKey.generate()
        )
    assert not (tmp_path / "ev").exists()


def test_writer_refuses_an_input_whose_digest_differs(tmp_path: Path) -> None:
    h1, h2 = host_with_routes("h1", "10.206.7.2"), host_with_routes("h2", "10.206.8.2")
    inputs = [InputFile(SITE_FILE, SITE_BYTES, "site"), InputFile(WAIVERS_FILE, b"waivers: []\n", "waivers")]
    with pytest.raises(AuditError, match="inputs/waivers.yaml is not the file the results rest on"):
        write_evidence(
            tmp_path / "ev", hosts=[h1, h2], results=results_for(h1, h2), controls={}, key=SigningKey.generate(),
            inputs=inputs,
        )  # fmt: skip


def test_without_a_site_file_the_scope_says_so_and_oscal_stays_valid(tmp_path: Path) -> None:
    h1, h2 = host_with_routes("h1", "10.206.7.2"), host_with_routes("h2", "10.206.8.2")
    results = results_for(h1, h2).model_copy(update={"site": None, "waivers_digest": None})
    write_evidence(tmp_path / "ev", hosts=[h1, h2], results=results, controls={}, key=SigningKey.generate())
    doc = json.loads((tmp_path / "ev/assessment-results.json").read_text())
    AssessmentResults.parse_obj(doc["assessment-results"])
    assert _props(doc["assessment-results"]["metadata"])["scope"][0].startswith("no site file given")
    assert "Scope no site file given" in _text((tmp_path / "ev/report.html").read_text())


def test_without_unshare_chromium_is_not_run_and_no_pdf_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chromium present but no way to give it an empty network namespace (no unshare on PATH): it is never started
    outside one; the outcome says why."""
    from gapseal.audit.report_pdf import print_pdf

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian chromium is not installed")
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "chromium").symlink_to(chromium)
    monkeypatch.setenv("PATH", str(bare))
    page = tmp_path / "p.html"
    page.write_text("<p>x</p>")
    outcome = print_pdf(page)
    assert outcome.made is False
    assert outcome.reason is not None
    assert outcome.reason.startswith("cannot create an empty network namespace for chromium")
    assert outcome.data is None


def test_findings_of_a_host_not_audited_again_are_not_called_fixed() -> None:
    from gapseal.audit.changes import PreviousRun, compare_results

    h1, h2 = host_with_routes("h1", "10.206.7.2"), host_with_routes("h2", "10.206.8.2")
    previous = results_for(h1, h2)
    current = previous.model_copy(update={"hosts": previous.hosts[1:]})  # h2 only this time
    run = PreviousRun(path="p", attestation_sha256="ab" * 32, generated=previous.generated, signer_key_id="cd" * 32)
    changes = compare_results(previous, current, run)
    assert changes.fixed == ()
    assert [(c.host, c.rule) for c in changes.not_reassessed] == [("h1", "EGRESS-001"), ("h1", "EGRESS-006")]
    assert [(c.host, c.rule) for c in changes.unchanged] == [("h2", "LOGGING-001")]


def test_a_changed_policy_set_is_said_beside_the_changes(tmp_path: Path) -> None:
    from gapseal.audit.changes import PreviousRun, compare_results

    h1, h2 = host_with_routes("h1", "10.206.7.2"), host_with_routes("h2", "10.206.8.2")
    current = results_for(h1, h2)
    previous = current.model_copy(update={"policy_digest": "sha256:" + "01" * 32})
    run = PreviousRun(path="p", attestation_sha256="ab" * 32, generated=previous.generated, signer_key_id="cd" * 32)
    assert compare_results(current, current, run).policy_changed is False
    changes = compare_results(previous, current, run)
    assert changes.policy_changed is True
    inputs = [InputFile(SITE_FILE, SITE_BYTES, "site"), InputFile(WAIVERS_FILE, WAIVERS_BYTES, "waivers")]
    written = write_evidence(
        tmp_path / "ev", hosts=[h1, h2], results=current, controls={}, key=SigningKey.generate(), inputs=inputs,
        changes=changes,
    )  # fmt: skip
    assert 'id="policy-changed"' in (tmp_path / "ev/report.html").read_text()
    predicate: Any = written.predicate
    assert predicate["previous"]["policy_changed"] is True
