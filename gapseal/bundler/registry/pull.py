"""``bundle pull``: fetch a bundle by tag, with its signature and images, into a directory, and verify it.

The order is what keeps a hostile registry's reads bounded:
1. the bundle manifest by tag, read up to ``MAX_MANIFEST`` bytes;
2. its signature referrers (capped in number, no duplicates), each signature manifest and Sigstore bundle read up to
   small fixed caps; with trusted keys, the signature must be by one of them and name this very manifest, so every
   size the manifest gives is signed before any blob it sizes is read;
3. the bundle descriptor: its name and version must be the ones in the reference (a tag ``1.0.0`` never yields a
   signed 2.0.0, nor ``gapseal/other`` a bundle named ``tinyb``);
4. the files, then every image document and blob the (signed) descriptor names, each read to exactly its size and
   hashed as it is written;
5. with trusted keys, the complete bundle is verified (signature, every digest, the exact file set, expiry, and
   the rollback check, which a pull never records) before ``--out`` appears. Without keys nothing is verified and
   the result says so; sizes not yet signed are then capped at ``max_blob``.
The bundle is written into a private temporary directory beside ``--out`` (each blob's whole chunks with
``O_DIRECT``, the rest written back while the transfer goes on, fsync'd as it ends; the small documents fsync'd
together at the end, then the directories) and renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pydantic import ValidationError

from gapseal.atomic import fsync_dir, publish, remove_stale_temps, temp_prefix
from gapseal.bundler import layout as oci
from gapseal.bundler.create import prepare_output
from gapseal.bundler.descriptor import BundleDescriptor
from gapseal.bundler.images import INDEX_MEDIA_TYPES
from gapseal.bundler.inventory import LayoutEntry, LayoutInventory
from gapseal.bundler.registry.distribution import MAX_MANIFEST, Distribution, run_parallel
from gapseal.bundler.registry.load import DEFAULT_CONCURRENCY, connect
from gapseal.bundler.registry.reference import BUNDLE_REPOSITORY_PREFIX, REPOSITORY, fallback_tag, parse_reference
from gapseal.bundler.registry.signatures import signature_referrers
from gapseal.bundler.registry.transport import DEFAULT_TIMEOUT, RegistryError
from gapseal.bundler.rollback import RollbackState
from gapseal.bundler.statement import image_index_entries
from gapseal.bundler.verify import MAX_SIGNATURE_MANIFEST, verify_read_bundle
from gapseal.errors import SignatureError, VerificationError
from gapseal.progress import NO_PROGRESS, Progress
from gapseal.signing.attestation import verify_statement
from gapseal.signing.keys import VerifyingKey

MAX_SIGNATURE_BLOB = 16 * 1024 * 1024
"""A Sigstore bundle is read up to this size before it is verified (its statement lists every file's digest)."""
DEFAULT_MAX_BLOB = 64 * 1024**3
"""Without trusted keys, no size is signed: no blob is read past this many bytes (``--max-blob-size``)."""


@dataclass(frozen=True)
class PulledBundle:
    """What ``pull_bundle`` wrote."""

    path: Path
    manifest_digest: str
    name: str
    version: str
    blobs: int
    bytes: int
    signature_mode: str
    verified_by: str | None
    """The trusted key id the bundle verified against, or None when no key was given (nothing verified)."""


class _Store:
    """The layout being pulled into the private directory ``root``: every file written once, hashed as written.

    What it wrote (path, size, digest of the bytes written) is the inventory the bundle is verified from, so no byte
    is read twice; ``LayoutEntry.content`` still reads a document again (and checks it) when verify parses it.
    """

    def __init__(self, client: Distribution, root: Path, progress: Progress) -> None:
        self.client = client
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True)
        self.progress = progress
        self.count = 0
        self.bytes = 0
        self.lock = threading.Lock()
        self.taken: set[str] = set()
        self.entries: dict[str, LayoutEntry] = {}
        self.unsynced: list[Path] = []

    def _record(self, rel: str, size: int, sha256: str) -> None:
        with self.lock:
            self.entries[rel] = LayoutEntry(rel, size, sha256, segments=((str(self.root / rel), 0, size),))
            if rel.startswith("blobs/"):
                self.count += 1
                self.bytes += size

    def write_file(self, rel: str, data: bytes) -> None:
        """Write a new file of the layout (a document, ``index.json``, ``oci-layout``); ``sync`` flushes it."""
        path = self.root / rel
        with path.open("xb") as f:  # "x": never clobber
            f.write(data)
        with self.lock:
            self.unsynced.append(path)
        self._record(rel, len(data), hashlib.sha256(data).hexdigest())

    def sync(self, concurrency: int) -> None:
        """Flush the documents to disk (blobs were fsync'd as they ended), then the directories naming them.

        The small files are fsync'd side by side here rather than one after another as they are written (a journal
        commit each, on the main thread's way to the blobs): the file system commits concurrent fsyncs together.
        """
        with self.lock:
            files, self.unsynced = self.unsynced, []
        run_parallel(_fsync_file, files, concurrency)
        run_parallel(fsync_dir, [self.blobs, self.blobs.parent, self.root], concurrency)

    def inventory(self, source: str) -> LayoutInventory:
        """What was written, as ``verify`` reads a layout."""
        with self.lock:
            entries = dict(sorted(self.entries.items()))
        return LayoutInventory(entries=entries, source=source, directories=frozenset({"blobs", "blobs/sha256"}))

    def write(self, data: bytes, digest: str) -> None:
        """Keep a document already read (and digest-checked) as a blob."""
        with self.lock:
            if digest in self.taken:
                return
            self.taken.add(digest)
        self.write_file(oci.blob_path(digest), data)

    def manifest(self, repo: str, digest: str, accept: str, cap: int) -> bytes:
        data, _ = self.client.manifest(repo, digest, accept, digest=digest, cap=cap)
        self.write(data, digest)
        return data

    def blob(self, repo: str, digest: str, size: int) -> None:
        with self.lock:
            if digest in self.taken:
                return
            self.taken.add(digest)
        task = self.progress.begin(f"blob {digest[7:19]} ({size} bytes)", size)
        try:
            got = self.client.fetch_blob(
                repo, digest, size, self.root / oci.blob_path(digest), progress=self.progress, task=task
            )
        finally:
            self.progress.end(task)
        self._record(oci.blob_path(digest), got.size, got.sha256)

    def blobs_parallel(self, items: list[tuple[str, str, int]], concurrency: int) -> None:
        ordered = sorted({d: (r, d, s) for r, d, s in items}.values(), key=lambda i: -i[2])
        run_parallel(lambda item: self.blob(*item), ordered, concurrency)


