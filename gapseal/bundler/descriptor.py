"""The bundle descriptor: the bundle manifest's config blob, what the bundle holds and for which hardware.

It is written once as canonical JSON by ``create`` and, being a blob named by its digest and listed in the signed
statement, it is covered by the signature. Readers (verify, inspect, the installer) parse it with ``load``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gapseal.bundler.images import INDEX_MEDIA_TYPES, manifest_labels
from gapseal.bundler.spec import Requirements, ServiceSpec
from gapseal.canonical import canonical_json
from gapseal.errors import VerificationError

DESCRIPTOR_API_VERSION = "gapseal/v1"
DESCRIPTOR_KIND = "BundleDescriptor"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileEntry(_Model):
    """One file of a component, stored as one blob."""

    path: str = Field(description="Path inside the component, posix, relative (e.g. 'model.safetensors').")
    digest: str = Field(description="sha256 digest of the content, 'sha256:<hex>'; the blob's name.")
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

    digest: str = Field(description="sha256 digest, 'sha256:<hex>'; the blob's name.")
    size: int = Field(ge=0, description="Size in bytes.")
    media_type: str = Field(description="Media type, as the manifest states it.")


class ImageManifest(_Model):
    """One image manifest: the single manifest of an image, or one platform's manifest of a multi-arch index."""

    platform: str | None = Field(
        default=None, description="os/arch[/variant] from the index; None for a single-manifest image."
    )
    digest: str = Field(description="Digest of the manifest as stored (unchanged from the source).")
    size: int = Field(ge=0, description="Size of the manifest in bytes.")
    media_type: str = Field(description="OCI (or Docker v2) image manifest media type.")
    config: ImageBlob = Field(description="The image config blob.")
    layers: list[ImageBlob] = Field(description="The layers, in manifest order.")


class ImageComponent(_Model):
    """A container image kept byte for byte; listed in index.json under its name."""

    name: str = Field(description="Component name from the spec; the image's ref.name in index.json.")
    source: str = Field(description="Where the image was read from, as the spec wrote it.")
    digest: str = Field(description="Digest of the stored top document (index or manifest).")
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
    def load(cls, data: bytes) -> BundleDescriptor:
        """Parse stored descriptor bytes; a malformed descriptor is a verification failure."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as e:
            raise VerificationError(f"bundle descriptor is malformed: {e.errors()[0]['msg']}") from e

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
