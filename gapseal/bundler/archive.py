"""``bundle pack``: a layout directory into one deterministic tar, or a split set of tars cut on blob boundaries.

The transport form of a bundle (DESIGN.md) is the layout directory as one uncompressed tar written by
``gapseal.bundler.tarformat``: members sorted, mode 0644/0755, uid/gid 0, one fixed mtime. Same layout, same mtime:
same bytes, whatever the files' own times, owners or modes on disk.

Split sets
----------
With ``part_size`` the tar is cut into parts ``FILE.part0001.tar``, ``FILE.part0002.tar``, ... (``FILE`` is the output
name without ``.tar``), each a complete gapseal tar of at most ``part_size`` bytes holding layout files under their
layout paths:

- part 1 holds ``gapseal-parts.json`` (the parts list, always its first member) and the layout's top-level files
  (``index.json``, ``oci-layout``): it is small, and it is the part a reader starts from;
- parts 2..N hold the files under ``blobs/`` in sorted order, a part is closed when the next blob does not fit, so
  blobs are never cut unless they must be;
- a blob larger than a part is cut into ranges: members ``blobs/sha256/<hex>.range0001``, ``.range0002``, ... that
  follow each other across consecutive parts (the first range fills the rest of the current part), each listed with
  its offset in the blob; readers concatenate them back into ``blobs/sha256/<hex>``.

The parts list (version 2) names every part with its size and sha256 (parts 2..N; part 1 cannot contain its own
digest) and every member of every part with its size; a whole file's member also with its sha256 (a blob's is its
name, ``blobs/sha256/<hex>``, so it is not hashed while packing), a range with the blob it belongs to, its offset and
the blob's size. A range carries no sha256 of its own when its blob is named by its digest: its bytes are covered by
the digest of the part holding it and, once the ranges are put back together, by the blob's name, so every byte is
hashed once while packing (the part's digest, computed from what was written) and once while reading (the blob's).
A reader that finds a reassembled blob not matching its name hashes the parts holding its ranges again to say which
part is damaged, and which range in it; when every such part matches the list, the blob was damaged before it was
packed. Only a range of a file not named by a digest (never in a valid layout) has a sha256 of its own. Version 1
lists (every range with its own sha256: each of those bytes hashed twice on both sides) are still read, their range
digests checked as before; a reader that knows only version 1 refuses a version 2 list by its version field.
Parts are written side by side, two per core: a part's digest is one sequential hash, and a part's bytes are
copied in the kernel and hashed from the page cache right after (``tarformat.TarWriter``).
Beside the parts, ``FILE.parts.json`` holds the same list with part 1's size and digest too, and ``FILE.SHA256SUMS``
the digests of every part in ``sha256sum -c`` form, so a set can be checked on any machine before it is carried
further.

Trust: the parts list is not signed and gives no security on its own. A bundle's integrity comes from the signed
manifest digests and blob digests that ``verify`` checks after reassembly; an attacker who rewrites a part can rewrite
the list too, and verify still fails. The list exists to make failures precise: a missing, swapped, truncated or
damaged part is named (which file, which member) instead of surfacing later as one bad multi-gigabyte blob.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import re
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gapseal.atomic import remove_stale_temps, temp_prefix
from gapseal.bundler import tarformat
from gapseal.canonical import canonical_model_json
from gapseal.errors import BundleError, InputError, UsageError, output_exists, output_not_writable
from gapseal.hashing import default_workers
from gapseal.progress import NO_PROGRESS, Progress

PARTS_LIST_NAME = "gapseal-parts.json"
"""The parts list: the first member of part 1 of a split set; never part of the layout."""
PARTS_KIND = "gapseal-parts"
PARTS_VERSION = 2
"""The parts-list version written; version 1 (a sha256 on every range) is still read."""
MAX_PARTS = 9999
MIN_PART_SIZE = 2 * tarformat.RECORD
MAX_TOP_LEVEL_FILE = 64 * 1024 * 1024
"""Part 1 of a split set is built in memory; its files (index.json, oci-layout) are kilobytes."""

_PART_RE = re.compile(r"^(?P<base>.+)\.part(?P<num>[0-9]{4})\.tar$")
_RANGE_RE = re.compile(r"^(?P<blob>.+)\.range(?P<num>[0-9]{4})$")
_BLOB_NAME = re.compile(r"^blobs/sha256/([0-9a-f]{64})$")
_TEMP_RE = re.compile(r"^\.(.+)\.packing-[0-9]+-")

_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": 1024**3,
    "TIB": 1024**4,
}


# ---------------------------------------------------------------------------------------------------------------
# The parts list
# ---------------------------------------------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PartMember(_Frozen):
    """One file member of one part."""

    path: str = Field(description="Member path in the part's tar: a layout path, or a range of a blob.")
    size: int = Field(ge=0, description="Data bytes of the member.")
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description=(
            "SHA-256 of the member's data, lower-case hex. Absent (version 2) for a range of a blob named by its "
            "digest: the part's digest and the blob's name cover it."
        ),
    )
    blob: str | None = Field(default=None, description="For a range: the layout path of the blob it is part of.")
    offset: int | None = Field(default=None, ge=0, description="For a range: where its bytes start in the blob.")
    blob_size: int | None = Field(default=None, ge=0, description="For a range: the whole blob's size.")


class PartRecord(_Frozen):
    """One part file of a split set."""

    number: int = Field(ge=1, le=MAX_PARTS, description="1-based part number, as in the file name.")
    name: str = Field(description="File name the part was written as.")
    size: int | None = Field(default=None, ge=0, description="Bytes of the part file (absent for part 1 in-tar).")
    sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the part file (absent for part 1 in-tar)."
    )
    members: tuple[PartMember, ...] = Field(description="File members in archive order (the list itself excluded).")


class PartsList(_Frozen):
    """Every part of a split set with its members: names a missing, swapped or damaged part precisely."""

    kind: Literal["gapseal-parts"] = Field(description="Always 'gapseal-parts'.")
    version: Literal[1, 2] = Field(
        description="Format version of this list: 2 is written; 1 (a sha256 on every range too) is still read."
    )
    part_size: int = Field(ge=MIN_PART_SIZE, description="The --part-size the set was cut with.")
    parts: tuple[PartRecord, ...] = Field(min_length=1, description="Every part, part 1 first.")
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of this list's canonical JSON without this field: a damaged list is noticed as such.",
    )

    def sealed(self) -> PartsList:
        """Return this list with ``sha256`` set over the rest of it."""
        return self.model_copy(update={"sha256": self.expected_seal()})

    def expected_seal(self) -> str:
        """Return the ``sha256`` this list should carry."""
        return hashlib.sha256(canonical_model_json(self.model_copy(update={"sha256": None}))).hexdigest()


def part_path(first_or_base: Path, number: int) -> Path:
    """Path of part ``number`` of the set whose output name (``X.tar``) or any part path is given."""
    return first_or_base.with_name(f"{split_base(first_or_base)}.part{number:04d}.tar")


def split_base(path: Path) -> str:
    """``X`` for ``X.tar``, ``X.partNNNN.tar`` or ``X``."""
    m = _PART_RE.match(path.name)
    if m:
        return m.group("base")
    return path.name[:-4] if path.name.endswith(".tar") else path.name


def part_number(path: Path) -> int | None:
    """Return the part number in a ``X.partNNNN.tar`` name, or None for any other name."""
    m = _PART_RE.match(path.name)
    return int(m.group("num")) if m else None


def range_name(blob: str, index: int) -> str:
    """Member name of range ``index`` (1-based) of ``blob``."""
    return f"{blob}.range{index:04d}"


def parse_range_name(path: str) -> tuple[str, int] | None:
    """``(blob, index)`` for a range member name, else None."""
    m = _RANGE_RE.match(path)
    return (m.group("blob"), int(m.group("num"))) if m else None


def parse_size(text: str) -> int:
    """Parse ``4GiB``, ``500MB``, ``1048576``: binary (KiB..TiB) and decimal (KB..TB) units, or plain bytes."""
    m = re.fullmatch(r"\s*([0-9]+)\s*([A-Za-z]*)\s*", text)
    unit = m.group(2).upper() if m else None
    if m is None or unit not in _SIZE_UNITS:
        raise UsageError(
            f"cannot read size {text!r}",
            hint="give bytes, or a number with KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB",
        )
    return int(m.group(1)) * _SIZE_UNITS[unit]


# ---------------------------------------------------------------------------------------------------------------
# Reading the layout to pack
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    path: str
    src: Path
    size: int


def _collect(layout_dir: Path) -> list[_Source]:
    """Every regular file under ``layout_dir``, sorted by member name; links and special files refused."""
    if not layout_dir.is_dir():
        raise InputError(f"not a layout directory: {layout_dir}", where=str(layout_dir))
    found: list[_Source] = []

    def walk(directory: Path, rel: str) -> None:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            path = f"{rel}{entry.name}"
            reason = tarformat.check_path(path)
            if reason is not None:
                raise InputError(f"layout path cannot be packed: {reason}", where=str(Path(entry.path)))
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                walk(Path(entry.path), path + "/")
            elif stat.S_ISREG(st.st_mode):
                found.append(_Source(path, Path(entry.path), st.st_size))
            else:
                kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "a special file"
                raise InputError(
                    f"layout holds {kind}; a bundle holds only regular files and directories",
                    where=str(Path(entry.path)),
                )

    walk(layout_dir, "")
    if PARTS_LIST_NAME in (s.path for s in found):
        raise InputError(f"layout holds {PARTS_LIST_NAME}, a name reserved for split sets", where=str(layout_dir))
    if any(parse_range_name(s.path) for s in found):
        raise InputError("layout holds a '.rangeNNNN' file, a name reserved for split sets", where=str(layout_dir))
    found.sort(key=lambda s: s.path.encode())
    return found


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


# ---------------------------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Piece:
    """One file member of a part: a whole file, or ``length`` bytes of it from ``offset`` (a range)."""

    path: str
    source: _Source
    offset: int
    length: int
    is_range: bool


@dataclass
class _PartPlan:
    number: int
    pieces: list[_Piece] = field(default_factory=list)
    dirs: set[str] = field(default_factory=set)
    used: int = 0

    def dir_cost(self, path: str) -> int:
        return tarformat.BLOCK * sum(1 for d in _parents(path) if d not in self.dirs)

    def add(self, piece: _Piece) -> None:
        self.used += self.dir_cost(piece.path) + tarformat.member_span(piece.length)
        self.dirs.update(_parents(piece.path))
        self.pieces.append(piece)

    def size(self) -> int:
        return tarformat.archive_size(self.used)


def _plan_split(files: list[_Source], capacity: int, reserved_first: int) -> list[_PartPlan]:
    """Assign files to parts: top-level files to part 1, blobs in order to parts 2.., ranges for oversize blobs."""
    first = _PartPlan(1, used=reserved_first)
    plans = [first]
    for f in files:
        if "/" not in f.path:
            if f.size > MAX_TOP_LEVEL_FILE:
                raise InputError(
                    f"top-level layout file {f.path} is too large ({f.size} bytes) for the first part of a split set",
                    where=str(f.src),
                    hint="a bundle layout's top level holds only oci-layout and index.json",
                )
            first.add(_Piece(f.path, f, 0, f.size, is_range=False))
    if first.used > capacity:
        raise UsageError(
            "part size too small for the layout's top-level files",
            hint="give a larger --part-size (at least a few MiB)",
        )
    current = _PartPlan(2)
    for f in files:
        if "/" not in f.path:
            continue
        need = current.dir_cost(f.path) + tarformat.member_span(f.size)
        if current.used + need <= capacity:
            current.add(_Piece(f.path, f, 0, f.size, is_range=False))
            continue
        empty_cost = len(_parents(f.path)) * tarformat.BLOCK + tarformat.member_span(f.size)
        if empty_cost <= capacity:
            plans.append(current)
            current = _PartPlan(current.number + 1)
            current.add(_Piece(f.path, f, 0, f.size, is_range=False))
            continue
        # Larger than a whole part: ranges, the first filling what is left of this part.
        offset, index = 0, 1
        while offset < f.size:
            room = capacity - current.used - current.dir_cost(f.path) - tarformat.BLOCK
            room -= room % tarformat.BLOCK
            if room < tarformat.BLOCK:
                plans.append(current)
                current = _PartPlan(current.number + 1)
                continue
            length = min(room, f.size - offset)
            current.add(_Piece(range_name(f.path, index), f, offset, length, is_range=True))
            offset += length
            index += 1
            if index > MAX_PARTS:
                raise UsageError("part size too small: a blob would need more than 9999 ranges")
    if current.pieces:
        plans.append(current)
    if len(plans) > MAX_PARTS:
        raise UsageError(f"part size too small: {len(plans)} parts (at most {MAX_PARTS})")
    return plans


def _named_by_digest(path: str) -> bool:
    """A blob whose name is its sha256: its content is checked against its name, so it is not hashed to pack it."""
    return _BLOB_NAME.match(path) is not None


def _member_record(piece: _Piece, sha256: str) -> PartMember:
    if piece.is_range:
        return PartMember(
            path=piece.path,
            size=piece.length,
            sha256=None if _named_by_digest(piece.source.path) else sha256,
            blob=piece.source.path,
            offset=piece.offset,
            blob_size=piece.source.size,
        )
    return PartMember(path=piece.path, size=piece.length, sha256=sha256)


def _parts_list(plans: list[_PartPlan], base: str, part_size: int, digests: dict[tuple[int, str], str]) -> PartsList:
    placeholder = "0" * 64
    records = []
    for plan in plans:
        members = tuple(_member_record(p, digests.get((plan.number, p.path), placeholder)) for p in plan.pieces)
        sized = plan.number != 1
        records.append(
            PartRecord(
                number=plan.number,
                name=f"{base}.part{plan.number:04d}.tar",
                size=plan.size() if sized else None,
                sha256=digests.get((plan.number, ""), placeholder) if sized else None,
                members=members,
            )
        )
    return PartsList(kind=PARTS_KIND, version=PARTS_VERSION, part_size=part_size, parts=tuple(records)).sealed()


# ---------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackedPart:
    """One file written by ``pack_layout``."""

    path: Path
    size: int
    sha256: str | None
    """SHA-256 of the file (None for an unsplit tar, which is not hashed while it is copied)."""


@dataclass(frozen=True)
class PackResult:
    """What ``pack_layout`` wrote."""

    out: Path
    """The tar, or the first part of a split set."""
    parts: tuple[PackedPart, ...]
    """Every tar written: one for an unsplit pack, every part of a split set in order."""
    sidecars: tuple[Path, ...]
    """``FILE.parts.json`` and ``FILE.SHA256SUMS`` of a split set; empty otherwise."""
    total_bytes: int
    """Bytes of all tars together."""

    def as_dict(self) -> dict[str, object]:
        """Return the ``--json`` document: the output, every part with size and digest, the sidecars."""
        return {
            "out": str(self.out),
            "parts": [
                {"name": p.path.name, "path": str(p.path), "size": p.size, "sha256": p.sha256} for p in self.parts
            ],
            "sidecars": [str(s) for s in self.sidecars],
            "total_bytes": self.total_bytes,
        }


class _TempFiles:
    """Temp files beside the outputs, renamed into place together at the end or removed on failure."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._pending: list[tuple[Path, Path]] = []

    def create(self, final: Path) -> tuple[int, Path]:
        fd, name = tempfile.mkstemp(prefix=temp_prefix(final, "packing"), suffix=".tmp", dir=self.directory)
        os.fchmod(fd, 0o644)
        self._pending.append((Path(name), final))
        return fd, Path(name)

    def commit(self, last: Path | None = None) -> None:
        """Rename every temp file into place; ``last`` (a split set's entry point, part 1) goes last.

        An interruption between renames then leaves either the old part 1 (whose parts list no longer matches the
        new parts: refused, naming the part) or no part 1 at all: never a new-looking set with old parts.
        """
        order = sorted(self._pending, key=lambda pair: pair[1] == last)
        for tmp, final in order:
            os.replace(tmp, final)
        self._pending.clear()
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def discard(self) -> None:
        for tmp, _final in self._pending:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._pending.clear()


