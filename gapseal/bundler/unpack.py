"""``bundle unpack``: a bundle tar or split set back into a layout directory, safely.

Extraction goes through the same strict reader as ``verify`` (``gapseal.bundler.tarformat`` via
``inventory.walk_archive``): no absolute paths, no ``..``, no links, no devices, no duplicates, nothing the gapseal
writer would not have written. Files are created inside a fresh temporary directory beside ``out_dir`` with
``O_EXCL | O_NOFOLLOW`` relative to that directory's descriptor, so nothing is written outside it and no link is
ever created or followed; ranges of a split set are concatenated back into their blob; every file is hashed while it
is written (the bulk of a large file with ``O_DIRECT``, from the buffer it was read and hashed in: no copy into the
page cache), and the whole file system is flushed once (``syncfs``, as ``tar xf`` and ``sync``) before the rename.
Only a complete, consistent extraction is renamed to ``out_dir``: an interrupted unpack leaves nothing there.

A blob whose content does not hash to its name is refused here already (fail closed). Given trusted keys, unpack
also verifies in the same pass: the inventory it builds while writing (every byte hashed as it is written) is checked
by ``verify`` (signature, file set, expiry, rollback) before the directory is renamed into place, so a bundle that
does not verify never appears at ``out`` and nothing is read twice. Unpacking only moves the bundle to another form:
like ``verify`` it checks the rollback mark but does not move it (extract, apply, install and registry load do).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gapseal.atomic import (
    WRITEBACK_STEP,
    publish,
    remove_stale_temps,
    sync_filesystem,
    temp_prefix,
    write_all,
)
from gapseal.bundler import tarformat
from gapseal.bundler.inventory import LayoutEntry, LayoutInventory, LayoutSink, walk_archive
from gapseal.bundler.rollback import RollbackState
from gapseal.bundler.verify import VerifiedBundle, verify_read_bundle
from gapseal.errors import ArchiveError, BundleError, InputPathError, UsageError, output_exists, output_not_writable
from gapseal.names import UnsafeNameError, join_under
from gapseal.progress import NO_PROGRESS, Progress
from gapseal.signing.keys import VerifyingKey

_SHA256_BLOB = re.compile(r"^blobs/sha256/([0-9a-f]{64})$")


class OutputFile:
    """One layout file being written: large whole-block chunks straight to the disk, the rest through the page cache.

    A chunk of at least ``tarformat.ALIGNED_BUFFER`` bytes and a whole number of blocks (every chunk of a large
    member but its last) comes in the reader's page-aligned buffer and is written with ``O_DIRECT``: the device reads
    it from that buffer, so the bytes are not copied into the page cache first. That copy, into newly allocated cache
    pages, was most of unpack's CPU time here (profiled: 3x to 5x the cost of the same copy by ``tar xf`` on a
    loaded machine), and it is what ``tar xf`` and a buffered write pay. Everything else (small files, a member's
    last chunk, a file system without ``O_DIRECT``) goes through the page cache, its writeback started every
    ``WRITEBACK_STEP`` bytes. ``sync_filesystem`` before the rename makes both durable.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.position = 0
        self._flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        self._direct = False
        self._direct_refused = False
        self._flushed = 0

    def _set_direct(self, on: bool) -> bool:
        if on != self._direct:
            try:
                fcntl.fcntl(self.fd, fcntl.F_SETFL, self._flags | os.O_DIRECT if on else self._flags)
            except OSError:  # a file system without O_DIRECT (tmpfs)
                self._direct_refused = True
                return False
            self._direct = on
        return True

    def write(self, chunk: memoryview) -> None:
        """Write all of ``chunk``: straight to the disk when it is large and whole blocks, else through the cache."""
        if (
            not self._direct_refused
            and len(chunk) >= tarformat.ALIGNED_BUFFER
            and len(chunk) % tarformat.BLOCK == 0
            and self._set_direct(True)
        ):
            chunk = self._write_direct(chunk)
        if chunk:
            self._set_direct(False)
            write_all(self.fd, chunk)
            self.position += len(chunk)
            if self.position - self._flushed >= WRITEBACK_STEP:
                os.posix_fadvise(self.fd, self._flushed, self.position - self._flushed, os.POSIX_FADV_DONTNEED)
                self._flushed = self.position

    def _write_direct(self, chunk: memoryview) -> memoryview:
        """Write ``chunk`` with ``O_DIRECT``; return what is left when the kernel refuses it (an unaligned buffer)."""
        while chunk:
            try:
                n = os.write(self.fd, chunk)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                self._direct_refused = True  # nothing was written; the rest of this file goes through the cache
                return chunk
            chunk = chunk[n:]
            self.position += n
        self._flushed = self.position  # nothing of it is in the page cache
        return chunk


