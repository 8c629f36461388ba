"""Durable writes: what gapseal writes is either complete on disk or not there at all.

One place for the two primitives every writer needs (bundles, parts, evidence, state files): write a new file and
fsync it, and fsync a directory so a rename into it survives a crash.
"""

from __future__ import annotations

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
