"""``inspect_bundle``: what a bundle holds, read without trust (or verified, when keys are given).

Inspection without keys is for looking, not for deciding: the signer shown is the Sigstore bundle's unverified key
hint, and the output says so. With keys, inspection runs the full ``verify_inventory``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gapseal.bundler import layout as oci
from gapseal.bundler.descriptor import BundleDescriptor
from gapseal.bundler.inventory import LayoutInventory
from gapseal.bundler.verify import read_inventory, verify_inventory
from gapseal.errors import VerificationError
from gapseal.jsonlimits import load_json, load_model
from gapseal.progress import NO_PROGRESS, Progress
from gapseal.signing.keys import VerifyingKey


@dataclass(frozen=True)
class BundleInfo:
    """What ``bundle inspect`` shows."""

    source: Path
    manifest_digest: str
    descriptor: BundleDescriptor
    signer_key_id: str | None
    signature_verified: bool
    blob_count: int
    stored_bytes: int

    def as_dict(self) -> dict[str, object]:
        """The ``--json`` document."""
        d = self.descriptor
        return {
            "name": d.name,
            "version": d.version,
            "created": d.created,
            "expires": d.expires,
            "description": d.description,
            "license": d.license,
            "manifest_digest": self.manifest_digest,
            "signer_key_id": self.signer_key_id,
            "signature_verified": self.signature_verified,
            "blobs": self.blob_count,
            "stored_bytes": self.stored_bytes,
            "models": [
                {
                    "name": m.name,
                    "format": m.format,
                    "format_details": m.format_details,
                    "license": m.license,
                    "files": len(m.files),
                    "bytes": sum(f.size for f in m.files),
                }
                for m in d.models
            ],
            "files": [{"name": c.name, "files": len(c.files), "bytes": sum(f.size for f in c.files)} for c in d.files],
            "images": [
                {
                    "name": i.name,
                    "source": i.source,
                    "digest": i.digest,
                    "platforms": i.platforms,
                    "bytes": i.total_size(),
                }
                for i in d.images or []
            ],
            "services": [s.model_dump(mode="json", exclude_none=True) for s in d.services or []],
            "builds": [
                {
                    "name": b.name,
                    "variants": [
                        {
                            "backend": v.backend,
                            "arch": v.arch,
                            "requires": v.requires.model_dump(mode="json", exclude_none=True),
                            "files": len(v.files),
                            "bytes": sum(f.size for f in v.files),
                        }
                        for v in b.variants
                    ],
                }
                for b in d.builds
            ],
        }


def _content(inv: LayoutInventory, digest: str) -> bytes:
    entry = inv.entries.get(oci.blob_path(digest))
    if entry is None or entry.content is None or f"sha256:{entry.sha256}" != digest:
        raise VerificationError(f"blob {digest} is missing or corrupt", where=inv.source)
    return entry.content


def describe_unverified(
    index_json: bytes | None, blob: Callable[[str], bytes], source: str
) -> tuple[str, BundleDescriptor, str | None]:
    """(manifest digest, descriptor, signer key hint) from the index and the few small blobs it leads to.

    Nothing here is trusted, so every document is parsed within the size and depth caps, and the descriptor's names
    are checked as verify checks them: inspect shows hostile names as an error, never prints them as if sound.
    """
    if index_json is None:
        raise VerificationError("index.json is missing", where=source)
    index = load_model(oci.Index, index_json, "index.json", error=VerificationError, where=source)
    named = [m for m in index.manifests if (m.annotations or {}).get(oci.ANNOTATION_REF_NAME) == oci.BUNDLE_REF_NAME]
    if len(named) != 1:
        raise VerificationError("not a gapseal bundle: no single 'gapseal-bundle' manifest", where=source)
    manifest = load_model(
        oci.Manifest, blob(named[0].digest), "the bundle manifest", error=VerificationError, where=source
    )
    descriptor = BundleDescriptor.load(blob(manifest.config.digest), where=source)
    problems = descriptor.problems()
    if problems:
        raise VerificationError(
            "the bundle descriptor is unsafe: " + "; ".join(problems),
            where=source,
            hint="do not use this bundle; obtain a fresh copy from the security team",
        )
    hint = None
    for sig in index.manifests:
        if sig.artifact_type == oci.ARTIFACT_SIGSTORE:
            what = "a signature manifest"
            sig_manifest = load_model(oci.Manifest, blob(sig.digest), what, error=VerificationError, where=source)
            if sig_manifest.layers:
                sigstore = load_json(
                    blob(sig_manifest.layers[0].digest), "a Sigstore bundle", error=VerificationError, where=source
                )
                material = sigstore.get("verificationMaterial") if isinstance(sigstore, dict) else None
                key = material.get("publicKey") if isinstance(material, dict) else None
                found = key.get("hint") if isinstance(key, dict) else None
                hint = found if isinstance(found, str) else None
            break
    return named[0].digest, descriptor, hint


def unverified_descriptor(inv: LayoutInventory) -> tuple[str, BundleDescriptor, str | None]:
    """(manifest digest, descriptor, key hint) of a read layout, without trust (see ``describe_unverified``)."""
    index_entry = inv.entries.get("index.json")
    return describe_unverified(index_entry.content if index_entry else None, lambda d: _content(inv, d), inv.source)


def read_layout_descriptor(layout_dir: Path) -> BundleDescriptor:
    """The descriptor of a layout directory, unverified, reading only index.json, the manifest and its config.

    For callers that need a bundle's metadata before the real work (``pack`` takes its tar mtime from ``created``)
    and must not read every weight file just for that. Each blob read is still checked against its digest.
    """

    def blob(digest: str) -> bytes:
        try:
            data = (layout_dir / oci.blob_path(digest)).read_bytes()
        except OSError as e:
            raise VerificationError(f"blob {digest} cannot be read: {e.strerror}", where=str(layout_dir)) from e
        if oci.sha256_digest(data) != digest:
            raise VerificationError(f"blob {digest} is corrupt", where=str(layout_dir))
        return data

    index = layout_dir / "index.json"
    return describe_unverified(index.read_bytes() if index.is_file() else None, blob, str(layout_dir))[1]


def inspect_bundle(
    path: Path, trusted_keys: Sequence[VerifyingKey] = (), *, progress: Progress = NO_PROGRESS
) -> BundleInfo:
    """Describe the bundle at ``path``; verify it fully when ``trusted_keys`` are given."""
    inv = read_inventory(path, progress=progress)
    stored = sum(e.size for p, e in inv.entries.items() if p.startswith("blobs/"))
    blobs = sum(1 for p in inv.entries if p.startswith("blobs/"))
    if trusted_keys:
        v = verify_inventory(inv, trusted_keys)
        return BundleInfo(path, v.manifest_digest, v.descriptor, v.statement.signer_key_id, True, blobs, stored)
    digest, descriptor, hint = unverified_descriptor(inv)
    return BundleInfo(path, digest, descriptor, hint, False, blobs, stored)
