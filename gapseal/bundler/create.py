"""``create_bundle``: a spec and its inputs become one signed OCI image layout.

Every input file is read exactly once: hard-linked into the layout and hashed, or (across filesystems) copied
and hashed in the same pass, two files at a time on two cores. All work happens in a temporary directory beside
the output, renamed into place only when the bundle is complete and signed, so an interrupted create leaves
nothing at the output path that could verify.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from gapseal.atomic import fsync_dir, publish, remove_stale_temps, temp_prefix, write_new_file
from gapseal.bundler import layout as oci
from gapseal.bundler.descriptor import (
    DESCRIPTOR_API_VERSION,
    DESCRIPTOR_KIND,
    Build,
    BuildVariant,
    BundleDescriptor,
    FileEntry,
    FilesComponent,
    ImageBlob,
    ImageComponent,
    ImageManifest,
    ModelComponent,
    format_time,
)
from gapseal.bundler.images import ChildRef, ImportedImage, import_image
from gapseal.bundler.spec import LoadedSpec, load_spec
from gapseal.bundler.statement import (
    SUBJECT_TOOL_LIMIT,
    bundle_predicate,
    image_index_entries,
    statement_subjects,
)
from gapseal.errors import InputError, SpecError, UsageError, output_exists, output_not_writable
from gapseal.hashing import FileDigest, copy_and_hash, hash_file, parallel_map
from gapseal.progress import NO_PROGRESS, Progress
from gapseal.signing.attestation import sign_statement
from gapseal.signing.keys import SigningKey

if TYPE_CHECKING:
    from gapseal.bundler.inputs import ComponentInputs, InputFile
    from gapseal.bundler.model_formats import ModelFormatInfo
    from gapseal.bundler.selfcontained import Wheelhouse

# What only building needs (inputs, model formats, ELF scanning, model signatures, wheels) is imported where it is
# used: ``bundle pull`` and ``extract`` import this module for ``prepare_output`` alone.


@dataclass(frozen=True)
class CreatedBundle:
    """The result of ``create_bundle``."""

    path: Path
    manifest_digest: str
    descriptor: BundleDescriptor
    blob_count: int
    total_bytes: int
    linked_files: int
    copied_files: int
    warnings: tuple[str, ...] = ()
    """What the operator should know but does not stop the bundle (an unknown model format, many subjects)."""


def creation_time(spec: LoadedSpec, source_date_epoch: int | None) -> str:
    """The bundle's created time: the spec's, else ``SOURCE_DATE_EPOCH``, else now (not reproducible)."""
    if spec.spec.metadata.created is not None:
        return format_time(spec.spec.metadata.created)
    if source_date_epoch is not None:
        try:
            return format_time(datetime.fromtimestamp(source_date_epoch, UTC))
        except (OverflowError, OSError, ValueError):
            raise UsageError(
                f"SOURCE_DATE_EPOCH={source_date_epoch} is not a time this system can represent",
                hint="give seconds since 1970, e.g. the commit time: git log -1 --format=%ct",
            ) from None
    return format_time(datetime.now(UTC))


def prepare_output(out: Path, *, overwrite: bool) -> None:
    """Refuse to clobber ``out`` unless asked, and check its parent is writable before any long work."""
    try:
        os.lstat(out)
        exists = True
    except FileNotFoundError:
        exists = False
    except OSError as e:  # a name too long, a parent that is a file: say so instead of a traceback
        raise output_not_writable(out, e.strerror or str(e)) from e
    if exists and not overwrite:
        raise output_exists(out)  # exit 2, worded as in every command (gapseal.errors)
    parent = out.parent if out.parent != Path("") else Path()
    if not parent.is_dir():
        raise output_not_writable(out, f"directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise output_not_writable(out, f"directory {parent} is not writable")


_OUTPUT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)
"""OSErrors that mean the output cannot be written (reported naming the output, not an input)."""


class _BlobStore:
    """Blobs being written into a layout under construction; each file hashed once while linked or copied."""

    def __init__(self, root: Path, *, link: bool, progress: Progress) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.incoming = root / ".incoming"
        self.blobs.mkdir(parents=True)
        self.incoming.mkdir()
        self.link = link
        self.progress = progress
        self.linked = 0
        self.copied = 0

    def add_file(self, item: tuple[str, InputFile]) -> FileDigest:
        """Store one input file; return its digest. Hard link when possible, else copy, hashing in the same pass."""
        label, source = item
        tmp = self.incoming / uuid.uuid4().hex
        digest: FileDigest | None = None
        if self.link:
            try:
                os.link(source.source, tmp, follow_symlinks=False)
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                    raise InputError(f"cannot link {source.source}: {e.strerror}", where=label) from e
            else:
                # An input swapped for a symlink after it was listed would be linked as the symlink itself.
                if not stat.S_ISREG(os.lstat(tmp).st_mode):
                    tmp.unlink()
                    raise InputError(f"{source.source} is no longer a regular file", where=label)
                digest = hash_file(tmp, progress=self.progress, label=f"hashing {label}")
                self.linked += 1
        if digest is None:
            try:
                digest = copy_and_hash(source.source, tmp, progress=self.progress, label=f"copying {label}")
            except OSError as e:
                if e.errno in _OUTPUT_ERRNOS:
                    raise  # a full or read-only disk is the output's problem: create_bundle names the output
                raise InputError(f"cannot read {source.source}: {e.strerror}", where=label) from e
            self.copied += 1
        if digest.size != source.size:
            raise InputError(
                f"{source.source} changed while it was being bundled ({source.size} bytes, then {digest.size})",
                where=label,
                hint="stop whatever writes to the input and run create again",
            )
        os.replace(tmp, self.blobs / digest.sha256)
        # rename() between two links of one inode does nothing (POSIX): the same input listed twice (two variants
        # with the same path) leaves its second link behind.
        tmp.unlink(missing_ok=True)
        return digest

    def add_bytes(self, data: bytes) -> str:
        """Store an in-memory document (manifest, config, signature); return its digest."""
        digest = oci.sha256_digest(data)
        target = self.root / oci.blob_path(digest)
        if not target.exists():
            tmp = self.incoming / uuid.uuid4().hex
            write_new_file(tmp, data)
            os.replace(tmp, target)
        return digest


def _title(spec: LoadedSpec, component: ComponentInputs, rel_path: str) -> str:
    """The layer title of a file; the same scheme as ``BundleDescriptor.layers``."""
    if component.kind == "model":
        return f"models/{component.name}/{rel_path}"
    if component.kind == "files":
        return f"files/{component.name}/{rel_path}"
    build = next(b for b in spec.spec.builds if b.name == component.name)
    assert component.variant is not None  # noqa: S101 - collect_inputs sets it for builds
    variant = build.variants[component.variant]
    return f"builds/{component.name}/{variant.backend}-{variant.arch}/{rel_path}"


def create_bundle(
    spec_path: Path,
    key: SigningKey,
    out: Path,
    *,
    follow_symlinks: bool = False,
    link: bool = True,
    overwrite: bool = False,
    source_date_epoch: int | None = None,
    wheels: Wheelhouse | None = None,
    sbom: bool = True,
    progress: Progress = NO_PROGRESS,
) -> CreatedBundle:
    """Build the signed bundle described by ``spec_path`` at ``out`` (see the module docstring).

    ``wheels`` (``--include-self``) adds gapseal's own wheels; ``sbom`` adds the CycloneDX SBOM of everything.
    """
    from gapseal.bundler.inputs import collect_inputs
    from gapseal.bundler.model_formats import detect_model_format
    from gapseal.bundler.model_signature import MODEL_SIGNATURE_NAME
    from gapseal.bundler.selfcontained import complete_descriptor

    spec = load_spec(spec_path)
    prepare_output(out, overwrite=overwrite)
    now = datetime.now(UTC)
    meta = spec.spec.metadata
    if meta.expires is not None and meta.expires <= now:
        raise SpecError(
            f"{spec.path}: metadata.expires: the bundle would already be expired ({format_time(meta.expires)})",
            where=str(spec.path),
            hint="set a later expires, or leave it out",
        )
    components = collect_inputs(spec, follow_symlinks=follow_symlinks)
    created = creation_time(spec, source_date_epoch)
    expires = format_time(meta.expires) if meta.expires is not None else None
    warnings: list[str] = []

    for leftover in remove_stale_temps(out, "creating"):  # what a killed create (kill -9) left behind
        progress.note(f"removed {leftover}, left by an interrupted create")
    work = out.parent / f"{temp_prefix(out, 'creating')}{uuid.uuid4().hex[:8]}"
    work.mkdir(mode=0o755)
    try:
        store = _BlobStore(work, link=link, progress=progress)
        images = [
            import_image(
                name=image.name,
                source=image.source,
                platforms=image.platforms,
                spec_dir=spec.directory,
                blobs_dir=store.blobs,
                scratch=store.incoming / f"image-{image.name}",
                insecure=image.insecure,
                add_document=store.add_bytes,
                progress=progress,
            )
            for image in spec.spec.images
        ]
        items = [(comp, f) for comp in components for f in comp.files]
        for comp, f in items:
            if comp.kind == "model" and f.rel_path == MODEL_SIGNATURE_NAME:
                raise InputError(
                    f"model {comp.name!r} already holds a file named {MODEL_SIGNATURE_NAME}",
                    where=str(f.source),
                    hint="gapseal writes the model's OpenSSF signature under that name; remove or rename the file",
                )
        # Headers first: a malformed safetensors/GGUF header is reported in milliseconds, not after hashing.
        formats = {
            comp.name: detect_model_format(
                comp.files, next(m.format for m in spec.spec.models if m.name == comp.name), model=comp.name
            )
            for comp in components
            if comp.kind == "model"
        }
        warnings += [
            f"model {name!r}: format not recognised (no safetensors, GGUF, PyTorch or ONNX weights found); "
            "it is carried as plain files with no header facts"
            for name, info in formats.items()
            if info.format == "unknown"
        ]
        # Largest first, so the two hashing threads finish together.
        order = sorted(range(len(items)), key=lambda i: -items[i][1].size)
        progress.note(f"hashing {len(items)} files ({sum(f.size for _, f in items)} bytes)")
        digests_in_order = parallel_map(
            store.add_file, [(_title(spec, items[i][0], items[i][1].rel_path), items[i][1]) for i in order]
        )
        digests: dict[int, FileDigest] = dict(zip(order, digests_in_order, strict=True))

        entries: dict[int, list[FileEntry]] = {}
        for idx, (comp, f) in enumerate(items):
            d = digests[idx]
            media = (
                oci.model_media_type(f.rel_path)
                if comp.kind == "model"
                else (oci.MEDIA_FILE if comp.kind == "files" else oci.MEDIA_BUILD)
            )
            entries.setdefault(id(comp), []).append(
                FileEntry(path=f.rel_path, digest=d.digest, size=d.size, media_type=media)
            )

        descriptor = _describe(spec, components, entries, formats, store, key, created=created, expires=expires)
        if images:
            descriptor = descriptor.model_copy(update={"images": [_image_component(i) for i in images]})
        descriptor = complete_descriptor(descriptor, store, wheels=wheels, sbom=sbom)  # wheels, then the SBOM
        # The rules verify applies to the signed descriptor, applied before signing: never write what verify refuses.
        problems = descriptor.problems(now=now)
        if problems:
            raise InputError(
                "the bundle would not verify: " + "; ".join(problems),
                where=str(spec.path),
                hint="rename the inputs or fix the spec",
            )
        config_bytes = descriptor.to_bytes()
        config = oci.Descriptor(
            media_type=oci.MEDIA_BUNDLE_CONFIG, digest=store.add_bytes(config_bytes), size=len(config_bytes)
        )
        layers = [
            oci.Descriptor(
                media_type=entry.media_type,
                digest=entry.digest,
                size=entry.size,
                annotations={oci.ANNOTATION_TITLE: title},
            )
            for title, entry in descriptor.layers()
        ]
        manifest = oci.Manifest(
            schema_version=2,
            media_type=oci.MEDIA_MANIFEST,
            artifact_type=oci.ARTIFACT_BUNDLE,
            config=config,
            layers=layers,
            annotations={
                oci.ANNOTATION_CREATED: created,
                oci.ANNOTATION_TITLE: meta.name,
                oci.ANNOTATION_VERSION: meta.version,
            },
        )
        manifest_bytes = manifest.to_bytes()
        manifest_desc = oci.Descriptor(
            media_type=oci.MEDIA_MANIFEST, digest=store.add_bytes(manifest_bytes), size=len(manifest_bytes)
        )

        subjects = statement_subjects(manifest_desc.digest, config.digest, descriptor)
        if len(subjects) > SUBJECT_TOOL_LIMIT:
            warnings.append(
                f"the signed statement has {len(subjects)} subjects; cosign and sigstore-go accept at most "
                f"{SUBJECT_TOOL_LIMIT}, so only gapseal can verify this bundle's signature"
            )
        statement = sign_statement(
            subjects,
            oci.BUNDLE_PREDICATE_TYPE,
            bundle_predicate(descriptor, manifest_desc.digest),
            key,
        )
        store.add_bytes(oci.EMPTY_BLOB)
        sig_manifest_bytes = oci.signature_manifest(manifest_desc, statement, created=created).to_bytes()
        store.add_bytes(statement)
        sig_desc = oci.Descriptor(
            media_type=oci.MEDIA_MANIFEST, digest=store.add_bytes(sig_manifest_bytes), size=len(sig_manifest_bytes)
        )
        write_new_file(
            work / "index.json", oci.build_index(manifest_desc, [sig_desc], image_index_entries(descriptor)).to_bytes()
        )
        write_new_file(work / "oci-layout", oci.OCI_LAYOUT_BYTES)
        store.incoming.rmdir()
        fsync_dir(store.blobs)
        fsync_dir(work)

        publish(work, out)  # the caller's --overwrite was checked by prepare_output
    except OSError as e:
        shutil.rmtree(work, ignore_errors=True)
        if e.errno in _OUTPUT_ERRNOS:
            raise output_not_writable(out, e.strerror or str(e)) from e
        raise
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise

    return CreatedBundle(
        path=out,
        manifest_digest=manifest_desc.digest,
        descriptor=descriptor,
        blob_count=len(list((out / "blobs" / "sha256").iterdir())),
        total_bytes=descriptor.total_size(),
        linked_files=store.linked,
        copied_files=store.copied,
        warnings=tuple(warnings),
    )


def _image_component(image: ImportedImage) -> ImageComponent:
    def blob(ref: ChildRef) -> ImageBlob:
        return ImageBlob(digest=ref.digest, size=ref.size, media_type=ref.media_type)

    return ImageComponent(
        name=image.name,
        source=image.source,
        digest=image.digest,
        size=image.size,
        media_type=image.media_type,
        source_digest=image.source_digest,
        converted_from=image.converted_from,
        platforms=[m.platform for m in image.manifests if m.platform is not None],
        manifests=[
            ImageManifest(
                platform=m.platform,
                digest=m.digest,
                size=m.size,
                media_type=m.media_type,
                config=blob(m.config),
                layers=[blob(layer) for layer in m.layers],
            )
            for m in image.manifests
        ],
    )


def _describe(
    spec: LoadedSpec,
    components: list[ComponentInputs],
    entries: dict[int, list[FileEntry]],
    formats: dict[str, ModelFormatInfo],
    store: _BlobStore,
    key: SigningKey,
    *,
    created: str,
    expires: str | None,
) -> BundleDescriptor:
    from gapseal.bundler.elf import describe_binaries, scan_files
    from gapseal.bundler.model_signature import MODEL_SIGNATURE_NAME, sign_model

    s = spec.spec
    models: list[ModelComponent] = []
    files: list[FilesComponent] = []
    builds: dict[str, list[BuildVariant]] = {}
    specs_by_name = {m.name: m for m in s.models}
    variant_specs = {(b.name, i): v for b in s.builds for i, v in enumerate(b.variants)}
    for comp in components:
        comp_entries = sorted(entries.get(id(comp), []), key=lambda e: e.path)
        if comp.kind == "model":
            mspec = specs_by_name[comp.name]
            info = formats[comp.name]
            sig_bytes = sign_model(
                [(e.path, e.digest.removeprefix("sha256:"), e.size) for e in comp_entries], key, model_name=comp.name
            )
            signature = FileEntry(
                path=MODEL_SIGNATURE_NAME,
                digest=store.add_bytes(sig_bytes),
                size=len(sig_bytes),
                media_type=oci.MEDIA_MODEL_SIGNATURE,
            )
            models.append(
                ModelComponent(
                    name=comp.name,
                    format=info.format,
                    format_details=info.model_dump(mode="json", exclude={"format"}, exclude_none=True),
                    license=mspec.license,
                    source=mspec.source,
                    files=comp_entries,
                    signature=signature,
                )
            )
        elif comp.kind == "files":
            files.append(FilesComponent(name=comp.name, files=comp_entries))
        else:
            assert comp.variant is not None  # noqa: S101 - collect_inputs sets it for builds
            vspec = variant_specs[(comp.name, comp.variant)]
            binaries = describe_binaries(scan_files((f.rel_path, f.source) for f in comp.files))
            builds.setdefault(comp.name, []).append(
                BuildVariant(
                    backend=vspec.backend,
                    arch=vspec.arch,
                    requires=vspec.requires,
                    files=comp_entries,
                    binaries=binaries,
                )
            )
    return BundleDescriptor(
        api_version=DESCRIPTOR_API_VERSION,
        kind=DESCRIPTOR_KIND,
        name=s.metadata.name,
        version=s.metadata.version,
        created=created,
        expires=expires,
        description=s.metadata.description or None,
        license=s.metadata.license,
        models=models,
        files=files,
        builds=[Build(name=b.name, variants=builds.get(b.name, [])) for b in s.builds],
        services=list(s.services) or None,
    )
