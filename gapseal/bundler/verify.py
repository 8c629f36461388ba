"""``verify_bundle``: prove offline, fail closed, that every byte of a bundle is what was signed.

The checks, in the order a failure is reported:
1. the transport: a layout directory with no links or special files, or a strict tar / split set (``inventory``);
2. ``index.json`` names exactly one bundle manifest and only signature referrers of it;
3. a signature by a trusted key (never the key hint), over an in-toto statement of the allowed predicate type,
   whose subjects are this bundle manifest, its descriptor and every file;
4. the manifest, the descriptor and every blob: digest and size;
5. the exact file set: nothing missing, nothing extra; and ``index.json`` byte-for-byte what create writes;
6. expiry, then rollback against this host's high-water mark.
Every problem found is reported, not just the first, each naming the file or component it concerns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from gapseal.bundler import layout as oci
from gapseal.bundler.delta_marker import delta_needs_base_error, read_delta_marker
from gapseal.bundler.descriptor import BundleDescriptor, ImageBlob, ImageComponent
from gapseal.bundler.images import ChildRef, manifest_labels, parse_image_document
from gapseal.bundler.inventory import LayoutEntry, LayoutInventory, read_layout_archive, read_layout_dir
from gapseal.bundler.rollback import RollbackDecision, RollbackState
from gapseal.bundler.statement import bundle_predicate, image_index_entries, statement_subjects
from gapseal.errors import GapsealError, SignatureError, VerificationError
from gapseal.progress import NO_PROGRESS, Progress
from gapseal.signing.attestation import VerifiedStatement, verify_statement
from gapseal.signing.keys import VerifyingKey

_TOP_LEVEL = frozenset({"oci-layout", "index.json"})


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle that passed every check, with what the installer and ``inspect`` need from it."""

    source: Path
    layout_dir: Path | None
    """The layout directory when the bundle was verified as a directory; None for a tar or split set."""
    manifest_digest: str
    descriptor: BundleDescriptor
    signer_key_id: str
    statement: VerifiedStatement = field(repr=False)
    rollback: RollbackDecision | None = None

    def blob_path(self, digest: str) -> Path:
        """The file holding blob ``digest`` in the verified layout directory."""
        if self.layout_dir is None:
            raise VerificationError(
                "this bundle was verified as an archive; unpack it to read its blobs", where=str(self.source)
            )
        return self.layout_dir / oci.blob_path(digest)


