"""Progress reporting without printing: libraries call a ``Progress``, the CLI supplies one that draws.

Libraries never import rich or print (DESIGN.md); long work (hashing, copying, packing) reports through this
interface. The default does nothing, so library calls from tests and other programs stay silent.
Implementations must be thread-safe: hashing runs on several threads at once.
"""

from __future__ import annotations


class Progress:
    """A sink for progress events; this base class ignores them."""

    def begin(self, label: str, total: int | None = None) -> int:
        """Start a task of ``total`` units (bytes, usually) and return its handle."""
        return 0

    def advance(self, task: int, amount: int) -> None:
        """Record ``amount`` more units done on ``task``."""

    def end(self, task: int) -> None:
        """Mark ``task`` finished."""

    def note(self, message: str) -> None:
        """Report a one-line status message (a step started, a file skipped)."""


NO_PROGRESS = Progress()
