"""A strict, deterministic ustar format: the writer gapseal packs with and the only reader it trusts.

Python's ``tarfile`` is forgiving by design (GNU and pax extensions, lenient number parsing, tolerated garbage after
the end marker), and every tolerance is room for an attacker or for a flipped bit to pass unnoticed. This module
accepts exactly the bytes its own writer produces and nothing else:

- every header is POSIX ustar (magic ``ustar`` and a NUL, version ``00``), type ``0`` (regular file) or ``5``
  (directory);
- file mode 0644, directory mode 0755, uid/gid 0, empty uname/gname, empty linkname, devmajor/devminor zero, one
  mtime shared by every member;
- names are relative POSIX paths over the portable filename character set (``A-Za-z0-9._-``), no empty, ``.`` or
  ``..`` component; directories end with ``/``; every member's parent directory comes before it; entries are in
  strictly increasing byte order, so no name appears twice; a directory with no member under it is refused;
- numbers are zero-padded octal with a NUL terminator; a size of 8 GiB or more uses the GNU base-256 form that GNU tar,
  bsdtar and ``tarfile`` all read (the one place ustar has no room), and only then;
- data is padded with zero bytes to a 512-byte block; the archive ends with two zero blocks, then zero bytes up to a
  10240-byte record (as GNU tar and ``tarfile`` write), then end of file.

The reader re-encodes every header it parses and compares the bytes, so no header field is left unchecked: together
with the header checksum, the zero padding and the exact trailer, a single changed byte anywhere outside member data
is always rejected. Member data is covered by the content digests the callers check.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import re
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from gapseal.atomic import write_all
from gapseal.errors import ArchiveError

BLOCK = 512
RECORD = 20 * BLOCK
"""Archives are padded to a whole record of 10240 bytes, the blocking factor GNU tar and ``tarfile`` use."""

COPY_CHUNK = 4 * 1024 * 1024
"""Bytes per read when streaming member data."""
WRITEBACK_STEP = 32 * 1024 * 1024
"""With early writeback, disk writes of the output start after every this many bytes."""
READ_BACK_CHUNK = 1024 * 1024
"""Bytes per read when hashing what was just copied in the kernel (small enough to stay in the CPU's cache)."""
_NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF, errno.EPERM})
"""``copy_file_range`` errors that mean "not between these two files" (another file system, a pipe), not a failure."""

FILE_MODE = 0o644
DIR_MODE = 0o755
MAX_OCTAL_SIZE = 8**11 - 1
"""The largest size the 11-digit octal field holds (8 GiB - 1); larger sizes use base-256."""
MAX_MTIME = 8**11 - 1

_TYPE_FILE = b"0"
_TYPE_DIR = b"5"
_MAGIC = b"ustar\x00"
_VERSION = b"00"
_COMPONENT = re.compile(r"[A-Za-z0-9._-]+")

_TYPE_NAMES = {
    b"\x00": "an old-style regular file (type NUL)",
    b"1": "a hard link",
    b"2": "a symbolic link",
    b"3": "a character device",
    b"4": "a block device",
    b"6": "a FIFO",
    b"7": "a contiguous file",
    b"x": "a pax extended header",
    b"g": "a pax global header",
    b"L": "a GNU long name header",
    b"K": "a GNU long link header",
    b"S": "a GNU sparse file",
    b"D": "a GNU directory dump",
    b"M": "a GNU multi-volume continuation",
    b"V": "a GNU volume header",
}

# (name, offset, length) of every ustar header field, in order.
_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("name", 0, 100),
    ("mode", 100, 8),
    ("uid", 108, 8),
    ("gid", 116, 8),
    ("size", 124, 12),
    ("mtime", 136, 12),
    ("chksum", 148, 8),
    ("typeflag", 156, 1),
    ("linkname", 157, 100),
    ("magic", 257, 6),
    ("version", 263, 2),
    ("uname", 265, 32),
    ("gname", 297, 32),
    ("devmajor", 329, 8),
    ("devminor", 337, 8),
    ("prefix", 345, 155),
    ("pad", 500, 12),
)
_ZERO_BLOCK = bytes(BLOCK)


def padding(size: int) -> int:
    """Zero bytes that follow ``size`` bytes of member data to reach a block boundary."""
    return -size % BLOCK


def member_span(size: int) -> int:
    """Archive bytes one member takes: its header, its data and the data's padding."""
    return BLOCK + size + padding(size)