def _finish(fd: int) -> None:
    os.fsync(fd)
    os.close(fd)


@contextlib.contextmanager
def _open_sources() -> Iterator[Callable[[_Source], int]]:
    fds: dict[Path, int] = {}
    lock = threading.Lock()  # parts are written on several threads

    def get(src: _Source) -> int:
        with lock:
            return _get(src)

    def _get(src: _Source) -> int:
        if src.src not in fds:
            try:
                fd = os.open(src.src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as e:
                raise InputError(f"cannot read layout file: {e.strerror}", where=str(src.src)) from e
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != src.size:
                os.close(fd)
                raise InputError("layout file changed while packing", where=str(src.src))
            fds[src.src] = fd
        return fds[src.src]

    try:
        yield get
    finally:
        for fd in fds.values():
            os.close(fd)


def _check_outputs(out: Path, targets: list[Path], overwrite: bool) -> None:
    if not out.name.endswith(".tar"):
        raise UsageError(f"output name must end with .tar: {out.name}")
    if part_number(out) is not None:
        raise UsageError(
            f"output name {out.name} looks like a part of a split set", hint="name the whole, e.g. NAME.tar"
        )
    directory = out.parent
    if not directory.is_dir():
        raise output_not_writable(out, f"directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise output_not_writable(out, f"directory {directory} is not writable")
    existing = [t for t in targets if t.exists() or t.is_symlink()]
    if existing and not overwrite:
        raise output_exists(existing[0])
    for t in existing:
        if t.is_dir() or t.is_symlink():
            raise UsageError(f"output exists and is not a regular file: {t}", hint="remove it or choose another --out")


def pack_layout(
    layout_dir: Path,
    out: Path,
    *,
    mtime: int,
    part_size: int | None = None,
    overwrite: bool = False,
    progress: Progress = NO_PROGRESS,
) -> PackResult:
    """Pack ``layout_dir`` into the deterministic tar ``out`` (``X.tar``), or into split parts of ``part_size`` bytes.

    Outputs are written to temp files beside ``out``, fsynced and renamed into place only when complete; an existing
    output is refused unless ``overwrite``. Raises ``UsageError`` for a bad output or part size, ``InputError`` for a
    layout that cannot be packed (links, special files, unsafe names).
    """
    if not 0 <= mtime <= tarformat.MAX_MTIME:
        raise UsageError(f"mtime {mtime} is out of range for a tar header")
    out = Path(out)
    layout_dir = Path(layout_dir)
    if out.parent.resolve().is_relative_to(layout_dir.resolve()):
        raise UsageError(
            f"the output {out} would land inside the layout it packs", hint="write the tar outside the bundle directory"
        )
    try:
        return _pack(layout_dir, out, mtime, part_size, overwrite, progress)
    except OSError as e:
        raise BundleError(
            f"cannot write the output {out}: {e.strerror or e}; nothing was packed",
            where=str(out),
            hint="free space on the output's file system (or choose another --out) and pack again",
        ) from e


def _pack(
    layout_dir: Path, out: Path, mtime: int, part_size: int | None, overwrite: bool, progress: Progress
) -> PackResult:
    _remove_leftovers(out, progress)
    if part_size is None:
        _check_outputs(out, [out], overwrite)
        files = _collect(layout_dir)
        return _pack_single(files, out, mtime, progress)
    if part_size < MIN_PART_SIZE:
        raise UsageError(f"part size {part_size} is too small (at least {MIN_PART_SIZE} bytes)")
    base = split_base(out)
    first = part_path(out, 1)
    sidecars = [out.with_name(f"{base}.parts.json"), out.with_name(f"{base}.SHA256SUMS")]
    _check_outputs(out, [first, *sidecars, *existing_parts(out)], overwrite)
    files = _collect(layout_dir)
    return _pack_split(files, out, base, part_size, mtime, sidecars, overwrite, progress)


def _remove_leftovers(out: Path, progress: Progress) -> None:
    """Temp files a killed pack of the same output left behind (``kill -9`` leaves no chance to clean up)."""
    base = split_base(out)
    ours = {out.name, f"{base}.parts.json", f"{base}.SHA256SUMS"}
    try:
        names = os.listdir(out.parent)
    except OSError:
        return
    finals = {m.group(1) for m in (_TEMP_RE.match(n) for n in names) if m}
    for final in sorted(finals):
        if final in ours or (part_number(Path(final)) is not None and split_base(Path(final)) == base):
            for path in remove_stale_temps(out.parent / final, "packing"):
                progress.note(f"removed {path}, left by an interrupted pack")


def _pack_single(files: list[_Source], out: Path, mtime: int, progress: Progress) -> PackResult:
    total = sum(f.size for f in files)
    temps = _TempFiles(out.parent)
    task = progress.begin(f"packing {out.name}", total)
    try:
        fd, _tmp = temps.create(out)
        try:
            writer = tarformat.TarWriter(fd, mtime=mtime, early_writeback=True)
            written_dirs: set[str] = set()
            with _open_sources() as source_fd:
                for f in files:
                    for d in _parents(f.path):
                        if d not in written_dirs:
                            writer.add_dir(d)
                            written_dirs.add(d)
                    writer.add_file(
                        f.path,
                        source_fd(f),
                        offset=0,
                        length=f.size,
                        on_bytes=lambda n: progress.advance(task, n),
                    )
            writer.close()
            size = writer.position
        finally:
            _finish(fd)
        temps.commit()
    except EOFError as e:
        temps.discard()
        raise InputError(f"layout file shrank while packing: {e}", where=str(out)) from e
    except BaseException:
        temps.discard()
        raise
    finally:
        progress.end(task)
    return PackResult(out=out, parts=(PackedPart(out, size, None),), sidecars=(), total_bytes=size)


def _plan_with_list(files: list[_Source], base: str, part_size: int) -> tuple[list[_PartPlan], int]:
    capacity = part_size - part_size % tarformat.RECORD - 2 * tarformat.BLOCK
    reserved = 0
    for _ in range(64):
        plans = _plan_split(files, capacity, reserved)
        list_len = len(canonical_model_json(_parts_list(plans, base, part_size, {})))
        span = tarformat.member_span(list_len)
        if span <= reserved:
            return plans, list_len
        reserved = span
    raise BundleError("could not plan the split set: the parts list does not settle")  # pragma: no cover


def _pack_split(
    files: list[_Source],
    out: Path,
    base: str,
    part_size: int,
    mtime: int,
    sidecars: list[Path],
    overwrite: bool,
    progress: Progress,
) -> PackResult:
    plans, _ = _plan_with_list(files, base, part_size)
    total = sum(f.size for f in files)
    digests: dict[tuple[int, str], str] = {}
    sizes: dict[int, int] = {}
    temps = _TempFiles(out.parent)
    task = progress.begin(f"packing {base} into {len(plans)} parts", total)
    try:
        with _open_sources() as source_fd:

            def write_part(plan: _PartPlan) -> None:
                fd, _tmp = temps.create(part_path(out, plan.number))
                try:
                    part_hash = hashlib.sha256()
                    writer = tarformat.TarWriter(fd, mtime=mtime, sink=part_hash.update, early_writeback=True)
                    _write_pieces(writer, plan, source_fd, digests, lambda n: progress.advance(task, n))
                    writer.close()
                    if writer.position != plan.size():  # pragma: no cover - a planning bug, never user input
                        raise BundleError(f"part {plan.number} came out at {writer.position}, planned {plan.size()}")
                finally:
                    _finish(fd)
                digests[(plan.number, "")] = part_hash.hexdigest()
                sizes[plan.number] = writer.position

            # A part's digest is one sequential SHA-256 (one core at most), and a part's copy and hash take turns on
            # its thread, so parts are written side by side, two per core: every core stays busy even while one part
            # finishes alone (three equal parts on two cores would otherwise leave one core idle for a third).
            workers = min(2 * default_workers(), len(plans) - 1) or 1
            if workers == 1:
                for plan in plans[1:]:
                    write_part(plan)
            else:
                with ThreadPoolExecutor(workers, thread_name_prefix="gapseal-part") as pool:
                    for future in [pool.submit(write_part, plan) for plan in plans[1:]]:
                        future.result()
            # Part 1: the parts list and the top-level files, built in memory (they are small).
            first = plans[0]
            for piece in first.pieces:
                data = os.pread(source_fd(piece.source), piece.length, 0)
                if len(data) != piece.length:
                    raise InputError("layout file shrank while packing", where=str(piece.source.src))
                digests[(1, piece.path)] = hashlib.sha256(data).hexdigest()
                progress.advance(task, piece.length)
            in_tar = canonical_model_json(_parts_list(plans, base, part_size, digests))
            fd, _tmp = temps.create(part_path(out, 1))
            try:
                part_hash = hashlib.sha256()
                writer = tarformat.TarWriter(fd, mtime=mtime, sink=part_hash.update, early_writeback=True)
                writer.add_bytes(PARTS_LIST_NAME, in_tar)
                for piece in first.pieces:
                    writer.add_bytes(piece.path, os.pread(source_fd(piece.source), piece.length, 0))
                writer.close()
            finally:
                _finish(fd)
            digests[(1, "")] = part_hash.hexdigest()
            sizes[1] = writer.position
        full = _parts_list(plans, base, part_size, digests)
        full = full.model_copy(
            update={
                "parts": tuple(
                    r.model_copy(update={"size": sizes[r.number], "sha256": digests[(r.number, "")]})
                    for r in full.parts
                )
            }
        )
        _write_small(temps, sidecars[0], canonical_model_json(full.sealed()) + b"\n")
        sums = "".join(f"{r.sha256}  {r.name}\n" for r in full.parts)
        _write_small(temps, sidecars[1], sums.encode())
        stale = [p for p in existing_parts(out) if (part_number(p) or 0) > len(plans)]
        temps.commit(last=part_path(out, 1))
        for path in stale:
            path.unlink()
    except BaseException:
        temps.discard()
        raise
    finally:
        progress.end(task)
    packed = tuple(PackedPart(part_path(out, n), sizes[n], digests[(n, "")]) for n in range(1, len(plans) + 1))
    return PackResult(
        out=part_path(out, 1), parts=packed, sidecars=tuple(sidecars), total_bytes=sum(p.size for p in packed)
    )


def _write_pieces(
    writer: tarformat.TarWriter,
    plan: _PartPlan,
    source_fd: Callable[[_Source], int],
    digests: dict[tuple[int, str], str],
    on_bytes: Callable[[int], None],
) -> None:
    written_dirs: set[str] = set()
    for piece in plan.pieces:
        for d in _parents(piece.path):
            if d not in written_dirs:
                writer.add_dir(d)
                written_dirs.add(d)
        # A blob is named by its digest: the parts list records the name for a whole blob and nothing for a range of
        # it, and a blob that does not match its name (damaged in the layout) is reported by the reader, naming it.
        # Only a file not named by a digest (never in a valid layout) is hashed here, besides the part itself.
        named = _BLOB_NAME.match(piece.source.path)
        h = hashlib.sha256()
        try:
            writer.add_file(
                piece.path,
                source_fd(piece.source),
                offset=piece.offset,
                length=piece.length,
                data_sink=None if named else h.update,
                on_bytes=on_bytes,
            )
        except EOFError as e:
            raise InputError(f"layout file shrank while packing: {e}", where=str(piece.source.src)) from e
        if named is None:
            digests[(plan.number, piece.path)] = h.hexdigest()
        elif not piece.is_range:
            digests[(plan.number, piece.path)] = named.group(1)


def _write_small(temps: _TempFiles, final: Path, data: bytes) -> None:
    fd, _tmp = temps.create(final)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        _finish(fd)


def existing_parts(first_or_base: Path) -> list[Path]:
    """Every ``X.partNNNN.tar`` beside ``first_or_base`` that belongs to the same set name, sorted by number."""
    base = split_base(first_or_base)
    found = [
        p
        for p in first_or_base.parent.glob(f"{glob.escape(base)}.part[0-9][0-9][0-9][0-9].tar")
        if split_base(p) == base
    ]
    return sorted(found, key=lambda p: part_number(p) or 0)
