"""The ansible-runner driver: run a playbook, stream its events to a ``Progress``, summarize per host.

Everything Ansible says arrives as runner events; this module keeps what an operator and the install report need:
per host, ok/changed/failed/unreachable counts (from ``playbook_on_stats``, the same numbers Ansible prints), the
first failure message per failed task, and the ``gapseal_*`` facts the roles set (hardware, chosen variants,
services). The private data dir (extra vars, artifacts, ssh ControlPath sockets) is a private temporary directory,
removed at the end after the ssh ControlMasters are closed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gapseal.errors import InstallError
from gapseal.progress import NO_PROGRESS, Progress

HOST_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}


class PlaybookError(InstallError):
    """ansible-runner could not run the playbook at all (not a host failure: those are in the result)."""


@dataclass
class HostFailure:
    """One failed or unreachable task on one host."""

    task: str
    message: str
    unreachable: bool = False


@dataclass
class HostOutcome:
    """What happened on one host."""

    name: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0
    failures: list[HostFailure] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    """``gapseal_*`` facts the roles set, last value wins."""
    changed_tasks: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        """No failed and no unreachable task."""
        return self.failed == 0 and self.unreachable == 0 and not self.failures


@dataclass
class PlaybookRun:
    """The outcome of one ansible-runner run."""

    rc: int
    status: str
    hosts: dict[str, HostOutcome]
    check: bool

    def host(self, name: str) -> HostOutcome:
        """Return the outcome of ``name`` (an empty one if Ansible never mentioned it)."""
        return self.hosts.setdefault(name, HostOutcome(name))


def _message(res: Mapping[str, Any]) -> str:
    msg = res.get("msg") or ""
    if not msg and res.get("results"):  # a loop: the first failed item's message
        for item in res["results"]:
            if isinstance(item, Mapping) and item.get("failed"):
                msg = item.get("msg") or item.get("stderr") or ""
                break
    if not msg:
        msg = res.get("stderr") or res.get("module_stderr") or res.get("reason") or "failed"
    return str(msg).strip()


class _EventCollector:
    def __init__(self, progress: Progress, on_event: Callable[[dict[str, Any]], None] | None) -> None:
        self.hosts: dict[str, HostOutcome] = {}
        self.progress = progress
        self.on_event = on_event
        self.lock = threading.Lock()
        self.task_handle = progress.begin("ansible", None)

    def host(self, name: str) -> HostOutcome:
        return self.hosts.setdefault(name, HostOutcome(name))

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        with self.lock:
            if kind == "playbook_on_task_start":
                self.progress.note(f"TASK {data.get('task', '')}")
                self.progress.advance(self.task_handle, 1)
            elif kind in HOST_EVENTS:
                self._host_event(HOST_EVENTS[kind], data)
            elif kind == "playbook_on_stats":
                self._stats(data)
        if self.on_event is not None:
            self.on_event(event)
        return False  # nothing written to the artifacts dir: the extra vars are enough on disk

    def _host_event(self, status: str, data: Mapping[str, Any]) -> None:
        name = str(data.get("host", "?"))
        host = self.host(name)
        res = data.get("res") or {}
        task = str(data.get("task", ""))
        facts = res.get("ansible_facts") or {}
        for key, value in facts.items():
            if key.startswith("gapseal_"):
                host.facts[key] = value
        if status == "ok" and res.get("changed"):
            host.changed_tasks.append(task)
        if status == "ok" and task and "service_states" in facts:
            host.facts["gapseal_services"] = facts["service_states"]
        if status == "ok" and task and "service_checks" in facts:  # health checks, fallbacks, restores
            host.facts["gapseal_service_checks"] = facts["service_checks"]
        if status in ("failed", "unreachable") and not data.get("ignore_errors"):
            message = _message(res)
            host.failures.append(HostFailure(task=task, message=message, unreachable=status == "unreachable"))
            self.progress.note(f"{name}: {status.upper()} {task}: {message.splitlines()[0] if message else ''}")

    def _stats(self, data: Mapping[str, Any]) -> None:
        fields = {
            "ok": "ok",
            "changed": "changed",
            "failures": "failed",
            "dark": "unreachable",
            "skipped": "skipped",
            "rescued": "rescued",
            "ignored": "ignored",
        }
        for key, attr in fields.items():
            for name, count in (data.get(key) or {}).items():
                setattr(self.host(str(name)), attr, int(count))


def _ansible_path_env() -> dict[str, str]:
    """PATH with this interpreter's bin directory first, so ansible-playbook from the same venv is found."""
    bindir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    parts = path.split(os.pathsep) if path else []
    if bindir not in parts:
        parts.insert(0, bindir)
    return {"PATH": os.pathsep.join(parts)}


