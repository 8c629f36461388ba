"""The record of one Ansible run: its log files, and what each host changed (or, in check mode, would change).

``gapseal install`` hands every ansible-runner event to a ``RunLog``. It keeps, in a fresh directory per run,
``events.jsonl`` (every runner event as Ansible emitted it) and ``install.log`` (one line per host and task, what a CI
log shows), and gathers per host the changed tasks with what each one writes, removes or edits: the files
``gapseal_files`` plans, and Ansible's diff mode for templates, directories and the firewall rules. In check mode
that is the plan, and nothing was changed.
"""

from __future__ import annotations

import difflib
import json
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gapseal.errors import output_not_writable

DIFF_LINES = 40
"""At most this many lines of one file's diff in the plan; the whole diff is in events.jsonl."""

_STATUS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "FAILED",
    "runner_on_unreachable": "UNREACHABLE",
    "runner_on_skipped": "skipped",
}


def new_run_dir(base: Path) -> Path:
    """A fresh, private directory under ``base`` named by the UTC time (``20261203T133508Z-…``)."""
    base = base.absolute()
    try:
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%dT%H%M%SZ-", time.gmtime()), dir=base))
    except OSError as e:
        raise output_not_writable(base, e.strerror or str(e)) from e


class RunLog:
    """An ansible-runner event handler that writes the run's log files and gathers each host's changes.

    ``on_line`` receives each host/task line as it happens (the CLI prints them when there is no terminal).
    Thread-safe: ansible-runner calls it from its own thread.
    """

    def __init__(self, run_dir: Path, on_line: Callable[[str], None] | None = None) -> None:
        self.run_dir = run_dir
        self.on_line = on_line
        self.changes: dict[str, list[tuple[str, list[str]]]] = {}
        """Per host, each changed task with what it writes, removes or edits."""
        self.seen_events = False
        self._lock = threading.Lock()
        self._events = (run_dir / "events.jsonl").open("a", encoding="utf-8")
        self._log = (run_dir / "install.log").open("a", encoding="utf-8")

    def close(self) -> None:
        """Close the files; when Ansible never ran (the bundle did not verify), remove the empty run directory."""
        self._events.close()
        self._log.close()
        if not self.seen_events:
            for f in self.run_dir.iterdir():
                f.unlink()
            self.run_dir.rmdir()

    def __call__(self, event: dict[str, Any]) -> None:
        """Record one ansible-runner event."""
        data = event.get("event_data") or {}
        with self._lock:
            self.seen_events = True
            self._events.write(json.dumps(event, sort_keys=True, default=str) + "\n")
            status = _STATUS.get(str(event.get("event", "")))
            if status is None:
                return
            res = data.get("res") or {}
            task = str(data.get("task", ""))
            if status == "ok" and res.get("changed"):
                status = "changed"
                self.changes.setdefault(str(data.get("host")), []).append((task, task_changes(res)))
            line = f"{data.get('host')} | {status} | {task}"
            if status in ("FAILED", "UNREACHABLE"):
                line += f" | {_failure_message(res)}"
            self._log.write(line + "\n")
            self._log.flush()
            if self.on_line is not None and status != "skipped" and not task.startswith("Validating arguments"):
                self.on_line(line)


def _failure_message(res: dict[str, Any]) -> str:
    msg = res.get("msg") or res.get("stderr") or res.get("module_stderr") or res.get("reason") or "failed"
    return " ".join(str(msg).split())


def task_changes(res: dict[str, Any]) -> list[str]:
    """What one changed task writes, removes or edits (gapseal_files' plan, Ansible's diff mode), loops included."""
    lines: list[str] = []
    for item in res.get("results") or []:
        if isinstance(item, dict) and item.get("changed"):
            lines += task_changes(item)
    paths = {f.get("digest"): f.get("path") for f in res.get("files") or [] if isinstance(f, dict)}
    lines += [f"write  {paths.get(d, d)}" for d in res.get("missing") or []]
    lines += [f"remove {p}" for p in res.get("extra") or []]
    lines += [f"mode   {p}" for p in res.get("stale_modes") or []]
    invocation = res.get("invocation") or {}
    dest = res.get("dest") or invocation.get("dest") or (invocation.get("module_args") or {}).get("dest")
    diffs = res.get("diff") or []
    for diff in diffs if isinstance(diffs, list) else [diffs]:
        if isinstance(diff, dict):
            lines += _diff_lines(diff, str(dest) if dest else None)
    if not lines and isinstance(res.get("path"), str) and not res.get("results"):
        lines.append(f"write  {res['path']}")
    return lines


def _diff_lines(diff: dict[str, Any], dest: str | None) -> list[str]:
    before, after = diff.get("before"), diff.get("after")
    # the file on the host: the task's dest (a template's after_header is the controller's temporary template)
    header = dest or str(diff.get("before_header") or diff.get("after_header") or "")
    if isinstance(before, str) and isinstance(after, str):
        text = list(
            difflib.unified_diff(
                before.splitlines(), after.splitlines(), f"{header} (now)", f"{header} (would be)", lineterm=""
            )
        )
        if len(text) > DIFF_LINES:
            text = [*text[:DIFF_LINES], f"… {len(text) - DIFF_LINES} more diff lines (see the run log)"]
        return text
    if isinstance(before, dict) and isinstance(after, dict):  # the file module: {"state": "absent"} -> "directory"
        path = after.get("path") or before.get("path") or header
        changes = [f"{k} {before.get(k)} -> {after[k]}" for k in sorted(after) if k != "path"]
        return [f"{path}: {', '.join(changes)}"]
    return [f"edit   {header}"] if header else []
