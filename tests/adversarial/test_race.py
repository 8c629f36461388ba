"""A bundle that changes while it is used: what is written is what was verified, or nothing is written.

The bundle sits on shared or removable media: someone swaps a blob between ``verify`` and use, or while the copy runs.
The blob is large (64 MiB, sixteen 4 MiB chunks) so a change lands in the middle of a copy. Most cases change the
file at an exact moment through the progress callback every writer reports to (deterministic: the change happens
after the first chunk was written and before the rest is read); one lets a thread flip bytes concurrently and checks
the invariant over several runs: exit 0 with exactly the signed bytes on disk, or exit 1 with nothing at ``--out``.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gapseal.bundler import tarformat
from gapseal.bundler.archive import pack_layout
from gapseal.bundler.create import create_bundle
from gapseal.bundler.delta import apply_delta, create_delta
from gapseal.bundler.extract import component_files, extract_component
from gapseal.bundler.unpack import unpack_and_verify
from gapseal.bundler.verify import verify_bundle
from gapseal.errors import ArchiveError, VerificationError
from gapseal.progress import Progress
from tests.adversarial.conftest import Gapseal
from tests.bundles import KeyPair, make_inputs, write_safetensors

BIG = {"w": ("F32", [4096, 4096])}  # 64 MiB of weights
MTIME = 1_767_225_600


def _big_inputs(root: Path, version: str = "1.0.0") -> Path:
    spec = make_inputs(root, version=version)
    write_safetensors(root / "models/tiny/model.safetensors", {**BIG, "b": ("F16", [16])}, fill=7)
    return spec


@pytest.fixture
def big(tmp_path: Path, keys: KeyPair) -> Path:
    """A genuine bundle whose model weights are 64 MiB."""
    return create_bundle(_big_inputs(tmp_path / "in"), keys.private, tmp_path / "big", link=False).path


class AtFirstChunk(Progress):
    """Calls ``action`` once, after the first chunk of a task whose label contains ``label`` was processed."""

    def __init__(self, label: str, action: Callable[[], None]) -> None:
        self.label = label
        self.action = action
        self.tasks: dict[int, str] = {}
        self.fired = False

    def begin(self, label: str, total: int | None = None) -> int:
        self.tasks[len(self.tasks) + 1] = label
        return len(self.tasks)

    def advance(self, task: int, amount: int) -> None:
        if not self.fired and self.label in self.tasks.get(task, ""):
            self.fired = True
            self.action()

    def end(self, task: int) -> None:
        pass


def _flip_at(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


# ---------------------------------------------------------------------------------------------------------------
# extract
# ---------------------------------------------------------------------------------------------------------------


def test_extract_refuses_a_blob_changed_in_place_mid_copy(tmp_path: Path, big: Path, keys: KeyPair) -> None:
    verified = verify_bundle(big, [keys.public])
    files = component_files(verified, "model", "tiny")
    weights = max(files, key=lambda f: f.size)
    blob = verified.blob_path(weights.digest)
    hook = AtFirstChunk(weights.path, lambda: _flip_at(blob, weights.size - 1000))
    with pytest.raises(VerificationError, match=f"{weights.path} changed after verification") as info:
        extract_component(verified, files, tmp_path / "out", progress=hook)
    assert hook.fired
    assert "nothing was extracted" in info.value.message
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_extract_of_a_blob_replaced_mid_copy_writes_the_verified_bytes(
    tmp_path: Path, big: Path, keys: KeyPair
) -> None:
    """A rename over the blob mid-copy: the copy keeps reading what it opened, which hashes to the signed digest."""
    verified = verify_bundle(big, [keys.public])
    files = component_files(verified, "model", "tiny")
    weights = max(files, key=lambda f: f.size)
    blob = verified.blob_path(weights.digest)

    def swap() -> None:
        evil = blob.with_name("evil")
        evil.write_bytes(b"\x00" * weights.size)
        os.replace(evil, blob)

    extract_component(verified, files, tmp_path / "out", progress=AtFirstChunk(weights.path, swap))
    written = (tmp_path / "out" / weights.path).read_bytes()
    assert f"sha256:{hashlib.sha256(written).hexdigest()}" == weights.digest


def test_extract_refuses_a_blob_changed_between_verify_and_copy(tmp_path: Path, big: Path, keys: KeyPair) -> None:
    verified = verify_bundle(big, [keys.public])
    files = component_files(verified, "model", "tiny")
    small = min(files, key=lambda f: f.size)
    _flip_at(verified.blob_path(small.digest), 0)
    with pytest.raises(VerificationError, match=f"{small.path} changed after verification"):
        extract_component(verified, files, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_extract_under_concurrent_flips_writes_the_signed_bytes_or_nothing(
    tmp_path: Path, big: Path, keys: KeyPair, gapseal: Gapseal
) -> None:
    """A writer thread toggles a byte of the weights while the CLI verifies and extracts, several times over."""
    verified = verify_bundle(big, [keys.public])
    weights = max(component_files(verified, "model", "tiny"), key=lambda f: f.size)
    blob = verified.blob_path(weights.digest)
    outcomes = set()

    def flipper(offset: int, stop: threading.Event) -> None:
        while not stop.is_set():
            _flip_at(blob, offset)  # odd count: changed; even: restored

    for run in range(4):
        offset = weights.size // 2 + run * 4096
        stop = threading.Event()
        thread = threading.Thread(target=flipper, args=(offset, stop))
        thread.start()
        try:
            out = tmp_path / f"out{run}"
            result = gapseal("bundle", "extract", big, "--model", "tiny", "--out", out, "--key", keys.public_path)
        finally:
            stop.set()
            thread.join()
        if f"sha256:{hashlib.sha256(blob.read_bytes()).hexdigest()}" != weights.digest:
            _flip_at(blob, offset)  # leave the signed bytes for the next run
        assert "Traceback" not in result.err
        if result.code == 0:
            data = (out / weights.path).read_bytes()
            assert f"sha256:{hashlib.sha256(data).hexdigest()}" == weights.digest
        else:
            assert result.code == 1, result.err
            assert "changed" in result.err or "corrupt" in result.err, result.err
            assert not out.exists()
        outcomes.add(result.code)
    assert outcomes <= {0, 1}


# ---------------------------------------------------------------------------------------------------------------
# apply
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def delta_pair(tmp_path: Path, keys: KeyPair) -> tuple[Path, Path]:
    """(delta 2.0.0, base 1.0.0): the 64 MiB weights are left out of the delta and come from the base."""
    base = create_bundle(_big_inputs(tmp_path / "in1"), keys.private, tmp_path / "v1", link=False).path
    spec2 = _big_inputs(tmp_path / "in2", version="2.0.0")
    (tmp_path / "in2/docs/README.md").write_text("revised\n")
    made = create_delta(spec2, keys.private, tmp_path / "delta", base, link=False)
    return made.full.path, base


def _largest_blob(layout: Path) -> Path:
    return max((layout / "blobs/sha256").iterdir(), key=lambda p: p.stat().st_size)


def test_apply_refuses_a_base_blob_changed_mid_copy(
    tmp_path: Path, keys: KeyPair, delta_pair: tuple[Path, Path]
) -> None:
    delta, base = delta_pair
    blob = _largest_blob(base)
    hook = AtFirstChunk(blob.name, lambda: _flip_at(blob, blob.stat().st_size - 10))
    with pytest.raises(VerificationError, match="corrupt|lacks"):
        apply_delta(delta, base, tmp_path / "full", [keys.public], progress=hook)
    assert hook.fired
    assert not (tmp_path / "full").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".full.")]


def test_apply_refuses_a_base_tar_changed_mid_stream(
    tmp_path: Path, keys: KeyPair, delta_pair: tuple[Path, Path]
) -> None:
    delta, base = delta_pair
    tar = pack_layout(base, tmp_path / "base.tar", mtime=MTIME).out
    offset, size = _largest_member(tar)
    hook = AtFirstChunk("base.tar", lambda: _flip_at(tar, offset + size - 10))
    with pytest.raises((VerificationError, ArchiveError), match="corrupt|lacks"):
        apply_delta(delta, tar, tmp_path / "full", [keys.public], progress=hook)
    assert hook.fired
    assert not (tmp_path / "full").exists()


def test_apply_of_a_base_blob_replaced_mid_copy_writes_the_verified_bytes(
    tmp_path: Path, keys: KeyPair, delta_pair: tuple[Path, Path]
) -> None:
    delta, base = delta_pair
    blob = _largest_blob(base)

    def swap() -> None:
        evil = blob.with_name("evil")
        evil.write_bytes(b"\x01" * blob.stat().st_size)
        os.replace(evil, blob)

    applied = apply_delta(delta, base, tmp_path / "full", [keys.public], progress=AtFirstChunk(blob.name, swap))
    written = (applied.path / "blobs/sha256" / blob.name).read_bytes()
    assert hashlib.sha256(written).hexdigest() == blob.name


# ---------------------------------------------------------------------------------------------------------------
# unpack
# ---------------------------------------------------------------------------------------------------------------


def _largest_member(tar: Path) -> tuple[int, int]:
    best = (0, 0)
    with tar.open("rb") as f:
        for m in tarformat.TarReader(f, str(tar)).members():
            if not m.is_dir and m.size > best[1]:
                best = (m.offset + tarformat.BLOCK, m.size)
    return best


@pytest.mark.parametrize("part_size", [None, 24 * 1024 * 1024], ids=["tar", "split"])
def test_unpack_refuses_an_archive_changed_mid_stream(
    tmp_path: Path, big: Path, keys: KeyPair, part_size: int | None
) -> None:
    result = pack_layout(big, tmp_path / "b.tar", mtime=MTIME, part_size=part_size)
    target = max((p.path for p in result.parts), key=lambda p: p.stat().st_size)
    offset, size = _largest_member(target)
    hook = AtFirstChunk("b", lambda: _flip_at(target, offset + size - 10))
    with pytest.raises((ArchiveError, VerificationError), match="corrupt|does not match its digest"):
        unpack_and_verify(result.out, tmp_path / "out", trusted_keys=[keys.public], progress=hook)
    assert hook.fired
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


class AtEnd(Progress):
    """Calls ``action`` when the reading task ends: after every byte was hashed, before verify parses anything."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action
        self.fired = False

    def begin(self, label: str, total: int | None = None) -> int:
        return 1

    def advance(self, task: int, amount: int) -> None:
        pass

    def end(self, task: int) -> None:
        if not self.fired:
            self.fired = True
            self.action()


def test_unpack_verify_refuses_metadata_changed_after_it_was_hashed(tmp_path: Path, big: Path, keys: KeyPair) -> None:
    """index.json swapped in the tar after the streaming pass: verify's parse reads it again and refuses."""
    tar = pack_layout(big, tmp_path / "b.tar", mtime=MTIME).out
    with tar.open("rb") as f:
        index = next(m for m in tarformat.TarReader(f, str(tar)).members() if m.path == "index.json")
    hook = AtEnd(lambda: _flip_at(tar, index.offset + tarformat.BLOCK + 5))
    with pytest.raises(VerificationError, match="changed while the bundle was being verified"):
        unpack_and_verify(tar, tmp_path / "out", trusted_keys=[keys.public], progress=hook)
    assert hook.fired
    assert not (tmp_path / "out").exists()
