"""Read a bundle layout in any of its forms (directory, tar, split set) into one inventory of files and digests.

This is the transport layer under ``verify``: it proves the container of the layout is sound (no links or special
files in a directory; a strict gapseal tar; a complete split set in the right order, every part and member as its
parts list says) and hashes every file once, streaming. Whether the files are the right ones is ``verify``'s question:
it compares the inventory against the signed manifests.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pydantic import ValidationError

from gapseal.bundler import tarformat
from gapseal.bundler.archive import (
    PARTS_LIST_NAME,
    PartMember,
    PartRecord,
    PartsList,
    existing_parts,
    parse_range_name,
    part_number,
    part_path,
    range_name,
)
from gapseal.bundler.filetype import refuse_non_bundle
from gapseal.canonical import canonical_model_json
from gapseal.errors import ArchiveError, VerificationError
from gapseal.hashing import copy_and_hash, hash_stream, parallel_map
from gapseal.jsonlimits import MAX_DOCUMENT
from gapseal.names import UnsafeNameError, join_under
from gapseal.progress import NO_PROGRESS, Progress

KEEP_BLOB_CONTENT = 1024 * 1024
"""The size of the largest image document (manifest, index) ``images`` accepts; kept for its callers."""
MAX_CONTENT = MAX_DOCUMENT
"""A file's ``content`` is available up to this size (manifests and descriptors grow with the file count)."""
MAX_METADATA_FILE = 64 * 1024 * 1024
"""A file outside ``blobs/`` larger than this is refused (index.json is kilobytes)."""

_SHA256_BLOB = re.compile(r"^blobs/sha256/([0-9a-f]{64})$")

Segment = tuple[str, int, int]
"""Where bytes of a layout file lie: (file holding them, offset, length)."""


@dataclass(frozen=True)
class LayoutEntry:
    """One regular file of a layout: its digest and size, and where to read it again.

    Readers keep digests, never bytes: memory does not grow with the size or the number of files in a layout, junk
    included. ``content`` reads a file again from where it was found (a directory, a tar, the parts of a split set)
    when a caller needs to parse it, and checks that what it read hashes to ``sha256``, so a file swapped after it
    was hashed is refused, not parsed.
    """

    path: str
    """Relative POSIX path: ``oci-layout``, ``index.json``, ``blobs/sha256/<hex>``."""
    size: int
    sha256: str
    """Lower-case hex of the content's SHA-256."""
    kept: bytes | None = field(default=None, repr=False)
    """The bytes, when the reader could not read them again later (its source is gone once it returns)."""
    segments: tuple[Segment, ...] = field(default=(), repr=False, compare=False)
    """Where the bytes lie, in order (one segment for a file or a tar member, several for a blob cut into ranges)."""

    @property
    def content(self) -> bytes | None:
        """The file's bytes, read again and checked against ``sha256``; None for a file over ``MAX_CONTENT``.

        Raises ``VerificationError`` when the bytes read now are not the ones hashed before.
        """
        if self.kept is not None:
            return self.kept
        if self.size > MAX_CONTENT or not self.segments:
            return None
        data = bytearray()
        for source, offset, length in self.segments:
            try:
                fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    while length:
                        chunk = os.pread(fd, length, offset)
                        if not chunk:
                            break
                        data += chunk
                        offset += len(chunk)
                        length -= len(chunk)
                finally:
                    os.close(fd)
            except OSError as e:
                raise VerificationError(
                    f"{self.path} cannot be read again: {e.strerror or e}",
                    where=source,
                    hint="the bundle changed while it was being verified; obtain a fresh copy and verify again",
                ) from e
        if len(data) != self.size or hashlib.sha256(data).hexdigest() != self.sha256:
            raise VerificationError(
                f"{self.path} changed while the bundle was being verified (its bytes no longer hash to "
                f"sha256:{self.sha256})",
                where=self.segments[0][0],
                hint="the bundle is on media that someone else writes to; copy it somewhere private and verify again",
            )
        return bytes(data)


@dataclass(frozen=True)
class ArchivePart:
    """One part file of a split set, as read."""

    number: int
    path: Path
    size: int
    sha256: str | None
    """The part's digest from the parts list (None for part 1, which cannot list its own digest)."""
    members: tuple[str, ...]


