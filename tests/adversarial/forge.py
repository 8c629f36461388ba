"""Forging hostile bundles as an attacker who holds the trusted key would (a stolen key, or a careless signer).

Every helper edits a real layout made by ``create`` and then fixes up every digest on the way to ``index.json`` and
signs the result with the test's *trusted* key, so the signature is genuine and only gapseal's own checks of the
signed content stand between the bundle and the disk. Shared by every file of ``tests/adversarial/``.

- ``resign(bundle, key, descriptor)``: replace the bundle descriptor (a dict, written as canonical JSON, or raw
  bytes), rebuild the manifest's layers and the statement from it, sign with ``key``, rewrite ``index.json``;
- ``sign_payload(payload, key)``: a Sigstore bundle over arbitrary statement bytes (duplicate subjects, odd types);
- ``Layout``: read and write a layout's index, manifests, descriptor and blobs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gapseal.bundler import layout as oci
from gapseal.bundler.descriptor import BundleDescriptor
from gapseal.bundler.statement import bundle_predicate, image_index_entries, statement_subjects
from gapseal.canonical import canonical_json
from gapseal.signing.attestation import BUNDLE_MEDIA_TYPE, PAYLOAD_TYPE, STATEMENT_TYPE, Subject, pae, sign_statement
from gapseal.signing.keys import SigningKey

CREATED = "2026-01-01T00:00:00Z"


@dataclass
class Layout:
    """A bundle layout directory, read and edited as raw JSON (no gapseal validation on the way)."""

    root: Path

    def index(self) -> dict[str, Any]:
        return json.loads((self.root / "index.json").read_bytes())  # type: ignore[no-any-return]

    def write_index(self, doc: dict[str, Any] | bytes) -> None:
        data = doc if isinstance(doc, bytes) else canonical_json(doc)
        (self.root / "index.json").write_bytes(data)

    def bundle_entry(self) -> dict[str, Any]:
        return next(
            m
            for m in self.index()["manifests"]
            if (m.get("annotations") or {}).get(oci.ANNOTATION_REF_NAME) == oci.BUNDLE_REF_NAME
        )

    def signature_entries(self) -> list[dict[str, Any]]:
        return [m for m in self.index()["manifests"] if m.get("artifactType") == oci.ARTIFACT_SIGSTORE]

    def blob(self, digest: str) -> bytes:
        return (self.root / oci.blob_path(digest)).read_bytes()

    def json_blob(self, digest: str) -> dict[str, Any]:
        return json.loads(self.blob(digest))  # type: ignore[no-any-return]

    def add_blob(self, data: bytes) -> str:
        digest = oci.sha256_digest(data)
        (self.root / oci.blob_path(digest)).write_bytes(data)
        return digest

    def remove_blob(self, digest: str) -> None:
        (self.root / oci.blob_path(digest)).unlink(missing_ok=True)

    def manifest(self) -> dict[str, Any]:
        return self.json_blob(self.bundle_entry()["digest"])

    def descriptor_bytes(self) -> bytes:
        return self.blob(self.manifest()["config"]["digest"])

    def descriptor(self) -> dict[str, Any]:
        return json.loads(self.descriptor_bytes())  # type: ignore[no-any-return]

    def signature_blob_digests(self) -> list[str]:
        """Digest of each signature manifest's Sigstore bundle layer, in index order."""
        return [self.json_blob(s["digest"])["layers"][0]["digest"] for s in self.signature_entries()]


def sign_payload(payload: bytes, key: SigningKey) -> bytes:
    """A Sigstore bundle v0.3 whose DSSE envelope signs ``payload`` as is (no check of what the payload says)."""
    return canonical_json(
        {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {"publicKey": {"hint": key.key_id}, "tlogEntries": []},
            "dsseEnvelope": {
                "payload": base64.b64encode(payload).decode(),
                "payloadType": PAYLOAD_TYPE,
                "signatures": [{"sig": base64.b64encode(key.sign(pae(PAYLOAD_TYPE, payload))).decode()}],
            },
        }
    )


def statement_payload(
    subjects: list[tuple[str, str]], predicate: dict[str, Any], predicate_type: str = oci.BUNDLE_PREDICATE_TYPE
) -> bytes:
    """The canonical payload of a bundle statement with raw (name, sha256-hex) subjects, unchecked."""
    return canonical_json(
        {
            "_type": STATEMENT_TYPE,
            "subject": [{"name": n, "digest": {"sha256": d}} for n, d in subjects],
            "predicateType": predicate_type,
            "predicate": predicate,
        }
    )


def read_statement(sigstore_bundle: bytes) -> dict[str, Any]:
    """The statement inside a Sigstore bundle (unverified), as a dict."""
    envelope = json.loads(sigstore_bundle)["dsseEnvelope"]
    return json.loads(base64.b64decode(envelope["payload"]))  # type: ignore[no-any-return]


def set_signatures(layout: Layout, sigstore_bundles: list[bytes]) -> None:
    """Make ``sigstore_bundles`` the bundle's signature referrers, in this order; drop the old ones' blobs."""
    old = [s["digest"] for s in layout.signature_entries()] + layout.signature_blob_digests()
    index = layout.index()
    entries = [signature_entry(layout, layout.bundle_entry(), b) for b in sigstore_bundles]
    index["manifests"] = [m for m in index["manifests"] if m.get("artifactType") != oci.ARTIFACT_SIGSTORE] + entries
    layout.write_index(index)
    keep = {e["digest"] for e in entries} | {oci.sha256_digest(b) for b in sigstore_bundles}
    for digest in old:
        if digest not in keep:
            layout.remove_blob(digest)


