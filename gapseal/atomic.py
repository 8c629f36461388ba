"""Durable writes: what gapseal writes is either complete on disk or not there at all.

One place for the two primitives every writer needs (bundles, parts, evidence, state files): write a new file and
fsync it, and fsync a directory so a rename into it survives a crash.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (names created or renamed in it) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new_file(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist: never clobber) with ``data``, and fsync it before returning."""
    with open(path, "xb") as f:  # noqa: PTH123 - "x": exclusive creation
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


WRITEBACK_STEP = 32 * 1024 * 1024
"""With early writeback, disk writes of an output start after every this many bytes."""


class DurableWriter:
    """Write to an open descriptor with early writeback; ``finish`` fsyncs (the caller closes the descriptor).

    ``POSIX_FADV_DONTNEED`` on each finished stretch makes Linux begin writing it to disk while copying goes on (and
    drop it from the page cache once clean, so a multi-gigabyte output does not evict its own input). Without it
    every byte would wait for the final fsync: copy time plus disk time instead of the larger of the two.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.written = 0
        self._flushed = 0

    def write(self, data: bytes | memoryview) -> int:
        """Write all of ``data``; return its length."""
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        self.written += len(data)
        if self.written - self._flushed >= WRITEBACK_STEP:
            os.posix_fadvise(self.fd, self._flushed, self.written - self._flushed, os.POSIX_FADV_DONTNEED)
            self._flushed = self.written
        return len(data)

    def finish(self) -> None:
        """Flush everything written to disk."""
        os.fsync(self.fd)


def _libc_syncfs() -> object | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):  # pragma: no cover - not glibc/musl on Linux
        return None


_SYNCFS = _libc_syncfs()


def sync_filesystem(path: Path) -> None:
    """Flush every file written on the file system holding ``path`` (``syncfs``; ``sync`` where it is missing).

    One call after writing many files costs one journal commit instead of one per file's fsync: what ``tar xf``
    followed by ``sync`` pays, and as durable.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _SYNCFS is None or _SYNCFS(fd) != 0:  # type: ignore[operator]
            os.sync()
    finally:
        os.close(fd)
