"""``verify_bundle``: prove offline, fail closed, that every byte of a bundle is what was signed.

The checks, in the order a failure is reported:
1. the transport: a layout directory with no links or special files, or a strict tar / split set (``inventory``);
2. ``index.json`` (bounded, strict JSON): exactly one bundle manifest, its images, 1 to ``MAX_SIGNATURES``
   signature referrers, nothing listed twice and nothing else;
3. every referrer carries one well-formed Sigstore bundle about this manifest (else fatal); at least one is by a
   trusted key (never the key hint) over a statement naming this manifest. Order never matters: all are checked, and
   the ones not relied on are reported (``VerifiedBundle.ignored_signatures``);
4. the descriptor, signed through the manifest, is still untrusted: its names, paths, version and times pass
   ``BundleDescriptor.problems`` before anything uses them;
5. the statement relied on lists exactly this manifest, descriptor, every file and image blob, and its predicate
   is the descriptor's (``gapseal.bundler.statement``); every blob's digest and size;
6. the exact file set: nothing missing, nothing extra; and ``index.json`` byte-for-byte what create writes;
7. expiry, then rollback against this host's high-water mark (moved only when the caller uses the bundle).
Every problem found is reported, not just the first, each naming the file or component it concerns.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from gapseal.bundler import layout as oci
from gapseal.bundler.delta_marker import delta_needs_base_error, read_delta_marker
from gapseal.bundler.descriptor import BundleDescriptor, ImageBlob, ImageComponent, parse_time
from gapseal.bundler.images import ChildRef, manifest_labels, parse_image_document
from gapseal.bundler.inventory import LayoutEntry, LayoutInventory, read_layout_archive, read_layout_dir
from gapseal.bundler.rollback import RollbackDecision, RollbackState
from gapseal.bundler.statement import bundle_predicate, image_index_entries, statement_subjects
from gapseal.errors import GapsealError, SignatureError, VerificationError
from gapseal.jsonlimits import MAX_DOCUMENT, json_problem, load_model
from gapseal.progress import NO_PROGRESS, Progress
from gapseal.signing.attestation import MalformedBundleError, VerifiedStatement, verify_statement
from gapseal.signing.keys import VerifyingKey

_TOP_LEVEL = frozenset({"oci-layout", "index.json"})
_M = TypeVar("_M", bound=BaseModel)


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
    ignored_signatures: tuple[SignatureReport, ...] = ()
    """Signature referrers that were not relied on (not by a trusted key, or for another manifest), with why."""

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
            problems=self.items,  # --json: one list, one entry per problem
        )

    def raise_if_any(self) -> None:
        if self.items:
            raise self.error()


def read_inventory(path: Path, *, progress: Progress = NO_PROGRESS) -> LayoutInventory:
    """Read a bundle in any of its forms: layout directory, tar, or the first part of a split set."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise VerificationError(f"bundle {path} does not exist", where=str(path), hint="check the path") from None
    except OSError as e:  # a name too long, a component that is not a directory, no permission
        raise VerificationError(f"cannot read the bundle path: {e.strerror or e}", where=str(path)) from e
    if stat.S_ISLNK(st.st_mode):
        raise VerificationError("the bundle path is a symbolic link", where=str(path), hint="name the real path")
    if stat.S_ISDIR(st.st_mode):
        return read_layout_dir(path, progress=progress)
    if stat.S_ISREG(st.st_mode):
        return read_layout_archive(path, progress=progress)
    raise VerificationError("no bundle at this path: it is neither a directory nor a file", where=str(path))


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
        ignored_signatures=verified.ignored_signatures,
    )


MAX_SIGNATURES = 8
"""At most this many signature referrers: a co-signature or two, never a pile an attacker can hide things in."""
MAX_SIGNATURE_MANIFEST = 64 * 1024
"""A signature manifest is one descriptor and an annotation or two: about a kilobyte."""


@dataclass(frozen=True)
class SignatureReport:
    """A signature referrer that was checked and not relied on (it is still signature material, never content)."""

    position: int
    """Its place among the signature entries of index.json, from 1."""
    digest: str
    """Digest of its signature manifest."""
    key_id: str | None
    """The key that signed it when it verified with a trusted key; else the bundle's unverified key hint."""
    key_verified: bool
    reason: str

    def as_dict(self) -> dict[str, object]:
        """The ``--json`` form."""
        return {
            "position": self.position,
            "digest": self.digest,
            "key_id": self.key_id,
            "key_verified": self.key_verified,
            "reason": self.reason,
        }

    def describe(self) -> str:
        """One line for people."""
        key = "no key hint" if self.key_id is None else f"key {self.key_id[:16]}"
        key += "" if self.key_verified or self.key_id is None else " (unverified hint)"
        return f"signature #{self.position} ({self.digest[:19]}…, {key}): {self.reason}"


