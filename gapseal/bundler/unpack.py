"""``bundle unpack``: a bundle tar or split set back into a layout directory, safely.

Extraction goes through the same strict reader as ``verify`` (``gapseal.bundler.tarformat`` via
``inventory.walk_archive``): no absolute paths, no ``..``, no links, no devices, no duplicates, nothing the gapseal
writer would not have written. Files are created inside a fresh temporary directory beside ``out_dir`` with
``O_EXCL | O_NOFOLLOW`` relative to that directory's descriptor, so nothing is written outside it and no link is
ever created or followed; ranges of a split set are concatenated back into their blob; every file is hashed while it
is written and fsynced. Only a complete, consistent extraction is renamed to ``out_dir``: an interrupted unpack
leaves nothing there.

A blob whose content does not hash to its name is refused here already (fail closed); the signature, the file set
and everything else are ``verify``'s to check on the unpacked directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from gapseal.atomic import fsync_dir
from gapseal.bundler.inventory import LayoutEntry, LayoutSink, walk_archive
from gapseal.bundler.tarformat import WRITEBACK_STEP
from gapseal.errors import ArchiveError, BundleError, UsageError
from gapseal.progress import NO_PROGRESS, Progress

_SHA256_BLOB = re.compile(r"^blobs/sha256/([0-9a-f]{64})$")


class _DirectorySink(LayoutSink):
    """Writes the layout files under one directory descriptor."""

    def __init__(self, root_fd: int, where: str) -> None:
        self._root = root_fd
        self._where = where
        self._fd: int | None = None
        self._path = ""
        self._written = self._flushed = 0
        self.dirs: list[str] = []

    def directory(self, path: str) -> None:
        os.mkdir(path, 0o755, dir_fd=self._root)
        self.dirs.append(path)

    def begin(self, path: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self._fd = os.open(path, flags, 0o644, dir_fd=self._root)
        self._path = path
        self._written = self._flushed = 0

    def write(self, chunk: memoryview) -> None:
        if self._fd is None:  # pragma: no cover - the walk always begins a file first
            raise RuntimeError("write before begin")
        view = chunk
        while view:
            view = view[os.write(self._fd, view) :]
        self._written += len(chunk)
        if self._written - self._flushed >= WRITEBACK_STEP:
            # Start disk writes now rather than all at the fsync (see tarformat.TarWriter._writeback).
            os.posix_fadvise(self._fd, self._flushed, self._written - self._flushed, os.POSIX_FADV_DONTNEED)
            self._flushed = self._written

    def end(self, entry: LayoutEntry) -> None:
        if self._fd is None:  # pragma: no cover
            raise RuntimeError("end before begin")
        fd, self._fd = self._fd, None
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
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


def unpack_archive(archive: Path, out_dir: Path, *, overwrite: bool = False, progress: Progress = NO_PROGRESS) -> Path:
    """Extract the bundle tar (or split set, from its first part) ``archive`` into the new directory ``out_dir``.

    Refuses an existing ``out_dir`` unless ``overwrite`` (then it is replaced only once extraction succeeded).
    Raises ``ArchiveError`` for an unsafe or damaged archive, ``UsageError`` for a bad output.
    Returns ``out_dir``.
    """
    archive = Path(archive)
    out_dir = Path(out_dir)
    parent = out_dir.parent
    if (out_dir.exists() or out_dir.is_symlink()) and not overwrite:
        raise UsageError(f"output exists: {out_dir}", hint="choose another --out or pass --overwrite")
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise UsageError(f"output is not a directory: {out_dir}", hint="remove it or choose another --out")
    if not parent.is_dir():
        raise UsageError(f"output directory's parent does not exist: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write in {parent}")

    try:
        return _unpack(archive, out_dir, parent, progress)
    except OSError as e:
        raise BundleError(
            f"unpacking failed: {e.strerror or e}", where=e.filename or str(out_dir), hint="check free space"
        ) from e


def _unpack(archive: Path, out_dir: Path, parent: Path, progress: Progress) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".unpacking", dir=parent))
    try:
        root_fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        sink = _DirectorySink(root_fd, str(archive))
        try:
            walk_archive(archive, sink, progress=progress)
        finally:
            sink.close()
            os.close(root_fd)
        for d in sorted(sink.dirs, key=len, reverse=True):
            fsync_dir(tmp / d)
        os.chmod(tmp, 0o755)  # noqa: S103 - mkdtemp made it 0700; a layout is readable data like its subdirs
        fsync_dir(tmp)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".replaced", dir=parent))
            os.replace(out_dir, old / "old")
            os.replace(tmp, out_dir)
            shutil.rmtree(old)
        else:
            os.rename(tmp, out_dir)
        fsync_dir(parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
        raise
    return out_dir
