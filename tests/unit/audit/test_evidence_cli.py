"""``audit run --trust/--previous/--no-pdf`` and ``evidence verify --trust`` as a user runs them (local audit of an
empty root; no Chromium run: --no-pdf)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gapseal.cli import main
from gapseal.signing.keys import SigningKey, write_key_pair

SITE = """apiVersion: gapseal/v1
kind: Site
scope: {organisation: Example Clinic, system: radiology-llm, assessor: J. Doe}
"""


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Path]:
    priv, pub = write_key_pair(SigningKey.generate(), tmp_path / "aud", None)
    other_priv, other_pub = write_key_pair(SigningKey.generate(), tmp_path / "other", None)
    trust = tmp_path / "trust.yaml"
    trust.write_text(
        "apiVersion: gapseal/v1\nkind: Trust\nkeys:\n"
        f"  - {{name: clinic-auditor-2026, path: {pub.name}}}\n  - {{name: old-auditor, path: {other_pub.name}}}\n"
    )
    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    root = tmp_path / "root"
    root.mkdir()
    return {"priv": priv, "pub": pub, "other": other_priv, "trust": trust, "site": site, "root": root, "tmp": tmp_path}


def _run(s: dict[str, Path], out: str, *extra: str, key: str = "priv") -> int:
    argv = ["audit", "run", "--root", str(s["root"]), "--out", str(s["tmp"] / out), "--key", str(s[key]), "--no-pdf"]
    return main([*argv, "-q", *extra])


def test_run_names_signer_from_trust_and_compares_with_previous(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    s = setup
    assert _run(s, "ev1", "--site", str(s["site"]), "--trust", str(s["trust"])) == 3
    capsys.readouterr()
    assert (
        _run(s, "ev2", "--site", str(s["site"]), "--trust", str(s["trust"]), "--previous", str(s["tmp"] / "ev1")) == 3
    )
    out = capsys.readouterr().out
    assert "since " in out
    assert " 0 new, 0 fixed, " in out
    changes = json.loads((s["tmp"] / "ev2/changes.json").read_text())
    assert changes["new"] == []
    assert changes["fixed"] == []
    assert changes["unchanged"]  # an empty root fails (or leaves unknown) many rules, the same in both runs
    report = (s["tmp"] / "ev2/report.html").read_text()
    assert "clinic-auditor-2026" in report
    assert "Example Clinic" in report
    assert not (s["tmp"] / "ev2/report.pdf").exists()
    assert "report.pdf" not in report  # --no-pdf: no promise, no excuse

    assert main(["evidence", "verify", str(s["tmp"] / "ev2"), "--trust", str(s["trust"])]) == 0
    out = capsys.readouterr().out
    assert "signed by 'clinic-auditor-2026' (key " in out
    assert "scope: Example Clinic / radiology-llm, assessed by J. Doe" in out
    assert main(["evidence", "verify", str(s["tmp"] / "ev2"), "--trust", str(s["trust"]), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["signer_name"] == "clinic-auditor-2026"
    assert doc["predicate"]["previous"]["path"] == str(s["tmp"] / "ev1")


def test_previous_signed_by_a_key_in_the_trust_file_is_accepted(setup: dict[str, Path]) -> None:
    s = setup
    assert _run(s, "ev-old", key="other") == 3
    assert _run(s, "ev-new", "--previous", str(s["tmp"] / "ev-old")) == 1  # not the auditor's key, no trust file
    assert _run(s, "ev-new", "--previous", str(s["tmp"] / "ev-old"), "--trust", str(s["trust"])) == 3


def test_tampered_previous_evidence_stops_the_audit(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    s = setup
    assert _run(s, "ev1") == 3
    results = s["tmp"] / "ev1/results.json"
    results.write_text(results.read_text().replace('"fail"', '"pass"'))
    capsys.readouterr()
    assert _run(s, "ev2", "--previous", str(s["tmp"] / "ev1")) == 1
    err = capsys.readouterr().err
    assert "the previous evidence does not verify: digest mismatch: results.json" in err
    assert "Traceback" not in err
    assert not (s["tmp"] / "ev2").exists()


def test_previous_that_is_not_a_directory_is_a_bad_input(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    s = setup
    assert _run(s, "ev2", "--previous", str(s["site"])) == 1
    assert f"previous evidence {s['site']} is not a directory" in capsys.readouterr().err
    assert not (s["tmp"] / "ev2").exists()


def test_missing_trust_file_is_a_bad_input(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    s = setup
    assert _run(s, "ev2", "--trust", str(s["tmp"] / "nope.yaml")) == 1
    assert "trust file" in capsys.readouterr().err
    assert not (s["tmp"] / "ev2").exists()


def test_verify_with_a_trust_file_that_does_not_list_the_signer_fails(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    s = setup
    assert _run(s, "ev1") == 3
    lone = s["tmp"] / "lone.yaml"
    _, stranger = write_key_pair(SigningKey.generate(), s["tmp"] / "stranger", None)
    lone.write_text(f"apiVersion: gapseal/v1\nkind: Trust\nkeys:\n  - {{name: stranger, path: {stranger.name}}}\n")
    capsys.readouterr()
    assert main(["evidence", "verify", str(s["tmp"] / "ev1"), "--trust", str(lone)]) == 1
    assert "signature does not verify" in capsys.readouterr().err