def _close_control_masters(control_dir: Path) -> None:
    if not control_dir.is_dir():
        return
    for sock in control_dir.iterdir():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "gapseal-control"],
                capture_output=True,
                timeout=10,
                check=False,
            )


def _tail(runner: Any, lines: int = 8) -> str:
    """Return the last lines of ansible-playbook's output, for an error message."""
    try:
        text = runner.stdout.read()
    except (AttributeError, OSError, ValueError):
        return "(no output)"
    return " | ".join(line.strip() for line in str(text).strip().splitlines()[-lines:] if line.strip()) or "(no output)"


def run_playbook(
    playbook: Path,
    inventory: Path,
    extravars: Mapping[str, Any],
    *,
    check: bool = False,
    limit: str | None = None,
    tags: Sequence[str] = (),
    skip_tags: Sequence[str] = (),
    forks: int | None = None,
    envvars: Mapping[str, str] | None = None,
    progress: Progress = NO_PROGRESS,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    keep_private_dir: Path | None = None,
) -> PlaybookRun:
    """Run ``playbook`` (in its own directory, so its ``ansible.cfg`` applies) against ``inventory``.

    Host failures do not raise: they are in the returned ``PlaybookRun``. ``PlaybookError`` means Ansible itself
    could not run (syntax error, missing ansible-playbook).
    """
    try:
        import ansible_runner
    except ImportError as e:  # pragma: no cover - a dependency of gapseal
        raise PlaybookError("ansible-runner is not installed", hint="pip install ansible-runner") from e
    playbook = playbook.resolve()
    project = playbook.parent
    env = {**_ansible_path_env(), **dict(envvars or {})}
    if shutil.which("ansible-playbook", path=env["PATH"]) is None:
        raise PlaybookError("ansible-playbook not found on PATH", hint="install ansible-core next to gapseal")
    private = Path(keep_private_dir) if keep_private_dir else Path(tempfile.mkdtemp(prefix="gapseal-run-"))
    private.mkdir(parents=True, exist_ok=True)
    os.chmod(private, 0o700)
    control_dir = private / "cp"
    control_dir.mkdir(exist_ok=True)
    env.update(
        {
            "ANSIBLE_CONFIG": str(project / "ansible.cfg"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
            # ansible-runner puts its own callback directory in this variable, which then hides ansible.cfg's
            # callback_plugins: name the playbooks' own here so runner appends to it (gapseal_preload).
            "ANSIBLE_CALLBACK_PLUGINS": str(project / "callback_plugins"),
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
        }
    )
    cmdline: list[str] = []
    if check:
        cmdline.append("--check")
    if skip_tags:
        cmdline += ["--skip-tags", ",".join(skip_tags)]
    collector = _EventCollector(progress, on_event)
    try:
        runner = ansible_runner.run(
            private_data_dir=str(private),
            project_dir=str(project),
            playbook=playbook.name,
            inventory=str(inventory.resolve()),
            extravars=dict(extravars),
            envvars=env,
            cmdline=" ".join(cmdline) or None,
            limit=limit,
            tags=",".join(tags) or None,
            forks=forks,
            event_handler=collector,
            quiet=True,
            suppress_env_files=True,
        )
        status = str(getattr(runner, "status", "unknown"))
        rc = int(getattr(runner, "rc", 1) or 0)
        if status not in ("successful", "failed") or (status == "failed" and not collector.hosts):
            raise PlaybookError(
                f"ansible-playbook failed before any host was contacted (status {status}, rc {rc}): " + _tail(runner),
                hint="check the playbook and inventory with ansible-playbook --syntax-check",
            )
    finally:
        progress.end(collector.task_handle)
        _close_control_masters(control_dir)
        if keep_private_dir is None:
            shutil.rmtree(private, ignore_errors=True)
    return PlaybookRun(rc=rc, status=status, hosts=collector.hosts, check=check)
