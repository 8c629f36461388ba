"""The layout inventory ``verify`` builds on: a directory, a tar or a split set, hashed once, links refused."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from gapseal.bundler import inventory, tarformat
from gapseal.bundler.archive import PARTS_LIST_NAME, PartMember, PartRecord, PartsList, pack_layout
from gapseal.bundler.inventory import KEEP_BLOB_CONTENT, read_layout_archive, read_layout_dir
from gapseal.errors import ArchiveError, VerificationError
from gapseal.progress import Progress

MTIME = 1_700_000_000


def blob(root: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / "sha256" / digest).write_bytes(data)
    return digest


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    root = tmp_path / "layout"
    root.mkdir()
    (root / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_bytes(b'{"schemaVersion":2}')
    blob(root, b"manifest")
    blob(root, b"w" * (KEEP_BLOB_CONTENT + 1))
    blob(root, b"c" * KEEP_BLOB_CONTENT)
    return root


class Recorder(Progress):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.totals: list[int | None] = []
        self.done = 0
        self.ended = 0

    def begin(self, label: str, total: int | None = None) -> int:
        self.totals.append(total)
        return len(self.totals)

    def advance(self, task: int, amount: int) -> None:
        with self.lock:
            self.done += amount

    def end(self, task: int) -> None:
        self.ended += 1


# ---------------------------------------------------------------------------------------------------------------
# Directory
# ---------------------------------------------------------------------------------------------------------------


def test_directory_entries_digests_and_kept_content(layout: Path) -> None:
    inv = read_layout_dir(layout)
    assert inv.source == str(layout)
    assert inv.parts is None
    assert inv.directories == {"blobs", "blobs/sha256"}
    for path, entry in inv.entries.items():
        data = (layout / path).read_bytes()
        assert entry.path == path
        assert entry.size == len(data)
        assert entry.sha256 == hashlib.sha256(data).hexdigest()
        assert entry.kept is None  # digests, never bytes, are held
        assert entry.content == data  # read again on demand, checked against the digest
    assert list(inv.entries) == sorted(inv.entries)


def test_directory_progress_counts_every_byte(layout: Path) -> None:
    rec = Recorder()
    inv = read_layout_dir(layout, progress=rec)
    total = sum(e.size for e in inv.entries.values())
    assert rec.totals == [total]
    assert rec.done == total
    assert rec.ended == 1


def test_symlink_in_a_layout_is_refused(layout: Path) -> None:
    (layout / "blobs" / "sha256" / ("0" * 64)).symlink_to(layout / "index.json")
    with pytest.raises(VerificationError, match="symbolic link") as exc:
        read_layout_dir(layout)
    assert "0" * 64 in exc.value.message


def test_symlinked_directory_in_a_layout_is_refused(layout: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (layout / "blobs" / "sha512").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(VerificationError, match="symbolic link: blobs/sha512"):
        read_layout_dir(layout)


def test_fifo_in_a_layout_is_refused(layout: Path) -> None:
    os.mkfifo(layout / "pipe")
    with pytest.raises(VerificationError, match="a FIFO: pipe"):
        read_layout_dir(layout)


def test_socket_in_a_layout_is_refused(layout: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(layout / "sock"))
        with pytest.raises(VerificationError, match="a socket: sock"):
            read_layout_dir(layout)
    finally:
        sock.close()


def test_device_in_a_layout_is_refused(layout: Path) -> None:
    try:
        os.mknod(layout / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod is not permitted here (needs CAP_MKNOD)")
    with pytest.raises(VerificationError, match="a device: null"):
        read_layout_dir(layout)


def test_hard_links_are_fine(layout: Path, tmp_path: Path) -> None:
    """create hard-links blobs from its inputs; a hard link is a regular file."""
    digest = hashlib.sha256(b"linked").hexdigest()
    (tmp_path / "input").write_bytes(b"linked")
    os.link(tmp_path / "input", layout / "blobs" / "sha256" / digest)
    assert read_layout_dir(layout).entries[f"blobs/sha256/{digest}"].sha256 == digest


def test_empty_directory_is_reported_for_the_file_set_check(layout: Path) -> None:
    (layout / "blobs" / "extra").mkdir()
    assert "blobs/extra" in read_layout_dir(layout).directories


# ---------------------------------------------------------------------------------------------------------------
# Tar
# ---------------------------------------------------------------------------------------------------------------


def test_tar_inventory_equals_the_directory_inventory(layout: Path, tmp_path: Path) -> None:
    out = pack_layout(layout, tmp_path / "b.tar", mtime=MTIME).out
    rec = Recorder()
    inv = read_layout_archive(out, progress=rec)
    assert inv.entries == read_layout_dir(layout).entries  # content kept by the same rule
    assert inv.source == str(out)
    assert inv.mtime == MTIME
    assert rec.totals == [out.stat().st_size]
    assert rec.done == sum(e.size for e in inv.entries.values())


def test_split_inventory_equals_the_directory_inventory(layout: Path, tmp_path: Path) -> None:
    result = pack_layout(layout, tmp_path / "b.tar", mtime=MTIME, part_size=256 * 1024)
    inv = read_layout_archive(result.out)
    assert inv.entries == read_layout_dir(layout).entries
    assert inv.parts is not None
    assert [p.number for p in inv.parts] == list(range(1, len(result.parts) + 1))
    assert [p.sha256 for p in inv.parts[1:]] == [p.sha256 for p in result.parts[1:]]


def _tar(path: Path, members: list[tuple[str, bytes | None]]) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        writer = tarformat.TarWriter(fd, mtime=MTIME)
        for name, data in members:
            if data is None:
                writer.add_dir(name)
            else:
                writer.add_bytes(name, data)
        writer.close()
    finally:
        os.close(fd)
    return path


def test_a_parts_list_in_a_plain_tar_is_refused(tmp_path: Path) -> None:
    tar = _tar(tmp_path / "b.tar", [(PARTS_LIST_NAME, b"{}"), ("index.json", b"{}")])
    with pytest.raises(ArchiveError, match="not the first part of a split set"):
        read_layout_archive(tar)


def test_a_range_member_in_a_plain_tar_is_refused(tmp_path: Path) -> None:
    tar = _tar(tmp_path / "b.tar", [("blobs", None), ("blobs/x.range0001", b"1")])
    with pytest.raises(ArchiveError, match="range in a tar that is not part of a split set"):
        read_layout_archive(tar)


def test_an_oversized_metadata_file_is_refused_before_it_is_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inventory, "MAX_METADATA_FILE", 100)
    tar = _tar(tmp_path / "b.tar", [("index.json", b"{" * 101)])
    with pytest.raises(ArchiveError, match="too large"):
        read_layout_archive(tar)


def test_missing_archive_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="does not exist"):
        read_layout_archive(tmp_path / "nothing.tar")


def test_naming_a_split_set_by_its_tar_name_points_at_the_first_part(layout: Path, tmp_path: Path) -> None:
    pack_layout(layout, tmp_path / "b.tar", mtime=MTIME, part_size=256 * 1024)
    with pytest.raises(ArchiveError, match="does not exist") as exc:
        read_layout_archive(tmp_path / "b.tar")
    assert "b.part0001.tar" in (exc.value.hint or "")


def test_first_part_without_a_parts_list_is_refused(tmp_path: Path) -> None:
    first = _tar(tmp_path / "b.part0001.tar", [("index.json", b"{}")])
    with pytest.raises(ArchiveError, match="does not start with gapseal-parts.json"):
        read_layout_archive(first)


# ---------------------------------------------------------------------------------------------------------------
# Parts-list consistency: a list gapseal could not have written is refused before any part is read
# ---------------------------------------------------------------------------------------------------------------

H = "a" * 64
BLOB = f"blobs/sha256/{H}"


def rng(index: int, offset: int, size: int, blob_size: int = 20) -> PartMember:
    return PartMember(
        path=f"{BLOB}.range{index:04d}", size=size, sha256=H, blob=BLOB, offset=offset, blob_size=blob_size
    )


def whole(path: str) -> PartMember:
    return PartMember(path=path, size=1, sha256=H)


def rng2(index: int, offset: int, size: int, blob: str = BLOB, sha256: str | None = None) -> PartMember:
    """A range as a version 2 list writes it: no digest of its own when its blob is named by its digest."""
    return PartMember(path=f"{blob}.range{index:04d}", size=size, sha256=sha256, blob=blob, offset=offset, blob_size=20)


def plist(*members: tuple[PartMember, ...], version: int = 1, first: tuple[PartMember, ...] = ()) -> PartsList:
    parts = [PartRecord(number=1, name="b.part0001.tar", members=(whole("index.json"), *first))]
    for n, ms in enumerate(members, start=2):
        parts.append(PartRecord(number=n, name=f"b.part{n:04d}.tar", size=10240, sha256=H, members=ms))
    return PartsList(kind="gapseal-parts", version=version, part_size=20480, parts=tuple(parts))


@pytest.mark.parametrize(
    ("lst", "problem"),
    [
        (plist((rng(1, 0, 10),), (rng(2, 10, 10),)), None),
        (plist((rng(1, 0, 10),), (rng(3, 10, 10),)), "out of sequence"),
        (plist((rng(1, 0, 10),), (rng(2, 12, 8),)), "out of sequence"),
        (plist((rng(2, 0, 10),), (rng(1, 10, 10),)), "out of sequence"),
        (plist((rng(1, 5, 10),)), "does not start its blob"),
        (plist((rng(1, 0, 10),), (whole("blobs/sha256/b"),)), "cut short"),
        (plist((rng(1, 0, 10),)), "incomplete"),
        (plist((rng(1, 0, 10), rng(2, 10, 15))), "overruns"),
        (plist((whole("blobs/sha256/b"),), (whole("blobs/sha256/b"),)), "listed twice"),
        (plist((whole("../x"),)), "not allowed"),
        (plist((whole(PARTS_LIST_NAME),)), "not allowed"),
        (plist((whole(BLOB), rng(1, 0, 20))), "both whole and in ranges"),
        (plist((PartMember(path="blobs/x.range0001", size=1, sha256=H),)), "half a range"),
        # version 2: a range of a blob named by its digest has no digest of its own; anything else has one
        (plist((rng2(1, 0, 10),), (rng2(2, 10, 10),), version=2), None),
        (plist((rng2(1, 0, 10),), (rng2(2, 10, 10, sha256=H),), version=2), "has a digest of its own"),
        (plist((rng2(1, 0, 10, "blobs/x", H),), (rng2(2, 10, 10, "blobs/x", H),), version=2), None),
        (plist((rng2(1, 0, 10, "blobs/x", H),), (rng2(2, 10, 10, "blobs/x"),), version=2), "has no digest"),
        (plist((PartMember(path="blobs/sha256/b", size=1),), version=2), "has no digest"),
        (plist((rng2(1, 0, 10),), (rng2(2, 10, 10),), version=1), "has no digest"),
        (plist(first=(whole("blobs/sha256/b"),)), "part 1 holds"),
    ],
)
def test_parts_list_consistency(lst: PartsList, problem: str | None) -> None:
    found = inventory._parts_list_problem(lst)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


# ---------------------------------------------------------------------------------------------------------------
# Content is read again on demand, never held
# ---------------------------------------------------------------------------------------------------------------


def test_content_over_the_document_limit_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A blob larger than any gapseal document has no content: a weight file is never read into memory."""
    root = tmp_path / "layout"
    root.mkdir()
    digest = blob(root, b"w" * 2048)
    monkeypatch.setattr(inventory, "MAX_CONTENT", 1024)
    entry = read_layout_dir(root).entries[f"blobs/sha256/{digest}"]
    assert entry.content is None