def signature_entry(layout: Layout, subject: dict[str, Any], sigstore_bundle: bytes) -> dict[str, Any]:
    """Store ``sigstore_bundle`` as a referrer of ``subject`` (an index entry dict); return its index entry."""
    layout.add_blob(oci.EMPTY_BLOB)
    layout.add_blob(sigstore_bundle)
    subject_desc = oci.Descriptor(media_type=subject["mediaType"], digest=subject["digest"], size=subject["size"])
    data = oci.signature_manifest(subject_desc, sigstore_bundle, created=CREATED).to_bytes()
    return {
        "mediaType": oci.MEDIA_MANIFEST,
        "digest": layout.add_blob(data),
        "size": len(data),
        "artifactType": oci.ARTIFACT_SIGSTORE,
    }


def _parse(descriptor_bytes: bytes) -> BundleDescriptor | None:
    try:
        return BundleDescriptor.model_validate_json(descriptor_bytes)
    except (ValidationError, ValueError):
        return None


def resign(
    bundle: Path,
    key: SigningKey,
    descriptor: dict[str, Any] | bytes | None = None,
    *,
    manifest_edit: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    predicate_edit: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    subjects_edit: Callable[[list[tuple[str, str]]], list[tuple[str, str]]] | None = None,
) -> str:
    """Replace the bundle's descriptor, re-derive everything signed from it and sign with ``key``; return the digest
    of the new bundle manifest.

    The layers, subjects, predicate and image index entries come from gapseal's own ``statement`` rules applied to the
    new descriptor (so a mutation is judged on its content, not on a mismatch), unless the descriptor does not parse:
    then the old layers are kept and the statement names only the manifest and the descriptor. ``*_edit`` hooks let a
    test break one signed part on purpose. Old metadata blobs no longer referenced are removed (no stray files).
    """
    layout = Layout(bundle)
    index = layout.index()
    old_entry = layout.bundle_entry()
    old_manifest = layout.manifest()
    old_config = old_manifest["config"]["digest"]
    old_sigs = [s["digest"] for s in layout.signature_entries()] + layout.signature_blob_digests()

    if descriptor is None:
        descriptor_bytes = layout.descriptor_bytes()
    elif isinstance(descriptor, bytes):
        descriptor_bytes = descriptor
    else:
        try:
            descriptor_bytes = canonical_json(descriptor)
        except UnicodeEncodeError:  # a lone surrogate: JSON can still carry it, as an ASCII escape
            descriptor_bytes = json.dumps(descriptor, sort_keys=True, separators=(",", ":")).encode()
    parsed = _parse(descriptor_bytes)
    config_digest = layout.add_blob(descriptor_bytes)

    manifest = dict(old_manifest)
    manifest["config"] = {"mediaType": oci.MEDIA_BUNDLE_CONFIG, "digest": config_digest, "size": len(descriptor_bytes)}
    if parsed is not None:
        manifest["layers"] = [
            {
                "mediaType": e.media_type,
                "digest": e.digest,
                "size": e.size,
                "annotations": {oci.ANNOTATION_TITLE: title},
            }
            for title, e in parsed.layers()
        ]
    if manifest_edit is not None:
        manifest = manifest_edit(manifest)
    manifest_bytes = canonical_json(manifest)
    manifest_digest = layout.add_blob(manifest_bytes)
    entry = {
        "mediaType": oci.MEDIA_MANIFEST,
        "digest": manifest_digest,
        "size": len(manifest_bytes),
        "artifactType": oci.ARTIFACT_BUNDLE,
        "annotations": {oci.ANNOTATION_REF_NAME: oci.BUNDLE_REF_NAME},
    }

    if parsed is not None:
        subjects = [(s.name, s.sha256) for s in statement_subjects(manifest_digest, config_digest, parsed)]
        predicate = bundle_predicate(parsed, manifest_digest)
        images = [
            {
                "mediaType": d.media_type,
                "digest": d.digest,
                "size": d.size,
                "annotations": {oci.ANNOTATION_REF_NAME: name},
            }
            for name, d in image_index_entries(parsed)
        ]
    else:
        subjects = [
            (oci.MANIFEST_SUBJECT_NAME, manifest_digest.removeprefix("sha256:")),
            ("gapseal-bundle-descriptor", config_digest.removeprefix("sha256:")),
        ]
        predicate = {"name": "forged", "version": "1.0.0", "created": CREATED, "manifestDigest": manifest_digest}
        images = [m for m in index["manifests"] if m is not old_entry and m.get("artifactType") is None]
    if subjects_edit is not None:
        subjects = subjects_edit(subjects)
    if predicate_edit is not None:
        predicate = predicate_edit(dict(predicate))
    if subjects_edit is None and len({n for n, _ in subjects}) == len(subjects):
        statement = sign_statement([Subject(n, d) for n, d in subjects], oci.BUNDLE_PREDICATE_TYPE, predicate, key)
    else:
        statement = sign_payload(statement_payload(subjects, predicate), key)
    sig = signature_entry(layout, entry, statement)
    layout.write_index({**index, "manifests": [entry, *images, sig]})

    keep = {manifest_digest, config_digest, sig["digest"], oci.sha256_digest(statement)}
    for old in (old_entry["digest"], old_config, *old_sigs):
        if old not in keep:
            layout.remove_blob(old)
    return manifest_digest
