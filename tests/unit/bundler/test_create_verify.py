"""create_bundle and verify_bundle on layout directories: the round trip, determinism, and every tamper case."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gapseal.bundler import layout as oci
from gapseal.bundler.create import create_bundle
from gapseal.bundler.rollback import RollbackState
from gapseal.bundler.verify import verify_bundle
from gapseal.errors import InputError, SpecError, UsageError, VerificationError
from gapseal.signing.attestation import sign_statement
from tests.bundles import KeyPair, make_bundle, make_inputs, make_keys


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    return make_keys(tmp_path / "keys")


def _index(bundle: Path) -> oci.Index:
    return oci.Index.model_validate_json((bundle / "index.json").read_bytes())


def _manifest(bundle: Path) -> oci.Manifest:
    return oci.Manifest.model_validate_json((bundle / oci.blob_path(_index(bundle).manifests[0].digest)).read_bytes())


def _layer(bundle: Path, title: str) -> oci.Descriptor:
    return next(layer for layer in _manifest(bundle).layers if (layer.annotations or {})[oci.ANNOTATION_TITLE] == title)


def _rejects(bundle: Path, keys: KeyPair, fragment: str) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        verify_bundle(bundle, [keys.public])
    assert fragment in info.value.message, info.value.message
    return info.value


def test_round_trip_verifies_and_describes_every_component(tmp_path: Path, keys: KeyPair) -> None:
    created = make_bundle(tmp_path, keys)
    verified = verify_bundle(created.path, [keys.public])
    assert verified.manifest_digest == created.manifest_digest
    assert verified.signer_key_id == keys.public.key_id
    d = verified.descriptor
    assert (d.name, d.version, d.created) == ("clinic", "1.0.0", "2026-01-01T00:00:00Z")
    assert [m.name for m in d.models] == ["tiny"]
    assert d.models[0].format == "safetensors"
    assert {f.path for f in d.models[0].files} == {"config.json", "model.safetensors"}
    assert d.models[0].signature is not None
    assert [v.backend for v in d.builds[0].variants] == ["cuda", "cpu"]
    assert d.builds[0].variants[0].requires.nvidia_driver == ">=535"
    titles = [t for t, _ in d.layers()]
    assert "builds/server/cpu-amd64/bin/server" in titles
    assert (created.path / "oci-layout").read_bytes() == oci.OCI_LAYOUT_BYTES


def test_same_spec_and_inputs_give_the_same_manifest_digest(tmp_path: Path, keys: KeyPair) -> None:
    spec = make_inputs(tmp_path / "in")
    a = create_bundle(spec, keys.private, tmp_path / "a", link=False)
    os.utime(spec.parent / "docs/README.md", (1, 1))  # mtimes are not part of a bundle
    b = create_bundle(spec, keys.private, tmp_path / "b")
    assert a.manifest_digest == b.manifest_digest
    assert (a.path / "index.json").read_bytes() == (b.path / "index.json").read_bytes()


def test_source_date_epoch_sets_created_when_the_spec_does_not(tmp_path: Path, keys: KeyPair) -> None:
    spec = make_inputs(tmp_path / "in")
    spec.write_text(spec.read_text().replace('  created: "2026-01-01T00:00:00Z"\n', ""))
    a = create_bundle(spec, keys.private, tmp_path / "a", source_date_epoch=1700000000)
    b = create_bundle(spec, keys.private, tmp_path / "b", source_date_epoch=1700000000)
    assert a.descriptor.created == "2023-11-14T22:13:20Z"
    assert a.manifest_digest == b.manifest_digest


def test_inputs_on_the_same_filesystem_are_hard_linked_not_copied(tmp_path: Path, keys: KeyPair) -> None:
    spec = make_inputs(tmp_path / "in")
    created = create_bundle(spec, keys.private, tmp_path / "bundle")
    weights = spec.parent / "models/tiny/model.safetensors"
    digest = next(e.digest for t, e in created.descriptor.layers() if t.endswith("model.safetensors"))
    assert os.path.samefile(weights, created.path / oci.blob_path(digest))
    assert created.copied_files == 0
    assert created.linked_files > 0


def test_existing_output_is_refused_without_overwrite(tmp_path: Path, keys: KeyPair) -> None:
    spec = make_inputs(tmp_path / "in")
    (tmp_path / "bundle").mkdir()
    with pytest.raises(UsageError, match="already exists"):
        create_bundle(spec, keys.private, tmp_path / "bundle")


def test_interrupted_create_leaves_nothing_behind(
    tmp_path: Path, keys: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure at the very last step (signing) leaves no output and no partial directory."""
    spec = make_inputs(tmp_path / "in")

    def boom(*args: object, **kwargs: object) -> bytes:
        raise KeyboardInterrupt

    monkeypatch.setattr("gapseal.bundler.create.sign_statement", boom)
    with pytest.raises(KeyboardInterrupt):
        create_bundle(spec, keys.private, tmp_path / "bundle")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "keys"]


