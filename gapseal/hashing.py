"""Streaming SHA-256: hash files once, while copying or linking, on several threads.

A weight file is never held in memory: files are read in fixed-size chunks into one reusable buffer, and
``hashlib`` releases the GIL on large updates, so two threads hash two files on two cores at once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from gapseal.progress import NO_PROGRESS, Progress

CHUNK = 4 * 1024 * 1024
"""Read size: large enough that hashing, not syscalls, dominates; small enough to keep RSS low."""

_T = TypeVar("_T")
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


def hash_stream(
    stream: BinaryIO,
    *,
    limit: int | None = None,
    sink: BinaryIO | None = None,
    progress: Progress = NO_PROGRESS,
    task: int = 0,
) -> FileDigest:
    """Hash ``stream`` to its end (or ``limit`` bytes), copying every chunk to ``sink`` if given.

    A stream that ends before ``limit`` bytes raises ``EOFError``: a truncated input is never a valid digest.
    """
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    total = 0
    while limit is None or total < limit:
        want = CHUNK if limit is None else min(CHUNK, limit - total)
        n = stream.readinto(view[:want])  # type: ignore[attr-defined]
        if not n:
            break
        chunk = view[:n]
        h.update(chunk)
        if sink is not None:
            sink.write(chunk)
        total += n
        progress.advance(task, n)
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


def copy_and_hash(src: Path, dst: Path, *, progress: Progress = NO_PROGRESS, label: str | None = None) -> FileDigest:
    """Copy ``src`` to ``dst`` (created, must not exist) and hash it in the same single pass; fsync ``dst``."""
    size = src.stat().st_size
    task = progress.begin(label or f"copying {src.name}", size)
    try:
        with src.open("rb", buffering=0) as fin, open(dst, "xb") as fout:  # noqa: PTH123 - "x": never clobber
            result = hash_stream(fin, sink=fout, progress=progress, task=task)
            fout.flush()
            os.fsync(fout.fileno())
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
