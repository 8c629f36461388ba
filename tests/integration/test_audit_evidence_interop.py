"""An independent verifier accepts the evidence attestation: ``@sigstore/verify`` (npm, the real package, installed into
tests/interop by ``make deps``) checks ``attestation.sigstore.json`` with the auditor's public key and no transparency
log, and rejects it with another key. Then every subject digest in the statement it verified is checked against the
files, in Python, without gapseal's verifier: an outsider needs no gapseal to trust the evidence.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from gapseal.audit.evidence import ATTESTATION_FILE, write_evidence
from gapseal.signing.keys import SigningKey, write_key_pair
from tests.unit.audit.evidence_fixtures import CONTROLS, compliant_rules, leaky_rules, make_facts, make_results

pytestmark = pytest.mark.integration

INTEROP = Path(__file__).resolve().parent.parent / "interop"


@pytest.fixture(scope="module")
def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("node is not on PATH: the @sigstore/verify interop test needs it")
    if not (INTEROP / "node_modules" / "@sigstore" / "verify").is_dir():
        pytest.fail("tests/interop/node_modules is missing: run `make deps` (npm ci --prefix tests/interop)")
    return exe


def _node_verify(node: str, bundle: Path, pub: Path) -> tuple[int, dict[str, object]]:
    r = subprocess.run([node, str(INTEROP / "verify.mjs"), str(bundle), str(pub)], capture_output=True, text=True)
    assert r.returncode in (0, 1), f"verify.mjs failed to run: rc={r.returncode} {r.stderr}"
    return r.returncode, json.loads(r.stdout)


def test_sigstore_js_verifies_the_evidence_attestation(node: str, tmp_path: Path) -> None:
    key = SigningKey.generate()
    _priv, pub = write_key_pair(key, tmp_path / "auditor", None)
    _other_priv, other_pub = write_key_pair(SigningKey.generate(), tmp_path / "other", None)
    h1, h2 = make_facts("h1", raw=[b"default via 10.231.60.1\n"]), make_facts("h2")
    out = tmp_path / "evidence"
    write_evidence(
        out, hosts=[h1, h2], results=make_results([(h1, leaky_rules()), (h2, compliant_rules())]),
        controls=CONTROLS, key=key,
    )  # fmt: skip
    rc, doc = _node_verify(node, out / ATTESTATION_FILE, pub)
    assert rc == 0, doc
    rc, doc = _node_verify(node, out / ATTESTATION_FILE, other_pub)
    assert rc == 1, doc

    # the statement itself, read without gapseal: every file of the directory is a subject with its digest
    envelope = json.loads((out / ATTESTATION_FILE).read_text())["dsseEnvelope"]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    files = {p.relative_to(out).as_posix(): p for p in out.rglob("*") if p.is_file() and p.name != ATTESTATION_FILE}
    assert set(subjects) == set(files)
    assert all(hashlib.sha256(files[n].read_bytes()).hexdigest() == d for n, d in subjects.items())
    assert statement["predicate"]["summary"]["compliant"] is False
