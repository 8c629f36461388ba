"""The bundle descriptor: the bundle manifest's config blob, what the bundle holds and for which hardware.

It is written once as canonical JSON by ``create`` and, being a blob named by its digest and listed in the signed
statement, it is covered by the signature. Readers (verify, inspect, the installer) parse it with ``load``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gapseal.bundler.images import INDEX_MEDIA_TYPES, manifest_labels
from gapseal.bundler.rollback import version_problem
from gapseal.bundler.spec import Requirements, ServiceSpec, bundle_name_problem
from gapseal.canonical import canonical_json
from gapseal.errors import VerificationError
from gapseal.jsonlimits import load_model
from gapseal.names import collision_key, collisions, name_problem, path_problem

DESCRIPTOR_API_VERSION = "gapseal/v1"
DESCRIPTOR_KIND = "BundleDescriptor"
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
"""A blob's name is its digest: anything else could name a path outside ``blobs/sha256/``."""
CLOCK_SKEW = timedelta(days=1)
"""How far in the future a bundle's ``created`` may lie (clock differences between the two sides)."""

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def parse_time(value: str) -> datetime:
    """An RFC 3339 date-time with a time zone (``2026-01-31T12:00:00Z``); ``ValueError`` saying why otherwise."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError(f"{value!r} is not an RFC 3339 date-time with a time zone (e.g. 2026-01-31T12:00:00Z)")
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not a real date and time") from None


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with second precision: the one time format in bundles."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileEntry(_Model):
    """One file of a component, stored as one blob."""

    path: str = Field(description="Path inside the component, posix, relative (e.g. 'model.safetensors').")
    digest: str = Field(
        pattern=DIGEST_PATTERN, description="sha256 digest of the content, 'sha256:<hex>'; the blob's name."
    )
    size: int = Field(ge=0, description="Size in bytes.")
    media_type: str = Field(description="Layer media type (ModelPack types for models).")


class ModelComponent(_Model):
    """Model weights with their detected format."""

    name: str = Field(description="Component name from the spec.")
    format: str = Field(description="Detected format: safetensors, gguf, pytorch, onnx or unknown.")
    format_details: dict[str, Any] = Field(description="Format facts: tensor count, dtypes, parameters, quantization.")
    license: str | None = Field(default=None, description="License from the spec.")
    source: str | None = Field(default=None, description="Where the weights came from, from the spec.")
    files: list[FileEntry] = Field(description="Every file of the model, sorted by path.")
    signature: FileEntry | None = Field(
        default=None, description="OpenSSF model signature (model-signing) over the files, placed as 'model.sig'."
    )


class FilesComponent(_Model):
    """A plain directory or file carried as is (documents, configuration)."""

    name: str = Field(description="Component name from the spec.")
    files: list[FileEntry] = Field(description="Every file, sorted by path.")


class NeededLibrary(_Model):
    """A shared library some ELF file of a build needs and no file of the build provides."""

    name: str = Field(description="The DT_NEEDED name, e.g. 'libstdc++.so.6'.")
    needed_by: str = Field(description="The first file (by path) that needs it; 'x.whl!member' inside a wheel.")


class BinaryRequirements(_Model):
    """What the build's ELF executables and shared objects need from a host (read at create, gapseal.bundler.elf)."""

    elf_files: int = Field(ge=0, description="How many ELF files the variant holds (wheels' members included).")
    machines: list[str] = Field(description="Instruction sets of those files (e_machine, binutils names), sorted.")
    glibc: str | None = Field(default=None, description="Highest GLIBC_x.y symbol version needed, e.g. '2.34'.")
    glibc_needed_by: str | None = Field(default=None, description="The first file that needs that glibc version.")
    libraries: list[NeededLibrary] = Field(description="Needed libraries the host's loader must resolve, sorted.")
    unreadable: dict[str, str] = Field(
        default_factory=dict, description="Files that look like ELF but could not be read, with why (fail closed)."
    )


