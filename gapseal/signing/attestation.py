"""Signed in-toto statements: an in-toto Statement v1 in a DSSE envelope inside a Sigstore bundle v0.3.

The statement and the bundle are built and parsed through the data models the ``sigstore`` package brings
(``sigstore.dsse`` for the statement and its subjects, ``sigstore_models`` for the envelope and the bundle), so the
bytes are what cosign and ``@sigstore/verify`` read. The statement payload is canonical JSON (sorted keys, no
whitespace); the signature covers the DSSE pre-authentication encoding (PAE) of that payload.

Verification fails closed. It never trusts the bundle's key hint or a signature's ``keyid``: every trusted key is
tried against every signature, and only then is the payload parsed.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError
from sigstore_models.bundle.v1 import Bundle, VerificationMaterial
from sigstore_models.common.v1 import PublicKeyIdentifier
from sigstore_models.intoto import Envelope
from sigstore_models.intoto import Signature as EnvelopeSignature

from gapseal.canonical import canonical_json
from gapseal.errors import SignatureError, SigningError
from gapseal.jsonlimits import MAX_DOCUMENT, json_problem
from gapseal.signing.keys import SigningKey, VerifyingKey

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUNDLE_MEDIA_TYPE: Final = "application/vnd.dev.sigstore.bundle.v0.3+json"
# The same version spelled the older way; both are Sigstore bundle v0.3.
_ACCEPTED_MEDIA_TYPES = frozenset({BUNDLE_MEDIA_TYPE, "application/vnd.dev.sigstore.bundle+json;version=0.3"})

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class MalformedBundleError(SignatureError):
    """The document is not a well-formed Sigstore bundle v0.3 with a DSSE envelope: not signature material at all.

    A verifier that must tell "not a signature" (fatal) from "a signature it cannot rely on" (reportable) catches
    this subclass first; everything else ``verify_statement`` raises is a ``SignatureError``.
    """


@dataclass(frozen=True)
class Subject:
    """One subject of a statement: a name and the lower-case hex SHA-256 of its content."""

    name: str
    sha256: str


@dataclass(frozen=True)
class VerifiedStatement:
    """A statement whose signature verified against a trusted key, and its parsed contents."""

    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: dict[str, Any]
    signer_key_id: str
    payload: bytes = field(repr=False)


MAX_SIGSTORE_BUNDLE = MAX_DOCUMENT
"""A statement lists every file of a bundle (about 130 bytes each, base64 in the envelope): the document cap."""


def _strict_json(data: bytes) -> Any:
    """Parse untrusted JSON within the size and depth caps, refusing duplicate keys and NaN/Infinity."""
    document, problem = json_problem(data, max_bytes=MAX_SIGSTORE_BUNDLE)
    if problem is not None:
        raise ValueError(problem)
    return document


def pae(payload_type: str, payload: bytes) -> bytes:
    """Return the DSSE v1 pre-authentication encoding of ``payload``.

    ``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`` with lengths in ASCII decimal of the UTF-8 byte counts.
    """
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def _statement_payload(subjects: Sequence[Subject], predicate_type: str, predicate: Mapping[str, Any]) -> bytes:
    if not subjects:
        raise SigningError("a statement needs at least one subject")
    if not predicate_type:
        raise SigningError("a statement needs a predicate type")
    from sigstore import dsse
    from sigstore.errors import Error as SigstoreError

    seen: set[str] = set()
    models: list[dsse.Subject] = []
    for s in subjects:
        if not s.name:
            raise SigningError("a subject needs a name")
        if s.name in seen:
            raise SigningError(f"duplicate subject name {s.name!r}")
        seen.add(s.name)
        if not _SHA256_HEX.fullmatch(s.sha256):
            raise SigningError(f"subject {s.name!r}: sha256 must be 64 lower-case hex characters, got {s.sha256!r}")
        models.append(dsse.Subject(name=s.name, digest=dsse.DigestSet({"sha256": s.sha256})))
    document = {
        "_type": STATEMENT_TYPE,
        "subject": [m.model_dump(mode="json") for m in models],
        "predicateType": predicate_type,
        "predicate": dict(predicate),
    }
    try:
        payload = canonical_json(document)
    except (TypeError, ValueError) as e:
        raise SigningError(f"the predicate is not JSON-serialisable: {e}") from e
    try:
        dsse.Statement(payload)  # the sigstore model checks it is a well-formed in-toto Statement v1
    except SigstoreError as e:
        raise SigningError(f"not a valid in-toto statement: {e}") from e
    return payload


def _bundle_bytes(bundle: Bundle) -> bytes:
    return canonical_json(bundle.to_dict())


def sign_statement(
    subjects: Sequence[Subject], predicate_type: str, predicate: Mapping[str, Any], key: SigningKey
) -> bytes:
    """Sign an in-toto Statement v1 over ``subjects`` and return it as Sigstore bundle v0.3 JSON bytes.

    The statement payload is canonical JSON and the signature uses RFC 6979 nonces, so the same input and key always
    give the same bundle bytes. The bundle carries the key id as an unauthenticated
    hint (``verificationMaterial.publicKey.hint``), no DSSE ``keyid`` and no transparency-log entry.
    """
    payload = _statement_payload(subjects, predicate_type, predicate)
    signature = key.sign(pae(PAYLOAD_TYPE, payload))
    # sigstore_models' bytes fields take base64 text on input and hold raw bytes.
    envelope = Envelope(
        payload=base64.b64encode(payload),
        payload_type=PAYLOAD_TYPE,
        # No ``keyid``: go-securesystemslib (inside cosign) skips a verifier whose own key id, an SSH fingerprint,
        # differs from a non-empty ``keyid``, so any value but "" would make cosign reject the signature.
        signatures=[EnvelopeSignature(sig=base64.b64encode(signature))],
    )
    bundle = Bundle(
        media_type=BUNDLE_MEDIA_TYPE,
        verification_material=VerificationMaterial(public_key=PublicKeyIdentifier(hint=key.key_id), tlog_entries=[]),
        dsse_envelope=envelope,
    )
    return _bundle_bytes(bundle)


def _strict_b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedBundleError(f"malformed Sigstore bundle: {what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise MalformedBundleError(f"malformed Sigstore bundle: {what} is not valid base64") from e


def _parse_bundle(bundle_bytes: bytes) -> tuple[Bundle, Envelope]:
    """Parse and structurally check a Sigstore bundle holding a DSSE envelope; no signature is checked here."""
    try:
        raw = _strict_json(bundle_bytes)
    except (UnicodeDecodeError, ValueError) as e:
        raise MalformedBundleError(f"malformed Sigstore bundle: the document {e}") from e
    if not isinstance(raw, dict):
        raise MalformedBundleError("malformed Sigstore bundle: the document is not a JSON object")
    media_type = raw.get("mediaType")
    if media_type not in _ACCEPTED_MEDIA_TYPES:
        raise MalformedBundleError(f"wrong Sigstore bundle mediaType {media_type!r}: expected {BUNDLE_MEDIA_TYPE!r}")
    raw_envelope = raw.get("dsseEnvelope")
    if raw_envelope is None:
        content = "a messageSignature" if "messageSignature" in raw else "no dsseEnvelope"
        raise MalformedBundleError(f"not a DSSE bundle: it holds {content}")
    if not isinstance(raw_envelope, dict):
        raise MalformedBundleError("malformed Sigstore bundle: dsseEnvelope is not an object")
    _strict_b64(raw_envelope.get("payload"), "dsseEnvelope.payload")
    raw_signatures = raw_envelope.get("signatures")
    if isinstance(raw_signatures, list):
        for i, s in enumerate(raw_signatures):
            _strict_b64(s.get("sig") if isinstance(s, dict) else None, f"dsseEnvelope.signatures[{i}].sig")
    try:
        bundle = Bundle.from_dict(raw)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise MalformedBundleError(f"malformed Sigstore bundle: {loc}: {first['msg']}") from e
    envelope = bundle.dsse_envelope
    if envelope is None:  # pragma: no cover - checked on the raw document above
        raise MalformedBundleError("not a DSSE bundle")
    if envelope.payload_type != PAYLOAD_TYPE:
        raise MalformedBundleError(f"wrong DSSE payloadType {envelope.payload_type!r}: expected {PAYLOAD_TYPE!r}")
    if not envelope.signatures:
        raise MalformedBundleError("the DSSE envelope has no signature")
    return bundle, envelope


def _parse_statement(
    payload: bytes, allowed_predicate_types: Collection[str]
) -> tuple[tuple[Subject, ...], str, dict[str, Any]]:
    try:
        doc = _strict_json(payload)
    except (UnicodeDecodeError, ValueError) as e:
        raise SignatureError(f"statement malformed: the signed payload {e}") from e
    if not isinstance(doc, dict):
        raise SignatureError("statement malformed: the signed payload is not a JSON object")
    if doc.get("_type") != STATEMENT_TYPE:
        raise SignatureError(f"wrong statement _type {doc.get('_type')!r}: expected {STATEMENT_TYPE!r}")
    extra = sorted(set(doc) - {"_type", "subject", "predicateType", "predicate"})
    if extra:
        raise SignatureError(f"statement malformed: unknown field(s) {', '.join(extra)}")
    subjects_doc = doc.get("subject")
    if not isinstance(subjects_doc, list) or not subjects_doc or not all(isinstance(x, dict) for x in subjects_doc):
        raise SignatureError("statement malformed: subject must be a non-empty list of objects")
    predicate_type = doc.get("predicateType")
    if not isinstance(predicate_type, str):
        raise SignatureError("statement malformed: predicateType must be a string")
    if predicate_type not in allowed_predicate_types:
        allowed = ", ".join(sorted(allowed_predicate_types)) or "(none)"
        raise SignatureError(f"predicate type {predicate_type!r} is not allowed here (allowed: {allowed})")
    predicate = doc.get("predicate")
    if not isinstance(predicate, dict):
        raise SignatureError("statement malformed: predicate is missing or not an object")
    subjects: list[Subject] = []
    seen: set[str] = set()
    for i, s in enumerate(doc["subject"]):
        name = s.get("name")
        if not isinstance(name, str) or not name:
            raise SignatureError(f"statement malformed: subject[{i}] has no name")
        if name in seen:
            raise SignatureError(f"statement malformed: duplicate subject name {name!r}")
        seen.add(name)
        digest = s.get("digest")
        if not isinstance(digest, dict) or set(digest) != {"sha256"}:
            algorithms = ", ".join(sorted(digest)) if isinstance(digest, dict) else "none"
            raise SignatureError(f"subject {name!r}: digest must be exactly one sha256, got {algorithms}")
        value = digest["sha256"]
        if not isinstance(value, str) or not _SHA256_HEX.fullmatch(value):
            raise SignatureError(f"subject {name!r}: sha256 digest is not 64 lower-case hex characters: {value!r}")
        subjects.append(Subject(name=name, sha256=value))
    return tuple(subjects), predicate_type, predicate


def verify_statement(
    bundle_bytes: bytes, trusted_keys: Sequence[VerifyingKey], *, allowed_predicate_types: Collection[str]
) -> VerifiedStatement:
    """Verify a Sigstore bundle v0.3 holding a DSSE in-toto statement against ``trusted_keys``; fail closed.

    The bundle verifies when any of its signatures is by any trusted key (the key hint and ``keyid`` fields are
    ignored), and its statement is a well-formed in-toto Statement v1 with an allowed predicate type and sha256
    subject digests. Raises ``SignatureError`` naming what is wrong otherwise.
    """
    if not trusted_keys:
        raise SignatureError("no trusted keys were given: nothing can verify", hint="pass --key or --trust")
    _, envelope = _parse_bundle(bundle_bytes)
    message = pae(envelope.payload_type, envelope.payload)
    signer: VerifyingKey | None = None
    for signature in envelope.signatures:
        signer = next((k for k in trusted_keys if k.verify(signature.sig, message)), None)
        if signer is not None:
            break
    if signer is None:
        ids = ", ".join(k.key_id[:16] for k in trusted_keys)
        raise SignatureError(
            f"no signature by a trusted key ({len(envelope.signatures)} signature(s) checked against "
            f"{len(trusted_keys)} trusted key(s): {ids})",
            hint="the document was changed after signing, or signed by a key you do not trust",
        )
    subjects, predicate_type, predicate = _parse_statement(envelope.payload, allowed_predicate_types)
    return VerifiedStatement(
        subjects=subjects,
        predicate_type=predicate_type,
        predicate=predicate,
        signer_key_id=signer.key_id,
        payload=envelope.payload,
    )


def _copy_signature(signature: EnvelopeSignature) -> EnvelopeSignature:
    if signature.keyid is None:
        return EnvelopeSignature(sig=base64.b64encode(signature.sig))
    return EnvelopeSignature(sig=base64.b64encode(signature.sig), keyid=signature.keyid)


def add_signature(bundle_bytes: bytes, key: SigningKey) -> bytes:
    """Return the bundle with a second DSSE signature by ``key`` over the same payload.

    The existing signatures are kept and not checked (a co-signer need not trust the first signer); signing twice
    with the same key is refused. Note that ``@sigstore/verify`` and cosign accept only single-signature envelopes,
    so a co-signed bundle verifies with gapseal alone.
    """
    try:
        bundle, envelope = _parse_bundle(bundle_bytes)
    except SignatureError as e:
        raise SigningError(f"cannot co-sign: {e.message}") from e
    message = pae(envelope.payload_type, envelope.payload)
    if any(key.public.verify(s.sig, message) for s in envelope.signatures):
        raise SigningError(f"the bundle is already signed by key {key.key_id}")
    new_envelope = Envelope(
        payload=base64.b64encode(envelope.payload),
        payload_type=envelope.payload_type,
        signatures=[
            *(_copy_signature(s) for s in envelope.signatures),
            EnvelopeSignature(sig=base64.b64encode(key.sign(message))),
        ],
    )
    cosigned = Bundle(
        media_type=bundle.media_type,
        verification_material=bundle.verification_material,
        dsse_envelope=new_envelope,
    )
    return _bundle_bytes(cosigned)
