"""Helpers that build signed Sigstore bundles by hand, so verification can be fed precisely broken documents.

They use only ``cryptography``, ``json`` and ``base64`` (not gapseal's signer) and sign the DSSE PAE as the DSSE spec
defines it, so a verifier bug cannot be hidden by the same bug in the signer.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from gapseal.signing.keys import SigningKey

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PREDICATE = "https://gapseal.dev/test/v1"
DIGEST = "ab" * 32


def spec_pae(payload_type: str, body: bytes) -> bytes:
    """DSSE v1 PAE written out from the spec: "DSSEv1" SP len(type) SP type SP len(body) SP body."""
    t = payload_type.encode()
    return b"DSSEv1 " + str(len(t)).encode() + b" " + t + b" " + str(len(body)).encode() + b" " + body


def statement(**overrides: Any) -> dict[str, Any]:
    """A valid in-toto Statement v1 document; keyword arguments replace or (with None) remove fields."""
    doc: dict[str, Any] = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": "a.bin", "digest": {"sha256": DIGEST}}],
        "predicateType": PREDICATE,
        "predicate": {"k": "v"},
    }
    for k, v in overrides.items():
        key = "_type" if k == "type_" else k
        if v is None:
            doc.pop(key, None)
        else:
            doc[key] = v
    return doc


def raw_bundle(
    payload: bytes,
    keys: list[SigningKey],
    *,
    payload_type: str = PAYLOAD_TYPE,
    hint: str | None = None,
    keyid: str | None = None,
    media_type: str = MEDIA_TYPE,
) -> dict[str, Any]:
    """A Sigstore bundle dict whose DSSE envelope carries ``payload`` signed by each of ``keys``."""
    message = spec_pae(payload_type, payload)
    signatures = []
    for k in keys:
        sig: dict[str, str] = {"sig": base64.b64encode(k.sign(message)).decode()}
        if keyid is not None:
            sig["keyid"] = keyid
        signatures.append(sig)
    return {
        "mediaType": media_type,
        "verificationMaterial": {"publicKey": {"hint": hint or keys[0].key_id}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": payload_type,
            "signatures": signatures,
        },
    }


def dump(document: Any) -> bytes:
    """JSON bytes of a document."""
    return json.dumps(document).encode()


def signed_statement(doc: dict[str, Any], key: SigningKey) -> bytes:
    """Bundle bytes of ``doc`` (any JSON) signed by ``key``."""
    return dump(raw_bundle(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode(), [key]))
