"""Independent verifiers accept gapseal's signed statements, and reject tampered ones.

1. ``@sigstore/verify`` (npm, the real package, installed by ``make deps`` into tests/interop) verifies a gapseal bundle
   with public-key trust material and no transparency log, CT log or timestamp authority.
2. cosign is not installable from any registry this machine reaches (no Debian, PyPI or npm package), so the cosign
   tests are a STRUCTURAL CHECK, NOT COSIGN ITSELF: a Python restatement of what
   ``cosign verify-blob-attestation --key K.pub --insecure-ignore-tlog --new-bundle-format --bundle B BLOB`` reads,
   taken from cosign's and sigstore-go's sources (cmd/cosign/cli/verify/verify_blob_attestation.go,
   pkg/cosign/verify.go ``verificationOptions``, sigstore-go pkg/bundle/bundle.go ``validate``, pkg/verify/signature.go
   ``verifyEnvelope`` / ``verifyEnvelopeWithArtifactDigests`` / ``limitSubjects``, go-securesystemslib dsse/verify.go).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gapseal.signing.attestation import Subject, add_signature, sign_statement, verify_statement
from gapseal.signing.keys import generate_key_pair, load_private_key, load_public_key

pytestmark = pytest.mark.integration

INTEROP = Path(__file__).resolve().parent.parent / "interop"
PREDICATE = "https://gapseal.dev/bundle/v1"
BLOB = b"model weights, pretend\n"
BLOB_SHA256 = hashlib.sha256(BLOB).hexdigest()
SUBJECTS = [Subject("sha256:manifest", "11" * 32), Subject("models/minilm/model.safetensors", BLOB_SHA256)]


@pytest.fixture(scope="module")
def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("node is not on PATH: the @sigstore/verify interop test needs it")
    if not (INTEROP / "node_modules" / "@sigstore" / "verify").is_dir():
        pytest.fail("tests/interop/node_modules is missing: run `make deps` (npm ci --prefix tests/interop)")
    return exe


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("interop-keys")
    a_key, a_pub = generate_key_pair(d / "a", b"pw")
    _, b_pub = generate_key_pair(d / "b", None)
    return {
        "a": load_private_key(a_key, b"pw"),
        "a_pub": a_pub,
        "b": load_private_key(d / "b.key", None),
        "b_pub": b_pub,
    }


@pytest.fixture
def signed(keys: dict[str, Any], tmp_path: Path) -> Path:
    path = tmp_path / "bundle.sigstore.json"
    path.write_bytes(sign_statement(SUBJECTS, PREDICATE, {"name": "clinic-assistant", "version": "1.4.0"}, keys["a"]))
    return path


def _sigstore_js(node: str, bundle: Path, pub: Path, *extra: str) -> dict[str, Any]:
    r = subprocess.run(
        [node, str(INTEROP / "verify.mjs"), str(bundle), str(pub), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode in (0, 1), f"verify.mjs failed to run: rc={r.returncode} {r.stderr}"
    result: dict[str, Any] = json.loads(r.stdout)
    assert result["ok"] == (r.returncode == 0)
    return result


def _edit(path: Path, change: Any) -> Path:
    doc = json.loads(path.read_bytes())
    change(doc)
    out = path.with_name("edited.json")
    out.write_text(json.dumps(doc))
    return out


def _tamper_payload(doc: dict[str, Any]) -> None:
    st = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    st["subject"][1]["digest"]["sha256"] = "00" * 32
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(st).encode()).decode()


# --- @sigstore/verify -----------------------------------------------------------------------------------------------


def test_sigstore_js_verifies_a_gapseal_bundle(node: str, signed: Path, keys: dict[str, Any]) -> None:
    r = _sigstore_js(node, signed, keys["a_pub"])
    assert r["ok"] is True, r
    assert r["payloadType"] == "application/vnd.in-toto+json"
    assert r["statement"]["_type"] == "https://in-toto.io/Statement/v1"
    assert r["statement"]["predicateType"] == PREDICATE
    assert {s["name"] for s in r["statement"]["subject"]} == {s.name for s in SUBJECTS}
    assert r["keyId"] == keys["a"].key_id, "gapseal's key id is node's sha256 of the DER SPKI too"


def test_sigstore_js_finds_the_key_by_gapseal_hint(node: str, signed: Path, keys: dict[str, Any]) -> None:
    """With the key registered under its id, @sigstore/verify looks it up by the bundle's hint."""
    assert _sigstore_js(node, signed, keys["a_pub"], "--match-hint")["ok"] is True
    r = _sigstore_js(node, signed, keys["b_pub"], "--match-hint")
    assert r["ok"] is False
    assert "key not found" in r["message"]


