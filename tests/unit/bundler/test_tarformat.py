"""The strict ustar reader and deterministic writer: what is accepted, and every way a tar is refused."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from gapseal.bundler import tarformat
from gapseal.bundler.tarformat import BLOCK, RECORD, TarReader, TarWriter, encode_header
from gapseal.errors import ArchiveError

MTIME = 1_700_000_000


def write_tar(members: list[tuple[str, bytes | None]], *, mtime: int = MTIME) -> bytes:
    """Write members (None = directory) with gapseal's writer into bytes."""
    with tempfile.TemporaryFile() as f:
        writer = TarWriter(f.fileno(), mtime=mtime)
        for name, data in members:
            if data is None:
                writer.add_dir(name)
            else:
                writer.add_bytes(name, data)
        writer.close()
        f.seek(0)
        return f.read()


def read_all(data: bytes, name: str = "test.tar") -> dict[str, bytes | None]:
    """Read every member with the strict reader; files map to their content, directories to None."""
    reader = TarReader(io.BytesIO(data), name)
    found: dict[str, bytes | None] = {}
    for m in reader.members():
        if m.is_dir:
            found[m.path] = None
        else:
            buf = bytearray()
            reader.read_data(m, buf.extend)
            found[m.path] = bytes(buf)
    return found


SAMPLE = [("blobs", None), ("blobs/sha256", None), ("blobs/sha256/aa", b"x" * 700), ("index.json", b"{}")]


def tarfile_bytes(build: Callable[[tarfile.TarFile], None], fmt: int = tarfile.USTAR_FORMAT) -> bytes:
    """Craft a hostile tar with Python's tarfile writer (the tests' only use of tarfile)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        build(t)
    return like_gnu_tar(buf.getvalue())


def like_gnu_tar(data: bytes) -> bytes:
    """Give tarfile's headers GNU tar's zero devmajor/devminor, so each test reaches the check it is about."""
    out = bytearray(data)
    offset = 0
    while offset + BLOCK <= len(out) and out[offset : offset + BLOCK] != bytes(BLOCK):
        block = bytearray(out[offset : offset + BLOCK])
        if bytes(block[329:345]) == bytes(16):
            block[329:345] = b"0000000\x000000000\x00"
            refix_checksum(block)
            out[offset : offset + BLOCK] = block
        size = int(block[124:135] or b"0", 8) if bytes(block[156:157]) in (b"0", b"x", b"L") else 0
        offset += tarformat.member_span(size)
    return bytes(out)


def info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, **kw: object) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.size = size
    ti.mtime = MTIME
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


def add(t: tarfile.TarFile, ti: tarfile.TarInfo, data: bytes = b"") -> None:
    ti.size = len(data) if ti.type == tarfile.REGTYPE else ti.size
    t.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)


def rejects(data: bytes, *fragments: str) -> ArchiveError:
    with pytest.raises(ArchiveError) as exc:
        read_all(data, "hostile.tar")
    text = exc.value.diagnostics()
    assert "hostile.tar" in text
    for fragment in fragments:
        assert fragment in text, text
    return exc.value


def refix_checksum(block: bytearray) -> None:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)


# ---------------------------------------------------------------------------------------------------------------
# The writer and its round trip
# ---------------------------------------------------------------------------------------------------------------


def test_round_trip_keeps_names_content_and_mtime() -> None:
    data = write_tar(SAMPLE)
    assert read_all(data) == dict(SAMPLE)
    reader = TarReader(io.BytesIO(data), "t.tar")
    list(reader.members())
    assert reader.mtime == MTIME


def test_archive_is_whole_records_and_ends_with_zero_blocks() -> None:
    data = write_tar(SAMPLE)
    assert len(data) % RECORD == 0
    spans = 2 * BLOCK + tarformat.member_span(700) + tarformat.member_span(2)
    assert len(data) == tarformat.archive_size(spans)


def test_header_fields_are_fixed() -> None:
    header = encode_header("blobs/sha256/aa", is_dir=False, size=700, mtime=MTIME)
    ti = tarfile.TarInfo.frombuf(header, "ascii", "strict")
    assert (ti.name, ti.size, ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname) == (
        "blobs/sha256/aa",
        700,
        MTIME,
        0o644,
        0,
        0,
        "",
        "",
    )
    assert ti.type == tarfile.REGTYPE
    d = tarfile.TarInfo.frombuf(encode_header("blobs", is_dir=True, size=0, mtime=MTIME), "ascii", "strict")
    assert (d.name, d.type, d.mode) == ("blobs", tarfile.DIRTYPE, 0o755)


def test_gnu_tar_and_tarfile_read_what_the_writer_writes(tmp_path: Path) -> None:
    """Interop: the real GNU tar lists and extracts a gapseal tar, and tarfile's data filter accepts it."""
    archive = tmp_path / "t.tar"
    archive.write_bytes(write_tar(SAMPLE))
    listing = subprocess.run(["tar", "tf", str(archive)], check=True, capture_output=True, text=True).stdout
    assert listing.split() == ["blobs/", "blobs/sha256/", "blobs/sha256/aa", "index.json"]
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["tar", "xf", str(archive), "-C", str(out)], check=True)
    assert (out / "blobs/sha256/aa").read_bytes() == b"x" * 700
    with tarfile.open(archive) as t:
        t.extractall(tmp_path / "y", filter="data")
    assert (tmp_path / "y/index.json").read_bytes() == b"{}"