class BuildVariant(_Model):
    """One hardware-specific build of an inference server."""

    backend: Literal["cuda", "rocm", "vulkan", "cpu"] = Field(description="Accelerator backend.")
    arch: Literal["amd64", "arm64"] = Field(description="CPU architecture.")
    requires: Requirements = Field(description="What a host must have for this variant.")
    files: list[FileEntry] = Field(description="Every file of the build, sorted by path.")
    binaries: BinaryRequirements | None = Field(
        default=None, description="What the variant's ELF files need from a host; absent when it has none."
    )


class Build(_Model):
    """An inference build with its variants, in the spec's order of preference."""

    name: str = Field(description="Build name from the spec.")
    variants: list[BuildVariant] = Field(description="Variants; the installer picks the first a host satisfies.")


class ImageBlob(_Model):
    """A blob an image manifest references: its config or one layer."""

    digest: str = Field(pattern=DIGEST_PATTERN, description="sha256 digest, 'sha256:<hex>'; the blob's name.")
    size: int = Field(ge=0, description="Size in bytes.")
    media_type: str = Field(description="Media type, as the manifest states it.")


class ImageManifest(_Model):
    """One image manifest: the single manifest of an image, or one platform's manifest of a multi-arch index."""

    platform: str | None = Field(
        default=None, description="os/arch[/variant] from the index; None for a single-manifest image."
    )
    digest: str = Field(
        pattern=DIGEST_PATTERN, description="Digest of the manifest as stored (unchanged from the source)."
    )
    size: int = Field(ge=0, description="Size of the manifest in bytes.")
    media_type: str = Field(description="OCI (or Docker v2) image manifest media type.")
    config: ImageBlob = Field(description="The image config blob.")
    layers: list[ImageBlob] = Field(description="The layers, in manifest order.")


class ImageComponent(_Model):
    """A container image kept byte for byte; listed in index.json under its name."""

    name: str = Field(description="Component name from the spec; the image's ref.name in index.json.")
    source: str = Field(description="Where the image was read from, as the spec wrote it.")
    digest: str = Field(pattern=DIGEST_PATTERN, description="Digest of the stored top document (index or manifest).")
    size: int = Field(ge=0, description="Size of the stored top document in bytes.")
    media_type: str = Field(description="Media type of the stored top document.")
    source_digest: str = Field(
        description="Digest of the source's top document; differs when platforms were dropped or Docker converted."
    )
    converted_from: str | None = Field(
        default=None, description="Docker media type of the source's top document when it was converted to OCI."
    )
    platforms: list[str] = Field(description="Platforms kept, os/arch[/variant] (empty when the source names none).")
    manifests: list[ImageManifest] = Field(description="The manifest, or every kept platform manifest of the index.")

    def total_size(self) -> int:
        """Bytes of the image's configs and layers (a blob shared by two manifests is counted twice)."""
        return sum(m.config.size + sum(layer.size for layer in m.layers) for m in self.manifests)

    def subjects(self) -> list[tuple[str, str]]:
        """(subject name, digest) of every document and blob of the image, as the signed statement lists them.

        Names: ``images/<name>``, then per manifest ``images/<name>/<platform>`` with ``/config`` and ``/layers/<i>``
        (a single-manifest image has no platform part: ``images/<name>/manifest``, ``images/<name>/config``, …).
        """
        base = f"images/{self.name}"
        out = [(base, self.digest)]
        is_index = self.media_type in INDEX_MEDIA_TYPES
        labels = manifest_labels([m.platform for m in self.manifests]) if is_index else [""]
        for label, m in zip(labels, self.manifests, strict=True):
            prefix = f"{base}/{label}" if label else base
            if label:
                out.append((prefix, m.digest))
            out.append((f"{prefix}/config", m.config.digest))
            out += [(f"{prefix}/layers/{i}", layer.digest) for i, layer in enumerate(m.layers)]
        return out


