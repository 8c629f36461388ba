"""Durable writes: what gapseal writes is either complete on disk or not there at all.

One place for the two primitives every writer needs (bundles, parts, evidence, state files): write a new file and
fsync it, and fsync a directory so a rename into it survives a crash.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
import time
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
WRITE_SLICE = 256 * 1024
"""The largest single ``write(2)``: measured on this project's machines, 4 MiB writes into the page cache ran 4-10
times slower than the same bytes in 256 KiB writes (one long copy per call stalls in dirty-page throttling), while
reads and hashing are fastest in 4 MiB chunks. Writers slice their chunks to this size."""


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to ``fd``, in slices of at most ``WRITE_SLICE`` bytes."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view[:WRITE_SLICE]) :]


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
        write_all(self.fd, data)
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


def _libc_renameat2() -> object | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2  # glibc >= 2.28
    except (OSError, AttributeError):  # pragma: no cover - an older or other C library
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _libc_renameat2()
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names ``a`` and ``b`` in one atomic step; False where the kernel or file system cannot."""
    if _RENAMEAT2 is None:  # pragma: no cover - an older or other C library
        return False
    rc = _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)  # type: ignore[operator]
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # pragma: no cover - e.g. an old kernel or NFS
        return False
    raise OSError(err, os.strerror(err), str(b))


def publish(work: Path, out: Path) -> None:
    """Make the finished ``work`` (a file or directory beside ``out``) visible as ``out``, replacing what is there.

    The caller has made ``work`` durable and decided that ``out`` may be replaced. When ``out`` exists the two names
    are exchanged in one atomic step (``renameat2(RENAME_EXCHANGE)``), so a crash or an interrupt at any moment
    leaves either the old ``out`` or the new one in place, never neither; only then is the old one, now at ``work``'s
    name, removed; ``work`` named by ``temp_prefix``, a removal cut short leaves a stale temp the next run clears
    (``remove_stale_temps``). Where the exchange is not available, the old ``out`` is renamed aside first, to a name
    no run clears on its own: an interrupt between the two renames leaves it there, whole, for the operator.
    """
    try:
        os.lstat(out)
    except FileNotFoundError:
        os.rename(work, out)
    else:
        if not _exchange(work, out):  # pragma: no cover - file systems without RENAME_EXCHANGE
            aside = out.with_name(f".{out.name}.replaced-{os.getpid()}-{time.time_ns()}")
            os.rename(out, aside)
            os.rename(work, out)
            work = aside
        _remove(work)
    fsync_dir(out.parent)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def temp_prefix(final: Path, kind: str) -> str:
    """The name prefix of a temporary file or directory for ``final``: ``.NAME.KIND-PID-``.

    The process id in the name lets a later run tell a leftover of a killed run (``kill -9`` leaves no chance to clean
    up) from the work of a run still going, and remove only the former (``remove_stale_temps``).
    """
    return f".{final.name}.{kind}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temps(final: Path, kind: str) -> list[Path]:
    """Remove what killed runs left beside ``final`` (names from ``temp_prefix``); return what was removed.

    A temp whose process still runs is left alone: two runs writing the same output are told apart by their pids.
    """
    removed: list[Path] = []
    head = f".{final.name}.{kind}-"
    try:
        names = os.listdir(final.parent)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(head):
            continue
        pid_text = name[len(head) :].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _alive(int(pid_text)):
            continue
        path = final.parent / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed
