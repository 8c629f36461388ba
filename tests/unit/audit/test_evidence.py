"""Writing the evidence directory: layout, atomicity, overwrite, consistency of inputs."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from gapseal.audit.evidence import (
    ATTESTATION_FILE,
    HostEvidence,
    WrittenEvidence,
    check_host_name,
    write_evidence,
)
from gapseal.audit.results import Results
from gapseal.audit.verify_evidence import verify_evidence
from gapseal.errors import AuditError, UsageError
from gapseal.signing.keys import SigningKey

from .evidence_fixtures import CONTROLS, compliant_rules, leaky_rules, make_facts, make_results

RAW_TEXT = b"default via 10.231.60.1 dev veth0\n"
RAW_BIN = b"\xff\xfe\x00binary"


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


def _inputs() -> tuple[list[HostEvidence], Results]:
    h1 = make_facts("h1", raw=[RAW_TEXT, RAW_BIN], manifest_digest="sha256:" + "cd" * 32)
    h2 = make_facts("h2")
    return [h1, h2], make_results([(h1, leaky_rules()), (h2, compliant_rules())])


def _write(out: Path, key: SigningKey, *, overwrite: bool = False) -> WrittenEvidence:
    hosts, results = _inputs()
    return write_evidence(out, hosts=hosts, results=results, controls=CONTROLS, key=key, overwrite=overwrite)


def test_layout_and_roundtrip(tmp_path: Path, key: SigningKey) -> None:
    out = tmp_path / "ev"
    written = _write(out, key)
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    raw1 = "raw/h1/sha256-" + hashlib.sha256(RAW_TEXT).hexdigest()
    raw2 = "raw/h1/sha256-" + hashlib.sha256(RAW_BIN).hexdigest()
    assert names == sorted(
        [
            ATTESTATION_FILE,
            "assessment-results.json",
            "facts/h1.json",
            "facts/h2.json",
            raw1,
            raw2,
            "report.html",
            "results.json",
        ]
    )
    assert (out / raw1).read_bytes() == RAW_TEXT
    assert (out / raw2).read_bytes() == RAW_BIN
    assert written.compliant is False
    v = verify_evidence(out, [key.public])
    assert v.compliant is False
    assert len(v.files) == 7
    assert json.loads((out / "results.json").read_text())["summary"]["failed"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ev.")]  # no temp left behind


def test_refuses_to_overwrite_without_flag(tmp_path: Path, key: SigningKey) -> None:
    out = tmp_path / "ev"
    out.mkdir()
    (out / "keep").write_text("x")
    with pytest.raises(UsageError, match="evidence directory already exists"):
        _write(out, key)
    assert (out / "keep").read_text() == "x"


def test_overwrite_replaces_the_whole_directory(tmp_path: Path, key: SigningKey) -> None:
    out = tmp_path / "ev"
    out.mkdir()
    (out / "stale").write_text("x")
    _write(out, key, overwrite=True)
    assert not (out / "stale").exists()
    verify_evidence(out, [key.public])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ev"]


def test_facts_not_the_ones_evaluated_are_refused(tmp_path: Path, key: SigningKey) -> None:
    hosts, results = _inputs()
    changed = HostEvidence("h1", hosts[0].facts_bytes + b" ", hosts[0].facts)
    with pytest.raises(AuditError, match="the facts of h1 are not the ones the results were evaluated on"):
        write_evidence(tmp_path / "ev", hosts=[changed, hosts[1]], results=results, controls=CONTROLS, key=key)
    assert list(tmp_path.iterdir()) == []


def test_failure_midway_leaves_nothing(tmp_path: Path, key: SigningKey, monkeypatch: pytest.MonkeyPatch) -> None:
    import gapseal.audit.attest as attest

    def boom(*a: object, **k: object) -> bytes:
        raise OSError("disk full")

    monkeypatch.setattr(attest, "sign_evidence", boom)
    with pytest.raises(OSError, match="disk full"):
        _write(tmp_path / "ev", key)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".", "..", "-rf", "h 1", "h\n1"])
def test_unsafe_host_names_are_refused(name: str) -> None:
    with pytest.raises(AuditError, match="cannot name an evidence file"):
        check_host_name(name)


def test_evidence_is_readable_by_others(tmp_path: Path, key: SigningKey) -> None:
    out = tmp_path / "ev"
    _write(out, key)
    assert os.stat(out).st_mode & 0o755 == 0o755


def test_results_naming_another_facts_path_are_refused(tmp_path: Path, key: SigningKey) -> None:
    hosts, results = _inputs()
    moved = results.model_copy(
        update={"hosts": (results.hosts[0].model_copy(update={"facts": "/tmp/h1.json"}), results.hosts[1])}
    )
    with pytest.raises(AuditError, match="the results of h1 name their facts '/tmp/h1.json'"):
        write_evidence(tmp_path / "ev", hosts=hosts, results=moved, controls=CONTROLS, key=key)