def test_long_names_use_the_prefix_field_and_round_trip() -> None:
    long_dir = "d" * 90
    name = f"{long_dir}/{'f' * 99}"
    data = write_tar([(long_dir, None), (name, b"1")])
    assert read_all(data) == {long_dir: None, name: b"1"}
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        assert t.getnames() == [long_dir, name]


def test_sizes_of_8_gib_and_more_use_base_256_and_only_then() -> None:
    big = 8 * 1024**3
    header = encode_header("big", is_dir=False, size=big, mtime=MTIME)
    assert header[124] == 0x80
    assert tarfile.TarInfo.frombuf(header, "ascii", "strict").size == big
    assert encode_header("small", is_dir=False, size=big - 1, mtime=MTIME)[124:136] == b"77777777777\x00"


def test_gnu_tar_reads_the_base_256_size_form(tmp_path: Path) -> None:
    """Interop for members of 8 GiB and more: GNU tar reads a base-256 size in a ustar header (shown on 5 bytes)."""
    header = bytearray(encode_header("x", is_dir=False, size=5, mtime=MTIME))
    header[124:136] = b"\x80" + (5).to_bytes(11, "big")
    refix_checksum(header)
    data = bytes(header) + b"hello" + bytes(BLOCK - 5) + bytes(2 * BLOCK)
    archive = tmp_path / "b256.tar"
    archive.write_bytes(data + bytes(-len(data) % RECORD))
    listing = subprocess.run(["tar", "tvf", str(archive)], check=True, capture_output=True, text=True).stdout
    assert listing.split()[2:3] == ["5"]
    assert listing.split()[-1] == "x"


def test_writer_refuses_unsafe_names_and_disorder() -> None:
    for bad in ["/abs", "a/../b", "./a", "a//b", "sp ace", ""]:
        with pytest.raises(ValueError, match="unsafe member name"):
            encode_header(bad, is_dir=False, size=0, mtime=MTIME)
    with pytest.raises(ValueError, match="out of order"):
        write_tar([("b", b""), ("a", b"")])
    with pytest.raises(ValueError, match="parent directory"):
        write_tar([("a/b", b"")])


# ---------------------------------------------------------------------------------------------------------------
# Hostile tars crafted with tarfile's writer: each refused with a message that names the problem
# ---------------------------------------------------------------------------------------------------------------


def test_dotdot_entry_is_rejected() -> None:
    data = tarfile_bytes(lambda t: add(t, info("../evil"), b"x"))
    rejects(data, "unsafe member name", "'..' component", "../evil")


