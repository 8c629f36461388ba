"""Signed in-toto statements in Sigstore bundles: the format, and every way verification must fail closed."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sigstore_models.bundle.v1 import Bundle

from gapseal.errors import SignatureError, SigningError
from gapseal.signing.attestation import (
    BUNDLE_MEDIA_TYPE,
    Subject,
    add_signature,
    pae,
    sign_statement,
    verify_statement,
)
from gapseal.signing.keys import SigningKey
from tests.unit.signing.signed import (
    DIGEST,
    PREDICATE,
    dump,
    raw_bundle,
    signed_statement,
    spec_pae,
    statement,
)

SUBJECTS = [Subject("b.bin", "cd" * 32), Subject("a.bin", DIGEST)]
ALLOWED = {PREDICATE}


def _sign(key: SigningKey, predicate: dict[str, Any] | None = None) -> bytes:
    return sign_statement(SUBJECTS, PREDICATE, predicate if predicate is not None else {"z": 1, "a": [1, 2]}, key)


def _doc(bundle_bytes: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(bundle_bytes)
    return doc


def _payload(bundle_bytes: bytes) -> bytes:
    return base64.b64decode(_doc(bundle_bytes)["dsseEnvelope"]["payload"])


def _reject(bundle_bytes: bytes, keys: list[SigningKey], match: str, allowed: set[str] = ALLOWED) -> None:
    with pytest.raises(SignatureError, match=match):
        verify_statement(bundle_bytes, [k.public for k in keys], allowed_predicate_types=allowed)


# --- format ---------------------------------------------------------------------------------------------------------


def test_pae_matches_the_dsse_spec_example() -> None:
    # The example from the DSSE v1 protocol document.
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae("application/vnd.in-toto+json", b"") == b"DSSEv1 28 application/vnd.in-toto+json 0 "
    assert pae("t\u00e9", b"x") == b"DSSEv1 3 t\xc3\xa9 1 x", "lengths count UTF-8 bytes"


def test_round_trip(key_a: SigningKey) -> None:
    v = verify_statement(_sign(key_a), [key_a.public], allowed_predicate_types=ALLOWED)
    assert v.subjects == tuple(SUBJECTS)
    assert v.predicate_type == PREDICATE
    assert v.predicate == {"z": 1, "a": [1, 2]}
    assert v.signer_key_id == key_a.key_id


def test_bundle_structure(key_a: SigningKey) -> None:
    doc = _doc(_sign(key_a))
    assert doc["mediaType"] == BUNDLE_MEDIA_TYPE == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert doc["verificationMaterial"] == {"publicKey": {"hint": key_a.key_id}, "tlogEntries": []}
    env = doc["dsseEnvelope"]
    assert env["payloadType"] == "application/vnd.in-toto+json"
    assert len(env["signatures"]) == 1
    assert set(env["signatures"][0]) == {"sig"}, "no keyid: cosign would skip the verifier"
    Bundle.from_json(json.dumps(doc))  # the sigstore data model reads it


def test_statement_is_in_toto_v1(key_a: SigningKey) -> None:
    st = json.loads(_payload(_sign(key_a)))
    assert st == {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            {"name": "b.bin", "digest": {"sha256": "cd" * 32}},
            {"name": "a.bin", "digest": {"sha256": DIGEST}},
        ],
        "predicateType": PREDICATE,
        "predicate": {"z": 1, "a": [1, 2]},
    }


def test_payload_is_canonical_and_deterministic(key_a: SigningKey, key_b: SigningKey) -> None:
    p1 = _payload(_sign(key_a, {"z": 1, "a": {"y": 2, "b": "é"}}))
    p2 = _payload(_sign(key_b, {"a": {"b": "é", "y": 2}, "z": 1}))
    assert p1 == p2
    assert b" " not in p1
    assert b"\n" not in p1
    assert p1 == json.dumps(json.loads(p1), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_bundle_bytes_are_canonical(key_a: SigningKey) -> None:
    b = _sign(key_a)
    assert b == json.dumps(json.loads(b), sort_keys=True, separators=(",", ":")).encode()


def test_signature_checks_with_cryptography_over_spec_pae(key_a: SigningKey) -> None:
    """Independent of gapseal's verifier: DER ECDSA-SHA256 over the spec's PAE of the payload."""
    b = _sign(key_a)
    sig = base64.b64decode(_doc(b)["dsseEnvelope"]["signatures"][0]["sig"])
    pub = serialization.load_pem_public_key(key_a.public.pem())
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    pub.verify(sig, spec_pae("application/vnd.in-toto+json", _payload(b)), ec.ECDSA(hashes.SHA256()))


def test_hand_built_bundle_verifies(key_a: SigningKey) -> None:
    """A bundle written by the independent helper verifies: both sides agree on the format."""
    v = verify_statement(signed_statement(statement(), key_a), [key_a.public], allowed_predicate_types=ALLOWED)
    assert v.subjects == (Subject("a.bin", DIGEST),)


def test_older_media_type_spelling_of_v03_is_accepted(key_a: SigningKey) -> None:
    payload = json.dumps(statement()).encode()
    b = dump(raw_bundle(payload, [key_a], media_type="application/vnd.dev.sigstore.bundle+json;version=0.3"))
    verify_statement(b, [key_a.public], allowed_predicate_types=ALLOWED)


# --- trust: never the hint ------------------------------------------------------------------------------------------


def test_hint_is_ignored(key_a: SigningKey, key_b: SigningKey) -> None:
    """A bundle whose hint names key A but is signed by B verifies only when B is trusted."""
    payload = json.dumps(statement()).encode()
    b = dump(raw_bundle(payload, [key_b], hint=key_a.key_id))
    _reject(b, [key_a], "no signature by a trusted key")
    assert verify_statement(b, [key_b.public], allowed_predicate_types=ALLOWED).signer_key_id == key_b.key_id
    assert verify_statement(b, [key_a.public, key_b.public], allowed_predicate_types=ALLOWED).signer_key_id == (
        key_b.key_id
    )


def test_signature_keyid_is_ignored(key_a: SigningKey, key_b: SigningKey) -> None:
    payload = json.dumps(statement()).encode()
    b = dump(raw_bundle(payload, [key_b], keyid=key_a.key_id))
    _reject(b, [key_a], "no signature by a trusted key")
    assert verify_statement(b, [key_b.public], allowed_predicate_types=ALLOWED).signer_key_id == key_b.key_id


def test_different_key(key_a: SigningKey, key_b: SigningKey) -> None:
    _reject(_sign(key_a), [key_b], r"no signature by a trusted key \(1 signature\(s\) checked against 1")


def test_no_trusted_keys(key_a: SigningKey) -> None:
    with pytest.raises(SignatureError, match="no trusted keys"):
        verify_statement(_sign(key_a), [], allowed_predicate_types=ALLOWED)


# --- tampering ------------------------------------------------------------------------------------------------------


def test_tampered_payload(key_a: SigningKey) -> None:
    doc = _doc(_sign(key_a))
    st = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    st["subject"][0]["digest"]["sha256"] = "ee" * 32
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(st).encode()).decode()
    _reject(dump(doc), [key_a], "no signature by a trusted key")


def test_tampered_predicate(key_a: SigningKey) -> None:
    doc = _doc(_sign(key_a))
    payload = base64.b64decode(doc["dsseEnvelope"]["payload"]).replace(b'"z":1', b'"z":2')
    doc["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    _reject(dump(doc), [key_a], "no signature by a trusted key")


@pytest.mark.parametrize("index", [0, 10, -1])
def test_flipped_signature_byte(key_a: SigningKey, index: int) -> None:
    doc = _doc(_sign(key_a))
    sig = bytearray(base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[index] ^= 0x01
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    _reject(dump(doc), [key_a], "no signature by a trusted key")


def test_payload_type_swapped_after_signing(key_a: SigningKey) -> None:
    """PAE binds the payload type: changing it is both a wrong type and a broken signature."""
    doc = _doc(_sign(key_a))
    doc["dsseEnvelope"]["payloadType"] = "application/json"
    _reject(dump(doc), [key_a], "wrong DSSE payloadType 'application/json'")


# --- malformed bundles ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "match"),
    [
        ("not_json", b"{not json", "the document is not valid JSON"),
        ("not_utf8", b"\xff\xfe\x00", "the document is not UTF-8"),
        ("json_array", b"[]", "the document is not a JSON object"),
        ("json_string", b'"bundle"', "the document is not a JSON object"),
        ("empty", b"", "the document is not valid JSON"),
    ],
)
def test_malformed_json(key_a: SigningKey, name: str, data: bytes, match: str) -> None:
    _reject(data, [key_a], f"malformed Sigstore bundle: {match}")


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle.v0.4+json",
        "application/json",
        None,
    ],
)
def test_wrong_media_type(key_a: SigningKey, media_type: str | None) -> None:
    doc = _doc(_sign(key_a))
    if media_type is None:
        del doc["mediaType"]
    else:
        doc["mediaType"] = media_type
    _reject(dump(doc), [key_a], "wrong Sigstore bundle mediaType")


def test_message_signature_bundle_is_not_dsse(key_a: SigningKey) -> None:
    doc = _doc(_sign(key_a))
    del doc["dsseEnvelope"]
    doc["messageSignature"] = {
        "messageDigest": {"algorithm": "SHA2_256", "digest": base64.b64encode(b"\0" * 32).decode()},
        "signature": base64.b64encode(b"sig").decode(),
    }
    _reject(dump(doc), [key_a], "not a DSSE bundle: it holds a messageSignature")


def test_no_content(key_a: SigningKey) -> None:
    doc = _doc(_sign(key_a))
    del doc["dsseEnvelope"]
    _reject(dump(doc), [key_a], "not a DSSE bundle: it holds no dsseEnvelope")


def test_wrong_payload_type_even_if_signed(key_a: SigningKey) -> None:
    b = dump(raw_bundle(json.dumps(statement()).encode(), [key_a], payload_type="application/vnd.cncf.notary"))
    _reject(b, [key_a], "wrong DSSE payloadType")


def test_payload_not_base64(key_a: SigningKey) -> None:
    doc = _doc(_sign(key_a))
    doc["dsseEnvelope"]["payload"] = "!!!not base64!!!"
    _reject(dump(doc), [key_a], r"dsseEnvelope\.payload is not valid base64")


def test_signature_not_base64(key_a: SigningKey) -> None:
    doc = _doc(_sign(key_a))
    doc["dsseEnvelope"]["signatures"][0]["sig"] = "%%%"
    _reject(dump(doc), [key_a], r"dsseEnvelope\.signatures\[0\]\.sig is not valid base64")


def test_no_signatures(key_a: SigningKey) -> None:
    doc = _doc(_sign(key_a))
    doc["dsseEnvelope"]["signatures"] = []
    _reject(dump(doc), [key_a], "has no signature")


def test_unknown_bundle_field(key_a: SigningKey) -> None:
    doc = _doc(_sign(key_a))
    doc["verificationMaterial"]["colour"] = "blue"
    _reject(dump(doc), [key_a], r"malformed Sigstore bundle: verificationMaterial\.colour")


def test_missing_verification_material(key_a: SigningKey) -> None:
    doc = _doc(_sign(key_a))
    del doc["verificationMaterial"]
    _reject(dump(doc), [key_a], r"malformed Sigstore bundle: verificationMaterial")


# --- malformed statements (correctly signed: the statement itself is wrong) -----------------------------------------


def test_payload_not_json_but_signed(key_a: SigningKey) -> None:
    _reject(dump(raw_bundle(b"hello", [key_a])), [key_a], "statement malformed: the signed payload is not valid JSON")


def test_payload_json_array_but_signed(key_a: SigningKey) -> None:
    _reject(dump(raw_bundle(b"[1]", [key_a])), [key_a], "statement malformed: the signed payload is not a JSON object")


@pytest.mark.parametrize(
    "type_", ["https://in-toto.io/Statement/v0.1", "https://in-toto.io/Statement/v1 ", "", "STATEMENT"]
)
def test_wrong_statement_type(key_a: SigningKey, type_: str) -> None:
    _reject(signed_statement(statement(type_=type_), key_a), [key_a], "wrong statement _type")


def test_missing_statement_type(key_a: SigningKey) -> None:
    doc = statement()
    del doc["_type"]
    _reject(signed_statement(doc, key_a), [key_a], "wrong statement _type None")


def test_predicate_type_not_allowed(key_a: SigningKey) -> None:
    _reject(
        signed_statement(statement(predicateType="https://slsa.dev/provenance/v1"), key_a),
        [key_a],
        r"predicate type 'https://slsa.dev/provenance/v1' is not allowed here \(allowed: https://gapseal.dev/test/v1\)",
    )


def test_no_predicate_type_allowed(key_a: SigningKey) -> None:
    _reject(_sign(key_a), [key_a], r"is not allowed here \(allowed: \(none\)\)", allowed=set())


@pytest.mark.parametrize(
    ("subject", "match"),
    [
        ({"name": "a", "digest": {"sha512": "ab" * 64}}, "digest must be exactly one sha256, got sha512"),
        ({"name": "a", "digest": {"sha256": DIGEST, "sha512": "ab" * 64}}, "exactly one sha256, got sha256, sha512"),
        ({"name": "a", "digest": {"sha256": DIGEST.upper()}}, "not 64 lower-case hex"),
        ({"name": "a", "digest": {"sha256": DIGEST[:-2]}}, "not 64 lower-case hex"),
        ({"name": "a", "digest": {"sha256": "zz" * 32}}, "not 64 lower-case hex"),
        ({"name": "a", "digest": {"sha256": "sha256:" + DIGEST}}, "not 64 lower-case hex"),
    ],
)
def test_subject_digest_not_sha256_hex(key_a: SigningKey, subject: dict[str, Any], match: str) -> None:
    _reject(signed_statement(statement(subject=[subject]), key_a), [key_a], match)


def test_subject_without_name(key_a: SigningKey) -> None:
    _reject(
        signed_statement(statement(subject=[{"digest": {"sha256": DIGEST}}]), key_a), [key_a], "statement malformed"
    )


def test_duplicate_subject_names(key_a: SigningKey) -> None:
    subjects = [{"name": "a", "digest": {"sha256": DIGEST}}, {"name": "a", "digest": {"sha256": "cd" * 32}}]
    _reject(signed_statement(statement(subject=subjects), key_a), [key_a], "duplicate subject name 'a'")


def test_no_subjects(key_a: SigningKey) -> None:
    _reject(signed_statement(statement(subject=[]), key_a), [key_a], "statement malformed")


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("subject", None, "subject must be a non-empty list of objects"),
        ("subject", {"name": "a"}, "subject must be a non-empty list of objects"),
        ("subject", ["a"], "subject must be a non-empty list of objects"),
        ("predicateType", 7, "predicateType must be a string"),
        ("predicateType", None, "predicateType must be a string"),
    ],
)
def test_statement_shape(key_a: SigningKey, field: str, value: object, match: str) -> None:
    """The shape checks verification makes itself (it does not import sigstore's statement model)."""
    doc = statement()
    if value is None:
        del doc[field]
    else:
        doc[field] = value
    _reject(signed_statement(doc, key_a), [key_a], f"statement malformed: {match}")


def test_missing_predicate(key_a: SigningKey) -> None:
    doc = statement()
    del doc["predicate"]
    _reject(signed_statement(doc, key_a), [key_a], "predicate is missing or not an object")


def test_unknown_statement_field(key_a: SigningKey) -> None:
    doc = statement()
    doc["extra"] = 1
    _reject(signed_statement(doc, key_a), [key_a], "unknown field")


# --- second signature -----------------------------------------------------------------------------------------------


def test_add_signature_cosigns_the_same_payload(key_a: SigningKey, key_b: SigningKey) -> None:
    single = _sign(key_a)
    double = add_signature(single, key_b)
    assert _payload(double) == _payload(single)
    assert len(_doc(double)["dsseEnvelope"]["signatures"]) == 2
    assert verify_statement(double, [key_a.public], allowed_predicate_types=ALLOWED).signer_key_id == key_a.key_id
    assert verify_statement(double, [key_b.public], allowed_predicate_types=ALLOWED).signer_key_id == key_b.key_id


def test_cosigned_bundle_verifies_if_any_signature_is_trusted(key_a: SigningKey, key_b: SigningKey) -> None:
    doc = _doc(add_signature(_sign(key_a), key_b))
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(b"\x30\x00").decode()
    assert verify_statement(dump(doc), [key_b.public], allowed_predicate_types=ALLOWED).signer_key_id == key_b.key_id
    _reject(dump(doc), [key_a], r"no signature by a trusted key \(2 signature\(s\)")


def test_cosigned_bundle_with_tampered_payload_fails_for_both(key_a: SigningKey, key_b: SigningKey) -> None:
    doc = _doc(add_signature(_sign(key_a), key_b))
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement()).encode()).decode()
    _reject(dump(doc), [key_a, key_b], "no signature by a trusted key")


