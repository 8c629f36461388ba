"""The OCI image layout of a bundle: media types, descriptors, manifests and the index, as pydantic models.

Create and verify share these builders: verify re-derives the exact bytes ``create`` would have written for
``index.json`` and compares, so there is one definition of what a well-formed bundle is.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from gapseal.canonical import canonical_json

OCI_LAYOUT_BYTES = b'{"imageLayoutVersion":"1.0.0"}'
"""The exact content of ``oci-layout``."""

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"

ARTIFACT_BUNDLE = "application/vnd.gapseal.bundle.v1+json"
MEDIA_BUNDLE_CONFIG = "application/vnd.gapseal.bundle.config.v1+json"
ARTIFACT_SIGSTORE = "application/vnd.dev.sigstore.bundle.v0.3+json"

# ModelPack (CNCF model-spec) layer media types for model files; gapseal's own for everything else.
MEDIA_MODEL_WEIGHT = "application/vnd.cncf.model.weight.v1.raw"
MEDIA_MODEL_CONFIG = "application/vnd.cncf.model.weight.config.v1.raw"
MEDIA_MODEL_DOC = "application/vnd.cncf.model.doc.v1.raw"
MEDIA_MODEL_CODE = "application/vnd.cncf.model.code.v1.raw"
MEDIA_MODEL_SIGNATURE = "application/vnd.gapseal.model.signature.v1+json"
MEDIA_FILE = "application/vnd.gapseal.file.v1.raw"
MEDIA_BUILD = "application/vnd.gapseal.build.v1.raw"

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_TITLE = "org.opencontainers.image.title"
ANNOTATION_CREATED = "org.opencontainers.image.created"
ANNOTATION_VERSION = "org.opencontainers.image.version"
BUNDLE_REF_NAME = "gapseal-bundle"
"""The ``index.json`` name of the bundle manifest: ``skopeo inspect oci:DIR:gapseal-bundle``."""

BUNDLE_PREDICATE_TYPE = "https://gapseal.dev/attestation/bundle/v1"
MANIFEST_SUBJECT_NAME = "gapseal-bundle-manifest"

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")

_WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth", ".onnx", ".ckpt", ".h5", ".msgpack", ".npz")
_DOC_NAMES = ("readme", "license", "licence", "notice", "model_card", "modelcard")
_CODE_SUFFIXES = (".py", ".sh", ".ipynb")


def sha256_digest(data: bytes) -> str:
    """Return the OCI digest (``sha256:<hex>``) of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_path(digest: str) -> str:
    """Return the layout-relative path of the blob with ``digest``."""
    algo, _, hexpart = digest.partition(":")
    return f"blobs/{algo}/{hexpart}"


def is_digest(value: str) -> bool:
    """True for a well-formed lower-case ``sha256:<64 hex>`` digest."""
    return bool(_DIGEST.match(value))


def model_media_type(rel_path: str) -> str:
    """Classify a model file into its ModelPack layer media type by name."""
    name = rel_path.rsplit("/", 1)[-1].lower()
    if name.endswith(_WEIGHT_SUFFIXES):
        return MEDIA_MODEL_WEIGHT
    if name.startswith(_DOC_NAMES) or name.endswith((".md", ".txt")) and not name.startswith(("vocab", "merges")):
        return MEDIA_MODEL_DOC
    if name.endswith(_CODE_SUFFIXES):
        return MEDIA_MODEL_CODE
    return MEDIA_MODEL_CONFIG


class _OciModel(BaseModel):
    """OCI documents: camelCase on the wire, frozen, unknown fields refused (a bundle is gapseal's own output)."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)

    def to_bytes(self) -> bytes:
        """Return the canonical JSON bytes of this document."""
        return canonical_json(self.model_dump(mode="json", by_alias=True, exclude_none=True))


class Descriptor(_OciModel):
    """An OCI content descriptor."""

    media_type: str = Field(description="Media type of the referenced content.")
    digest: str = Field(pattern=_DIGEST.pattern, description="sha256 digest of the referenced content.")
    size: int = Field(ge=0, description="Size in bytes of the referenced content.")
    artifact_type: str | None = Field(default=None, description="Artifact type of a referenced manifest.")
    annotations: dict[str, str] | None = Field(default=None, description="Annotations, e.g. the file's title.")


class Manifest(_OciModel):
    """An OCI image manifest (used for the bundle and for each signature)."""

    schema_version: Literal[2] = Field(description="Always 2.")
    media_type: Literal["application/vnd.oci.image.manifest.v1+json"] = Field(description="The manifest media type.")
    artifact_type: str | None = Field(default=None, description="What the manifest carries.")
    config: Descriptor = Field(description="The config blob: the bundle descriptor, or the empty blob.")
    layers: list[Descriptor] = Field(description="One layer per file.")
    subject: Descriptor | None = Field(default=None, description="The manifest a referrer (signature) refers to.")
    annotations: dict[str, str] | None = Field(default=None, description="Created time, title, version.")


class Index(_OciModel):
    """The layout's ``index.json``."""

    schema_version: Literal[2] = Field(description="Always 2.")
    media_type: Literal["application/vnd.oci.image.index.v1+json"] = Field(description="The index media type.")
    manifests: list[Descriptor] = Field(description="The bundle manifest, then its signature manifests.")


def descriptor_of(media_type: str, data: bytes, **extra: Any) -> Descriptor:
    """Return the descriptor of in-memory content ``data``."""
    return Descriptor(media_type=media_type, digest=sha256_digest(data), size=len(data), **extra)


def empty_config() -> Descriptor:
    """The OCI empty descriptor (``{}``) used as the config of artifact manifests."""
    return descriptor_of(MEDIA_EMPTY, EMPTY_BLOB)


def signature_manifest(subject: Descriptor, signature: bytes, *, created: str) -> Manifest:
    """A referrer manifest carrying one Sigstore bundle, pointing at ``subject``.

    The annotations follow the convention sigstore-go and cosign use for Sigstore bundles stored as OCI referrers.
    """
    return Manifest(
        schema_version=2,
        media_type=MEDIA_MANIFEST,
        artifact_type=ARTIFACT_SIGSTORE,
        config=empty_config(),
        layers=[
            descriptor_of(
                ARTIFACT_SIGSTORE,
                signature,
                annotations={
                    "dev.sigstore.bundle.content": "dsse-envelope",
                    "dev.sigstore.bundle.predicateType": BUNDLE_PREDICATE_TYPE,
                },
            )
        ],
        subject=subject,
        annotations={ANNOTATION_CREATED: created},
    )


def build_index(
    bundle_manifest: Descriptor,
    signature_manifests: list[Descriptor],
    images: list[tuple[str, Descriptor]] | None = None,
) -> Index:
    """The ``index.json`` of a bundle: the named bundle manifest, each image under its name, then each signature.

    ``images`` are (name, descriptor of the image's stored top manifest or index), in the descriptor's order.
    """
    named = bundle_manifest.model_copy(
        update={"artifact_type": ARTIFACT_BUNDLE, "annotations": {ANNOTATION_REF_NAME: BUNDLE_REF_NAME}}
    )
    image_entries = [
        Descriptor(media_type=d.media_type, digest=d.digest, size=d.size, annotations={ANNOTATION_REF_NAME: name})
        for name, d in images or []
    ]
    sigs = [d.model_copy(update={"artifact_type": ARTIFACT_SIGSTORE}) for d in signature_manifests]
    return Index(schema_version=2, media_type=MEDIA_INDEX, manifests=[named, *image_entries, *sigs])