def archive_size(spans: int) -> int:
    """Total archive size for members taking ``spans`` bytes: plus the end marker, rounded up to a record."""
    end = spans + 2 * BLOCK
    return end + (-end % RECORD)


def check_path(path: str) -> str | None:
    """Return why ``path`` (no trailing ``/``) is not a safe member name, or None if it is."""
    if not path:
        return "an empty name"
    if path.startswith("/"):
        return "an absolute path"
    for part in path.split("/"):
        if part == "..":
            return "a '..' component"
        if part == ".":
            return "a '.' component"
        if part == "":
            return "an empty path component"
        if not _COMPONENT.fullmatch(part):
            return "characters outside A-Z a-z 0-9 . _ -"
    return None


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\x00" % (width - 1, value)


def _split_name(name: str) -> tuple[bytes, bytes]:
    raw = name.encode("ascii")
    if len(raw) <= 100:
        return raw, b""
    # The longest prefix that fits, cut at a '/', leaving a name part that fits: one canonical choice.
    for cut in range(min(len(raw) - 1, 155), 0, -1):
        if raw[cut : cut + 1] == b"/" and len(raw) - cut - 1 <= 100:
            return raw[cut + 1 :], raw[:cut]
    raise ValueError(f"name too long for a ustar header: {name!r}")


def encode_header(path: str, *, is_dir: bool, size: int, mtime: int) -> bytes:
    """Return the 512-byte header gapseal writes for a member; ``path`` has no trailing ``/``.

    Raises ``ValueError`` for a name, size or mtime the format cannot hold.
    """
    reason = check_path(path)
    if reason is not None:
        raise ValueError(f"unsafe member name {path!r}: {reason}")
    if is_dir and size != 0:
        raise ValueError("a directory has no data")
    if not 0 <= mtime <= MAX_MTIME:
        raise ValueError(f"mtime {mtime} does not fit a ustar header")
    if size < 0 or size >= 256**11:
        raise ValueError(f"size {size} does not fit a tar header")
    name, prefix = _split_name(path + "/" if is_dir else path)
    size_field = _octal(size, 12) if size <= MAX_OCTAL_SIZE else b"\x80" + size.to_bytes(11, "big")
    header = bytearray(BLOCK)
    header[0 : len(name)] = name
    header[100:108] = _octal(DIR_MODE if is_dir else FILE_MODE, 8)
    header[108:116] = _octal(0, 8)
    header[116:124] = _octal(0, 8)
    header[124:136] = size_field
    header[136:148] = _octal(mtime, 12)
    header[148:156] = b" " * 8
    header[156:157] = _TYPE_DIR if is_dir else _TYPE_FILE
    header[257:263] = _MAGIC
    header[263:265] = _VERSION
    header[329:337] = _octal(0, 8)
    header[337:345] = _octal(0, 8)
    header[345 : 345 + len(prefix)] = prefix
    header[148:156] = b"%06o\x00 " % sum(header)
    return bytes(header)


# ---------------------------------------------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------------------------------------------

ChunkSink = Callable[[memoryview], None]
"""Receives each chunk of member data as it streams (for hashing); the view is only valid during the call."""


