"""The bundle's SBOM: CycloneDX 1.6 JSON of everything the bundle carries, built with ``cyclonedx-python-lib``.

What it lists (bom-refs in brackets, each component's files nested under it with their SHA-256):
- the bundle itself as ``metadata.component`` [``bundle``], gapseal as the tool that made it;
- models as ``machine-learning-model`` [``model/<name>``]: format and header facts as properties, license, source;
- plain file sets as ``data`` [``files/<name>``];
- builds as ``application`` [``build/<name>``], each variant nested [``build/<name>/<backend>-<arch>``] with its
  backend, arch and requirements as properties;
- container images as ``container`` [``image/<name>``]: the stored top document's digest as hash, a
  ``pkg:oci/<name>@sha256:…`` purl, the source and every kept platform manifest's digest as properties;
- gapseal's own wheels (``--include-self``) as ``library`` [``wheel/<file>``]: name, version,
  ``pkg:pypi/<name>@<version>?file_name=…`` purl and SHA-256.

It is deterministic: the serial number is a UUIDv5 of the descriptor it describes (canonical JSON, before the SBOM entry
is added) and the timestamp is the bundle's ``created``, so the same inputs give the same SBOM bytes. It is stored as
one blob listed in the descriptor (``sbom``, layer title ``sbom/bom.cdx.json``) and is therefore a subject of the signed
statement like every file: ``verify`` rejects a changed SBOM by that name.
"""

from __future__ import annotations

import hashlib
import uuid
import warnings
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from gapseal import __version__
from gapseal.bundler.descriptor import BundleDescriptor, FileEntry
from gapseal.bundler.inventory import LayoutInventory
from gapseal.errors import VerificationError
from gapseal.progress import NO_PROGRESS, Progress
from gapseal.signing.keys import VerifyingKey

SBOM_FILE_NAME = "bom.cdx.json"
"""The SBOM's path in the descriptor (layer title ``sbom/bom.cdx.json``)."""
MEDIA_SBOM = "application/vnd.cyclonedx+json"
"""The SBOM layer's media type (CycloneDX's registered JSON media type)."""
SPEC_VERSION = "1.6"
_SERIAL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://gapseal.dev/sbom")
"""A fixed namespace for the SBOM serial numbers gapseal derives (UUIDv5)."""


def sbom_serial(descriptor_bytes: bytes) -> uuid.UUID:
    """The SBOM serial number: a UUIDv5 of the described descriptor's canonical bytes."""
    return uuid.uuid5(_SERIAL_NAMESPACE, "sha256:" + hashlib.sha256(descriptor_bytes).hexdigest())


def _properties(pairs: Iterable[tuple[str, object]]) -> list[Any]:
    from cyclonedx.model import Property

    return [Property(name=f"gapseal:{k}", value=str(v)) for k, v in pairs if v is not None and v != ""]


def _hashes(digest: str) -> list[Any]:
    from cyclonedx.model import HashAlgorithm, HashType

    return [HashType(alg=HashAlgorithm.SHA_256, content=digest.removeprefix("sha256:"))]


def _file(ref: str, entry: FileEntry) -> Any:
    from cyclonedx.model.component import Component, ComponentType

    return Component(
        type=ComponentType.FILE,
        name=entry.path,
        bom_ref=f"{ref}/{entry.path}",
        hashes=_hashes(entry.digest),
        properties=_properties([("media_type", entry.media_type), ("size", entry.size)]),
    )


def _flat_facts(details: dict[str, Any], prefix: str = "") -> list[tuple[str, object]]:
    """Format facts as flat (key, scalar) pairs: ``safetensors.tensor_count`` = 101, lists of scalars joined."""
    out: list[tuple[str, object]] = []
    for key in sorted(details):
        value = details[key]
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _flat_facts(value, f"{name}.")
        elif isinstance(value, list):
            if all(isinstance(v, dict) for v in value):
                for i, v in enumerate(value):
                    out += _flat_facts(v, f"{name}[{i}].")
            else:
                out.append((name, ",".join(map(str, value))))
        elif value is not None:
            out.append((name, value))
    return out


