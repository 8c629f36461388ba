"""``refuse_non_bundle``: say what a file is when it is not a bundle tar, before the strict tar reader looks at it.

An operator who hands over a zip, a gzip-compressed tar, an empty file or random bytes should read "X is not a
gapseal bundle: it is a zip archive", not a header checksum error with the first 100 bytes escaped. This looks at
the first block only; everything after it is the strict reader's business (tarformat.py).
"""

from __future__ import annotations

from pathlib import Path

from gapseal.errors import ArchiveError

BLOCK = 512

_MAGIC = (
    (b"PK\x03\x04", "a zip archive"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"BZh", "a bzip2-compressed file"),
    (b"\xfd7zXZ\x00", "an xz-compressed file"),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
)


def _header_checksum_ok(block: bytes) -> bool:
    try:
        stored = int(block[148:156].replace(b"\x00", b" ").strip() or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(block[:148]) + 8 * 32 + sum(block[156:])


def describe_non_bundle(path: Path) -> str | None:
    """Return what ``path`` is when it is plainly not a gapseal tar (``"a zip archive"``), else None."""
    try:
        with path.open("rb") as f:
            head = f.read(BLOCK)
    except OSError:
        return None  # the reader reports unreadable files in its own words
    if not head:
        return "an empty file"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if len(head) < BLOCK or head == bytes(BLOCK):
        return None  # a truncated or zero-filled tar: the reader names the truncation
    if head[257:262] != b"ustar" or not _header_checksum_ok(head):
        return "unknown data, not a tar archive"
    return None  # a tar: the strict reader names what in it is not what gapseal writes (hostile members included)


def refuse_non_bundle(path: Path) -> None:
    """Raise ``ArchiveError`` saying what ``path`` is when it is plainly not a gapseal bundle tar."""
    what = describe_non_bundle(path)
    if what is not None:
        raise ArchiveError(
            f"{path} is not a gapseal bundle: it is {what}",
            where=str(path),
            hint="give a bundle directory, a .gapseal.tar written by 'gapseal bundle pack', or a split set's part0001",
        )
