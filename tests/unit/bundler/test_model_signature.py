"""The OpenSSF model signature: built from precomputed digests, checked by the real `model_signing` CLI and API on the
real MiniLM files; tampering (a flipped weight byte, an extra file, a missing file, another key) is rejected."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import model_signing as _model_signing
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from model_signing._signing import sign_sigstore_pb
from model_signing._signing import signing as ms_signing

from gapseal.bundler.inputs import collect_inputs
from gapseal.bundler.model_signature import (
    IGNORED_PATHS,
    MODEL_SIGNATURE_MEDIA_TYPE,
    MODEL_SIGNATURE_NAME,
    MODEL_SIGNATURE_PREDICATE_TYPE,
    is_ignored,
    model_manifest_payload,
    sign_model,
)
from gapseal.bundler.spec import load_spec
from gapseal.errors import SigningError
from gapseal.hashing import hash_file, parallel_map
from gapseal.signing.keys import SigningKey

MINILM = Path(__file__).parents[3] / "examples" / "models" / "minilm"
model_signing: Any = _model_signing  # typed package whose Config() constructors are unannotated
MODEL_SIGNING_CLI = Path(sys.executable).with_name("model_signing")

Files = list[tuple[str, str, int]]


@pytest.fixture(scope="module")
def minilm_files() -> Files:
    """Every MiniLM file with its sha256, hashed once the way the bundler does (gapseal.hashing)."""
    if not (MINILM / "model.safetensors").is_file():
        pytest.fail(f"the real MiniLM weights are missing from {MINILM}: run `make model` (scripts/fetch-model.sh)")
    paths = sorted(p for p in MINILM.rglob("*") if p.is_file())
    digests = parallel_map(hash_file, paths)
    return [(p.relative_to(MINILM).as_posix(), d.sha256, d.size) for p, d in zip(paths, digests, strict=True)]


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def signature(minilm_files: Files, key: SigningKey) -> bytes:
    return sign_model(minilm_files, key, model_name="minilm")


def _model_dir(dest: Path, signature: bytes, *, copy: tuple[str, ...] = ()) -> Path:
    """A directory holding exactly the model's files (hard links where possible, copies of ``copy``) + model.sig."""
    for src in sorted(p for p in MINILM.rglob("*") if p.is_file()):
        rel = src.relative_to(MINILM)
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if rel.as_posix() in copy:
            shutil.copyfile(src, out)
            continue
        try:
            os.link(src, out)
        except OSError:
            shutil.copyfile(src, out)
    (dest / MODEL_SIGNATURE_NAME).write_bytes(signature)
    return dest


def _public_key(tmp_path: Path, key: SigningKey) -> Path:
    pub = tmp_path / "KEY.pub"
    pub.write_bytes(key.public.pem())
    return pub