def test_add_signature_twice_with_the_same_key(key_a: SigningKey) -> None:
    with pytest.raises(SigningError, match="already signed by key"):
        add_signature(_sign(key_a), key_a)


def test_add_signature_to_garbage(key_a: SigningKey) -> None:
    with pytest.raises(SigningError, match="cannot co-sign: malformed Sigstore bundle"):
        add_signature(b"nope", key_a)


# --- signing input errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subjects", "match"),
    [
        ([], "at least one subject"),
        ([Subject("", DIGEST)], "needs a name"),
        ([Subject("a", DIGEST), Subject("a", DIGEST)], "duplicate subject name 'a'"),
        ([Subject("a", "sha256:" + DIGEST)], "64 lower-case hex"),
        ([Subject("a", DIGEST.upper())], "64 lower-case hex"),
    ],
)
def test_sign_rejects_bad_subjects(key_a: SigningKey, subjects: list[Subject], match: str) -> None:
    with pytest.raises(SigningError, match=match):
        sign_statement(subjects, PREDICATE, {}, key_a)


@pytest.mark.parametrize("predicate", [{"x": {1, 2}}, {"x": float("nan")}, {"x": b"bytes"}])
def test_sign_rejects_a_predicate_that_is_not_json(key_a: SigningKey, predicate: dict[str, Any]) -> None:
    with pytest.raises(SigningError, match="not JSON-serialisable"):
        sign_statement(SUBJECTS, PREDICATE, predicate, key_a)