@dataclass(frozen=True)
class _Verified:
    manifest_digest: str
    descriptor: BundleDescriptor
    statement: VerifiedStatement
    ignored_signatures: tuple[SignatureReport, ...] = ()


def _blob(
    inv: LayoutInventory, desc: oci.Descriptor, what: str, problems: _Problems, *, max_bytes: int = MAX_DOCUMENT
) -> bytes:
    """The content of a document the verifier must parse, checked against its descriptor and size cap first."""
    path = oci.blob_path(desc.digest)
    entry = inv.entries.get(path)
    if entry is None:
        raise problems.fatal(f"{what} is missing: {path}")
    if f"sha256:{entry.sha256}" != desc.digest:
        raise problems.fatal(f"{what} is corrupt: {path} hashes to sha256:{entry.sha256}")
    if entry.size != desc.size:
        raise problems.fatal(f"{what} has size {entry.size}, its descriptor says {desc.size}: {path}")
    if entry.size > max_bytes:
        raise problems.fatal(f"{what} is {entry.size} bytes, over the {max_bytes}-byte limit: {path}")
    if entry.content is None:
        raise problems.fatal(f"{what} is too large to be a manifest or signature ({entry.size} bytes): {path}")
    return entry.content


def _parse(model: type[_M], data: bytes, what: str, problems: _Problems, *, max_bytes: int = MAX_DOCUMENT) -> _M:
    try:
        return load_model(model, data, what, error=VerificationError, max_bytes=max_bytes)
    except VerificationError as e:
        raise problems.fatal(e.message) from e


@dataclass(frozen=True)
class _IndexEntries:
    bundle: oci.Descriptor
    images: list[oci.Descriptor]
    signatures: list[oci.Descriptor]


def _classify_index(index: oci.Index, problems: _Problems) -> _IndexEntries:
    """Sort index.json's entries into the bundle manifest, images and signatures; anything else is fatal."""
    # An entry is its (digest, name) pair: two images of identical content under two names share a digest (create
    # writes one entry per image name), but no pair, and no name, may be listed twice.
    seen: set[tuple[str, str | None]] = set()
    names: set[str] = set()
    bundles: list[oci.Descriptor] = []
    images: list[oci.Descriptor] = []
    signatures: list[oci.Descriptor] = []
    for d in index.manifests:
        annotations = d.annotations or {}
        ref = annotations.get(oci.ANNOTATION_REF_NAME)
        if (d.digest, ref) in seen:
            raise problems.fatal(f"index.json lists {d.digest} twice")
        if ref is not None and ref != oci.BUNDLE_REF_NAME and ref in names:  # two bundles: counted below
            raise problems.fatal(f"index.json names {ref!r} twice")
        seen.add((d.digest, ref))
        if ref is not None:
            names.add(ref)
        if ref == oci.BUNDLE_REF_NAME:
            bundles.append(d)
        elif d.artifact_type == oci.ARTIFACT_SIGSTORE and not annotations and d.media_type == oci.MEDIA_MANIFEST:
            signatures.append(d)
        elif d.artifact_type is None and ref is not None and set(annotations) == {oci.ANNOTATION_REF_NAME}:
            images.append(d)
        else:
            raise problems.fatal(
                f"index.json lists an unexpected manifest: {d.digest} ({d.artifact_type or d.media_type}); "
                "a bundle's index holds only the bundle manifest, its images and signatures of it"
            )
    if len(bundles) != 1:
        raise problems.fatal(f"index.json must name exactly one {oci.BUNDLE_REF_NAME!r} manifest, found {len(bundles)}")
    if not signatures:
        raise problems.fatal("the bundle is not signed: index.json lists no signature")
    if len(signatures) > MAX_SIGNATURES:
        raise problems.fatal(f"index.json lists {len(signatures)} signatures; at most {MAX_SIGNATURES} are accepted")
    return _IndexEntries(bundles[0], images, signatures)


def _key_hint(sigstore_bundle: bytes) -> str | None:
    """The unverified key hint of a Sigstore bundle, for reports only (shortened, printable)."""
    doc, problem = json_problem(sigstore_bundle, max_bytes=MAX_DOCUMENT)
    if problem is not None or not isinstance(doc, dict):
        return None
    material = doc.get("verificationMaterial")
    key = material.get("publicKey") if isinstance(material, dict) else None
    hint = key.get("hint") if isinstance(key, dict) else None
    if not isinstance(hint, str) or not hint:
        return None
    return "".join(c if c.isprintable() else "?" for c in hint[:64])


@dataclass(frozen=True)
class _Candidate:
    position: int
    digest: str
    statement: VerifiedStatement


