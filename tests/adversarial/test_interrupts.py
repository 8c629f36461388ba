"""Interrupted and starved writers: a kill -9 leaves temp files the next run removes; a full disk is a clear error.

``kill -9`` gives a process no chance to clean up, so every writer names its temp files with its pid
(``.OUT.KIND-PID-…``) and the next run of the same output removes those whose process is gone (never a live run's).
Each case kills a real ``gapseal`` subprocess once its temp file exists, checks it is there, runs the command again
and checks it succeeds and the leftover is gone. The full-disk cases mount a small tmpfs (the machine's own disk is
never filled) and check the error names the output (not the input), carries no traceback, and leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gapseal.atomic import remove_stale_temps
from gapseal.bundler.archive import pack_layout
from gapseal.bundler.create import create_bundle
from gapseal.bundler.delta import apply_delta, create_delta
from gapseal.bundler.extract import component_files, extract_component
from gapseal.bundler.verify import verify_bundle
from gapseal.progress import Progress
from tests.adversarial.conftest import Gapseal, refused
from tests.bundles import KeyPair, make_inputs, write_safetensors

MTIME = 1_767_225_600
BIG_FILE = 512 * 1024 * 1024  # sparse: no disk until copied; takes a good fraction of a second to hash and copy


def _cli(*args: object, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-m", "gapseal", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "SOURCE_DATE_EPOCH": str(MTIME), **(env or {})},
    )


def _kill_when(proc: subprocess.Popen[bytes], directory: Path, prefix: str) -> Path:
    """SIGKILL ``proc`` as soon as a name starting with ``prefix`` appears in ``directory``; return that path."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = [p for p in directory.iterdir() if p.name.startswith(prefix)]
        if found:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return found[0]
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"finished before its temp file was seen (exit {proc.returncode}): {err.decode()}")
        time.sleep(0.002)
    proc.kill()
    raise AssertionError("no temp file appeared")


def _again(*args: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "gapseal", *map(str, args)],
        capture_output=True,
        check=False,
        env={**os.environ, "SOURCE_DATE_EPOCH": str(MTIME)},
        timeout=600,
    )


def _sparse_bundle(root: Path, keys: KeyPair) -> Path:
    """A genuine bundle holding a sparse file (hard-linked from its input: no disk used until packed)."""
    spec = make_inputs(root / "in")
    with (root / "in" / "docs" / "big.bin").open("wb") as f:
        f.truncate(BIG_FILE)
    return create_bundle(spec, keys.private, root / "bundle", link=True).path


@pytest.mark.parametrize("split", [False, True], ids=["tar", "split"])
def test_kill_9_during_pack_leaves_a_temp_the_next_pack_removes(tmp_path: Path, keys: KeyPair, split: bool) -> None:
    layout = _sparse_bundle(tmp_path, keys)
    out = tmp_path / "out"
    out.mkdir()
    extra = ["--part-size", "256MiB"] if split else []
    victim = _kill_when(_cli("bundle", "pack", layout, "--out", out / "b.tar", *extra), out, ".b.")
    assert ".packing-" in victim.name
    assert victim.exists()  # the kill left it
    done = _again("bundle", "pack", layout, "--out", out / "b.tar", *extra)
    assert done.returncode == 0, done.stderr.decode()
    assert not victim.exists()
    assert not [p for p in out.iterdir() if ".packing-" in p.name]


def test_kill_9_during_create_leaves_a_temp_the_next_create_removes(tmp_path: Path, keys: KeyPair) -> None:
    spec = make_inputs(tmp_path / "in")
    with (tmp_path / "in" / "docs" / "big.bin").open("wb") as f:
        f.truncate(BIG_FILE)
    out = tmp_path / "out"
    out.mkdir()
    args = ("bundle", "create", spec, "--key", keys.private_path, "--out", out / "b", "--no-link")
    victim = _kill_when(_cli(*args), out, ".b.creating-")
    assert victim.is_dir()
    done = _again(*args)
    assert done.returncode == 0, done.stderr.decode()
    assert not victim.exists()
    assert [p.name for p in out.iterdir()] == ["b"]


