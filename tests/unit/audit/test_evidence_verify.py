"""``evidence verify`` tamper tests: every change to a signed evidence directory is rejected, naming the file."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from gapseal.audit.attest import sign_evidence
from gapseal.audit.evidence import ATTESTATION_FILE, EvidenceFile, write_evidence
from gapseal.audit.verify_evidence import verify_evidence
from gapseal.errors import EvidenceError
from gapseal.signing.keys import SigningKey, write_key_pair

from .evidence_fixtures import CONTROLS, compliant_rules, leaky_rules, make_facts, make_results


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, key: SigningKey) -> Path:
    out = tmp_path_factory.mktemp("pristine") / "ev"
    h1 = make_facts("h1", raw=[b"default via 10.231.60.1\n"])
    h2 = make_facts("h2")
    results = make_results([(h1, leaky_rules()), (h2, compliant_rules())])
    write_evidence(out, hosts=[h1, h2], results=results, controls=CONTROLS, key=key)
    return out


@pytest.fixture
def ev(pristine: Path, tmp_path: Path) -> Path:
    out = tmp_path / "ev"
    shutil.copytree(pristine, out)
    return out


def _edit_facts(ev: Path) -> str:
    p = ev / "facts/h1.json"
    doc = json.loads(p.read_text())
    doc["routes"]["status"] = "unknown"  # any change of meaning, however small
    p.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return "facts/h1.json"


def _edit_report(ev: Path) -> str:
    p = ev / "report.html"
    p.write_text(p.read_text().replace("NOT COMPLIANT", "COMPLIANT"))
    return "report.html"


def _append_byte_to_raw(ev: Path) -> str:
    p = next((ev / "raw/h1").iterdir())
    with p.open("ab") as f:
        f.write(b"\n")
    return p.relative_to(ev).as_posix()


def _remove_file(ev: Path) -> str:
    (ev / "assessment-results.json").unlink()
    return "assessment-results.json"


def _add_file(ev: Path) -> str:
    (ev / "facts/h3.json").write_text("{}")
    return "facts/h3.json"


def _add_hidden_file(ev: Path) -> str:
    (ev / ".notes").write_text("x")
    return ".notes"


def _replace_with_symlink(ev: Path) -> str:
    p = ev / "results.json"
    data = p.read_bytes()
    (ev.parent / "results.json").write_bytes(data)
    p.unlink()
    p.symlink_to(ev.parent / "results.json")
    return "results.json"


def _add_fifo(ev: Path) -> str:
    os.mkfifo(ev / "facts/pipe")
    return "facts/pipe"


def _remove_attestation(ev: Path) -> str:
    (ev / ATTESTATION_FILE).unlink()
    return ATTESTATION_FILE


def _resign_with_another_key(ev: Path) -> str:
    """An attacker re-signs a consistent statement over edited files with their own key."""
    _edit_report(ev)
    files = [
        EvidenceFile(p.relative_to(ev).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest(), 0, "", "")
        for p in sorted(ev.rglob("*"))
        if p.is_file() and p.name != ATTESTATION_FILE
    ]
    predicate = json.loads((ev / "results.json").read_text())["summary"]
    bundle = sign_evidence(files, {"layout": "gapseal-evidence/v1", "summary": predicate}, SigningKey.generate())
    (ev / ATTESTATION_FILE).write_bytes(bundle)
    return ATTESTATION_FILE


def _edit_attestation_payload(ev: Path) -> str:
    p = ev / ATTESTATION_FILE
    doc = json.loads(p.read_text())
    payload = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    payload["predicate"]["summary"]["compliant"] = True
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    p.write_text(json.dumps(doc))
    return ATTESTATION_FILE


TAMPERS: list[tuple[str, Callable[[Path], str], str]] = [
    ("edited_facts", _edit_facts, "digest mismatch: facts/h1.json"),
    ("edited_report", _edit_report, "digest mismatch: report.html"),
    ("edited_raw_output", _append_byte_to_raw, "digest mismatch: raw/h1/sha256-"),
    ("removed_file", _remove_file, "missing file: assessment-results.json"),
    ("added_file", _add_file, "unexpected file: facts/h3.json"),
    ("added_hidden_file", _add_hidden_file, "unexpected file: .notes"),
    ("symlinked_file", _replace_with_symlink, "symbolic link in evidence directory: results.json"),
    ("fifo", _add_fifo, "special file in evidence directory: facts/pipe"),
    ("removed_attestation", _remove_attestation, "missing file: attestation.sigstore.json"),
    ("signed_by_another_key", _resign_with_another_key, "attestation.sigstore.json: signature does not verify"),
    ("edited_attestation", _edit_attestation_payload, "attestation.sigstore.json: signature does not verify"),
]


def test_pristine_evidence_verifies(ev: Path, key: SigningKey) -> None:
    v = verify_evidence(ev, [key.public])
    assert v.signer_key_id == key.key_id
    assert v.compliant is False


@pytest.mark.parametrize(("tamper", "message"), [(t, m) for _, t, m in TAMPERS], ids=[n for n, _, _ in TAMPERS])
def test_tampered_evidence_is_rejected_naming_the_file(
    ev: Path, key: SigningKey, tamper: Callable[[Path], str], message: str
) -> None:
    rel = tamper(ev)
    with pytest.raises(EvidenceError) as info:
        verify_evidence(ev, [key.public])
    assert message in info.value.message
    assert info.value.where is not None
    assert info.value.where.startswith(rel.split("sha256-")[0])


def test_cli_exit_codes_and_named_file(
    ev: Path, key: SigningKey, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gapseal.cli import main

    pub = tmp_path / "auditor.pub"
    pub.write_bytes(key.public.pem())
    assert main(["evidence", "verify", str(ev), "--key", str(pub)]) == 0
    _edit_facts(ev)
    assert main(["evidence", "verify", str(ev), "--key", str(pub)]) == 1
    err = capsys.readouterr().err
    assert "digest mismatch: facts/h1.json" in err


def test_cli_json_output(ev: Path, key: SigningKey, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gapseal.cli import main

    pub = tmp_path / "auditor.pub"
    pub.write_bytes(key.public.pem())
    assert main(["evidence", "verify", str(ev), "--key", str(pub), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True
    assert doc["compliant"] is False
    assert len(doc["files"]) == 6


def test_cli_refuses_a_private_key_file(ev: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gapseal.cli import main

    priv, _pub = write_key_pair(SigningKey.generate(), tmp_path / "auditor", None)
    assert main(["evidence", "verify", str(ev), "--key", str(priv)]) == 1
    assert "public key" in capsys.readouterr().err


def test_cli_missing_key_is_usage_error(ev: Path) -> None:
    from gapseal.cli import main

    assert main(["evidence", "verify", str(ev)]) == 2


def test_not_a_directory(tmp_path: Path, key: SigningKey) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(EvidenceError, match="not an evidence directory"):
        verify_evidence(f, [key.public])


def test_symlinked_evidence_directory_is_refused(ev: Path, key: SigningKey, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(ev)
    with pytest.raises(EvidenceError, match="not an evidence directory"):
        verify_evidence(link, [key.public])


def test_no_trusted_key(ev: Path) -> None:
    with pytest.raises(EvidenceError, match="no trusted key given"):
        verify_evidence(ev, [])


def test_any_of_several_trusted_keys(ev: Path, key: SigningKey) -> None:
    assert verify_evidence(ev, [SigningKey.generate().public, key.public]).signer_key_id == key.key_id