def test_nested_dotdot_entry_is_rejected() -> None:
    def build(t: tarfile.TarFile) -> None:
        add(t, info("blobs", tarfile.DIRTYPE))
        add(t, info("blobs/../../x"), b"x")

    rejects(tarfile_bytes(build), "'..' component")


def test_absolute_path_is_rejected() -> None:
    data = tarfile_bytes(lambda t: add(t, info("/etc/passwd"), b"x"))
    rejects(data, "absolute path", "/etc/passwd")


def test_dot_and_empty_components_are_rejected() -> None:
    rejects(tarfile_bytes(lambda t: add(t, info("./index.json"), b"x")), "'.' component")
    rejects(tarfile_bytes(lambda t: add(t, info("blobs//x"), b"x")), "empty path component")


def test_unsafe_characters_are_rejected() -> None:
    rejects(tarfile_bytes(lambda t: add(t, info("index json"), b"x")), "characters outside")
    rejects(tarfile_bytes(lambda t: add(t, info("a\\b"), b"x")), "characters outside")


def test_symlink_entry_is_rejected() -> None:
    data = tarfile_bytes(lambda t: add(t, info("index.json", tarfile.SYMTYPE, linkname="/etc/shadow")))
    rejects(data, "a symbolic link", "only regular files and directories")


def test_hardlink_entry_is_rejected() -> None:
    def build(t: tarfile.TarFile) -> None:
        add(t, info("a"), b"x")
        add(t, info("b", tarfile.LNKTYPE, linkname="a"))

    rejects(tarfile_bytes(build), "a hard link", "'b'")


@pytest.mark.parametrize(
    ("kind", "label"),
    [(tarfile.CHRTYPE, "a character device"), (tarfile.BLKTYPE, "a block device"), (tarfile.FIFOTYPE, "a FIFO")],
)
def test_device_and_fifo_entries_are_rejected(kind: bytes, label: str) -> None:
    rejects(tarfile_bytes(lambda t: add(t, info("dev", kind, devmajor=1, devminor=3))), label)


def test_pax_extended_header_is_rejected() -> None:
    data = tarfile_bytes(lambda t: add(t, info("index.json", pax_headers={"comment": "hi"}), b"x"), tarfile.PAX_FORMAT)
    rejects(data, "a pax extended header")


def test_gnu_long_name_header_is_rejected() -> None:
    data = tarfile_bytes(lambda t: add(t, info("n" * 150), b"x"), tarfile.GNU_FORMAT)
    rejects(data, "not POSIX ustar")


def test_duplicate_name_is_rejected() -> None:
    def build(t: tarfile.TarFile) -> None:
        add(t, info("index.json"), b"{}")
        add(t, info("index.json"), b"{}")

    rejects(tarfile_bytes(build), "duplicate member name", "index.json")


def test_file_and_directory_of_the_same_name_are_duplicates() -> None:
    def build(t: tarfile.TarFile) -> None:
        add(t, info("blobs", tarfile.DIRTYPE))
        add(t, info("blobs/x"), b"1")
        add(t, info("blobs"), b"1")

    rejects(tarfile_bytes(build), "duplicate member name")


def test_out_of_order_members_are_rejected() -> None:
    def build(t: tarfile.TarFile) -> None:
        add(t, info("oci-layout"), b"{}")
        add(t, info("index.json"), b"{}")

    rejects(tarfile_bytes(build), "out of order", "index.json")


def test_member_without_its_parent_directory_is_rejected() -> None:
    rejects(tarfile_bytes(lambda t: add(t, info("blobs/x"), b"1")), "parent directory")


def test_directory_with_nothing_under_it_is_rejected() -> None:
    rejects(tarfile_bytes(lambda t: add(t, info("empty", tarfile.DIRTYPE))), "nothing under it", "empty")


def test_foreign_owner_mode_and_names_are_rejected() -> None:
    rejects(tarfile_bytes(lambda t: add(t, info("a", uid=1000), b"1")), "header field 'uid'")
    rejects(tarfile_bytes(lambda t: add(t, info("a", mode=0o755), b"1")), "header field 'mode'")
    rejects(tarfile_bytes(lambda t: add(t, info("a", uname="root"), b"1")), "header field 'uname'")


