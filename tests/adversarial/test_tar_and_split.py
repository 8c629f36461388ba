"""Hostile tars and split sets against the commands that read them: unpack (with and without --key), verify, inventory.

Each case is a real archive broken one way (crafted headers, byte edits of a genuine pack, parts removed, swapped,
truncated or mixed) and asserts the exit code, that the message names the problem, and that ``unpack`` left nothing at
its output and no scratch beside it. Memory is checked too: reading a tar of unreferenced junk keeps digests, not bytes.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import shutil
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gapseal.bundler import inventory, tarformat
from gapseal.bundler.archive import pack_layout
from gapseal.bundler.create import create_bundle
from gapseal.bundler.inventory import read_layout_archive
from gapseal.bundler.unpack import unpack_and_verify
from gapseal.canonical import canonical_json
from gapseal.errors import GapsealError
from gapseal.signing.keys import VerifyingKey
from tests.adversarial.conftest import Gapseal, refused
from tests.adversarial.forge import Layout, resign
from tests.bundles import KeyPair, make_bundle, make_inputs, make_keys

MTIME = 1_767_225_600  # the fixture bundle's created time


# ---------------------------------------------------------------------------------------------------------------
# Building archives
# ---------------------------------------------------------------------------------------------------------------


def _header(
    path: str, *, data_size: int = 0, is_dir: bool = False, mtime: int = MTIME, fields: dict[str, bytes] | None = None
) -> bytes:
    """A gapseal header for ``path`` with raw ``fields`` overridden (offset-named), checksum recomputed."""
    block = bytearray(tarformat.encode_header(path, is_dir=is_dir, size=data_size, mtime=mtime))
    spans = {name: (start, length) for name, start, length in tarformat._FIELDS}  # noqa: SLF001 - test crafts headers
    for name, value in (fields or {}).items():
        start, length = spans[name]
        block[start : start + length] = value.ljust(length, b"\x00")[:length]
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def _raw_header(name: bytes, typeflag: bytes, size: int = 0, **fields: bytes) -> bytes:
    """A ustar header for names and types gapseal's encoder refuses to write."""
    block = bytearray(tarformat.encode_header("x", is_dir=False, size=size, mtime=MTIME))
    block[0:100] = name.ljust(100, b"\x00")[:100]
    block[156:157] = typeflag
    spans = {n: (s, ln) for n, s, ln in tarformat._FIELDS}  # noqa: SLF001
    for key, value in fields.items():
        start, length = spans[key]
        block[start : start + length] = value.ljust(length, b"\x00")[:length]
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def _member(path: str, data: bytes | None, **fields: bytes) -> bytes:
    if data is None:
        return _header(path, is_dir=True, fields=fields)
    return _header(path, data_size=len(data), fields=fields) + data + bytes(tarformat.padding(len(data)))


def _finish(body: bytes) -> bytes:
    return body + bytes(tarformat.archive_size(len(body)) - len(body))


GOOD = _member("index.json", b"{}") + _member("oci-layout", b"{}")
BASE256_TWO = b"\x80" + (2).to_bytes(11, "big")


def _write(tmp_path: Path, data: bytes, name: str = "hostile.tar") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Crafted tars: every rule of the strict reader, through `bundle unpack`
# ---------------------------------------------------------------------------------------------------------------