class TarWriter:
    """Write a deterministic gapseal tar to an open file descriptor.

    The caller adds members in strictly increasing name order (directories as ``"blobs"``, written ``blobs/``), and
    must add every parent directory before its members; ``close`` writes the end marker and record padding.
    The writer does not fsync or close the descriptor.
    """

    def __init__(self, fd: int, *, mtime: int, sink: ChunkSink | None = None, early_writeback: bool = False) -> None:
        self._fd = fd
        self._mtime = mtime
        self._sink = sink
        self._early_writeback = early_writeback
        self._flushed = 0
        self._start = _readable_file_offset(fd)
        """Where the archive starts in ``fd`` when ``fd`` is a regular file open for reading too, else None."""
        self._last: bytes | None = None
        self._dirs: set[str] = set()
        self.position = 0
        """Bytes written so far."""

    def _write(self, data: bytes | memoryview, *, to_sink: bool = True) -> None:
        write_all(self._fd, data)
        if to_sink and self._sink is not None:
            self._sink(memoryview(data))
        self.position += len(data)
        self._writeback()

    def _writeback(self, force: bool = False) -> None:
        """Start writing finished output to disk while copying goes on, so the caller's final fsync is short.

        ``POSIX_FADV_DONTNEED`` makes Linux begin asynchronous writeback of the range (and drop it from the page
        cache once clean: a packed multi-gigabyte tar need not evict the layout it was read from). Without it, every
        byte would wait for the fsync at the end: copy time plus disk time instead of the larger of the two.
        """
        if not self._early_writeback:
            return
        pending = self.position - self._flushed
        if pending >= WRITEBACK_STEP or (force and pending):
            os.posix_fadvise(self._fd, self._flushed, pending, os.POSIX_FADV_DONTNEED)
            self._flushed = self.position

    def _header(self, path: str, *, is_dir: bool, size: int) -> None:
        key = (path + "/" if is_dir else path).encode("ascii")
        if self._last is not None and key <= self._last:
            raise ValueError(f"members out of order: {path!r} after {self._last.decode()!r}")
        parent = path.rpartition("/")[0]
        if parent and parent not in self._dirs:
            raise ValueError(f"parent directory of {path!r} not added first")
        self._write(encode_header(path, is_dir=is_dir, size=size, mtime=self._mtime))
        self._last = key
        if is_dir:
            self._dirs.add(path)

    def add_dir(self, path: str) -> None:
        """Add a directory member."""
        self._header(path, is_dir=True, size=0)

    def add_bytes(self, path: str, data: bytes) -> None:
        """Add a regular file whose content is ``data``."""
        self._header(path, is_dir=False, size=len(data))
        self._write(data)
        self._write(bytes(padding(len(data))))

    def add_file(
        self,
        path: str,
        src_fd: int,
        *,
        offset: int,
        length: int,
        data_sink: ChunkSink | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        """Add a regular file of ``length`` bytes read from ``src_fd`` starting at ``offset``.

        The data moves in the kernel with ``copy_file_range`` where it can. The sinks (the writer's and
        ``data_sink``), if any, are then fed what was written, read back from the output's page cache chunk by chunk
        right after each copy (``_copy_in_kernel_and_read_back``): what is hashed is exactly what the output holds.
        Where no kernel copy is possible (another file system, an output that cannot be read), the data is read
        in chunks, passed to the sinks and written. A source shorter than ``length`` raises ``EOFError``.
        """
        self._header(path, is_dir=False, size=length)
        sinks = [s for s in (self._sink, data_sink) if s is not None]
        if not sinks:
            self._copy_in_kernel(src_fd, offset, length, on_bytes)
        elif self._start is not None:
            self._copy_in_kernel_and_read_back(src_fd, offset, length, data_sink, on_bytes)
        else:
            self._copy_through(src_fd, offset, length, data_sink, on_bytes)
        self._write(bytes(padding(length)))

    def _copy_in_kernel(self, src_fd: int, offset: int, length: int, on_bytes: Callable[[int], None] | None) -> None:
        done = 0
        while done < length:
            want = min(WRITEBACK_STEP, length - done)
            try:
                n = os.copy_file_range(src_fd, self._fd, want, offset + done)
            except OSError:
                n = os.sendfile(self._fd, src_fd, offset + done, want)
            if n == 0:
                raise EOFError(f"source ended after {done} of {length} bytes")
            done += n
            self.position += n
            self._writeback()
            if on_bytes is not None:
                on_bytes(n)

    def _copy_in_kernel_and_read_back(
        self,
        src_fd: int,
        offset: int,
        length: int,
        data_sink: ChunkSink | None,
        on_bytes: Callable[[int], None] | None,
    ) -> None:
        """Copy in the kernel, ``COPY_CHUNK`` at a time, then hash each copied stretch from the output's page cache.

        One memory copy in the kernel and one read back of pages still in the cache, against two copies through a
        user buffer (read, write): the cheaper of the two here (bench/bench_split.py). The bytes hashed are the
        output's own, so a source changed during the copy cannot make the digest disagree with the file; a source
        that shrinks raises ``EOFError``. No file is ever mapped into memory (a mapped file truncated by someone
        else kills the process with SIGBUS). Where the kernel cannot copy between the two files, the rest goes
        through ``_copy_through``.
        """
        start = self._start
        if start is None:  # pragma: no cover - the caller checked
            self._copy_through(src_fd, offset, length, data_sink, on_bytes)
            return
        sinks = [s for s in (self._sink, data_sink) if s is not None]
        buf = memoryview(bytearray(min(READ_BACK_CHUNK, length) or 1))
        done = 0
        while done < length:
            want = min(COPY_CHUNK, length - done)
            try:
                n = os.copy_file_range(src_fd, self._fd, want, offset + done)
            except OSError as e:
                if e.errno not in _NO_KERNEL_COPY:
                    raise
                self._copy_through(src_fd, offset + done, length - done, data_sink, on_bytes)
                return
            if n == 0:
                raise EOFError(f"source ended after {done} of {length} bytes")
            at = start + self.position
            end = at + n
            while at < end:
                got = os.preadv(self._fd, [buf[: min(len(buf), end - at)]], at)
                if got == 0:
                    raise OSError(errno.EIO, "the output shrank while it was written (another process truncated it)")
                for sink in sinks:
                    sink(buf[:got])
                at += got
            done += n
            self.position += n
            self._writeback()
            if on_bytes is not None:
                on_bytes(n)

    def _copy_through(
        self,
        src_fd: int,
        offset: int,
        length: int,
        data_sink: ChunkSink | None,
        on_bytes: Callable[[int], None] | None,
    ) -> None:
        """Copy through user space, the sinks (hashes) running on helper threads one chunk behind the copy.

        Two buffers alternate: while chunk N is hashed (by each sink on its own thread; ``hashlib`` releases the GIL),
        this thread writes chunk N and reads chunk N+1 into the other buffer. A large member costs the longest of
        reading, writing and hashing, not their sum, and a second digest (member and archive) costs no extra time on
        two cores. Every sink has seen every byte, in order, before this returns.
        """
        sinks = [s for s in (self._sink, data_sink) if s is not None]
        views = [memoryview(bytearray(min(COPY_CHUNK, max(length, 1))))]
        pool: ThreadPoolExecutor | None = None
        pending: list[Future[None]] = []
        done = 0
        k = 0
        try:
            while done < length:
                view = views[k]
                want = min(len(view), length - done)
                n = os.preadv(src_fd, [view[:want]], offset + done)
                if n == 0:
                    raise EOFError(f"source ended after {done} of {length} bytes")
                chunk = view[:n]
                for f in pending:
                    f.result()  # the previous chunk is hashed: its buffer may be read into next
                if pool is None and done + n == length:
                    for sink in sinks:  # the only (or last) chunk with no helper running: hash it here
                        sink(chunk)
                    pending = []
                else:
                    if pool is None:
                        pool = ThreadPoolExecutor(len(sinks) or 1, thread_name_prefix="gapseal-tar-hash")
                        views.append(memoryview(bytearray(len(views[0]))))
                    pending = [pool.submit(sink, chunk) for sink in sinks]
                self._write(chunk, to_sink=False)
                done += n
                k = (k + 1) % len(views)
                if on_bytes is not None:
                    on_bytes(n)
        finally:
            for f in pending:
                f.result()
            if pool is not None:
                pool.shutdown()

    def close(self) -> None:
        """Write the two zero blocks that end the archive and pad it to a whole record."""
        end = self.position + 2 * BLOCK
        self._write(bytes(2 * BLOCK + (-end % RECORD)))
        self._writeback(force=True)


ALIGNED_BUFFER = 64 * 1024
"""A member of at least this size is read into page-aligned anonymous memory (``mmap``), not a ``bytearray``."""


def aligned_buffer(size: int) -> memoryview:
    """A writable, page-aligned buffer of ``size`` bytes (anonymous memory), so ``O_DIRECT`` writes can use it."""
    return memoryview(mmap.mmap(-1, size))


def _readable_file_offset(fd: int) -> int | None:
    """The current offset of ``fd`` if it is a regular file open for reading and writing, else None."""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDWR:
            return None
        return os.lseek(fd, 0, os.SEEK_CUR)
    except OSError:
        return None


# ---------------------------------------------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TarMember:
    """One member of a verified header: a regular file or a directory."""

    path: str
    """Relative POSIX path without a trailing ``/``."""
    is_dir: bool
    size: int
    mtime: int
    offset: int
    """Offset of the member's header in the archive."""


class TarReader:
    """Read a gapseal tar strictly, in one forward pass over ``stream``.

    Iterate ``members()``; for a file member, call ``read_data`` before advancing to stream its content (otherwise it
    is read and discarded, its padding still checked). Every violation raises ``ArchiveError`` naming ``name`` (the
    archive file) and the member.
    """

    def __init__(self, stream: BinaryIO, name: str) -> None:
        self._f = stream
        self.name = name
        self.position = 0
        self.mtime: int | None = None
        """The mtime every member shares (None before the first member)."""
        self._pending: TarMember | None = None
        self._last: bytes | None = None
        self._dirs: set[str] = set()
        self._used_dirs: set[str] = set()
        self._aligned: list[memoryview] = []
        """Two page-aligned ``COPY_CHUNK`` buffers, made on the first large member and reused for every later one."""

    # -- low level ----------------------------------------------------------------------------------------------

    def error(self, message: str, member: str | None = None, hint: str | None = None) -> ArchiveError:
        """Build the ``ArchiveError`` for a problem at ``member`` (or the current offset) of this archive."""
        where = f"{self.name}, member {member!r}" if member is not None else f"{self.name}, offset {self.position}"
        return ArchiveError(
            message,
            where=where,
            hint=hint or "the archive is damaged or was not written by gapseal; copy it again from the source",
        )

    def _read(self, n: int) -> bytes:
        try:
            data = self._f.read(n)
        except OSError as e:  # a bad disk: name the file it is in
            raise self.error(f"cannot read the archive: {e.strerror or e}", hint="copy it again from the source") from e
        if data is None:  # pragma: no cover - non-blocking streams are not supported
            raise self.error("archive stream would block")
        return data

    def _read_exact(self, n: int, what: str, member: str | None = None) -> bytes:
        data = self._read(n)
        while len(data) < n:
            more = self._read(n - len(data))
            if not more:
                raise self.error(f"archive is truncated: it ends inside {what}", member)
            data += more
        self.position += n
        return data

    # -- headers ------------------------------------------------------------------------------------------------

    def _parse_header(self, block: bytes) -> TarMember:
        offset = self.position - BLOCK
        raw_name = _field(block, "name").split(b"\x00", 1)[0]
        raw_prefix = _field(block, "prefix").split(b"\x00", 1)[0]
        shown = (raw_prefix + b"/" + raw_name if raw_prefix else raw_name).decode("ascii", "backslashreplace")

        stored = _field(block, "chksum")
        computed = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
        if not (re.fullmatch(rb"[0-7]{6}\x00 ", stored) and int(stored[:6], 8) == computed):
            raise self.error(f"bad header checksum at offset {offset}", shown)
        if _field(block, "magic") != _MAGIC or _field(block, "version") != _VERSION:
            raise self.error("header is not POSIX ustar (GNU or old tar headers are not accepted)", shown)

        typeflag = _field(block, "typeflag")
        if typeflag not in (_TYPE_FILE, _TYPE_DIR):
            kind = _TYPE_NAMES.get(typeflag, f"an unknown type {typeflag!r}")
            raise self.error(f"member is {kind}; only regular files and directories are allowed", shown)
        is_dir = typeflag == _TYPE_DIR

        text = shown  # non-ASCII bytes show as backslash escapes, which check_path refuses
        if is_dir:
            if not text.endswith("/"):
                raise self.error("directory name does not end with '/'", shown)
            path = text[:-1]
        else:
            if text.endswith("/"):
                raise self.error("file name ends with '/'", shown)
            path = text
        reason = check_path(path)
        if reason is not None:
            raise self.error(f"unsafe member name: {reason}", shown)

        size = self._parse_size(_field(block, "size"), shown)
        if is_dir and size != 0:
            raise self.error("directory member has a non-zero size", shown)
        mtime_field = _field(block, "mtime")
        if not re.fullmatch(rb"[0-7]{11}\x00", mtime_field):
            raise self.error("mtime field is not 11 octal digits and a NUL", shown)
        mtime = int(mtime_field[:11], 8)

        try:
            expected = encode_header(path, is_dir=is_dir, size=size, mtime=mtime)
        except ValueError as e:
            raise self.error(f"member cannot be represented: {e}", shown) from None
        if expected != block:
            # The checksum differs whenever another field does: name that field, not the checksum.
            for field, start, length in sorted(_FIELDS, key=lambda f: f[0] == "chksum"):
                if expected[start : start + length] != block[start : start + length]:
                    raise self.error(f"header field {field!r} is not what gapseal writes", shown)
        return TarMember(path=path, is_dir=is_dir, size=size, mtime=mtime, offset=offset)

    def _parse_size(self, field: bytes, shown: str) -> int:
        if field[0] == 0x80:
            value = int.from_bytes(field[1:], "big")
            if value <= MAX_OCTAL_SIZE:
                raise self.error("size field uses base-256 for a size that fits in octal", shown)
            return value
        if not re.fullmatch(rb"[0-7]{11}\x00", field):
            raise self.error("size field is not 11 octal digits and a NUL", shown)
        return int(field[:11], 8)

    def _check_order(self, member: TarMember) -> None:
        key = (member.path + "/" if member.is_dir else member.path).encode("ascii")
        if self._last is not None:
            if key == self._last or member.path in self._dirs:
                raise self.error("duplicate member name", member.path)
            if key < self._last:
                raise self.error(f"member is out of order (after {self._last.decode()!r})", member.path)
        parent = member.path.rpartition("/")[0]
        if parent:
            if parent not in self._dirs:
                raise self.error("member's parent directory is not an earlier directory member", member.path)
            self._used_dirs.add(parent)
        self._last = key
        if member.is_dir:
            self._dirs.add(member.path)
        if self.mtime is None:
            self.mtime = member.mtime
        elif member.mtime != self.mtime:
            raise self.error(f"mtime {member.mtime} differs from the archive's {self.mtime}", member.path)

    # -- iteration ----------------------------------------------------------------------------------------------

    def members(self) -> Iterator[TarMember]:
        """Yield each member after checking its header; check the end marker and trailer after the last."""
        while True:
            self._finish_pending()
            block = self._read_exact(BLOCK, "a header")
            if block == _ZERO_BLOCK:
                self._check_end()
                return
            member = self._parse_header(block)
            self._check_order(member)
            if not member.is_dir:
                self._pending = member
            yield member

    def read_data(
        self, member: TarMember, sink: ChunkSink | None = None, on_bytes: Callable[[int], None] | None = None
    ) -> None:
        """Stream ``member``'s data to ``sink`` in chunks, then check its zero padding.

        Chunks alternate between two buffers: a view passed to ``sink`` stays valid until the sink's *next* call
        returns, so a sink may hash one chunk on another thread while this reads the next, and must be done with
        every view when this returns (a later member reuses the buffers). The buffers of a large member are
        page-aligned and every chunk but the last is a whole number of blocks, so a sink may write them with
        ``O_DIRECT`` (unpack does).
        """
        if self._pending is None or self._pending != member:
            raise RuntimeError(f"read_data({member.path!r}) out of sequence")
        self._pending = None
        remaining = member.size
        size = min(COPY_CHUNK, max(member.size, 1))
        if size >= ALIGNED_BUFFER:
            if not self._aligned:  # allocated once per reader: a layout of many mid-sized files maps no new memory
                self._aligned = [aligned_buffer(COPY_CHUNK), aligned_buffer(COPY_CHUNK)]
            views = [v[:size] for v in self._aligned[: 1 + (member.size > size)]]
        else:
            views = [memoryview(bytearray(size))]
            if member.size > size:
                views.append(memoryview(bytearray(size)))
        k = 0
        while remaining:
            view = views[k]
            k = (k + 1) % len(views)
            want = min(size, remaining)
            try:
                n = self._f.readinto(view[:want])  # type: ignore[attr-defined]
            except OSError as e:
                raise self.error(
                    f"cannot read the archive: {e.strerror or e}", member.path, hint="copy it again from the source"
                ) from e
            if not n:
                self.position += member.size - remaining
                raise self.error(
                    f"archive is truncated: member data ends after {member.size - remaining} of {member.size} bytes",
                    member.path,
                )
            remaining -= n
            if sink is not None:
                sink(view[:n])
            if on_bytes is not None:
                on_bytes(n)
        self.position += member.size
        pad = self._read_exact(padding(member.size), "member padding", member.path)
        if pad.count(0) != len(pad):
            raise self.error("non-zero bytes in the padding after member data", member.path)

    def _finish_pending(self) -> None:
        if self._pending is not None:
            self.read_data(self._pending)

    def _check_end(self) -> None:
        second = self._read_exact(BLOCK, "the end-of-archive marker")
        if second != _ZERO_BLOCK:
            raise self.error("end-of-archive marker is not two zero blocks")
        rest = -self.position % RECORD
        tail = self._read_exact(rest, "the record padding after the end-of-archive marker")
        if tail.count(0) != len(tail):
            raise self.error("non-zero bytes after the end-of-archive marker")
        if self._read(1):
            raise self.error("data after the end of the archive")
        unused = self._dirs - self._used_dirs
        if unused:
            raise self.error("directory member with nothing under it", sorted(unused)[0])


_FIELD_SPANS = {field: (start, start + length) for field, start, length in _FIELDS}


def _field(block: bytes, name: str) -> bytes:
    start, end = _FIELD_SPANS[name]
    return block[start:end]