def _check_signatures(
    inv: LayoutInventory,
    entries: _IndexEntries,
    trusted_keys: Sequence[VerifyingKey],
    problems: _Problems,
    referenced: set[str],
) -> tuple[list[_Candidate], list[SignatureReport]]:
    """Check every signature referrer; return those that can be relied on and reports of the others.

    A referrer's shape is fatal when wrong; whether it is by a trusted key over this very manifest decides only whether
    it can be relied on. Order never matters: every one is checked.
    """
    b = entries.bundle
    subject = oci.Descriptor(media_type=b.media_type, digest=b.digest, size=b.size)
    candidates: list[_Candidate] = []
    reports: list[SignatureReport] = []
    for position, sd in enumerate(entries.signatures, start=1):
        what = f"signature manifest #{position} ({sd.digest[:19]}…)"
        sig_manifest = _parse(
            oci.Manifest,
            _blob(inv, sd, what, problems, max_bytes=MAX_SIGNATURE_MANIFEST),
            what,
            problems,
            max_bytes=MAX_SIGNATURE_MANIFEST,
        )
        if sig_manifest.subject != subject:
            raise problems.fatal(f"{what} refers to another manifest than the bundle's")
        if sig_manifest.artifact_type != oci.ARTIFACT_SIGSTORE or len(sig_manifest.layers) != 1:
            raise problems.fatal(
                f"{what} is not a single Sigstore bundle: it carries {len(sig_manifest.layers)} layers"
            )
        if sig_manifest.layers[0].media_type != oci.ARTIFACT_SIGSTORE:
            raise problems.fatal(f"{what} carries a {sig_manifest.layers[0].media_type} layer, not a Sigstore bundle")
        if sig_manifest.config != oci.empty_config():
            raise problems.fatal(f"{what} has an unexpected config")
        if _blob(inv, sig_manifest.config, f"{what} config", problems, max_bytes=len(oci.EMPTY_BLOB)) != oci.EMPTY_BLOB:
            raise problems.fatal(f"{what} config is not the empty blob")
        sig_bytes = _blob(inv, sig_manifest.layers[0], f"{what} Sigstore bundle", problems)
        referenced.update(
            oci.blob_path(d) for d in (sd.digest, sig_manifest.config.digest, sig_manifest.layers[0].digest)
        )
        try:
            statement = verify_statement(
                sig_bytes, trusted_keys, allowed_predicate_types=frozenset({oci.BUNDLE_PREDICATE_TYPE})
            )
        except MalformedBundleError as e:
            raise problems.fatal(f"{what} does not carry a well-formed Sigstore bundle: {e.message}") from e
        except SignatureError as e:
            reports.append(SignatureReport(position, sd.digest, _key_hint(sig_bytes), False, e.message))
            continue
        signed = [s.sha256 for s in statement.subjects if s.name == oci.MANIFEST_SUBJECT_NAME]
        if signed != [entries.bundle.digest.removeprefix("sha256:")]:
            reports.append(
                SignatureReport(
                    position,
                    sd.digest,
                    statement.signer_key_id,
                    True,
                    "signed by a trusted key, but for another bundle manifest than the one in index.json",
                )
            )
            continue
        candidates.append(_Candidate(position, sd.digest, statement))
    if not candidates:
        raise problems.fatal(
            "no valid signature by a trusted key: " + "; ".join(r.describe() for r in reports),
            hint="check that --key/--trust names the security team's public key; if it does, the bundle was altered",
        )
    return candidates, reports


