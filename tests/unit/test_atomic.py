"""gapseal.atomic: durable writes, sliced writes, pid-named temps and their cleanup after a killed run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gapseal import atomic
from gapseal.atomic import DurableWriter, remove_stale_temps, sync_filesystem, temp_prefix, write_all, write_new_file


def test_write_all_writes_everything_in_slices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    real_write = os.write

    def spy(fd: int, data: memoryview) -> int:
        sizes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", spy)
    data = os.urandom(3 * atomic.WRITE_SLICE + 5)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == data
    assert max(sizes) <= atomic.WRITE_SLICE
    assert len(sizes) == 4


def test_durable_writer_counts_and_flushes(tmp_path: Path) -> None:
    data = os.urandom(atomic.WRITEBACK_STEP + 1000)  # crosses one early-writeback step
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        writer = DurableWriter(fd)
        writer.write(memoryview(data)[:1000])
        writer.write(memoryview(data)[1000:])
        writer.finish()
    finally:
        os.close(fd)
    assert writer.written == len(data)
    assert (tmp_path / "f").read_bytes() == data


def test_write_new_file_never_clobbers(tmp_path: Path) -> None:
    write_new_file(tmp_path / "f", b"one")
    with pytest.raises(FileExistsError):
        write_new_file(tmp_path / "f", b"two")
    assert (tmp_path / "f").read_bytes() == b"one"


def test_sync_filesystem_returns_after_flushing(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    sync_filesystem(tmp_path)  # no error; durability itself cannot be observed without pulling the power


def test_temp_prefix_names_output_kind_and_pid(tmp_path: Path) -> None:
    assert temp_prefix(tmp_path / "b.tar", "packing") == f".b.tar.packing-{os.getpid()}-"


def test_remove_stale_temps_removes_only_dead_runs_of_that_output(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])  # noqa: S607 - coreutils
    try:
        dead_file = tmp_path / ".b.tar.packing-999999999-x.tmp"
        dead_dir = tmp_path / ".b.tar.packing-999999998-y"
        live = tmp_path / f".b.tar.packing-{sleeper.pid}-z.tmp"
        mine = tmp_path / f"{temp_prefix(tmp_path / 'b.tar', 'packing')}w.tmp"
        other_kind = tmp_path / ".b.tar.unpacking-999999999-v"
        other_output = tmp_path / ".c.tar.packing-999999999-u.tmp"
        not_a_pid = tmp_path / ".b.tar.packing-abc-t.tmp"
        for p in (dead_file, live, mine, other_output, not_a_pid):
            p.write_bytes(b"x")
        for p in (dead_dir, other_kind):
            p.mkdir()
            (p / "inside").write_bytes(b"x")
        removed = remove_stale_temps(tmp_path / "b.tar", "packing")
        assert sorted(removed) == sorted([dead_file, dead_dir])
        assert not dead_file.exists()
        assert not dead_dir.exists()
        for kept in (live, mine, other_kind, other_output, not_a_pid):
            assert kept.exists(), kept
    finally:
        sleeper.kill()
        sleeper.wait()


def test_remove_stale_temps_in_a_missing_directory_is_a_no_op(tmp_path: Path) -> None:
    assert remove_stale_temps(tmp_path / "nowhere" / "b.tar", "packing") == []


def _tree(root: Path, text: str) -> Path:
    (root / "blobs").mkdir(parents=True)
    (root / "blobs" / "a").write_text(text)
    (root / "index.json").write_text(text)
    return root


def test_publish_renames_into_a_free_name(tmp_path: Path) -> None:
    work = _tree(tmp_path / ".out.unpacking-1-x", "new")
    atomic.publish(work, tmp_path / "out")
    assert (tmp_path / "out" / "blobs" / "a").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("old_kind", ["directory", "file", "symlink"])
def test_publish_replaces_what_is_there_in_one_exchange(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old_kind: str
) -> None:
    out = tmp_path / "out"
    if old_kind == "directory":
        _tree(out, "old")
    elif old_kind == "file":
        out.write_text("old")
    else:
        _tree(tmp_path / "elsewhere", "kept")
        out.symlink_to(tmp_path / "elsewhere")
    work = _tree(tmp_path / f"{temp_prefix(out, 'creating')}x", "new")

    def no_rename(src: object, dst: object) -> None:  # the exchange must not fall back to two renames here
        raise AssertionError(f"os.rename({src}, {dst}) with {dst} present")

    monkeypatch.setattr(os, "rename", no_rename)
    atomic.publish(work, out)
    assert (out / "index.json").read_text() == "new"
    assert not out.is_symlink()
    assert not work.exists()
    assert not work.is_symlink()
    if old_kind == "symlink":  # the link itself was replaced; what it pointed at is untouched
        assert (tmp_path / "elsewhere" / "index.json").read_text() == "kept"


def test_publish_interrupted_while_removing_the_old_leaves_the_new_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (or a kill) after the exchange: ``out`` is already the new output, the old one a temp to clear."""
    out = _tree(tmp_path / "out", "old")
    work = _tree(tmp_path / f"{temp_prefix(out, 'extracting')}x", "new")

    def interrupted(path: object, *args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic.publish(work, out)
    assert (out / "index.json").read_text() == "new"
    assert (work / "index.json").read_text() == "old"  # under a pid-named temp name: the next run removes it
    assert work.name.startswith(temp_prefix(out, "extracting"))


def test_publish_reports_an_exchange_the_kernel_refuses(tmp_path: Path) -> None:
    """A failure other than "not supported" is an OSError naming the output, and nothing moved."""
    out = _tree(tmp_path / "out", "old")
    missing = tmp_path / ".out.creating-1-gone"
    with pytest.raises(FileNotFoundError):
        atomic.publish(missing, out)
    assert (out / "index.json").read_text() == "old"
