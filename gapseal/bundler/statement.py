"""What a bundle's signature says: the in-toto statement's subjects and predicate, and the ``index.json`` image entries.

The one definition of what is signed (STYLE.md: one home per rule). ``create`` builds the statement from these
functions; ``verify`` (and the registry, which rebuilds an index) recomputes them from the signed descriptor and
compares, so a rule changed here changes both sides at once. This module depends only on the layout and the
descriptor: create and verify both sit above it, so neither imports the other.
"""

from __future__ import annotations

from gapseal.bundler import layout as oci
from gapseal.bundler.descriptor import BundleDescriptor
from gapseal.signing.attestation import Subject

DESCRIPTOR_SUBJECT_NAME = "gapseal-bundle-descriptor"
"""The subject name of the bundle descriptor (the manifest's config blob)."""

SUBJECT_TOOL_LIMIT = 1024
"""The most subjects cosign and sigstore-go accept in one statement; gapseal verifies more, but ``create`` warns."""


def statement_subjects(manifest_digest: str, config_digest: str, descriptor: BundleDescriptor) -> list[Subject]:
    """The signed statement's subjects: the bundle manifest, its config, every file and every image blob."""
    subjects = [
        Subject(name=oci.MANIFEST_SUBJECT_NAME, sha256=manifest_digest.removeprefix("sha256:")),
        Subject(name=DESCRIPTOR_SUBJECT_NAME, sha256=config_digest.removeprefix("sha256:")),
    ]
    subjects += [Subject(name=title, sha256=e.digest.removeprefix("sha256:")) for title, e in descriptor.layers()]
    for image in descriptor.images or []:
        subjects += [Subject(name=name, sha256=digest.removeprefix("sha256:")) for name, digest in image.subjects()]
    return subjects


def bundle_predicate(descriptor: BundleDescriptor, manifest_digest: str) -> dict[str, object]:
    """The signed predicate: what the bundle is, when it was made, until when it may be used."""
    predicate: dict[str, object] = {
        "name": descriptor.name,
        "version": descriptor.version,
        "created": descriptor.created,
        "manifestDigest": manifest_digest,
    }
    if descriptor.expires is not None:
        predicate["expires"] = descriptor.expires
    return predicate


def image_index_entries(descriptor: BundleDescriptor) -> list[tuple[str, oci.Descriptor]]:
    """The ``index.json`` entry of every image: its name and the descriptor of its stored top document."""
    return [
        (i.name, oci.Descriptor(media_type=i.media_type, digest=i.digest, size=i.size)) for i in descriptor.images or []
    ]