@dataclass(frozen=True)
class LayoutInventory:
    """Every file of a layout, hashed, and where it was read from."""

    entries: dict[str, LayoutEntry]
    source: str
    """The directory, tar or first part, as given."""
    parts: tuple[ArchivePart, ...] | None = None
    """The parts of a split set, in order; None for a directory or a single tar."""
    directories: frozenset[str] = frozenset()
    """Every directory of the layout (relative, no trailing ``/``), for an exact file-set check."""
    mtime: int | None = None
    """The archive's member mtime (None for a directory)."""


# ---------------------------------------------------------------------------------------------------------------
# Directory
# ---------------------------------------------------------------------------------------------------------------


def read_layout_dir(
    path: Path,
    *,
    progress: Progress = NO_PROGRESS,
    only: frozenset[str] | None = None,
    copy_to: Path | None = None,
    not_copied: frozenset[str] = frozenset(),
) -> LayoutInventory:
    """Hash every file of the layout directory ``path``; links and special files raise ``VerificationError``.

    The walk never follows a link; files are opened with ``O_NOFOLLOW`` and re-checked after opening. Hard links are
    fine (``create`` makes them). Files are hashed on several threads, largest first.

    ``only`` limits the files read to those paths. With ``copy_to``, every file read (but those in ``not_copied``) is
    copied under that directory in the same pass that hashes it (the final path checked with ``join_under``), and its
    entry describes the copy: what was hashed is exactly what was written, and a second read is never needed.
    """
    root = Path(path)
    files: list[tuple[str, Path, int]] = []
    directories: set[str] = set()

    def walk(directory: Path, rel: str) -> None:
        with os.scandir(directory) as it:
            items = sorted(it, key=lambda e: e.name)
        for item in items:
            name = f"{rel}{item.name}"
            st = item.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                directories.add(name)
                walk(Path(item.path), name + "/")
            elif stat.S_ISREG(st.st_mode):
                if only is None or name in only:
                    files.append((name, Path(item.path), st.st_size))
            else:
                raise VerificationError(
                    f"layout holds {_kind(st.st_mode)}: {name}",
                    where=str(Path(item.path)),
                    hint="a bundle holds only regular files and directories; obtain a fresh copy",
                )

    try:
        walk(root, "")
    except OSError as e:
        raise VerificationError(f"cannot read the layout directory: {e.strerror}", where=e.filename) from e

    total = sum(size for _, _, size in files)
    task = progress.begin(f"hashing {root.name}", total)

    def hash_one(item: tuple[str, Path, int]) -> LayoutEntry:
        name, file_path, _ = item
        if copy_to is None or name in not_copied:
            return _hash_file(name, file_path, progress, task)
        return _copy_file(name, file_path, copy_to, progress, task)

    try:
        ordered = sorted(files, key=lambda f: -f[2])
        entries = parallel_map(hash_one, ordered)
    finally:
        progress.end(task)
    return LayoutInventory(
        entries={e.path: e for e in sorted(entries, key=lambda e: e.path)},
        source=str(path),
        directories=frozenset(directories),
    )