def pull_bundle(
    reference: str,
    out: Path,
    *,
    trusted_keys: Sequence[VerifyingKey] = (),
    rollback: RollbackState | None = None,
    allow_downgrade: bool = False,
    insecure: bool = False,
    allow_hosts: Sequence[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
    max_blob: int = DEFAULT_MAX_BLOB,
    overwrite: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Progress = NO_PROGRESS,
) -> PulledBundle:
    """Fetch the bundle ``HOST:PORT/gapseal/NAME:VERSION`` into ``out``; see the module docstring."""
    host, repo, tag = parse_reference(reference)
    prepare_output(out, overwrite=overwrite)
    client = connect(host, insecure=insecure, allow_hosts=allow_hosts, timeout=timeout)
    for path in remove_stale_temps(out, "pulling"):
        progress.note(f"removed {path}, left by an interrupted pull")
    work = out.parent / f"{temp_prefix(out, 'pulling')}{uuid.uuid4().hex[:8]}"
    try:
        client.ping()
        work.mkdir(mode=0o700)  # private until complete: what is verified is what this process wrote
        store = _Store(client, work, progress)
        result = _pull_into(client, store, reference, repo, tag, trusted_keys, max_blob, concurrency, progress)
        if trusted_keys:
            verified = verify_read_bundle(
                work,
                store.inventory(str(work)),
                trusted_keys,
                layout_dir=work,
                rollback=rollback,
                allow_downgrade=allow_downgrade,
                record=False,
                now=None,
            )
            if verified.manifest_digest != result.manifest_digest:  # pragma: no cover - index.json is ours
                raise VerificationError("the pulled bundle is not the one fetched", where=reference)
            result = replace(result, verified_by=verified.signer_key_id)
        store.sync(concurrency)  # every file and directory of the layout, before it is renamed into place
        publish(work, out)  # --overwrite was checked by prepare_output; an old out is exchanged, never removed first
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        client.http.close()
    return replace(result, path=out)


def _pull_into(
    client: Distribution,
    store: _Store,
    reference: str,
    repo: str,
    tag: str,
    trusted_keys: Sequence[VerifyingKey],
    max_blob: int,
    concurrency: int,
    progress: Progress,
) -> PulledBundle:
    host = client.host
    manifest_bytes, _ = client.manifest(repo, tag, oci.MEDIA_MANIFEST, cap=MAX_MANIFEST)
    manifest_digest = oci.sha256_digest(manifest_bytes)
    try:
        manifest = oci.Manifest.model_validate_json(manifest_bytes)
    except ValidationError as e:
        raise RegistryError(f"{reference} is not a gapseal bundle manifest", where=host) from e
    if manifest.artifact_type != oci.ARTIFACT_BUNDLE or manifest.config.media_type != oci.MEDIA_BUNDLE_CONFIG:
        raise RegistryError(f"{reference} is not a gapseal bundle (artifactType {manifest.artifact_type})", where=host)
    store.write(manifest_bytes, manifest_digest)

    # The signatures, before any blob whose size the manifest gives.
    sigs, mode = signature_referrers(client, repo, manifest_digest)
    if not sigs:
        raise RegistryError(
            f"{reference} has no signature on {host} (neither a referrer nor a {fallback_tag(manifest_digest)} tag)",
            where=host,
            hint="load the bundle into this registry again with gapseal registry load",
        )
    sig_entries = []
    signer: str | None = None
    reasons: list[str] = []
    for sd in sigs:
        if sd.size > MAX_SIGNATURE_MANIFEST:
            raise client.http.error(f"signature manifest {sd.digest} is listed as {sd.size} bytes; refused")
        data = store.manifest(repo, sd.digest, oci.MEDIA_MANIFEST, MAX_SIGNATURE_MANIFEST)
        try:
            sm = oci.Manifest.model_validate_json(data)
        except ValidationError as e:
            raise client.http.error(f"signature manifest {sd.digest} is malformed") from e
        if sm.subject is None or sm.subject.digest != manifest_digest or len(sm.layers) != 1:
            raise client.http.error(f"signature manifest {sd.digest} is not a signature of {reference}")
        if sm.config != oci.empty_config():
            raise client.http.error(f"signature manifest {sd.digest} has an unexpected config")
        layer = sm.layers[0]
        if layer.size > MAX_SIGNATURE_BLOB:
            raise client.http.error(
                f"signature manifest {sd.digest} gives its Sigstore bundle {layer.size} bytes, more than the "
                f"{MAX_SIGNATURE_BLOB} read before verification; refused"
            )
        store.write(oci.EMPTY_BLOB, sm.config.digest)
        sig_bytes = client.blob_bytes(repo, layer.digest, layer.size)
        store.write(sig_bytes, layer.digest)
        sig_entries.append(oci.Descriptor(media_type=oci.MEDIA_MANIFEST, digest=sd.digest, size=len(data)))
        if trusted_keys and signer is None:
            signer = _signed_by(sig_bytes, trusted_keys, manifest_digest, reasons)
    if trusted_keys and signer is None:
        raise VerificationError(
            f"{reference}: no signature by a trusted key names this bundle manifest ({'; '.join(reasons)})",
            where=host,
            hint="check that --key/--trust names the security team's public key; if it does, the registry serves an "
            "altered bundle; nothing was written to --out",
        )
    if not trusted_keys:
        progress.note("no --key/--trust given: the signature is fetched but NOTHING is verified")
    limit = None if trusted_keys else max_blob  # signed sizes need no other bound

    # The descriptor: the name and version must be the ones asked for.
    _within(client, limit, manifest.config.size, "the bundle descriptor")
    store.blob(repo, manifest.config.digest, manifest.config.size)
    try:
        descriptor = BundleDescriptor.load((store.root / oci.blob_path(manifest.config.digest)).read_bytes())
    except (ValueError, VerificationError) as e:
        raise client.http.error(f"{reference}: the bundle descriptor is malformed: {e}") from e
    expected = repo.removeprefix(BUNDLE_REPOSITORY_PREFIX) if repo.startswith(BUNDLE_REPOSITORY_PREFIX) else None
    if descriptor.name != expected or descriptor.version != tag:
        raise client.http.error(
            f"{reference} is {'signed' if trusted_keys else 'labelled'} as bundle {descriptor.name} "
            f"{descriptor.version}, not the {expected or repo} {tag} asked for; refused",
            hint="the registry serves another bundle under this tag; nothing was written to --out",
        )

    for layer in manifest.layers:
        _within(client, limit, layer.size, f"file {layer.digest}")
    store.blobs_parallel([(repo, d.digest, d.size) for d in manifest.layers], concurrency)
    for image in descriptor.images or []:
        if not REPOSITORY.match(image.name):
            raise client.http.error(f"the bundle names an image {image.name!r} that is no repository name")
        # Sizes from the signed descriptor: each document is read up to exactly its size.
        store.manifest(image.name, image.digest, image.media_type, max(image.size, 1))
        blobs: list[tuple[str, str, int]] = []
        for m in image.manifests:
            if image.media_type in INDEX_MEDIA_TYPES:
                store.manifest(image.name, m.digest, m.media_type, max(m.size, 1))
            for b in [m.config, *m.layers]:
                _within(client, limit, b.size, f"image {image.name} blob {b.digest}")
                blobs.append((image.name, b.digest, b.size))
        store.blobs_parallel(blobs, concurrency)

    bundle_entry = oci.Descriptor(media_type=oci.MEDIA_MANIFEST, digest=manifest_digest, size=len(manifest_bytes))
    index = oci.build_index(bundle_entry, sig_entries, image_index_entries(descriptor))
    store.write_file("index.json", index.to_bytes())
    store.write_file("oci-layout", oci.OCI_LAYOUT_BYTES)
    return PulledBundle(
        path=store.root,
        manifest_digest=manifest_digest,
        name=descriptor.name,
        version=descriptor.version,
        blobs=store.count,
        bytes=store.bytes,
        signature_mode=mode,
        verified_by=None,
    )


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _within(client: Distribution, limit: int | None, size: int, what: str) -> None:
    if limit is not None and size > limit:
        raise client.http.error(
            f"{what} is listed as {size} bytes, more than the {limit} read from an unverified bundle; refused",
            hint="pass --key to verify the bundle (signed sizes are read as signed), or raise --max-blob-size",
        )


def _signed_by(
    sig_bytes: bytes, trusted_keys: Sequence[VerifyingKey], manifest_digest: str, reasons: list[str]
) -> str | None:
    """The trusted key id when the Sigstore bundle is by a trusted key and names ``manifest_digest``."""
    try:
        statement = verify_statement(
            sig_bytes, trusted_keys, allowed_predicate_types=frozenset({oci.BUNDLE_PREDICATE_TYPE})
        )
    except SignatureError as e:
        reasons.append(e.message)
        return None
    signed = [s.sha256 for s in statement.subjects if s.name == oci.MANIFEST_SUBJECT_NAME]
    if signed != [manifest_digest.removeprefix("sha256:")]:
        reasons.append("a trusted signature, but for another bundle manifest")
        return None
    return statement.signer_key_id
