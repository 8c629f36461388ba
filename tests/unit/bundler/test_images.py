"""Images in a bundle: spec forms, byte-for-byte import through skopeo, platform filters, verify's image walk.

Sources are real OCI layouts written by tests/registry/images.py and read by the real skopeo.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gapseal.bundler import layout as oci
from gapseal.bundler.create import create_bundle
from gapseal.bundler.images import ImageSourceError, skopeo_reason
from gapseal.bundler.spec import load_spec
from gapseal.bundler.verify import verify_bundle
from gapseal.errors import SpecError, VerificationError
from tests.bundles import KeyPair, make_keys
from tests.registry.images import BuiltImage, write_image

ARM = "linux/arm64/v8"
AMD = "linux/amd64"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_keys(tmp_path_factory.mktemp("keys"))


def _spec(root: Path, images: str, *, extra: str = "") -> Path:
    spec = root / "bundle.yaml"
    spec.write_text(
        "apiVersion: gapseal/v1\nkind: Bundle\n"
        'metadata: {name: stack, version: 1.0.0, created: "2026-01-01T00:00:00Z"}\n'
        f"{extra}images:\n{images}"
    )
    return spec


def _multiarch(root: Path) -> BuiltImage:
    return write_image(root / "src", "v1", [AMD, ARM])


def _blob_names(bundle: Path) -> set[str]:
    return {p.name for p in (bundle / "blobs" / "sha256").iterdir()}


# ---------------------------------------------------------------------------------------------------------------
# Spec


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("nginx:latest", "is not an image source"),
        ("docker:/127.0.0.1/x:1", "is not an image source"),
        ("oci:", "is not an image source"),
        ("http://127.0.0.1:5000/x", "is not an image source"),
    ],
)
def test_spec_refuses_unknown_source_forms(tmp_path: Path, source: str, message: str) -> None:
    spec = _spec(tmp_path, f"  - {{name: app, source: '{source}'}}\n")
    with pytest.raises(SpecError, match=message) as e:
        load_spec(spec)
    assert "images[0].source" in e.value.message


@pytest.mark.parametrize("platform", ["amd64", "linux", "Linux/AMD64", "linux/amd64/v8/x", ""])
def test_spec_refuses_malformed_platforms(tmp_path: Path, platform: str) -> None:
    _multiarch(tmp_path)
    spec = _spec(tmp_path, f"  - {{name: app, source: 'oci:src:v1', platforms: ['{platform}']}}\n")
    with pytest.raises(SpecError, match=r"images\[0\]\.platforms.*not a platform"):
        load_spec(spec)


def test_spec_refuses_an_image_named_like_another_component(tmp_path: Path) -> None:
    _multiarch(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/a.txt").write_text("a")
    spec = _spec(tmp_path, "  - {name: docs, source: 'oci:src:v1'}\n", extra="files:\n  - {name: docs, path: docs}\n")
    with pytest.raises(SpecError, match=r"images\[0\]\.name: duplicate name 'docs'"):
        load_spec(spec)


def test_spec_refuses_a_missing_source_path(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "  - {name: app, source: 'oci-archive:images/app.tar'}\n")
    with pytest.raises(SpecError, match=r"images\[0\]\.source: 'images/app.tar' does not exist"):
        load_spec(spec)


def test_spec_refuses_a_source_outside_the_spec_directory(tmp_path: Path) -> None:
    _multiarch(tmp_path / "outside")
    (tmp_path / "spec").mkdir()
    spec = _spec(tmp_path / "spec", "  - {name: app, source: 'oci:../outside/src:v1'}\n")
    with pytest.raises(SpecError, match="outside the spec's directory"):
        load_spec(spec)


def test_spec_accepts_a_docker_source_without_touching_the_network(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "  - {name: app, source: 'docker://127.0.0.1:1/app:1', insecure: true}\n")
    loaded = load_spec(spec)
    assert loaded.spec.images[0].insecure is True
    assert list(loaded.spec.image_paths()) == []


def test_spec_refuses_insecure_on_a_file_source(tmp_path: Path) -> None:
    _multiarch(tmp_path)
    spec = _spec(tmp_path, "  - {name: app, source: 'oci:src:v1', insecure: true}\n")
    with pytest.raises(SpecError, match=r"images\[0\]\.insecure: only means something for a docker:// source"):
        load_spec(spec)


# ---------------------------------------------------------------------------------------------------------------
# Create and verify


def test_multiarch_image_is_stored_byte_for_byte_and_verifies(tmp_path: Path, keys: KeyPair) -> None:
    src = _multiarch(tmp_path)
    created = create_bundle(_spec(tmp_path, "  - {name: app, source: 'oci:src:v1'}\n"), keys.private, tmp_path / "b")
    bundle = created.path
    index = json.loads((bundle / "index.json").read_bytes())
    entry = next(m for m in index["manifests"] if m["annotations"][oci.ANNOTATION_REF_NAME] == "app")
    assert (entry["digest"], entry["mediaType"]) == (src.digest, src.media_type)
    for platform, digest in src.manifests.items():
        for blob in [digest, *src.layers[platform]]:
            got = (bundle / oci.blob_path(blob)).read_bytes()
            assert got == (src.layout / oci.blob_path(blob)).read_bytes()
    image = created.descriptor.images[0]  # type: ignore[index]
    assert image.platforms == [AMD, ARM]
    assert image.source_digest == image.digest == src.digest
    subjects = {s.name: s.sha256 for s in verify_bundle(bundle, [keys.public]).statement.subjects}
    assert subjects["images/app"] == src.digest.removeprefix("sha256:")
    assert subjects[f"images/app/{ARM}"] == src.manifests[ARM].removeprefix("sha256:")
    assert subjects[f"images/app/{AMD}/layers/1"] == src.layers[AMD][1].removeprefix("sha256:")
    assert f"images/app/{AMD}/config" in subjects


def test_platform_filter_keeps_only_matching_manifests(tmp_path: Path, keys: KeyPair) -> None:
    src = _multiarch(tmp_path)
    spec = _spec(tmp_path, f"  - {{name: app, source: 'oci:src:v1', platforms: [{AMD}]}}\n")
    created = create_bundle(spec, keys.private, tmp_path / "b")
    image = created.descriptor.images[0]  # type: ignore[index]
    assert [m.digest for m in image.manifests] == [src.manifests[AMD]]
    assert image.source_digest == src.digest
    assert image.digest != src.digest  # a new index listing only the kept manifest
    stored = _blob_names(created.path)
    assert src.manifests[ARM].removeprefix("sha256:") not in stored
    assert src.layers[ARM][1].removeprefix("sha256:") not in stored
    assert src.digest.removeprefix("sha256:") not in stored
    kept = json.loads((created.path / oci.blob_path(image.digest)).read_bytes())
    assert [m["digest"] for m in kept["manifests"]] == [src.manifests[AMD]]
    verify_bundle(created.path, [keys.public])


def test_platform_filter_by_os_arch_keeps_variants(tmp_path: Path, keys: KeyPair) -> None:
    src = _multiarch(tmp_path)
    spec = _spec(tmp_path, "  - {name: app, source: 'oci:src:v1', platforms: [linux/arm64]}\n")
    image = create_bundle(spec, keys.private, tmp_path / "b").descriptor.images[0]  # type: ignore[index]
    assert [m.digest for m in image.manifests] == [src.manifests[ARM]]


def test_platform_filter_matching_nothing_is_an_error_and_leaves_nothing(tmp_path: Path, keys: KeyPair) -> None:
    _multiarch(tmp_path)
    spec = _spec(tmp_path, "  - {name: app, source: 'oci:src:v1', platforms: [linux/s390x]}\n")
    with pytest.raises(ImageSourceError, match=r"image 'app': no manifest matches platforms linux/s390x") as e:
        create_bundle(spec, keys.private, tmp_path / "b")
    assert "linux/amd64, linux/arm64/v8" in e.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle.yaml", "src"]


def test_single_platform_image_refused_by_a_filter_it_does_not_match(tmp_path: Path, keys: KeyPair) -> None:
    write_image(tmp_path / "src", "v1", [AMD])
    spec = _spec(tmp_path, "  - {name: app, source: 'oci:src:v1', platforms: [linux/arm64]}\n")
    with pytest.raises(ImageSourceError, match="single-platform image for linux/amd64"):
        create_bundle(spec, keys.private, tmp_path / "b")


def test_missing_tag_in_an_existing_layout_is_refused(tmp_path: Path, keys: KeyPair) -> None:
    _multiarch(tmp_path)
    spec = _spec(tmp_path, "  - {name: app, source: 'oci:src:nope'}\n")
    with pytest.raises(ImageSourceError, match=r"image 'app': cannot read oci:src:nope") as e:
        create_bundle(spec, keys.private, tmp_path / "b")
    assert "nope" in e.value.message
    assert not (tmp_path / "b").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".b.partial")] == []


def test_blobs_shared_between_images_and_files_are_stored_once(tmp_path: Path, keys: KeyPair) -> None:
    one = write_image(tmp_path / "src", "one", [AMD], seed="same")
    two = write_image(tmp_path / "src", "two", [ARM], seed="same")
    assert one.shared_layer == two.shared_layer
    (tmp_path / "docs").mkdir()
    shutil.copy(tmp_path / "src" / oci.blob_path(one.shared_layer), tmp_path / "docs/layer.tar.gz")
    spec = _spec(
        tmp_path,
        "  - {name: one, source: 'oci:src:one'}\n  - {name: two, source: 'oci:src:two'}\n",
        extra="files:\n  - {name: docs, path: docs}\n",
    )
    created = create_bundle(spec, keys.private, tmp_path / "b")
    verify_bundle(created.path, [keys.public])
    referenced = [m.layers[0].digest for i in created.descriptor.images or [] for m in i.manifests]
    assert referenced == [one.shared_layer, one.shared_layer]
    assert created.descriptor.files[0].files[0].digest == one.shared_layer
    assert (created.path / oci.blob_path(one.shared_layer)).is_file()  # one file for three uses


def test_two_images_reproduce_the_same_bundle(tmp_path: Path, keys: KeyPair) -> None:
    _multiarch(tmp_path)
    spec = _spec(tmp_path, f"  - {{name: app, source: 'oci:src:v1', platforms: [{ARM}]}}\n")
    a = create_bundle(spec, keys.private, tmp_path / "a")
    b = create_bundle(spec, keys.private, tmp_path / "b")
    assert a.manifest_digest == b.manifest_digest
    assert (a.path / "index.json").read_bytes() == (b.path / "index.json").read_bytes()


# ---------------------------------------------------------------------------------------------------------------
# Tampering: verify names the image and what is wrong


@pytest.fixture
def image_bundle(tmp_path: Path, keys: KeyPair) -> tuple[Path, BuiltImage]:
    src = _multiarch(tmp_path)
    create_bundle(_spec(tmp_path, "  - {name: app, source: 'oci:src:v1'}\n"), keys.private, tmp_path / "b", link=False)
    return tmp_path / "b", src


def test_tampered_image_layer_is_named_by_image_platform_and_layer(
    image_bundle: tuple[Path, BuiltImage], keys: KeyPair
) -> None:
    bundle, src = image_bundle
    layer = bundle / oci.blob_path(src.layers[ARM][1])
    data = bytearray(layer.read_bytes())
    data[-1] ^= 0x01
    layer.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match=rf"image app {ARM} layer 1 \({src.layers[ARM][1]}\) is corrupt"):
        verify_bundle(bundle, [keys.public])


def test_missing_image_layer_is_named(image_bundle: tuple[Path, BuiltImage], keys: KeyPair) -> None:
    bundle, src = image_bundle
    (bundle / oci.blob_path(src.layers[AMD][1])).unlink()
    with pytest.raises(VerificationError, match=rf"image app {AMD} layer 1 \(.*\) is missing"):
        verify_bundle(bundle, [keys.public])


def test_edited_image_manifest_is_named(image_bundle: tuple[Path, BuiltImage], keys: KeyPair) -> None:
    bundle, src = image_bundle
    path = bundle / oci.blob_path(src.manifests[AMD])
    path.write_bytes(path.read_bytes().replace(b'"schemaVersion":2', b'"schemaVersion": 2'))
    with pytest.raises(VerificationError, match=rf"image app {AMD} manifest is corrupt"):
        verify_bundle(bundle, [keys.public])


def test_image_dropped_from_index_json_is_refused(image_bundle: tuple[Path, BuiltImage], keys: KeyPair) -> None:
    bundle, _ = image_bundle
    index = json.loads((bundle / "index.json").read_bytes())
    index["manifests"] = [
        m for m in index["manifests"] if m.get("annotations", {}).get(oci.ANNOTATION_REF_NAME) != "app"
    ]
    (bundle / "index.json").write_bytes(json.dumps(index, separators=(",", ":"), sort_keys=True).encode())
    with pytest.raises(VerificationError, match="index.json has been edited"):
        verify_bundle(bundle, [keys.public])


def test_image_entry_pointing_elsewhere_is_refused(image_bundle: tuple[Path, BuiltImage], keys: KeyPair) -> None:
    bundle, src = image_bundle
    raw = (bundle / "index.json").read_bytes()
    manifest = (bundle / oci.blob_path(src.manifests[ARM])).read_bytes()
    raw = raw.replace(src.digest.encode(), src.manifests[ARM].encode())
    index = json.loads(raw)
    for m in index["manifests"]:
        if m["digest"] == src.manifests[ARM]:
            m["size"], m["mediaType"] = len(manifest), oci.MEDIA_MANIFEST
    (bundle / "index.json").write_bytes(json.dumps(index, separators=(",", ":"), sort_keys=True).encode())
    with pytest.raises(VerificationError, match="index.json entry of image app differs from the signed bundle"):
        verify_bundle(bundle, [keys.public])


def test_extra_blob_beside_an_image_is_refused(image_bundle: tuple[Path, BuiltImage], keys: KeyPair) -> None:
    bundle, _ = image_bundle
    data = b"smuggled"
    (bundle / oci.blob_path(oci.sha256_digest(data))).write_bytes(data)
    with pytest.raises(VerificationError, match="unexpected file not referenced by the signed bundle"):
        verify_bundle(bundle, [keys.public])


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        (
            'time="2026-11-23T16:59:08Z" level=fatal msg="Error parsing image name \\"oci:/x:nope\\": no descriptor"\n',
            'Error parsing image name "oci:/x:nope": no descriptor',
        ),
        ("plain failure\n", "plain failure"),
        ("", "skopeo exited with 1"),
    ],
)
def test_skopeo_errors_are_reported_by_their_message(stderr: str, reason: str) -> None:
    assert skopeo_reason(stderr, 1) == reason
