"""``unpack_archive``: safe extraction of a tar or split set; all or nothing at the output."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from gapseal.bundler import tarformat
from gapseal.bundler.archive import pack_layout
from gapseal.bundler.inventory import read_layout_dir
from gapseal.bundler.unpack import unpack_archive
from gapseal.errors import ArchiveError, OutputError, UsageError
from gapseal.progress import Progress

MTIME = 1_700_000_000


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    root = tmp_path / "layout"
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_bytes(b'{"schemaVersion":2}')
    for i, size in enumerate([10, 5000, 200_000, 70_000]):
        data = bytes([i + 1]) * size
        (root / "blobs" / "sha256" / hashlib.sha256(data).hexdigest()).write_bytes(data)
    return root


def same_files(a: Path, b: Path) -> None:
    ia, ib = read_layout_dir(a), read_layout_dir(b)
    assert {p: e.sha256 for p, e in ia.entries.items()} == {p: e.sha256 for p, e in ib.entries.items()}
    assert ia.directories == ib.directories


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_unpack_round_trips_a_tar(tmp_path: Path, layout: Path) -> None:
    tar = pack_layout(layout, tmp_path / "b.tar", mtime=MTIME).out
    out = unpack_archive(tar, tmp_path / "out")
    assert out == tmp_path / "out"
    same_files(layout, out)
    assert leftovers(tmp_path) == []
    assert stat_mode(out) == 0o755
    assert stat_mode(out / "index.json") == 0o644 & ~current_umask()


def test_unpack_reassembles_a_split_set(tmp_path: Path, layout: Path) -> None:
    result = pack_layout(layout, tmp_path / "b.tar", mtime=MTIME, part_size=64 * 1024)
    assert any(".range" in m for p in result.parts for m in tar_names(p.path))
    out = unpack_archive(result.out, tmp_path / "out")
    same_files(layout, out)
    assert not list(out.rglob("*.range*"))
    assert not (out / "gapseal-parts.json").exists()


def test_pack_unpack_pack_gives_the_same_bytes(tmp_path: Path, layout: Path) -> None:
    first = pack_layout(layout, tmp_path / "a.tar", mtime=MTIME).out
    out = unpack_archive(first, tmp_path / "out")
    second = pack_layout(out, tmp_path / "b.tar", mtime=MTIME).out
    assert first.read_bytes() == second.read_bytes()


def test_unpack_refuses_an_existing_output_unless_asked(tmp_path: Path, layout: Path) -> None:
    tar = pack_layout(layout, tmp_path / "b.tar", mtime=MTIME).out
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_bytes(b"x")
    with pytest.raises(UsageError, match="already exists"):
        unpack_archive(tar, tmp_path / "out")
    assert (tmp_path / "out" / "keep").exists()
    unpack_archive(tar, tmp_path / "out", overwrite=True)
    assert not (tmp_path / "out" / "keep").exists()
    same_files(layout, tmp_path / "out")
    assert leftovers(tmp_path) == []


def test_unpack_with_overwrite_keeps_the_old_output_when_the_archive_is_bad(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_bytes(b"x")
    bad = hostile(tmp_path, dotdot)
    with pytest.raises(ArchiveError):
        unpack_archive(bad, tmp_path / "out", overwrite=True)
    assert (tmp_path / "out" / "keep").read_bytes() == b"x"
    assert leftovers(tmp_path) == []


# -- hostile archives: refused, nothing written outside, nothing left at the output ---------------------------------


def add(t: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, **kw: object) -> None:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mtime = MTIME
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    for k, v in kw.items():
        setattr(ti, k, v)
    t.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def hostile(tmp_path: Path, build: Callable[[tarfile.TarFile], None]) -> Path:
    """Craft a hostile tar with tarfile's writer, headers otherwise as GNU tar writes them (devmajor/devminor 0)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        build(t)
    data = bytearray(buf.getvalue())
    offset = 0
    while data[offset : offset + tarformat.BLOCK] != bytes(tarformat.BLOCK):
        block = data[offset : offset + tarformat.BLOCK]
        if bytes(block[329:345]) == bytes(16):
            block[329:345] = b"0000000\x000000000\x00"
            block[148:156] = b" " * 8
            block[148:156] = b"%06o\x00 " % sum(block)
            data[offset : offset + tarformat.BLOCK] = block
        size = int(block[124:135], 8) if bytes(block[156:157]) == b"0" else 0
        offset += tarformat.member_span(size)
    path = tmp_path / "hostile.tar"
    path.write_bytes(bytes(data))
    return path


def dotdot(t: tarfile.TarFile) -> None:
    add(t, "../evil", b"x")


def absolute(t: tarfile.TarFile) -> None:
    add(t, "/tmp/evil", b"x")


def symlink(t: tarfile.TarFile) -> None:
    add(t, "index.json", kind=tarfile.SYMTYPE, linkname="/etc/passwd")


def hardlink(t: tarfile.TarFile) -> None:
    add(t, "a", b"x")
    add(t, "b", kind=tarfile.LNKTYPE, linkname="a")


def device(t: tarfile.TarFile) -> None:
    add(t, "null", kind=tarfile.CHRTYPE, devmajor=1, devminor=3)


