"""Signing: ECDSA P-256 keys, signed in-toto statements in Sigstore bundles, and trust configuration.

The root of trust for bundles and for audit evidence. The public surface is re-exported here.
"""

from gapseal.signing.attestation import (
    BUNDLE_MEDIA_TYPE,
    PAYLOAD_TYPE,
    STATEMENT_TYPE,
    Subject,
    VerifiedStatement,
    add_signature,
    sign_statement,
    verify_statement,
)
from gapseal.signing.keys import (
    SigningKey,
    VerifyingKey,
    generate_key_pair,
    load_private_key,
    load_public_key,
    load_public_key_pem,
)
from gapseal.signing.trust import load_trust, trusted_keys

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "PAYLOAD_TYPE",
    "STATEMENT_TYPE",
    "SigningKey",
    "Subject",
    "VerifiedStatement",
    "VerifyingKey",
    "add_signature",
    "generate_key_pair",
    "load_private_key",
    "load_public_key",
    "load_public_key_pem",
    "load_trust",
    "sign_statement",
    "trusted_keys",
    "verify_statement",
]