def test_a_model_file_named_like_the_signature_is_refused(tmp_path: Path, keys: KeyPair) -> None:
    spec = make_inputs(tmp_path / "in")
    (spec.parent / "models/tiny/model.sig").write_text("x")
    with pytest.raises(InputError, match=r"model\.sig"):
        create_bundle(spec, keys.private, tmp_path / "bundle")


# --- tampering: each must be rejected with a message naming what is wrong ---------------------------------------


def test_flipped_byte_in_a_weight_blob(tmp_path: Path, keys: KeyPair) -> None:
    bundle = make_bundle(tmp_path, keys).path
    blob = bundle / oci.blob_path(_layer(bundle, "models/tiny/model.safetensors").digest)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0x01
    blob.write_bytes(bytes(data))
    _rejects(bundle, keys, "models/tiny/model.safetensors is corrupt")


def test_deleted_blob(tmp_path: Path, keys: KeyPair) -> None:
    bundle = make_bundle(tmp_path, keys).path
    (bundle / oci.blob_path(_layer(bundle, "docs/docs/README.md".replace("docs/docs", "files/docs")).digest)).unlink()
    _rejects(bundle, keys, "missing blob for files/docs/README.md")


def test_extra_file_in_the_layout(tmp_path: Path, keys: KeyPair) -> None:
    bundle = make_bundle(tmp_path, keys).path
    (bundle / "notes.txt").write_text("hello")
    _rejects(bundle, keys, "unexpected file in the layout: notes.txt")


