"""``gapseal bundle diff OLD NEW``: components, files, variants and images added, removed and changed; delta bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gapseal.bundler.create import create_bundle
from gapseal.bundler.inspect import read_layout_descriptor
from gapseal.cli import main
from tests.bundles import make_inputs, make_keys


@pytest.fixture
def two_bundles(tmp_path: Path) -> tuple[Path, Path, Path]:
    """1.0.0 and 1.1.0 of the same spec: 1.1.0 changes the CPU build, adds a doc, drops the CUDA variant."""
    keys = make_keys(tmp_path / "keys")
    old = create_bundle(make_inputs(tmp_path / "in-old"), keys.private, tmp_path / "old", link=False)
    inputs = tmp_path / "in-new"
    spec = make_inputs(inputs, version="1.1.0")
    (inputs / "builds/cpu/bin/server").write_text("#!/bin/sh\necho cpu, faster\n")
    (inputs / "docs/CHANGES.md").write_text("1.1.0: faster CPU build\n")
    text = spec.read_text()
    cuda = text[text.index("      - {backend: cuda") : text.index("      - {backend: cpu")]
    spec.write_text(text.replace(cuda, ""))
    new = create_bundle(spec, keys.private, tmp_path / "new", link=False)
    return old.path, new.path, keys.public_path


def test_diff_names_every_change_and_the_bytes_a_delta_carries(
    two_bundles: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    old, new, pub = two_bundles
    assert main(["bundle", "diff", str(old), str(new), "--key", str(pub), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["kind"], doc["version"], doc["verified"]) == ("gapseal.BundleDiff", 1, True)
    assert (doc["old"]["version"], doc["new"]["version"]) == ("1.0.0", "1.1.0")
    # the SBOM describes the whole bundle, so it changes with it
    assert doc["components"] == {"added": [], "removed": [], "changed": ["build/server", "files/docs", "sbom"]}
    assert doc["variants"] == {"added": [], "removed": ["server/cuda-amd64"], "changed": ["server/cpu-amd64"]}
    assert doc["files"] == {
        "added": ["files/docs/CHANGES.md"],
        "removed": ["builds/server/cuda-amd64/bin/server"],
        "changed": ["builds/server/cpu-amd64/bin/server", "sbom/bom.cdx.json"],
    }
    assert doc["images"] == {"added": [], "removed": [], "changed": []}
    sbom = read_layout_descriptor(new).sbom
    assert sbom is not None
    changed = len(b"#!/bin/sh\necho cpu, faster\n") + len(b"1.1.0: faster CPU build\n") + sbom.size
    assert (doc["delta_blobs"], doc["delta_bytes"]) == (3, changed)


def test_diff_without_a_key_says_it_is_unverified(
    two_bundles: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    old, new, _ = two_bundles
    assert main(["bundle", "diff", str(old), str(new)]) == 0
    out = capsys.readouterr().out
    assert "clinic 1.0.0 -> clinic 1.1.0" in out
    assert "not verified" in out
    assert "    - server/cuda-amd64" in out
    assert "    + files/docs/CHANGES.md" in out
    assert "would carry 3 blobs" in out


def test_diff_of_a_bundle_with_itself_is_empty(
    two_bundles: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    old, _, pub = two_bundles
    assert main(["bundle", "diff", str(old), str(old), "--key", str(pub), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    empty: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
    assert [doc[k] for k in ("components", "files", "variants", "images")] == [empty] * 4
    assert doc["delta_bytes"] == 0
