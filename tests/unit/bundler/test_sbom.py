"""The bundle's CycloneDX SBOM: schema-valid, complete, deterministic, signed, and printed by ``inspect --sbom``."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from gapseal.bundler import layout as oci
from gapseal.bundler.create import create_bundle
from gapseal.bundler.delta import create_delta
from gapseal.bundler.sbom import SBOM_FILE_NAME, build_sbom, read_sbom, sbom_serial
from gapseal.bundler.selfcontained import Wheelhouse
from gapseal.bundler.verify import verify_bundle
from gapseal.cli import main
from gapseal.errors import VerificationError
from tests.bundles import MINILM, KeyPair, make_inputs, make_keys
from tests.registry.images import write_image
from tests.unit.bundler.wheels import write_wheel


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_keys(tmp_path_factory.mktemp("keys"))


def _sbom(bundle: Path) -> tuple[bytes, dict[str, Any]]:
    descriptor = _descriptor(bundle)
    assert descriptor.sbom is not None
    data = (bundle / oci.blob_path(descriptor.sbom.digest)).read_bytes()
    return data, json.loads(data)


def _descriptor(bundle: Path) -> Any:
    from gapseal.bundler.descriptor import BundleDescriptor

    index = oci.Index.model_validate_json((bundle / "index.json").read_bytes())
    manifest = oci.Manifest.model_validate_json((bundle / oci.blob_path(index.manifests[0].digest)).read_bytes())
    return BundleDescriptor.load((bundle / oci.blob_path(manifest.config.digest)).read_bytes())


def _valid(data: bytes) -> None:
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(data.decode())
    assert error is None, str(error).splitlines()[0]


def _by_ref(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def walk(components: list[dict[str, Any]]) -> None:
        for c in components:
            out[c["bom-ref"]] = c
            walk(c.get("components", []))

    walk(doc["components"])
    return out


def _props(component: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in component.get("properties", [])}


def test_sbom_lists_models_files_builds_with_digests_and_validates(tmp_path: Path, keys: KeyPair) -> None:
    spec = make_inputs(tmp_path / "in")
    spec.write_text(spec.read_text().replace("path: models/tiny\n", "path: models/tiny\n    license: apache-2.0\n"))
    created = create_bundle(spec, keys.private, tmp_path / "b", link=False)
    data, doc = _sbom(created.path)
    _valid(data)
    assert doc["specVersion"] == "1.6"
    assert doc["metadata"]["component"]["name"] == "clinic"
    assert doc["metadata"]["component"]["version"] == "1.0.0"
    assert doc["metadata"]["timestamp"] == "2026-01-01T00:00:00+00:00"
    refs = _by_ref(doc)

    model = refs["model/tiny"]
    assert model["type"] == "machine-learning-model"
    assert model["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    props = _props(model)
    assert props["gapseal:format"] == "safetensors"
    assert props["gapseal:format.safetensors.tensor_count"] == "2"
    d = created.descriptor
    for title, entry in d.layers():
        if title.startswith("models/tiny/"):
            f = refs[f"model/tiny/{entry.path}"]
            assert f["hashes"] == [{"alg": "SHA-256", "content": entry.digest.removeprefix("sha256:")}]
            assert _props(f)["gapseal:size"] == str(entry.size)
    assert refs["files/docs"]["type"] == "data"
    assert "files/docs/README.md" in refs
    cuda = refs["build/server/cuda-amd64"]
    assert _props(cuda) == {
        "gapseal:arch": "amd64",
        "gapseal:backend": "cuda",
        "gapseal:requires.compute_capability": ">=8.0",
        "gapseal:requires.nvidia_driver": ">=535",
    }
    assert _props(refs["build/server/cpu-amd64"])["gapseal:requires.cpu_flags"] == "avx2"
    assert {"ref": "bundle", "dependsOn": ["build/server", "files/docs", "model/tiny"]} in doc["dependencies"]


def test_sbom_is_a_signed_layer_and_deterministic(tmp_path: Path, keys: KeyPair) -> None:
    spec = make_inputs(tmp_path / "in")
    a = create_bundle(spec, keys.private, tmp_path / "a", link=False)
    b = create_bundle(spec, keys.private, tmp_path / "b", link=False)
    assert a.descriptor.sbom == b.descriptor.sbom
    assert a.descriptor.sbom is not None
    assert a.descriptor.sbom.path == SBOM_FILE_NAME
    assert a.descriptor.sbom.media_type == "application/vnd.cyclonedx+json"
    titles = [t for t, _ in a.descriptor.layers()]
    assert titles[-1] == "sbom/bom.cdx.json"
    statement = verify_bundle(a.path, [keys.public]).statement
    assert ("sbom/bom.cdx.json", a.descriptor.sbom.digest.removeprefix("sha256:")) in {
        (s.name, s.sha256) for s in statement.subjects
    }
    _, doc = _sbom(a.path)
    without = a.descriptor.model_copy(update={"sbom": None})
    assert doc["serialNumber"] == f"urn:uuid:{sbom_serial(without.to_bytes())}"
    assert uuid.UUID(doc["serialNumber"].removeprefix("urn:uuid:")).version == 5
    with pytest.raises(ValueError, match="already holds an SBOM"):
        build_sbom(a.descriptor)


def test_tampered_sbom_blob_is_rejected_by_name(tmp_path: Path, keys: KeyPair) -> None:
    created = create_bundle(make_inputs(tmp_path / "in"), keys.private, tmp_path / "b", link=False)
    assert created.descriptor.sbom is not None
    blob = created.path / oci.blob_path(created.descriptor.sbom.digest)
    doc = json.loads(blob.read_bytes())
    doc["components"] = [c for c in doc["components"] if c["bom-ref"] != "model/tiny"]  # hide the model
    forged = json.dumps(doc, indent=2).encode()
    blob.write_bytes(forged.ljust(created.descriptor.sbom.size)[: created.descriptor.sbom.size])
    with pytest.raises(VerificationError, match=r"sbom/bom.cdx.json is corrupt: blobs/sha256/"):
        verify_bundle(created.path, [keys.public])
    with pytest.raises(VerificationError, match="the SBOM blob is missing or corrupt"):
        read_sbom(created.path)


def test_sbom_of_images_and_wheels(tmp_path: Path, keys: KeyPair) -> None:
    image = write_image(tmp_path / "in/src", "v1", ["linux/amd64", "linux/arm64"])
    (tmp_path / "in/bundle.yaml").write_text(
        "apiVersion: gapseal/v1\nkind: Bundle\n"
        'metadata: {name: stack, version: 1.0.0, created: "2026-01-01T00:00:00Z"}\n'
        "images:\n  - {name: server, source: 'oci:src:v1'}\n"
    )
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    write_wheel(wheels, "tiny_dep", "1.2.3")
    created = create_bundle(
        tmp_path / "in/bundle.yaml",
        keys.private,
        tmp_path / "b",
        link=False,
        wheels=Wheelhouse(wheels, "3.11", "manylinux_2_28_x86_64"),
    )
    data, doc = _sbom(created.path)
    _valid(data)
    refs = _by_ref(doc)
    server = refs["image/server"]
    assert server["type"] == "container"
    assert server["hashes"][0]["content"] == image.digest.removeprefix("sha256:")
    assert server["purl"] == f"pkg:oci/server@{image.digest}"
    props = _props(server)
    assert props["gapseal:platforms"] == "linux/amd64,linux/arm64"
    assert props["gapseal:manifest[linux/amd64]"].startswith("sha256:")
    wheel = refs["wheel/tiny_dep-1.2.3-py3-none-any.whl"]
    assert wheel["type"] == "library"
    assert wheel["name"] == "tiny-dep"
    assert wheel["version"] == "1.2.3"
    assert wheel["purl"] == "pkg:pypi/tiny-dep@1.2.3?file_name=tiny_dep-1.2.3-py3-none-any.whl"
    assert wheel["hashes"][0]["content"] == created.descriptor.wheels.files[0].digest.removeprefix("sha256:")  # type: ignore[union-attr]
    assert _props(doc["metadata"]["component"])["gapseal:wheels.platform"] == "manylinux_2_28_x86_64"


def test_sbom_of_the_real_minilm_validates(tmp_path: Path, keys: KeyPair) -> None:
    from tests.bundles import make_minilm_inputs

    created = create_bundle(make_minilm_inputs(tmp_path / "in"), keys.private, tmp_path / "b")
    data, doc = _sbom(created.path)
    _valid(data)
    props = _props(_by_ref(doc)["model/minilm"])
    assert props["gapseal:format.safetensors.parameter_count"] == "22713728"
    assert (MINILM / "model.safetensors").is_file()


def test_inspect_sbom_prints_the_stored_bytes(
    tmp_path: Path, keys: KeyPair, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    created = create_bundle(make_inputs(tmp_path / "in"), keys.private, tmp_path / "b", link=False)
    stored, _ = _sbom(created.path)
    assert main(["bundle", "inspect", str(created.path), "--sbom", "--key", str(keys.public_path)]) == 0
    captured = capfdbinary.readouterr()
    assert captured.out == stored
    assert main(["bundle", "inspect", str(created.path), "--sbom"]) == 0
    captured = capfdbinary.readouterr()
    assert captured.out == stored
    assert b"not verified" in captured.err


def test_inspect_sbom_of_a_delta_and_of_a_bundle_without_one(
    tmp_path: Path, keys: KeyPair, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    spec = make_inputs(tmp_path / "in")
    base = create_bundle(spec, keys.private, tmp_path / "v1", link=False, sbom=False)
    assert base.descriptor.sbom is None
    assert main(["bundle", "inspect", str(base.path), "--sbom"]) == 1
    assert b"carries no SBOM" in capfdbinary.readouterr().err
    delta = create_delta(spec, keys.private, tmp_path / "d", base.path, link=False)
    assert main(["bundle", "inspect", str(delta.full.path), "--sbom"]) == 0
    assert json.loads(capfdbinary.readouterr().out)["metadata"]["component"]["name"] == "clinic"
    assert main(["bundle", "inspect", str(delta.full.path), "--sbom", "--key", str(keys.public_path)]) == 1
    assert b"this is a delta of clinic 1.0.0" in capfdbinary.readouterr().err