def _copy_file(name: str, file_path: Path, copy_to: Path, progress: Progress, task: int) -> LayoutEntry:
    try:
        target = join_under(copy_to, name, what="layout file")
    except UnsafeNameError as e:
        raise VerificationError(str(e), where=str(file_path)) from e
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        digest = copy_and_hash(
            file_path, target, progress=progress, label=f"copying {name}", follow_symlinks=False, fsync=False
        )  # the caller flushes the whole copy at once (apply: sync_filesystem before its rename)
    except OSError as e:
        if e.filename is not None and Path(e.filename) == file_path:
            raise VerificationError(f"cannot read layout file {name}: {e.strerror or e}", where=str(file_path)) from e
        raise
    return LayoutEntry(name, digest.size, digest.sha256, segments=((str(target), 0, digest.size),))


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _hash_file(name: str, file_path: Path, progress: Progress, task: int) -> LayoutEntry:
    try:
        fd = os.open(file_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise VerificationError(f"cannot open layout file {name}: {e.strerror}", where=str(file_path)) from e
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise VerificationError(f"layout file changed into {_kind(st.st_mode)}: {name}", where=str(file_path))
        if "/" not in name and st.st_size > MAX_METADATA_FILE:
            raise VerificationError(f"layout file outside blobs/ is too large ({st.st_size} bytes): {name}")
        digest = hash_stream(f, progress=progress, task=task)
        if digest.size != st.st_size:
            raise VerificationError(f"layout file changed while it was read: {name}", where=str(file_path))
    return LayoutEntry(name, digest.size, digest.sha256, segments=((str(file_path), 0, digest.size),))


# ---------------------------------------------------------------------------------------------------------------
# Tar and split set
# ---------------------------------------------------------------------------------------------------------------


class LayoutSink:
    """Receives the layout files of an archive as they stream (``unpack`` writes them; the inventory ignores them)."""

    def directory(self, path: str) -> None:
        """Receive a directory of the layout."""

    def begin(self, path: str) -> None:
        """Start a layout file; its data follows in ``write`` calls (across parts, for a blob cut into ranges)."""

    def write(self, chunk: memoryview) -> None:
        """Receive the next bytes of the current file."""

    def end(self, entry: LayoutEntry) -> None:
        """Finish the current file, now complete and hashed."""


@dataclass
class _OpenFile:
    path: str
    hasher: hashlib._Hash
    size: int = 0
    segments: list[Segment] = field(default_factory=list)
    next_range: int = 0
    """For a blob being reassembled from ranges: the index of the range expected next (0: not a ranged blob)."""
    blob_size: int = 0


class _ArchiveWalk:
    """One forward pass over a tar or split set, feeding a ``LayoutSink`` and building the inventory."""

    def __init__(self, archive: Path, sink: LayoutSink, progress: Progress) -> None:
        self.archive = archive
        self.sink = sink
        self.progress = progress
        self.entries: dict[str, LayoutEntry] = {}
        self.directories: set[str] = set()
        self.mtime: int | None = None
        self.task = 0
        self.current: _OpenFile | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._records: dict[str, PartRecord] = {}
        """For a split set: each part's record in the parts list, by the part's path as its reader names it."""

    # -- errors -------------------------------------------------------------------------------------------------

    @staticmethod
    def fail(part: Path, message: str, member: str | None = None, hint: str | None = None) -> ArchiveError:
        where = f"{part}, member {member!r}" if member else str(part)
        return ArchiveError(
            message, where=where, hint=hint or "this part is damaged or out of place; copy it again from the source"
        )

    # -- shared -------------------------------------------------------------------------------------------------

    def _open_tar(self, path: Path) -> BinaryIO:
        try:
            return path.open("rb", buffering=0)
        except FileNotFoundError as e:
            raise self.fail(path, f"missing part: {path.name}", hint="bring every part of the set") from e
        except OSError as e:
            raise self.fail(path, f"cannot read {path.name}: {e.strerror}") from e

    def _check_mtime(self, part: Path, mtime: int | None) -> None:
        if mtime is None:
            return
        if self.mtime is None:
            self.mtime = mtime
        elif mtime != self.mtime:
            raise self.fail(part, f"{part.name} was packed at another time than part 1 (from a different pack?)")

    def _begin_file(self, path: str, size_hint: int) -> _OpenFile:
        if path in self.entries:
            raise ArchiveError(f"layout file {path!r} appears twice in the set", where=str(self.archive))
        if "/" not in path and size_hint > MAX_METADATA_FILE:
            raise ArchiveError(f"layout file outside blobs/ is too large ({size_hint} bytes): {path}")
        self.sink.begin(path)
        return _OpenFile(path=path, hasher=hashlib.sha256())

    def _end_file(self, f: _OpenFile) -> None:
        entry = LayoutEntry(f.path, f.size, f.hasher.hexdigest(), segments=tuple(f.segments))
        self.entries[f.path] = entry
        self.sink.end(entry)

    def _add_dirs(self, path: str) -> None:
        if path not in self.directories:
            self.directories.add(path)
            self.sink.directory(path)

    def _stream(
        self, reader: tarformat.TarReader, member: tarformat.TarMember, f: _OpenFile, member_hash: hashlib._Hash | None
    ) -> None:
        """Hash and hand on ``member``'s data; hashing of a large member runs on helper threads.

        The reader alternates two buffers, so while chunk N is written by the sink (and the next is read), chunk N's
        digests are computed on the helpers: a large member costs the longest of reading, writing and hashing rather
        than their sum. Every digest is complete before this returns.
        """
        sink = self.sink
        hashers = [f.hasher] if member_hash is None else [f.hasher, member_hash]

        def on_bytes(n: int) -> None:
            self.progress.advance(self.task, n)

        if member.size <= tarformat.COPY_CHUNK:  # one chunk: a thread would cost more than it saves

            def chunk(view: memoryview) -> None:
                for h in hashers:
                    h.update(view)
                sink.write(view)

            reader.read_data(member, chunk, on_bytes)
        else:
            pool = self._pool()
            pending: list[Future[None]] = []

            def pipelined(view: memoryview) -> None:
                for p in pending:
                    p.result()  # the previous chunk is hashed: its buffer may be read into next
                pending[:] = [pool.submit(h.update, view) for h in hashers]
                sink.write(view)

            try:
                reader.read_data(member, pipelined, on_bytes)
            finally:
                for p in pending:
                    p.result()
        f.segments.append((reader.name, member.offset + tarformat.BLOCK, member.size))
        f.size += member.size

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(2, thread_name_prefix="gapseal-tar-hash")
        return self._executor

    def close(self) -> None:
        """Stop the helper thread, if one was started."""
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None

    # -- single tar ---------------------------------------------------------------------------------------------

    def single(self) -> LayoutInventory:
        size = self.archive.stat().st_size
        self.task = self.progress.begin(f"reading {self.archive.name}", size)
        try:
            with self._open_tar(self.archive) as stream:
                reader = tarformat.TarReader(stream, str(self.archive))
                for member in reader.members():
                    if member.is_dir:
                        self._add_dirs(member.path)
                        continue
                    if member.path == PARTS_LIST_NAME:
                        raise reader.error(
                            "a parts list in a tar that is not the first part of a split set",
                            member.path,
                            hint=f"give the first part, named like {self.archive.stem}.part0001.tar",
                        )
                    if parse_range_name(member.path) is not None:
                        raise reader.error("a blob range in a tar that is not part of a split set", member.path)
                    f = self._begin_file(member.path, member.size)
                    self._stream(reader, member, f, None)
                    self._end_file(f)
                self._check_mtime(self.archive, reader.mtime)
        finally:
            self.progress.end(self.task)
        return LayoutInventory(
            entries=self.entries,
            source=str(self.archive),
            directories=frozenset(self.directories),
            mtime=self.mtime,
        )

    # -- split set ----------------------------------------------------------------------------------------------

    def split(self) -> LayoutInventory:
        first = self.archive
        with self._open_tar(first) as stream:
            reader = tarformat.TarReader(stream, str(first))
            members = reader.members()
            head = next(members, None)
            if head is None or head.is_dir or head.path != PARTS_LIST_NAME:
                raise self.fail(
                    first,
                    f"{first.name} does not start with {PARTS_LIST_NAME}: it is not the first part of a split set",
                    hint="parts may have been renamed or swapped; give the part that holds the parts list",
                )
            if head.size > MAX_METADATA_FILE:
                raise self.fail(first, "the parts list is implausibly large", PARTS_LIST_NAME)
            raw = bytearray()
            reader.read_data(head, raw.extend)
            plist = self._parse_parts_list(first, bytes(raw))
            paths = self._check_part_files(first, plist)
            self._records = {str(paths[r.number][0]): r for r in plist.parts}
            total = sum(paths[n][1] for n in paths)
            self.task = self.progress.begin(f"reading {len(plist.parts)} parts of {first.name}", total)
            try:
                self._read_part(reader, members, first, plist.parts[0])
                self._check_mtime(first, reader.mtime)
                for record in plist.parts[1:]:
                    part = paths[record.number][0]
                    with self._open_tar(part) as part_stream:
                        part_reader = tarformat.TarReader(part_stream, str(part))
                        self._read_part(part_reader, part_reader.members(), part, record)
                        self._check_mtime(part, part_reader.mtime)
            finally:
                self.progress.end(self.task)
        if self.current is not None:  # pragma: no cover - the parts list check makes ranges complete
            raise self.fail(first, f"blob {self.current.path} is incomplete at the end of the set")
        parts = tuple(
            ArchivePart(
                number=r.number,
                path=paths[r.number][0],
                size=paths[r.number][1],
                sha256=r.sha256,
                members=tuple(m.path for m in r.members),
            )
            for r in plist.parts
        )
        return LayoutInventory(
            entries=self.entries,
            source=str(first),
            parts=parts,
            directories=frozenset(self.directories),
            mtime=self.mtime,
        )

    def _parse_parts_list(self, first: Path, raw: bytes) -> PartsList:
        try:
            plist = PartsList.model_validate_json(raw)
        except ValidationError as e:
            raise self.fail(first, f"the parts list is not valid: {e.errors()[0]['msg']}", PARTS_LIST_NAME) from e
        if canonical_model_json(plist) != raw:
            raise self.fail(first, "the parts list is not in canonical form", PARTS_LIST_NAME)
        if plist.sha256 != plist.expected_seal():
            raise self.fail(
                first, f"{first.name} is damaged: its parts list does not match its own digest", PARTS_LIST_NAME
            )
        problem = _parts_list_problem(plist)
        if problem:
            raise self.fail(first, f"the parts list is inconsistent: {problem}", PARTS_LIST_NAME)
        return plist

    def _check_part_files(self, first: Path, plist: PartsList) -> dict[int, tuple[Path, int]]:
        """Every part is present with its listed size, before any data is read; no extra part lies beside them."""
        paths: dict[int, tuple[Path, int]] = {1: (first, first.stat().st_size)}
        for record in plist.parts[1:]:
            part = part_path(first, record.number)
            try:
                size = part.stat().st_size
            except FileNotFoundError:
                raise self.fail(
                    part, f"missing part {record.number} of {len(plist.parts)}: {part.name}", hint="bring every part"
                ) from None
            if size != record.size:
                raise self.fail(
                    part,
                    f"{part.name} has {size} bytes, the parts list says {record.size} "
                    "(truncated, swapped with another part, or from a different pack)",
                )
            paths[record.number] = (part, size)
        extra = [p for p in existing_parts(first) if (part_number(p) or 0) > len(plist.parts)]
        if extra:
            raise self.fail(
                extra[0],
                f"{extra[0].name} lies beside a set of {len(plist.parts)} parts (left from another pack?)",
                hint="remove parts that do not belong to this set",
            )
        return paths

    def _read_part(
        self,
        reader: tarformat.TarReader,
        members: Iterator[tarformat.TarMember],
        part: Path,
        record: PartRecord,
    ) -> None:
        expected = list(record.members)
        index = 0
        for member in members:
            if member.is_dir:
                self._add_dirs(member.path)
                continue
            if index >= len(expected):
                raise self.fail(part, f"{part.name} holds more members than the parts list says", member.path)
            want = expected[index]
            index += 1
            if member.path != want.path or member.size != want.size:
                raise self.fail(
                    part,
                    f"{part.name} holds {member.path!r} ({member.size} bytes) where the parts list expects "
                    f"{want.path!r} ({want.size} bytes): parts swapped, renamed or from a different pack",
                    member.path,
                )
            member_hash = None
            if want.blob is None:
                f = self._begin_file(member.path, member.size)  # a whole file: its own hash is the member's
            else:
                if want.offset == 0:
                    self.current = self._begin_file(want.blob, want.blob_size or 0)
                    self.current.blob_size = want.blob_size or 0
                ranged = self.current
                if ranged is None or ranged.path != want.blob or ranged.size != want.offset:  # pragma: no cover
                    raise self.fail(part, f"range {member.path!r} does not continue its blob", member.path)
                f = ranged
                if want.sha256 is not None:  # a version 1 list, or a file not named by its digest
                    member_hash = hashlib.sha256()
            self._stream(reader, member, f, member_hash)
            checked = member_hash if want.blob is not None else f.hasher  # None: a range its blob's name covers
            if checked is not None and checked.hexdigest() != want.sha256:
                raise self.fail(
                    part,
                    f"{part.name} is damaged: member {member.path!r} does not match its digest in the parts list",
                    member.path,
                )
            if want.blob is None:
                self._end_file(f)
            elif f.size == f.blob_size:
                self._check_reassembled(f)
                self._end_file(f)
                self.current = None
        if index != len(expected):
            raise self.fail(part, f"{part.name} lacks {expected[index].path!r}, which the parts list puts in it", None)

    def _check_reassembled(self, f: _OpenFile) -> None:
        """A blob put back together from ranges matches its name, or the part that damaged it is named.

        Its ranges have no digests of their own (parts list version 2): each byte was hashed once, into the blob's
        digest. Only when that digest is wrong are the parts holding the ranges hashed again, against the parts
        list, to say which part (and which range in it) is damaged.
        """
        m = _SHA256_BLOB.match(f.path)
        if m is None or f.hasher.hexdigest() == m.group(1):
            return
        holding = list(dict.fromkeys(source for source, _, _ in f.segments))
        for source in holding:
            record = self._records[source]
            member = next(x.path for x in record.members if x.blob == f.path)
            if record.sha256 is not None and _hash_part(Path(source)) != record.sha256:
                raise self.fail(
                    Path(source),
                    f"{Path(source).name} is damaged: it does not match its digest in the parts list, and blob "
                    f"{f.path} (range {member!r} of it lies in this part) does not match its digest either",
                    member,
                )
        first = self._records[holding[0]]
        raise self.fail(
            Path(holding[0]),
            f"blob {f.path} does not match its digest in the parts list (its name), though every part holding its "
            "ranges matches its own: the blob was damaged before it was packed",
            next(x.path for x in first.members if x.blob == f.path),
            hint="pack the set again from an undamaged copy of the bundle",
        )


def _hash_part(path: Path) -> str | None:
    """SHA-256 of a part file, read again; None when it cannot be read (it is then named as damaged)."""
    try:
        with path.open("rb", buffering=0) as f:
            return hash_stream(f).sha256
    except OSError:
        return None


def _parts_list_problem(plist: PartsList) -> str | None:
    """Return why the list cannot describe a set gapseal wrote, or None."""
    seen: set[str] = set()
    ranged = {m.blob for r in plist.parts for m in r.members if m.blob is not None}
    open_blob: PartMember | None = None
    expected_offset = 0
    next_index = 1
    for n, record in enumerate(plist.parts, start=1):
        if record.number != n:
            return f"part {record.number} listed in position {n}"
        if n > 1 and (record.size is None or record.sha256 is None):
            return f"part {n} has no size or digest"
        for m in record.members:
            if tarformat.check_path(m.path) is not None or m.path == PARTS_LIST_NAME:
                return f"member name {m.path!r} is not allowed"
            if n == 1 and "/" in m.path:
                return f"part 1 holds {m.path!r}; it holds only the layout's top-level files"
            problem = _digest_problem(plist.version, m)
            if problem:
                return problem
            if m.path in seen:
                return f"member {m.path!r} listed twice"
            seen.add(m.path)
            if m.blob is None:
                if m.offset is not None or m.blob_size is not None or parse_range_name(m.path) is not None:
                    return f"member {m.path!r} is half a range"
                if open_blob is not None:
                    return f"blob {open_blob.blob} is cut short before {m.path!r}"
                if m.path in ranged:
                    return f"{m.path!r} appears both whole and in ranges"
                continue
            if m.offset is None or m.blob_size is None:
                return f"range {m.path!r} has no offset or blob size"
            if open_blob is None:
                if m.offset != 0:
                    return f"range {m.path!r} does not start its blob"
                open_blob, expected_offset, next_index = m, 0, 1
            elif m.blob != open_blob.blob or m.blob_size != open_blob.blob_size:
                return f"blob {open_blob.blob} is cut short before {m.path!r}"
            if m.path != range_name(m.blob, next_index) or m.offset != expected_offset:
                return f"range {m.path!r} is out of sequence"
            if m.offset + m.size > m.blob_size or m.size == 0:
                return f"range {m.path!r} overruns its blob"
            expected_offset += m.size
            next_index += 1
            if expected_offset == m.blob_size:
                open_blob = None
    if open_blob is not None:
        return f"blob {open_blob.blob} is incomplete"
    return None


def _digest_problem(version: int, m: PartMember) -> str | None:
    """Whether ``m`` carries a sha256 exactly when its list version says it must."""
    needed = m.blob is None or version == 1 or _SHA256_BLOB.match(m.blob) is None
    if needed and m.sha256 is None:
        return f"member {m.path!r} has no digest"
    if not needed and m.sha256 is not None:
        return f"range {m.path!r} has a digest of its own; in version {version} its blob's name covers it"
    return None


def read_layout_archive(path: Path, *, progress: Progress = NO_PROGRESS) -> LayoutInventory:
    """Read the tar ``X.tar`` or the split set whose first part is ``X.part0001.tar``, in one pass, hashing.

    Raises ``ArchiveError`` naming the archive or part file (and member) for anything unsafe or damaged.
    """
    return walk_archive(Path(path), LayoutSink(), progress=progress)


def walk_archive(path: Path, sink: LayoutSink, *, progress: Progress = NO_PROGRESS) -> LayoutInventory:
    """Stream the layout files of a tar or split set into ``sink`` and return their inventory."""
    number = part_number(path)
    if number is not None and number != 1:
        raise ArchiveError(
            f"{path.name} is part {number} of a split set; give the first part",
            where=str(path),
            hint=f"name {part_path(path, 1).name}",
        )
    if not path.exists():
        first = part_path(path, 1)
        hint = f"this is a split set: give its first part, {first.name}" if number is None and first.exists() else None
        raise ArchiveError(f"bundle {path} does not exist", where=str(path), hint=hint or "check the path")
    refuse_non_bundle(path)  # a zip, gzip, empty file or random bytes is named as such, not parsed as a tar
    walk = _ArchiveWalk(path, sink, progress)
    try:
        return walk.split() if number == 1 else walk.single()
    finally:
        walk.close()