class _Problems:
    """Collects every verification problem; raises them together."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)

    def fatal(self, message: str, hint: str | None = None) -> VerificationError:
        self.items.append(message)
        return self.error(hint)

    def error(self, hint: str | None = None) -> VerificationError:
        first, rest = self.items[0], self.items[1:]
        more = "".join(f"\n  - {item}" for item in rest)
        suffix = f"\n  {len(rest)} more problem(s):{more}" if rest else ""
        return VerificationError(
            f"bundle does not verify: {first}{suffix}",
            where=self.source,
            hint=hint or "do not use this bundle; obtain a fresh copy from the security team and verify again",
        )

    def raise_if_any(self) -> None:
        if self.items:
            raise self.error()


def read_inventory(path: Path, *, progress: Progress = NO_PROGRESS) -> LayoutInventory:
    """Read a bundle in any of its forms: layout directory, tar, or the first part of a split set."""
    if path.is_symlink():
        raise VerificationError("the bundle path is a symbolic link", where=str(path), hint="name the real path")
    if path.is_dir():
        return read_layout_dir(path, progress=progress)
    if path.is_file():
        return read_layout_archive(path, progress=progress)
    raise VerificationError("no bundle at this path", where=str(path))


def verify_bundle(
    path: Path,
    trusted_keys: Sequence[VerifyingKey],
    *,
    rollback: RollbackState | None = None,
    allow_downgrade: bool = False,
    record: bool = False,
    now: datetime | None = None,
    progress: Progress = NO_PROGRESS,
) -> VerifiedBundle:
    """Verify the bundle at ``path`` (see the module docstring); raise ``VerificationError`` on any problem.

    With ``rollback``, the version is checked against that state file; with ``record`` too (a command that *uses*
    the bundle: install, apply, extract, registry load), the high-water mark is then moved to it. Merely looking at
    a bundle (verify, inspect) never moves the mark.
    """
    inventory = read_inventory(path, progress=progress)
    return verify_read_bundle(
        path,
        inventory,
        trusted_keys,
        layout_dir=path if path.is_dir() else None,
        rollback=rollback,
        allow_downgrade=allow_downgrade,
        record=record,
        now=now,
    )


def verify_read_bundle(
    source: Path,
    inventory: LayoutInventory,
    trusted_keys: Sequence[VerifyingKey],
    *,
    layout_dir: Path | None,
    rollback: RollbackState | None,
    allow_downgrade: bool,
    record: bool = False,
    now: datetime | None,
) -> VerifiedBundle:
    """Verify an already-read bundle (a layout, or a delta completed by its base), then check rollback.

    With ``record`` the use is recorded: the high-water mark moves to this version.
    """
    verified = verify_inventory(inventory, trusted_keys, now=now)
    decision = None
    if rollback is not None:
        decision = rollback.check(
            verified.descriptor.name, verified.descriptor.version, allow_downgrade=allow_downgrade
        )
        if record:
            rollback.record(verified.descriptor.name, verified.descriptor.version, verified.manifest_digest)
    return VerifiedBundle(
        source=source,
        layout_dir=layout_dir,
        manifest_digest=verified.manifest_digest,
        descriptor=verified.descriptor,
        signer_key_id=verified.statement.signer_key_id,
        statement=verified.statement,
        rollback=decision,
    )


@dataclass(frozen=True)
class _Verified:
    manifest_digest: str
    descriptor: BundleDescriptor
    statement: VerifiedStatement


def _blob(inv: LayoutInventory, desc: oci.Descriptor, what: str, problems: _Problems) -> bytes:
    """The content of a small blob the verifier must parse, checked against its descriptor first."""
    path = oci.blob_path(desc.digest)
    entry = inv.entries.get(path)
    if entry is None:
        raise problems.fatal(f"{what} is missing: {path}")
    if f"sha256:{entry.sha256}" != desc.digest:
        raise problems.fatal(f"{what} is corrupt: {path} hashes to sha256:{entry.sha256}")
    if entry.size != desc.size:
        raise problems.fatal(f"{what} has size {entry.size}, its descriptor says {desc.size}: {path}")
    if entry.content is None:
        raise problems.fatal(f"{what} is too large to be a manifest or signature ({entry.size} bytes): {path}")
    return entry.content


def _parse_manifest(data: bytes, what: str, problems: _Problems) -> oci.Manifest:
    try:
        return oci.Manifest.model_validate_json(data)
    except ValidationError as e:
        raise problems.fatal(f"{what} is malformed: {e.errors()[0]['msg']} at {e.errors()[0]['loc']}") from e


def verify_inventory(
    inv: LayoutInventory, trusted_keys: Sequence[VerifyingKey], *, now: datetime | None = None
) -> _Verified:
    """Check a read layout against the trusted keys; the transport was already checked by the reader."""
    problems = _Problems(inv.source)
    marker = read_delta_marker(inv)
    if marker is not None:  # a delta is verified through gapseal.bundler.delta, with its base
        raise delta_needs_base_error(marker, inv.source)

    # 1. Only layout files. A blob's content is checked where it is referenced, so its message can name it.
    for path in sorted(inv.entries):
        if path in _TOP_LEVEL:
            continue
        if not path.startswith("blobs/sha256/") or not oci.is_digest("sha256:" + path.removeprefix("blobs/sha256/")):
            problems.add(f"unexpected file in the layout: {path}")

    layout_entry = inv.entries.get("oci-layout")
    if layout_entry is None:
        problems.add("oci-layout is missing")
    elif layout_entry.content != oci.OCI_LAYOUT_BYTES:
        problems.add("oci-layout has been altered")

    # 2. The index: one bundle manifest, signature referrers.
    index_entry = inv.entries.get("index.json")
    if index_entry is None or index_entry.content is None:
        raise problems.fatal("index.json is missing")
    try:
        index = oci.Index.model_validate_json(index_entry.content)
    except ValidationError as e:
        raise problems.fatal(f"index.json is malformed: {e.errors()[0]['msg']}") from e
    bundles = [d for d in index.manifests if (d.annotations or {}).get(oci.ANNOTATION_REF_NAME) == oci.BUNDLE_REF_NAME]
    if len(bundles) != 1:
        raise problems.fatal(f"index.json must name exactly one {oci.BUNDLE_REF_NAME!r} manifest, found {len(bundles)}")
    bundle_desc = bundles[0]
    subject = oci.Descriptor(media_type=bundle_desc.media_type, digest=bundle_desc.digest, size=bundle_desc.size)
    image_descs = [
        d
        for d in index.manifests
        if d is not bundle_desc and d.artifact_type is None and oci.ANNOTATION_REF_NAME in (d.annotations or {})
    ]
    sig_descs = [d for d in index.manifests if d is not bundle_desc and all(d is not i for i in image_descs)]
    if not sig_descs:
        raise problems.fatal("the bundle is not signed: index.json lists no signature")

    manifest_bytes = _blob(inv, bundle_desc, "the bundle manifest", problems)
    manifest = _parse_manifest(manifest_bytes, "the bundle manifest", problems)

    # 3. Signatures: at least one by a trusted key over a statement about this very manifest.
    statement: VerifiedStatement | None = None
    referenced: set[str] = {oci.blob_path(bundle_desc.digest)}
    reasons: list[str] = []
    for i, sd in enumerate(sig_descs):
        what = f"signature manifest #{i + 1} ({sd.digest[:19]}…)"
        if sd.artifact_type != oci.ARTIFACT_SIGSTORE:
            raise problems.fatal(f"index.json lists an unexpected manifest: {sd.digest} ({sd.artifact_type})")
        sig_manifest = _parse_manifest(_blob(inv, sd, what, problems), what, problems)
        referenced.add(oci.blob_path(sd.digest))
        if sig_manifest.subject != subject:
            raise problems.fatal(f"{what} refers to another manifest than the bundle's")
        if sig_manifest.artifact_type != oci.ARTIFACT_SIGSTORE or len(sig_manifest.layers) != 1:
            raise problems.fatal(f"{what} is not a single Sigstore bundle")
        if sig_manifest.config != oci.empty_config():
            raise problems.fatal(f"{what} has an unexpected config")
        _blob(inv, sig_manifest.config, f"{what} config", problems)
        referenced.add(oci.blob_path(sig_manifest.config.digest))
        sig_bytes = _blob(inv, sig_manifest.layers[0], f"{what} Sigstore bundle", problems)
        referenced.add(oci.blob_path(sig_manifest.layers[0].digest))
        try:
            candidate = verify_statement(
                sig_bytes, trusted_keys, allowed_predicate_types=frozenset({oci.BUNDLE_PREDICATE_TYPE})
            )
        except SignatureError as e:
            reasons.append(f"{what}: {e.message}")
            continue
        if statement is None:
            statement = candidate
    if statement is None:
        raise problems.fatal(
            "no valid signature by a trusted key: " + "; ".join(reasons),
            hint="check that --key/--trust names the security team's public key; if it does, the bundle was altered",
        )
    signed_manifest = [s.sha256 for s in statement.subjects if s.name == oci.MANIFEST_SUBJECT_NAME]
    if signed_manifest != [bundle_desc.digest.removeprefix("sha256:")]:
        raise problems.fatal("the signature is valid but for another bundle manifest than the one in index.json")

    # 4. The descriptor and every file, against the signed statement.
    if manifest.artifact_type != oci.ARTIFACT_BUNDLE or manifest.config.media_type != oci.MEDIA_BUNDLE_CONFIG:
        raise problems.fatal("the bundle manifest is not a gapseal bundle")
    descriptor = BundleDescriptor.load(_blob(inv, manifest.config, "the bundle descriptor", problems))
    referenced.add(oci.blob_path(manifest.config.digest))
    expected_subjects = statement_subjects(bundle_desc.digest, manifest.config.digest, descriptor)
    if sorted((s.name, s.sha256) for s in statement.subjects) != sorted((s.name, s.sha256) for s in expected_subjects):
        raise problems.fatal("the signed statement's subjects do not match the bundle's files")
    if statement.predicate != bundle_predicate(descriptor, bundle_desc.digest):
        raise problems.fatal("the signed predicate does not match the bundle descriptor")
    expected_layers = [
        oci.Descriptor(media_type=e.media_type, digest=e.digest, size=e.size, annotations={oci.ANNOTATION_TITLE: title})
        for title, e in descriptor.layers()
    ]
    if manifest.layers != expected_layers:
        raise problems.fatal("the bundle manifest's layers do not match its descriptor")

    for title, layer in descriptor.layers():
        path = oci.blob_path(layer.digest)
        referenced.add(path)
        entry: LayoutEntry | None = inv.entries.get(path)
        if entry is None:
            problems.add(f"missing blob for {title}: {path}")
        elif entry.size != layer.size:
            problems.add(f"{title} has {entry.size} bytes, the signed bundle says {layer.size}: {path}")
        elif f"sha256:{entry.sha256}" != layer.digest:
            problems.add(f"{title} is corrupt: {path} hashes to sha256:{entry.sha256}")

    # 4b. Images: every stored index and manifest as the signed descriptor lists it, and every blob they reference.
    signed_images = {i.name: i for i in descriptor.images or []}
    for d in image_descs:
        name = (d.annotations or {})[oci.ANNOTATION_REF_NAME]
        if name not in signed_images:
            problems.add(f"index.json lists an image the signed bundle does not hold: {name} ({d.digest})")
        elif (d.digest, d.size, d.media_type) != (
            signed_images[name].digest,
            signed_images[name].size,
            signed_images[name].media_type,
        ):
            problems.add(f"index.json entry of image {name} differs from the signed bundle: {d.digest}")
    for image in descriptor.images or []:
        _verify_image(inv, image, problems, referenced)

    # 5. Exactly the referenced files, and an index that is byte for byte what create writes.
    for path in sorted(set(inv.entries) - referenced - _TOP_LEVEL):
        if path.startswith("blobs/sha256/"):
            problems.add(f"unexpected file not referenced by the signed bundle: {path}")
    expected_index = oci.build_index(
        subject,
        [oci.Descriptor(media_type=d.media_type, digest=d.digest, size=d.size) for d in sig_descs],
        image_index_entries(descriptor),
    ).to_bytes()
    if index_entry.content != expected_index:
        problems.add("index.json has been edited: it differs from the index of the signed bundle")
    problems.raise_if_any()

    # 6. Expiry.
    if descriptor.expires is not None:
        moment = now or datetime.now(UTC)
        expires = datetime.fromisoformat(descriptor.expires.replace("Z", "+00:00"))
        if moment >= expires:
            raise problems.fatal(
                f"the bundle expired at {descriptor.expires}",
                hint="ask the security team for a current bundle",
            )
    return _Verified(manifest_digest=bundle_desc.digest, descriptor=descriptor, statement=statement)


def _image_document(
    inv: LayoutInventory, digest: str, size: int, what: str, problems: _Problems, referenced: set[str]
) -> bytes | None:
    """The content of a stored image manifest or index, or None after recording why it cannot be read."""
    path = oci.blob_path(digest)
    referenced.add(path)
    entry = inv.entries.get(path)
    if entry is None:
        problems.add(f"{what} is missing: {path}")
    elif entry.size != size or f"sha256:{entry.sha256}" != digest:
        problems.add(f"{what} is corrupt: {path} hashes to sha256:{entry.sha256} ({entry.size} bytes)")
    elif entry.content is None:
        problems.add(f"{what} is too large to be a manifest ({entry.size} bytes): {path}")
    else:
        return entry.content
    return None


def _same(stored: ChildRef, signed: ImageBlob) -> bool:
    return (stored.digest, stored.size, stored.media_type) == (signed.digest, signed.size, signed.media_type)


def _verify_image(inv: LayoutInventory, image: ImageComponent, problems: _Problems, referenced: set[str]) -> None:
    """Walk one image from its stored top document; every blob must be the one the signed descriptor lists."""
    label = f"image {image.name}"
    top = _image_document(inv, image.digest, image.size, f"{label} ({image.media_type})", problems, referenced)
    if top is None:
        return
    try:
        doc = parse_image_document(top, image.media_type)
    except ValueError as e:
        problems.add(f"{label}: its stored top document is malformed: {e}")
        return
    if doc.is_index:
        listed = [(m.media_type, m.digest, m.size, m.platform) for m in doc.manifests]
        signed = [(m.media_type, m.digest, m.size, m.platform) for m in image.manifests]
        if listed != signed:
            problems.add(f"{label}: its index lists other manifests than the signed bundle")
            return
        labels = manifest_labels([m.platform for m in image.manifests])
    elif len(image.manifests) != 1 or image.manifests[0].digest != image.digest:
        problems.add(f"{label}: the signed bundle describes it differently from what is stored")
        return
    else:
        labels = [""]
    for mlabel, m in zip(labels, image.manifests, strict=True):
        what = f"{label} {mlabel}".rstrip()
        if doc.is_index:
            data = _image_document(inv, m.digest, m.size, f"{what} manifest", problems, referenced)
            if data is None:
                continue
            try:
                mdoc = parse_image_document(data, m.media_type)
            except ValueError as e:
                problems.add(f"{what}: its stored manifest is malformed: {e}")
                continue
        else:
            mdoc = doc
        assert mdoc.config is not None  # noqa: S101 - a manifest always has a config
        if not _same(mdoc.config, m.config) or len(mdoc.layers) != len(m.layers):
            problems.add(f"{what}: its manifest lists other blobs than the signed bundle")
            continue
        blobs = [(f"{what} config", m.config)]
        for i, (stored, signed_layer) in enumerate(zip(mdoc.layers, m.layers, strict=True)):
            if not _same(stored, signed_layer):
                problems.add(f"{what} layer {i}: its manifest lists another blob than the signed bundle")
            blobs.append((f"{what} layer {i} ({signed_layer.digest})", signed_layer))
        for blob_what, blob in blobs:
            path = oci.blob_path(blob.digest)
            referenced.add(path)
            entry = inv.entries.get(path)
            if entry is None:
                problems.add(f"{blob_what} is missing: {path}")
            elif entry.size != blob.size:
                problems.add(f"{blob_what} has {entry.size} bytes, the signed bundle says {blob.size}: {path}")
            elif f"sha256:{entry.sha256}" != blob.digest:
                problems.add(f"{blob_what} is corrupt: {path} hashes to sha256:{entry.sha256}")


__all__ = ["GapsealError", "VerifiedBundle", "read_inventory", "verify_bundle", "verify_inventory"]
