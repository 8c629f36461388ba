"""The bundle descriptor: the bundle manifest's config blob, what the bundle holds and for which hardware.

It is written once as canonical JSON by ``create`` and, being a blob named by its digest and listed in the signed
statement, it is covered by the signature. Readers (verify, inspect, the installer) parse it with ``load``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gapseal.bundler.canonical import canonical_json
from gapseal.bundler.spec import Requirements
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


class BuildVariant(_Model):
    """One hardware-specific build of an inference server."""

    backend: Literal["cuda", "rocm", "vulkan", "cpu"] = Field(description="Accelerator backend.")
    arch: Literal["amd64", "arm64"] = Field(description="CPU architecture.")
    requires: Requirements = Field(description="What a host must have for this variant.")
    files: list[FileEntry] = Field(description="Every file of the build, sorted by path.")


class Build(_Model):
    """An inference build with its variants, in the spec's order of preference."""

    name: str = Field(description="Build name from the spec.")
    variants: list[BuildVariant] = Field(description="Variants; the installer picks the first a host satisfies.")


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
        return out

    def total_size(self) -> int:
        """Bytes of all files (blobs shared by several files are counted for each)."""
        return sum(f.size for _, f in self.layers())
