"""Deltas: create against a base (bundle or inventory file), verify and apply with it, and every way it must fail."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from gapseal.bundler import layout as oci
from gapseal.bundler.archive import pack_layout
from gapseal.bundler.create import create_bundle
from gapseal.bundler.delta import (
    apply_delta,
    create_delta,
    load_base,
    take_inventory,
    verify_delta,
    write_inventory,
)
from gapseal.bundler.delta_marker import DELTA_MARKER_NAME, DeltaMarker
from gapseal.bundler.inspect import inspect_bundle
from gapseal.bundler.verify import verify_bundle
from gapseal.errors import BundleError, InputPathError, UsageError, VerificationError
from gapseal.jsonlimits import MAX_DOCUMENT
from tests.bundles import KeyPair, make_inputs, make_keys


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    return make_keys(tmp_path / "keys")


@dataclass(frozen=True)
class Versions:
    base: Path
    """Bundle 1.0.0 (the far side has it)."""
    spec2: Path
    """Spec of 2.0.0: the same inputs but docs/README.md changed."""


def _versions(tmp_path: Path, keys: KeyPair) -> Versions:
    spec1 = make_inputs(tmp_path / "in1", version="1.0.0")
    base = create_bundle(spec1, keys.private, tmp_path / "v1", link=False).path
    spec2 = make_inputs(tmp_path / "in2", version="2.0.0")
    (tmp_path / "in2/docs/README.md").write_text("site notes, revised\n")
    return Versions(base, spec2)


def _delta(tmp_path: Path, keys: KeyPair, v: Versions, base: Path | None = None) -> Path:
    return create_delta(v.spec2, keys.private, tmp_path / "delta", base or v.base, link=False).full.path


def _marker(delta: Path) -> DeltaMarker:
    return DeltaMarker.model_validate_json((delta / DELTA_MARKER_NAME).read_bytes())


def test_delta_holds_only_what_changed_and_verifies_with_its_base(tmp_path: Path, keys: KeyPair) -> None:
    v = _versions(tmp_path, keys)
    made = create_delta(v.spec2, keys.private, tmp_path / "delta", v.base, link=False)
    full = create_bundle(v.spec2, keys.private, tmp_path / "full2", link=False)
    assert made.full.manifest_digest == full.manifest_digest  # the same signed bundle, only fewer blobs

    readme = next(e for t, e in full.descriptor.layers() if t == "files/docs/README.md")
    weights = next(e for t, e in full.descriptor.layers() if t == "models/tiny/model.safetensors")
    stored = {p.name for p in (made.full.path / "blobs/sha256").iterdir()}
    assert readme.digest.removeprefix("sha256:") in stored
    assert weights.digest.removeprefix("sha256:") not in stored
    omitted = {b.digest for b in made.marker.omitted}
    assert weights.digest in omitted
    assert readme.digest not in omitted
    assert [(b.name, b.version) for b in made.marker.base] == [("clinic", "1.0.0")]
    full_blobs = {p.name for p in (full.path / "blobs/sha256").iterdir()}
    assert stored | {d.removeprefix("sha256:") for d in omitted} == full_blobs

    verified = verify_delta(made.full.path, v.base, [keys.public])
    assert verified.manifest_digest == full.manifest_digest
    assert verified.descriptor.version == "2.0.0"


def test_verify_without_base_says_it_is_a_delta(tmp_path: Path, keys: KeyPair) -> None:
    v = _versions(tmp_path, keys)
    delta = _delta(tmp_path, keys, v)
    with pytest.raises(VerificationError) as info:
        verify_bundle(delta, [keys.public])
    msg = info.value.message
    assert msg.startswith("this is a delta of clinic 2.0.0 (made against clinic 1.0.0;")
    assert msg.endswith("pass --base")
    assert "missing blob" not in msg
    with pytest.raises(VerificationError, match="this is a delta of clinic 2.0.0"):
        inspect_bundle(delta, [keys.public])


def test_apply_writes_a_full_bundle_that_verifies_alone_sharing_no_inode(tmp_path: Path, keys: KeyPair) -> None:
    v = _versions(tmp_path, keys)
    delta = _delta(tmp_path, keys, v)
    applied = apply_delta(delta, v.base, tmp_path / "full", [keys.public])
    full = verify_bundle(applied.path, [keys.public])
    reference = create_bundle(v.spec2, keys.private, tmp_path / "ref", link=False)
    assert full.manifest_digest == reference.manifest_digest
    assert sorted(os.listdir(applied.path / "blobs/sha256")) == sorted(os.listdir(reference.path / "blobs/sha256"))
    assert not (applied.path / DELTA_MARKER_NAME).exists()
    weights = next(e for t, e in full.descriptor.layers() if t == "models/tiny/model.safetensors")
    path = oci.blob_path(weights.digest)
    assert (applied.path / path).stat().st_ino != (v.base / path).stat().st_ino  # copied, never hard-linked
    assert (applied.path / path).stat().st_nlink == 1
    for p in (applied.path / "blobs/sha256").iterdir():  # nothing shares an inode with the delta either
        twin = delta / "blobs/sha256" / p.name
        assert not twin.exists() or twin.stat().st_ino != p.stat().st_ino
    before = (v.base / path).read_bytes()
    with (applied.path / path).open("r+b") as f:  # editing the result must not change the base
        f.write(b"X")
    assert (v.base / path).read_bytes() == before
    assert applied.from_base == len(_marker(delta).omitted)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".full")]  # no scratch left behind


def test_apply_refuses_to_overwrite_and_leaves_nothing_on_failure(tmp_path: Path, keys: KeyPair) -> None:
    v = _versions(tmp_path, keys)
    delta = _delta(tmp_path, keys, v)
    (tmp_path / "full").mkdir()
    with pytest.raises(UsageError, match="already exists"):
        apply_delta(delta, v.base, tmp_path / "full", [keys.public])
    other = make_keys(tmp_path / "other", "other")
    with pytest.raises(VerificationError, match="no valid signature by a trusted key"):
        apply_delta(delta, v.base, tmp_path / "full2", [other.public])
    assert not (tmp_path / "full2").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".full2")]


def test_inventory_file_as_base_gives_the_same_delta(tmp_path: Path, keys: KeyPair) -> None:
    v = _versions(tmp_path, keys)
    inv = take_inventory([v.base])
    write_inventory(inv, tmp_path / "have.json")
    with pytest.raises(UsageError, match="already exists"):
        write_inventory(inv, tmp_path / "have.json")
    loaded = load_base(tmp_path / "have.json")
    assert loaded == inv
    assert [(b.name, b.version) for b in loaded.bundles] == [("clinic", "1.0.0")]
    assert {f"sha256:{p.name}" for p in (v.base / "blobs/sha256").iterdir()} == {b.digest for b in inv.blobs}

    from_file = create_delta(v.spec2, keys.private, tmp_path / "d1", tmp_path / "have.json", link=False)
    from_bundle = create_delta(v.spec2, keys.private, tmp_path / "d2", v.base, link=False)
    assert from_file.marker.omitted == from_bundle.marker.omitted
    assert sorted(os.listdir(tmp_path / "d1/blobs/sha256")) == sorted(os.listdir(tmp_path / "d2/blobs/sha256"))
    verify_delta(tmp_path / "d1", v.base, [keys.public])


def test_inventory_does_not_count_a_damaged_blob_so_the_delta_carries_it(tmp_path: Path, keys: KeyPair) -> None:
    v = _versions(tmp_path, keys)
    descriptor = verify_bundle(v.base, [keys.public]).descriptor
    weights = next(e for t, e in descriptor.layers() if t == "models/tiny/model.safetensors")
    blob = v.base / oci.blob_path(weights.digest)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    inv = take_inventory([v.base])
    assert weights.digest not in {b.digest for b in inv.blobs}
    delta = create_delta(v.spec2, keys.private, tmp_path / "delta", v.base, link=False)
    assert weights.digest not in {b.digest for b in delta.marker.omitted}
    assert (delta.full.path / oci.blob_path(weights.digest)).is_file()


def test_wrong_base_fails_naming_the_missing_blobs(tmp_path: Path, keys: KeyPair) -> None:
    v = _versions(tmp_path, keys)
    delta = _delta(tmp_path, keys, v)
    other_spec = make_inputs(tmp_path / "other-in", name="other", version="1.0.0")
    (tmp_path / "other-in/models/tiny/config.json").write_text('{"hidden_size": 32}\n')
    other = create_bundle(other_spec, keys.private, tmp_path / "other", link=False).path
    with pytest.raises(VerificationError) as info:
        verify_delta(delta, other, [keys.public])
    msg = info.value.message
    # The other model's config differs, so its OpenSSF signature (model.sig) differs too.
    assert msg.startswith("the base lacks 2 of the 5 blobs this delta of clinic 2.0.0 left out:\n  - ")
    assert "\n  - models/tiny/config.json: sha256:" in msg
    assert "\n  - models/tiny/model.sig: sha256:" in msg
    assert info.value.where == str(other)
    assert "made against clinic 1.0.0" in (info.value.hint or "")
    with pytest.raises(VerificationError, match="models/tiny/config.json"):
        apply_delta(delta, other, tmp_path / "full", [keys.public])
    assert not (tmp_path / "full").exists()


def test_corrupt_blob_in_the_base_counts_as_missing(tmp_path: Path, keys: KeyPair) -> None:
    v = _versions(tmp_path, keys)
    delta = _delta(tmp_path, keys, v)
    descriptor = verify_bundle(v.base, [keys.public]).descriptor
    weights = next(e for t, e in descriptor.layers() if t == "models/tiny/model.safetensors")
    blob = v.base / oci.blob_path(weights.digest)
    data = bytearray(blob.read_bytes())
    data[100] ^= 0x01
    blob.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match=r"lacks 1 of .*\n  - models/tiny/model.safetensors: sha256:"):
        verify_delta(delta, v.base, [keys.public])


def test_tampered_blob_in_the_delta_is_named(tmp_path: Path, keys: KeyPair) -> None:
    v = _versions(tmp_path, keys)
    delta = _delta(tmp_path, keys, v)
    descriptor = verify_delta(delta, v.base, [keys.public]).descriptor
    readme = next(e for t, e in descriptor.layers() if t == "files/docs/README.md")
    (delta / oci.blob_path(readme.digest)).write_text("site notes, forged!\n")
    with pytest.raises(VerificationError, match=r"files/docs/README.md is corrupt: blobs/sha256/"):
        verify_delta(delta, v.base, [keys.public])


def test_marker_hiding_a_missing_blob_fails(tmp_path: Path, keys: KeyPair) -> None:
    """A marker edited to no longer list a left-out blob: that blob is then simply missing."""
    v = _versions(tmp_path, keys)
    delta = _delta(tmp_path, keys, v)
    marker = _marker(delta)
    edited = marker.model_copy(update={"omitted": marker.omitted[1:]})
    (delta / DELTA_MARKER_NAME).write_bytes(edited.to_bytes())
    with pytest.raises(VerificationError, match=r"missing blob for .*: blobs/sha256/"):
        verify_delta(delta, v.base, [keys.public])


def test_marker_listing_a_blob_the_delta_holds_fails(tmp_path: Path, keys: KeyPair) -> None:
    v = _versions(tmp_path, keys)
    delta = _delta(tmp_path, keys, v)
    marker = _marker(delta)
    held = sorted((delta / "blobs/sha256").iterdir())[0]
    extra = marker.omitted[0].model_copy(update={"digest": f"sha256:{held.name}", "size": held.stat().st_size})
    (delta / DELTA_MARKER_NAME).write_bytes(marker.model_copy(update={"omitted": [*marker.omitted, extra]}).to_bytes())
    with pytest.raises(VerificationError, match="lists sha256:.* as left out, but the delta holds it"):
        verify_delta(delta, v.base, [keys.public])


def test_marker_naming_another_bundle_manifest_fails(tmp_path: Path, keys: KeyPair) -> None:
    v = _versions(tmp_path, keys)
    delta = _delta(tmp_path, keys, v)
    marker = _marker(delta)
    forged = marker.model_copy(
        update={"bundle": marker.bundle.model_copy(update={"manifest_digest": "sha256:" + "0" * 64})}
    )
    (delta / DELTA_MARKER_NAME).write_bytes(forged.to_bytes())
    with pytest.raises(VerificationError, match="gapseal.delta.json names bundle manifest sha256:0000"):
        verify_delta(delta, v.base, [keys.public])


def test_marker_pulling_an_unrelated_base_blob_in_fails(tmp_path: Path, keys: KeyPair) -> None:
    """A marker that asks for a base blob the signed bundle never references: it is an unexpected file."""
    v = _versions(tmp_path, keys)
    delta = _delta(tmp_path, keys, v)
    marker = _marker(delta)
    base_descriptor = verify_bundle(v.base, [keys.public]).descriptor
    old_readme = next(e for t, e in base_descriptor.layers() if t == "files/docs/README.md")
    extra = marker.omitted[0].model_copy(update={"digest": old_readme.digest, "size": old_readme.size})
    (delta / DELTA_MARKER_NAME).write_bytes(marker.model_copy(update={"omitted": [*marker.omitted, extra]}).to_bytes())
    with pytest.raises(VerificationError, match="unexpected file not referenced by the signed bundle"):
        verify_delta(delta, v.base, [keys.public])


def test_malformed_marker_is_refused(tmp_path: Path, keys: KeyPair) -> None:
    v = _versions(tmp_path, keys)
    delta = _delta(tmp_path, keys, v)
    doc = json.loads((delta / DELTA_MARKER_NAME).read_bytes())
    doc["kind"] = "Bundle"
    (delta / DELTA_MARKER_NAME).write_text(json.dumps(doc))
    with pytest.raises(VerificationError, match="holds gapseal.delta.json but it is malformed"):
        verify_bundle(delta, [keys.public])


def test_full_bundle_or_inventory_file_where_a_bundle_is_needed(tmp_path: Path, keys: KeyPair) -> None:
    v = _versions(tmp_path, keys)
    delta = _delta(tmp_path, keys, v)
    with pytest.raises(BundleError, match="is a full bundle, not a delta"):
        verify_delta(v.base, v.base, [keys.public])
    write_inventory(take_inventory([v.base]), tmp_path / "have.json")
    with pytest.raises(UsageError, match="needs the base bundle itself, not an inventory of it"):
        verify_delta(delta, tmp_path / "have.json", [keys.public])
    (tmp_path / "bad.json").write_text('{"kind": "Something"}')
    with pytest.raises(UsageError, match="the base inventory is malformed") as caught:
        load_base(tmp_path / "bad.json")
    assert "gapseal bundle inventory" in (caught.value.hint or "")
    with pytest.raises(InputPathError, match="does not exist"):
        create_delta(v.spec2, keys.private, tmp_path / "d", tmp_path / "nowhere")


def test_tar_forms_of_delta_and_base(tmp_path: Path, keys: KeyPair) -> None:
    v = _versions(tmp_path, keys)
    delta = _delta(tmp_path, keys, v)
    pack_layout(v.base, tmp_path / "v1.tar", mtime=0)
    pack_layout(delta, tmp_path / "delta.tar", mtime=0)
    with pytest.raises(VerificationError, match="this is a delta of clinic 2.0.0"):
        verify_bundle(tmp_path / "delta.tar", [keys.public])
    assert verify_delta(tmp_path / "delta.tar", tmp_path / "v1.tar", [keys.public]).descriptor.version == "2.0.0"
    made = create_delta(v.spec2, keys.private, tmp_path / "delta-from-tar", tmp_path / "v1.tar", link=False)
    assert made.marker.omitted == _marker(delta).omitted
    applied = apply_delta(tmp_path / "delta.tar", tmp_path / "v1.tar", tmp_path / "full", [keys.public])
    assert verify_bundle(applied.path, [keys.public]).descriptor.version == "2.0.0"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".full")]


def test_images_shared_with_the_base_are_left_out_and_walked_through_the_base(tmp_path: Path, keys: KeyPair) -> None:
    from tests.registry.images import write_image

    def spec(root: Path, version: str, notes: str) -> Path:
        (root / "docs").mkdir(parents=True)
        (root / "docs/notes.txt").write_text(notes)
        (root / "bundle.yaml").write_text(
            "apiVersion: gapseal/v1\nkind: Bundle\n"
            f'metadata: {{name: stack, version: {version}, created: "2026-01-01T00:00:00Z"}}\n'
            "files:\n  - {name: docs, path: docs}\n"
            "images:\n  - {name: server, source: 'oci:src:v1'}\n"
        )
        return root / "bundle.yaml"

    write_image(tmp_path / "in1/src", "v1", ["linux/amd64", "linux/arm64"])
    shutil.copytree(tmp_path / "in1/src", tmp_path / "in2/src")
    base = create_bundle(spec(tmp_path / "in1", "1.0.0", "a\n"), keys.private, tmp_path / "v1", link=False)
    made = create_delta(spec(tmp_path / "in2", "2.0.0", "b\n"), keys.private, tmp_path / "d", base.path, link=False)
    assert made.full.descriptor.images is not None
    image_digests = {d for _, d in made.full.descriptor.images[0].subjects()}
    assert image_digests <= {b.digest for b in made.marker.omitted}
    assert verify_delta(made.full.path, base.path, [keys.public]).descriptor.images is not None
    applied = apply_delta(made.full.path, base.path, tmp_path / "full", [keys.public])
    assert verify_bundle(applied.path, [keys.public]).descriptor.version == "2.0.0"
    # An image layer missing from the base is named by its image, platform and layer (this one is in both platforms).
    layer = made.full.descriptor.images[0].manifests[0].layers[0]
    (base.path / oci.blob_path(layer.digest)).unlink()
    with pytest.raises(
        VerificationError,
        match=r"\n  - images/server/linux/amd64/layers/0, images/server/linux/arm64/layers/0: sha256:",
    ):
        verify_delta(made.full.path, base.path, [keys.public])


def test_split_delta_applied_onto_a_tar_base_writes_only_what_it_needs(tmp_path: Path, keys: KeyPair) -> None:
    v = _versions(tmp_path, keys)
    (tmp_path / "in2/docs/README.md").write_text("revised at length\n" * 6000)  # ~100 KiB: cut into ranges
    delta = _delta(tmp_path, keys, v)
    pack_layout(v.base, tmp_path / "v1.tar", mtime=0)
    parts = pack_layout(delta, tmp_path / "d.tar", mtime=0, part_size=40960).parts
    assert len(parts) > 1
    first = parts[0].path
    assert verify_delta(first, tmp_path / "v1.tar", [keys.public]).descriptor.version == "2.0.0"
    applied = apply_delta(first, tmp_path / "v1.tar", tmp_path / "full", [keys.public])
    assert applied.linked == 0  # everything came out of the archives, in the same pass that hashed them
    assert applied.from_base == len(_marker(delta).omitted)
    assert verify_bundle(applied.path, [keys.public]).manifest_digest == _marker(delta).bundle.manifest_digest


def test_corrupt_blob_in_a_tar_base_is_named_on_apply(tmp_path: Path, keys: KeyPair) -> None:
    v = _versions(tmp_path, keys)
    delta = _delta(tmp_path, keys, v)
    descriptor = verify_bundle(v.base, [keys.public]).descriptor
    weights = next(e for t, e in descriptor.layers() if t == "models/tiny/model.safetensors")
    blob = v.base / oci.blob_path(weights.digest)
    data = bytearray(blob.read_bytes())
    data[-3] ^= 0x10
    blob.write_bytes(bytes(data))
    pack_layout(v.base, tmp_path / "v1.tar", mtime=0)
    with pytest.raises(VerificationError, match=f"blob {oci.blob_path(weights.digest)} is corrupt") as info:
        apply_delta(delta, tmp_path / "v1.tar", tmp_path / "full", [keys.public])
    assert info.value.where == str(tmp_path / "v1.tar")
    assert not (tmp_path / "full").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".full")]


def test_inventory_file_is_parsed_strictly_and_bounded(tmp_path: Path, keys: KeyPair) -> None:
    """have.json is untrusted input: duplicate keys (two readers, two documents) and a huge file are refused."""
    v = _versions(tmp_path, keys)
    write_inventory(take_inventory([v.base]), tmp_path / "have.json")
    text = (tmp_path / "have.json").read_text()
    assert text.startswith('{"api_version":')
    (tmp_path / "dup.json").write_text('{"kind":"Other",' + text[1:])
    with pytest.raises(UsageError, match="duplicate key 'kind'"):
        load_base(tmp_path / "dup.json")
    huge = tmp_path / "huge.json"
    with huge.open("wb") as f:
        f.write(b"{")
        f.truncate(MAX_DOCUMENT + 4096)  # sparse: costs no disk, and must not be read whole
    with pytest.raises(UsageError, match="over the 67108864-byte limit"):
        load_base(huge)