def test_members_with_different_mtimes_are_rejected() -> None:
    def build(t: tarfile.TarFile) -> None:
        add(t, info("a"), b"1")
        add(t, info("b", mtime=MTIME + 1), b"1")

    rejects(tarfile_bytes(build), "mtime", "differs")


def test_truncated_in_a_header_is_rejected() -> None:
    data = write_tar(SAMPLE)
    rejects(data[: BLOCK + 100], "truncated", "header")


def test_truncated_in_member_data_is_rejected() -> None:
    data = write_tar(SAMPLE)
    cut = 3 * BLOCK + 300  # inside blobs/sha256/aa's 700 bytes
    rejects(data[:cut], "truncated", "300 of 700", "blobs/sha256/aa")


def test_truncated_trailer_is_rejected() -> None:
    data = write_tar(SAMPLE)
    rejects(data[:-1], "truncated")
    rejects(data[: len(data) - RECORD // 2], "truncated")


def test_trailing_data_after_the_archive_is_rejected() -> None:
    data = write_tar(SAMPLE)
    rejects(data + bytes(RECORD), "data after the end of the archive")
    rejects(data + b"\x00", "data after the end of the archive")


def test_non_zero_bytes_after_the_end_marker_are_rejected() -> None:
    data = bytearray(write_tar(SAMPLE))
    data[-1] = 1
    rejects(bytes(data), "after the end-of-archive marker")


def test_non_zero_padding_after_member_data_is_rejected() -> None:
    data = bytearray(write_tar(SAMPLE))
    data[3 * BLOCK + 700] = 0x41  # first padding byte after the 700-byte member
    rejects(bytes(data), "padding", "blobs/sha256/aa")


def test_bad_header_checksum_is_rejected() -> None:
    data = bytearray(write_tar(SAMPLE))
    data[BLOCK * 2 + 20] ^= 0x01  # inside the name of the third header, checksum not fixed
    rejects(bytes(data), "bad header checksum")


def test_size_not_octal_is_rejected() -> None:
    data = bytearray(write_tar(SAMPLE))
    block = bytearray(data[2 * BLOCK : 3 * BLOCK])
    block[124:136] = b"00000001274 "  # octal digits but a space terminator
    refix_checksum(block)
    data[2 * BLOCK : 3 * BLOCK] = block
    rejects(bytes(data), "size field is not 11 octal digits")
    block[124:136] = b"0000000127x\x00"
    refix_checksum(block)
    data[2 * BLOCK : 3 * BLOCK] = block
    rejects(bytes(data), "size field is not 11 octal digits")


def test_base_256_for_a_small_size_is_rejected() -> None:
    data = bytearray(write_tar(SAMPLE))
    block = bytearray(data[2 * BLOCK : 3 * BLOCK])
    block[124:136] = b"\x80" + (700).to_bytes(11, "big")
    refix_checksum(block)
    data[2 * BLOCK : 3 * BLOCK] = block
    rejects(bytes(data), "base-256")


def test_checksum_field_in_another_spelling_is_rejected() -> None:
    """tarfile accepts a checksum terminated by NUL NUL or space-padded; gapseal only its own spelling."""
    data = bytearray(write_tar(SAMPLE))
    data[148 + 7] = 0  # the trailing space of the first header's checksum
    rejects(bytes(data), "bad header checksum")


def test_end_marker_must_be_two_zero_blocks() -> None:
    data = bytearray(write_tar(SAMPLE))
    end = tarformat.BLOCK * 2 + tarformat.member_span(700) + tarformat.member_span(2)
    data[end + BLOCK + 5] = 7  # second zero block
    rejects(bytes(data), "end-of-archive marker is not two zero blocks")


def test_empty_input_is_truncated() -> None:
    rejects(b"", "truncated")


# ---------------------------------------------------------------------------------------------------------------
# No slack: every single-byte change outside member data is refused, every change inside it changes a digest
# ---------------------------------------------------------------------------------------------------------------


def _digests(members: dict[str, bytes | None]) -> dict[str, str | None]:
    return {k: hashlib.sha256(v).hexdigest() if v is not None else None for k, v in members.items()}


def test_every_single_byte_change_is_detected_exhaustively() -> None:
    """Flip each byte of a small archive in turn: the reader refuses it, or a member's content digest changes."""
    members = [("blobs", None), ("blobs/sha256", None), ("blobs/sha256/aa", b"x" * 600), ("index.json", b"{}")]
    data = write_tar(members)
    clean = _digests(read_all(data))
    end_marker = 2 * BLOCK + tarformat.member_span(600) + tarformat.member_span(2) + 2 * BLOCK
    positions = [*range(end_marker), *range(end_marker, len(data), 61), len(data) - 1]
    for position in positions:
        delta = 1 << (position % 8)  # every bit position gets its turn across neighbouring bytes
        bad = bytearray(data)
        bad[position] ^= delta
        try:
            got = _digests(read_all(bytes(bad)))
        except ArchiveError:
            continue
        assert got != clean, f"flip at {position} ^ {delta:#x} went unnoticed"


# ---------------------------------------------------------------------------------------------------------------
# Hashed copies: in the kernel and read back from the output, or through user space; the same bytes and digests
# ---------------------------------------------------------------------------------------------------------------


def _hashed_pack(
    tmp_path: Path, *, out_flags: int, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[bytes, str, str]:
    """Pack one 3-chunk-and-a-bit file with a part hash and a member hash; return (archive, part hash, member hash)."""
    monkeypatch.setattr(tarformat, "COPY_CHUNK", chunk)
    monkeypatch.setattr(tarformat, "READ_BACK_CHUNK", chunk // 3)
    src = tmp_path / "src"
    src.write_bytes(bytes(range(256)) * (3 * chunk // 256) + b"tail")
    out = tmp_path / f"out-{out_flags}"
    part, member = hashlib.sha256(), hashlib.sha256()
    with src.open("rb") as s:
        fd = os.open(out, out_flags | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            writer = TarWriter(fd, mtime=MTIME, sink=part.update, early_writeback=True)
            writer.add_bytes("a", b"x")
            writer.add_file("b", s.fileno(), offset=1, length=src.stat().st_size - 1, data_sink=member.update)
            writer.close()
        finally:
            os.close(fd)
    return out.read_bytes(), part.hexdigest(), member.hexdigest()


def test_a_hashed_copy_in_the_kernel_hashes_exactly_what_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_back = _hashed_pack(tmp_path, out_flags=os.O_RDWR, chunk=64 * 1024, monkeypatch=monkeypatch)
    through = _hashed_pack(tmp_path, out_flags=os.O_WRONLY, chunk=64 * 1024, monkeypatch=monkeypatch)  # no read back
    assert read_back == through
    archive, part, member = read_back
    assert part == hashlib.sha256(archive).hexdigest()
    assert read_all(archive)["b"] is not None
    assert member == hashlib.sha256(read_all(archive)["b"] or b"").hexdigest()


def test_a_hashed_copy_falls_back_when_the_kernel_cannot_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    expected = _hashed_pack(tmp_path, out_flags=os.O_WRONLY, chunk=64 * 1024, monkeypatch=monkeypatch)
    monkeypatch.setattr(os, "copy_file_range", refuse)
    assert _hashed_pack(tmp_path, out_flags=os.O_RDWR, chunk=64 * 1024, monkeypatch=monkeypatch) == expected


def test_a_hashed_copy_from_a_source_that_shrinks_raises_eof(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"1" * 1000)
    fd = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        writer = TarWriter(fd, mtime=MTIME, sink=hashlib.sha256().update)
        with src.open("rb") as s, pytest.raises(EOFError, match="source ended after 1000 of 2000 bytes"):
            writer.add_file("b", s.fileno(), offset=0, length=2000)
    finally:
        os.close(fd)