CRAFTED: list[tuple[str, Callable[[], bytes], str]] = [
    ("dotdot", lambda: _finish(_raw_header(b"../evil", b"0")), "'..' component"),
    ("absolute", lambda: _finish(_raw_header(b"/etc/cron.d/evil", b"0")), "absolute path"),
    ("symlink", lambda: _finish(_raw_header(b"index.json", b"2", linkname=b"/etc/passwd")), "symbolic link"),
    ("hardlink", lambda: _finish(GOOD + _raw_header(b"x", b"1", linkname=b"index.json")), "hard link"),
    ("char-device", lambda: _finish(_raw_header(b"null", b"3")), "character device"),
    ("block-device", lambda: _finish(_raw_header(b"sda", b"4")), "block device"),
    ("fifo", lambda: _finish(_raw_header(b"fifo", b"6")), "FIFO"),
    ("pax-header", lambda: _finish(_raw_header(b"PaxHeader", b"x")), "pax extended header"),
    ("pax-global-header", lambda: _finish(_raw_header(b"pax_global_header", b"g")), "pax global header"),
    ("gnu-long-name", lambda: _finish(_raw_header(b"././@LongLink", b"L")), "GNU long name"),
    ("gnu-sparse", lambda: _finish(_raw_header(b"sparse", b"S")), "GNU sparse"),
    ("old-style-file-type", lambda: _finish(_raw_header(b"index.json", b"\x00")), "old-style"),
    ("duplicate", lambda: _finish(_member("index.json", b"{}") + _member("index.json", b"{}")), "duplicate member"),
    ("out-of-order", lambda: _finish(_member("oci-layout", b"{}") + _member("index.json", b"{}")), "out of order"),
    ("mode-0777", lambda: _finish(_member("index.json", b"{}", mode=b"0000777\x00")), "header field 'mode'"),
    ("setuid", lambda: _finish(_member("index.json", b"{}", mode=b"0004755\x00")), "header field 'mode'"),
    ("uid-1000", lambda: _finish(_member("index.json", b"{}", uid=b"0001750\x00")), "header field 'uid'"),
    ("uname-root", lambda: _finish(_member("index.json", b"{}", uname=b"root")), "header field 'uname'"),
    ("linkname-on-a-file", lambda: _finish(_member("index.json", b"{}", linkname=b"/etc")), "header field 'linkname'"),
    ("gnu-magic", lambda: _finish(_member("index.json", b"{}", magic=b"ustar ", version=b" \x00")), "not POSIX ustar"),
    (
        "mtime-differs",
        lambda: _finish(_member("index.json", b"{}") + _header("oci-layout", data_size=0, mtime=MTIME + 1)),
        "differs from the archive's",
    ),
    ("empty-directory", lambda: _finish(GOOD + _member("zzz", None)), "directory member with nothing under it"),
    ("missing-parent", lambda: _finish(_member("blobs/x", b"1")), "parent directory"),
    ("space-in-name", lambda: _finish(_member("index.json", b"{}") + _raw_header(b"o ci", b"0")), "characters outside"),
    ("utf8-name", lambda: _finish(_raw_header("caf\u00e9".encode(), b"0")), "characters outside"),
    (
        "base256-small-size",
        lambda: _finish(_header("index.json", data_size=2, fields={"size": BASE256_TWO}) + b"{}" + bytes(510)),
        "base-256",
    ),
    ("bad-checksum", lambda: _finish(_bad_checksum()), "checksum"),
    ("trailing-data", lambda: _finish(GOOD) + b"MZ\x90\x00", "data after the end"),
    ("nonzero-record-padding", lambda: _finish(GOOD)[:-1] + b"\x01", "after the end-of-archive marker"),
    ("nonzero-member-padding", lambda: _finish(_nonzero_padding()), "padding after member data"),
    ("truncated-data", lambda: _finish(GOOD)[: 512 + 1], "truncated"),
    ("truncated-header", lambda: _finish(GOOD)[:700], "truncated"),
    ("no-end-marker", lambda: GOOD, "truncated"),
    ("parts-list-in-plain-tar", lambda: _finish(_member("gapseal-parts.json", b"{}")), "parts list in a tar"),
    ("range-in-plain-tar", lambda: _finish(_member("blobs", None) + _member("blobs/x.range0001", b"1")), "range"),
]


def _bad_checksum() -> bytes:
    """The second header's checksum is wrong (a bad first block is named by the file-type check instead)."""
    block = bytearray(_member("oci-layout", b"{}"))
    block[148:154] = b"000001"
    return _member("index.json", b"{}") + bytes(block)