@pytest.fixture
def big(tmp_path: Path, keys: KeyPair) -> Path:
    """A genuine bundle with 256 MiB of weights (real bytes: unpack and extract write them)."""
    spec = make_inputs(tmp_path / "in")
    write_safetensors(tmp_path / "in/models/tiny/model.safetensors", {"w": ("F32", [8192, 8192])}, fill=3)
    return create_bundle(spec, keys.private, tmp_path / "big", link=False).path


def test_kill_9_during_unpack_and_extract_leaves_temps_the_next_runs_remove(
    tmp_path: Path, big: Path, keys: KeyPair
) -> None:
    tar = pack_layout(big, tmp_path / "b.tar", mtime=MTIME).out
    out = tmp_path / "out"
    out.mkdir()
    victim = _kill_when(_cli("bundle", "unpack", tar, "--out", out / "u"), out, ".u.unpacking-")
    done = _again("bundle", "unpack", tar, "--out", out / "u")
    assert done.returncode == 0, done.stderr.decode()
    assert not victim.exists()

    env = {"GAPSEAL_STATE_DIR": str(tmp_path / "state")}
    args = ("bundle", "extract", big, "--model", "tiny", "--out", out / "m", "--key", keys.public_path)
    victim = _kill_when(_cli(*args, env=env), out, ".m.extracting-")
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "gapseal", *map(str, args)],
        capture_output=True,
        check=False,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr.decode()
    assert not victim.exists()
    assert sorted(p.name for p in out.iterdir()) == ["m", "u"]


def test_a_live_runs_temp_is_left_alone(tmp_path: Path) -> None:
    """Two runs writing the same output: the second never removes the first's work in progress."""
    sleeper = subprocess.Popen(["sleep", "60"])  # noqa: S607 - coreutils
    try:
        live = tmp_path / f".b.tar.packing-{sleeper.pid}-abcd1234.tmp"
        live.write_bytes(b"in progress")
        dead = tmp_path / ".b.tar.packing-999999999-abcd1234.tmp"
        dead.write_bytes(b"left by a kill")
        assert remove_stale_temps(tmp_path / "b.tar", "packing") == [dead]
        assert live.exists()
        assert not dead.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


class Interrupt(Progress):
    """Raises KeyboardInterrupt (Ctrl-C) after ``after`` chunks."""

    def __init__(self, after: int) -> None:
        self.left = after

    def advance(self, task: int, amount: int) -> None:
        self.left -= 1
        if self.left <= 0:
            raise KeyboardInterrupt


def test_ctrl_c_during_extract_and_apply_leaves_nothing(tmp_path: Path, big: Path, keys: KeyPair) -> None:
    verified = verify_bundle(big, [keys.public])
    with pytest.raises(KeyboardInterrupt):
        extract_component(verified, component_files(verified, "model", "tiny"), tmp_path / "x", progress=Interrupt(3))
    spec2 = make_inputs(tmp_path / "in2", version="2.0.0")
    (tmp_path / "in2/docs/README.md").write_text("revised\n")
    delta = create_delta(spec2, keys.private, tmp_path / "delta", big, link=False).full.path
    with pytest.raises(KeyboardInterrupt):
        apply_delta(delta, big, tmp_path / "full", [keys.public], progress=Interrupt(3))
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith((".x.", ".full.", "x", "full"))]
    assert leftovers == []


# ---------------------------------------------------------------------------------------------------------------
# Full disk
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for this test only (root is required; a machine that cannot mount fails the test)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(  # noqa: S603
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(mount)],  # noqa: S607
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the full-disk tests: {done.stderr.decode()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)  # noqa: S603, S607


@pytest.fixture
def eight_mib(tmp_path: Path, keys: KeyPair) -> Path:
    """A genuine bundle with 8 MiB of weights: twice what the small disk holds."""
    spec = make_inputs(tmp_path / "in8")
    write_safetensors(tmp_path / "in8/models/tiny/model.safetensors", {"w": ("F32", [1024, 2048])}, fill=5)
    return create_bundle(spec, keys.private, tmp_path / "b8", link=False).path


