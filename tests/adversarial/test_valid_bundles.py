"""Valid bundles are never refused: what create writes verifies, in every form, however large or unusual.

The counterpart of the hostile cases: each of these bundles is legitimate, and verify (and the commands that use a
bundle) must accept it with exit 0. ``create`` never writes a bundle ``verify`` refuses.
"""

from __future__ import annotations

import json
from pathlib import Path

from gapseal.bundler.create import create_bundle
from gapseal.signing.attestation import add_signature
from tests.adversarial.conftest import Gapseal
from tests.adversarial.forge import Layout, resign, set_signatures
from tests.bundles import KeyPair, make_inputs, make_keys

HEADER = (
    'apiVersion: gapseal/v1\nkind: Bundle\nmetadata: {name: docs, version: 1.0.0, created: "2026-01-01T00:00:00Z"}\n'
)


def _docs(root: Path, count: int) -> Path:
    """A spec bundling ``count`` small text files in subdirectories of 1,000."""
    for i in range(count):
        d = root / "docs" / f"d{i // 1000:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"doc-{i:05d}.txt").write_text(f"document {i}\n")
    spec = root / "bundle.yaml"
    spec.write_text(HEADER + "files:\n  - {name: docs, path: docs}\n")
    return spec


def test_a_faithful_re_signing_with_the_trusted_key_verifies(bundle: Path, keys: KeyPair, gapseal: Gapseal) -> None:
    """The forge itself is honest: re-signing an unchanged descriptor yields a bundle verify accepts."""
    resign(bundle, keys.private)
    result = gapseal("bundle", "verify", bundle, "--key", keys.public_path)
    assert result.code == 0, result.err


def test_ten_thousand_files_work_end_to_end(tmp_path: Path, keys: KeyPair, gapseal: Gapseal) -> None:
    """The issue's case: 10,000 files make a manifest and statement of megabytes; every form verifies and extracts."""
    spec = _docs(tmp_path / "in", 10_000)
    created = gapseal("bundle", "create", spec, "--key", keys.private_path, "--out", tmp_path / "b", "--json")
    assert created.code == 0, created.err
    doc = json.loads(created.out)
    assert any("10003 subjects" in w and "1024" in w for w in doc["warnings"])
    key = ("--key", keys.public_path)
    assert gapseal("bundle", "verify", tmp_path / "b", *key, "-q").code == 0
    assert gapseal("bundle", "pack", tmp_path / "b", "--out", tmp_path / "b.tar", "-q").code == 0
    verified = gapseal("bundle", "verify", tmp_path / "b.tar", *key, "--json")
    assert verified.code == 0, verified.err
    assert json.loads(verified.out)["files"] == 10_001  # the docs and the SBOM
    assert gapseal("bundle", "unpack", tmp_path / "b.tar", "--out", tmp_path / "u", *key, "-q").code == 0
    out = tmp_path / "x"
    assert gapseal("bundle", "extract", tmp_path / "u", "--files", "docs", "--out", out, *key, "-q").code == 0
    assert (out / "d09" / "doc-09999.txt").read_text() == "document 9999\n"
    assert sum(1 for p in out.rglob("*") if p.is_file()) == 10_000


def test_more_subjects_than_cosign_accepts_is_a_warning_not_an_error(
    tmp_path: Path, keys: KeyPair, gapseal: Gapseal
) -> None:
    spec = _docs(tmp_path / "in", 1_100)
    created = gapseal("bundle", "create", spec, "--key", keys.private_path, "--out", tmp_path / "b")
    assert created.code == 0, created.err
    assert "warning:" in created.err
    assert "1103 subjects" in created.err
    assert "cosign and sigstore-go accept at most 1024" in " ".join(created.err.split())
    assert gapseal("bundle", "verify", tmp_path / "b", "--key", keys.public_path).code == 0