def _nonzero_padding() -> bytes:
    data = bytearray(_member("index.json", b"{}"))
    data[512 + 5] = 0x41
    return bytes(data)


@pytest.mark.parametrize(("build", "fragment"), [c[1:] for c in CRAFTED], ids=[c[0] for c in CRAFTED])
def test_unpack_refuses_a_crafted_tar(
    tmp_path: Path, gapseal: Gapseal, build: Callable[[], bytes], fragment: str
) -> None:
    tar = _write(tmp_path, build())
    result = gapseal("bundle", "unpack", tar, "--out", tmp_path / "out")
    refused(result, fragment)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "state") == ["hostile.tar"]
    assert not (tmp_path.parent / "evil").exists()


def test_an_oversized_top_level_file_is_refused_before_it_is_held(
    tmp_path: Path, gapseal: Gapseal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inventory, "MAX_METADATA_FILE", 1000)
    tar = _write(tmp_path, _finish(_member("index.json", b"{" * 1001)))
    refused(gapseal("bundle", "unpack", tar, "--out", tmp_path / "out"), "too large")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------
# Byte edits of a genuine pack
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def packed(tmp_path: Path, bundle: Path) -> Path:
    """The genuine bundle packed into one tar."""
    return pack_layout(bundle, tmp_path / "b.tar", mtime=MTIME).out


def _member_offset(tar: Path, path_prefix: str) -> tuple[int, int]:
    """(data offset, size) of the first member whose name starts with ``path_prefix``."""
    with tar.open("rb") as f:
        reader = tarformat.TarReader(f, str(tar))
        for m in reader.members():
            if not m.is_dir and m.path.startswith(path_prefix) and m.size > 0:
                return m.offset + tarformat.BLOCK, m.size
    raise AssertionError(path_prefix)