def build_sbom(descriptor: BundleDescriptor) -> bytes:
    """The CycloneDX JSON of ``descriptor`` (which must not hold an SBOM entry yet)."""
    from cyclonedx.contrib.license.factories import LicenseFactory
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.tool import ToolRepository
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    if descriptor.sbom is not None:
        raise ValueError("the descriptor already holds an SBOM entry")
    d = descriptor
    licenses = LicenseFactory()
    components: list[Component] = []
    for m in d.models:
        ref = f"model/{m.name}"
        files = [*m.files, *([m.signature] if m.signature else [])]
        components.append(
            Component(
                type=ComponentType.MACHINE_LEARNING_MODEL,
                name=m.name,
                bom_ref=ref,
                licenses=[licenses.make_from_string(m.license)] if m.license else None,
                properties=_properties(
                    [("format", m.format), ("source", m.source), *_flat_facts(m.format_details, "format.")]
                ),
                components=[_file(ref, f) for f in files],
            )
        )
    for c in d.files:
        ref = f"files/{c.name}"
        components.append(
            Component(type=ComponentType.DATA, name=c.name, bom_ref=ref, components=[_file(ref, f) for f in c.files])
        )
    for b in d.builds:
        ref = f"build/{b.name}"
        variants = []
        for v in b.variants:
            vref = f"{ref}/{v.backend}-{v.arch}"
            requires = v.requires.model_dump(mode="json", exclude_none=True)
            variants.append(
                Component(
                    type=ComponentType.APPLICATION,
                    name=f"{b.name}-{v.backend}-{v.arch}",
                    bom_ref=vref,
                    properties=_properties(
                        [("backend", v.backend), ("arch", v.arch), *_flat_facts(requires, "requires.")]
                    ),
                    components=[_file(vref, f) for f in v.files],
                )
            )
        components.append(Component(type=ComponentType.APPLICATION, name=b.name, bom_ref=ref, components=variants))
    for image in d.images or []:
        ref = f"image/{image.name}"
        manifests = [
            (f"manifest[{m.platform or 'single'}]", f"{m.digest} config {m.config.digest} layers {len(m.layers)}")
            for m in image.manifests
        ]
        components.append(
            Component(
                type=ComponentType.CONTAINER,
                name=image.name,
                bom_ref=ref,
                hashes=_hashes(image.digest),
                purl=PackageURL(type="oci", name=image.name, version=image.digest),
                properties=_properties(
                    [
                        ("source", image.source),
                        ("media_type", image.media_type),
                        ("source_digest", image.source_digest),
                        ("platforms", ",".join(image.platforms)),
                        ("size", image.total_size()),
                        *manifests,
                    ]
                ),
            )
        )
    for w in d.wheels.files if d.wheels else []:
        components.append(
            Component(
                type=ComponentType.LIBRARY,
                name=w.name,
                version=w.version,
                bom_ref=f"wheel/{w.path}",
                purl=PackageURL(type="pypi", name=w.name, version=w.version, qualifiers={"file_name": w.path}),
                hashes=_hashes(w.digest),
                properties=_properties([("file", w.path), ("size", w.size)]),
            )
        )

    root = Component(
        type=ComponentType.APPLICATION,
        name=d.name,
        version=d.version,
        bom_ref="bundle",
        description=d.description,
        properties=_properties(
            [
                ("created", d.created),
                ("expires", d.expires),
                ("wheels.python_version", d.wheels.python_version if d.wheels else None),
                ("wheels.platform", d.wheels.platform if d.wheels else None),
            ]
        ),
    )
    tool = Component(type=ComponentType.APPLICATION, name="gapseal", version=__version__, bom_ref="tool/gapseal")
    bom = Bom(
        serial_number=sbom_serial(descriptor.to_bytes()),
        metadata=BomMetaData(
            component=root,
            tools=ToolRepository(components=[tool]),
            timestamp=datetime.fromisoformat(d.created.replace("Z", "+00:00")),
        ),
        components=components,
    )
    bom.register_dependency(root, components)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the library warns about components without dependency entries
        text: str = JsonV1Dot6(bom).output_as_string(indent=2)
    return text.encode() + b"\n"


def sbom_entry(data: bytes, digest: str) -> FileEntry:
    """The descriptor entry of stored SBOM bytes."""
    return FileEntry(path=SBOM_FILE_NAME, digest=digest, size=len(data), media_type=MEDIA_SBOM)


def read_sbom(
    path: Path, trusted_keys: Sequence[VerifyingKey] = (), *, progress: Progress = NO_PROGRESS
) -> tuple[bytes, bool]:
    """The stored SBOM of the bundle at ``path`` and whether the bundle was verified (it is, when keys are given).

    Without keys the descriptor is read without trust (as ``inspect`` does), but the SBOM blob is still checked against
    the digest the descriptor lists.
    """
    from gapseal.bundler import layout as oci
    from gapseal.bundler.verify import read_inventory, verify_inventory

    inv = read_inventory(path, progress=progress)
    descriptor = verify_inventory(inv, trusted_keys).descriptor if trusted_keys else _unverified_descriptor(inv)
    if descriptor.sbom is None:
        raise VerificationError(
            "this bundle carries no SBOM",
            where=str(path),
            hint="bundles made by gapseal 0.1 with this feature have one",
        )
    blob = oci.blob_path(descriptor.sbom.digest)
    entry = inv.entries.get(blob)
    if entry is None or f"sha256:{entry.sha256}" != descriptor.sbom.digest:
        raise VerificationError(f"the SBOM blob is missing or corrupt: {blob}", where=str(path))
    if entry.content is not None:
        return entry.content, bool(trusted_keys)
    if not path.is_dir():
        raise VerificationError("the SBOM is too large to read from an archive; unpack it first", where=str(path))
    data = (path / blob).read_bytes()
    if oci.sha256_digest(data) != descriptor.sbom.digest:
        raise VerificationError(f"the SBOM blob changed while it was read: {blob}", where=str(path))
    return data, bool(trusted_keys)


def _unverified_descriptor(inv: LayoutInventory) -> BundleDescriptor:
    """The descriptor as ``index.json`` leads to it, each step checked against its digest but not the signature."""
    from gapseal.bundler.inspect import unverified_descriptor

    return unverified_descriptor(inv)[1]
