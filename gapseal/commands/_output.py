"""Shared CLI output: result printing (human or JSON), error reports, and a rich ``Progress``."""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from rich.console import Console

from gapseal.progress import NO_PROGRESS, Progress

if TYPE_CHECKING:
    from rich.progress import TaskID

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


@dataclass
class OutputState:
    """How the running command wants its output: set once by the command from its flags."""

    json: bool = False
    quiet: bool = False
    verbose: bool = False


state = OutputState()


def configure(*, json_output: bool = False, quiet: bool = False) -> None:
    """Record the output flags of the running command (``--json`` implies quiet progress)."""
    state.json = json_output
    state.quiet = quiet or json_output


def result_kind(command_path: str) -> str:
    """The ``kind`` of a command's ``--json`` result: ``gapseal bundle verify`` -> ``gapseal.BundleVerifyResult``."""
    words = command_path.split()[1:] or ["gapseal"]
    return "gapseal." + "".join(w.replace("-", " ").title().replace(" ", "") for w in words) + "Result"


def _running_command() -> str | None:
    from typer._click.globals import get_current_context

    ctx = get_current_context(silent=True)
    return ctx.command_path if ctx is not None else None


def emit_json(document: Any) -> None:
    """Print one JSON document to stdout, sorted and indented, for machines.

    Every document says what it is: a result without a ``kind`` of its own gets the running command's
    (``gapseal.BundleVerifyResult``) and ``version`` 1; documents with a model (install report, hosts status, bundle
    diff, the error document) carry theirs, published in ``gapseal/schemas``.
    """
    if isinstance(document, dict) and "kind" not in document:
        command = _running_command()
        if command is not None:
            document = {"kind": result_kind(command), "version": 1, **document}
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def info(message: str) -> None:
    """Print a status line to stderr unless quiet."""
    if not state.quiet:
        stderr.print(message, highlight=False)


class RichProgress(Progress):
    """Draws library progress events as rich bars on stderr; thread-safe."""

    def __init__(self) -> None:
        # Imported here: a quiet, JSON or non-terminal run draws no bar and does not pay for rich.progress.
        from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeRemainingColumn, TransferSpeedColumn
        from rich.progress import Progress as RichProgressBar

        self._bar = RichProgressBar(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=stderr,
            transient=True,
        )
        self._lock = threading.Lock()

    def __enter__(self) -> RichProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def begin(self, label: str, total: int | None = None) -> int:
        with self._lock:
            return int(self._bar.add_task(label, total=total))

    def advance(self, task: int, amount: int) -> None:
        self._bar.advance(cast("TaskID", task), amount)

    def end(self, task: int) -> None:
        with self._lock:
            self._bar.remove_task(cast("TaskID", task))

    def note(self, message: str) -> None:
        self._bar.console.print(message, highlight=False)


class _Silent(Progress):
    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def progress() -> RichProgress | _Silent:
    """Return a progress display for the running command: silent when quiet, JSON or not a terminal."""
    if state.quiet or not stderr.is_terminal:
        return _Silent()
    return RichProgress()


__all__ = ["NO_PROGRESS", "RichProgress", "configure", "emit_json", "info", "progress", "state", "stderr", "stdout"]
