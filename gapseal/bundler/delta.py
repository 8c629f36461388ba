"""Deltas: the second delivery carries only the blobs the far side does not have yet.

- ``take_inventory``: what the far side holds (``gapseal bundle inventory DIR... --out have.json``): every blob of the
  given bundles (directories, tars, split sets) whose content hashes to its name, and which bundles they were.
- ``create_delta``: build the full signed bundle, then leave out every file blob and image blob the base has; the
  index, manifests, descriptor and signature are the full bundle's, unchanged, so the signed statement still lists
  every blob. The layout gains a ``gapseal.delta.json`` marker (see ``delta_marker``).
- ``verify_delta``: the delta's files plus, from the base, exactly the blobs the marker lists as left out, verified
  together as one full bundle by the ordinary ``verify_inventory``.
- ``apply_delta``: the same, then the full bundle written beside ``--out`` (hard links from directories where the
  filesystem allows), verified standalone, and renamed into place.

A delta against a base that lacks some left-out blobs fails, naming each missing blob by its file in the bundle.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gapseal.atomic import (
    publish,
    remove_stale_temps,
    sync_filesystem,
    temp_prefix,
    write_new_file,
)
from gapseal.bundler import layout as oci
from gapseal.bundler.create import CreatedBundle, create_bundle, prepare_output
from gapseal.bundler.delta_marker import (
    DELTA_MARKER_NAME,
    BlobRef,
    BundleRef,
    DeltaMarker,
    read_delta_marker,
)
from gapseal.bundler.descriptor import BundleDescriptor
from gapseal.bundler.inventory import LayoutEntry, LayoutInventory, LayoutSink, read_layout_dir, walk_archive
from gapseal.bundler.rollback import RollbackState
from gapseal.bundler.selfcontained import Wheelhouse
from gapseal.bundler.unpack import OutputFile
from gapseal.bundler.verify import VerifiedBundle, read_inventory, verify_read_bundle
from gapseal.canonical import canonical_json
from gapseal.errors import BundleError, UsageError, VerificationError, check_input
from gapseal.jsonlimits import MAX_DOCUMENT, load_model
from gapseal.names import UnsafeNameError, join_under
from gapseal.progress import NO_PROGRESS, Progress
from gapseal.signing.keys import SigningKey, VerifyingKey

INVENTORY_KIND = "BlobInventory"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BlobInventory(_Model):
    """What the far side holds: written by ``bundle inventory``, read by ``bundle create --base``."""

    api_version: Literal["gapseal/v1"] = Field(description="Inventory format version.")
    kind: Literal["BlobInventory"] = Field(description="Always BlobInventory.")
    sources: list[str] = Field(description="The bundles (paths) the inventory was taken from.")
    bundles: list[BundleRef] = Field(description="The bundles found there, by name, version and manifest digest.")
    blobs: list[BlobRef] = Field(description="Every blob held whose content hashes to its name, sorted by digest.")

    def to_bytes(self) -> bytes:
        """Canonical JSON bytes, as written."""
        return canonical_json(self.model_dump(mode="json"))

    def sizes(self) -> dict[str, int]:
        """Digest -> size of every blob held."""
        return {b.digest: b.size for b in self.blobs}


def _bundle_ref(inv: LayoutInventory) -> BundleRef | None:
    """The bundle a read layout holds, read without trust (an inventory only says what is there)."""
    entry = inv.entries.get("index.json")
    if entry is None or entry.content is None:
        return None
    try:
        index = load_model(oci.Index, entry.content, "index.json", error=VerificationError)
        named = [
            m for m in index.manifests if (m.annotations or {}).get(oci.ANNOTATION_REF_NAME) == oci.BUNDLE_REF_NAME
        ]
        if len(named) != 1:
            return None
        manifest_entry = inv.entries.get(oci.blob_path(named[0].digest))
        if manifest_entry is None or manifest_entry.content is None:
            return None
        manifest = load_model(oci.Manifest, manifest_entry.content, "the manifest", error=VerificationError)
        config = inv.entries.get(oci.blob_path(manifest.config.digest))
        if config is None or config.content is None:
            return None
        d = load_model(BundleDescriptor, config.content, "the descriptor", error=VerificationError)
    except VerificationError:
        return None
    return BundleRef(name=d.name, version=d.version, manifest_digest=named[0].digest)


def _good_blobs(inv: LayoutInventory) -> dict[str, LayoutEntry]:
    """Digest -> entry of every blob whose content hashes to its name (a damaged blob is not counted as held)."""
    out: dict[str, LayoutEntry] = {}
    for path, entry in inv.entries.items():
        if path.startswith("blobs/sha256/") and path.removeprefix("blobs/sha256/") == entry.sha256:
            out[f"sha256:{entry.sha256}"] = entry
    return out


def _is_registry_reference(path: Path) -> bool:
    """``HOST:PORT/gapseal/NAME:VERSION`` that is not a local path."""
    text = str(path)
    return not path.exists() and "/" in text and ":" in text.split("/", 1)[0] + text.rsplit("/", 1)[-1]


def take_inventory(
    paths: Sequence[Path],
    *,
    insecure: bool = False,
    allow_hosts: Sequence[str] = (),
    timeout: float | None = None,
    trusted_keys: Sequence[VerifyingKey] = (),
    progress: Progress = NO_PROGRESS,
) -> BlobInventory:
    """Hash every blob of the bundles at ``paths`` (directory, tar or split set each); return what is held.

    A path that does not exist locally but reads as ``HOST:PORT/gapseal/NAME:VERSION`` is a bundle on an on-site
    registry: it is pulled (``bundle pull``, every blob digest-checked) into a scratch directory, inventoried, and
    removed. That moves the bundle over the site's network once; the registry API has no cheaper listing of blobs.
    """
    if not paths:
        raise UsageError("name at least one bundle to take the inventory of")
    blobs: dict[str, int] = {}
    bundles: list[BundleRef] = []
    for path in paths:
        if _is_registry_reference(path):
            held, ref = _registry_inventory(
                str(path),
                insecure=insecure,
                allow_hosts=allow_hosts,
                timeout=timeout,
                trusted_keys=trusted_keys,
                progress=progress,
            )
        else:
            inv = read_inventory(path, progress=progress)
            held, ref = {d: e.size for d, e in _good_blobs(inv).items()}, _bundle_ref(inv)
        blobs.update(held)
        if ref is not None and ref not in bundles:
            bundles.append(ref)
    return BlobInventory(
        api_version="gapseal/v1",
        kind=INVENTORY_KIND,
        sources=[str(p) for p in paths],
        bundles=bundles,
        blobs=[BlobRef(digest=d, size=s) for d, s in sorted(blobs.items())],
    )


def _registry_inventory(
    reference: str,
    *,
    insecure: bool,
    allow_hosts: Sequence[str],
    timeout: float | None,
    trusted_keys: Sequence[VerifyingKey],
    progress: Progress,
) -> tuple[dict[str, int], BundleRef | None]:
    """Digest -> size of the good blobs of a bundle on a registry, and which bundle it is.

    Both are read before the scratch copy is removed: an inventory entry reads its content again from where it was.
    """
    from gapseal.bundler.registry import DEFAULT_TIMEOUT, pull_bundle

    with tempfile.TemporaryDirectory(prefix="gapseal-inventory-") as scratch:
        pulled = pull_bundle(
            reference,
            Path(scratch) / "bundle",
            insecure=insecure,
            allow_hosts=allow_hosts,
            timeout=timeout or DEFAULT_TIMEOUT,
            trusted_keys=trusted_keys,  # with keys: verified, and refused unless it is the name and version asked
            progress=progress,
        )
        inv = read_layout_dir(pulled.path, progress=progress)
        return {d: e.size for d, e in _good_blobs(inv).items()}, _bundle_ref(inv)


def write_inventory(inventory: BlobInventory, out: Path, *, overwrite: bool = False) -> None:
    """Write ``inventory`` to ``out`` atomically (temp file beside it, fsync, rename)."""
    prepare_output(out, overwrite=overwrite)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}")
    try:
        write_new_file(tmp, inventory.to_bytes())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _is_inventory_file(path: Path) -> bool:
    if not path.is_file() or path.is_symlink():
        return False
    with path.open("rb") as f:
        head = f.read(64).lstrip()
    return head.startswith(b"{")


def load_base(path: Path, *, progress: Progress = NO_PROGRESS) -> BlobInventory:
    """The blobs a base holds: an inventory file as written by ``bundle inventory``, or a bundle read now."""
    if _is_inventory_file(path):
        with path.open("rb") as f:
            data = f.read(MAX_DOCUMENT + 1)  # more is refused by load_model: never read a huge file whole
        try:
            return load_model(BlobInventory, data, "the base inventory", error=UsageError, where=str(path))
        except UsageError as e:
            e.hint = "write one with 'gapseal bundle inventory BUNDLE... --out have.json' on the far side"
            raise
    check_input(path, "the base", want="any", hint="name an earlier bundle or an inventory file")
    return take_inventory([path], progress=progress)


# ---------------------------------------------------------------------------------------------------------------
# Create
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedDelta:
    """The result of ``create_delta``."""

    full: CreatedBundle
    """The full bundle as built (its ``path`` is the delta's path)."""
    marker: DeltaMarker
    stored_blobs: int
    stored_bytes: int
    """Bytes of the blobs the delta carries."""


def _omittable(descriptor: BundleDescriptor) -> set[str]:
    """Blobs a delta may leave out: every file of every component and every image document and blob.

    The bundle manifest, its descriptor and the signature are never left out: they are what makes the delta readable
    and say what it becomes.
    """
    digests = {entry.digest for _, entry in descriptor.layers()}
    for image in descriptor.images or []:
        digests.update(d for _, d in image.subjects())
    return digests


def create_delta(
    spec_path: Path,
    key: SigningKey,
    out: Path,
    base: Path,
    *,
    follow_symlinks: bool = False,
    link: bool = True,
    overwrite: bool = False,
    source_date_epoch: int | None = None,
    wheels: Wheelhouse | None = None,
    progress: Progress = NO_PROGRESS,
) -> CreatedDelta:
    """Build the bundle of ``spec_path`` as a delta against ``base`` (a bundle or an inventory file) at ``out``."""
    have = load_base(base, progress=progress)
    prepare_output(out, overwrite=overwrite)
    for leftover in remove_stale_temps(out, "delta"):  # what a killed create --base (kill -9) left behind
        progress.note(f"removed {leftover}, left by an interrupted create")
    work = out.parent / f"{temp_prefix(out, 'delta')}{uuid.uuid4().hex[:8]}"
    try:
        full = create_bundle(
            spec_path,
            key,
            work,
            follow_symlinks=follow_symlinks,
            link=link,
            source_date_epoch=source_date_epoch,
            wheels=wheels,
            progress=progress,
        )
        held = have.sizes()
        blobs_dir = work / "blobs" / "sha256"
        omitted: list[BlobRef] = []
        for digest in sorted(_omittable(full.descriptor)):
            blob = blobs_dir / digest.removeprefix("sha256:")
            size = blob.stat().st_size
            if held.get(digest) == size:
                omitted.append(BlobRef(digest=digest, size=size))
                blob.unlink()
        marker = DeltaMarker(
            api_version="gapseal/v1",
            kind="BundleDelta",
            bundle=BundleRef(
                name=full.descriptor.name, version=full.descriptor.version, manifest_digest=full.manifest_digest
            ),
            base=list(have.bundles),
            base_source=str(base),
            omitted=omitted,
        )
        write_new_file(work / DELTA_MARKER_NAME, marker.to_bytes())
        stored = [p.stat().st_size for p in blobs_dir.iterdir()]
        sync_filesystem(work)  # every file and directory durable before the rename makes them visible
        publish(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return CreatedDelta(
        full=CreatedBundle(
            path=out,
            manifest_digest=full.manifest_digest,
            descriptor=full.descriptor,
            blob_count=full.blob_count,
            total_bytes=full.total_bytes,
            linked_files=full.linked_files,
            copied_files=full.copied_files,
        ),
        marker=marker,
        stored_blobs=len(stored),
        stored_bytes=sum(stored),
    )


# ---------------------------------------------------------------------------------------------------------------
# Verify and apply
# ---------------------------------------------------------------------------------------------------------------


def _titles(inv: LayoutInventory) -> dict[str, list[str]]:
    """Digest -> what it is in the bundle (layer titles, image subjects), read from the delta for messages only."""
    out: dict[str, list[str]] = {}
    try:
        index = load_model(oci.Index, inv.entries["index.json"].content or b"", "index.json", error=VerificationError)
        named = [
            m for m in index.manifests if (m.annotations or {}).get(oci.ANNOTATION_REF_NAME) == oci.BUNDLE_REF_NAME
        ]
        content = inv.entries[oci.blob_path(named[0].digest)].content or b""
        manifest = load_model(oci.Manifest, content, "the manifest", error=VerificationError)
        content = inv.entries[oci.blob_path(manifest.config.digest)].content or b""
        d = load_model(BundleDescriptor, content, "the descriptor", error=VerificationError)
    except (KeyError, IndexError, VerificationError):
        return out
    for title, entry in d.layers():
        out.setdefault(entry.digest, []).append(title)
    for image in d.images or []:
        for name, digest in image.subjects():
            out.setdefault(digest, []).append(name)
    return out


@dataclass(frozen=True)
class _Merged:
    inventory: LayoutInventory
    marker: DeltaMarker
    delta: LayoutInventory
    base: LayoutInventory


_Reader = Callable[[Path, frozenset[str] | None], LayoutInventory]
"""Reads a bundle (directory, tar, split set) into an inventory; ``wanted``: the paths the caller will need from it."""


def _merge(delta: Path, base: Path, progress: Progress, reader: _Reader | None = None) -> _Merged:
    """The delta's files plus the base's copies of the blobs the delta left out; refuse a base that lacks some."""
    read: _Reader = reader or (lambda path, _wanted: read_inventory(path, progress=progress))
    if _is_inventory_file(base):
        raise UsageError(
            "verifying or applying a delta needs the base bundle itself, not an inventory of it",
            where=str(base),
            hint="pass the earlier bundle (directory, tar or first part) already on this side as --base",
        )
    inv = read(delta, None)
    marker = read_delta_marker(inv)
    if marker is None:
        raise BundleError(
            f"{delta} is a full bundle, not a delta (it holds no {DELTA_MARKER_NAME})",
            where=str(delta),
            hint=f"verify it without --base: 'gapseal bundle verify {delta} --key …'",
        )
    problems: list[str] = []
    index_entry = inv.entries.get("index.json")
    if index_entry is None or index_entry.content is None:
        raise VerificationError("the delta's index.json is missing", where=str(delta))
    index = load_model(
        oci.Index, index_entry.content, "the delta's index.json", error=VerificationError, where=str(delta)
    )
    named = [
        m.digest for m in index.manifests if (m.annotations or {}).get(oci.ANNOTATION_REF_NAME) == "gapseal-bundle"
    ]
    if named != [marker.bundle.manifest_digest]:
        raise VerificationError(
            f"{DELTA_MARKER_NAME} names bundle manifest {marker.bundle.manifest_digest}, index.json names {named}",
            where=str(delta),
            hint="the delta is damaged; obtain a fresh copy from the security team",
        )
    for blob in marker.omitted:
        if oci.blob_path(blob.digest) in inv.entries:
            problems.append(f"{DELTA_MARKER_NAME} lists {blob.digest} as left out, but the delta holds it")
    if problems:
        raise VerificationError("the delta is inconsistent: " + "; ".join(problems), where=str(delta))

    base_inv = read(base, frozenset(oci.blob_path(b.digest) for b in marker.omitted))
    held = _good_blobs(base_inv)
    missing = [b for b in marker.omitted if b.digest not in held or held[b.digest].size != b.size]
    if missing:
        titles = _titles(inv)
        listed = "".join(
            f"\n  - {', '.join(titles.get(b.digest, ['(not a file of this bundle)']))}: {b.digest} ({b.size} bytes)"
            for b in missing
        )
        raise VerificationError(
            f"the base lacks {len(missing)} of the {len(marker.omitted)} blobs this delta of "
            f"{marker.bundle.name} {marker.bundle.version} left out:{listed}",
            where=str(base),
            hint=f"the delta was made against {marker.describe_base()}; pass that bundle as --base",
        )
    entries = {p: e for p, e in inv.entries.items() if p != DELTA_MARKER_NAME}
    for blob in marker.omitted:
        path = oci.blob_path(blob.digest)
        entries[path] = held[blob.digest]
    merged = LayoutInventory(
        entries=dict(sorted(entries.items())),
        source=f"{delta} + {base}",
        directories=inv.directories,
    )
    return _Merged(merged, marker, inv, base_inv)


def verify_delta(
    delta: Path,
    base: Path,
    trusted_keys: Sequence[VerifyingKey],
    *,
    rollback: RollbackState | None = None,
    allow_downgrade: bool = False,
    record: bool = False,
    now: datetime | None = None,
    progress: Progress = NO_PROGRESS,
) -> VerifiedBundle:
    """Verify ``delta`` completed by ``base`` as the full bundle it stands for; raise ``VerificationError`` if not."""
    merged = _merge(delta, base, progress)
    return verify_read_bundle(
        delta,
        merged.inventory,
        trusted_keys,
        layout_dir=None,
        rollback=rollback,
        allow_downgrade=allow_downgrade,
        record=record,
        now=now,
    )


class _Materializer(LayoutSink):
    """Reads the delta and the base for ``_merge`` and writes, in the same pass, the files the full bundle needs.

    Called as a ``_Reader``, for every form alike: the wanted files (every file but the marker for the delta, the
    left-out blobs for the base) are written under ``root`` while they are hashed, so the merged inventory describes
    exactly the bytes written and nothing is read twice. A directory's files are copied (never hard-linked: the full
    bundle must not share an inode with the base or the delta); an archive's members are written as they stream.
    Every target is created with ``O_EXCL | O_NOFOLLOW`` after ``join_under`` checked it stays under ``root``.
    """

    def __init__(self, root: Path, progress: Progress) -> None:
        self.root = root
        self.progress = progress
        self._wanted: frozenset[str] | None = None
        self._fd: int | None = None
        self._writer: OutputFile | None = None
        self._source = ""

    def __call__(self, path: Path, wanted: frozenset[str] | None) -> LayoutInventory:
        if path.is_symlink():
            raise VerificationError("the bundle path is a symbolic link", where=str(path), hint="name the real path")
        if path.is_dir():
            return read_layout_dir(
                path,
                progress=self.progress,
                only=wanted,
                copy_to=self.root,
                not_copied=frozenset({DELTA_MARKER_NAME}),
            )
        if not path.is_file():
            raise VerificationError(f"bundle {path} does not exist", where=str(path), hint="check the path")
        self._wanted, self._source = wanted, str(path)
        try:
            return walk_archive(path, self, progress=self.progress)
        finally:
            self.close()

    def _want(self, path: str) -> bool:
        return path != DELTA_MARKER_NAME if self._wanted is None else path in self._wanted

    def directory(self, path: str) -> None:
        """Directories are made on demand, under ``root`` only."""

    def begin(self, path: str) -> None:
        """Open the member's target when it is wanted."""
        if self._want(path):
            try:
                target = join_under(self.root, path, what="layout file")
            except UnsafeNameError as e:  # pragma: no cover - the strict tar reader refuses such names first
                raise VerificationError(str(e), where=self._source) from e
            target.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            self._fd = os.open(target, flags, 0o644)
            self._writer = OutputFile(self._fd)  # large chunks O_DIRECT from the reader's buffer, as unpack

    def write(self, chunk: memoryview) -> None:
        """Write the member's bytes (if wanted)."""
        if self._writer is not None:
            self._writer.write(chunk)

    def end(self, entry: LayoutEntry) -> None:
        """Close the member; a blob must hash to its name."""
        if self._fd is None or self._writer is None:
            return
        fd, self._fd, self._writer = self._fd, None, None
        os.close(fd)  # flushed with everything else by sync_filesystem before the rename
        if entry.path.startswith("blobs/sha256/") and entry.path.removeprefix("blobs/sha256/") != entry.sha256:
            raise VerificationError(
                f"blob {entry.path} is corrupt: its content hashes to sha256:{entry.sha256}", where=self._source
            )

    def close(self) -> None:
        """Close a member left open by an error."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._writer = None


@dataclass(frozen=True)
class AppliedDelta:
    """The result of ``apply_delta``: the full bundle at ``path``, verified standalone."""

    path: Path
    verified: VerifiedBundle
    from_delta: int
    """Files taken from the delta."""
    from_base: int
    """Blobs taken from the base."""
    linked: int = 0
    """Always 0: files are copied or written, never hard-linked (kept for the ``--json`` document)."""


def apply_delta(
    delta: Path,
    base: Path,
    out: Path,
    trusted_keys: Sequence[VerifyingKey],
    *,
    overwrite: bool = False,
    rollback: RollbackState | None = None,
    allow_downgrade: bool = False,
    now: datetime | None = None,
    progress: Progress = NO_PROGRESS,
) -> AppliedDelta:
    """Verify ``delta`` with ``base`` and write the full bundle at ``out``, in one pass over each input.

    Every file the full bundle needs is written into a scratch directory beside ``out`` while it is hashed (copied
    from a directory, streamed from a tar or split set); the merged inventory of those written bytes is then verified
    as one full bundle, with the same rollback and expiry checks as ``verify``. Applying uses the bundle: with
    ``rollback`` the high-water mark moves to its version. Nothing appears at ``out`` unless everything verified;
    the scratch is always removed, and a write failure (a full disk) names ``out``.
    """
    prepare_output(out, overwrite=overwrite)
    for path in remove_stale_temps(out, "applying"):
        progress.note(f"removed {path}, left by an interrupted apply")
    try:
        scratch = Path(tempfile.mkdtemp(prefix=temp_prefix(out, "applying"), dir=out.parent))
    except OSError as e:
        raise BundleError(f"cannot write the output {out}: {e.strerror or e}", where=str(out)) from e
    try:
        work = Path(os.path.realpath(scratch)) / "bundle"
        (work / "blobs" / "sha256").mkdir(parents=True)
        materializer = _Materializer(work, progress)
        merged = _merge(delta, base, progress, reader=materializer)
        # What was written is exactly what the merged inventory hashed: verifying it verifies the files at ``work``.
        verified = verify_read_bundle(
            out,
            merged.inventory,
            trusted_keys,
            layout_dir=out,
            rollback=rollback,
            allow_downgrade=allow_downgrade,
            record=rollback is not None,
            now=now,
        )
        for d in (p for p in work.rglob("*") if p.is_dir()):
            d.chmod(0o755)
        work.chmod(0o755)
        sync_filesystem(work)  # every file and directory durable before the rename makes them visible
        publish(work, out)
    except OSError as e:
        raise BundleError(
            f"cannot write the output {out}: {e.strerror or e}; nothing was applied",
            where=str(out),
            hint="free space on the output's file system (or choose another --out) and apply again",
        ) from e
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    n_base = len(merged.marker.omitted)
    return AppliedDelta(out, verified, len(merged.inventory.entries) - n_base, n_base)
