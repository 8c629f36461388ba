"""Streaming SHA-256: hash files once, while copying or linking, on several threads.

A weight file is never held in memory: files are read in fixed-size chunks into one reusable buffer, and
``hashlib`` releases the GIL on large updates, so two threads hash two files on two cores at once.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, TypeVar

from gapseal.atomic import DurableWriter
from gapseal.progress import NO_PROGRESS, Progress

CHUNK = 4 * 1024 * 1024
"""Read size: large enough that hashing, not syscalls, dominates; small enough to keep RSS low."""

_T = TypeVar("_T")


class ByteSink(Protocol):
    """Where ``hash_stream`` copies the bytes it hashes: a file, a ``BytesIO``, a ``DurableWriter``."""

    def write(self, data: memoryview, /) -> object:
        """Take all of ``data`` (the view is only valid during the call)."""


_R = TypeVar("_R")


@dataclass(frozen=True)
class FileDigest:
    """The SHA-256 and size of a file's content."""

    sha256: str
    """Lower-case hex, no ``sha256:`` prefix."""
    size: int

    @property
    def digest(self) -> str:
        """The OCI form, ``sha256:<hex>``."""
        return f"sha256:{self.sha256}"


def default_workers() -> int:
    """Hashing threads: one per core, at least one."""
    return max(1, os.cpu_count() or 1)


_local = threading.local()


def _claim_buffer() -> memoryview:
    """The calling thread's first read buffer, allocated once per thread instead of once per file.

    Zeroing a fresh 4 MiB buffer for every 14-byte file was most of the time of a 10,000-file create or verify. A
    nested call on the same thread (a sink that hashes) gets a fresh buffer instead of sharing one.
    """
    view: memoryview | None = getattr(_local, "free", None)
    if view is None:
        return memoryview(bytearray(CHUNK))
    _local.free = None
    return view


def _release_buffer(view: memoryview) -> None:
    _local.free = view


def hash_stream(
    stream: BinaryIO,
    *,
    limit: int | None = None,
    sink: ByteSink | None = None,
    progress: Progress = NO_PROGRESS,
    task: int = 0,
) -> FileDigest:
    """Hash ``stream`` to its end (or ``limit`` bytes), copying every chunk to ``sink`` if given.

    A stream that ends before ``limit`` bytes raises ``EOFError``: a truncated input is never a valid digest.
    From the second chunk on, hashing runs on a helper thread over one buffer while the next chunk is read into the
    other (``hashlib`` releases the GIL): on two cores a large file costs the longer of hashing and copying, not
    their sum. The bytes hashed are exactly the bytes handed to ``sink``.
    """
    h = hashlib.sha256()
    first = _claim_buffer()
    buffers = [first]  # the second one only for a file of more than one chunk
    pool: ThreadPoolExecutor | None = None
    pending: Future[None] | None = None
    total = 0
    k = 0
    try:
        while limit is None or total < limit:
            want = CHUNK if limit is None else min(CHUNK, limit - total)
            view = buffers[k]
            n = stream.readinto(view[:want])  # type: ignore[attr-defined]
            if not n:
                break
            chunk = view[:n]
            if pending is not None:
                pending.result()  # in order, and before the other buffer is read into again
                pending = None
            if pool is None and (n < want or (limit is not None and total + n == limit)):
                h.update(chunk)  # the last (for a small file: only) chunk with no thread running: hash it here
            else:
                if pool is None:
                    pool = ThreadPoolExecutor(1, thread_name_prefix="gapseal-hash-pipe")
                    buffers.append(memoryview(bytearray(CHUNK)))
                pending = pool.submit(h.update, chunk)
            if sink is not None:
                sink.write(chunk)
            total += n
            k = (k + 1) % len(buffers)
            progress.advance(task, n)
        if pending is not None:
            pending.result()
    finally:
        if pool is not None:
            pool.shutdown()
        _release_buffer(first)
    if limit is not None and total != limit:
        raise EOFError(f"stream ended after {total} of {limit} bytes")
    return FileDigest(h.hexdigest(), total)


def hash_file(path: Path, *, progress: Progress = NO_PROGRESS, label: str | None = None) -> FileDigest:
    """Hash one file, reporting bytes to ``progress``."""
    size = path.stat().st_size
    task = progress.begin(label or f"hashing {path.name}", size)
    try:
        with path.open("rb", buffering=0) as f:
            return hash_stream(f, progress=progress, task=task)
    finally:
        progress.end(task)


def copy_and_hash(
    src: Path,
    dst: Path,
    *,
    progress: Progress = NO_PROGRESS,
    label: str | None = None,
    follow_symlinks: bool = True,
    fsync: bool = True,
) -> FileDigest:
    """Copy ``src`` to ``dst`` (created, must not exist) and hash it in the same single pass; fsync ``dst``.

    A caller that writes many files may pass ``fsync=False`` and flush them all at once (``atomic.sync_filesystem``)
    before making them visible.

    The digest returned is of the bytes written to ``dst``, read once: a caller that compares it with a signed digest
    knows ``dst`` holds the signed bytes, whatever happens to ``src`` meanwhile. ``dst`` is always a new inode (never
    a link or reflink of ``src``). With ``follow_symlinks=False`` a symbolic link or special file at ``src`` raises
    ``OSError`` instead of being read through.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    src_fd = os.open(src, flags)
    with os.fdopen(src_fd, "rb", buffering=0) as fin:
        st = os.fstat(src_fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(src))
        task = progress.begin(label or f"copying {src.name}", st.st_size)
        try:
            dst_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                writer = DurableWriter(dst_fd)
                result = hash_stream(fin, sink=writer, progress=progress, task=task)
                if fsync:
                    writer.finish()
            finally:
                os.close(dst_fd)
            return result
        finally:
            progress.end(task)


def parallel_map(fn: Callable[[_T], _R], items: Iterable[_T], *, workers: int | None = None) -> list[_R]:
    """Apply ``fn`` to ``items`` on a thread pool, largest work first is the caller's choice; order is kept."""
    seq: Sequence[_T] = list(items)
    n = min(workers or default_workers(), len(seq)) or 1
    if n == 1:
        return [fn(item) for item in seq]
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="gapseal-hash") as pool:
        return list(pool.map(fn, seq))