def test_sigstore_js_rejects_a_tampered_payload(node: str, signed: Path, keys: dict[str, Any]) -> None:
    r = _sigstore_js(node, _edit(signed, _tamper_payload), keys["a_pub"])
    assert r["ok"] is False
    assert r["code"] == "SIGNATURE_ERROR"


def test_sigstore_js_rejects_a_flipped_signature_byte(node: str, signed: Path, keys: dict[str, Any]) -> None:
    def flip(doc: dict[str, Any]) -> None:
        sig = bytearray(base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"]))
        sig[-1] ^= 1
        doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()

    r = _sigstore_js(node, _edit(signed, flip), keys["a_pub"])
    assert r["ok"] is False
    assert r["code"] == "SIGNATURE_ERROR"


def test_sigstore_js_rejects_a_different_key(node: str, signed: Path, keys: dict[str, Any]) -> None:
    r = _sigstore_js(node, signed, keys["b_pub"])
    assert r["ok"] is False
    assert r["code"] == "SIGNATURE_ERROR"
    assert r["message"] == "signature verification failed"


def test_sigstore_js_rejects_a_cosigned_envelope(node: str, signed: Path, keys: dict[str, Any]) -> None:
    """Pins a known limit: a Sigstore bundle holds one DSSE signature; a co-signed one verifies with gapseal only."""
    double = signed.with_name("double.json")
    double.write_bytes(add_signature(signed.read_bytes(), keys["b"]))
    assert verify_statement(double.read_bytes(), [keys["b"].public], allowed_predicate_types={PREDICATE})
    r = _sigstore_js(node, double, keys["a_pub"])
    assert r["ok"] is False
    assert r["message"] == "invalid bundle"
    assert r["fields"] == ["content.dsseEnvelope.signatures"]


def test_gapseal_verifies_what_it_gave_sigstore_js(signed: Path, keys: dict[str, Any]) -> None:
    v = verify_statement(signed.read_bytes(), [load_public_key(keys["a_pub"])], allowed_predicate_types={PREDICATE})
    assert v.signer_key_id == keys["a"].key_id


# --- cosign: structural check, not cosign itself --------------------------------------------------------------------


class CosignWouldRejectError(Exception):
    """What cosign (through sigstore-go) would refuse, with the reason it would give."""


# protojson field names (json_name and the proto name) of the messages cosign parses; unknown fields are errors.
_FIELDS: dict[str, set[str]] = {
    "Bundle": {"mediaType", "media_type", "verificationMaterial", "verification_material", "messageSignature",
               "message_signature", "dsseEnvelope", "dsse_envelope"},
    "VerificationMaterial": {"publicKey", "public_key", "x509CertificateChain", "x509_certificate_chain",
                             "certificate", "tlogEntries", "tlog_entries", "timestampVerificationData",
                             "timestamp_verification_data"},
    "PublicKeyIdentifier": {"hint"},
    "Envelope": {"payload", "payloadType", "payload_type", "signatures"},
    "Signature": {"sig", "keyid"},
    "Statement": {"_type", "type", "subject", "predicateType", "predicate_type", "predicate"},
    "ResourceDescriptor": {"name", "uri", "digest", "content", "downloadLocation", "download_location", "mediaType",
                           "media_type", "annotations"},
}  # fmt: skip


def _fields(obj: Any, message: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise CosignWouldRejectError(f"proto: {message} is not an object")
    unknown = set(obj) - _FIELDS[message]
    if unknown:
        raise CosignWouldRejectError(f"proto: ({message}) unknown field {sorted(unknown)[0]!r}")
    return obj


def _get(obj: dict[str, Any], *names: str) -> Any:
    for n in names:
        if n in obj:
            return obj[n]
    return None


def _proto_bytes(value: Any, what: str) -> bytes:
    # protojson accepts standard and URL-safe base64, padded or not.
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9+/_-]*={0,2}", value):
        raise CosignWouldRejectError(f"proto: invalid value for bytes field {what}")
    s = value.rstrip("=").replace("-", "+").replace("_", "/")
    return base64.b64decode(s + "=" * (-len(s) % 4))


def _ssh_sha256_fingerprint(pub: ec.EllipticCurvePublicKey) -> str:
    blob = pub.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).split()[1]
    return "SHA256:" + base64.b64encode(hashlib.sha256(base64.b64decode(blob)).digest()).decode().rstrip("=")