def duplicate(t: tarfile.TarFile) -> None:
    add(t, "index.json", b"1")
    add(t, "index.json", b"2")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (dotdot, "'..' component"),
        (absolute, "absolute path"),
        (symlink, "symbolic link"),
        (hardlink, "hard link"),
        (device, "character device"),
        (duplicate, "duplicate member name"),
    ],
    ids=["dotdot", "absolute", "symlink", "hardlink", "device", "duplicate"],
)
def test_unpack_refuses_hostile_members(tmp_path: Path, build: Callable[[tarfile.TarFile], None], message: str) -> None:
    bad = hostile(tmp_path, build)
    (tmp_path / "work").mkdir()
    with pytest.raises(ArchiveError, match=message):
        unpack_archive(bad, tmp_path / "work" / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostile.tar", "work"]
    assert list((tmp_path / "work").iterdir()) == []


def test_unpack_into_a_missing_parent_is_a_usage_error(tmp_path: Path, layout: Path) -> None:
    tar = pack_layout(layout, tmp_path / "b.tar", mtime=MTIME).out
    with pytest.raises(OutputError, match="does not exist"):
        unpack_archive(tar, tmp_path / "no" / "out")


def test_unpack_into_an_unwritable_directory_is_an_output_error(tmp_path: Path, layout: Path) -> None:
    """Mode 0500 stops other users; root is stopped by the immutable attribute (chattr +i) instead."""
    tar = pack_layout(layout, tmp_path / "b.tar", mtime=MTIME).out
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    immutable = False
    try:
        if os.access(ro, os.W_OK) and shutil.which("chattr"):
            immutable = subprocess.run(["chattr", "+i", str(ro)], capture_output=True, check=False).returncode == 0
        if os.access(ro, os.W_OK):
            pytest.skip("cannot make a directory unwritable for this user here (root without chattr +i)")
        with pytest.raises(OutputError, match="is not writable"):
            unpack_archive(tar, ro / "out")
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(ro)], check=True)
        ro.chmod(0o700)


def test_unpack_refuses_a_blob_that_does_not_match_its_name(tmp_path: Path, layout: Path) -> None:
    tar = pack_layout(layout, tmp_path / "b.tar", mtime=MTIME).out
    data = bytearray(tar.read_bytes())
    # the first blob's data starts after two directory headers and its own header
    data[3 * tarformat.BLOCK] ^= 0x01
    tar.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="is corrupt: its content hashes to"):
        unpack_archive(tar, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []


def test_unpack_of_a_truncated_tar_leaves_nothing(tmp_path: Path, layout: Path) -> None:
    tar = pack_layout(layout, tmp_path / "b.tar", mtime=MTIME).out
    tar.write_bytes(tar.read_bytes()[:100_000])
    with pytest.raises(ArchiveError, match="truncated"):
        unpack_archive(tar, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []


def test_interrupted_unpack_leaves_nothing_at_the_output(tmp_path: Path, layout: Path) -> None:
    tar = pack_layout(layout, tmp_path / "b.tar", mtime=MTIME).out

    class Interrupt(Progress):
        seen = 0

        def advance(self, task: int, amount: int) -> None:
            self.seen += amount
            if self.seen > 100_000:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        unpack_archive(tar, tmp_path / "out", progress=Interrupt())
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []


def test_missing_part_of_a_split_set_leaves_nothing(tmp_path: Path, layout: Path) -> None:
    result = pack_layout(layout, tmp_path / "b.tar", mtime=MTIME, part_size=64 * 1024)
    result.parts[-1].path.unlink()
    with pytest.raises(ArchiveError, match=f"missing part.*{result.parts[-1].path.name}"):
        unpack_archive(result.out, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def tar_names(path: Path) -> list[str]:
    with tarfile.open(path) as t:
        return t.getnames()


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------------------------------------
# Large files: written with O_DIRECT where the file system takes it, through the page cache elsewhere; same bytes
# ---------------------------------------------------------------------------------------------------------------


def _big_layout(root: Path) -> Path:
    """A layout with blobs of several MiB in varied bytes, so reads come in large page-aligned chunks."""
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_bytes(b'{"schemaVersion":2}')
    for i, size in enumerate([9 * 1024 * 1024 + 7, 5 * 1024 * 1024 + 512, 70_001]):
        data = hashlib.sha256(bytes([i])).digest() * (size // 32) + bytes(size % 32)
        (root / "blobs" / "sha256" / hashlib.sha256(data).hexdigest()).write_bytes(data)
    return root


@pytest.mark.parametrize("part_size", [None, 3 * 1024 * 1024 + 3 * 512], ids=["tar", "split"])
def test_large_files_unpack_to_the_same_bytes_on_disk(tmp_path: Path, part_size: int | None) -> None:
    """Range boundaries of the split set fall mid-page: direct and cached writes meet inside a page of the file."""
    layout = _big_layout(tmp_path / "layout")
    result = pack_layout(layout, tmp_path / "b.tar", mtime=MTIME, part_size=part_size)
    out = unpack_archive(result.out, tmp_path / "out")
    same_files(layout, out)  # read back from the disk, not from what unpack hashed


def test_large_files_unpack_where_o_direct_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system without O_DIRECT (tmpfs), or a buffer the kernel will not take: the page cache path."""
    real_write = os.write

    def refuse_direct(fd: int, data: object) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "write", refuse_direct)
    layout = _big_layout(tmp_path / "layout")
    result = pack_layout(layout, tmp_path / "b.tar", mtime=MTIME, part_size=3 * 1024 * 1024 + 3 * 512)
    same_files(layout, unpack_archive(result.out, tmp_path / "out"))