def _cli_verify(model_dir: Path, pub: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The real `model_signing verify key` command line, as an operator would type it."""
    return subprocess.run(
        [
            str(MODEL_SIGNING_CLI),
            "verify",
            "key",
            "--signature",
            str(model_dir / MODEL_SIGNATURE_NAME),
            "--public_key",
            str(pub),
            *extra,
            str(model_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _api_verify(model_dir: Path, pub: Path) -> None:
    """model_signing's own verification API, configured like its CLI's `verify key`."""
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub).set_hashing_config(
        model_signing.hashing.Config().set_ignored_paths(paths=[Path(MODEL_SIGNATURE_NAME)])
    ).verify(model_dir, model_dir / MODEL_SIGNATURE_NAME)


def _payload(signature: bytes) -> dict[str, Any]:
    bundle = json.loads(signature)
    decoded: dict[str, Any] = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    return decoded


# --- the real model_signing CLI ---------------------------------------------------------------------------------------


def test_cli_verify_succeeds_on_the_model_directory(tmp_path: Path, key: SigningKey, signature: bytes) -> None:
    model_dir = _model_dir(tmp_path / "minilm", signature)
    result = _cli_verify(model_dir, _public_key(tmp_path, key))
    assert result.returncode == 0, result.stderr
    assert "Verification succeeded" in result.stdout


def test_cli_verify_succeeds_without_ignoring_git_paths(tmp_path: Path, key: SigningKey, signature: bytes) -> None:
    """MiniLM carries a .gitattributes; it is recorded as ignored in the signature, so even this mode passes."""
    model_dir = _model_dir(tmp_path / "minilm", signature)
    assert (model_dir / ".gitattributes").is_file()
    result = _cli_verify(model_dir, _public_key(tmp_path, key), "--no-ignore-git-paths")
    assert result.returncode == 0, result.stderr


def test_cli_verify_fails_on_a_flipped_weight_byte(tmp_path: Path, key: SigningKey, signature: bytes) -> None:
    model_dir = _model_dir(tmp_path / "minilm", signature, copy=("model.safetensors",))
    weights = model_dir / "model.safetensors"
    with open(weights, "r+b") as f:
        f.seek(weights.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))
    result = _cli_verify(model_dir, _public_key(tmp_path, key))
    assert result.returncode == 1
    assert "Verification failed" in result.stderr
    assert "Hash mismatch for " in result.stderr
    assert "model.safetensors" in result.stderr


def test_cli_verify_fails_on_an_extra_file(tmp_path: Path, key: SigningKey, signature: bytes) -> None:
    """model_signing refuses a file that is not in the signature (unless --ignore_unsigned_files is given)."""
    model_dir = _model_dir(tmp_path / "minilm", signature)
    (model_dir / "1_Pooling" / "extra.bin").write_bytes(b"planted")
    result = _cli_verify(model_dir, _public_key(tmp_path, key))
    assert result.returncode == 1
    assert "Extra files found in model 'minilm': 1_Pooling/extra.bin" in result.stderr


# --- model_signing's API (the same code path as the CLI, without a process per check) ---------------------------------


def test_api_verify_fails_on_a_missing_file(tmp_path: Path, key: SigningKey, signature: bytes) -> None:
    model_dir = _model_dir(tmp_path / "minilm", signature)
    (model_dir / "vocab.txt").unlink()
    with pytest.raises(ValueError, match=r"Missing files in model 'minilm': vocab.txt"):
        _api_verify(model_dir, _public_key(tmp_path, key))


def test_api_verify_fails_with_another_key(tmp_path: Path, signature: bytes) -> None:
    model_dir = _model_dir(tmp_path / "minilm", signature)
    with pytest.raises(ValueError, match="Key mismatch"):
        _api_verify(model_dir, _public_key(tmp_path, SigningKey.generate()))


def test_api_verify_fails_on_an_edited_payload(tmp_path: Path, key: SigningKey, signature: bytes) -> None:
    bundle = json.loads(signature)
    payload = _payload(signature)
    payload["predicate"]["resources"] = payload["predicate"]["resources"][1:]
    payload["subject"][0]["name"] = "other"
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    model_dir = _model_dir(tmp_path / "minilm", json.dumps(bundle).encode())
    with pytest.raises(InvalidSignature):
        _api_verify(model_dir, _public_key(tmp_path, key))


def test_api_verify_succeeds_for_a_single_file_model(tmp_path: Path, key: SigningKey) -> None:
    """A spec path naming one file becomes a directory holding that file under its basename."""
    (tmp_path / "weights").mkdir()
    shutil.copyfile(MINILM / "config.json", tmp_path / "weights" / "config.json")
    (tmp_path / "spec.yaml").write_text(
        "apiVersion: gapseal/v1\nkind: Bundle\nmetadata: {name: d, version: 1.0.0}\n"
        "models: [{name: cfg, path: weights/config.json}]\n"
    )
    (component,) = collect_inputs(load_spec(tmp_path / "spec.yaml"))
    files = [(f.rel_path, hash_file(f.source).sha256, f.size) for f in component.files]
    model_dir = tmp_path / "unpacked"
    model_dir.mkdir()
    shutil.copyfile(MINILM / "config.json", model_dir / "config.json")
    (model_dir / MODEL_SIGNATURE_NAME).write_bytes(sign_model(files, key, model_name="cfg"))
    _api_verify(model_dir, _public_key(tmp_path, key))


# --- what is signed ---------------------------------------------------------------------------------------------------


def test_payload_matches_what_model_signing_computes_itself(tmp_path: Path, signature: bytes) -> None:
    """Our manifest from precomputed digests equals model_signing's own hashing of the directory."""
    model_dir = _model_dir(tmp_path / "minilm", signature)
    theirs = model_signing.hashing.Config().set_ignored_paths(paths=[Path(MODEL_SIGNATURE_NAME)]).hash(model_dir)
    ours = _payload(signature)
    assert [(r["name"], r["algorithm"], r["digest"]) for r in ours["predicate"]["resources"]] == [
        (rd.identifier, rd.digest.algorithm, rd.digest.digest_hex) for rd in theirs.resource_descriptors()
    ]
    serialization = ours["predicate"]["serialization"]
    assert serialization["method"] == theirs.serialization_type["method"] == "files"
    assert serialization["hash_type"] == "sha256"
    assert serialization["allow_symlinks"] is False
    assert set(serialization["ignore_paths"]) == {str(p) for p in theirs.serialization_type["ignore_paths"]}
    assert serialization["ignore_paths"] == sorted(IGNORED_PATHS)


def test_statement_shape(signature: bytes, minilm_files: Files, key: SigningKey) -> None:
    bundle = json.loads(signature)
    assert bundle["mediaType"] == MODEL_SIGNATURE_MEDIA_TYPE == sign_sigstore_pb._BUNDLE_MEDIA_TYPE
    assert bundle["verificationMaterial"]["tlogEntries"] == []
    assert bundle["dsseEnvelope"]["payloadType"] == "application/vnd.in-toto+json"
    payload = _payload(signature)
    assert payload["_type"] == "https://in-toto.io/Statement/v1"
    assert payload["predicateType"] == MODEL_SIGNATURE_PREDICATE_TYPE == ms_signing._PREDICATE_TYPE
    assert payload["subject"][0]["name"] == "minilm"
    names = [r["name"] for r in payload["predicate"]["resources"]]
    assert ".gitattributes" not in names
    assert names == sorted(rel for rel, _, _ in minilm_files if rel != ".gitattributes")


def test_signature_is_deterministic(minilm_files: Files, key: SigningKey, signature: bytes) -> None:
    assert sign_model(minilm_files, key, model_name="minilm") == signature
    assert sign_model(list(reversed(minilm_files)), key, model_name="minilm") == signature
    assert sign_model(minilm_files, SigningKey.generate(), model_name="minilm") != signature
    assert model_manifest_payload(minilm_files, model_name="minilm") == base64.b64decode(
        json.loads(signature)["dsseEnvelope"]["payload"]
    )


def test_a_cryptography_key_object_is_accepted(tmp_path: Path) -> None:
    raw = ec.generate_private_key(ec.SECP256R1())
    files = [("w.bin", "ab" * 32, 1)]
    assert json.loads(sign_model(files, raw, model_name="m"))["verificationMaterial"]["publicKey"]["hint"]


@pytest.mark.parametrize(
    ("rel", "ignored"),
    [
        (".gitattributes", True),
        (".git/HEAD", True),
        (".github/workflows/ci.yml", True),
        (".gitignore", True),
        ("model.sig", True),
        ("sub/.gitignore", False),
        (".gitattributes.bak", False),
        ("model.safetensors", False),
    ],
)
def test_ignored_paths_follow_model_signing(rel: str, ignored: bool) -> None:
    assert is_ignored(rel) is ignored


# --- refused inputs ---------------------------------------------------------------------------------------------------

GOOD = "0" * 64


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([("model.sig", GOOD, 1)], r"already holds a file named 'model.sig' at its root"),
        ([("w", GOOD, 1), ("model.sig/x", GOOD, 1)], r"already holds a file named 'model.sig'"),
        ([("../w", GOOD, 1)], r"model file path '../w' is not a clean relative POSIX path"),
        ([("/etc/w", GOOD, 1)], r"model file path '/etc/w' is not a clean relative POSIX path"),
        ([("a//w", GOOD, 1)], r"'a//w' is not a clean relative POSIX path"),
        ([("./w", GOOD, 1)], r"'./w' is not a clean relative POSIX path"),
        ([("a\\w", GOOD, 1)], r"is not a clean relative POSIX path"),
        ([("w", GOOD, 1), ("w", GOOD, 1)], r"model file 'w' is listed twice"),
        ([("w", "AB" * 32, 1)], r"model file 'w': 'ABAB.*' is not a lower-case hex SHA-256"),
        ([("w", "ab" * 31, 1)], r"is not a lower-case hex SHA-256"),
        ([("w", GOOD, -1)], r"model file 'w': negative size -1"),
        ([(".gitattributes", GOOD, 1)], r"the model has no file to sign \(only git metadata\)"),
        ([], r"the model has no file to sign"),
    ],
)
def test_bad_file_lists_are_refused(files: Files, message: str) -> None:
    with pytest.raises(SigningError, match=message):
        sign_model(files, SigningKey.generate(), model_name="m")