def cosign_verify_blob_attestation_structure(bundle_bytes: bytes, pub_pem: bytes, artifact_sha256: str) -> None:
    """Raise CosignWouldRejectError unless cosign's new-bundle --key --insecure-ignore-tlog path would accept it."""
    # sgbundle.LoadJSONFromPath: protojson.Unmarshal, then validate().
    try:
        doc = json.loads(bundle_bytes)
    except json.JSONDecodeError as e:
        raise CosignWouldRejectError(f"proto: syntax error: {e}") from e
    bundle = _fields(doc, "Bundle")
    media_type = _get(bundle, "mediaType", "media_type")
    versions = {
        "application/vnd.dev.sigstore.bundle+json;version=0.1": (0, 1),
        "application/vnd.dev.sigstore.bundle+json;version=0.2": (0, 2),
        "application/vnd.dev.sigstore.bundle+json;version=0.3": (0, 3),
    }
    m = re.fullmatch(r"application/vnd\.dev\.sigstore\.bundle\.v(\d+)\.(\d+)\+json", media_type or "")
    version = versions.get(media_type or "") or ((int(m.group(1)), int(m.group(2))) if m else None)
    if version is None:
        raise CosignWouldRejectError(f"validation error: unsupported media type: {media_type}")
    if version >= (0, 4):
        raise CosignWouldRejectError("bundle version is not yet supported")
    material = _fields(_get(bundle, "verificationMaterial", "verification_material"), "VerificationMaterial")
    tlog = _get(material, "tlogEntries", "tlog_entries") or []
    if tlog:
        raise CosignWouldRejectError("this check covers tlog-free bundles only")
    if _get(material, "x509CertificateChain", "x509_certificate_chain") is not None and version >= (0, 3):
        raise CosignWouldRejectError("verification material cannot be X.509 certificate chain (for bundle v0.3)")
    contents = [k for k in ("publicKey", "public_key", "x509CertificateChain", "certificate") if k in material]
    if len(contents) != 1:
        raise CosignWouldRejectError("validation error: missing verification material")
    if contents[0] in ("publicKey", "public_key"):
        _fields(material[contents[0]], "PublicKeyIdentifier")  # the hint is not used with --key
    has_dsse = _get(bundle, "dsseEnvelope", "dsse_envelope") is not None
    has_msg = _get(bundle, "messageSignature", "message_signature") is not None
    if has_dsse and has_msg:
        raise CosignWouldRejectError("proto: oneof content is already set")
    if not has_dsse:
        raise CosignWouldRejectError("an attestation needs a DSSE envelope")
    env = _fields(_get(bundle, "dsseEnvelope", "dsse_envelope"), "Envelope")
    payload = _proto_bytes(env.get("payload", ""), "payload")
    payload_type = _get(env, "payloadType", "payload_type") or ""
    signatures = [_fields(s, "Signature") for s in env.get("signatures", [])]

    # verifyEnvelope: exactly one signature; go-securesystemslib EnvelopeVerifier with the --key verifier.
    if len(signatures) != 1:
        raise CosignWouldRejectError("exactly one signature is required")
    pub = serialization.load_pem_public_key(pub_pem)
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    keyid = signatures[0].get("keyid", "")
    if keyid and keyid != _ssh_sha256_fingerprint(pub):
        raise CosignWouldRejectError(
            "accepted signatures do not match threshold, Found: 0, Expected 1 (keyid mismatch)"
        )
    sig = _proto_bytes(signatures[0].get("sig", ""), "sig")
    t = payload_type.encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)
    try:
        pub.verify(sig, pae, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise CosignWouldRejectError("could not verify envelope: accepted signatures do not match threshold") from None

    # Envelope.Statement(): in-toto payload type, protojson into in_toto v1 Statement.
    if payload_type != "application/vnd.in-toto+json":
        raise CosignWouldRejectError("validation error: unsupported media type")
    try:
        statement = _fields(json.loads(payload), "Statement")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CosignWouldRejectError("invalid attestation: decoding json") from e
    subjects = [_fields(s, "ResourceDescriptor") for s in statement.get("subject", [])]
    if not isinstance(_get(statement, "predicate") or {}, dict):
        raise CosignWouldRejectError("invalid attestation: decoding json (predicate is a Struct)")
    # limitSubjects, then WithArtifactDigest("sha256", digest of BLOB).
    if len(subjects) > 1024:
        raise CosignWouldRejectError(f"too many subjects: {len(subjects)} > 1024")
    found = False
    for s in subjects:
        digest = s.get("digest", {})
        if len(digest) > 32:
            raise CosignWouldRejectError("too many digests")
        for alg, hexdigest in digest.items():
            try:
                raw = bytes.fromhex(hexdigest)
            except ValueError:
                raise CosignWouldRejectError("unable to decode subject digest") from None
            found = found or (alg == "sha256" and raw == bytes.fromhex(artifact_sha256))
    if not found:
        raise CosignWouldRejectError("provided artifact digest does not match any digest in statement")


def test_cosign_structure_check_accepts_a_gapseal_bundle_not_cosign_itself(signed: Path, keys: dict[str, Any]) -> None:
    cosign_verify_blob_attestation_structure(signed.read_bytes(), keys["a_pub"].read_bytes(), BLOB_SHA256)


def test_cosign_structure_check_accepts_every_subject_as_the_blob_not_cosign_itself(
    signed: Path, keys: dict[str, Any]
) -> None:
    for s in SUBJECTS:
        cosign_verify_blob_attestation_structure(signed.read_bytes(), keys["a_pub"].read_bytes(), s.sha256)


@pytest.mark.parametrize(
    ("name", "change", "reason"),
    [
        ("tampered_payload", _tamper_payload, "could not verify envelope"),
        ("hex_keyid", lambda d: d["dsseEnvelope"]["signatures"][0].update(keyid="ab" * 32), "keyid mismatch"),
        ("unknown_field", lambda d: d["verificationMaterial"].update(colour="red"), "unknown field 'colour'"),
        ("v0_4", lambda d: d.update(mediaType="application/vnd.dev.sigstore.bundle.v0.4+json"), "not yet supported"),
        ("no_envelope", lambda d: d.pop("dsseEnvelope"), "needs a DSSE envelope"),
    ],
)
def test_cosign_structure_check_has_teeth_not_cosign_itself(
    signed: Path, keys: dict[str, Any], name: str, change: Any, reason: str
) -> None:
    """The structural check rejects what cosign rejects, so its acceptance above means something."""
    with pytest.raises(CosignWouldRejectError, match=reason):
        cosign_verify_blob_attestation_structure(
            _edit(signed, change).read_bytes(), keys["a_pub"].read_bytes(), BLOB_SHA256
        )


def test_cosign_structure_check_rejects_a_different_key_not_cosign_itself(signed: Path, keys: dict[str, Any]) -> None:
    with pytest.raises(CosignWouldRejectError, match="could not verify envelope"):
        cosign_verify_blob_attestation_structure(signed.read_bytes(), keys["b_pub"].read_bytes(), BLOB_SHA256)


def test_cosign_structure_check_rejects_a_blob_not_in_the_subjects_not_cosign_itself(
    signed: Path, keys: dict[str, Any]
) -> None:
    with pytest.raises(CosignWouldRejectError, match="does not match any digest"):
        cosign_verify_blob_attestation_structure(signed.read_bytes(), keys["a_pub"].read_bytes(), "22" * 32)


def test_cosign_structure_check_rejects_a_cosigned_envelope_not_cosign_itself(
    signed: Path, keys: dict[str, Any]
) -> None:
    double = add_signature(signed.read_bytes(), keys["b"])
    with pytest.raises(CosignWouldRejectError, match="exactly one signature"):
        cosign_verify_blob_attestation_structure(double, keys["a_pub"].read_bytes(), BLOB_SHA256)


def test_cosign_structure_check_subject_limit_not_cosign_itself(keys: dict[str, Any]) -> None:
    """sigstore-go refuses statements of more than 1024 subjects: a bundle with more blobs is gapseal-only."""
    many = [Subject(f"f{i}", hashlib.sha256(str(i).encode()).hexdigest()) for i in range(1025)]
    bundle = sign_statement(many, PREDICATE, {}, keys["a"])
    with pytest.raises(CosignWouldRejectError, match="too many subjects: 1025 > 1024"):
        cosign_verify_blob_attestation_structure(bundle, keys["a_pub"].read_bytes(), many[0].sha256)
    cosign_verify_blob_attestation_structure(
        sign_statement(many[:1024], PREDICATE, {}, keys["a"]), keys["a_pub"].read_bytes(), many[0].sha256
    )


def test_ssh_fingerprint_keyid_would_be_accepted_not_cosign_itself(signed: Path, keys: dict[str, Any]) -> None:
    """The only non-empty keyid go-securesystemslib accepts with cosign's verifier adapter is the SSH fingerprint."""
    pub = serialization.load_pem_public_key(keys["a_pub"].read_bytes())
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    fp = _ssh_sha256_fingerprint(pub)
    edited = _edit(signed, lambda d: d["dsseEnvelope"]["signatures"][0].update(keyid=fp))
    cosign_verify_blob_attestation_structure(edited.read_bytes(), keys["a_pub"].read_bytes(), BLOB_SHA256)


# --- the signature of a real gapseal bundle (built by the bundler, read back as plain OCI layout JSON) ---------------

SIGSTORE_ARTIFACT = "application/vnd.dev.sigstore.bundle.v0.3+json"


@pytest.fixture(scope="module")
def real_bundle(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from tests.bundles import make_bundle, make_keys

    tmp = tmp_path_factory.mktemp("real-bundle")
    pair = make_keys(tmp / "keys")
    created = make_bundle(tmp, pair)
    layout = created.path

    def blob(digest: str) -> Path:
        return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")

    index = json.loads((layout / "index.json").read_bytes())
    sig_desc = [m for m in index["manifests"] if m.get("artifactType") == SIGSTORE_ARTIFACT]
    assert len(sig_desc) == 1, index
    sig_manifest = json.loads(blob(sig_desc[0]["digest"]).read_bytes())
    bundle_manifest_digest = sig_manifest["subject"]["digest"]
    sigstore_json = tmp / "bundle.sigstore.json"
    sigstore_json.write_bytes(blob(sig_manifest["layers"][0]["digest"]).read_bytes())
    bundle_manifest = json.loads(blob(bundle_manifest_digest).read_bytes())
    return {
        "sigstore_json": sigstore_json,
        "public": pair.public_path,
        "manifest_blob": blob(bundle_manifest_digest),
        "layer_blob": blob(bundle_manifest["layers"][0]["digest"]),
    }


def test_sigstore_js_verifies_a_real_bundle_signature(node: str, real_bundle: dict[str, Any]) -> None:
    r = _sigstore_js(node, real_bundle["sigstore_json"], real_bundle["public"])
    assert r["ok"] is True, r
    digests = {s["digest"]["sha256"] for s in r["statement"]["subject"]}
    assert hashlib.sha256(real_bundle["manifest_blob"].read_bytes()).hexdigest() in digests


def test_cosign_structure_check_accepts_a_real_bundle_signature_not_cosign_itself(real_bundle: dict[str, Any]) -> None:
    """As `cosign verify-blob-attestation --key K.pub --bundle S --new-bundle-format --insecure-ignore-tlog BLOB`
    with BLOB the bundle manifest, or any layer blob of the layout."""
    bundle = real_bundle["sigstore_json"].read_bytes()
    pub = real_bundle["public"].read_bytes()
    for blob in (real_bundle["manifest_blob"], real_bundle["layer_blob"]):
        cosign_verify_blob_attestation_structure(bundle, pub, hashlib.sha256(blob.read_bytes()).hexdigest())
