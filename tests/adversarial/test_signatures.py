"""Signatures: only one by a trusted key over exactly this bundle counts, whatever order they are listed in.

Forged, foreign and untrusted signatures are stored as genuine-looking referrers of the bundle manifest. A well-formed
signature that cannot be relied on is reported (position, key id, why) in text and ``--json`` and never hides the
genuine one; anything that is not a well-formed Sigstore bundle, or a bundle with no signature to rely on, fails.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gapseal.bundler import layout as oci
from gapseal.canonical import canonical_json
from gapseal.signing.attestation import add_signature
from tests.adversarial.conftest import Gapseal, refused
from tests.adversarial.forge import Layout, read_statement, set_signatures, sign_payload, statement_payload
from tests.bundles import KeyPair, make_bundle, make_keys


@dataclass(frozen=True)
class World:
    """The bundle under test, its genuine signature, a trusted signature of another bundle, an untrusted key."""

    layout: Layout
    keys: KeyPair
    genuine: bytes
    other_bundle: bytes
    mallory: KeyPair

    def statement(self) -> tuple[list[tuple[str, str]], dict[str, Any]]:
        doc = read_statement(self.genuine)
        return [(s["name"], s["digest"]["sha256"]) for s in doc["subject"]], doc["predicate"]

    def signed(
        self,
        *,
        key: KeyPair | None = None,
        subjects: Callable[[list[tuple[str, str]]], list[tuple[str, str]]] = lambda s: s,
        predicate: Callable[[dict[str, Any]], dict[str, Any]] = lambda p: p,
        predicate_type: str = oci.BUNDLE_PREDICATE_TYPE,
    ) -> bytes:
        """A Sigstore bundle over this bundle's statement, edited, signed by ``key`` (default: the trusted one)."""
        subs, pred = self.statement()
        payload = statement_payload(subjects(subs), predicate(dict(pred)), predicate_type)
        return sign_payload(payload, (key or self.keys).private)


@pytest.fixture
def world(tmp_path: Path, bundle: Path, keys: KeyPair) -> World:
    layout = Layout(bundle)
    other = Layout(make_bundle(tmp_path / "other", keys, version="2.0.0").path)
    return World(
        layout,
        keys,
        layout.blob(layout.signature_blob_digests()[0]),
        other.blob(other.signature_blob_digests()[0]),
        make_keys(tmp_path / "mallory", "mallory"),
    )