def _flip(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


def test_unpack_refuses_a_flipped_blob_byte_naming_the_blob(tmp_path: Path, packed: Path, gapseal: Gapseal) -> None:
    offset, size = _member_offset(packed, "blobs/sha256/")
    _flip(packed, offset + size // 2)
    refused(gapseal("bundle", "unpack", packed, "--out", tmp_path / "out"), "is corrupt", "blobs/sha256/")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_verify_refuses_a_flipped_index_byte(tmp_path: Path, packed: Path, gapseal: Gapseal, keys: KeyPair) -> None:
    offset, _ = _member_offset(packed, "index.json")
    _flip(packed, offset + 3)
    result = gapseal("bundle", "verify", packed, "--key", keys.public_path)
    assert result.code == 1
    assert "Traceback" not in result.err


def test_unpack_refuses_a_flipped_header_byte(tmp_path: Path, packed: Path, gapseal: Gapseal) -> None:
    offset, _ = _member_offset(packed, "index.json")
    _flip(packed, offset - tarformat.BLOCK + 2)  # inside the member name
    refused(gapseal("bundle", "unpack", packed, "--out", tmp_path / "out"), "checksum")


@pytest.mark.parametrize("cut", [1, 512, 10240 - 1], ids=["last-byte", "last-block", "whole-record"])
def test_unpack_refuses_a_truncated_pack(tmp_path: Path, packed: Path, gapseal: Gapseal, cut: int) -> None:
    data = packed.read_bytes()
    packed.write_bytes(data[:-cut])
    refused(gapseal("bundle", "unpack", packed, "--out", tmp_path / "out"), "truncated")
    assert not (tmp_path / "out").exists()


def test_inventory_refuses_a_hostile_tar(tmp_path: Path, gapseal: Gapseal) -> None:
    tar = _write(tmp_path, _finish(_raw_header(b"index.json", b"2", linkname=b"/etc/passwd")))
    refused(gapseal("bundle", "inventory", tar, "--out", tmp_path / "have.json"), "symbolic link")
    assert not (tmp_path / "have.json").exists()


# ---------------------------------------------------------------------------------------------------------------
# Split sets
# ---------------------------------------------------------------------------------------------------------------

PART = 24 * 1024


@pytest.fixture
def split(tmp_path: Path, bundle: Path) -> list[Path]:
    """The genuine bundle packed as a split set of small parts (its 1 KiB+ files spread over several)."""
    result = pack_layout(bundle, tmp_path / "s.tar", mtime=MTIME, part_size=PART)
    parts = [p.path for p in result.parts]
    assert len(parts) >= 3
    return parts


def _unpack(gapseal: Gapseal, first: Path, out: Path) -> object:
    return gapseal("bundle", "unpack", first, "--out", out)


def test_split_missing_part(tmp_path: Path, split: list[Path], gapseal: Gapseal) -> None:
    split[1].unlink()
    refused(_unpack(gapseal, split[0], tmp_path / "out"), f"missing part 2 of {len(split)}")  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_split_truncated_part(tmp_path: Path, split: list[Path], gapseal: Gapseal) -> None:
    split[2].write_bytes(split[2].read_bytes()[:-512])
    refused(_unpack(gapseal, split[0], tmp_path / "out"), "the parts list says")  # type: ignore[arg-type]


def test_split_swapped_parts(tmp_path: Path, split: list[Path], gapseal: Gapseal) -> None:
    a, b = split[1], split[2]
    tmp = a.with_name("tmp")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    result = _unpack(gapseal, split[0], tmp_path / "out")
    refused(result, a.name)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_split_extra_part_beside(tmp_path: Path, split: list[Path], gapseal: Gapseal) -> None:
    shutil.copy(split[1], split[0].with_name(f"s.part{len(split) + 1:04d}.tar"))
    refused(_unpack(gapseal, split[0], tmp_path / "out"), "lies beside a set")  # type: ignore[arg-type]


def test_split_given_a_later_part(tmp_path: Path, split: list[Path], gapseal: Gapseal) -> None:
    refused(_unpack(gapseal, split[1], tmp_path / "out"), "give the first part")  # type: ignore[arg-type]


def test_split_named_by_its_tar_name(tmp_path: Path, split: list[Path], gapseal: Gapseal) -> None:
    refused(_unpack(gapseal, tmp_path / "s.tar", tmp_path / "out"), "s.part0001.tar")  # type: ignore[arg-type]


def test_split_flipped_byte_in_a_later_part(tmp_path: Path, split: list[Path], gapseal: Gapseal) -> None:
    offset, size = _member_offset(split[1], "blobs/sha256/")
    _flip(split[1], offset + size // 2)
    refused(_unpack(gapseal, split[0], tmp_path / "out"), "does not match its digest in the parts list")  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_split_tampered_parts_list(tmp_path: Path, split: list[Path], gapseal: Gapseal) -> None:
    offset, _ = _member_offset(split[0], "gapseal-parts.json")
    data = bytearray(split[0].read_bytes())
    i = data.index(b'"part_size":', offset)
    data[i + 12] = ord("9") if data[i + 12] != ord("9") else ord("8")  # a digit: still JSON, seal broken
    split[0].write_bytes(bytes(data))
    refused(_unpack(gapseal, split[0], tmp_path / "out"), "parts list")  # type: ignore[arg-type]


def test_split_part_from_another_pack(tmp_path: Path, split: list[Path], gapseal: Gapseal, keys: KeyPair) -> None:
    other = make_bundle(tmp_path / "other", keys, version="2.0.0").path
    (tmp_path / "o").mkdir()
    result = pack_layout(other, tmp_path / "o" / "s.tar", mtime=MTIME, part_size=PART)
    shutil.copy(result.parts[1].path, split[1])
    refused(_unpack(gapseal, split[0], tmp_path / "out"), split[1].name)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_inventory_refuses_a_truncated_split_set(tmp_path: Path, split: list[Path], gapseal: Gapseal) -> None:
    split[-1].write_bytes(split[-1].read_bytes()[:100])
    refused(gapseal("bundle", "inventory", split[0], "--out", tmp_path / "have.json"), "the parts list says")


# ---------------------------------------------------------------------------------------------------------------
# unpack --key: verified in the same pass, nothing appears unless it verifies
# ---------------------------------------------------------------------------------------------------------------


def test_unpack_with_key_of_a_genuine_split_set_verifies(
    tmp_path: Path, split: list[Path], gapseal: Gapseal, keys: KeyPair
) -> None:
    result = gapseal("bundle", "unpack", split[0], "--out", tmp_path / "out", "--key", keys.public_path, "--json")
    assert result.code == 0, result.err
    assert '"verified": true' in result.out
    assert gapseal("bundle", "verify", tmp_path / "out", "--key", keys.public_path).code == 0


def test_unpack_with_an_untrusted_key_leaves_nothing(
    tmp_path: Path, packed: Path, gapseal: Gapseal, keys: KeyPair
) -> None:
    from tests.bundles import make_keys

    other = make_keys(tmp_path / "other", "other")
    refused(gapseal("bundle", "unpack", packed, "--out", tmp_path / "out", "--key", other.public_path), "trusted key")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_unpack_with_key_refuses_an_unreferenced_blob(
    tmp_path: Path, bundle: Path, gapseal: Gapseal, keys: KeyPair
) -> None:
    """A junk blob (valid name, valid digest, referenced by nothing signed) rides along: refused, not unpacked."""
    Layout(bundle).add_blob(b"#!/bin/sh\nrm -rf /\n")
    tar = pack_layout(bundle, tmp_path / "j.tar", mtime=MTIME).out
    refused(gapseal("bundle", "unpack", tar, "--out", tmp_path / "out", "--key", keys.public_path), "unexpected file")
    assert not (tmp_path / "out").exists()


def test_unpack_with_key_refuses_an_expired_bundle(
    tmp_path: Path, bundle: Path, gapseal: Gapseal, keys: KeyPair
) -> None:
    desc = Layout(bundle).descriptor()
    desc["expires"] = "2026-01-02T00:00:00Z"
    resign(bundle, keys.private, desc)
    tar = pack_layout(bundle, tmp_path / "e.tar", mtime=MTIME).out
    refused(gapseal("bundle", "unpack", tar, "--out", tmp_path / "out", "--key", keys.public_path), "expired")
    assert not (tmp_path / "out").exists()


def test_unpack_with_key_checks_rollback_but_never_moves_the_mark(
    tmp_path: Path, gapseal: Gapseal, keys: KeyPair
) -> None:
    old = pack_layout(make_bundle(tmp_path / "v1", keys).path, tmp_path / "v1.tar", mtime=MTIME).out
    new = pack_layout(make_bundle(tmp_path / "v2", keys, version="2.0.0").path, tmp_path / "v2.tar", mtime=MTIME).out
    state = tmp_path / "rollback.json"
    args = ("--key", keys.public_path, "--state-file", state)
    assert gapseal("bundle", "unpack", new, "--out", tmp_path / "u2", *args).code == 0
    assert not state.exists()  # unpacking looked; it did not use the bundle
    state.write_bytes(canonical_json({"clinic": {"version": "2.0.0", "manifest_digest": "sha256:" + "0" * 64}}))
    refused(gapseal("bundle", "unpack", old, "--out", tmp_path / "u1", *args), "rollback refused")
    assert not (tmp_path / "u1").exists()
    assert gapseal("bundle", "unpack", old, "--out", tmp_path / "u1", *args, "--allow-downgrade").code == 0


def test_unpack_allow_downgrade_without_a_key_is_a_usage_error(tmp_path: Path, packed: Path, gapseal: Gapseal) -> None:
    refused(gapseal("bundle", "unpack", packed, "--out", tmp_path / "o", "--allow-downgrade"), "--key", code=2)


# ---------------------------------------------------------------------------------------------------------------
# Memory: junk in a tar costs digests, not bytes
# ---------------------------------------------------------------------------------------------------------------


def _junk_tar(path: Path, count: int, size: int) -> int:
    """A strict gapseal tar holding ``count`` unreferenced blobs of ``size`` bytes (valid names and digests)."""
    blobs = sorted(
        (hashlib.sha256(d).hexdigest(), d) for d in (i.to_bytes(8, "big") * (size // 8) for i in range(count))
    )
    pos = 0
    with path.open("wb") as f:
        members = [_member("blobs", None), _member("blobs/sha256", None)]
        members += [_member(f"blobs/sha256/{name}", data) for name, data in blobs]
        members += [_member("index.json", b"{}"), _member("oci-layout", b"{}")]
        for m in members:
            f.write(m)
            pos += len(m)
        f.write(bytes(tarformat.archive_size(pos) - pos))
    return count * size


def test_reading_a_tar_of_junk_blobs_keeps_digests_not_bytes(tmp_path: Path) -> None:
    """32 MiB of small unreferenced blobs: the reader's Python allocations stay a small fraction of it."""
    tar = tmp_path / "junk.tar"
    total = _junk_tar(tar, 4096, 8192)
    tracemalloc.start()
    try:
        inv = read_layout_archive(tar)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(inv.entries) == 4096 + 2
    assert peak < total // 8, f"peak {peak} bytes for {total} bytes of junk"


def test_verify_of_a_junk_tar_is_refused_cleanly(tmp_path: Path, gapseal: Gapseal, keys: KeyPair) -> None:
    """A tar of nothing but junk blobs and a junk index: refused with a message about the index, no traceback."""
    tar = tmp_path / "junk.tar"
    _junk_tar(tar, 64, 4096)
    refused(gapseal("bundle", "verify", tar, "--key", keys.public_path), "index.json")


def test_a_blob_damaged_before_a_split_pack_is_named_by_the_reader(
    tmp_path: Path, bundle: Path, gapseal: Gapseal
) -> None:
    """Split pack takes a whole blob's member digest from its name: a blob that no longer matches it is reported."""
    victim = max((bundle / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    result = pack_layout(bundle, tmp_path / "d.tar", mtime=MTIME, part_size=PART)
    refused(
        gapseal("bundle", "unpack", result.out, "--out", tmp_path / "out"),
        "does not match its digest in the parts list",
        victim.name,
    )
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------
# extract from a tar or split set: unpacked and verified in one pass into a scratch beside --out, removed after
# ---------------------------------------------------------------------------------------------------------------


def _extract(gapseal: Gapseal, source: Path, out: Path, keys: KeyPair, *extra: object) -> object:
    return gapseal("bundle", "extract", source, "--model", "tiny", "--out", out, "--key", keys.public_path, *extra)


@pytest.mark.parametrize("form", ["tar", "split"])
def test_extract_from_an_archive_moves_the_mark_and_leaves_no_scratch(
    tmp_path: Path, bundle: Path, gapseal: Gapseal, keys: KeyPair, form: str
) -> None:
    source = pack_layout(bundle, tmp_path / "e.tar", mtime=MTIME, part_size=PART if form == "split" else None).out
    state = tmp_path / "rollback.json"
    result = _extract(gapseal, source, tmp_path / "out", keys, "--state-file", state)
    assert result.code == 0, result.err  # type: ignore[attr-defined]
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert '"1.0.0"' in state.read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_extract_from_a_tar_with_a_flipped_blob(tmp_path: Path, packed: Path, gapseal: Gapseal, keys: KeyPair) -> None:
    offset, size = _member_offset(packed, "blobs/sha256/")
    _flip(packed, offset + size // 2)
    refused(_extract(gapseal, packed, tmp_path / "out", keys), "is corrupt")  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_extract_from_a_split_set_missing_a_part(
    tmp_path: Path, split: list[Path], gapseal: Gapseal, keys: KeyPair
) -> None:
    split[-1].unlink()
    refused(_extract(gapseal, split[0], tmp_path / "out", keys), "missing part")  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_extract_from_a_tar_of_a_trusted_signed_hostile_path(
    tmp_path: Path, bundle: Path, gapseal: Gapseal, keys: KeyPair
) -> None:
    desc = Layout(bundle).descriptor()
    desc["models"][0]["files"][0]["path"] = "../../../etc/x"
    resign(bundle, keys.private, desc)
    tar = pack_layout(bundle, tmp_path / "h.tar", mtime=MTIME).out
    refused(_extract(gapseal, tar, tmp_path / "out", keys), "'..' component")  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.rglob("x") if p.is_file()]


def test_extract_from_a_hostile_tar(tmp_path: Path, gapseal: Gapseal, keys: KeyPair) -> None:
    tar = _write(tmp_path, _finish(_raw_header(b"../evil", b"0")))
    refused(_extract(gapseal, tar, tmp_path / "out", keys), "'..' component")  # type: ignore[arg-type]
    assert not (tmp_path.parent / "evil").exists()
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------
# Property: any byte or block mutation of a packed bundle is refused by unpack --key, with gapseal's own error only
# ---------------------------------------------------------------------------------------------------------------


@functools.cache
def _property_archives() -> tuple[Path, VerifyingKey, list[Path]]:
    """One real signed bundle packed whole and split (a blob cut into ranges too); removed at interpreter exit."""
    root = Path(tempfile.mkdtemp(prefix="gapseal-unpack-prop-"))
    atexit.register(shutil.rmtree, root, True)
    keys = make_keys(root / "keys")
    spec = make_inputs(root / "in")
    (root / "in/docs/manual.txt").write_bytes(bytes(range(256)) * 200)
    made = create_bundle(spec, keys.private, root / "bundle", link=False).path
    whole = pack_layout(made, root / "whole.tar", mtime=MTIME).out
    split = pack_layout(made, root / "split.tar", mtime=MTIME, part_size=20480)
    return root, keys.public, [whole, *[p.path for p in split.parts]]


def _mutate(data: bytes, kind: str, offset: int, value: int) -> bytes:
    block = offset - offset % tarformat.BLOCK
    if kind == "flip":
        out = bytearray(data)
        out[offset] ^= value
        return bytes(out)
    if kind == "truncate":
        return data[:offset]
    if kind == "insert":
        return data[:offset] + bytes([value]) * (1 + value % 7) + data[offset:]
    if kind == "drop-block":
        return data[:block] + data[block + tarformat.BLOCK :]
    return data[: block + tarformat.BLOCK] + data[block:]  # "repeat-block"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_mutation_is_refused_by_unpack_with_nothing_written(data: st.DataObject) -> None:
    """Invariant: unpack --key succeeds only on the signed bytes; a mutated archive raises a GapsealError, never
    another exception, and nothing appears at the output or beside it."""
    root, key, files = _property_archives()
    target = data.draw(st.sampled_from(files), label="file")
    original = target.read_bytes()
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "drop-block", "repeat-block"]), label="kind")
    offset = data.draw(st.integers(0, len(original) - 1), label="offset")
    value = data.draw(st.integers(1, 255), label="value")
    mutated = _mutate(original, kind, offset, value)
    assume(mutated != original)
    work = Path(tempfile.mkdtemp(dir=root))
    try:
        for f in files:
            shutil.copyfile(f, work / f.name)
        (work / target.name).write_bytes(mutated)
        first = work / ("whole.tar" if target.name == "whole.tar" else files[1].name)
        with pytest.raises(GapsealError):
            unpack_and_verify(first, work / "out", trusted_keys=[key])
        assert sorted(p.name for p in work.iterdir()) == sorted(f.name for f in files)
    finally:
        shutil.rmtree(work)


def test_the_property_archives_unpack_when_untouched(tmp_path: Path) -> None:
    _, key, files = _property_archives()
    for first in (files[0], files[1]):
        out = tmp_path / first.stem
        result = unpack_and_verify(first, out, trusted_keys=[key])
        assert result.verified is not None
        assert (out / "index.json").is_file()
