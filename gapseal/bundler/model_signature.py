"""An OpenSSF model signature (``model_signing``, key mode) for every bundled model, from digests already computed.

The bundler hashes every file once. Instead of letting ``model_signing`` hash the model directory a second time, the
signature's manifest is built from those SHA-256 digests with ``model_signing``'s own classes
(``manifest.FileManifestItem``, ``manifest.Manifest``, ``signing.Payload``) and the DSSE envelope is wrapped in a
Sigstore bundle v0.3 exactly as ``model_signing``'s elliptic-key signer does, so that, on a directory holding the
model's files::

    model_signing verify key --signature model.sig --public_key KEY.pub MODEL_DIR

succeeds. Two choices differ from ``model_signing sign`` on purpose, both invisible to its verifier:

- the signature is deterministic: the in-toto payload is serialized with sorted keys and signed with RFC 6979
  deterministic ECDSA, so the same model and key give the same ``model.sig`` bytes, and the bundle stays
  reproducible;
- the recorded ``ignore_paths`` are listed in a fixed (sorted) order.

Like ``model_signing sign``, the signature leaves out what its verifier ignores by default: the signature file itself
(``model.sig`` at the model root) and git metadata at the root (``.git/``, ``.gitattributes``, ``.github/``,
``.gitignore``). Those paths are recorded in the signature, so ``verify`` ignores them even with
``--no-ignore-git-paths``. They stay covered by the gapseal bundle signature.
"""

from __future__ import annotations

import base64
import hashlib
import pathlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gapseal.errors import SigningError

if TYPE_CHECKING:
    from gapseal.signing.keys import SigningKey

MODEL_SIGNATURE_NAME = "model.sig"
"""File name of the signature, at the root of the model directory (``model_signing``'s default)."""
MODEL_SIGNATURE_MEDIA_TYPE: Final = "application/vnd.dev.sigstore.bundle.v0.3+json"
"""Media type of ``model.sig``: a Sigstore bundle v0.3 (JSON) holding a DSSE in-toto statement."""
MODEL_SIGNATURE_PREDICATE_TYPE = "https://model_signing/signature/v1.0"
"""The in-toto predicate type ``model_signing`` 1.x signs and verifies."""
IGNORED_PATHS: tuple[str, ...] = (".git", ".gitattributes", ".github", ".gitignore", MODEL_SIGNATURE_NAME)
"""Paths (relative to the model root) ``model_signing`` leaves out by default; they are not in the signature."""

_HEX64 = re.compile(r"[0-9a-f]{64}")


def is_ignored(rel_path: str) -> bool:
    """Return whether ``rel_path`` (POSIX, relative to the model root) is left out of the model signature."""
    return rel_path.split("/", 1)[0] in IGNORED_PATHS


def _check_files(files: Sequence[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    seen: set[str] = set()
    for rel, sha, size in files:
        parts = rel.split("/")
        if not rel or rel.startswith("/") or any(p in {"", ".", ".."} for p in parts) or "\\" in rel:
            raise SigningError(f"model file path {rel!r} is not a clean relative POSIX path", where=rel)
        if rel in seen:
            raise SigningError(f"model file {rel!r} is listed twice", where=rel)
        seen.add(rel)
        if not _HEX64.fullmatch(sha):
            raise SigningError(f"model file {rel!r}: {sha!r} is not a lower-case hex SHA-256", where=rel)
        if size < 0:
            raise SigningError(f"model file {rel!r}: negative size {size}", where=rel)
    if any(rel.split("/", 1)[0] == MODEL_SIGNATURE_NAME for rel in seen):
        raise SigningError(
            f"the model already holds a file named {MODEL_SIGNATURE_NAME!r} at its root; "
            "the OpenSSF model signature would overwrite it",
            where=MODEL_SIGNATURE_NAME,
            hint="rename or remove that file from the model directory",
        )
    signed = [f for f in files if not is_ignored(f[0])]
    if not signed:
        raise SigningError("the model has no file to sign (only git metadata)")
    return signed


def _raw_key(private_key: SigningKey | ec.EllipticCurvePrivateKey) -> ec.EllipticCurvePrivateKey:
    key = private_key if isinstance(private_key, ec.EllipticCurvePrivateKey) else private_key.cryptography_key()
    if not isinstance(key.curve, ec.SECP256R1):
        raise SigningError(f"model signatures need an ECDSA P-256 key, got curve {key.curve.name}")
    return key


def model_manifest_payload(files: Sequence[tuple[str, str, int]], *, model_name: str) -> bytes:
    """Return the in-toto statement (JSON bytes, sorted keys) that ``model_signing`` would sign for these files.

    ``files`` holds ``(rel_path, sha256 hex, size)`` for every file of the model; ignored paths are left out.
    """
    from google.protobuf import json_format  # type: ignore[import-untyped]
    from model_signing import manifest
    from model_signing._hashing import hashing as ms_hashing
    from model_signing._signing import signing as ms_signing

    signed = _check_files(files)
    items = [
        manifest.FileManifestItem(
            path=pathlib.PurePosixPath(rel), digest=ms_hashing.Digest("sha256", bytes.fromhex(sha))
        )
        for rel, sha, _ in signed
    ]
    serialization_type = manifest._FileSerialization("sha256", False, [pathlib.Path(p) for p in sorted(IGNORED_PATHS)])
    payload = ms_signing.Payload(manifest.Manifest(model_name, items, serialization_type))
    return str(json_format.MessageToJson(payload.statement.pb, sort_keys=True)).encode("utf-8")


def sign_model(
    files: Sequence[tuple[str, str, int]],
    private_key: SigningKey | ec.EllipticCurvePrivateKey,
    *,
    model_name: str,
) -> bytes:
    """Return the bytes of ``model.sig`` for a model whose files and SHA-256 digests are already known.

    ``files`` holds ``(rel_path, sha256 hex, size)``: POSIX paths relative to the model root (the basename for a
    single-file model). The signature verifies with ``model_signing verify key`` on a directory holding exactly
    those files (plus ``model.sig``). ``model_name`` is the statement's subject name, informative only.
    Raises ``SigningError`` for unclean paths, malformed digests, duplicates or a model file named ``model.sig``.
    """
    from model_signing._signing import sign_sigstore_pb
    from model_signing._signing import signing as ms_signing
    from sigstore_models import intoto as intoto_pb
    from sigstore_models.bundle import v1 as bundle_pb
    from sigstore_models.common import v1 as common_pb

    key = _raw_key(private_key)
    raw_payload = model_manifest_payload(files, model_name=model_name)
    signature = key.sign(sign_sigstore_pb.pae(raw_payload), ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    envelope = intoto_pb.Envelope(
        payload=base64.b64encode(raw_payload),
        payload_type=ms_signing._IN_TOTO_JSON_PAYLOAD_TYPE,
        signatures=[intoto_pb.Signature(sig=base64.b64encode(signature), keyid="")],
    )
    bundle = bundle_pb.Bundle(
        media_type=MODEL_SIGNATURE_MEDIA_TYPE,
        verification_material=bundle_pb.VerificationMaterial(
            # model_signing's key hint: SHA-256 of the public key PEM (the verifier checks it matches its key).
            public_key=common_pb.PublicKeyIdentifier(hint=hashlib.sha256(public_pem).hexdigest()),
            tlog_entries=[],
        ),
        dsse_envelope=envelope,
    )
    return bundle.to_json().encode("utf-8")