class _DirectorySink(LayoutSink):
    """Writes the layout files under one directory (``root``, opened as ``root_fd``)."""

    def __init__(self, root: Path, root_fd: int, where: str) -> None:
        self._root = root
        self._root_fd = root_fd
        self._where = where
        self._fd: int | None = None
        self._writer: OutputFile | None = None
        self.dirs: list[str] = []

    def directory(self, path: str) -> None:
        os.mkdir(path, 0o755, dir_fd=self._root_fd)
        self.dirs.append(path)

    def begin(self, path: str) -> None:
        try:
            join_under(self._root, path, what="layout file")  # the final path, checked before a byte is written
        except UnsafeNameError as e:  # pragma: no cover - the strict tar reader refuses such names first
            raise ArchiveError(str(e), where=f"{self._where}, member {path!r}") from e
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self._fd = os.open(path, flags, 0o644, dir_fd=self._root_fd)
        self._writer = OutputFile(self._fd)

    def write(self, chunk: memoryview) -> None:
        if self._writer is None:  # pragma: no cover - the walk always begins a file first
            raise RuntimeError("write before begin")
        self._writer.write(chunk)

    def end(self, entry: LayoutEntry) -> None:
        if self._fd is None or self._writer is None:  # pragma: no cover
            raise RuntimeError("end before begin")
        fd, self._fd, self._writer = self._fd, None, None
        os.close(fd)  # made durable all at once by sync_filesystem before the rename
        m = _SHA256_BLOB.match(entry.path)
        if m and m.group(1) != entry.sha256:
            raise ArchiveError(
                f"blob {entry.path} is corrupt: its content hashes to sha256:{entry.sha256}",
                where=f"{self._where}, member {entry.path!r}",
                hint="the archive is damaged; copy it again from the source",
            )

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._writer = None


@dataclass(frozen=True)
class UnpackResult:
    """What ``unpack_archive`` wrote, and the verification when trusted keys were given."""

    path: Path
    files: int
    bytes: int
    verified: VerifiedBundle | None


def unpack_archive(archive: Path, out_dir: Path, *, overwrite: bool = False, progress: Progress = NO_PROGRESS) -> Path:
    """Extract the bundle tar (or split set, from its first part) ``archive`` into ``out_dir``, unverified.

    The transport is checked (strict reader, every blob against its name); the signature is not: run ``verify`` on
    ``out_dir`` next, or use ``unpack_and_verify``. Returns ``out_dir``; errors as for ``unpack_and_verify``.
    """
    return unpack_and_verify(archive, out_dir, overwrite=overwrite, progress=progress).path


def unpack_and_verify(
    archive: Path,
    out_dir: Path,
    *,
    overwrite: bool = False,
    trusted_keys: Sequence[VerifyingKey] = (),
    rollback: RollbackState | None = None,
    allow_downgrade: bool = False,
    record: bool = False,
    now: datetime | None = None,
    progress: Progress = NO_PROGRESS,
) -> UnpackResult:
    """Extract the bundle tar (or split set, from its first part) ``archive`` into the new directory ``out_dir``.

    With ``trusted_keys``, the bundle is verified in the same pass (``rollback`` checked; the mark moved only with
    ``record``, for a caller that uses the bundle) and appears at ``out_dir`` only if it verifies. Refuses an
    existing ``out_dir`` unless ``overwrite`` (then it is replaced only once extraction succeeded). Raises
    ``ArchiveError`` for an unsafe or damaged archive, ``VerificationError`` for one that does not verify,
    ``UsageError`` for a bad output, ``BundleError`` naming the output when writing fails (a full disk).
    """
    archive = Path(archive)
    out_dir = Path(out_dir)
    parent = out_dir.parent
    if (out_dir.exists() or out_dir.is_symlink()) and not overwrite:
        raise output_exists(out_dir)
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise UsageError(f"output is not a directory: {out_dir}", hint="remove it or choose another --out")
    if not parent.is_dir():
        raise output_not_writable(out_dir, f"directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise output_not_writable(out_dir, f"directory {parent} is not writable")
    if archive.is_dir():
        raise InputPathError(
            f"{archive} is a directory, already unpacked", where=str(archive), hint="verify or use it as it is"
        )

    def check(inventory: LayoutInventory) -> VerifiedBundle | None:
        if not trusted_keys:
            return None
        return verify_read_bundle(
            archive,
            inventory,
            trusted_keys,
            layout_dir=out_dir,
            rollback=rollback,
            allow_downgrade=allow_downgrade,
            record=record,
            now=now,
        )

    try:
        return _unpack(archive, out_dir, parent, check, progress)
    except OSError as e:
        raise BundleError(
            f"cannot write the output {out_dir}: {e.strerror or e}; nothing was unpacked",
            where=str(out_dir),
            hint="free space on the output's file system (or choose another --out) and unpack again",
        ) from e


def _unpack(
    archive: Path,
    out_dir: Path,
    parent: Path,
    check: Callable[[LayoutInventory], VerifiedBundle | None],
    progress: Progress,
) -> UnpackResult:
    for path in remove_stale_temps(out_dir, "unpacking"):
        progress.note(f"removed {path}, left by an interrupted unpack")
    tmp = Path(os.path.realpath(tempfile.mkdtemp(prefix=temp_prefix(out_dir, "unpacking"), dir=parent)))
    try:
        root_fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        sink = _DirectorySink(tmp, root_fd, str(archive))
        try:
            inventory = walk_archive(archive, sink, progress=progress)
        finally:
            sink.close()
            os.close(root_fd)
        verified = check(inventory)  # before anything appears at out_dir
        os.chmod(tmp, 0o755)  # noqa: S103 - mkdtemp made it 0700; a layout is readable data like its subdirs
        sync_filesystem(tmp)  # every file and directory durable before the rename makes them visible
        publish(tmp, out_dir)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
        raise
    entries = inventory.entries.values()
    return UnpackResult(out_dir, len(entries), sum(e.size for e in entries), verified)
