"""The run log of an install: files kept, plain per-host lines, and the changes (the plan in check mode) per host.

The events are shaped as ansible-runner emits them (taken from a real run's events.jsonl: gapseal_files' plan, a
template loop in diff mode, the file module's state diff, a failure); the integration tests run the real thing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gapseal.installer.runlog import DIFF_LINES, RunLog, new_run_dir, task_changes


def _event(kind: str, host: str, task: str, res: dict[str, Any]) -> dict[str, Any]:
    return {"event": kind, "event_data": {"host": host, "task": task, "res": res}}


FILES = {
    "changed": True,
    "msg": "All items completed",
    "results": [
        {
            "changed": True,
            "missing": ["sha256:" + "a" * 64],
            "extra": ["/r/opt/old.so"],
            "files": [{"digest": "sha256:" + "a" * 64, "path": "/r/opt/bin/serve"}],
        }
    ],
}
UNIT = {
    "changed": True,
    "results": [
        {
            "changed": True,
            "invocation": {"dest": "/r/etc/systemd/system/gapseal-api.service"},
            "diff": [{"before": "", "after": "[Unit]\nDescription=api\n", "after_header": "/tmp/ansible/unit.j2"}],
        }
    ],
}
DIRECTORY = {
    "changed": True,
    "diff": {
        "before": {"path": "/r/etc/systemd/system", "state": "absent"},
        "after": {"path": "/r/etc/systemd/system", "state": "directory"},
    },
}


def test_changes_name_every_file_unit_and_directory() -> None:
    assert task_changes(FILES) == ["write  /r/opt/bin/serve", "remove /r/opt/old.so"]
    assert task_changes(UNIT) == [
        "--- /r/etc/systemd/system/gapseal-api.service (now)",
        "+++ /r/etc/systemd/system/gapseal-api.service (would be)",
        "@@ -0,0 +1,2 @@",
        "+[Unit]",
        "+Description=api",
    ]
    assert task_changes(DIRECTORY) == ["/r/etc/systemd/system: state absent -> directory"]
    assert task_changes({"changed": True, "path": "/r/var/lib/gapseal/installed.json"}) == [
        "write  /r/var/lib/gapseal/installed.json"
    ]


def test_a_long_diff_is_cut_and_points_at_the_run_log() -> None:
    big = {"changed": True, "diff": {"before": "", "after": "x\n" * 500, "before_header": "/r/etc/gapseal/egress.nft"}}
    lines = task_changes(big)
    assert len(lines) == DIFF_LINES + 1
    assert lines[-1].endswith("more diff lines (see the run log)")


def test_the_run_log_keeps_events_and_one_line_per_host_and_task(tmp_path: Path) -> None:
    run_dir = new_run_dir(tmp_path / "runs")
    printed: list[str] = []
    log = RunLog(run_dir, on_line=printed.append)
    events = [
        {"event": "playbook_on_start", "event_data": {}},
        _event("runner_on_ok", "h1", "Validating arguments against arg spec 'main'", {"changed": False}),
        _event("runner_on_ok", "h1", "Install the build", FILES),
        _event("runner_on_skipped", "h1", "Pull images", {}),
        _event("runner_on_failed", "h2", "Detect GPUs", {"msg": "no variant of build 'server' fits h2:\n  - cpu"}),
    ]
    for e in events:
        log(e)
    log.close()
    assert [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()] == events
    assert (run_dir / "install.log").read_text().splitlines() == [
        "h1 | ok | Validating arguments against arg spec 'main'",
        "h1 | changed | Install the build",
        "h1 | skipped | Pull images",
        "h2 | FAILED | Detect GPUs | no variant of build 'server' fits h2: - cpu",
    ]
    assert printed == [
        "h1 | changed | Install the build",
        "h2 | FAILED | Detect GPUs | no variant of build 'server' fits h2: - cpu",
    ]
    assert log.changes == {"h1": [("Install the build", ["write  /r/opt/bin/serve", "remove /r/opt/old.so"])]}


def test_a_run_ansible_never_started_leaves_no_directory(tmp_path: Path) -> None:
    log = RunLog(new_run_dir(tmp_path / "runs"))
    log.close()
    assert list((tmp_path / "runs").iterdir()) == []
