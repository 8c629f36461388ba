"""Signing: ECDSA P-256 keys, signed in-toto statements in Sigstore bundles, and trust configuration.

The root of trust for bundles and for audit evidence. The public surface is re-exported here, loaded on first use
(PEP 562): importing ``gapseal.signing.keys`` must not pay for sigstore's models, which only statements need.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BUNDLE_MEDIA_TYPE": "attestation",
    "PAYLOAD_TYPE": "attestation",
    "STATEMENT_TYPE": "attestation",
    "Subject": "attestation",
    "VerifiedStatement": "attestation",
    "add_signature": "attestation",
    "sign_statement": "attestation",
    "verify_statement": "attestation",
    "SigningKey": "keys",
    "VerifyingKey": "keys",
    "generate_key_pair": "keys",
    "load_private_key": "keys",
    "load_public_key": "keys",
    "load_public_key_pem": "keys",
    "load_trust": "trust",
    "trusted_keys": "trust",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gapseal.signing' has no attribute {name!r}")
    return getattr(importlib.import_module(f"gapseal.signing.{module}"), name)