def test_extra_unreferenced_blob(tmp_path: Path, keys: KeyPair) -> None:
    bundle = make_bundle(tmp_path, keys).path
    data = b"smuggled"
    (bundle / oci.blob_path(oci.sha256_digest(data))).write_bytes(data)
    _rejects(bundle, keys, "unexpected file not referenced by the signed bundle")


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda raw: raw.replace(b'"schemaVersion":2', b'"schemaVersion": 2'), id="whitespace"),
        pytest.param(lambda raw: raw.replace(b"gapseal-bundle", b"gapseal-bundlE"), id="ref-name"),
        pytest.param(lambda raw: raw.replace(b'"size":', b'"size":1', 1), id="descriptor-size"),
    ],
)
def test_edited_index_json(tmp_path: Path, keys: KeyPair, edit: object) -> None:
    bundle = make_bundle(tmp_path, keys).path
    path = bundle / "index.json"
    path.write_bytes(edit(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(VerificationError) as info:
        verify_bundle(bundle, [keys.public])
    assert "index.json" in info.value.message or "bundle manifest" in info.value.message


def test_edited_descriptor_blob_in_place(tmp_path: Path, keys: KeyPair) -> None:
    bundle = make_bundle(tmp_path, keys).path
    config = bundle / oci.blob_path(_manifest(bundle).config.digest)
    config.write_bytes(config.read_bytes().replace(b'"version":"1.0.0"', b'"version":"9.0.0"'))
    _rejects(bundle, keys, "the bundle descriptor is corrupt")


def _rechain_manifest(bundle: Path, manifest: oci.Manifest) -> None:
    """An attacker who edits the manifest and fixes every digest up to index.json (but cannot re-sign)."""
    data = manifest.to_bytes()
    digest = oci.sha256_digest(data)
    (bundle / oci.blob_path(digest)).write_bytes(data)
    old = _index(bundle).manifests[0].digest
    (bundle / oci.blob_path(old)).unlink()
    idx = (bundle / "index.json").read_bytes().replace(old.encode(), digest.encode())
    idx = idx.replace(b'"size":%d' % _index(bundle).manifests[0].size, b'"size":%d' % len(data), 1)
    (bundle / "index.json").write_bytes(idx)


def test_edited_layer_descriptor_with_every_digest_fixed_up(tmp_path: Path, keys: KeyPair) -> None:
    bundle = make_bundle(tmp_path, keys).path
    manifest = _manifest(bundle)
    evil = manifest.model_copy(update={"annotations": {**(manifest.annotations or {}), "x": "y"}})
    _rechain_manifest(bundle, evil)
    _rejects(bundle, keys, "signature")


def _signature_blob(bundle: Path) -> Path:
    sig_desc = _index(bundle).manifests[1]
    sig_manifest = oci.Manifest.model_validate_json((bundle / oci.blob_path(sig_desc.digest)).read_bytes())
    return bundle / oci.blob_path(sig_manifest.layers[0].digest)


def test_edited_signature_blob(tmp_path: Path, keys: KeyPair) -> None:
    bundle = make_bundle(tmp_path, keys).path
    blob = _signature_blob(bundle)
    doc = json.loads(blob.read_bytes())
    doc["dsseEnvelope"]["signatures"][0]["sig"] = "MEUCIQ" + doc["dsseEnvelope"]["signatures"][0]["sig"][6:]
    blob.write_bytes(json.dumps(doc).encode())
    _rejects(bundle, keys, "Sigstore bundle is corrupt")


def _replace_signature(bundle: Path, signature: bytes) -> None:
    """Swap the signature and fix every digest on the way to index.json, as a capable attacker would."""
    index = _index(bundle)
    old_desc = index.manifests[1]
    old_manifest = oci.Manifest.model_validate_json((bundle / oci.blob_path(old_desc.digest)).read_bytes())
    (bundle / oci.blob_path(old_manifest.layers[0].digest)).unlink()
    (bundle / oci.blob_path(old_desc.digest)).unlink()
    (bundle / oci.blob_path(oci.sha256_digest(signature))).write_bytes(signature)
    new_manifest = oci.signature_manifest(old_manifest.subject, signature, created="2026-01-01T00:00:00Z")  # type: ignore[arg-type]
    data = new_manifest.to_bytes()
    (bundle / oci.blob_path(oci.sha256_digest(data))).write_bytes(data)
    new_desc = oci.Descriptor(media_type=oci.MEDIA_MANIFEST, digest=oci.sha256_digest(data), size=len(data))
    bundle_desc = oci.Descriptor(
        media_type=index.manifests[0].media_type, digest=index.manifests[0].digest, size=index.manifests[0].size
    )
    (bundle / "index.json").write_bytes(oci.build_index(bundle_desc, [new_desc]).to_bytes())


def test_signature_by_a_different_key(tmp_path: Path, keys: KeyPair) -> None:
    bundle = make_bundle(tmp_path, keys).path
    original = json.loads(_signature_blob(bundle).read_bytes())
    payload = json.loads(__import__("base64").b64decode(original["dsseEnvelope"]["payload"]))
    from gapseal.signing.attestation import Subject

    other = make_keys(tmp_path / "other", "mallory")
    forged = sign_statement(
        [Subject(s["name"], s["digest"]["sha256"]) for s in payload["subject"]],
        payload["predicateType"],
        payload["predicate"],
        other.private,
    )
    _replace_signature(bundle, forged)
    _rejects(bundle, keys, "no valid signature by a trusted key")
    assert verify_bundle(bundle, [other.public]).signer_key_id == other.public.key_id


def test_signature_with_a_tampered_statement_but_valid_chain(tmp_path: Path, keys: KeyPair) -> None:
    bundle = make_bundle(tmp_path, keys).path
    doc = json.loads(_signature_blob(bundle).read_bytes())
    import base64

    payload = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    payload["predicate"]["version"] = "99.0.0"
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    _replace_signature(bundle, json.dumps(doc).encode())
    _rejects(bundle, keys, "no valid signature by a trusted key")


def test_unsigned_bundle(tmp_path: Path, keys: KeyPair) -> None:
    bundle = make_bundle(tmp_path, keys).path
    index = _index(bundle)
    d = index.manifests[0]
    (bundle / "index.json").write_bytes(
        oci.Index(schema_version=2, media_type=oci.MEDIA_INDEX, manifests=[d]).to_bytes()
    )
    _rejects(bundle, keys, "not signed")


def test_expired_bundle(tmp_path: Path, keys: KeyPair) -> None:
    bundle = make_bundle(tmp_path, keys, expires="2099-02-01T00:00:00Z").path
    assert verify_bundle(bundle, [keys.public], now=datetime(2099, 1, 15, tzinfo=UTC))
    with pytest.raises(VerificationError, match="expired at 2099-02-01T00:00:00Z"):
        verify_bundle(bundle, [keys.public], now=datetime(2099, 3, 1, tzinfo=UTC))


def test_create_refuses_a_bundle_that_is_already_expired(tmp_path: Path, keys: KeyPair) -> None:
    with pytest.raises(
        SpecError, match=r"metadata.expires: the bundle would already be expired \(2026-02-01T00:00:00Z\)"
    ):
        make_bundle(tmp_path, keys, expires="2026-02-01T00:00:00Z")
    assert not (tmp_path / "bundle").exists()


def test_downgrade_is_refused_unless_allowed(tmp_path: Path, keys: KeyPair) -> None:
    state = RollbackState(tmp_path / "state" / "rollback.json")
    new = make_bundle(tmp_path / "new", keys, version="1.5.0").path
    old = make_bundle(tmp_path / "old", keys, version="1.4.0").path
    verify_bundle(new, [keys.public], rollback=state)  # only looked at: the mark does not move
    verify_bundle(old, [keys.public], rollback=state)
    verify_bundle(new, [keys.public], rollback=state, record=True)  # used: the mark moves to 1.5.0
    verify_bundle(new, [keys.public], rollback=state, record=True)  # the same version is always usable again
    with pytest.raises(VerificationError, match=r"rollback refused: clinic 1.4.0 is older than 1.5.0"):
        verify_bundle(old, [keys.public], rollback=state)
    allowed = verify_bundle(old, [keys.public], rollback=state, allow_downgrade=True)
    assert allowed.rollback is not None
    assert allowed.rollback.downgrade
    # The high-water mark stays at 1.5.0: an allowed downgrade does not lower it.
    with pytest.raises(VerificationError, match="rollback refused"):
        verify_bundle(old, [keys.public], rollback=state)


def test_damaged_rollback_state_fails_closed(tmp_path: Path, keys: KeyPair) -> None:
    state_path = tmp_path / "rollback.json"
    state_path.write_text("{not json")
    bundle = make_bundle(tmp_path, keys).path
    with pytest.raises(VerificationError, match="rollback state file is unreadable"):
        verify_bundle(bundle, [keys.public], rollback=RollbackState(state_path))


def test_symlink_inside_the_layout(tmp_path: Path, keys: KeyPair) -> None:
    bundle = make_bundle(tmp_path, keys).path
    blob = bundle / oci.blob_path(_layer(bundle, "files/docs/README.md").digest)
    target = tmp_path / "elsewhere"
    target.write_bytes(blob.read_bytes())
    blob.unlink()
    blob.symlink_to(target)
    with pytest.raises(VerificationError, match="symbolic link|symlink"):
        verify_bundle(bundle, [keys.public])


def test_services_from_the_spec_travel_in_the_signed_descriptor(tmp_path: Path, keys: KeyPair) -> None:
    from gapseal.installer.install import playbook_vars

    spec = make_inputs(tmp_path / "in")
    spec.write_text(
        spec.read_text()
        + "services:\n  - {name: embed, build: server, model: tiny, exec: bin/server, port: 8080, bind: 127.0.0.1}\n"
    )
    created = create_bundle(spec, keys.private, tmp_path / "bundle")
    verified = verify_bundle(created.path, [keys.public])
    assert [s.name for s in verified.descriptor.services or []] == ["embed"]
    services = playbook_vars(verified)["gapseal_services"]
    assert services[0]["exec"] == "bin/server"
    assert services[0]["port"] == 8080
    # A bundle without services has no services key at all in its descriptor.
    plain = create_bundle(make_inputs(tmp_path / "in2"), keys.private, tmp_path / "plain")
    assert plain.descriptor.services is None
    assert b'"services"' not in plain.descriptor.to_bytes()


def test_read_layout_descriptor_reads_only_the_metadata_and_checks_it(tmp_path: Path, keys: KeyPair) -> None:
    """pack takes its tar mtime from here: the descriptor without hashing weights, but never from a corrupt blob."""
    from gapseal.bundler.inspect import read_layout_descriptor

    bundle = make_bundle(tmp_path, keys).path
    weights = bundle / oci.blob_path(_layer(bundle, "models/tiny/model.safetensors").digest)
    weights.unlink()  # not needed for the metadata, so not read
    assert read_layout_descriptor(bundle).created == "2026-01-01T00:00:00Z"
    config = bundle / oci.blob_path(_manifest(bundle).config.digest)
    config.write_bytes(config.read_bytes().replace(b"2026-01-01", b"2027-01-01"))
    with pytest.raises(VerificationError, match="is corrupt"):
        read_layout_descriptor(bundle)
    config.unlink()
    with pytest.raises(VerificationError, match="cannot be read"):
        read_layout_descriptor(bundle)