def verify_inventory(
    inv: LayoutInventory, trusted_keys: Sequence[VerifyingKey], *, now: datetime | None = None
) -> _Verified:
    """Check a read layout against the trusted keys; the transport was already checked by the reader."""
    problems = _Problems(inv.source)
    marker = read_delta_marker(inv)
    if marker is not None:  # a delta is verified through gapseal.bundler.delta, with its base
        raise delta_needs_base_error(marker, inv.source)
    moment = now or datetime.now(UTC)

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

    # 2. The index: one bundle manifest, its images, and at most a few signature referrers of it; nothing twice.
    index_entry = inv.entries.get("index.json")
    if index_entry is None or index_entry.content is None:
        raise problems.fatal("index.json is missing")
    index = _parse(oci.Index, index_entry.content, "index.json", problems)
    entries = _classify_index(index, problems)
    bundle_desc = entries.bundle
    subject = oci.Descriptor(media_type=bundle_desc.media_type, digest=bundle_desc.digest, size=bundle_desc.size)
    manifest_bytes = _blob(inv, bundle_desc, "the bundle manifest", problems)

    # 3. Signatures: at least one by a trusted key over a statement about this very manifest.
    referenced: set[str] = {oci.blob_path(bundle_desc.digest)}
    candidates, reports = _check_signatures(inv, entries, trusted_keys, problems, referenced)

    # 4. The descriptor, signed through the manifest: its names, paths, version and times before anything uses them.
    manifest = _parse(oci.Manifest, manifest_bytes, "the bundle manifest", problems)
    if manifest.artifact_type != oci.ARTIFACT_BUNDLE or manifest.config.media_type != oci.MEDIA_BUNDLE_CONFIG:
        raise problems.fatal("the bundle manifest is not a gapseal bundle")
    descriptor = _parse(
        BundleDescriptor,
        _blob(inv, manifest.config, "the bundle descriptor", problems),
        "the bundle descriptor",
        problems,
    )
    referenced.add(oci.blob_path(manifest.config.digest))
    for problem in descriptor.problems(now=moment):
        problems.add(f"the signed descriptor is unsafe: {problem}")
    problems.raise_if_any()

    layers = descriptor.layers()

    # 5. The statement relied on must say exactly what the descriptor says; other trusted ones are reported.
    expected_subjects = sorted(
        (s.name, s.sha256) for s in statement_subjects(bundle_desc.digest, manifest.config.digest, descriptor)
    )
    expected_predicate = bundle_predicate(descriptor, bundle_desc.digest)
    statement: VerifiedStatement | None = None
    mismatch = ""
    for c in candidates:
        if sorted((s.name, s.sha256) for s in c.statement.subjects) != expected_subjects:
            mismatch = "the signed statement's subjects do not match the bundle's files"
        elif c.statement.predicate != expected_predicate:
            mismatch = "the signed predicate does not match the bundle descriptor"
        else:
            statement = statement or c.statement
            continue
        reports.append(SignatureReport(c.position, c.digest, c.statement.signer_key_id, True, mismatch))
    if statement is None:
        raise problems.fatal(mismatch)
    # Compared as plain tuples: building 10,000 Descriptor models just to compare them costs more than the rest.
    expected_layers = [(e.media_type, e.digest, e.size, None, {oci.ANNOTATION_TITLE: title}) for title, e in layers]
    stored_layers = [(d.media_type, d.digest, d.size, d.artifact_type, d.annotations) for d in manifest.layers]
    if stored_layers != expected_layers:
        raise problems.fatal("the bundle manifest's layers do not match its descriptor")

    for title, layer in layers:
        path = oci.blob_path(layer.digest)
        referenced.add(path)
        entry: LayoutEntry | None = inv.entries.get(path)
        if entry is None:
            problems.add(f"missing blob for {title}: {path}")
        elif entry.size != layer.size:
            problems.add(f"{title} has {entry.size} bytes, the signed bundle says {layer.size}: {path}")
        elif f"sha256:{entry.sha256}" != layer.digest:
            problems.add(f"{title} is corrupt: {path} hashes to sha256:{entry.sha256}")

    # 5b. Images: every stored index and manifest as the signed descriptor lists it, and every blob they reference.
    signed_images = {i.name: i for i in descriptor.images or []}
    for d in entries.images:
        name = (d.annotations or {})[oci.ANNOTATION_REF_NAME]
        if name not in signed_images:
            problems.add(f"index.json lists an image the signed bundle does not hold: {name!r} ({d.digest})")
        elif (d.digest, d.size, d.media_type) != (
            signed_images[name].digest,
            signed_images[name].size,
            signed_images[name].media_type,
        ):
            problems.add(f"index.json entry of image {name} differs from the signed bundle: {d.digest}")
    for image in descriptor.images or []:
        _verify_image(inv, image, problems, referenced)

    # 6. Exactly the referenced files, and an index that is byte for byte what create writes.
    for path in sorted(set(inv.entries) - referenced - _TOP_LEVEL):
        if path.startswith("blobs/sha256/"):
            problems.add(f"unexpected file not referenced by the signed bundle: {path}")
    expected_index = oci.build_index(
        subject,
        [oci.Descriptor(media_type=d.media_type, digest=d.digest, size=d.size) for d in entries.signatures],
        image_index_entries(descriptor),
    ).to_bytes()
    if index_entry.content != expected_index:
        problems.add("index.json has been edited: it differs from the index of the signed bundle")
    problems.raise_if_any()

    # 7. Expiry (the times were checked to parse in step 4).
    if descriptor.expires is not None and moment >= parse_time(descriptor.expires):
        raise problems.fatal(
            f"the bundle expired at {descriptor.expires}",
            hint="ask the security team for a current bundle",
        )
    return _Verified(
        manifest_digest=bundle_desc.digest,
        descriptor=descriptor,
        statement=statement,
        ignored_signatures=tuple(sorted(reports, key=lambda r: r.position)),
    )


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