def test_unicode_and_long_names_within_the_limits_verify_and_extract(
    tmp_path: Path, keys: KeyPair, gapseal: Gapseal
) -> None:
    names = ["caf\u00e9.md", "\u65e5\u672c\u8a9e.txt", "n" * 255, "\u00e9" * 127 + "x"]  # the last is 255 bytes
    for name in names:
        (tmp_path / "in" / "docs").mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / "docs" / name).write_text(name)
    spec = tmp_path / "in" / "bundle.yaml"
    spec.write_text(HEADER + "files:\n  - {name: docs, path: docs}\n")
    assert gapseal("bundle", "create", spec, "--key", keys.private_path, "--out", tmp_path / "b").code == 0
    key = ("--key", keys.public_path)
    assert gapseal("bundle", "extract", tmp_path / "b", "--files", "docs", "--out", tmp_path / "x", *key).code == 0
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == sorted(names)


def test_a_co_signature_by_a_second_key_verifies_with_either(
    tmp_path: Path, bundle: Path, keys: KeyPair, gapseal: Gapseal
) -> None:
    second = make_keys(tmp_path / "second", "second")
    layout = Layout(bundle)
    set_signatures(layout, [add_signature(layout.blob(layout.signature_blob_digests()[0]), second.private)])
    assert gapseal("bundle", "verify", bundle, "--key", keys.public_path).code == 0
    assert gapseal("bundle", "verify", bundle, "--key", second.public_path).code == 0


def test_one_input_used_by_two_variants_is_bundled_once_and_verifies(
    tmp_path: Path, keys: KeyPair, gapseal: Gapseal
) -> None:
    """Two variants with the same path: the same file, hard-linked twice into the layout (was: a traceback)."""
    spec = make_inputs(tmp_path / "in")
    spec.write_text(spec.read_text().replace("path: builds/cpu", "path: builds/cuda"))
    created = create_bundle(spec, keys.private, tmp_path / "b")
    assert not (tmp_path / "b" / ".incoming").exists()
    titles = [t for t, _ in created.descriptor.layers()]
    assert "builds/server/cpu-amd64/bin/server" in titles
    assert gapseal("bundle", "verify", tmp_path / "b", "--key", keys.public_path).code == 0


def test_an_unknown_model_format_is_a_warning_and_verifies(tmp_path: Path, keys: KeyPair, gapseal: Gapseal) -> None:
    (tmp_path / "in" / "m").mkdir(parents=True)
    (tmp_path / "in" / "m" / "weights.dat").write_bytes(b"\x00" * 64)
    spec = tmp_path / "in" / "bundle.yaml"
    spec.write_text(HEADER + "models:\n  - {name: odd, path: m}\n")
    created = gapseal("bundle", "create", spec, "--key", keys.private_path, "--out", tmp_path / "b", "--json")
    assert created.code == 0, created.err
    [warning] = json.loads(created.out)["warnings"]
    assert "model 'odd': format not recognised" in warning
    assert gapseal("bundle", "verify", tmp_path / "b", "--key", keys.public_path).code == 0


def test_inspect_shows_services_licence_description_and_expiry(tmp_path: Path, keys: KeyPair, gapseal: Gapseal) -> None:
    spec = make_inputs(tmp_path / "in", expires="2099-01-01T00:00:00Z")
    text = spec.read_text().replace(
        "  version: 1.0.0\n", "  version: 1.0.0\n  description: triage assistant\n  license: Apache-2.0\n"
    )
    text += "services:\n  - {name: chat, build: server, model: tiny, exec: bin/server, port: 8080, bind: 127.0.0.1}\n"
    spec.write_text(text)
    assert gapseal("bundle", "create", spec, "--key", keys.private_path, "--out", tmp_path / "b").code == 0

    shown = gapseal("bundle", "inspect", tmp_path / "b")
    assert shown.code == 0, shown.err
    assert "expires 2099-01-01T00:00:00Z" in shown.out
    assert "licence   Apache-2.0" in shown.out
    assert "about     triage assistant" in shown.out
    assert "service   chat: build server, model tiny, bin/server on 127.0.0.1:8080" in shown.out

    doc = json.loads(gapseal("bundle", "inspect", tmp_path / "b", "--key", keys.public_path, "--json").out)
    assert doc["expires"] == "2099-01-01T00:00:00Z"
    assert doc["license"] == "Apache-2.0"
    assert doc["description"] == "triage assistant"
    assert [(s["name"], s["build"], s["model"], s["port"]) for s in doc["services"]] == [
        ("chat", "server", "tiny", 8080)
    ]