class WheelFile(FileEntry):
    """One Python wheel of gapseal or one of its runtime dependencies (``path`` is the wheel's file name)."""

    name: str = Field(description="Distribution name, as in the wheel's file name.")
    version: str = Field(description="Distribution version, as in the wheel's file name.")


class WheelSet(_Model):
    """gapseal and its runtime dependencies as wheels (``--include-self``), installable with no network at all."""

    python_version: str = Field(description="Target Python version X.Y the wheels were resolved for.")
    platform: str | None = Field(default=None, description="Target platform tag (None: the building machine's).")
    files: list[WheelFile] = Field(description="Every wheel, sorted by file name; layer title 'wheels/<file>'.")


class BundleDescriptor(_Model):
    """What a bundle holds. Layer titles are '<kind>/<name>/<path>' (builds: '<name>/<backend>-<arch>/<path>')."""

    api_version: Literal["gapseal/v1"] = Field(description="Descriptor format version.")
    kind: Literal["BundleDescriptor"] = Field(description="Always BundleDescriptor.")
    name: str = Field(description="Bundle name (rollback protection is per name).")
    version: str = Field(description="Bundle version (PEP 440 / semver); compared for rollback.")
    created: str = Field(description="Creation time, RFC 3339 UTC, from the spec or SOURCE_DATE_EPOCH.")
    expires: str | None = Field(default=None, description="Expiry time, RFC 3339 UTC; verify refuses after it.")
    description: str | None = Field(default=None, description="Free text from the spec.")
    license: str | None = Field(
        default=None, description="The bundle's licence (SPDX expression or text), from the spec."
    )
    models: list[ModelComponent] = Field(default_factory=list, description="Model weights.")
    files: list[FilesComponent] = Field(default_factory=list, description="Plain files.")
    builds: list[Build] = Field(default_factory=list, description="Inference builds.")
    services: list[ServiceSpec] | None = Field(
        default=None, description="Inference services the installer defines as units (absent when the spec has none)."
    )
    images: list[ImageComponent] | None = Field(
        default=None, description="Container images, each listed in index.json under its name (absent: none)."
    )
    wheels: WheelSet | None = Field(default=None, description="gapseal's own wheels (--include-self; absent: none).")
    sbom: FileEntry | None = Field(
        default=None, description="CycloneDX JSON SBOM of everything above; layer title 'sbom/<path>' (absent: none)."
    )

    def to_bytes(self) -> bytes:
        """Canonical JSON bytes: what is stored, hashed and signed."""
        return canonical_json(self.model_dump(mode="json", exclude_none=True))

    @classmethod
    def load(cls, data: bytes, where: str | None = None) -> BundleDescriptor:
        """Parse stored descriptor bytes (bounded, strict JSON); a malformed descriptor is a verification failure.

        Parsing checks the structure only: call ``problems`` before using any name or path in it.
        """
        return load_model(cls, data, "the bundle descriptor", error=VerificationError, where=where)

    def problems(self, *, now: datetime | None = None) -> list[str]:
        """Every reason this descriptor must not be used, each naming the component; empty when it is sound.

        The same rules at ``create`` and at ``verify`` (a trusted key can be careless or stolen): names and paths by
        ``gapseal.names``, no two files that would be the same file on disk, a version the rollback check can
        compare, RFC 3339 times with a time zone, ``expires`` after ``created``, ``created`` not more than a day
        ahead of ``now`` (when given), and services that name a build and model of this bundle.
        """
        found: list[str] = []

        def name(what: str, value: str) -> None:
            problem = name_problem(value)
            if problem is not None:
                found.append(f"{what}: {problem}")

        def path(what: str, value: str) -> None:
            problem = path_problem(value)
            if problem is not None:
                found.append(f"{what}: {problem}")

        bundle_problem = bundle_name_problem(self.name)
        if bundle_problem is not None:
            found.append(f"bundle name: {bundle_problem}")
        problem = version_problem(self.version)
        if problem is not None:
            found.append(f"version: {problem}")
        created = expires = None
        try:
            created = parse_time(self.created)
        except ValueError as e:
            found.append(f"created: {e}")
        if self.expires is not None:
            try:
                expires = parse_time(self.expires)
            except ValueError as e:
                found.append(f"expires: {e}")
        if created is not None and expires is not None and expires <= created:
            found.append(f"expires: {self.expires} is not later than created {self.created}")
        if created is not None and now is not None and created > now + CLOCK_SKEW:
            found.append(f"created: {self.created} is more than a day in the future")

        components: list[tuple[str, str]] = []
        for m in self.models:
            name(f"model {m.name!r}", m.name)
            components.append((f"model {m.name!r}", m.name))
            for f in m.files:
                path(f"model {m.name!r} file", f.path)
            if m.signature is not None:
                path(f"model {m.name!r} signature", m.signature.path)
        for c in self.files:
            name(f"files {c.name!r}", c.name)
            components.append((f"files {c.name!r}", c.name))
            for f in c.files:
                path(f"files {c.name!r} file", f.path)
        for b in self.builds:
            name(f"build {b.name!r}", b.name)
            components.append((f"build {b.name!r}", b.name))
            seen: set[str] = set()
            for v in b.variants:
                label = f"{v.backend}-{v.arch}"
                if label in seen:
                    found.append(f"build {b.name!r}: two variants are both {label} (stored in the same directory)")
                seen.add(label)
                for f in v.files:
                    path(f"build {b.name!r} {label} file", f.path)
        for i in self.images or []:
            name(f"image {i.name!r}", i.name)
            components.append((f"image {i.name!r}", i.name))
        by_key: dict[str, str] = {}
        for what, value in components:
            key = collision_key(value)
            if key in by_key:
                found.append(f"{what}: its name collides with {by_key[key]} (names are unique across kinds)")
            by_key.setdefault(key, what)
        if self.wheels is not None:
            for w in self.wheels.files:  # a file name, one component ('+' of a local version allowed)
                path(f"wheel {w.path!r}", w.path)
                if "/" in w.path:
                    found.append(f"wheel {w.path!r}: a wheel is one file name, not a path")
        if self.sbom is not None:
            path("sbom", self.sbom.path)
        builds = {b.name for b in self.builds}
        models = {m.name for m in self.models}
        services: set[str] = set()
        for s in self.services or []:
            name(f"service {s.name!r}", s.name)
            if collision_key(s.name) in services:
                found.append(f"service {s.name!r}: listed twice")
            services.add(collision_key(s.name))
            path(f"service {s.name!r} exec", s.exec)
            if s.build not in builds:
                found.append(f"service {s.name!r}: its build {s.build!r} is not a build of this bundle")
            if s.model is not None and s.model not in models:
                found.append(f"service {s.name!r}: its model {s.model!r} is not a model of this bundle")
        if not found:  # titles are only meaningful once every part is a safe name or path
            for first, later in collisions(title for title, _ in self.layers()):
                found.append(
                    f"{later!r} collides with {first!r} (the same file on a case-insensitive or normalising disk)"
                )
        return found

    def layers(self) -> list[tuple[str, FileEntry]]:
        """Every file as (layer title, entry), in manifest order."""
        out: list[tuple[str, FileEntry]] = []
        for m in self.models:
            out += [(f"models/{m.name}/{f.path}", f) for f in m.files]
            if m.signature is not None:
                out.append((f"models/{m.name}/{m.signature.path}", m.signature))
        for c in self.files:
            out += [(f"files/{c.name}/{f.path}", f) for f in c.files]
        for b in self.builds:
            for v in b.variants:
                out += [(f"builds/{b.name}/{v.backend}-{v.arch}/{f.path}", f) for f in v.files]
        if self.wheels is not None:
            out += [(f"wheels/{f.path}", f) for f in self.wheels.files]
        if self.sbom is not None:
            out.append((f"sbom/{self.sbom.path}", self.sbom))
        return out

    def total_size(self) -> int:
        """Bytes of all files (blobs shared by several files are counted for each)."""
        return sum(f.size for _, f in self.layers())
