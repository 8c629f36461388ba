"""A bundle is a valid OCI image layout: umoci and skopeo (Debian's, the real tools) read its index and manifest."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from gapseal.bundler import layout as oci
from tests.bundles import KeyPair, make_bundle, make_keys

pytestmark = pytest.mark.integration


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    return make_keys(tmp_path / "keys")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/system-deps.sh (make deps)")
    return path


def test_umoci_lists_the_bundle_manifest(tmp_path: Path, keys: KeyPair) -> None:
    bundle = make_bundle(tmp_path, keys).path
    out = subprocess.run(
        [_tool("umoci"), "ls", "--layout", str(bundle)], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == [oci.BUNDLE_REF_NAME]


def test_skopeo_reads_the_bundle_manifest_byte_for_byte(tmp_path: Path, keys: KeyPair) -> None:
    created = make_bundle(tmp_path, keys)
    raw = subprocess.run(
        [_tool("skopeo"), "inspect", "--raw", f"oci:{created.path}:{oci.BUNDLE_REF_NAME}"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert oci.sha256_digest(raw) == created.manifest_digest
    manifest = json.loads(raw)
    assert manifest["artifactType"] == oci.ARTIFACT_BUNDLE
    assert manifest["config"]["mediaType"] == oci.MEDIA_BUNDLE_CONFIG


def test_skopeo_copies_the_bundle_manifest_and_its_blobs(tmp_path: Path, keys: KeyPair) -> None:
    """skopeo can move the bundle to another layout with digests preserved (what a registry push relies on)."""
    created = make_bundle(tmp_path, keys)
    target = tmp_path / "copy"
    subprocess.run(
        [
            _tool("skopeo"),
            "copy",
            "--preserve-digests",
            f"oci:{created.path}:{oci.BUNDLE_REF_NAME}",
            f"oci:{target}:{oci.BUNDLE_REF_NAME}",
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    for _, entry in created.descriptor.layers():
        assert (target / oci.blob_path(entry.digest)).read_bytes() == (
            created.path / oci.blob_path(entry.digest)
        ).read_bytes()
    assert (target / oci.blob_path(created.manifest_digest)).is_file()