def test_sign_rejects_an_empty_predicate_type(key_a: SigningKey) -> None:
    with pytest.raises(SigningError, match="predicate type"):
        sign_statement(SUBJECTS, "", {}, key_a)


# --- JSON that parsers read differently -----------------------------------------------------------------------------


def test_duplicate_key_in_the_bundle(key_a: SigningKey) -> None:
    text = _sign(key_a).decode()
    dup = text.replace('"mediaType":', '"mediaType":"application/json","mediaType":', 1)
    _reject(dup.encode(), [key_a], "not valid JSON: duplicate key 'mediaType'")


def test_duplicate_key_in_the_signed_statement(key_a: SigningKey) -> None:
    payload = (
        b'{"_type":"https://in-toto.io/Statement/v1","predicate":{},"predicateType":"https://gapseal.dev/test/v1",'
        b'"predicateType":"https://other/v1","subject":[{"digest":{"sha256":"' + DIGEST.encode() + b'"},"name":"a"}]}'
    )
    _reject(dump(raw_bundle(payload, [key_a])), [key_a], "statement malformed.*duplicate key 'predicateType'")


def test_duplicate_subject_digest_key_in_the_signed_statement(key_a: SigningKey) -> None:
    payload = (
        b'{"_type":"https://in-toto.io/Statement/v1","predicate":{},"predicateType":"https://gapseal.dev/test/v1",'
        b'"subject":[{"digest":{"sha256":"' + DIGEST.encode() + b'","sha256":"' + b"cd" * 32 + b'"},"name":"a"}]}'
    )
    _reject(dump(raw_bundle(payload, [key_a])), [key_a], "duplicate key 'sha256'")


def test_nan_in_the_signed_statement(key_a: SigningKey) -> None:
    payload = json.dumps(statement(predicate={"x": float("nan")})).encode()
    assert b"NaN" in payload
    _reject(dump(raw_bundle(payload, [key_a])), [key_a], "non-standard JSON constant NaN")


def test_same_input_and_key_give_the_same_bundle_bytes(key_a: SigningKey, key_b: SigningKey) -> None:
    """RFC 6979 signatures: bundles reproduce byte for byte; another key still gives another signature."""
    assert _sign(key_a) == _sign(key_a)
    assert _sign(key_a) != _sign(key_b)
    assert _sign(key_a, {"z": 2}) != _sign(key_a)
