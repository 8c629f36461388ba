"""``diff_bundles``: what changed between two bundles, and how many bytes a delta from one to the other would carry.

Compares two descriptors (verified by the caller when it has keys): components, files (by layer title and digest),
build variants (files and requirements) and images (by top digest). A delta (``bundle create --base OLD``) stores
every blob the new bundle needs that the old one lacks, so ``delta_bytes`` counts the new bundle's distinct file and
image blob digests absent from the old bundle; the small documents every bundle carries (index, manifests,
descriptor, signature) are left out of both numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gapseal.bundler.descriptor import BundleDescriptor, FileEntry


class _DiffModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class Changes(_DiffModel):
    """Names added, removed and changed between the two bundles, each list sorted."""

    added: list[str] = Field(default_factory=list)
    """In the new bundle only."""
    removed: list[str] = Field(default_factory=list)
    """In the old bundle only."""
    changed: list[str] = Field(default_factory=list)
    """In both, with different content."""

    @property
    def empty(self) -> bool:
        """Nothing added, removed or changed."""
        return not (self.added or self.removed or self.changed)


class BundleRef(_DiffModel):
    """One side of the comparison."""

    name: str
    """Bundle name."""
    version: str
    """Bundle version."""
    manifest_digest: str
    """Digest of the bundle manifest."""
    bytes: int
    """Bytes of every file and image blob (each distinct blob once)."""


class BundleDiff(_DiffModel):
    """The output of ``gapseal bundle diff --json``."""

    kind: Literal["gapseal.BundleDiff"] = "gapseal.BundleDiff"
    """Document kind."""
    version: Literal[1] = 1
    """Format version."""
    verified: bool
    """Both bundles were verified against a trusted key before they were compared."""
    old: BundleRef
    """The bundle compared from."""
    new: BundleRef
    """The bundle compared to."""
    components: Changes
    """``model/<name>``, ``files/<name>``, ``build/<name>``, ``image/<name>``, ``wheels``, ``sbom``."""
    files: Changes
    """Layer titles (``models/<name>/<path>``, ``builds/<name>/<backend>-<arch>/<path>``, …)."""
    variants: Changes
    """``<build>/<backend>-<arch>``: changed when its files or its requirements differ."""
    images: Changes
    """Image names: changed when the stored top document's digest differs."""
    delta_bytes: int
    """Bytes a delta from ``old`` to ``new`` would carry: new blobs the old bundle does not hold."""
    delta_blobs: int
    """How many blobs that is."""


def _changes(old: Mapping[str, object], new: Mapping[str, object]) -> Changes:
    return Changes(
        added=sorted(set(new) - set(old)),
        removed=sorted(set(old) - set(new)),
        changed=sorted(k for k in set(old) & set(new) if old[k] != new[k]),
    )


def _files(entries: list[FileEntry]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((f.path, f.digest) for f in entries))


def _components(d: BundleDescriptor) -> dict[str, object]:
    out: dict[str, object] = {}
    for m in d.models:
        out[f"model/{m.name}"] = (_files(m.files), m.signature.digest if m.signature else None)
    for c in d.files:
        out[f"files/{c.name}"] = _files(c.files)
    for b in d.builds:
        out[f"build/{b.name}"] = tuple(sorted(_variants_of(b.name, d).items()))
    for i in d.images or []:
        out[f"image/{i.name}"] = i.digest
    if d.wheels is not None:
        out["wheels"] = _files(list(d.wheels.files))
    if d.sbom is not None:
        out["sbom"] = d.sbom.digest
    return out


def _variants_of(build: str, d: BundleDescriptor) -> dict[str, object]:
    return {
        f"{b.name}/{v.backend}-{v.arch}": (_files(v.files), v.requires.model_dump_json(exclude_none=True))
        for b in d.builds
        if b.name == build
        for v in b.variants
    }


def _blobs(d: BundleDescriptor) -> dict[str, int]:
    """Every distinct file and image blob: digest -> size."""
    out = {f.digest: f.size for _, f in d.layers()}
    for image in d.images or []:
        out[image.digest] = image.size
        for m in image.manifests:
            out[m.digest] = m.size
            out[m.config.digest] = m.config.size
            out.update({layer.digest: layer.size for layer in m.layers})
    return out


def _ref(d: BundleDescriptor, manifest_digest: str) -> BundleRef:
    return BundleRef(name=d.name, version=d.version, manifest_digest=manifest_digest, bytes=sum(_blobs(d).values()))


def diff_bundles(
    old: BundleDescriptor, old_digest: str, new: BundleDescriptor, new_digest: str, *, verified: bool
) -> BundleDiff:
    """Compare two descriptors (with their manifest digests); ``verified``: the caller checked both signatures."""
    old_blobs, new_blobs = _blobs(old), _blobs(new)
    carried = {d: s for d, s in new_blobs.items() if d not in old_blobs}
    variants_old = {k: v for b in old.builds for k, v in _variants_of(b.name, old).items()}
    variants_new = {k: v for b in new.builds for k, v in _variants_of(b.name, new).items()}
    return BundleDiff(
        verified=verified,
        old=_ref(old, old_digest),
        new=_ref(new, new_digest),
        components=_changes(_components(old), _components(new)),
        files=_changes({t: f.digest for t, f in old.layers()}, {t: f.digest for t, f in new.layers()}),
        variants=_changes(variants_old, variants_new),
        images=_changes({i.name: i.digest for i in old.images or []}, {i.name: i.digest for i in new.images or []}),
        delta_bytes=sum(carried.values()),
        delta_blobs=len(carried),
    )