def _edit_json(data: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    doc = json.loads(data)
    edit(doc)
    return canonical_json(doc)


def _verify(world: World, gapseal: Gapseal, *args: object) -> Any:
    return gapseal("bundle", "verify", world.layout.root, "--key", world.keys.public_path, *args)


# --- accepted: the genuine signature is found wherever it is, the others are reported -----------------------------


def _other_bundle(w: World) -> bytes:
    return w.other_bundle


def _untrusted(w: World) -> bytes:
    return w.signed(key=w.mallory)


def _wrong_predicate_type(w: World) -> bytes:
    return w.signed(predicate_type="https://slsa.dev/provenance/v1")


def _extra_subject(w: World) -> bytes:
    return w.signed(subjects=lambda s: [*s, ("files/docs/install.sh", "ab" * 32)])


def _other_version(w: World) -> bytes:
    return w.signed(predicate=lambda p: {**p, "version": "9.9.9"})


ALONGSIDE: dict[str, tuple[Callable[[World], bytes], str, bool]] = {
    # (the extra signature, the reason reported, whether its key is a verified trusted key)
    "trusted-signature-of-another-bundle": (_other_bundle, "for another bundle manifest", True),
    "untrusted-key": (_untrusted, "no signature by a trusted key", False),
    "trusted-key-wrong-predicate-type": (_wrong_predicate_type, "is not allowed here", False),
    "trusted-key-extra-subject": (_extra_subject, "subjects do not match", True),
    "trusted-key-other-version-in-predicate": (_other_version, "predicate does not match", True),
}


@pytest.mark.parametrize("first", [True, False], ids=["listed-first", "listed-last"])
@pytest.mark.parametrize("case", sorted(ALONGSIDE))
def test_the_genuine_signature_is_found_in_any_order_and_the_other_is_reported(
    case: str, first: bool, world: World, gapseal: Gapseal
) -> None:
    make, reason, verified_key = ALONGSIDE[case]
    extra = make(world)
    set_signatures(world.layout, [extra, world.genuine] if first else [world.genuine, extra])
    position = 1 if first else 2

    text = _verify(world, gapseal)
    assert text.code == 0, text.err
    assert f"not relied on: signature #{position}" in text.out
    assert reason in " ".join(text.out.split())

    doc = json.loads(_verify(world, gapseal, "--json").out)
    assert doc["signer_key_id"] == world.keys.public.key_id
    [report] = doc["ignored_signatures"]
    assert report["position"] == position
    assert reason in report["reason"]
    assert report["key_verified"] is verified_key
    expected_key = world.mallory.public.key_id if case == "untrusted-key" else world.keys.public.key_id
    assert report["key_id"] == expected_key


def test_a_co_signed_envelope_verifies_with_either_key(world: World, gapseal: Gapseal) -> None:
    set_signatures(world.layout, [add_signature(world.genuine, world.mallory.private)])
    result = _verify(world, gapseal, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["ignored_signatures"] == []


# --- refused --------------------------------------------------------------------------------------------------------


def _lying_hint(w: World) -> bytes:
    return _edit_json(
        w.signed(key=w.mallory),
        lambda d: d["verificationMaterial"]["publicKey"].update(hint=w.keys.public.key_id),
    )


def _lying_keyid(w: World) -> bytes:
    return _edit_json(
        w.signed(key=w.mallory), lambda d: d["dsseEnvelope"]["signatures"][0].update(keyid=w.keys.public.key_id)
    )


def _payload_edited_after_signing(w: World) -> bytes:
    def edit(d: dict[str, Any]) -> None:
        statement = json.loads(base64.b64decode(d["dsseEnvelope"]["payload"]))
        statement["predicate"]["version"] = "99.0.0"
        d["dsseEnvelope"]["payload"] = base64.b64encode(canonical_json(statement)).decode()

    return _edit_json(w.genuine, edit)


def _signature_bit_flipped(w: World) -> bytes:
    def edit(d: dict[str, Any]) -> None:
        sig = bytearray(base64.b64decode(d["dsseEnvelope"]["signatures"][0]["sig"]))
        sig[-1] ^= 1
        d["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()

    return _edit_json(w.genuine, edit)


def _duplicate_subject(w: World) -> bytes:
    return w.signed(subjects=lambda s: [*s, s[-1]])


def _missing_subject(w: World) -> bytes:
    return w.signed(subjects=lambda s: [x for x in s if x[0] != "files/docs/README.md"])


def _other_manifest_digest_in_predicate(w: World) -> bytes:
    return w.signed(predicate=lambda p: {**p, "manifestDigest": "sha256:" + "00" * 32})


def _other_created_in_predicate(w: World) -> bytes:
    return w.signed(predicate=lambda p: {**p, "created": "2025-01-01T00:00:00Z"})


def _sha512_subject(w: World) -> bytes:
    subs, pred = w.statement()
    doc = json.loads(statement_payload(subs, pred))
    doc["subject"][2]["digest"] = {"sha512": "00" * 64}
    return sign_payload(canonical_json(doc), w.keys.private)


def _unknown_statement_field(w: World) -> bytes:
    subs, pred = w.statement()
    doc = json.loads(statement_payload(subs, pred))
    doc["run"] = "install.sh"
    return sign_payload(canonical_json(doc), w.keys.private)


def _payload_not_json(w: World) -> bytes:
    return sign_payload(b"#!/bin/sh\n", w.keys.private)


def _message_signature(w: World) -> bytes:
    def edit(d: dict[str, Any]) -> None:
        del d["dsseEnvelope"]
        d["messageSignature"] = {"messageDigest": {"algorithm": "SHA2_256", "digest": "AA=="}, "signature": "AA=="}

    return _edit_json(w.genuine, edit)


def _wrong_bundle_media_type(w: World) -> bytes:
    return _edit_json(w.genuine, lambda d: d.update(mediaType="application/vnd.dev.sigstore.bundle+json;version=0.1"))


def _wrong_payload_type(w: World) -> bytes:
    return _edit_json(w.genuine, lambda d: d["dsseEnvelope"].update(payloadType="text/plain"))


def _no_signatures_in_envelope(w: World) -> bytes:
    return _edit_json(w.genuine, lambda d: d["dsseEnvelope"].update(signatures=[]))


def _duplicate_key_in_bundle(w: World) -> bytes:
    return w.genuine.replace(b'{"dsseEnvelope"', b'{"mediaType":"x","dsseEnvelope"', 1)


def _not_json(w: World) -> bytes:
    return b"#!/bin/sh\nrm -rf /\n"


REFUSED: dict[str, tuple[Callable[[World], list[bytes]], tuple[str, ...]]] = {
    "only-a-trusted-signature-of-another-bundle": (
        lambda w: [w.other_bundle],
        ("no valid signature by a trusted key", "for another bundle manifest"),
    ),
    "only-an-untrusted-key": (lambda w: [_untrusted(w)], ("no valid signature by a trusted key", "key ")),
    "untrusted-key-with-the-trusted-key-hint": (lambda w: [_lying_hint(w)], ("no signature by a trusted",)),
    "untrusted-key-with-the-trusted-keyid": (lambda w: [_lying_keyid(w)], ("no signature by a trusted key",)),
    "another-bundle-and-an-untrusted-key": (
        lambda w: [w.other_bundle, _untrusted(w)],
        ("signature #1", "another bundle manifest", "signature #2", "no signature by a trusted key"),
    ),
    "payload-edited-after-signing": (lambda w: [_payload_edited_after_signing(w)], ("no signature by a trusted key",)),
    "signature-bit-flipped": (lambda w: [_signature_bit_flipped(w)], ("no signature by a trusted key",)),
    "predicate-type-not-allowed": (lambda w: [_wrong_predicate_type(w)], ("predicate type", "is not allowed here")),
    "duplicate-subject": (lambda w: [_duplicate_subject(w)], ("duplicate subject name",)),
    "smuggled-subject": (lambda w: [_extra_subject(w)], ("subjects do not match the bundle's files",)),
    "missing-subject": (lambda w: [_missing_subject(w)], ("subjects do not match the bundle's files",)),
    "predicate-other-version": (lambda w: [_other_version(w)], ("predicate does not match the bundle descriptor",)),
    "predicate-other-manifest-digest": (
        lambda w: [_other_manifest_digest_in_predicate(w)],
        ("predicate does not match",),
    ),
    "predicate-other-created": (lambda w: [_other_created_in_predicate(w)], ("predicate does not match",)),
    "subject-digest-sha512-only": (lambda w: [_sha512_subject(w)], ("digest must be exactly one sha256",)),
    "statement-unknown-field": (lambda w: [_unknown_statement_field(w)], ("unknown field(s) run",)),
    "statement-not-json": (lambda w: [_payload_not_json(w)], ("signed payload is not valid JSON",)),
    "message-signature-not-dsse": (lambda w: [_message_signature(w)], ("well-formed Sigstore", "not a DSSE bundle")),
    "wrong-sigstore-media-type": (lambda w: [_wrong_bundle_media_type(w)], ("well-formed Sigstore", "mediaType")),
    "wrong-dsse-payload-type": (lambda w: [_wrong_payload_type(w)], ("well-formed Sigstore", "payloadType")),
    "envelope-without-signatures": (lambda w: [_no_signatures_in_envelope(w)], ("well-formed Sigstore",)),
    "duplicate-key-in-sigstore-bundle": (lambda w: [_duplicate_key_in_bundle(w)], ("duplicate key 'mediaType'",)),
    "referrer-carrying-a-script": (lambda w: [_not_json(w)], ("well-formed Sigstore", "not valid JSON")),
    "genuine-plus-a-script-referrer": (lambda w: [w.genuine, _not_json(w)], ("signature manifest #2", "well-formed")),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_no_signature_to_rely_on_is_refused(case: str, world: World, gapseal: Gapseal) -> None:
    make, fragments = REFUSED[case]
    set_signatures(world.layout, make(world))
    refused(_verify(world, gapseal), "bundle does not verify", *fragments)


def test_verify_without_a_trusted_key_is_a_usage_error(world: World, gapseal: Gapseal) -> None:
    refused(gapseal("bundle", "verify", world.layout.root), "no trusted key given", code=2)


def test_refusals_are_in_the_json_document_too(world: World, gapseal: Gapseal) -> None:
    set_signatures(world.layout, [world.other_bundle])
    result = _verify(world, gapseal, "--json")
    assert result.code == 1
    doc = json.loads(result.out)
    assert doc["ok"] is False
    assert "for another bundle manifest" in doc["message"]