def _full(result: object, out: Path, disk: Path) -> None:
    refused(result, "no space left on device", str(out))  # type: ignore[arg-type]
    assert list(disk.iterdir()) == [], list(disk.iterdir())


def test_extract_onto_a_full_disk_names_the_output(
    small_disk: Path, eight_mib: Path, keys: KeyPair, gapseal: Gapseal
) -> None:
    out = small_disk / "model"
    result = gapseal("bundle", "extract", eight_mib, "--model", "tiny", "--out", out, "--key", keys.public_path)
    _full(result, out, small_disk)


def test_pack_onto_a_full_disk_names_the_output(small_disk: Path, eight_mib: Path, gapseal: Gapseal) -> None:
    out = small_disk / "b.tar"
    _full(gapseal("bundle", "pack", eight_mib, "--out", out), out, small_disk)


def test_split_pack_onto_a_full_disk_names_the_output(small_disk: Path, eight_mib: Path, gapseal: Gapseal) -> None:
    out = small_disk / "b.tar"
    _full(gapseal("bundle", "pack", eight_mib, "--out", out, "--part-size", "1MiB"), out, small_disk)


def test_unpack_onto_a_full_disk_names_the_output(
    tmp_path: Path, small_disk: Path, eight_mib: Path, gapseal: Gapseal
) -> None:
    tar = pack_layout(eight_mib, tmp_path / "b8.tar", mtime=MTIME).out
    out = small_disk / "u"
    _full(gapseal("bundle", "unpack", tar, "--out", out), out, small_disk)


def test_apply_onto_a_full_disk_names_the_output(
    tmp_path: Path, small_disk: Path, eight_mib: Path, keys: KeyPair, gapseal: Gapseal
) -> None:
    spec2 = make_inputs(tmp_path / "in9", version="2.0.0")
    write_safetensors(tmp_path / "in9/models/tiny/model.safetensors", {"w": ("F32", [1024, 2048])}, fill=5)
    (tmp_path / "in9/docs/README.md").write_text("revised\n")
    delta = create_delta(spec2, keys.private, tmp_path / "delta", eight_mib, link=False).full.path
    out = small_disk / "full"
    result = gapseal("bundle", "apply", delta, "--base", eight_mib, "--out", out, "--key", keys.public_path)
    _full(result, out, small_disk)


def test_create_onto_a_full_disk_names_the_output(
    tmp_path: Path, small_disk: Path, keys: KeyPair, gapseal: Gapseal
) -> None:
    spec = make_inputs(tmp_path / "in10")
    write_safetensors(tmp_path / "in10/models/tiny/model.safetensors", {"w": ("F32", [1024, 2048])}, fill=5)
    out = small_disk / "b"
    result = gapseal("bundle", "create", spec, "--key", keys.private_path, "--out", out, "--no-link")
    _full(result, out, small_disk)


def test_the_small_disk_is_really_small(small_disk: Path) -> None:
    """The fixture is what the full-disk cases assume: writing 8 MiB there fails with ENOSPC."""
    with pytest.raises(OSError, match="No space left on device"):
        (small_disk / "probe").write_bytes(b"\0" * (8 * 1024 * 1024))
    (small_disk / "probe").unlink()
    assert shutil.disk_usage(small_disk).total <= 4 * 1024 * 1024


def test_extract_from_a_tar_onto_a_full_disk_names_the_output(
    tmp_path: Path, small_disk: Path, eight_mib: Path, keys: KeyPair, gapseal: Gapseal
) -> None:
    """The scratch the tar is unpacked into lies beside --out, on the full disk: the error still names --out."""
    tar = pack_layout(eight_mib, tmp_path / "b8.tar", mtime=MTIME).out
    out = small_disk / "model"
    result = gapseal("bundle", "extract", tar, "--model", "tiny", "--out", out, "--key", keys.public_path)
    _full(result, out, small_disk)
