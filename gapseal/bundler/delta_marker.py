"""The marker a delta bundle carries: ``gapseal.delta.json`` at the top of its layout.

A delta is a full bundle's layout (index, manifests, descriptor, signature, all unchanged) with the blobs the far side
already has left out. The marker says so, so that ``verify`` without ``--base`` can say "this is a delta of NAME
VERSION: pass --base" instead of listing every left-out blob as missing.

The marker is not signed, and it needs no signature: it grants nothing. Everything in it is derivable from, and checked
against, signed data and the bytes present: ``verify --base`` takes from the base exactly the blobs the marker lists as
omitted, checks the marker names the bundle manifest ``index.json`` names, and then runs the ordinary full verification
over the merged file set, so a forged or edited marker can only make verification fail, never pass.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gapseal.bundler.inventory import LayoutInventory
from gapseal.canonical import canonical_json
from gapseal.errors import VerificationError
from gapseal.jsonlimits import MAX_DOCUMENT, json_problem, validation_message

DELTA_MARKER_NAME = "gapseal.delta.json"
"""The marker's file name at the top of a delta's layout, beside ``index.json``.

Named to sort after ``gapseal-parts.json`` ('.' > '-'), which must stay the first member of a split set's first part.
"""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BlobRef(_Model):
    """A blob by digest and size."""

    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$", description="sha256 digest, 'sha256:<hex>'.")
    size: int = Field(ge=0, description="Size in bytes.")


class BundleRef(_Model):
    """A bundle by name, version and manifest digest."""

    name: str = Field(description="Bundle name.")
    version: str = Field(description="Bundle version.")
    manifest_digest: str = Field(description="Digest of the bundle manifest.")


class DeltaMarker(_Model):
    """What a delta is: which bundle it completes, against which base, and which blobs it leaves out."""

    api_version: Literal["gapseal/v1"] = Field(description="Marker format version.")
    kind: Literal["BundleDelta"] = Field(description="Always BundleDelta.")
    bundle: BundleRef = Field(description="The full bundle this delta becomes once the base's blobs are added.")
    base: list[BundleRef] = Field(description="The bundles the base inventory held (empty when it named none).")
    base_source: str = Field(description="The base as named at create time (a bundle path or an inventory file).")
    omitted: list[BlobRef] = Field(description="Blobs of the full bundle left out because the base has them, sorted.")

    def to_bytes(self) -> bytes:
        """Canonical JSON bytes, as stored."""
        return canonical_json(self.model_dump(mode="json"))

    def omitted_bytes(self) -> int:
        """Bytes left out of the delta."""
        return sum(b.size for b in self.omitted)

    def describe_base(self) -> str:
        """The base in words: 'clinic 1.0.0' or the inventory it was read from."""
        if self.base:
            return ", ".join(f"{b.name} {b.version}" for b in self.base)
        return self.base_source


def read_delta_marker(inv: LayoutInventory) -> DeltaMarker | None:
    """The delta marker of a read layout, or None for a full bundle; a damaged marker fails verification."""
    entry = inv.entries.get(DELTA_MARKER_NAME)
    if entry is None:
        return None
    if entry.content is None:
        raise VerificationError(f"{DELTA_MARKER_NAME} is too large to be a delta marker", where=inv.source)
    document, problem = json_problem(entry.content, max_bytes=MAX_DOCUMENT)  # bounded: the marker is not signed
    try:
        if problem is not None:
            raise ValueError(problem)
        return DeltaMarker.model_validate(document)
    except (ValueError, ValidationError) as e:
        why = validation_message(e) if isinstance(e, ValidationError) else str(e)
        raise VerificationError(
            f"the layout holds {DELTA_MARKER_NAME} but it is malformed: {why}",
            where=inv.source,
            hint="the delta is damaged; obtain a fresh copy from the security team",
        ) from e


def delta_needs_base_error(marker: DeltaMarker, source: str) -> VerificationError:
    """The error for verifying a delta on its own."""
    b = marker.bundle
    return VerificationError(
        f"this is a delta of {b.name} {b.version} (made against {marker.describe_base()}; "
        f"{len(marker.omitted)} blobs, {marker.omitted_bytes()} bytes left out): pass --base",
        where=source,
        hint=f"run 'gapseal bundle verify {source} --base OLD' or "
        f"'gapseal bundle apply {source} --base OLD --out FULL' with the bundle already on this side",
    )