@pytest.mark.parametrize("form", ["dir", "tar", "split"])
def test_content_swapped_after_hashing_is_refused_not_parsed(tmp_path: Path, layout: Path, form: str) -> None:
    """A file changed on the media between the hashing pass and the parse raises instead of returning new bytes."""
    digest = hashlib.sha256(b"manifest").hexdigest()
    path = f"blobs/sha256/{digest}"
    if form == "dir":
        inv = read_layout_dir(layout)
        target, offset = layout / path, 0
    else:
        out = tmp_path / "b.tar"
        pack_layout(layout, out, mtime=0, part_size=(64 * 1024 if form == "split" else None))
        first = tmp_path / "b.part0001.tar" if form == "split" else out
        inv = read_layout_archive(first)
        target, offset = Path(inv.entries[path].segments[0][0]), inv.entries[path].segments[0][1]
    assert inv.entries[path].content == b"manifest"
    with target.open("r+b") as f:
        f.seek(offset)
        f.write(b"MANIFEST")
    with pytest.raises(VerificationError, match="changed while the bundle was being verified"):
        _ = inv.entries[path].content


def test_content_of_a_removed_source_is_a_clear_error(layout: Path) -> None:
    inv = read_layout_dir(layout)
    (layout / "index.json").unlink()
    with pytest.raises(VerificationError, match="index.json cannot be read again"):
        _ = inv.entries["index.json"].content


def test_a_split_blob_in_ranges_reads_back_across_parts(tmp_path: Path) -> None:
    root = tmp_path / "layout"
    root.mkdir()
    (root / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_bytes(b'{"schemaVersion":2}')
    data = os.urandom(100 * 1024)
    digest = blob(root, data)
    pack_layout(root, tmp_path / "s.tar", mtime=0, part_size=40 * 1024)
    inv = read_layout_archive(tmp_path / "s.part0001.tar")
    entry = inv.entries[f"blobs/sha256/{digest}"]
    assert len(entry.segments) >= 3  # cut across at least three parts
    assert entry.content == data