def test_a_p384_key_is_refused() -> None:
    with pytest.raises(SigningError, match="model signatures need an ECDSA P-256 key, got curve secp384r1"):
        sign_model([("w", GOOD, 1)], ec.generate_private_key(ec.SECP384R1()), model_name="m")


def test_tricky_names_verify_with_model_signing(tmp_path: Path, key: SigningKey) -> None:
    """Hidden files, nested git files (not ignored below the root), spaces, non-ASCII, ':' and empty files."""
    model_dir = tmp_path / "m"
    names = [
        "sub/.gitignore",
        "sub/.git/config",
        ".hidden",
        "with space.json",
        "naïve-ünïcode.txt",
        "colon:name.bin",
        "empty.bin",
        "a/b/c/d/deep.bin",
        ".gitattributes",
        ".github/workflows/ci.yml",
    ]
    files: Files = []
    for i, rel in enumerate(names):
        p = model_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        data = b"" if rel == "empty.bin" else f"{i}:{rel}".encode()
        p.write_bytes(data)
        files.append((rel, hash_file(p).sha256, len(data)))
    (model_dir / MODEL_SIGNATURE_NAME).write_bytes(sign_model(files, key, model_name="m"))
    _api_verify(model_dir, _public_key(tmp_path, key))
    signed = [r["name"] for r in _payload((model_dir / MODEL_SIGNATURE_NAME).read_bytes())["predicate"]["resources"]]
    assert "sub/.gitignore" in signed
    assert "sub/.git/config" in signed
    assert ".gitattributes" not in signed
    assert ".github/workflows/ci.yml" not in signed


def test_signature_bytes_are_pinned() -> None:
    """Golden digests: model.sig bytes enter the bundle manifest, so a change in them (a model_signing or protobuf
    upgrade reformatting the payload) changes every bundle digest. If this fails on purpose, update both values."""
    key = ec.derive_private_key(0x6761707365616C, ec.SECP256R1())
    files = [
        ("config.json", hashlib.sha256(b"{}").hexdigest(), 2),
        ("model.safetensors", hashlib.sha256(b"w").hexdigest(), 1),
        (".gitattributes", hashlib.sha256(b"g").hexdigest(), 1),
    ]
    payload = model_manifest_payload(files, model_name="golden")
    signature = sign_model(files, key, model_name="golden")
    assert hashlib.sha256(payload).hexdigest() == "631f532c669df6f8238dca580d9abfffc05813f03851d09843b733ad31d4be3b"
    assert hashlib.sha256(signature).hexdigest() == "f847cb59706d635fbd178d37a89ffa1a0086be79a3e5ee857a5ee821f8ba8dab"
